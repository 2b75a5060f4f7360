# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The certificates role's decisions, function by function (the role's integration targets run them for real)."""

from __future__ import annotations

import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.plugins.plugin_utils import _certificates_role as role
from ansible_collections.ingress.haproxy.plugins.plugin_utils._certificates_role import CertificatesRoleError

ITEMS = [
    {"name": "www", "domains": ["WWW.lab.test"], "haproxy_path": "/etc/haproxy/certs/www.pem",
     "crt_list": "/etc/haproxy/list.txt", "crt_list_options": "[alpn h2]", "sni_filters": ["www.lab.test"]},
    {"name": "api", "domains": ["api.lab.test"], "haproxy_path": "/etc/haproxy/certs/api.pem"},
]


@pytest.mark.parametrize("text, expected", [("false", False), ("true", True), ("no", False), ("yes", True),
                                            ("False", False), ("YES", True), (False, False), (True, True)])
def test_booleans_passed_as_text_mean_what_they_say(text, expected):
    assert role.settings({"certificates_force_renew": text, "certificates_preflight": text}) == {
        "force_renew": expected, "preflight": expected}


@pytest.mark.parametrize("text, expected", [("true", True), ("false", False), (True, True)])
def test_allow_no_instances_is_a_coerced_boolean(text, expected):
    assert role.settings({"certificates_allow_no_instances": text}) == {"allow_no_instances": expected}


def test_numbers_passed_as_text_are_numbers():
    assert role.settings({"certificates_renew_days": "30", "certificates_status_fail_days": 7}) == {
        "renew_days": 30, "status_fail_days": 7}


def test_nsupdate_timeout_is_passed_only_when_it_is_not_nsupdates_default():
    # nsupdate's timeout option needs community.general 13; the default timeout must work on the declared floor.
    assert role.settings({"certificates_rfc2136_timeout": "10"})["rfc2136_timeout_option"] is None
    assert role.settings({"certificates_rfc2136_timeout": 3})["rfc2136_timeout_option"] == 3


def test_bad_values_are_named_all_at_once():
    with pytest.raises(CertificatesRoleError) as failure:
        role.settings({"certificates_force_renew": "maybe", "certificates_runtime_port": "0",
                       "certificates_verify_timeout": "soon"})
    message = str(failure.value)
    assert "certificates_force_renew is 'maybe'" in message
    assert "certificates_runtime_port is 0, less than the smallest allowed value 1" in message
    assert "certificates_verify_timeout is 'soon'" in message
    assert "Nothing was changed" in message


@pytest.mark.parametrize("value, expected", [
    ("hostmaster@example.com", ["mailto:hostmaster@example.com"]),
    ("mailto:hostmaster@example.com", ["mailto:hostmaster@example.com"]),
    (["a@example.com", "mailto:b@example.com"], ["mailto:a@example.com", "mailto:b@example.com"]),
    ("", []),
])
def test_acme_contact_accepts_an_address_a_mailto_uri_or_a_list(value, expected):
    assert role.acme_contact(value) == expected


@pytest.mark.parametrize("value", ["not-an-address", ["ok@example.com", 3], "mailto:"])
def test_acme_contact_refuses_what_is_not_an_address(value):
    with pytest.raises(CertificatesRoleError, match="certificates_acme_contact"):
        role.acme_contact(value)


def test_terms_of_service_must_be_agreed_when_the_ca_has_them():
    directory = {"newOrder": "x", "meta": {"termsOfService": "https://ca.test/terms.pdf"}}
    problem = role.acme_terms_problem(directory, False, "https://ca.test/dir")
    assert "certificates_acme_terms_agreed" in problem and "https://ca.test/terms.pdf" in problem
    assert role.acme_terms_problem(directory, True, "https://ca.test/dir") == ""
    assert role.acme_terms_problem({"newOrder": "x"}, False, "https://ca.test/dir") == ""


def test_select_normalises_and_picks_only():
    selected = role.select(ITEMS, ["api"], "acme")
    assert [item["name"] for item in selected] == ["api"]
    www = role.select(ITEMS, [], "acme")[0]
    assert www["domains"] == ["www.lab.test"]
    assert www["crt_list_options"] == "alpn h2"
    assert www["state"] == "present"


@pytest.mark.parametrize("items, only, message", [
    ([], [], "certificates_items is empty"),
    ([{"name": "a b", "haproxy_path": "/x", "domains": ["a"]}], [], "certificates_items[0] (a b): name must be"),
    ([{"name": "a", "haproxy_path": "x", "domains": ["a"]}], [], "haproxy_path must be an absolute path"),
    ([{"name": "a", "haproxy_path": "/x"}], [], "needs a non-empty domains list"),
    ([{"name": "a", "haproxy_path": "/x", "domains": ["a"], "state": "gone"}], [], "state must be present or absent"),
    (ITEMS + [dict(ITEMS[0])], [], "name www is already used by certificates_items[0]"),
    (ITEMS, ["nope"], "certificates_only names nope"),
])
def test_select_refuses_bad_lists_naming_the_entry(items, only, message):
    with pytest.raises(CertificatesRoleError) as failure:
        role.select(items, only, "acme")
    assert message in str(failure.value)


def test_key_types_make_one_certificate_per_type_with_its_own_path_key_and_handshake(tmp_path):
    dual = {"name": "dual", "domains": ["dual.lab.test"], "haproxy_path": "/c/dual.pem", "crt_list": "/c/list.txt",
            "sni_filters": ["dual.lab.test"], "key_types": ["ec256", "rsa2048"],
            "haproxy_paths": {"rsa2048": "/c/dual-rsa.pem"}}
    selected = role.select(ITEMS + [dual], [], "acme")
    pair = [item for item in selected if item["group"] == "dual"]
    assert [(item["name"], item["haproxy_path"], item["key_type"], item["key_curve"], item["key_size"],
             item["served_key_type"]) for item in pair] == [
        ("dual.ec256", "/c/dual.pem.ecdsa", "ECC", "secp256r1", None, "EC"),
        ("dual.rsa2048", "/c/dual-rsa.pem", "RSA", "", 2048, "RSA")]
    # The same names, crt-list and SNI filters for both.
    assert {(tuple(item["domains"]), item["crt_list"], tuple(item["sni_filters"])) for item in pair} == {
        (("dual.lab.test",), "/c/list.txt", ("dual.lab.test",))}
    # certificates_only selects the pair by the item's name, or one of it.
    assert [item["name"] for item in role.select(ITEMS + [dual], ["dual"], "acme")] == ["dual.ec256", "dual.rsa2048"]
    assert [item["name"] for item in role.select(ITEMS + [dual], ["dual.rsa2048"], "acme")] == ["dual.rsa2048"]
    # Each is due with its own key type; an RSA certificate where ECDSA is wanted is renewed.
    _write_certificate(tmp_path / "live" / "dual.rsa2048", ["dual.lab.test"], 60, days_used=30)
    decisions = role.renewal_decisions(pair, str(tmp_path), "ECC", "secp256r1", None, False)
    assert decisions["dual.ec256"]["reason"] == "no certificate yet"
    assert (decisions["dual.ec256"]["key_type"], decisions["dual.ec256"]["key_curve"]) == ("ECC", "secp256r1")
    assert decisions["dual.rsa2048"]["reason"] == "key type changed: ECC:secp256r1 -> RSA"
    assert (decisions["dual.rsa2048"]["key_type"], decisions["dual.rsa2048"]["key_size"]) == ("RSA", 2048)
    # Verify asks as a client that can use only that kind of key.
    found = {"h1": {"verify_host": "127.0.0.11", "verify_port": 443}}
    targets = role.handshake_targets(found, pair, {})
    assert [(target["name"], target["servername"], target["key_type"]) for target in targets] == [
        ("h1/dual.ec256", "dual.lab.test", "EC"), ("h1/dual.rsa2048", "dual.lab.test", "RSA")]
    assert "key_type" not in role.handshake_targets(found, selected[:1], {})[0]


def test_challenge_zone_must_be_a_zone_name():
    item = {"name": "www", "domains": ["www.lab.test"], "haproxy_path": "/c/www.pem", "challenge_zone": ["a.test"]}
    with pytest.raises(CertificatesRoleError, match=re.escape("challenge_zone must be a DNS zone name, not ['a.test']")):
        role.select([item], [], "acme")


@pytest.mark.parametrize("change, message", [
    ({"key_types": ["ed25519"]}, "key_types: unknown ed25519 (known: ec256, ec384, rsa2048, rsa3072, rsa4096)"),
    ({"key_types": ["ec256", "ec256"]}, "key_types lists a type twice"),
    ({"key_types": ["ec256", "ec384"]}, "key types ec256 and ec384 would both be /c/dual.pem.ecdsa: name one of them"),
    ({"key_types": ["ec256"], "haproxy_paths": {"rsa2048": "/x"}}, "haproxy_paths names rsa2048, not in key_types"),
    ({"haproxy_paths": {"rsa2048": "/x"}}, "haproxy_paths is set but key_types is empty"),
    ({"key_types": ["rsa2048"], "haproxy_paths": {"rsa2048": "x.pem"}}, "haproxy_paths.rsa2048 must be an absolute path"),
])
def test_key_types_mistakes_are_named(change, message):
    item = dict({"name": "dual", "domains": ["dual.lab.test"], "haproxy_path": "/c/dual.pem"}, **change)
    with pytest.raises(CertificatesRoleError, match=re.escape(message)):
        role.select([item], [], "acme")
    with pytest.raises(CertificatesRoleError, match="key_types needs certificates_source acme"):
        role.select([dict(item, key_types=["ec256"], haproxy_paths={})], [], "files")


class _FakeZones:
    """Stands in for the RFC 2136 server's answers (CNAMEs and zones); the real bind9 runs in the lab selftest."""

    def __init__(self, cnames, zones):
        self.cnames, self.zones, self.asked_system = cnames, zones, []

    def target(self, record, ask_system=True):
        from ansible_collections.ingress.haproxy.plugins.plugin_utils._challenge_dns import ChallengeDnsError
        chain = [record]
        while chain[-1] in self.cnames:
            if self.cnames[chain[-1]] in chain:
                raise ChallengeDnsError(f"{record} is a CNAME loop")
            chain.append(self.cnames[chain[-1]])
        if ask_system:
            self.asked_system.append(record)
        return chain

    def zone_of(self, name):
        return next((zone for zone in self.zones if name.rstrip(".").endswith(zone)), None)


def test_challenge_plan_follows_cnames_to_their_zone_and_names_what_cannot_be_written():
    items = ITEMS + [
        {"name": "d", "domains": ["*.delegated.lab.test", "delegated.lab.test"], "haproxy_path": "/d"},
        {"name": "o", "domains": ["*.other.test"], "haproxy_path": "/o"},
        {"name": "z", "domains": ["z.lab.test"], "haproxy_path": "/z", "challenge_zone": "Lab.Test."},
    ]
    selected = role.select(items, [], "acme")
    assert selected[-1]["challenge_zone"] == "lab.test"
    zones = _FakeZones({"_acme-challenge.delegated.lab.test.": "delegated.challenges.test.",
                        "_acme-challenge.z.lab.test.": "z.challenges.test."}, ["challenges.test"])
    plan = role.challenge_plan(selected, ["www", "d", "o", "z"], "127.0.0.1", 53, "lab.test.", 5, dns_client=zones)
    assert plan["records"]["_acme-challenge.www.lab.test."] == {
        "target": "_acme-challenge.www.lab.test.", "zone": "lab.test", "chain": ["_acme-challenge.www.lab.test."]}
    assert plan["records"]["_acme-challenge.delegated.lab.test."]["target"] == "delegated.challenges.test."
    assert plan["records"]["_acme-challenge.delegated.lab.test."]["zone"] == "challenges.test"
    assert plan["problem"] == (
        "*.other.test not in zone lab.test (certificates_rfc2136_zone) and _acme-challenge.other.test. is no CNAME "
        "into another zone: its _acme-challenge record cannot be written there; _acme-challenge.z.lab.test. -> "
        "z.challenges.test. does not end in zone lab.test (certificates_items entry z, challenge_zone). "
        "Nothing was ordered.")
    # Only the name outside the RFC 2136 zone was asked of the system resolver.
    assert zones.asked_system == ["_acme-challenge.other.test."]
    # Only due certificates are looked up.
    assert role.challenge_plan(selected, ["www"], "127.0.0.1", 53, "lab.test", 5, dns_client=zones)["problem"] == ""
    loops = _FakeZones({"_acme-challenge.www.lab.test.": "a.challenges.test.",
                        "a.challenges.test.": "_acme-challenge.www.lab.test."}, [])
    assert "_acme-challenge.www.lab.test. is a CNAME loop" in role.challenge_plan(
        selected, ["www"], "127.0.0.1", 53, "lab.test", 5, dns_client=loops)["problem"]
    nowhere = _FakeZones({"_acme-challenge.www.lab.test.": "www.elsewhere.test."}, [])
    assert "holds no zone for www.elsewhere.test.; set challenge_zone in certificates_items entry www" in (
        role.challenge_plan(selected, ["www"], "127.0.0.1", 53, "lab.test", 5, dns_client=nowhere)["problem"])


def _write_certificate(directory, names, days_left, curve=ec.SECP256R1(), days_used=1):
    key = ec.generate_private_key(curve)
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=days_used))
        .not_valid_after(now + datetime.timedelta(days=days_left))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(b"key")


def _decide(store, renew_days=30, force=False, items=None, ratio=role.DEFAULT_RENEW_BEFORE_RATIO):
    selected = role.select(items or ITEMS, [], "acme")
    return role.renewal_decisions(selected, str(store), "ECC", "secp256r1", renew_days, force, ratio)


def test_renewal_decisions_say_why_by_name(tmp_path):
    _write_certificate(tmp_path / "live" / "www", ["www.lab.test"], 60)
    _write_certificate(tmp_path / "live" / "api", ["api.lab.test"], 10)
    decisions = _decide(tmp_path)
    assert decisions["www"]["due"] is False and decisions["www"]["reason"] == ""
    assert 59 <= decisions["www"]["days_left"] <= 60
    assert decisions["api"]["due"] is True
    assert "fewer than certificates_renew_days (30)" in decisions["api"]["reason"]


def test_renewal_follows_the_lifetime_when_renew_days_is_unset(tmp_path):
    # A 6-day certificate (a short-lived profile) with 4 days left is current; with 1 day left it is due.
    _write_certificate(tmp_path / "live" / "www", ["www.lab.test"], 4, days_used=2)
    _write_certificate(tmp_path / "live" / "api", ["api.lab.test"], 1, days_used=5)
    decisions = _decide(tmp_path, renew_days=None)
    assert decisions["www"]["due"] is False
    assert decisions["www"]["note"] == ("67% of 6 days left; renewed with fewer than 2 days left "
                                        "(certificates_renew_before_ratio 0.33)")
    assert decisions["api"]["due"] is True
    assert decisions["api"]["reason"] == "17% of 6 days left, less than certificates_renew_before_ratio (0.33)"
    # The old fixed 30 days would renew both on every run.
    assert all(decision["due"] for decision in _decide(tmp_path, renew_days=30).values())


def test_renew_days_when_set_wins_over_the_ratio(tmp_path):
    # 60 of 90 days left: current by the ratio, due by certificates_renew_days=61, current by 30.
    _write_certificate(tmp_path / "live" / "www", ["www.lab.test"], 60, days_used=30)
    _write_certificate(tmp_path / "live" / "api", ["api.lab.test"], 60, days_used=30)
    assert not any(decision["due"] for decision in _decide(tmp_path, renew_days=None).values())
    assert _decide(tmp_path, renew_days=None, ratio=0.7)["www"]["reason"].startswith("67% of 90 days left")
    decisions = _decide(tmp_path, renew_days=61, ratio=0.7)
    assert decisions["www"]["reason"].endswith("fewer than certificates_renew_days (61)")
    decisions = _decide(tmp_path, renew_days=30, ratio=0.7)
    assert decisions["www"]["due"] is False
    assert decisions["www"]["note"] == "renewed with fewer than 30 days left (certificates_renew_days)"


def _ari_result(name, serial, start, end, retry_after=None, url=None):
    info = {"suggestedWindow": {"start": start, "end": end}}
    if retry_after:
        info["retryAfter"] = retry_after
    if url:
        info["explanationURL"] = url
    return {"decision": {"name": name, "serial": serial}, "renewal_info": info, "changed": False}


def _ari_decide(store, now, answers=None, unasked=""):
    selected = role.select(ITEMS, [], "acme")
    return role.renewal_decisions(selected, str(store), "ECC", "secp256r1", None, False, 0.33, now=now, ari=True,
                                  ari_answers_now=answers, ari_unasked=unasked)


def test_ari_asks_the_ca_then_renews_inside_its_window_with_60_days_left(tmp_path):
    # 60 of 90 days left: current by the ratio. The CA's window has opened (a mass revocation, say).
    _write_certificate(tmp_path / "live" / "www", ["www.lab.test"], 60, days_used=30)
    _write_certificate(tmp_path / "live" / "api", ["api.lab.test"], 60, days_used=30)
    now = datetime.datetime.now(datetime.timezone.utc)
    first = _ari_decide(tmp_path, now)
    assert first["www"]["ari_ask"] and first["api"]["ari_ask"] and not first["www"]["due"]
    answers = role.ari_answers([
        _ari_result("www", first["www"]["serial"], "2020-01-01T00:00:00Z", "2020-01-02T00:00:00.123456789Z",
                    url="https://ca.example/incident"),
        _ari_result("api", first["api"]["serial"], "2099-01-01T00:00:00Z", "2099-01-03T00:00:00Z",
                    retry_after="2099-01-01T06:00:00+00:00"),
    ], now=now)
    assert answers["api"]["next_ask"] == "2099-01-01T06:00:00Z"
    # No Retry-After: asked again after 6 hours.
    assert abs(role._parse_time(answers["www"]["next_ask"]) - now - datetime.timedelta(hours=6)).total_seconds() < 1
    second = _ari_decide(tmp_path, now, answers)
    assert second["www"]["due"] and second["www"]["replaces"] and not second["www"]["ari_ask"]
    assert second["www"]["reason"] == ("inside the CA's renewal window (ARI) 2020-01-01 00:00 UTC to "
                                       "2020-01-02 00:00 UTC (the CA explains: https://ca.example/incident)")
    assert not second["api"]["due"] and not second["api"]["replaces"]
    assert second["api"]["note"].startswith("67% of 90 days left; renewed with fewer than 29.7 days left "
                                            "(certificates_renew_before_ratio 0.33); ARI window opens "
                                            "2099-01-01 00:00 UTC, renewing at 2099-01-0")
    assert second["api"]["note"].endswith("(asked now)")


def test_ari_answer_kept_until_the_cas_retry_after(tmp_path):
    _write_certificate(tmp_path / "live" / "www", ["www.lab.test"], 60, days_used=30)
    now = datetime.datetime.now(datetime.timezone.utc)
    serial = _ari_decide(tmp_path, now)["www"]["serial"]
    answers = role.ari_answers([_ari_result("www", serial, "2099-01-01T00:00:00Z", "2099-01-03T00:00:00Z",
                                            retry_after=(now + datetime.timedelta(hours=2)).isoformat())], now=now)
    entries = role.ari_store_entries(answers, str(tmp_path))
    assert [entry["path"] for entry in entries] == [str(tmp_path / "ari" / "www.json")]
    (tmp_path / "ari").mkdir()
    (tmp_path / "ari" / "www.json").write_text(entries[0]["content"])
    # Within the Retry-After: decided from the kept answer, nothing asked.
    kept = _ari_decide(tmp_path, now + datetime.timedelta(hours=1))["www"]
    assert not kept["ari_ask"] and not kept["due"]
    assert "ARI window opens 2099-01-01 00:00 UTC" in kept["note"]
    assert "asked again after" in kept["note"] and "(the CA's Retry-After)" in kept["note"]
    # Past it: asked again. For another certificate (another serial) the answer is not used.
    assert _ari_decide(tmp_path, now + datetime.timedelta(hours=3))["www"]["ari_ask"]
    _write_certificate(tmp_path / "live" / "www", ["www.lab.test"], 60, days_used=30)
    assert _ari_decide(tmp_path, now + datetime.timedelta(hours=1))["www"]["ari_ask"]


def test_ari_failures_and_a_ca_without_it_leave_the_lifetime_rule(tmp_path):
    _write_certificate(tmp_path / "live" / "www", ["www.lab.test"], 60, days_used=30)
    _write_certificate(tmp_path / "live" / "api", ["api.lab.test"], 10, days_used=80)
    now = datetime.datetime.now(datetime.timezone.utc)
    serial = _ari_decide(tmp_path, now)["www"]["serial"]
    # A due certificate is not asked; the CA's answer cannot make it current.
    assert not _ari_decide(tmp_path, now)["api"]["ari_ask"]
    failed = role.ari_answers([{"decision": {"name": "www", "serial": serial}, "failed": True,
                                "msg": "404 Not Found"}], now=now)
    assert role.ari_store_entries(failed, str(tmp_path)) == []
    www = _ari_decide(tmp_path, now, failed)["www"]
    assert not www["due"] and www["note"].endswith("; the CA's renewal information (ARI) could not be read: 404 Not Found")
    bad = role.ari_answers([_ari_result("www", serial, "2099-01-03T00:00:00Z", "2099-01-01T00:00:00Z")], now=now)
    assert "unusable renewal information (the window ends before it starts)" in bad["www"]["problem"]
    www = _ari_decide(tmp_path, now, {}, unasked="the CA offers no renewal information (ARI)")["www"]
    assert www["note"].endswith("; the CA offers no renewal information (ARI)") and not www["replaces"]
    # ARI off: neither asked nor mentioned.
    selected = role.select(ITEMS, [], "acme")
    off = role.renewal_decisions(selected, str(tmp_path), "ECC", "secp256r1", None, False, 0.33, now=now)
    assert not off["www"]["ari_ask"] and "ARI" not in off["www"]["note"]


def test_ari_unavailable_says_why_the_ca_is_not_asked(monkeypatch):
    assert role.ari_unavailable({"status": 200, "json": {"newOrder": "x"}}) == (
        "the CA offers no renewal information (ARI)")
    assert role.ari_unavailable({"status": -1, "msg": "refused"}) == (
        "the CA was not asked for renewal information (ARI): its directory did not answer (HTTP status -1)")
    # community.crypto before 2.20 has no acme_ari_info: the run says so instead of failing to load the task.
    monkeypatch.setattr(role, "ARI_MODULE", "community.crypto.no_such_module_here")
    assert role.ari_unavailable({"status": 200, "json": {"newOrder": "x", "renewalInfo": "y"}}).startswith(
        "the CA offers renewal information (ARI) but the installed community.crypto has no "
        "community.crypto.no_such_module_here (2.20.0 or later asks it")


def test_ari_moment_spreads_over_the_window_and_stays_put():
    start = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
    end = start + datetime.timedelta(days=2)
    moments = {role._ari_moment(f"{serial:040X}", start, end) for serial in range(200)}
    assert all(start <= moment <= end for moment in moments)
    assert len(moments) == 200 and max(moments) - min(moments) > datetime.timedelta(days=1.5)
    assert role._ari_moment("0ABC", start, end) == role._ari_moment("0ABC", start, end)


def test_renewal_settings_unset_days_and_a_ratio_between_0_and_1():
    assert role.settings({"certificates_renew_days": "", "certificates_renew_before_ratio": "0.5"}) == {
        "renew_days": None, "renew_before_ratio": 0.5}
    assert role.settings({"certificates_renew_days": "30", "certificates_renew_before_ratio": 0.33}) == {
        "renew_days": 30, "renew_before_ratio": 0.33}
    for bad in (0, 1, "1.5", "a third", True, None):
        with pytest.raises(role.CertificatesRoleError, match="certificates_renew_before_ratio"):
            role.settings({"certificates_renew_before_ratio": bad})
    with pytest.raises(role.CertificatesRoleError, match="certificates_renew_days is 'soon'"):
        role.settings({"certificates_renew_days": "soon"})


def test_acme_profile_problem_names_the_variable_and_what_the_ca_offers():
    offering = {"newOrder": "x", "meta": {"profiles": {"classic": "…", "shortlived": "…"}}}
    assert role.acme_profile_problem(offering, "shortlived", "https://ca/dir") == ""
    assert role.acme_profile_problem({"newOrder": "x"}, "", "https://ca/dir") == ""
    assert role.acme_profile_problem(offering, "tlsserver", "https://ca/dir") == (
        "certificates_acme_profile is 'tlsserver', which the ACME CA at https://ca/dir does not offer "
        "(it offers classic, shortlived). Nothing was ordered.")
    for directory in ({"newOrder": "x"}, {"meta": {}}, {"meta": {"profiles": {}}}, None):
        assert "offers no profiles" in role.acme_profile_problem(directory, "shortlived", "https://ca/dir")


def test_acme_eab_problem_names_the_variables_and_never_the_key():
    requiring = {"newOrder": "x", "meta": {"externalAccountRequired": True}}
    assert role.acme_eab_problem(requiring, "kid-1", "c2VjcmV0", "https://ca/dir") == ""
    assert role.acme_eab_problem({"newOrder": "x"}, "", "", "https://ca/dir") == ""
    assert role.acme_eab_problem({"meta": {"externalAccountRequired": False}}, "", "", "https://ca/dir") == ""
    assert role.acme_eab_problem(requiring, "", "", "https://ca/dir") == (
        "the ACME CA at https://ca/dir requires External Account Binding: set certificates_acme_eab_kid and "
        "certificates_acme_eab_hmac_key (the key ID and MAC key your CA account shows). Nothing was ordered.")
    half = role.acme_eab_problem({"newOrder": "x"}, "", "c2VjcmV0", "https://ca/dir")
    assert half.startswith("certificates_acme_eab_hmac_key is set but certificates_acme_eab_kid is empty")
    assert "c2VjcmV0" not in half
    assert role.acme_eab_problem(None, "kid-1", "", "https://ca/dir").startswith(
        "certificates_acme_eab_kid is set but certificates_acme_eab_hmac_key is empty")


def test_renewal_is_forced_only_when_asked(tmp_path):
    # The trap: -e certificates_force_renew=false forced a renewal. settings() makes it a real False.
    _write_certificate(tmp_path / "live" / "www", ["www.lab.test"], 60)
    _write_certificate(tmp_path / "live" / "api", ["api.lab.test"], 60)
    force = role.settings({"certificates_force_renew": "false"})["force_renew"]
    assert not any(decision["due"] for decision in _decide(tmp_path, force=force).values())
    force = role.settings({"certificates_force_renew": "yes"})["force_renew"]
    assert all(decision["reason"] == "forced (certificates_force_renew)" for decision in _decide(tmp_path, force=force).values())


def test_renewal_sees_missing_files_changed_names_and_key_type(tmp_path):
    _write_certificate(tmp_path / "live" / "www", ["old.lab.test"], 60)
    _write_certificate(tmp_path / "live" / "api", ["api.lab.test"], 60, curve=ec.SECP384R1())
    decisions = _decide(tmp_path)
    assert decisions["www"]["reason"] == "names changed: old.lab.test -> www.lab.test"
    assert decisions["api"]["reason"] == "key type changed: ECC:secp384r1 -> ECC:secp256r1"
    assert _decide(tmp_path / "empty")["www"]["reason"] == "no certificate yet"


def test_absent_certificates_are_not_renewed_or_bundled(tmp_path):
    items = [dict(ITEMS[0], state="absent"), ITEMS[1]]
    assert list(_decide(tmp_path, items=items)) == ["api"]
    entries = role.bundle_entries(role.select(items, [], "acme"), "acme", "/b", "/s", "/c", "/t")
    assert entries == [{"dest": "/b/api.pem", "fullchain": "/s/live/api/fullchain.pem",
                        "privatekey": "/s/live/api/privkey.pem"}]


def test_challenge_records_merge_values_per_record():
    orders = [{"challenge_data_dns": {"_acme-challenge.www.lab.test": ["a"]}},
              {"challenge_data_dns": {"_acme-challenge.www.lab.test.": ["b", "a"]}}, {"failed": True}]
    assert role.challenge_records(orders, None, "lab.test") == [
        {"record": "_acme-challenge.www.lab.test.", "zone": "lab.test", "values": ["a", "b"]}]
    # Delegated: written at the CNAME target, in its zone; two names delegated to one target share it.
    plan = {"records": {"_acme-challenge.www.lab.test.": {"target": "t.challenges.test.", "zone": "challenges.test"}}}
    orders.append({"challenge_data_dns": {"_acme-challenge.api.lab.test": ["c"]}})
    assert role.challenge_records(orders, plan, "lab.test") == [
        {"record": "t.challenges.test.", "zone": "challenges.test", "values": ["a", "b"]},
        {"record": "_acme-challenge.api.lab.test.", "zone": "lab.test", "values": ["c"]}]


def test_bundles_are_keyed_by_name_from_the_dest_not_the_position():
    selected = role.select(ITEMS, [], "acme")
    entries = role.bundle_read_entries(selected, "/b")
    result = {"bundles": [{"dest": "/b/api.pem", "serial": "02", "fingerprint": "F2", "names": ["api.lab.test"]},
                          {"dest": "/b/www.pem", "serial": "01", "fingerprint": "F1", "names": ["www.lab.test"]}]}
    found = role.bundles(selected, "/b", result, entries)
    assert found["www"]["serial"] == "01" and found["api"]["serial"] == "02"


def test_a_refused_bundle_is_named_and_the_others_are_left_to_read_again():
    selected = role.select(ITEMS, [], "acme")
    entries = role.bundle_read_entries(selected, "/b")
    result = {"failed": True, "msg": "1 of 2 invalid", "errors": [{"index": 1, "dest": "/b/api.pem", "msg": "bad"}]}
    found = role.bundles(selected, "/b", result, entries)
    assert found == {"api": {"dest": "/b/api.pem", "error": "bad"}}
    assert role.bundle_read_entries(selected, "/b", found.keys()) == [{"certificate": "/b/www.pem", "dest": "/b/www.pem"}]
    assert role.bundle_failure(selected, result, entries, "acme") == "No bundle was written (source acme): api: bad"


HOSTS = {"h1": {"address": "127.0.0.11", "cert_dir": "/srv/h1", "crt_list": "/srv/h1/list.txt",
                "runtime_port": None, "verify_port": 8443},
         "h2": {"address": "127.0.0.12", "cert_dir": "", "crt_list": "", "runtime_port": 9998, "verify_port": None}}


def test_instances_from_the_service_take_their_host_settings():
    found = role.instances([], ["127.0.0.11", "127.0.0.12", "::1"], HOSTS, 9999, 443)
    assert list(found) == ["h1", "h2", "[::1]:9999"]
    assert found["h1"] == {"name": "h1", "endpoint": "127.0.0.11:9999", "process": "", "host": "h1",
                           "verify_host": "127.0.0.11", "verify_port": 8443, "cert_dir": "/srv/h1",
                           "crt_list": "/srv/h1/list.txt", "canary": False}
    assert found["h2"]["endpoint"] == "127.0.0.12:9998" and found["h2"]["verify_port"] == 443
    assert found["[::1]:9999"]["verify_host"] == "::1"


def test_instances_from_endpoints_are_parsed_by_the_runtime_api_client():
    found = role.instances(["/run/haproxy.sock", {"endpoint": "tcp:127.0.0.11:9999", "process": "@1"}], [], HOSTS, 1, 443)
    assert found["/run/haproxy.sock"]["verify_host"] == "127.0.0.1"
    assert found["h1"]["process"] == "@1"
    with pytest.raises(CertificatesRoleError, match=r"certificates_endpoints\[0\]: .*port"):
        role.instances(["127.0.0.1:http"], [], HOSTS, 1, 443)
    with pytest.raises(CertificatesRoleError, match="instance name a is used twice"):
        role.instances([{"endpoint": "127.0.0.1:1", "name": "a"}, {"endpoint": "127.0.0.2:1", "name": "a"}], [], {}, 1, 1)


def test_push_outcome_is_matched_by_endpoint_and_path_not_position():
    selected = role.select(ITEMS, [], "acme")
    found = role.instances([], ["127.0.0.11", "127.0.0.12"], HOSTS, 9999, 443)
    result = {"instances": [
        {"endpoint": "127.0.0.12:9998", "failed": True, "msg": "cannot connect"},
        {"endpoint": "127.0.0.11:9999", "failed": False, "certificates": [
            {"path": "/srv/h1/api.pem", "action": "unchanged", "before": {"serial": "02"}, "after": {"serial": "02"}},
            {"path": "/srv/h1/www.pem", "action": "updated", "before": {"serial": "01"}, "after": {"serial": "03"}},
        ]},
    ]}
    outcome = role.push_outcome(found, selected, result)
    assert outcome["h1"]["certificates"]["www"]["serial_before"] == "01"
    assert outcome["h1"]["certificates"]["www"]["serial_after"] == "03"
    assert outcome["h1"]["certificates"]["api"]["action"] == "unchanged"
    assert outcome["h1"]["changed"] is True and outcome["h1"]["failed"] is False
    assert outcome["h2"] == {"endpoint": "127.0.0.12:9998", "failed": True, "msg": "cannot connect", "changed": False,
                             "certificates": {}}
    report = role.report(found, selected, outcome, {}, {})
    assert report["failed"] is True
    assert report["msg"] == "1 of 2 instances failed (h2): h2: cannot connect."


def test_a_run_with_no_instance_says_so_and_does_not_fail():
    selected = role.select(ITEMS, [], "acme")
    persisted = {"h1": {"changed": ["/srv/h1/www.pem"], "failed": []}}
    report = role.report({}, selected, {}, {}, persisted, "tasks.haproxy")
    assert report["failed"] is False and report["instances"] == []
    assert report["note"].startswith("No HAProxy instance is running: tasks.haproxy has no address")
    lines = role.report_lines(report, persisted)
    assert lines[0] == report["note"] and "Nothing was pushed or verified." in lines[0]
    assert lines[1] == "ok     host h1: wrote /srv/h1/www.pem"


def test_a_run_that_did_not_look_for_instances_has_no_note():
    # A persist-only run finds no instance because it does not look for any.
    report = role.report({}, role.select(ITEMS, [], "acme"), {}, {}, {})
    assert report["note"] == "" and role.report_lines(report, {}) == []


def test_push_endpoints_and_certificates_carry_what_each_instance_needs():
    found = role.instances([], ["127.0.0.11"], HOSTS, 9999, 443)
    assert role.push_endpoints(found) == [{"endpoint": "127.0.0.11:9999", "cert_dir": "/srv/h1",
                                           "crt_list": "/srv/h1/list.txt"}]
    items = [ITEMS[0], dict(ITEMS[1], state="absent")]
    assert role.push_certificates(role.select(items, [], "acme"), "/b") == [
        {"path": "/etc/haproxy/certs/www.pem", "state": "present", "src": "/b/www.pem",
         "crt_list": "/etc/haproxy/list.txt", "crt_list_options": "alpn h2", "sni_filters": ["www.lab.test"]},
        {"path": "/etc/haproxy/certs/api.pem", "state": "absent"},
    ]


def test_persist_plan_maps_the_cert_dir_and_writes_the_modules_crt_list_line():
    plan = role.persist_plan(HOSTS, role.select(ITEMS, ["www"], "acme"), "/b")
    assert plan[0] == {"host": "h1", "name": "www", "state": "present", "path": "/srv/h1/www.pem",
                       "crt_list": "/srv/h1/list.txt", "line": "/srv/h1/www.pem [alpn h2] www.lab.test",
                       "line_regexp": r"^\s*/srv/h1/www\.pem(\s|$)", "src": "/b/www.pem",
                       "kind": "certificate", "mode": "0600"}
    assert plan[1]["path"] == "/etc/haproxy/certs/www.pem" and plan[1]["crt_list"] == "/etc/haproxy/list.txt"


TRUST = {"ca_files": [{"path": "/etc/haproxy/clients-ca.pem", "src": "/pki/ca.pem"}],
         "crl_files": [{"path": "/etc/haproxy/clients-crl.pem", "src": "/pki/crl.pem"}]}


def test_persist_plan_writes_the_ca_and_crl_files_at_their_path_on_every_host_world_readable():
    plan = role.persist_plan(HOSTS, role.select(ITEMS, ["www"], "acme"), "/b", trust=TRUST)
    trust = [entry for entry in plan if entry["kind"] != "certificate"]
    # One name for every instance: HAProxy knows the file by its path, so no cert_dir mapping.
    assert [(e["host"], e["kind"], e["path"], e["src"], e["mode"], e["crt_list"]) for e in trust] == [
        ("h1", "ca_files", "/etc/haproxy/clients-ca.pem", "/pki/ca.pem", "0644", ""),
        ("h1", "crl_files", "/etc/haproxy/clients-crl.pem", "/pki/crl.pem", "0644", ""),
        ("h2", "ca_files", "/etc/haproxy/clients-ca.pem", "/pki/ca.pem", "0644", ""),
        ("h2", "crl_files", "/etc/haproxy/clients-crl.pem", "/pki/crl.pem", "0644", ""),
    ]
    assert all(e["state"] == "present" for e in trust)
    assert [e["mode"] for e in plan if e["kind"] == "certificate"] == ["0600", "0600"]


def test_persist_plan_of_a_failed_wave_writes_only_the_ca_and_crl_files():
    plan = role.persist_plan(HOSTS, role.select(ITEMS, [], "acme"), "/b", only_hosts=["h2"], trust=TRUST,
                             with_bundles="false")
    assert [(e["host"], e["kind"]) for e in plan] == [("h2", "ca_files"), ("h2", "crl_files")]


def test_a_rollback_puts_back_bundles_only_never_the_ca_and_crl_files():
    entries = role.persist_plan(HOSTS, role.select(ITEMS, ["www"], "acme"), "/b", trust=TRUST)
    persisted = {"h1": {"changed": ["/srv/h1/www.pem", "/etc/haproxy/clients-ca.pem"], "failed": []}}
    plan = [{"names": ["www", "/etc/haproxy/clients-ca.pem"]}]
    assert [(e["host"], e["path"], e["src"]) for e in role.rollback_persist_plan(entries, persisted, plan, "/b")] == [
        ("h1", "/srv/h1/www.pem", "/b/www.previous.pem")]


def test_persist_plan_in_a_play_over_the_haproxy_hosts_covers_only_this_host():
    selected = role.select(ITEMS, [], "acme")
    on_controller = role.persist_plan(HOSTS, selected, "/b", ["localhost"], "localhost")
    assert sorted({entry["host"] for entry in on_controller}) == ["h1", "h2"]
    over_hosts = role.persist_plan(HOSTS, selected, "/b", ["h1", "h2"], "h2")
    assert {entry["host"] for entry in over_hosts} == {"h2"} and len(over_hosts) == 2


def test_what_every_play_host_persisted_is_merged():
    hostvars = {"h1": {"certificates_persisted": {"h1": {"changed": ["/a"], "failed": []}}},
                "h2": {"certificates_persisted": {"h2": {"changed": [], "failed": ["/a: no route"]}}},
                "added-later": {}}
    assert role.persisted_on_play_hosts(["h1", "h2", "added-later"], hostvars) == {
        "h1": {"changed": ["/a"], "failed": []}, "h2": {"changed": [], "failed": ["/a: no route"]}}


def test_persisted_names_changes_and_failures_per_host():
    results = [{"target": {"host": "h1", "path": "/a"}, "changed": True},
               {"target": {"host": "h2", "path": "/a"}, "unreachable": True, "msg": "no route"}]
    lists = [{"target": {"host": "h1", "crt_list": "/l"}, "changed": False}]
    assert role.persisted(results, lists) == {"h1": {"changed": ["/a"], "failed": []},
                                              "h2": {"changed": [], "failed": ["/a: no route"]}}


def _handshakes():
    selected = role.select(ITEMS, [], "acme")
    found = role.instances([], ["127.0.0.11", "127.0.0.12"], HOSTS, 9999, 443)
    known = {"www": {"serial": "01", "fingerprint": "F1"}, "api": {"serial": "02", "fingerprint": "F2"}}
    return selected, found, known, role.handshake_targets(found, selected, known, skip=["h2"])


def test_handshakes_and_verify_are_keyed_by_instance_and_certificate():
    selected, found, known, targets = _handshakes()
    assert [target["name"] for target in targets] == ["h1/www", "h1/api"]
    assert targets[0] == {"name": "h1/www", "address": "127.0.0.11", "port": 8443, "servername": "www.lab.test",
                          "expected_fingerprint": "F1"}
    served = [{"name": "h1/api", "serial": "09", "fingerprint": "F9", "matches": False},
              {"name": "h1/www", "serial": "01", "fingerprint": "F1", "matches": True}]
    verified = role.verify_outcome(targets, served, known)
    assert verified["h1"]["www"]["ok"] is True
    assert verified["h1"]["api"]["msg"] == "serves serial 09, the bundle holds serial 02"


def test_status_fails_only_with_fail_days_and_names_every_reason():
    selected, found, known, _targets = _handshakes()
    targets = role.handshake_targets(found, selected, known)
    served = [{"name": "h1/www", "serial": "01", "fingerprint": "F1", "matches": True, "days_left": 5},
              {"name": "h1/api", "serial": "02", "fingerprint": "F2", "matches": True, "days_left": 80},
              {"name": "h2/www", "serial": "07", "fingerprint": "F7", "matches": False, "days_left": 80},
              {"name": "h2/api", "error": "cannot connect: Connection refused"}]
    assert role.status_rows(found, selected, targets, served, known)["failures"] == []
    status = role.status_rows(found, selected, targets, served, known, fail_days=10)
    assert status["failures"] == [
        "h1/www: 5 days left, fewer than certificates_status_fail_days (10)",
        "h2/www: differs from bundle (serial 01)",
        "h2/api: unreachable: cannot connect: Connection refused",
    ]
    assert [row["path"] for row in status["rows"]][:2] == ["/srv/h1/www.pem", "/srv/h1/api.pem"]
    assert role.status_lines(status["rows"])[0].startswith("INSTANCE")
    assert len(role.status_lines(status["rows"], "tasks.haproxy", len(found))) == 1 + len(status["rows"])


def test_status_with_no_instance_shows_none_and_does_not_fail():
    selected, _found, known, _targets = _handshakes()
    status = role.status_rows({}, selected, role.handshake_targets({}, selected, known), [], known, fail_days=10)
    assert status == {"rows": [], "failures": []}
    lines = role.status_lines(status["rows"], "tasks.web", 0)
    assert lines[1].startswith("No HAProxy instance is running: tasks.web has no address")
    assert len(lines) == 2


def test_rfc2136_hint_points_at_the_variable():
    assert "certificates_rfc2136_key_name" in role.rfc2136_hint({"msg": "PeerBadKey"}, "k", "lab.test")
    assert "update-policy" in role.rfc2136_hint({"dns_rc_str": "REFUSED"}, "k", "lab.test")
    assert "certificates_rfc2136_server" in role.rfc2136_hint({}, "k", "lab.test")
