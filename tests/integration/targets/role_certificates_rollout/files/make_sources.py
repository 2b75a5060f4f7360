#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write one certificate source (fullchain.pem + privkey.pem) for the rollout tests, and print its leaf.

Kinds: good (the lab CA, SAN www.lab.test: what clients trust), other_ca (a
CA the clients do not trust, SAN www.lab.test), no_san (the lab CA, SAN
other.lab.test only). HAProxy accepts all three; only good passes a client.
Prints JSON: the leaf's serial and SHA1 fingerprint as HAProxy prints them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _other_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("untrusted rollout CA")).issuer_name(_name("untrusted rollout CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ca-cert", required=True)
    parser.add_argument("--ca-key", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", choices=["good", "other_ca", "no_san"], required=True)
    args = parser.parse_args()
    if args.kind == "other_ca":
        ca, ca_key = _other_ca()
    else:
        with open(args.ca_cert, "rb") as handle:
            ca = x509.load_pem_x509_certificate(handle.read())
        with open(args.ca_key, "rb") as handle:
            ca_key = serialization.load_pem_private_key(handle.read(), password=None)
    name = "other.lab.test" if args.kind == "no_san" else "www.lab.test"
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    os.makedirs(args.out, mode=0o700, exist_ok=True)
    pem = serialization.Encoding.PEM
    with open(os.path.join(args.out, "fullchain.pem"), "wb") as handle:
        handle.write(leaf.public_bytes(pem) + ca.public_bytes(pem))
    descriptor = os.open(os.path.join(args.out, "privkey.pem"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    serial = leaf.serial_number
    print(json.dumps({"serial": serial.to_bytes((serial.bit_length() + 7) // 8, "big").hex().upper(),
                      "fingerprint": leaf.fingerprint(hashes.SHA1()).hex().upper()}))  # nosec - HAProxy's fingerprint


if __name__ == "__main__":
    main()
