# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every PEM rule of _pem.py, with real certificates generated here."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
from ansible_collections.ingress.haproxy.plugins.module_utils._pem import (
    Bundle,
    CertificateSummary,
    PemError,
    build_bundle,
    format_serial,
    load_bundle,
)


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
NOW = datetime.datetime(2026, 11, 27, 12, 0, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def _name(common_name, organization=None):
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _hash_for(key):
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def issue(common_name, key, issuer=None, *, ca=False, names=(), serial=None,
          not_before=NOW - 10 * DAY, not_after=NOW + 80 * DAY, subject=None):
    """A certificate for key, signed by issuer = (certificate, key), or self-signed."""
    subject = subject or _name(common_name, "Ingress Test")
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signing_key, _hash_for(signing_key))


def cert_pem(*certificates):
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def key_pem(key, fmt=None, passphrase=None):
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, fmt or serialization.PrivateFormat.PKCS8, encryption).decode()


class Pki:
    """root -> intermediate -> leaf, plus strangers to break the rules with."""

    def __init__(self):
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = issue("Test Root", self.root_key, ca=True)
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = issue("Test Intermediate", self.int_key, (self.root, self.root_key), ca=True)
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf = issue(
            "www.example.test", self.leaf_key, (self.intermediate, self.int_key),
            names=[x509.DNSName("www.example.test"), x509.DNSName("api.example.test"),
                   x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))],
        )
        self.other_key = ec.generate_private_key(ec.SECP256R1())
        self.stranger = issue("Stranger CA", self.other_key, ca=True)

    def bundle_text(self, *parts):
        return "".join(parts)

    @property
    def good(self):
        return cert_pem(self.leaf, self.intermediate) + key_pem(self.leaf_key)


@pytest.fixture(scope="module")
def pki():
    return Pki()


def load(text, **kwargs):
    kwargs.setdefault("now", NOW)
    return load_bundle(text, source="certificates[3].content", **kwargs)


def assert_error(excinfo, *fragments):
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, "%r not in %r" % (fragment, message)
    assert "PRIVATE KEY-----" not in message
    return message


# --- serial and names: exactly what HAProxy 2.6.12 printed ---------------------------------

@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_serial_and_fingerprint_match_a_real_haproxy_2_6_12_reply():
    with open(os.path.join(FIXTURES, "haproxy_2.6.12_serials.json")) as handle:
        fixture = json.load(handle)
    assert fixture["haproxy_version"].startswith("HAProxy version 2.6.12")
    assert len(fixture["certificates"]) >= 12
    for name, entry in fixture["certificates"].items():
        certificate = x509.load_pem_x509_certificate(entry["certificate"].encode())
        summary = CertificateSummary.of(certificate)
        assert (name, summary.serial) == (name, entry["serial"])
        assert (name, summary.fingerprint) == (name, entry["sha1"])


@pytest.mark.parametrize("serial, printed", [
    (0, "00"),
    (1, "01"),
    (5, "05"),
    (0x0102, "0102"),
    (0xABC, "0ABC"),           # leading zero nibble: HAProxy prints whole bytes
    (0x80FF, "80FF"),          # DER 02 03 00 80 FF: the sign byte is not printed
    (0xAB00CD, "AB00CD"),
    (0x0A1B2C3D4E5F60718293, "0A1B2C3D4E5F60718293"),
    (-1, "01"),                # non-RFC negative serials: OpenSSL keeps the magnitude
    (-128, "80"),
])
def test_format_serial(serial, printed):
    assert format_serial(serial) == printed


def test_subject_matches_haproxy_subject_line():
    with open(os.path.join(FIXTURES, "haproxy_2.6.12_serials.json")) as handle:
        fixture = json.load(handle)["subject_reply"]
    certificate = x509.load_pem_x509_certificate(fixture["certificate"].encode())
    reply = dict(line.split(": ", 1) for line in fixture["reply"].splitlines() if ": " in line)
    summary = CertificateSummary.of(certificate)
    assert summary.subject == reply["Subject"]
    assert summary.issuer == reply["Issuer"]
    assert summary.serial == reply["Serial"]
    assert summary.fingerprint == reply["SHA1 FingerPrint"]
    # HAProxy lists DNS names in certificate order; the summary sorts them.
    listed = [part[4:] for part in reply["Subject Alternative Name"].split(", ") if part.startswith("DNS:")]
    assert summary.names == sorted(listed)
    assert listed != sorted(listed)


# --- the good case -------------------------------------------------------------------------

def test_good_bundle(pki):
    bundle = load(pki.good)
    assert isinstance(bundle, Bundle)
    assert bundle.leaf == pki.leaf
    assert bundle.chain == [pki.intermediate]
    assert _pem._public_key_bytes(bundle.private_key.public_key()) == _pem._public_key_bytes(pki.leaf_key.public_key())
    summary = bundle.summary
    assert summary.serial == format_serial(pki.leaf.serial_number)
    assert summary.fingerprint == pki.leaf.fingerprint(hashes.SHA1()).hex().upper()
    assert re.fullmatch(r"[0-9A-F]{40}", summary.fingerprint)
    assert summary.names == ["api.example.test", "www.example.test"]
    assert summary.subject == "/O=Ingress Test/CN=www.example.test"
    assert summary.issuer == "/O=Ingress Test/CN=Test Intermediate"
    assert summary.key_type == "EC"
    assert summary.not_before == NOW - 10 * DAY
    assert summary.not_after == NOW + 80 * DAY
    assert summary.not_after.tzinfo is not None


def test_as_dict(pki):
    data = load(pki.good).summary.as_dict(now=NOW)
    assert data == {
        "serial": format_serial(pki.leaf.serial_number),
        "fingerprint": pki.leaf.fingerprint(hashes.SHA1()).hex().upper(),
        "not_before": "2026-11-17T12:00:00Z",
        "not_after": "2027-02-15T12:00:00Z",
        "days_left": 80,
        "names": ["api.example.test", "www.example.test"],
        "subject": "/O=Ingress Test/CN=www.example.test",
        "issuer": "/O=Ingress Test/CN=Test Intermediate",
        "key_type": "EC",
    }
    assert load(pki.good).summary.as_dict(now=NOW + 80 * DAY + datetime.timedelta(seconds=1))["days_left"] == -1


def test_to_pem_is_normalised(pki):
    messy = "\r\n\r\n" + (cert_pem(pki.leaf) + "\n\n" + cert_pem(pki.intermediate) + "\n" + key_pem(pki.leaf_key)).replace("\n", "\r\n") + "\r\n\r\n"
    bundle = load(messy)
    text = bundle.to_pem()
    assert "\r" not in text
    assert "\n\n" not in text
    assert text.endswith("-----END PRIVATE KEY-----\n")
    assert text == load(pki.good).to_pem()
    assert text == bundle.certificates_pem() + bundle.key_pem()
    assert bundle.certificates_pem() == cert_pem(pki.leaf, pki.intermediate)
    assert bundle.key_pem().startswith("-----BEGIN PRIVATE KEY-----\n")
    # The output is a valid bundle itself.
    assert load(text).summary == bundle.summary


def test_self_signed_root_is_dropped(pki):
    bundle = load(cert_pem(pki.leaf, pki.intermediate, pki.root) + key_pem(pki.leaf_key))
    assert bundle.chain == [pki.intermediate]
    assert [summary.subject for summary in bundle.chain_summaries] == ["/O=Ingress Test/CN=Test Intermediate"]
    assert bundle.to_pem().count("BEGIN CERTIFICATE") == 2


def test_key_anywhere_and_ec_parameters_ignored(pki):
    ec_parameters = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    text = ec_parameters + key_pem(pki.leaf_key, serialization.PrivateFormat.TraditionalOpenSSL) + cert_pem(pki.leaf, pki.intermediate)
    assert load(text).to_pem() == load(pki.good).to_pem()


def test_text_outside_blocks_is_ignored(pki):
    text = "Bag Attributes\n    friendlyName: www\nsubject=/CN=www\n" + pki.good
    assert load(text).summary == load(pki.good).summary


def test_leaf_without_chain(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = issue("self.example.test", key, names=[x509.DNSName("self.example.test")])
    bundle = load(cert_pem(certificate) + key_pem(key))
    assert bundle.chain == []
    assert bundle.summary.subject == bundle.summary.issuer


@pytest.mark.parametrize("make_key, key_type", [
    (lambda: rsa.generate_private_key(65537, 2048), "RSA"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "EC"),
    (lambda: dsa.generate_private_key(1024), "DSA"),
    (ed25519.Ed25519PrivateKey.generate, "Ed25519"),
    (ed448.Ed448PrivateKey.generate, "Ed448"),
])
def test_key_types(pki, make_key, key_type):
    key = make_key()
    leaf = issue("kt.example.test", key, (pki.intermediate, pki.int_key), names=[x509.DNSName("kt.example.test")])
    bundle = load(cert_pem(leaf, pki.intermediate) + key_pem(key))
    assert bundle.summary.key_type == key_type
    assert load(bundle.to_pem()).summary == bundle.summary


def test_ed25519_issuer_signature_checked(pki):
    # The chain check verifies signatures made by every key type, not only RSA/EC.
    ca_key = ed25519.Ed25519PrivateKey.generate()
    ca = issue("Ed CA", ca_key, ca=True)
    key = ed448.Ed448PrivateKey.generate()
    leaf = issue("ed.example.test", key, (ca, ca_key))
    assert load(cert_pem(leaf, ca) + key_pem(key)).chain == []
    forged_ca = issue("Ed CA", ed25519.Ed25519PrivateKey.generate(), ca=True)
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(leaf, forged_ca) + key_pem(key))
    assert_error(excinfo, "certificates[3].content", "/O=Ingress Test/CN=Ed CA", "not part of the chain")


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["this is not a certificate\n", "\x00\x01garbage", "MIIB" * 40])
def test_garbage(text):
    with pytest.raises(PemError) as excinfo:
        load(text)
    assert_error(excinfo, "certificates[3].content", "holds no PEM certificate or private key")


@pytest.mark.parametrize("text", ["", "   \n\n", b""])
def test_empty(text):
    with pytest.raises(PemError) as excinfo:
        load(text)
    assert_error(excinfo, "certificates[3].content is empty")


def test_damaged_block(pki):
    text = cert_pem(pki.leaf)[:-30] + "\n" + key_pem(pki.leaf_key)
    with pytest.raises(PemError) as excinfo:
        load(text)
    assert_error(excinfo, "certificates[3].content", "damaged PEM block")


def test_corrupt_base64_in_certificate(pki):
    lines = cert_pem(pki.leaf).splitlines()
    lines[3] = "A" * len(lines[3])
    with pytest.raises(PemError) as excinfo:
        load("\n".join(lines) + "\n" + key_pem(pki.leaf_key))
    assert_error(excinfo, "certificates[3].content (block 1, CERTIFICATE)", "does not parse")


def test_foreign_block(pki):
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(_name("csr.example.test"))
        .sign(pki.leaf_key, hashes.SHA256())
    )
    text = pki.good + csr.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(PemError) as excinfo:
        load(text)
    assert_error(excinfo, "certificates[3].content (block 4, CERTIFICATE REQUEST)", "no place in a HAProxy certificate bundle")


def test_only_a_key(pki):
    with pytest.raises(PemError) as excinfo:
        load(key_pem(pki.leaf_key))
    assert_error(excinfo, "no certificate found in certificates[3].content")


def test_only_a_certificate(pki):
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(pki.leaf, pki.intermediate))
    assert_error(excinfo, "no private key found in certificates[3].content")


def test_two_keys(pki):
    with pytest.raises(PemError) as excinfo:
        load(pki.good + key_pem(pki.other_key))
    assert_error(excinfo, "2 private keys found", "certificates[3].content (block 3)", "certificates[3].content (block 4)", "exactly one")


def test_key_mismatch(pki):
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(pki.leaf) + key_pem(pki.other_key))
    assert_error(excinfo, "the private key in certificates[3].content (block 2) does not match the certificate",
                 "/O=Ingress Test/CN=www.example.test")


def test_key_mismatch_with_chain(pki):
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(pki.leaf, pki.intermediate) + key_pem(pki.other_key))
    assert_error(excinfo, "matches none of the 2 certificates", "CN=www.example.test", "CN=Test Intermediate")


def test_two_leaves_for_one_key(pki):
    renewed = issue("www.example.test", pki.leaf_key, (pki.intermediate, pki.int_key))
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(pki.leaf, renewed, pki.intermediate) + key_pem(pki.leaf_key))
    assert_error(excinfo, "2 certificates match the private key", format_serial(renewed.serial_number))


def test_unrelated_extra_certificate(pki):
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(pki.leaf, pki.intermediate, pki.stranger) + key_pem(pki.leaf_key))
    message = assert_error(excinfo, "/O=Ingress Test/CN=Stranger CA", "certificates[3].content (block 3)", "not part of the chain")
    assert "Test Intermediate (serial" not in message.partition(" not part of")[0]


def test_unrelated_self_signed_root_is_not_dropped(pki):
    # Only a root that issued something in the chain is dropped quietly.
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(pki.leaf, pki.intermediate) + key_pem(pki.leaf_key) + cert_pem(pki.stranger))
    assert_error(excinfo, "Stranger CA")


def test_issuer_by_name_only_is_rejected(pki):
    # Same subject as the real intermediate, different key: the name fits, the signature does not.
    impostor = issue("Test Intermediate", pki.other_key, (pki.root, pki.root_key), ca=True)
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(pki.leaf, impostor) + key_pem(pki.leaf_key))
    assert_error(excinfo, "CN=Test Intermediate (serial %s)" % format_serial(impostor.serial_number), "not part of the chain")


def test_out_of_order_is_an_error_for_load_bundle(pki):
    with pytest.raises(PemError) as excinfo:
        load(cert_pem(pki.intermediate, pki.leaf) + key_pem(pki.leaf_key))
    message = assert_error(excinfo, "certificates[3].content", "out of order")
    assert message.index("Found: /O=Ingress Test/CN=Test Intermediate") < message.index("Expected: /O=Ingress Test/CN=www.example.test")


def test_out_of_order_is_put_right_by_build_bundle(pki):
    bundle = build_bundle(
        [("chain.pem", cert_pem(pki.root, pki.intermediate)), ("cert.pem", cert_pem(pki.leaf)), ("key.pem", key_pem(pki.leaf_key))],
        now=NOW,
    )
    assert [bundle.leaf] + bundle.chain == [pki.leaf, pki.intermediate]
    assert bundle.to_pem() == load(pki.good).to_pem()


def test_three_level_chain_is_ordered(pki):
    sub_key = ec.generate_private_key(ec.SECP256R1())
    sub = issue("Sub CA", sub_key, (pki.intermediate, pki.int_key), ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue("deep.example.test", key, (sub, sub_key))
    bundle = build_bundle([("mixed.pem", cert_pem(pki.root, pki.intermediate, leaf, sub) + key_pem(key))], now=NOW)
    assert bundle.chain == [sub, pki.intermediate]
    with pytest.raises(PemError):
        load(cert_pem(leaf, pki.intermediate, sub) + key_pem(key))
    assert load(cert_pem(leaf, sub, pki.intermediate, pki.root) + key_pem(key)).chain == [sub, pki.intermediate]


def test_cross_signed_intermediate_beside_its_root(pki):
    # fullchain with an intermediate cross-signed by an old root, plus the new self-signed root itself.
    old_root_key = ec.generate_private_key(ec.SECP256R1())
    old_root = issue("Old Root", old_root_key, ca=True)
    cross = issue("Test Root", pki.root_key, (old_root, old_root_key), ca=True, subject=pki.root.subject)
    bundle = build_bundle([("fullchain.pem", cert_pem(pki.leaf, pki.intermediate, pki.root, cross)),
                           ("privkey.pem", key_pem(pki.leaf_key))], now=NOW)
    assert bundle.chain == [pki.intermediate, cross]


def test_duplicates_count_once(pki):
    bundle = build_bundle(
        [("fullchain.pem", cert_pem(pki.leaf, pki.intermediate)), ("cert.pem", cert_pem(pki.leaf)),
         ("privkey.pem", key_pem(pki.leaf_key))],
        now=NOW,
    )
    assert bundle.chain == [pki.intermediate]


def test_expired(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue("old.example.test", key, (pki.intermediate, pki.int_key),
                 not_before=NOW - 100 * DAY, not_after=NOW - 3 * DAY)
    text = cert_pem(leaf, pki.intermediate) + key_pem(key)
    with pytest.raises(PemError) as excinfo:
        load(text)
    assert_error(excinfo, "certificates[3].content", "CN=old.example.test", "expired on 2026-11-24T12:00:00Z",
                 "now 2026-11-27T12:00:00Z")
    bundle = load(text, allow_expired=True)
    assert bundle.summary.as_dict(now=NOW)["days_left"] == -3


def test_not_yet_valid(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue("future.example.test", key, (pki.intermediate, pki.int_key),
                 not_before=NOW + 2 * DAY, not_after=NOW + 90 * DAY)
    text = cert_pem(leaf, pki.intermediate) + key_pem(key)
    with pytest.raises(PemError) as excinfo:
        load(text)
    message = assert_error(excinfo, "certificates[3].content", "is not valid yet", "starts 2026-11-29T12:00:00Z")
    assert "expired" not in message
    assert load(text, allow_expired=True).summary.names == []


def test_validity_defaults_to_the_real_clock(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    real_now = datetime.datetime.now(datetime.timezone.utc)
    leaf = issue("now.example.test", key, (pki.intermediate, pki.int_key),
                 not_before=real_now - 3 * DAY, not_after=real_now - DAY)
    with pytest.raises(PemError, match="expired"):
        load_bundle(cert_pem(leaf) + key_pem(key), source="content")


def test_only_the_leaf_validity_counts(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    old_ca = issue("Expired CA", pki.int_key, (pki.root, pki.root_key), ca=True, subject=pki.intermediate.subject,
                   not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    leaf = issue("leaf.example.test", key, (old_ca, pki.int_key))
    assert load(cert_pem(leaf, old_ca) + key_pem(key)).chain == [old_ca]


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_encrypted_key(pki, fmt):
    text = cert_pem(pki.leaf, pki.intermediate) + key_pem(pki.leaf_key, fmt, passphrase=b"s3cret")
    with pytest.raises(PemError) as excinfo:
        load(text)
    assert_error(excinfo, "certificates[3].content (block 3", "is encrypted and no passphrase was given")
    with pytest.raises(PemError) as excinfo:
        load(text, passphrase="wrong")
    message = assert_error(excinfo, "certificates[3].content (block 3", "wrong passphrase")
    assert "s3cret" not in message and "wrong" not in message.partition("wrong passphrase")[0]
    bundle = load(text, passphrase="s3cret")
    assert "ENCRYPTED" not in bundle.to_pem()
    assert bundle.to_pem() == load(pki.good).to_pem()


def test_passphrase_for_a_plain_key_is_harmless(pki):
    assert load(pki.good, passphrase=b"unused").summary == load(pki.good).summary


def test_der_sources(pki):
    sources = [
        ("cert.der", pki.leaf.public_bytes(serialization.Encoding.DER)),
        ("chain.der", pki.intermediate.public_bytes(serialization.Encoding.DER)),
        ("key.der", pki.leaf_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())),
    ]
    assert build_bundle(sources, now=NOW).to_pem() == load(pki.good).to_pem()


def test_der_encrypted_key(pki):
    der_key = pki.leaf_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"pw"))
    sources = [("fullchain.pem", cert_pem(pki.leaf, pki.intermediate)), ("key.der", der_key)]
    with pytest.raises(PemError) as excinfo:
        build_bundle(sources, now=NOW)
    assert_error(excinfo, "key.der", "encrypted and no passphrase")
    with pytest.raises(PemError) as excinfo:
        build_bundle(sources, now=NOW, passphrase="nope")
    assert_error(excinfo, "key.der", "wrong passphrase")
    assert build_bundle(sources, now=NOW, passphrase="pw").summary == load(pki.good).summary


def test_der_garbage():
    with pytest.raises(PemError) as excinfo:
        build_bundle([("cert.der", b"\x30\x82\x01\x00" + b"\x00" * 20)], now=NOW)
    assert_error(excinfo, "cert.der is neither PEM nor a DER certificate or private key")


def test_errors_name_every_source(pki):
    with pytest.raises(PemError) as excinfo:
        build_bundle([("/etc/live/x/fullchain.pem", cert_pem(pki.leaf)), ("/etc/live/x/cert.pem", cert_pem(pki.leaf))], now=NOW)
    assert_error(excinfo, "no private key found in /etc/live/x/fullchain.pem, /etc/live/x/cert.pem")


def test_dh_parameters_are_kept(pki):
    parameters = (
        "-----BEGIN DH PARAMETERS-----\n"
        "MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz\n"
        "+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a\n"
        "87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7\n"
        "YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi\n"
        "7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD\n"
        "ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==\n"
        "-----END DH PARAMETERS-----\n"
    )
    bundle = load(pki.good + "\n" + parameters)
    assert bundle.to_pem().endswith(parameters)
    assert bundle.certificates_pem().count("BEGIN") == 2
    with pytest.raises(PemError) as excinfo:
        load(pki.good + parameters.replace("MIIBCAKC", "!!!!"))
    assert_error(excinfo, "certificates[3].content (block 4, DH PARAMETERS)", "do not parse")


# --- files ----------------------------------------------------------------------------------

def test_read_file(tmp_path, pki):
    good = tmp_path / "good.pem"
    good.write_text(pki.good)
    assert _pem.read_file(str(good)) == pki.good.encode()

    with pytest.raises(PemError) as excinfo:
        _pem.read_file(str(tmp_path / "missing.pem"))
    assert_error(excinfo, "%s does not exist" % (tmp_path / "missing.pem"))

    dangling = tmp_path / "dangling.pem"
    dangling.symlink_to(tmp_path / "archive" / "cert1.pem")
    with pytest.raises(PemError) as excinfo:
        _pem.read_file(str(dangling))
    assert_error(excinfo, str(dangling), "dangling symlink", str(tmp_path / "archive" / "cert1.pem"))

    with pytest.raises(PemError) as excinfo:
        _pem.read_file(str(tmp_path))
    assert_error(excinfo, "%s is a directory" % tmp_path)


@pytest.fixture
def searchable_dir():
    """A directory anyone may traverse (pytest's tmp_path is private to its owner)."""
    directory = tempfile.mkdtemp(prefix="test_pem_")
    os.chmod(directory, 0o711)
    yield directory
    shutil.rmtree(directory)


def test_read_file_unreadable(searchable_dir):
    """A file the module's user may not read (as root: read from a child process running as nobody)."""
    locked = os.path.join(searchable_dir, "locked.pem")
    with open(locked, "w") as handle:
        handle.write("x")
    os.chmod(locked, 0)
    if os.geteuid() != 0:
        with pytest.raises(PemError) as excinfo:
            _pem.read_file(locked)
        assert_error(excinfo, locked, "cannot be read: permission denied")
        return
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        message = "no error"
        try:
            os.setgid(65534)
            os.setuid(65534)
            _pem.read_file(locked)
        except PemError as exc:
            message = str(exc)
        except BaseException as exc:  # noqa: B036 - anything else must reach the parent too
            message = "unexpected %r" % exc
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(child, 0)
    assert message == "%s cannot be read: permission denied" % locked


def test_summarize_certificate_of_any_old_file(pki):
    summary = _pem.summarize_certificate(cert_pem(pki.leaf) + key_pem(pki.other_key), source="/etc/haproxy/x.pem")
    assert summary.serial == format_serial(pki.leaf.serial_number)


# --- signature check without verify_directly_issued_by (cryptography < 40) ------------------

def _sign_with(issuer_key, subject_key, *, pss=False, name="Signer"):
    issuer = issue(name, issuer_key, ca=True)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("signed.example.test"))
        .issuer_name(issuer.subject)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
    )
    if pss:
        from cryptography.hazmat.primitives.asymmetric import padding
        certificate = builder.sign(issuer_key, hashes.SHA256(),
                                   rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32))
    else:
        certificate = builder.sign(issuer_key, _hash_for(issuer_key))
    return issuer, certificate


@pytest.mark.parametrize("make_key, pss", [
    (lambda: rsa.generate_private_key(65537, 2048), False),
    (lambda: rsa.generate_private_key(65537, 2048), True),
    (lambda: ec.generate_private_key(ec.SECP256R1()), False),
    (lambda: dsa.generate_private_key(1024), False),
    (ed25519.Ed25519PrivateKey.generate, False),
    (ed448.Ed448PrivateKey.generate, False),
])
def test_fallback_signature_check(make_key, pss):
    from cryptography.exceptions import InvalidSignature
    issuer_key = make_key()
    issuer, certificate = _sign_with(issuer_key, ec.generate_private_key(ec.SECP256R1()), pss=pss)
    _pem._verify_signature(certificate, issuer)
    impostor = issue("Signer", make_key(), ca=True)
    with pytest.raises(InvalidSignature):
        _pem._verify_signature(certificate, impostor)
    # and the same answer from the path build_bundle takes
    assert _pem._signed_by(certificate, issuer)
    assert not _pem._signed_by(certificate, impostor)


def test_fallback_is_used_when_cryptography_lacks_verify_directly_issued_by(pki, monkeypatch):
    """Debian 12's python3-cryptography (38) has no verify_directly_issued_by: the chain rules must hold there too."""
    calls = []
    real_verify = _pem._verify_signature

    def counting_verify(certificate, issuer):
        calls.append((certificate, issuer))
        return real_verify(certificate, issuer)

    class OldCertificate:
        """A certificate as cryptography 38 shows it: everything but verify_directly_issued_by."""

        def __init__(self, certificate):
            self._certificate = certificate

        def __getattr__(self, name):
            if name == "verify_directly_issued_by":
                raise AttributeError(name)
            return getattr(self._certificate, name)

    monkeypatch.setattr(_pem, "_verify_signature", counting_verify)
    assert _pem._signed_by(OldCertificate(pki.leaf), pki.intermediate)
    assert not _pem._signed_by(OldCertificate(pki.leaf), pki.stranger)
    assert len(calls) == 2


def test_cryptography_floor_is_declared_once():
    """_pem checks the floor at import; requirements.txt and the doc fragment state the same one."""
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", ".."))
    with open(os.path.join(root, "requirements.txt")) as handle:
        floors = [line.strip() for line in handle if line.startswith("cryptography")]
    assert floors == ["cryptography>=%d.%d.%d" % _pem.CRYPTOGRAPHY_MINIMUM]
    with open(os.path.join(root, "plugins", "doc_fragments", "_cryptography.py")) as handle:
        assert "  - %s on the host" % _pem.CRYPTOGRAPHY_REQUIREMENT in handle.read()
    assert _pem.HAS_CRYPTOGRAPHY and _pem.CRYPTOGRAPHY_ERROR is None


@pytest.mark.parametrize("text, version", [("38.0.4", (38, 0, 4)), ("42.0.0rc1", (42, 0, 0)), ("2.x", (2,)), ("3.3", (3, 3)),
                                           ("50.0.2", (50, 0, 2))])
def test_version_tuple(text, version):
    assert _pem.version_tuple(text) == version
    assert (version >= _pem.CRYPTOGRAPHY_MINIMUM) == (version[0] >= 37)


def test_shared_intermediate_is_parsed_and_checked_once(monkeypatch):
    """Bundles sharing an intermediate and root: its parse and its signature check are done once per process."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    inter_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)

    def sign(subject, public_key, issuer, signing_key, ca):
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=9))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(signing_key, hashes.SHA256()))

    root = sign("cache root", root_key.public_key(), "cache root", root_key, True)
    inter = sign("cache inter", inter_key.public_key(), "cache root", root_key, True)
    texts = []
    for number in range(5):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = sign("leaf%d.test" % number, key.public_key(), "cache inter", inter_key, False)
        texts.append("".join(item.public_bytes(serialization.Encoding.PEM).decode() for item in (leaf, inter, root))
                     + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode())
    checked = []
    real = _pem._signed_by
    monkeypatch.setattr(_pem, "_signed_by", lambda cert, issuer: checked.append(cert.subject) or real(cert, issuer))
    bundles = [_pem.load_bundle(text, source="bundle %d" % number) for number, text in enumerate(texts)]
    assert [len(bundle.chain) for bundle in bundles] == [1] * 5
    # One check per leaf; the intermediate (by the root) and the root (by itself) once for all five.
    assert checked.count(inter.subject) == 1 and checked.count(root.subject) == 1
    assert len(checked) == 7
    assert bundles[0].chain[0] is bundles[4].chain[0]
