# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's CA file and CRL file decisions (issue 18): checked variables, endpoints, outcome, verdict, report."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.plugins.plugin_utils import _certificates_role as role
from ansible_collections.ingress.haproxy.plugins.plugin_utils._certificates_role import CertificatesRoleError

NOW = datetime.datetime.now(datetime.timezone.utc)


def _ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _crl(cert, key, next_update_days=7):
    crl = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
           .last_update(NOW - datetime.timedelta(days=2)).next_update(NOW + datetime.timedelta(days=next_update_days))
           .sign(key, hashes.SHA256()))
    return crl.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(name="pki")
def fixture_pki(tmp_path):
    ca1, key1 = _ca("Clients CA 1")
    other, other_key = _ca("Other")
    files = {
        "ca": ca1.public_bytes(serialization.Encoding.PEM),
        "crl": _crl(ca1, key1),
        "crl_expired": _crl(ca1, key1, next_update_days=-1),
        # Names CA 1 as issuer, signed by another key.
        "crl_wrong": (x509.CertificateRevocationListBuilder().issuer_name(ca1.subject).last_update(NOW)
                      .next_update(NOW + datetime.timedelta(days=7)).sign(other_key, hashes.SHA256())
                      .public_bytes(serialization.Encoding.PEM)),
        "big": ca1.public_bytes(serialization.Encoding.PEM) * 4,
        "garbage": b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    }
    del other
    paths = {}
    for name, data in files.items():
        path = tmp_path / (name + ".pem")
        path.write_bytes(data)
        paths[name] = str(path)
    return paths


def _found(*names, process=""):
    return {name: {"name": name, "endpoint": f"127.0.0.{index + 11}:9999", "process": process, "host": name,
                   "verify_host": f"127.0.0.{index + 11}", "verify_port": 443, "cert_dir": "/c", "crt_list": "/l",
                   "canary": False}
            for index, name in enumerate(names)}


def test_no_files_is_an_empty_list():
    assert role.trust_files([], "ca_files") == []
    assert role.trust_files(None, "crl_files") == []
    assert role.trust_files("", "ca_files") == []


def test_good_files_come_back_as_the_modules_take_them(pki):
    assert role.trust_files([{"path": "/etc/haproxy/ca.pem", "src": pki["ca"]}], "ca_files") == [
        {"path": "/etc/haproxy/ca.pem", "src": pki["ca"]}]
    assert role.trust_files([{"path": "/etc/haproxy/crl.pem", "src": pki["crl"]}], "crl_files", pki["ca"],
                            "false", "16384") == [{"path": "/etc/haproxy/crl.pem", "src": pki["crl"]}]


@pytest.mark.parametrize("value, message", [
    ("/etc/ca.pem", r"certificates_ca_files is '/etc/ca.pem': give a list"),
    (["/etc/ca.pem"], r"certificates_ca_files\[0\] is '/etc/ca.pem': give a dictionary"),
    ([{"path": "/etc/ca.pem"}], r"certificates_ca_files\[0\] needs src"),
    ([{"path": "", "src": "/x"}], r"certificates_ca_files\[0\] needs path"),
    ([{"path": "/a", "src": "/x", "ca": "/y"}], r"certificates_ca_files\[0\] has unknown keys ca"),
])
def test_a_bad_shape_is_named(value, message):
    with pytest.raises(CertificatesRoleError, match=message):
        role.trust_files(value, "ca_files")


def test_a_missing_src_fails_before_anything_is_sent(tmp_path):
    with pytest.raises(CertificatesRoleError, match=r"certificates_ca_files\[0\] \(/etc/ca.pem\).*nothing was sent"):
        role.trust_files([{"path": "/etc/ca.pem", "src": str(tmp_path / "missing.pem")}], "ca_files")


def test_a_src_that_does_not_parse_is_named(pki):
    with pytest.raises(CertificatesRoleError, match=r"certificates_ca_files\[1\] \(/b\): certificate #1 does not parse"):
        role.trust_files([{"path": "/a", "src": pki["ca"]}, {"path": "/b", "src": pki["garbage"]}], "ca_files")


def test_a_crl_file_given_as_ca_file_is_refused(pki):
    with pytest.raises(CertificatesRoleError, match="X509 CRL block, not only CERTIFICATE"):
        role.trust_files([{"path": "/a", "src": pki["crl"]}], "ca_files")


def test_the_same_path_twice_is_refused(pki):
    with pytest.raises(CertificatesRoleError, match="listed twice"):
        role.trust_files([{"path": "/a", "src": pki["ca"]}, {"path": "/a", "src": pki["ca"]}], "ca_files")


def test_a_crl_from_the_wrong_issuer_is_refused_only_with_a_ca(pki):
    entries = [{"path": "/crl.pem", "src": pki["crl_wrong"]}]
    with pytest.raises(CertificatesRoleError, match="not signed by any CA of certificates_crl_ca_src"):
        role.trust_files(entries, "crl_files", pki["ca"])
    assert role.trust_files(entries, "crl_files") == entries


def test_an_expired_crl_is_refused_unless_allowed(pki):
    entries = [{"path": "/crl.pem", "src": pki["crl_expired"]}]
    with pytest.raises(CertificatesRoleError, match="past its nextUpdate .*set certificates_crl_allow_expired"):
        role.trust_files(entries, "crl_files", pki["ca"])
    assert role.trust_files(entries, "crl_files", pki["ca"], "yes") == entries


def test_a_bad_crl_ca_src_is_named(pki, tmp_path):
    with pytest.raises(CertificatesRoleError, match="certificates_crl_ca_src"):
        role.trust_files([{"path": "/crl.pem", "src": pki["crl"]}], "crl_files", str(tmp_path / "none.pem"))


def test_a_file_larger_than_the_buffer_is_refused(pki):
    with pytest.raises(CertificatesRoleError, match="more than HAProxy's buffer"):
        role.trust_files([{"path": "/a", "src": pki["big"]}], "ca_files", bufsize=1024)


def test_settings_coerce_crl_allow_expired():
    assert role.settings({"certificates_crl_allow_expired": "yes"}) == {"crl_allow_expired": True}


def test_trust_endpoints_carry_only_endpoint_and_process():
    assert role.trust_endpoints(_found("h1")) == [{"endpoint": "127.0.0.11:9999"}]
    assert role.trust_endpoints(_found("h1", process="@1")) == [{"endpoint": "127.0.0.11:9999", "process": "@1"}]


def _module_result(*entries, msg=""):
    return {"instances": list(entries), "failed": any(entry.get("failed") for entry in entries), "msg": msg}


def test_trust_outcome_per_instance_and_kind():
    found = _found("h1", "h2")
    ca = _module_result(
        {"endpoint": "127.0.0.11:9999", "failed": False, "files": [{"path": "/ca.pem", "changed": True}]},
        {"endpoint": "127.0.0.12:9999", "failed": True, "msg": "connection refused"})
    crl = _module_result(
        {"endpoint": "127.0.0.11:9999", "failed": False, "files": [{"path": "/crl.pem", "changed": False}]},
        {"endpoint": "127.0.0.12:9999", "failed": True, "msg": "connection refused"})
    outcome = role.trust_outcome(found, {"ca_files": ca, "crl_files": crl})
    assert outcome["h1"] == {"ca_files": {"state": "changed", "changed": ["/ca.pem"], "msg": ""},
                             "crl_files": {"state": "unchanged", "changed": [], "msg": ""}}
    assert outcome["h2"]["ca_files"] == {"state": "failed", "changed": [], "msg": "connection refused"}


def test_trust_outcome_leaves_out_a_skipped_kind_and_fails_every_instance_of_a_call_that_failed_as_a_whole():
    outcome = role.trust_outcome(_found("h1"), {"ca_files": {"skipped": True},
                                                "crl_files": {"failed": True, "msg": "CRL #1 does not parse"}})
    assert outcome == {"h1": {"crl_files": {"state": "failed", "changed": [], "msg": "CRL #1 does not parse"}}}


def test_merge_trust_joins_the_waves():
    merged = role.merge_trust({"h1": {"ca_files": {"state": "changed"}}}, {"h2": {"ca_files": {"state": "unchanged"}}})
    assert merged == {"h1": {"ca_files": {"state": "changed"}}, "h2": {"ca_files": {"state": "unchanged"}}}


def test_a_canary_whose_ca_file_push_failed_stops_the_rollout_without_rollback():
    wave = {"kind": "canary", "instances": ["h1"]}
    trust = {"h1": {"ca_files": {"state": "failed", "changed": [], "msg": "transaction on /other.pem"}}}
    verdict = role.wave_verdict(wave, {"h1": {"failed": False, "msg": ""}}, {}, trust)
    assert verdict["stop"] and not verdict["rollback"]
    assert "h1: ca files: transaction on /other.pem." in verdict["msg"]


def test_a_failed_ca_file_elsewhere_does_not_stop_the_rollout():
    wave = {"kind": "wave", "instances": ["h2", "h3"]}
    trust = {"h2": {"crl_files": {"state": "failed", "changed": [], "msg": "refused"}},
             "h1": {"ca_files": {"state": "failed", "changed": [], "msg": "refused"}}}
    verdict = role.wave_verdict(wave, {"h2": {"failed": False}, "h3": {"failed": False}}, {}, trust)
    assert verdict == {"stop": False, "rollback": False, "msg": ""}


def _pushed(changed=False):
    return {"failed": False, "changed": changed, "msg": "", "endpoint": "x", "certificates": {}}


def test_the_report_has_ca_and_crl_rows_and_fails_an_instance_whose_push_failed():
    found = _found("h1", "h2", "h3")
    trust = {"h1": {"ca_files": {"state": "changed", "changed": ["/ca.pem"], "msg": ""},
                    "crl_files": {"state": "unchanged", "changed": [], "msg": ""}},
             "h2": {"ca_files": {"state": "failed", "changed": [], "msg": "refused"},
                    "crl_files": {"state": "unchanged", "changed": [], "msg": ""}}}
    outcome = role.report(found, [], {"h1": _pushed(), "h2": _pushed()}, {}, {}, "", {}, trust,
                          {"ca_files": [{"path": "/ca.pem"}], "crl_files": [{"path": "/crl.pem"}]})
    rows = {row["name"]: row for row in outcome["instances"]}
    assert (rows["h1"]["ca_files"], rows["h1"]["crl_files"], rows["h1"]["failed"]) == ("changed", "unchanged", False)
    assert rows["h1"]["trust_changed"] == ["/ca.pem"]
    assert rows["h2"]["failed"] and rows["h2"]["problems"] == ["ca files: refused"]
    # h3 was never reached (a later wave after a stop).
    assert rows["h3"]["ca_files"] == "not run"
    assert outcome["failed"] and outcome["changed"]
    assert "h2: ca files: refused." in outcome["msg"]
    lines = role.report_lines(outcome, {})
    assert "ok     h1 (127.0.0.11:9999): push unchanged, verify not run, ca files changed, crl files unchanged" in lines
    assert "         CA/CRL files changed: /ca.pem" in lines


def test_the_report_without_ca_or_crl_files_has_no_such_rows():
    outcome = role.report(_found("h1"), [], {"h1": _pushed()}, {}, {}, "", {}, {}, {"ca_files": [], "crl_files": []})
    row = outcome["instances"][0]
    assert (row["ca_files"], row["crl_files"], outcome["changed"]) == ("", "", False)
    assert role.report_lines(outcome, {}) == ["ok     h1 (127.0.0.11:9999): push unchanged, verify not run"]
