# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The parser over real replies, captured from Debian's HAProxy 2.6.12, 3.0.11, 3.2.26 and 3.4.7.

Every test runs against every captured version; where the versions differ, the
test says which version does what (``version_of``).
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re

import pytest

from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_status import (
    StatusParseError,
    parse_asn1_time,
    parse_cert_detail,
    parse_cert_list,
    parse_crt_list,
    parse_crt_list_names,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
CONTINUATION = re.compile(r"^(?:\+ )+")


def _load(pattern):
    documents = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, pattern))):
        with open(path) as handle:
            documents.append(json.load(handle))
    return documents


CAPTURED = _load("haproxy-*.captured.json")
# crt-store sections (3.2+): the capture loads one certificate through one.
WITH_CRT_STORE = [document for document in CAPTURED if "store" in document["paths"]]


def version_of(document):
    """(3, 2) for ``3.2.26-1``."""
    return tuple(int(part) for part in document["haproxy_version"].split(".")[:2])


def body(document, name):
    """The reply as the client hands it to the parser: no continuation prompts, no prompt."""
    reply = document["exchanges"][name]["reply"]
    for prompt in ("\nmaster> ", "\n> "):
        if reply.endswith(prompt):
            reply = reply[:-len(prompt)]
            break
    return CONTINUATION.sub("", reply).rstrip("\n")


def ids(documents):
    return [document["haproxy_version"] for document in documents]


def test_fixtures_cover_every_version():
    versions = {document["haproxy_version"].split("-")[0] for document in CAPTURED}
    assert {"2.6.12", "3.0.11", "3.2.26", "3.4.7"} <= versions
    assert all(document["source"].startswith("captured from ") for document in CAPTURED)
    assert not glob.glob(os.path.join(FIXTURES, "*.reconstructed.json"))
    assert {version_of(document) for document in WITH_CRT_STORE} == {
        version_of(document) for document in CAPTURED if version_of(document) >= (3, 2)}


class _Certificates:
    """What cryptography reads from a fixture's certificate, in the parser's terms."""

    def certificate(self, document, label):
        return _pem.CertificateSummary.of(
            _pem.x509.load_pem_x509_certificate(document["certificates"][label].encode())
        )


@pytest.mark.parametrize("document", CAPTURED, ids=ids(CAPTURED))
class TestCaptured(_Certificates):
    """What Debian's HAProxy printed, against what cryptography reads from the same certificates."""

    def test_listing(self, document):
        listing = parse_cert_list(body(document, "show_ssl_cert"))
        paths = document["paths"]
        assert listing.transaction is None
        assert {paths["a"], paths["b"], paths["ed25519"]} <= set(listing.paths)
        assert paths["a"] in listing
        assert "/etc/haproxy/unknown.pem" not in listing

    def test_listing_with_transaction(self, document):
        listing = parse_cert_list(body(document, "show_ssl_cert_transaction"))
        assert listing.transaction == document["paths"]["a"]
        assert document["paths"]["a"] in listing.paths

    @pytest.mark.parametrize("name, label", [
        ("show_ssl_cert_ec", "ec"),
        ("show_ssl_cert_rsa", "rsa"),
        ("show_ssl_cert_rsa_committed", "rsa_new"),
        ("show_ssl_cert_unused", "added"),
    ])
    def test_detail_matches_the_certificate(self, document, name, label):
        detail = parse_cert_detail(body(document, name))
        expected = self.certificate(document, label)
        intermediate = self.certificate(document, "intermediate")
        assert detail.serial == expected.serial
        assert detail.fingerprint == expected.fingerprint
        assert detail.not_before == expected.not_before
        assert detail.not_after == expected.not_after
        assert detail.names == expected.names
        assert detail.subject == expected.subject
        assert detail.issuer == expected.issuer
        assert detail.chain == [{"subject": intermediate.subject, "issuer": intermediate.issuer}]
        assert detail.algorithm in ("EC256", "RSA2048")
        assert not detail.pending
        assert not detail.empty

    def test_short_serials_keep_haproxy_padding(self, document):
        # 0x0100FF prints 0100FF, 0x80 prints 80 (not the DER 0080): what _pem must produce too.
        rsa = parse_cert_detail(body(document, "show_ssl_cert_rsa"))
        committed = parse_cert_detail(body(document, "show_ssl_cert_rsa_committed"))
        assert rsa.serial == "0100FF" == _pem.format_serial(0x0100FF)
        assert committed.serial == "80" == _pem.format_serial(0x80)

    def test_status_values(self, document):
        assert parse_cert_detail(body(document, "show_ssl_cert_ec")).status == "Used"
        assert parse_cert_detail(body(document, "show_ssl_cert_unused")).status == "Unused"
        empty = parse_cert_detail(body(document, "show_ssl_cert_empty"))
        assert empty.status == "Empty"
        assert empty.empty
        assert empty.serial is None and empty.fingerprint is None

    def test_pending_transaction_detail(self, document):
        detail = parse_cert_detail(body(document, "show_ssl_cert_pending"))
        assert detail.pending
        assert detail.path == document["paths"]["a"]
        assert detail.serial == self.certificate(document, "ec_new").serial
        # 2.6 and 3.0 print a transaction's store as Unused; 3.2+ say Uncommitted.
        assert detail.status == ("Uncommitted" if version_of(document) >= (3, 2) else "Unused")

    def test_crt_filename_line(self, document):
        # 3.2+ add "Crt filename:" (the file the certificate was loaded from) after Filename.
        detail = parse_cert_detail(body(document, "show_ssl_cert_ec"))
        if version_of(document) >= (3, 2):
            assert detail.fields["crt_filename"] == document["paths"]["a"]
        else:
            assert "crt_filename" not in detail.fields

    def test_conflict_with_the_other_transaction(self, document):
        detail = parse_cert_detail(body(document, "show_ssl_cert_pending_after_conflict"))
        assert detail.path == document["paths"]["a"]
        reply = body(document, "set_while_other_open")
        if version_of(document) >= (3, 0):
            # 3.x refuse a set on B while A is open, naming A; A's transaction is untouched.
            assert "The ongoing transaction is about '%s'" % document["paths"]["a"] in reply
            assert detail.serial == self.certificate(document, "ec_new").serial
        else:
            # The 2.6.12 bug the module guards against: set on B while A is open put B's certificate
            # into A's transaction.
            assert reply == "Transaction updated for certificate %s!" % document["paths"]["a"]
            assert detail.serial == self.certificate(document, "rsa_new").serial

    def test_transaction_of_another_client(self, document):
        # Transactions are per process, not per connection: another client's open one shows here.
        listing = parse_cert_list(body(document, "foreign_show_ssl_cert"))
        assert listing.transaction == document["paths"]["a"]
        assert body(document, "foreign_set_same") == (
            "Transaction updated for certificate %s!" % document["paths"]["a"])

    def test_ed25519_has_no_fingerprint(self, document):
        detail = parse_cert_detail(body(document, "show_ssl_cert_ed25519"))
        expected = self.certificate(document, "ed25519")
        assert detail.serial == expected.serial
        assert detail.names == expected.names
        assert detail.algorithm is None
        assert detail.fingerprint is None
        assert detail.subject is None
        # 2.6 glues the next field onto "Algorithm: " (no newline); it is split, not lost.
        assert "ocsp_response_key" in detail.fields

    def test_crt_list(self, document):
        names = parse_crt_list_names(body(document, "show_ssl_crt_list"))
        assert names == [document["paths"]["crt_list"]]
        name, entries = parse_crt_list(body(document, "show_ssl_crt_list_n"))
        assert name == document["paths"]["crt_list"]
        by_path = {entry.path: entry for entry in entries}
        a = by_path[document["paths"]["a"]]
        # 2.6 prints a NUL after the ALPN list; dropped.
        assert a.options == "alpn h2,http/1.1 ssl-min-ver TLSv1.2"
        assert a.sni_filters == ["a.fixture.test", "www.a.fixture.test"]
        assert a.line == 2
        b = by_path[document["paths"]["b"]]
        assert b.options is None
        assert b.sni_filters == ["!bad.fixture.test", "b.fixture.test"]
        assert [entry.line for entry in entries] == [1, 2, 3, 4]

    def test_crt_list_without_line_numbers(self, document):
        dummy_name, entries = parse_crt_list(body(document, "show_ssl_crt_list_lines"))
        assert [entry.line for entry in entries] == [None] * 4
        assert entries[1].path == document["paths"]["a"]

    def test_crt_list_added_line(self, document):
        dummy_name, entries = parse_crt_list(body(document, "show_ssl_crt_list_n_added"))
        added = [entry for entry in entries if entry.path == document["paths"]["added"]]
        assert [(entry.line, entry.options, entry.sni_filters) for entry in added] == [
            (5, "alpn h2 ssl-min-ver TLSv1.2", ["new.fixture.test", "!old.new.fixture.test"]),
            (6, None, []),
        ]


@pytest.mark.parametrize("document", WITH_CRT_STORE, ids=ids(WITH_CRT_STORE))
class TestCrtStore(_Certificates):
    """A certificate loaded through a crt-store section (3.2+) is named @STORE/ALIAS."""

    def test_listed_by_name(self, document):
        listing = parse_cert_list(body(document, "show_ssl_cert"))
        assert document["paths"]["store"] in listing
        assert document["paths"]["store"] == "@fixtures/s"

    def test_detail(self, document):
        detail = parse_cert_detail(body(document, "show_ssl_cert_store"))
        assert detail.path == "@fixtures/s"
        assert not detail.pending
        assert detail.status == "Used"
        # Crt filename is the load line's file, relative to the section's crt-base.
        assert detail.fields["crt_filename"] == "store.pem"
        assert detail.serial == self.certificate(document, "store").serial
        assert detail.fingerprint == self.certificate(document, "store").fingerprint

    def test_update(self, document):
        assert body(document, "set_store") == "Transaction created for certificate @fixtures/s!"
        pending = parse_cert_detail(body(document, "show_ssl_cert_store_pending"))
        assert pending.pending and pending.path == "@fixtures/s"
        assert pending.serial == self.certificate(document, "store_new").serial
        assert body(document, "commit_store").endswith("Success!")
        committed = parse_cert_detail(body(document, "show_ssl_cert_store_committed"))
        assert committed.serial == self.certificate(document, "store_new").serial

    def test_split_update(self, document):
        # Chain as @STORE/NAME, key as @STORE/NAME.key, one commit: as for file names.
        assert body(document, "set_store_split_chain") == "Transaction created for certificate @fixtures/s!"
        assert body(document, "set_store_split_key") == "Transaction updated for certificate @fixtures/s!"
        assert body(document, "commit_store_split").endswith("Success!")

    def test_unknown_and_new_names(self, document):
        assert "Not found" in body(document, "show_ssl_cert_store_unknown")
        assert "not referenced by the configuration" in body(document, "set_store_unknown")
        # "new ssl cert" accepts an @STORE/NAME name, but nothing adds it to the store section.
        assert body(document, "new_ssl_cert_store") == "New empty certificate store '@fixtures/new'!"
        assert body(document, "del_ssl_cert_store_new") == "Certificate '@fixtures/new' deleted!"


def test_asn1_time_single_digit_day():
    assert parse_asn1_time("Feb  5 07:08:09 2027 GMT") == datetime.datetime(
        2027, 2, 5, 7, 8, 9, tzinfo=datetime.timezone.utc)
    assert parse_asn1_time("Feb  5 07:08:09.250 2027 GMT").second == 9


@pytest.mark.parametrize("text", ["", "2027-02-05", "Foo  5 07:08:09 2027 GMT", "Feb 31 07:08:09 2027 GMT"])
def test_asn1_time_rejects(text):
    with pytest.raises(StatusParseError):
        parse_asn1_time(text)


def test_detail_keeps_repeated_unknown_fields():
    detail = parse_cert_detail("Filename: /a.pem\nStatus: Used\nOption: one\nOption: two\nFuture Field: x\n")
    assert detail.fields["option"] == ["one", "two"]
    assert detail.fields["future_field"] == "x"


@pytest.mark.parametrize("text", ["Status: Used\n", "garbage without colon\n"])
def test_detail_rejects_what_is_not_a_detail(text):
    with pytest.raises(StatusParseError):
        parse_cert_detail(text)


def test_listing_rejects_other_text():
    with pytest.raises(StatusParseError):
        parse_cert_list("Unknown command. Please enter one of the following commands only :")


def test_crt_list_rejects_unterminated_options():
    with pytest.raises(StatusParseError):
        parse_crt_list("# /l\n/a.pem:1 [alpn h2\n")


def test_days_left():
    detail = parse_cert_detail("Filename: /a.pem\nStatus: Used\nSerial: 01\nnotBefore: Jan  1 00:00:00 2026 GMT\n"
                               "notAfter: Jan 31 00:00:00 2026 GMT\n")
    now = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.timezone.utc)
    assert detail.days_left(now) == 29
    assert detail.as_dict(now)["days_left"] == 29
