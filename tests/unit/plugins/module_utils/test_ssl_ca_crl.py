# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CA files and CRL files: local validation, and the parsers over replies captured from 2.6.12 and 3.2.26."""

from __future__ import annotations

import datetime
import glob
import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.plugins.module_utils import _ssl_ca_crl as cc

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures", "ca-crl-*.captured.json")))
NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.timezone.utc)


def _replies(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["replies"]


def _ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "unit"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _crl(cert, key, revoked=(), last=NOW - datetime.timedelta(hours=1), days=7):
    builder = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
               .last_update(last).next_update(last + datetime.timedelta(days=days)))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pki():
    return {"ca1": _ca("CA 1"), "ca2": _ca("CA 2")}


# -- parsers over real replies ---------------------------------------------------------------------

@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_show_ca_file_lists_every_certificate(path):
    replies = _replies(path)
    initial = cc.parse_show_ca_file(replies["show_ca_initial"]["reply"])
    both = cc.parse_show_ca_file(replies["show_ca_both"]["reply"])
    assert len(initial) == 1 and len(both) == 2
    assert both[0]["fingerprint"] == initial[0]["fingerprint"]
    assert both[1]["subject"] == "/O=ingress.haproxy lab/CN=ingress.haproxy lab client CA 2"
    for entry in both:
        assert len(entry["fingerprint"]) == 40 and entry["fingerprint"] == entry["fingerprint"].upper()
        assert entry["not_after"].endswith("Z") and entry["serial"]


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_show_crl_file_lists_issuers_dates_and_revoked_serials(path):
    replies = _replies(path)
    initial = cc.parse_show_crl_file(replies["show_crl_initial"]["reply"])
    revoked = cc.parse_show_crl_file(replies["show_crl_revoked"]["reply"])
    assert [crl["revoked"] for crl in initial] == [[], []]
    assert [len(crl["revoked"]) for crl in revoked] == [0, 1]
    assert revoked[1]["issuer"] == "/O=ingress.haproxy lab/CN=ingress.haproxy lab client CA 2"
    assert revoked[1]["last_update"].endswith("Z") and revoked[1]["next_update"] > revoked[1]["last_update"]
    assert cc.summary(cc.CRL_FILE, revoked)[1]["revoked"] == 1


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_replies_the_converger_relies_on(path):
    replies = _replies(path)
    assert cc._NOT_FOUND[cc.CA_FILE] in replies["show_ca_missing"]["reply"]
    assert cc._NOT_FOUND[cc.CRL_FILE] in replies["show_crl_missing"]["reply"]
    ca_name = replies["set_ca"]["command"].split(" ", 3)[3]
    crl_name = replies["set_crl"]["command"].split(" ", 3)[3]
    assert cc._SET_RE[cc.CA_FILE].search(replies["set_ca"]["reply"]).group("path") == ca_name
    assert cc._SET_RE[cc.CRL_FILE].search(replies["set_crl"]["reply"]).group("path") == crl_name
    assert "Success!" in replies["commit_ca"]["reply"] and "Success!" in replies["commit_crl"]["reply"]
    assert "Success!" not in replies["commit_crl_none"]["reply"]
    assert cc._NEW_TEXT[cc.CA_FILE] % (ca_name + ".new") in replies["new_ca"]["reply"]
    assert cc._NEW_TEXT[cc.CRL_FILE] % (crl_name + ".new") in replies["new_crl"]["reply"]
    # Both versions take a certificate as a CRL payload: only local validation stops it.
    assert cc._SET_RE[cc.CRL_FILE].search(replies["set_crl_certificate_payload"]["reply"])
    # The uncommitted file (3.2 says Uncommitted, 2.6 Unused) parses like a committed one.
    assert len(cc.parse_show_ca_file(replies["show_ca_uncommitted"]["reply"])) == 2


# -- local validation ------------------------------------------------------------------------------

def test_ca_pem_summaries_match_what_haproxy_prints(pki):
    cert = pki["ca1"][0]
    entries = cc.parse_ca_pem(_pem(cert) + "\n" + _pem(pki["ca2"][0]), "unit")
    assert [e["subject"] for e in entries] == ["/O=unit/CN=CA 1", "/O=unit/CN=CA 2"]
    assert entries[0]["fingerprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert cc.same(cc.CA_FILE, [dict(e) for e in entries], entries)
    assert not cc.same(cc.CA_FILE, entries[:1], entries)
    assert not cc.same(cc.CA_FILE, None, entries)


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("hello", "holds no PEM block"),
    ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "holds a PRIVATE KEY block"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not parse"),
])
def test_bad_ca_pem_is_refused(text, message):
    with pytest.raises(cc.ValidationError, match=message) as caught:
        cc.parse_ca_pem(text, "ca_files[0] (/etc/ca.pem)")
    assert "ca_files[0] (/etc/ca.pem)" in str(caught.value) and "nothing was sent" in str(caught.value)


def test_text_outside_blocks_is_refused(pki):
    with pytest.raises(cc.ValidationError, match="outside its PEM blocks"):
        cc.parse_ca_pem(_pem(pki["ca1"][0]) + "junk\n", "unit")


def test_crl_signed_by_a_given_ca_passes(pki):
    cas = cc.parse_ca_pem(_pem(pki["ca1"][0]) + _pem(pki["ca2"][0]), "ca")
    text = _crl(*pki["ca1"]) + _crl(*pki["ca2"], revoked=[255, 4096])
    entries = cc.parse_crl_pem(text, "crl", cas=cas, now=NOW)
    assert entries[0]["revoked"] == [] and entries[1]["revoked"] == ["1000", "FF"]
    assert entries[1]["issuer"] == "/O=unit/CN=CA 2"
    assert cc.summary(cc.CRL_FILE, entries)[1] == {"issuer": "/O=unit/CN=CA 2", "revoked": 2,
                                                   "last_update": "2026-12-03T11:00:00Z",
                                                   "next_update": "2026-12-10T11:00:00Z"}


def test_crl_from_the_wrong_issuer_is_refused(pki):
    cas = cc.parse_ca_pem(_pem(pki["ca1"][0]), "ca")
    with pytest.raises(cc.ValidationError, match=r"CRL #1 \(issuer /O=unit/CN=CA 2\) is not signed by any CA"):
        cc.parse_crl_pem(_crl(*pki["ca2"]), "crl", cas=cas, now=NOW)


def test_crl_with_the_issuer_name_but_another_key_is_refused(pki):
    forged_key = ec.generate_private_key(ec.SECP256R1())
    cas = cc.parse_ca_pem(_pem(pki["ca2"][0]), "ca")
    with pytest.raises(cc.ValidationError, match="is not signed by any CA"):
        cc.parse_crl_pem(_crl(pki["ca2"][0], forged_key), "crl", cas=cas, now=NOW)


def test_crl_past_next_update_is_refused_unless_allowed(pki):
    stale = _crl(*pki["ca1"], last=NOW - datetime.timedelta(days=10), days=2)
    with pytest.raises(cc.ValidationError, match="past its nextUpdate 2026-11-25T12:00:00Z"):
        cc.parse_crl_pem(stale, "crl", now=NOW)
    assert cc.parse_crl_pem(stale, "crl", allow_expired=True, now=NOW)[0]["next_update"] == "2026-11-25T12:00:00Z"


def test_certificate_given_as_crl_is_refused(pki):
    with pytest.raises(cc.ValidationError, match="holds a CERTIFICATE block, not only X509 CRL blocks"):
        cc.parse_crl_pem(_pem(pki["ca1"][0]), "crl", now=NOW)


def test_crl_comparison_covers_dates_and_serials(pki):
    old = cc.parse_crl_pem(_crl(*pki["ca1"]), "crl", now=NOW)
    new = cc.parse_crl_pem(_crl(*pki["ca1"], revoked=[7]), "crl", now=NOW)
    later = cc.parse_crl_pem(_crl(*pki["ca1"], last=NOW), "crl", now=NOW)
    assert cc.same(cc.CRL_FILE, old, [dict(e) for e in old])
    assert not cc.same(cc.CRL_FILE, old, new)
    assert not cc.same(cc.CRL_FILE, old, later)


def test_oversized_payload_and_bad_names_are_refused_before_sending(pki, tmp_path):
    source = tmp_path / "ca.pem"
    source.write_text(_pem(pki["ca1"][0]) * 40)
    params = {"path": "/etc/ca.pem", "src": str(source), "content": None, "ca_files": None, "process": None}
    with pytest.raises(cc.ValidationError, match="more than HAProxy's buffer takes"):
        cc.prepare_items(cc.CA_FILE, params, "ca_files", bufsize=16384)
    params.update(path="/etc/ca.pem;shutdown", src=None, content=_pem(pki["ca1"][0]))
    with pytest.raises(cc.ValidationError, match="path"):
        cc.prepare_items(cc.CA_FILE, params, "ca_files")
    listed = {"ca_files": [{"path": "/a", "content": _pem(pki["ca1"][0])}, {"path": "/a", "content": "x"}],
              "process": None}
    with pytest.raises(cc.ValidationError, match=r"ca_files\[1\] \(/a\) is listed twice"):
        cc.prepare_items(cc.CA_FILE, listed, "ca_files")


# -- what a real HAProxy cannot be made to do: a commit that fails, a set that lands elsewhere -------

class ScriptedSession:
    """Answers each command with the next scripted reply (taken from the captures); records the commands."""

    endpoint = "unit:socket"

    def __init__(self, replies):
        self.replies = list(replies)
        self.sent = []

    def execute(self, command, payload=None):
        self.sent.append(command)
        return self.replies.pop(0)


def _item(pki):
    return cc.FileItem("/etc/ca.pem", _pem(pki["ca2"][0]), cc.parse_ca_pem(_pem(pki["ca2"][0]), "ca"))


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_failed_commit_is_aborted(pki, path):
    replies = _replies(path)
    session = ScriptedSession([replies["show_ca_initial"]["reply"].replace(
        replies["set_ca"]["command"].split(" ", 3)[3], "/etc/ca.pem"),
        "transaction created for CA /etc/ca.pem!",
        replies["commit_crl_none"]["reply"],
        "Transaction aborted for certificate '/etc/ca.pem'!"])
    with pytest.raises(cc.CaCrlError, match="refused `commit ssl ca-file /etc/ca.pem`"):
        cc.Converger(session, cc.CA_FILE).converge(_item(pki))
    assert session.sent[-1] == "abort ssl ca-file /etc/ca.pem"


def test_set_landing_in_another_transaction_is_aborted_and_named(pki):
    session = ScriptedSession(["Can't display the CA file : Not found!", "New CA file created '/etc/ca.pem'!",
                               "transaction updated for CA /etc/other.pem!",
                               "Transaction aborted for certificate '/etc/other.pem'!"])
    with pytest.raises(cc.CaCrlError, match="expected a transaction for /etc/ca.pem"):
        cc.Converger(session, cc.CA_FILE).converge(_item(pki))
    assert session.sent == ["show ssl ca-file /etc/ca.pem", "new ssl ca-file /etc/ca.pem",
                            "set ssl ca-file /etc/ca.pem", "abort ssl ca-file /etc/other.pem"]


def test_check_mode_sends_only_show(pki):
    session = ScriptedSession(["Can't display the CA file : Not found!"])
    result = cc.Converger(session, cc.CA_FILE, check_mode=True).converge(_item(pki))
    assert result["action"] == "created" and result["before"] is None
    assert session.sent == ["show ssl ca-file /etc/ca.pem"]
