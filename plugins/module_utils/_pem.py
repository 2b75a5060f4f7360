# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""Parse, validate and normalise the one-file PEM bundles HAProxy loads.

Every PEM rule of the collection lives here, so ``haproxy_ssl_cert`` and
``haproxy_cert_bundle`` judge a bundle the same way: everything parses, there
is exactly one private key, it matches the leaf, the chain runs leaf -> issuers
(checked by name and by signature), and the leaf is inside its validity window.

No Ansible import: the cryptography import is guarded, and modules report a
missing or too old library through ``require_cryptography()`` (its PemError says which version is needed).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import errno
import os
import re
import traceback
import warnings

from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError


# The one place the collection states the cryptography it needs (padding.PSS.AUTO is 37.0's), checked at import.
# requirements.txt and the _cryptography doc fragment repeat it; a unit test keeps all three equal.
CRYPTOGRAPHY_MINIMUM = (37, 0, 0)
CRYPTOGRAPHY_REQUIREMENT = "cryptography >= %d.%d.%d" % CRYPTOGRAPHY_MINIMUM
_RSASSA_PSS = "1.2.840.113549.1.1.10"


def version_tuple(text):
    """``"38.0.4"`` -> ``(38, 0, 4)``; a part that is not a number ends it (``"42.0.0rc1"`` -> ``(42, 0)``)."""
    numbers = []
    for part in str(text).split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        numbers.append(int(match.group()))
        if match.group() != part:
            break
    return tuple(numbers)


try:
    import cryptography
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
    CRYPTOGRAPHY_ERROR = ("the Python library %s is required on the host the module runs on, and it cannot be "
                          "imported there (pip install 'cryptography>=%d.%d.%d', or the OS package python3-cryptography)"
                          % ((CRYPTOGRAPHY_REQUIREMENT,) + CRYPTOGRAPHY_MINIMUM))
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None
    HAS_CRYPTOGRAPHY = version_tuple(cryptography.__version__) >= CRYPTOGRAPHY_MINIMUM
    CRYPTOGRAPHY_ERROR = None if HAS_CRYPTOGRAPHY else (
        "cryptography %s is installed on the host the module runs on; the collection needs %s (upgrade it: pip "
        "install 'cryptography>=%d.%d.%d')" % ((cryptography.__version__, CRYPTOGRAPHY_REQUIREMENT) + CRYPTOGRAPHY_MINIMUM))


class PemError(IngressError):
    """A bundle or one of its sources is unusable; the message names the source and the reason."""


# PEM labels that may hold a private key (OpenSSL's "traditional" forms and PKCS#8).
_KEY_LABELS = frozenset((
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "DSA PRIVATE KEY",
))
# `openssl ecparam -genkey` writes the curve before the key; the key names it again.
_IGNORED_LABELS = frozenset(("EC PARAMETERS",))
# HAProxy reads DH parameters from the certificate file when no ssl-dh-param-file is set.
_DH_LABELS = frozenset(("DH PARAMETERS", "X9.42 DH PARAMETERS"))

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 .#]+)-----\r?\n(?P<body>.*?)-----END (?P=label)-----",
    re.DOTALL,
)
_PEM_BEGIN = re.compile(r"-----BEGIN [^\n]*-----")

# OpenSSL's short names, as X509_NAME_oneline() prints them (HAProxy's `Subject:` line).
_OPENSSL_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}


def require_cryptography() -> None:
    """Raise PemError saying which cryptography is needed, when it is missing or too old."""
    if not HAS_CRYPTOGRAPHY:
        traceback_text = {"exception": CRYPTOGRAPHY_IMPORT_ERROR} if CRYPTOGRAPHY_IMPORT_ERROR else {}
        raise PemError(CRYPTOGRAPHY_ERROR, **traceback_text)


def _utc_now(now: datetime.datetime | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc)


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_serial(serial: int) -> str:
    """Format a serial number exactly as HAProxy's ``show ssl cert`` prints ``Serial:``.

    HAProxy dumps the bytes OpenSSL keeps for the ASN1_INTEGER: the magnitude,
    big-endian, in as few whole bytes as it takes (the DER sign byte 0x00 is
    not kept), each byte as two uppercase hex digits. So 0xABC prints ``0ABC``,
    0x80FF (DER 00 80 FF) prints ``80FF``, zero prints ``00`` and a (non-RFC)
    negative serial prints its magnitude: -128 prints ``80``.
    """
    magnitude = abs(serial)
    length = max(1, (magnitude.bit_length() + 7) // 8)
    return magnitude.to_bytes(length, "big").hex().upper()


def format_name(name: x509.Name) -> str:
    """A distinguished name in OpenSSL's one-line form (``/C=FR/O=Example/CN=www.example.com``), as HAProxy prints it."""
    parts = []
    for attribute in name:
        label = _OPENSSL_SHORT_NAMES.get(attribute.oid.dotted_string, attribute.oid.dotted_string)
        value = attribute.value
        if isinstance(value, bytes):
            raw = value
        else:
            raw = value.encode("utf-8")
        text = "".join(chr(byte) if 0x20 <= byte <= 0x7E else "\\x%02X" % byte for byte in raw)
        parts.append("/%s=%s" % (label, text))
    return "".join(parts)


def _validity(certificate: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    # cryptography >= 42 offers aware datetimes; older releases only naive UTC ones.
    not_before = getattr(certificate, "not_valid_before_utc", None)
    not_after = getattr(certificate, "not_valid_after_utc", None)
    if not_before is None or not_after is None:
        not_before = certificate.not_valid_before.replace(tzinfo=datetime.timezone.utc)
        not_after = certificate.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return not_before, not_after


def _key_type(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(public_key).__name__


def _serial_number(certificate: x509.Certificate) -> int:
    # A zero or negative serial breaks RFC 5280 but OpenSSL (and HAProxy) load it;
    # cryptography only warns, and the warning says nothing the user can act on here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return certificate.serial_number


def _dns_names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return sorted(extension.value.get_values_for_type(x509.DNSName))


@dataclasses.dataclass(frozen=True)
class CertificateSummary:
    """What identifies a certificate, in the forms HAProxy's ``show ssl cert`` uses."""

    serial: str
    fingerprint: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    names: list[str]
    subject: str
    issuer: str
    key_type: str

    @classmethod
    def of(cls, certificate: x509.Certificate) -> CertificateSummary:
        not_before, not_after = _validity(certificate)
        try:
            key_type = _key_type(certificate.public_key())
        except (UnsupportedAlgorithm, ValueError):
            key_type = certificate.public_key_algorithm_oid.dotted_string
        return cls(
            serial=format_serial(_serial_number(certificate)),
            fingerprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # nosec: HAProxy identifies certificates by SHA1
            not_before=not_before,
            not_after=not_after,
            names=_dns_names(certificate),
            subject=format_name(certificate.subject),
            issuer=format_name(certificate.issuer),
            key_type=key_type,
        )

    def days_left(self, now: datetime.datetime | None = None) -> int:
        """Whole days until notAfter (negative once expired)."""
        return (self.not_after - _utc_now(now)).days

    def as_dict(self, now: datetime.datetime | None = None) -> dict:
        return {
            "serial": self.serial,
            "fingerprint": self.fingerprint,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "days_left": self.days_left(now),
            "names": list(self.names),
            "subject": self.subject,
            "issuer": self.issuer,
            "key_type": self.key_type,
        }


def _describe(certificate: x509.Certificate) -> str:
    return "%s (serial %s)" % (format_name(certificate.subject) or "<empty subject>", format_serial(_serial_number(certificate)))


def _pem_text(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


class Bundle:
    """A validated bundle: the leaf, its issuers in order (no self-signed root) and the leaf's key."""

    def __init__(self, leaf, chain, private_key, dh_parameters: str | None = None):
        self.leaf = leaf
        self.chain = list(chain)
        self.private_key = private_key
        self.dh_parameters = dh_parameters
        self._summary = None

    @property
    def summary(self) -> CertificateSummary:
        if self._summary is None:
            self._summary = CertificateSummary.of(self.leaf)
        return self._summary

    @property
    def chain_summaries(self) -> list[CertificateSummary]:
        return [CertificateSummary.of(certificate) for certificate in self.chain]

    def certificates_pem(self) -> str:
        """The leaf then its issuers."""
        return "".join(_pem_text(certificate) for certificate in [self.leaf] + self.chain)

    def key_pem(self) -> str:
        """The private key, unencrypted PKCS#8 (the one PEM form every key type has)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def to_pem(self) -> str:
        """Leaf, chain, key (and DH parameters when the source had them): LF endings, no blank line, one final newline."""
        text = self.certificates_pem() + self.key_pem()
        if self.dh_parameters is not None:
            text += self.dh_parameters
        return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


@dataclasses.dataclass
class _Item:
    """One certificate or key read from a source, with where it came from."""

    source: str
    position: int
    value: object

    @property
    def where(self) -> str:
        return "%s (block %d)" % (self.source, self.position)


def _to_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def _passphrase_bytes(passphrase: bytes | str | None) -> bytes | None:
    if passphrase is None or passphrase == "" or passphrase == b"":
        return None
    return _to_bytes(passphrase)


def _load_private_key(data: bytes, *, der: bool, where: str, passphrase: bytes | None):
    loader = serialization.load_der_private_key if der else serialization.load_pem_private_key
    try:
        try:
            return loader(data, password=passphrase)
        except TypeError as exc:
            if passphrase is not None and "not encrypted" in str(exc):
                # A passphrase for an unencrypted key is harmless: the key is usable as it is.
                return loader(data, password=None)
            raise
    except TypeError as exc:
        if "encrypted" in str(exc):
            raise PemError(
                "the private key in %s is encrypted and no passphrase was given: "
                "HAProxy cannot load an encrypted key, give the passphrase so it is written decrypted" % where
            )
        raise PemError("cannot read the private key in %s: %s" % (where, exc))
    except UnsupportedAlgorithm as exc:
        raise PemError("the private key in %s uses an unsupported algorithm: %s" % (where, exc))
    except ValueError as exc:
        if passphrase is not None:
            raise PemError("cannot decrypt the private key in %s: wrong passphrase, or the key is damaged (%s)" % (where, exc))
        raise PemError("the private key in %s does not parse: %s" % (where, exc))


# Bundles of one call share their intermediates (and often a root): each distinct certificate is
# parsed once, and each (certificate, issuer) signature checked once, per process. Bounded: a bulk
# call's unique leaves must not grow these without end.
_CACHE_LIMIT = 4096
_PARSED: dict = {}
_ISSUED: dict = {}


def _remember(cache: dict, key, value):
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _load_certificate(data: bytes, *, der: bool, where: str):
    cached = _PARSED.get((der, data))
    if cached is not None:
        return cached
    return _remember(_PARSED, (der, data), _parse_certificate(data, der=der, where=where))


def _parse_certificate(data: bytes, *, der: bool, where: str):
    try:
        with warnings.catch_warnings():
            # A zero or negative serial breaks RFC 5280, yet OpenSSL (and so HAProxy)
            # loads it; cryptography's warning names nothing the user could act on.
            warnings.simplefilter("ignore")
            if der:
                return x509.load_der_x509_certificate(data)
            return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PemError("the certificate in %s does not parse: %s" % (where, exc))


def _der_body(body: str) -> bytes | None:
    """The DER bytes of a PEM block body (no RFC 1421 headers), or None when it is not base64 DER."""
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return der if der[:1] == b"\x30" else None


def _read_pem_blocks(data: bytes, source: str, passphrase: bytes | None, certificates: list, keys: list, dh_parameters: list) -> None:
    text = data.decode("ascii", errors="replace").replace("\r\n", "\n")
    blocks = list(_PEM_BLOCK.finditer(text))
    begins = _PEM_BEGIN.findall(text)
    if len(begins) != len(blocks):
        raise PemError(
            "%s holds a damaged PEM block: %d BEGIN lines but %d complete blocks (a BEGIN line without its matching END line)"
            % (source, len(begins), len(blocks))
        )
    if not blocks:
        raise PemError("%s holds no PEM certificate or private key (neither PEM nor DER)" % source)
    for position, block in enumerate(blocks, start=1):
        label = block.group("label")
        where = "%s (block %d, %s)" % (source, position, label)
        raw = ("%s\n" % block.group(0)).encode("ascii", errors="replace")
        if label == "CERTIFICATE":
            certificates.append(_Item(source, position, _load_certificate(raw, der=False, where=where)))
        elif label in _KEY_LABELS:
            keys.append(_Item(source, position, _load_private_key(raw, der=False, where=where, passphrase=passphrase)))
        elif label in _DH_LABELS:
            # Kept verbatim: re-encoding may change the PEM label HAProxy reads, and
            # cryptography deprecates finite-field DH. Check it is DER inside, no more.
            if _der_body(block.group("body")) is None:
                raise PemError("the DH parameters in %s do not parse: the block is not base64-encoded DER" % where)
            dh_parameters.append(_Item(source, position, "%s\n" % block.group(0)))
        elif label in _IGNORED_LABELS:
            continue
        else:
            raise PemError(
                "%s holds a %r PEM block, which has no place in a HAProxy certificate bundle "
                "(only CERTIFICATE and PRIVATE KEY blocks)" % (where, label)
            )


def _read_der(data: bytes, source: str, passphrase: bytes | None, certificates: list, keys: list) -> None:
    # A DER file holds exactly one object: try a certificate, then a private key.
    try:
        certificates.append(_Item(source, 1, _load_certificate(data, der=True, where=source)))
        return
    except PemError:
        pass
    try:
        keys.append(_Item(source, 1, serialization.load_der_private_key(data, password=passphrase)))
        return
    except TypeError:
        # Encrypted DER key (or a passphrase for a plain one): let the key loader say which.
        keys.append(_Item(source, 1, _load_private_key(data, der=True, where=source, passphrase=passphrase)))
        return
    except (ValueError, UnsupportedAlgorithm):
        pass
    if passphrase is not None:
        # Could be an encrypted PKCS#8 key with the wrong passphrase.
        try:
            serialization.load_der_private_key(data, password=None)
        except TypeError:
            raise PemError("cannot decrypt the private key in %s: wrong passphrase, or the key is damaged" % source)
        except (ValueError, UnsupportedAlgorithm):
            pass
    raise PemError("%s is neither PEM nor a DER certificate or private key" % source)


def read_source(data: bytes | str, source: str, *, passphrase: bytes | str | None = None) -> tuple[list, list, list]:
    """Parse one source (PEM text with any number of blocks, or one DER object).

    Returns ``(certificates, keys, dh_parameters)`` as lists of items that remember
    the source; raises PemError naming the source when anything does not parse.
    """
    require_cryptography()
    raw = _to_bytes(data)
    certificates: list = []
    keys: list = []
    dh_parameters: list = []
    if not raw.strip():
        raise PemError("%s is empty" % source)
    password = _passphrase_bytes(passphrase)
    if b"-----BEGIN" in raw:
        _read_pem_blocks(raw, source, password, certificates, keys, dh_parameters)
    elif raw[:1] == b"\x30":
        _read_der(raw, source, password, certificates, keys)
    else:
        raise PemError("%s holds no PEM certificate or private key (neither PEM nor DER)" % source)
    return certificates, keys, dh_parameters


def _public_key_bytes(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _verify_signature(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    """Raise InvalidSignature unless issuer's key made certificate's signature.

    For cryptography < 40 (Debian 12's python3-cryptography is 38), which lacks
    Certificate.verify_directly_issued_by().
    """
    public_key = issuer.public_key()
    signature = certificate.signature
    data = certificate.tbs_certificate_bytes
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        public_key.verify(signature, data)
        return
    digest = certificate.signature_hash_algorithm
    if digest is None:
        raise InvalidSignature("no digest for a %s signature" % type(public_key).__name__)
    if isinstance(public_key, rsa.RSAPublicKey):
        if certificate.signature_algorithm_oid.dotted_string == _RSASSA_PSS:
            scheme = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO)
        else:
            scheme = padding.PKCS1v15()
        public_key.verify(signature, data, scheme, digest)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(digest))
    elif isinstance(public_key, dsa.DSAPublicKey):
        public_key.verify(signature, data, digest)
    else:
        raise InvalidSignature("cannot verify a signature made with a %s key" % type(public_key).__name__)


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        if hasattr(certificate, "verify_directly_issued_by"):
            certificate.verify_directly_issued_by(issuer)
        else:
            _verify_signature(certificate, issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _issued(subject_item: _Item, issuer_item: _Item) -> bool:
    """True when issuer_item's name is subject_item's issuer and its key made subject_item's signature."""
    key = (subject_item.value, issuer_item.value)
    known = _ISSUED.get(key)
    if known is not None:
        return known
    if subject_item.value.issuer != issuer_item.value.subject:
        return _remember(_ISSUED, key, False)
    return _remember(_ISSUED, key, _signed_by(subject_item.value, issuer_item.value))


def _self_signed(item: _Item) -> bool:
    return _issued(item, item)


def _order_chain(leaf: _Item, others: list) -> tuple[list, list]:
    """Walk from the leaf to its issuers; return (chain, leftovers).

    A non-self-signed issuer is preferred over a self-signed one with the same
    name and key (a cross-signed intermediate next to its own root): the chain
    goes on as far as it can, and the root ends up dropped.
    """
    chain: list = []
    remaining = list(others)
    current = leaf
    while not _self_signed(current):
        candidates = [item for item in remaining if _issued(current, item)]
        if not candidates:
            break
        candidates.sort(key=_self_signed)
        issuer = candidates[0]
        remaining.remove(issuer)
        if _self_signed(issuer):
            break
        chain.append(issuer)
        current = issuer
    # A self-signed root that issued anything in the chain is a trust anchor: clients
    # hold it, HAProxy does not need to send it. Drop it quietly.
    issued_items = [leaf] + chain
    leftovers = [
        item for item in remaining
        if not (_self_signed(item) and any(_issued(child, item) for child in issued_items))
    ]
    return chain, leftovers


def _check_validity(leaf: _Item, now: datetime.datetime) -> None:
    not_before, not_after = _validity(leaf.value)
    if now > not_after:
        raise PemError(
            "the certificate %s in %s expired on %s (now %s)"
            % (_describe(leaf.value), leaf.source, _iso(not_after), _iso(now))
        )
    if now < not_before:
        raise PemError(
            "the certificate %s in %s is not valid yet: its validity starts %s (now %s)"
            % (_describe(leaf.value), leaf.source, _iso(not_before), _iso(now))
        )


def _sources_text(items: list) -> str:
    return ", ".join(item.where for item in items)


def build_bundle(
    sources: list[tuple[str, bytes | str]],
    *,
    passphrase: bytes | str | None = None,
    allow_expired: bool = False,
    reorder: bool = True,
    now: datetime.datetime | None = None,
) -> Bundle:
    """Build one validated bundle from several sources (files or strings, PEM or DER).

    ``sources`` is a list of ``(source name, data)``; the names appear in every
    error. Certificates that appear twice (a fullchain plus the same leaf alone)
    count once. The leaf is the certificate that matches the private key. With
    ``reorder`` the certificates are put in order leaf -> issuers; without it an
    order other than that is an error.
    """
    require_cryptography()
    certificates: list = []
    keys: list = []
    dh_parameters: list = []
    for source, data in sources:
        found_certificates, found_keys, found_dh = read_source(data, source, passphrase=passphrase)
        certificates.extend(found_certificates)
        keys.extend(found_keys)
        dh_parameters.extend(found_dh)
    everywhere = ", ".join(source for source, dummy in sources)

    if not keys:
        raise PemError("no private key found in %s: a HAProxy bundle needs the leaf's private key" % everywhere)
    if len(keys) > 1:
        raise PemError("%d private keys found (%s): a HAProxy bundle holds exactly one" % (len(keys), _sources_text(keys)))
    if not certificates:
        raise PemError("no certificate found in %s: a HAProxy bundle needs the certificate that goes with the key" % everywhere)
    if len(dh_parameters) > 1:
        raise PemError("%d DH parameter blocks found (%s): at most one" % (len(dh_parameters), _sources_text(dh_parameters)))
    key = keys[0]

    unique: list = []
    seen = set()
    for item in certificates:
        der = item.value.public_bytes(serialization.Encoding.DER)
        if der not in seen:
            seen.add(der)
            unique.append(item)

    key_public = _public_key_bytes(key.value.public_key())
    leaves = []
    for item in unique:
        try:
            if _public_key_bytes(item.value.public_key()) == key_public:
                leaves.append(item)
        except (UnsupportedAlgorithm, ValueError):
            continue
    if not leaves:
        if len(unique) == 1:
            raise PemError(
                "the private key in %s does not match the certificate %s in %s"
                % (key.where, _describe(unique[0].value), unique[0].source)
            )
        raise PemError(
            "the private key in %s matches none of the %d certificates (%s)"
            % (key.where, len(unique), "; ".join("%s in %s" % (_describe(item.value), item.where) for item in unique))
        )
    if len(leaves) > 1:
        raise PemError(
            "%d certificates match the private key in %s (%s): a bundle holds one leaf"
            % (len(leaves), key.where, "; ".join("%s in %s" % (_describe(item.value), item.where) for item in leaves))
        )
    leaf = leaves[0]
    others = [item for item in unique if item is not leaf]

    chain, leftovers = _order_chain(leaf, others)
    if leftovers:
        raise PemError(
            "%s %s not part of the chain of %s (neither its issuer nor an issuer's issuer, by name and signature)"
            % (
                "; ".join("%s in %s" % (_describe(item.value), item.where) for item in leftovers),
                "is" if len(leftovers) == 1 else "are",
                _describe(leaf.value),
            )
        )
    if not reorder:
        given = [item for item in unique if item is leaf or item in chain]
        expected = [leaf] + chain
        if given != expected:
            raise PemError(
                "the certificates in %s are out of order: a bundle lists the leaf first, then each issuer after the "
                "certificate it signed. Found: %s. Expected: %s"
                % (
                    everywhere,
                    ", ".join(_describe(item.value) for item in given),
                    ", ".join(_describe(item.value) for item in expected),
                )
            )

    if not allow_expired:
        _check_validity(leaf, _utc_now(now))

    return Bundle(
        leaf.value,
        [item.value for item in chain],
        key.value,
        dh_parameters[0].value if dh_parameters else None,
    )


def load_bundle(
    data: bytes | str,
    *,
    source: str,
    allow_expired: bool = False,
    now: datetime.datetime | None = None,
    passphrase: bytes | str | None = None,
) -> Bundle:
    """Validate one PEM text holding certificates and exactly one private key.

    The certificates must already be in order leaf -> issuers (a trailing
    self-signed root is allowed and dropped); raises PemError otherwise.
    """
    return build_bundle(
        [(source, data)],
        passphrase=passphrase,
        allow_expired=allow_expired,
        reorder=False,
        now=now,
    )


def summarize_certificate(data: bytes | str, *, source: str) -> CertificateSummary:
    """Summary of the first certificate in a PEM text or DER file, without validating the rest.

    Used for the "before" side of a diff, where the old file may be anything.
    """
    certificates, dummy_keys, dummy_dh = read_source(data, source)
    if not certificates:
        raise PemError("no certificate found in %s" % source)
    return CertificateSummary.of(certificates[0].value)


def read_file(path: str) -> bytes:
    """Read a source file; a missing file, a dangling symlink or an unreadable file is a PemError naming it."""
    if not os.path.lexists(path):
        raise PemError("%s does not exist" % path)
    if os.path.islink(path) and not os.path.exists(path):
        raise PemError("%s is a symlink to %s, which does not exist (dangling symlink)" % (path, os.path.realpath(path)))
    if os.path.isdir(path):
        raise PemError("%s is a directory, not a file" % path)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM):
            reason = "permission denied"
        raise PemError("%s cannot be read: %s" % (path, reason))
