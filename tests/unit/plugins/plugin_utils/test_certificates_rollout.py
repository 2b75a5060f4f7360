# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rollout's decisions: the waves, each wave's verdict, what a rollback puts back where, and the report."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.ingress.haproxy.plugins.plugin_utils import _certificates_role as role
from ansible_collections.ingress.haproxy.plugins.plugin_utils._certificates_role import CertificatesRoleError

ITEMS = [
    {"name": "www", "domains": ["www.lab.test"], "haproxy_path": "/etc/haproxy/certs/www.pem"},
    {"name": "api", "domains": ["api.lab.test"], "haproxy_path": "/etc/haproxy/certs/api.pem"},
]


def _selected():
    return role.select(ITEMS, [], "acme")


def _found(*names, canary=()):
    return {name: {"name": name, "endpoint": f"127.0.0.{index + 11}:9999", "process": "", "host": name,
                   "verify_host": f"127.0.0.{index + 11}", "verify_port": 443, "cert_dir": "", "crt_list": "",
                   "canary": name in canary}
            for index, name in enumerate(names)}


def _hosts(*names):
    return {name: {"address": name, "cert_dir": "", "crt_list": "", "runtime_port": None, "verify_port": None,
                   "canary": False} for name in names}


def test_settings_coerce_the_rollout_variables():
    assert role.settings({"certificates_rollout_canary": "2", "certificates_rollout_wave_size": 0,
                          "certificates_rollout_pause": "3", "certificates_rollback": "false"}) == {
        "rollout_canary": 2, "rollout_wave_size": 0, "rollout_pause": 3, "rollback": False}


def test_a_negative_wave_size_is_refused_by_name():
    with pytest.raises(CertificatesRoleError, match="certificates_rollout_wave_size is -1"):
        role.settings({"certificates_rollout_wave_size": -1})


def test_the_canary_is_the_first_instance_by_name_then_all_the_rest():
    waves = role.rollout_plan(_found("h3", "h1", "h2"), 1, 0, _hosts("h1", "h2", "h3"))
    assert [(wave["kind"], wave["instances"], wave["hosts"]) for wave in waves] == [
        ("canary", ["h1"], ["h1"]), ("wave", ["h2", "h3"], ["h2", "h3"])]


def test_flagged_hosts_are_the_canary_whatever_the_count():
    waves = role.rollout_plan(_found("h1", "h2", "h3", "h4", canary=("h3", "h4")), 1, 1)
    assert [wave["instances"] for wave in waves] == [["h3", "h4"], ["h1"], ["h2"]]


def test_host_canary_flag_reaches_the_instance():
    hosts = role.persist_hosts(["h1"], {"h1": {"ansible_host": "127.0.0.11", "certificates_host_canary": "yes"}})
    found = role.instances([], ["127.0.0.11", "127.0.0.12"], hosts, 9999, 443)
    assert found["h1"]["canary"] is True and found["127.0.0.12:9999"]["canary"] is False


def test_a_bad_canary_flag_is_named():
    with pytest.raises(CertificatesRoleError, match="certificates_host_canary of h1"):
        role.persist_hosts(["h1"], {"h1": {"certificates_host_canary": "maybe"}})


def test_waves_of_one_and_no_canary():
    assert [wave["instances"] for wave in role.rollout_plan(_found("a", "b", "c"), 1, 1)] == [["a"], ["b"], ["c"]]
    assert [(wave["kind"], wave["instances"]) for wave in role.rollout_plan(_found("a", "b", "c"), 0, 1)] == [
        ("all", ["a", "b", "c"])]


def test_hosts_without_an_instance_follow_the_last_wave():
    waves = role.rollout_plan(_found("h1", "h2"), 1, 0, _hosts("h1", "h2", "spare"))
    assert waves[0]["hosts"] == ["h1"] and waves[-1]["hosts"] == ["h2", "spare"]


def test_no_instance_still_persists_to_every_host():
    assert role.rollout_plan({}, 1, 0, _hosts("h1")) == [{"index": 0, "kind": "all", "instances": [], "hosts": ["h1"]}]


def test_the_plan_lines_name_waves_and_instances():
    lines = role.rollout_plan_lines(role.rollout_plan(_found("h1", "h2", "h3"), 1, 1, _hosts("h1", "h2", "h3")))
    assert lines == ["canary: h1 (files on h1)", "wave 1: h2 (files on h2)", "wave 2: h3 (files on h3)"]


def _check(ok=True, fingerprint="AA", msg="", verified=None):
    return {"ok": ok, "fingerprint": fingerprint, "msg": msg, "verified": verified}


def test_a_wave_whose_checks_pass_goes_on():
    wave = {"kind": "canary", "instances": ["h1"]}
    verdict = role.wave_verdict(wave, {"h1": {"failed": False}}, {"h1": {"www": _check()}})
    assert verdict == {"stop": False, "rollback": False, "msg": ""}


def test_a_leaf_that_does_not_validate_stops_and_rolls_back_naming_certificate_and_instance():
    wave = {"kind": "wave", "instances": ["h2"]}
    verdict = role.wave_verdict(wave, {"h2": {"failed": False}},
                                {"h2": {"www": _check(False, msg="does not validate: unknown issuer", verified=False)}})
    assert verdict["stop"] and verdict["rollback"]
    assert "certificate www on instance h2: does not validate: unknown issuer" in verdict["msg"]


def test_an_unreachable_instance_fails_alone():
    wave = {"kind": "wave", "instances": ["h2", "h3"]}
    verdict = role.wave_verdict(wave, {"h2": {"failed": True, "msg": "refused"}, "h3": {"failed": False}},
                                {"h3": {"www": _check()}})
    assert verdict["stop"] is False


def test_a_canary_that_cannot_be_reached_stops_without_rollback():
    wave = {"kind": "canary", "instances": ["h1"]}
    verdict = role.wave_verdict(wave, {"h1": {"failed": True, "msg": "cannot connect"}}, {})
    assert verdict["stop"] and not verdict["rollback"]
    assert "nothing else was pushed" in verdict["msg"] and "h1: cannot connect" in verdict["msg"]


def test_no_handshake_at_all_is_no_rollback_trigger():
    wave = {"kind": "wave", "instances": ["h2"]}
    verdict = role.wave_verdict(wave, {"h2": {"failed": False}}, {"h2": {"www": _check(False, fingerprint="")}})
    assert verdict["stop"] is False


def test_verify_outcome_fails_a_leaf_that_matches_but_does_not_validate():
    targets = [{"name": "h1/www", "address": "127.0.0.11", "port": 443, "servername": "www.lab.test"}]
    served = [{"name": "h1/www", "fingerprint": "AA", "serial": "01", "matches": True, "verified": False,
               "error": "certificate verify failed: unable to get local issuer certificate"}]
    check = role.verify_outcome(targets, served, {"www": {"fingerprint": "AA", "serial": "01"}})["h1"]["www"]
    assert check["ok"] is False
    assert "does not validate against certificates_verify_ca_file for www.lab.test" in check["msg"]
    assert "unable to get local issuer" in check["msg"]


def test_verify_outcome_without_ca_file_is_unchanged():
    targets = [{"name": "h1/www", "address": "127.0.0.11", "port": 443, "servername": "www.lab.test"}]
    served = [{"name": "h1/www", "fingerprint": "AA", "serial": "01", "matches": True, "verified": None}]
    assert role.verify_outcome(targets, served, {"www": {"fingerprint": "AA"}})["h1"]["www"]["ok"] is True


def _pushed(actions):
    return {name: {"failed": False, "endpoint": "x", "changed": True,
                   "certificates": {cert: {"action": action} for cert, action in certs.items()}}
            for name, certs in actions.items()}


def test_rollback_touches_exactly_what_this_run_changed(tmp_path):
    (tmp_path / "www.previous.pem").write_text("x")
    (tmp_path / "api.previous.pem").write_text("x")
    found = _found("h1", "h2", "h3")
    pushed = _pushed({"h1": {"www": "updated", "api": "unchanged"}, "h2": {"www": "unchanged", "api": "unchanged"}})
    plan = role.rollback_plan(pushed, _selected(), str(tmp_path), found)
    assert len(plan) == 1
    assert plan[0]["instances"] == ["h1"] and plan[0]["names"] == ["www"]
    assert plan[0]["endpoints"] == [{"endpoint": "127.0.0.11:9999"}]
    assert plan[0]["certificates"] == [{"path": "/etc/haproxy/certs/www.pem", "state": "present",
                                        "src": str(tmp_path / "www.previous.pem")}]


def test_rollback_groups_instances_by_the_certificates_they_changed(tmp_path):
    (tmp_path / "www.previous.pem").write_text("x")
    (tmp_path / "api.previous.pem").write_text("x")
    pushed = _pushed({"h1": {"www": "updated"}, "h2": {"api": "added"}, "h3": {"www": "updated"}})
    plan = role.rollback_plan(pushed, _selected(), str(tmp_path), _found("h1", "h2", "h3"))
    assert sorted((tuple(group["names"]), tuple(group["instances"])) for group in plan) == [
        (("api",), ("h2",)), (("www",), ("h1", "h3"))]


def test_a_certificate_without_previous_bundle_is_named_and_left(tmp_path):
    plan = role.rollback_plan(_pushed({"h1": {"www": "added"}}), _selected(), str(tmp_path), _found("h1"))
    assert plan == [{"instances": [], "certificates": [], "names": [], "endpoints": [], "missing": ["www"]}]


def test_rolled_back_reads_the_calls_per_endpoint():
    plan = [{"instances": ["h1", "h2"], "names": ["www"],
             "endpoints": [{"endpoint": "127.0.0.11:9999"}, {"endpoint": "127.0.0.12:9999"}]}]
    results = [{"instances": [{"endpoint": "127.0.0.11:9999", "failed": False},
                              {"endpoint": "127.0.0.12:9999", "failed": True, "msg": "cannot connect"}]}]
    assert role.rolled_back(plan, results) == {
        "h1": {"names": ["www"], "failed": False, "msg": ""},
        "h2": {"names": ["www"], "failed": True, "msg": "cannot connect"}}


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def test_keep_previous_only_for_bundles_that_exist(tmp_path):
    (tmp_path / "www.pem").write_text("x")
    assert role.keep_previous_entries(_selected(), str(tmp_path)) == [
        {"certificate": str(tmp_path / "www.pem"), "dest": str(tmp_path / "www.previous.pem")}]


def test_keep_previous_only_when_the_source_holds_another_leaf(tmp_path):
    """A rerun (or a fresh CI job that pulled the store) keeps NAME.previous.pem as it is.

    Before the fix every run copied the current bundle over NAME.previous.pem, so the
    first run after an issuance made the previous bundle the current one (and, with
    the git store, committed that copy).
    """
    store, bundles = tmp_path / "store", tmp_path / "bundles"
    (store / "live" / "www").mkdir(parents=True)
    bundles.mkdir()
    (bundles / "www.pem").write_text(_pem(b"leaf-1") + _pem(b"chain") + "-----BEGIN PRIVATE KEY-----\n")
    (store / "live" / "www" / "fullchain.pem").write_text(_pem(b"leaf-1") + _pem(b"chain"))
    entries = role.bundle_entries(_selected(), "acme", str(bundles), str(store), "/certbot", "/secrets")
    assert role.keep_previous_entries(_selected(), str(bundles), entries) == []
    (store / "live" / "www" / "fullchain.pem").write_text(_pem(b"leaf-2") + _pem(b"chain"))
    assert role.keep_previous_entries(_selected(), str(bundles), entries) == [
        {"certificate": str(bundles / "www.pem"), "dest": str(bundles / "www.previous.pem")}]
    # A source that cannot be read: keep the current bundle (the bundle step reports the source).
    (store / "live" / "www" / "fullchain.pem").unlink()
    assert len(role.keep_previous_entries(_selected(), str(bundles), entries)) == 1


def test_persisted_files_put_back_only_where_this_run_wrote():
    entries = role.persist_plan(_hosts("h1", "h2"), _selected(), "/store")
    plan = [{"names": ["www"]}]
    persisted = {"h1": {"changed": ["/etc/haproxy/certs/www.pem", "/etc/haproxy/certs/api.pem"], "failed": []}}
    back = role.rollback_persist_plan(entries, persisted, plan, "/store")
    assert [(entry["host"], entry["path"], entry["src"]) for entry in back] == [
        ("h1", "/etc/haproxy/certs/www.pem", "/store/www.previous.pem")]


def test_the_store_gets_back_what_was_rolled_back_or_built_this_run(tmp_path):
    for name in ("www", "api"):
        (tmp_path / (name + ".previous.pem")).write_text("x")
    store = str(tmp_path)
    assert role.restore_store_entries([{"names": ["www"]}], store) == [
        {"certificate": store + "/www.previous.pem", "dest": store + "/www.pem"}]
    # The canary could not be reached: nothing rolled back, but the bundle built this run is not current.
    assert role.restore_store_entries([], store, _selected(), {"api": {"changed": True}, "www": {"changed": False}}) == [
        {"certificate": store + "/api.previous.pem", "dest": store + "/api.pem"}]


def test_persist_plan_follows_the_wave_hosts():
    entries = role.persist_plan(_hosts("h1", "h2"), _selected(), "/store", only_hosts=["h2"])
    assert {entry["host"] for entry in entries} == {"h2"}


def test_merge_persisted_joins_the_waves():
    merged = role.merge_persisted({"h1": {"changed": ["a"], "failed": []}},
                                  {"h1": {"changed": ["a", "b"], "failed": []}, "h2": {"changed": [], "failed": ["x"]}})
    assert merged == {"h1": {"changed": ["a", "b"], "failed": []}, "h2": {"changed": [], "failed": ["x"]}}


def test_wave_instances_keep_the_found_order():
    assert list(role.wave_instances(_found("h1", "h2", "h3"), ["h3", "h1"])) == ["h1", "h3"]


def test_the_report_says_rolled_back_and_fails_with_the_reason():
    found = _found("h1", "h2")
    pushed = {"h1": {"failed": False, "changed": True, "msg": "", "endpoint": "x",
                     "certificates": {"www": {"action": "updated", "serial_before": "01", "serial_after": "02"}}}}
    verified = {"h1": {"www": {"ok": False, "serial": "02", "msg": "serves serial 02, which does not validate"}}}
    rollout = {"msg": "The check failed: certificate www on instance h1: serves serial 02, which does not validate.",
               "rolled_back": {"h1": {"names": ["www"], "failed": False, "msg": ""}}}
    outcome = role.report(found, _selected()[:1], pushed, verified, {}, "", rollout)
    rows = {row["name"]: row for row in outcome["instances"]}
    assert rows["h1"]["push"] == "rolled back" and rows["h1"]["certificates"][0]["action"] == "rolled back"
    assert rows["h2"]["push"] == "not run" and not rows["h2"]["failed"]
    assert outcome["failed"]
    assert outcome["msg"].startswith("The check failed: certificate www on instance h1")
    assert "Rolled back: h1 (www)." in outcome["msg"]


def test_the_report_without_rollout_is_as_before():
    found = _found("h1")
    pushed = {"h1": {"failed": False, "changed": False, "msg": "", "endpoint": "x", "certificates": {}}}
    outcome = role.report(found, _selected(), pushed, {}, {})
    assert outcome["failed"] is False and outcome["msg"] == ""
