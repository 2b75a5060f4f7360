# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Many certificates, fast: one EC key shared by every leaf, one EC CA signing them.

Benchmarks need thousands of distinct certificates (distinct serials and
fingerprints) per run; key generation would dominate, so every leaf of one
generation shares one P-256 key and only the signature is computed per leaf.
"""

from __future__ import annotations

import datetime
import hashlib
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _write_private(path: str, data: bytes) -> None:
    """Bundles hold a private key: create them 0600."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, 'wb') as out:
        out.write(data)


class Issuer:
    """A throwaway CA that signs leaves for the benchmark's certificate generations."""

    def __init__(self, common_name: str = 'ingress.haproxy benchmark CA') -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self._now = datetime.datetime.now(datetime.timezone.utc)
        self._authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())

    def generation(self, names: list[str], label: str) -> Generation:
        """One certificate per name, all sharing a fresh key; ``label`` goes into the subject."""
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()
        public_key = leaf_key.public_key()
        certificates = []
        fingerprints = []
        for name in names:
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, label)]))
                .issuer_name(self._name)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(self._now - datetime.timedelta(days=1))
                .not_valid_after(self._now + datetime.timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(self._authority_key_id, critical=False)
                .sign(self._key, hashes.SHA256())
            )
            der = cert.public_bytes(serialization.Encoding.DER)
            fingerprints.append(hashlib.sha1(der).hexdigest().upper())  # nosec - HAProxy's fingerprint
            certificates.append(cert.public_bytes(serialization.Encoding.PEM).decode())
        return Generation(label, list(names), certificates, key_pem, fingerprints)


class Generation:
    """One version of a set of certificates: ``pems[i]`` (leaf + key) serves ``names[i]``."""

    def __init__(self, label: str, names: list[str], certificates: list[str], key_pem: str,
                 fingerprints: list[str]) -> None:
        self.label = label
        self.names = names
        self.certificates = certificates
        self.key_pem = key_pem
        self.pems = [certificate + key_pem for certificate in certificates]
        self.fingerprints = fingerprints

    def write(self, directory: str) -> list[str]:
        """Write one bundle file per certificate (0600); return their paths in order."""
        os.makedirs(directory, mode=0o700, exist_ok=True)
        paths = []
        for index, pem in enumerate(self.pems):
            path = os.path.join(directory, f'{index:05d}.pem')
            _write_private(path, pem.encode())
            paths.append(path)
        return paths

    def write_split(self, directory: str, index: int = 0) -> tuple[str, str]:
        """Write certificate ``index`` and the key as two files (as certbot or a secret holds them)."""
        os.makedirs(directory, mode=0o700, exist_ok=True)
        certificate_path = os.path.join(directory, f'{index:05d}.crt')
        key_path = os.path.join(directory, 'key.pem')
        with open(certificate_path, 'w', encoding='utf-8') as out:
            out.write(self.certificates[index])
        _write_private(key_path, self.key_pem.encode())
        return certificate_path, key_path
