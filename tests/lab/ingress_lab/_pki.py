# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The lab CA and the certificates it signs (cryptography only, no openssl CLI)."""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = datetime.timedelta(days=1)


def write_private(path: str, data: bytes) -> None:
    """Write a file holding key material: created 0600, never readable by others."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, 'wb') as out:
        out.write(data)
    os.chmod(path, 0o600)


def write_public(path: str, data: bytes) -> None:
    with open(path, 'wb') as out:
        out.write(data)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_key(kind: str = 'ec'):
    if kind == 'rsa':
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


class CertificateAuthority:
    """A self-signed CA (EC P-256, so signing many leaves is fast)."""

    def __init__(self, cert: x509.Certificate, key) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, common_name: str = 'ingress.haproxy lab CA') -> CertificateAuthority:
        key = new_key('ec')
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'ingress.haproxy lab'),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(self, names: list[str], *, key=None, ips: list[str] | None = None,
              days: int = 90, serial: int | None = None) -> tuple[x509.Certificate, object]:
        """A server certificate for DNS ``names`` (first one is the CN), signed by this CA."""
        key = key or new_key('ec')
        now = datetime.datetime.now(datetime.timezone.utc)
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert, key

    def write(self, cert_path: str, key_path: str) -> None:
        write_public(cert_path, cert_pem(self.cert))
        write_private(key_path, key_pem(self.key))
