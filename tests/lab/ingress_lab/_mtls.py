# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The lab's mutual TLS material: two client CAs, a client certificate of each, CRLs.

The mTLS frontend starts with ``ca-file.pem`` (client CA 1 only) and
``crl-file.pem`` (an empty CRL of each CA: HAProxy checks the CRL of every CA
in the chain, so CA 2 needs one before its clients can be accepted). Tests
then push CA 2 and a CRL revoking client 2 through the Runtime API.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._pki import CertificateAuthority, cert_pem, key_pem, new_key, write_private, write_public
from ._served import haproxy_serial

_ONE_DAY = datetime.timedelta(days=1)


def issue_client(ca: CertificateAuthority, common_name: str, days: int = 30, serial: int | None = None):
    """A client certificate (clientAuth) for ``common_name``, signed by ``ca``."""
    key = new_key('ec')
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


def make_crl(ca: CertificateAuthority, revoked: list[int] | None = None, *,
             last_update: datetime.datetime | None = None, days: int = 7) -> bytes:
    """A PEM CRL of ``ca`` revoking the serials ``revoked``, valid ``days`` from ``last_update``."""
    last_update = last_update or datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.cert.subject)
               .last_update(last_update)
               .next_update(last_update + datetime.timedelta(days=days)))
    for serial in revoked or []:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last_update).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_mtls(state_dir: str) -> dict:
    """Write the mTLS material under STATE_DIR/mtls; return its paths for the lab state."""
    directory = os.path.join(state_dir, 'mtls')
    os.makedirs(directory, mode=0o700, exist_ok=True)
    paths: dict = {'dir': directory}
    cas = {}
    for number in (1, 2):
        ca = CertificateAuthority.create(f'ingress.haproxy lab client CA {number}')
        cas[number] = ca
        ca_cert, ca_key = os.path.join(directory, f'ca{number}.crt'), os.path.join(directory, f'ca{number}.key')
        ca.write(ca_cert, ca_key)
        # Client 2's serial always has an odd number of hex digits, so tests
        # meet the leading zero HAProxy prints for it (``serial_hex``).
        serial = (x509.random_serial_number() >> 4) | (1 << 152) if number == 2 else None
        cert, key = issue_client(ca, f'client{number}.lab.test', serial=serial)
        client_cert = os.path.join(directory, f'client{number}.crt')
        client_key = os.path.join(directory, f'client{number}.key')
        write_public(client_cert, cert_pem(cert))
        write_private(client_key, key_pem(key))
        paths[f'ca{number}'] = {'cert': ca_cert, 'key': ca_key}
        paths[f'client{number}'] = {'cert': client_cert, 'key': client_key, 'serial': cert.serial_number,
                                    'serial_hex': haproxy_serial(cert)}
    paths['ca_file'] = os.path.join(directory, 'ca-file.pem')
    paths['crl_file'] = os.path.join(directory, 'crl-file.pem')
    write_public(paths['ca_file'], cert_pem(cas[1].cert))
    write_public(paths['crl_file'], make_crl(cas[1]) + make_crl(cas[2]))
    # Ready-made payloads for tests: CA 1 + CA 2; the CRLs revoking client 2;
    # one past its nextUpdate; one that claims CA 2 as issuer but is signed by
    # another key (its signature does not verify against CA 2).
    now = datetime.datetime.now(datetime.timezone.utc)
    payloads = {
        'ca_both': cert_pem(cas[1].cert) + cert_pem(cas[2].cert),
        'crl_revoked': make_crl(cas[1]) + make_crl(cas[2], [paths['client2']['serial']]),
        'crl_expired': make_crl(cas[1]) + make_crl(cas[2], last_update=now - datetime.timedelta(days=10), days=2),
        'crl_wrong_issuer': make_crl(cas[1]) + make_crl(
            CertificateAuthority(cas[2].cert, new_key('ec')), [paths['client2']['serial']]),
    }
    for name, data in payloads.items():
        paths[name] = os.path.join(directory, name.replace('_', '-') + '.pem')
        write_public(paths[name], data)
    return paths
