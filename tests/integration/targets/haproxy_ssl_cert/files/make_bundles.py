#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write the PEM bundles the haproxy_ssl_cert tests push, signed by the lab CA.

One run writes every named case into --out (mode 0600) and prints a JSON
document: for each case its file and the serial and SHA1 fingerprint of its
leaf, as HAProxy prints them. ``--bulk N`` adds N cheap bundles (one shared
EC key) named bulk-0001 ..., listed as ``certificates`` entries that replace
the lab's preloaded preload-0001.pem ... in ``--bulk-target-dir``.

Cases: good (EC leaf + intermediate + key), good2 (another leaf for the same
names), rsa, ed25519, split (whole bundle larger than tune.bufsize, the
certificates alone smaller), too_big (certificates alone larger), and the bad
ones: garbage, no_key, wrong_key, encrypted_key, expired, not_yet_valid,
out_of_order, empty.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
BUFSIZE = 16384


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key, passphrase=None):
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def _serial(certificate):
    magnitude = certificate.serial_number
    return magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "big").hex().upper()


class Issuer:
    def __init__(self, ca_cert_path, ca_key_path):
        with open(ca_cert_path, "rb") as handle:
            self.ca = x509.load_pem_x509_certificate(handle.read())
        with open(ca_key_path, "rb") as handle:
            self.ca_key = serialization.load_pem_private_key(handle.read(), password=None)
        self.intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self.sign(_name("ingress.haproxy test intermediate"), self.intermediate_key.public_key(),
                                      self.ca.subject, self.ca_key, ca=True, days=365)

    @staticmethod
    def sign(subject, public_key, issuer_name, issuer_key, names=(), ca=False, days=90, start=None):
        start = start or NOW - datetime.timedelta(hours=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def leaf(self, names, key=None, days=90, start=None):
        key = key or ec.generate_private_key(ec.SECP256R1())
        certificate = self.sign(_name(names[0]), key.public_key(), self.intermediate.subject,
                                self.intermediate_key, names=names, days=days, start=start)
        return certificate, key


def _sized_leaf(issuer, base, key, low, high):
    """A leaf whose PEM plus the intermediate's lands between low and high bytes."""
    count = 10
    while True:
        names = [base] + ["h%04d.%s" % (index, base) for index in range(count)]
        certificate, dummy_key = issuer.leaf(names, key=key)
        size = len(_pem(certificate) + _pem(issuer.intermediate))
        if low <= size <= high:
            return certificate
        if size > high:
            raise SystemExit("cannot size a leaf into %d..%d bytes (got %d)" % (low, high, size))
        count += max(1, (low - size) // 40)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ca-cert", required=True)
    parser.add_argument("--ca-key", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--domain", default="lab.test")
    parser.add_argument("--bulk", type=int, default=0)
    parser.add_argument("--bulk-only", action="store_true", help="write only the bulk bundles")
    parser.add_argument("--bulk-target-dir", help="where the certificates the bulk bundles replace are loaded from "
                                                  "(the lab's preload-NNNN.pem)")
    args = parser.parse_args()
    os.makedirs(args.out, mode=0o700, exist_ok=True)
    issuer = Issuer(args.ca_cert, args.ca_key)
    chain = _pem(issuer.intermediate)
    cases = {}

    def write(case, text, certificate=None, names=None):
        path = os.path.join(args.out, case + ".pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        entry = {"path": path, "size": len(text)}
        if certificate is not None:
            entry.update(serial=_serial(certificate),
                         fingerprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # nosec - HAProxy's SHA1
                         names=sorted(names or []))
        cases[case] = entry

    if not args.bulk_only:
        write_cases(issuer, chain, args.domain, write)
    if args.bulk:
        write_bulk(issuer, chain, args, cases)
    json.dump(cases, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


def write_cases(issuer, chain, domain, write):
    site = "site." + domain
    for case in ("good", "good2"):
        certificate, key = issuer.leaf([site, "www." + site])
        # A blank line inside the bundle: the module must not let it cut the payload.
        write(case, _pem(certificate) + "\n" + chain + _key_pem(key), certificate, [site, "www." + site])
    certificate, key = issuer.leaf(["rsa." + domain], key=rsa.generate_private_key(65537, 2048))
    write("rsa", _pem(certificate) + chain + _key_pem(key), certificate, ["rsa." + domain])
    certificate, key = issuer.leaf(["ed." + domain], key=ed25519.Ed25519PrivateKey.generate())
    write("ed25519", _pem(certificate) + chain + _key_pem(key), certificate, ["ed." + domain])
    new_names = ["new." + domain]
    certificate, key = issuer.leaf(new_names)
    write("new", _pem(certificate) + chain + _key_pem(key), certificate, new_names)
    # For the certificate the lab's crt-store section loads (HAProxy 3.2+), served for store.DOMAIN.
    store_names = ["store." + domain]
    certificate, key = issuer.leaf(store_names)
    write("store", _pem(certificate) + chain + _key_pem(key), certificate, store_names)

    # Larger than the buffer as a whole, but the certificates alone fit: sent as NAME then NAME.key.
    big_key = rsa.generate_private_key(65537, 4096)
    key_text = _key_pem(big_key)
    certificate = _sized_leaf(issuer, "split." + domain, big_key, BUFSIZE - len(key_text) + 200, BUFSIZE - 600)
    write("split", _pem(certificate) + chain + key_text, certificate,
          certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
          .get_values_for_type(x509.DNSName))
    # The certificates alone are larger than the buffer: cannot go over the Runtime API.
    small_key = ec.generate_private_key(ec.SECP256R1())
    certificate = _sized_leaf(issuer, "toobig." + domain, small_key, BUFSIZE + 500, BUFSIZE + 4000)
    write("too_big", _pem(certificate) + chain + _key_pem(small_key), certificate)

    # What must be refused before anything is sent.
    certificate, key = issuer.leaf([site])
    write("garbage", "this is not a PEM bundle\n")
    write("empty", "")
    write("no_key", _pem(certificate) + chain)
    write("wrong_key", _pem(certificate) + chain + _key_pem(ec.generate_private_key(ec.SECP256R1())))
    write("encrypted_key", _pem(certificate) + chain + _key_pem(key, passphrase="secret-passphrase"))
    write("out_of_order", chain + _pem(certificate) + _key_pem(key))
    expired, key = issuer.leaf([site], days=30, start=NOW - datetime.timedelta(days=60))
    write("expired", _pem(expired) + chain + _key_pem(key), expired)
    future, key = issuer.leaf([site], days=30, start=NOW + datetime.timedelta(days=5))
    write("not_yet_valid", _pem(future) + chain + _key_pem(key), future)


def write_bulk(issuer, chain, args, cases):
    """N cheap bundles sharing one EC key, and the certificates entries that push them."""
    shared_key = ec.generate_private_key(ec.SECP256R1())
    shared_key_text = _key_pem(shared_key)
    bulk, expected = [], []
    width = max(4, len(str(args.bulk)))
    for number in range(1, args.bulk + 1):
        label = "bulk-%0*d" % (width, number)
        names = ["%s.%s" % (label, args.domain)]
        certificate, dummy_key = issuer.leaf(names, key=shared_key)
        path = os.path.join(args.out, label + ".pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(_pem(certificate) + chain + shared_key_text)
        target = os.path.join(args.bulk_target_dir or args.out, "preload-%0*d.pem" % (width, number))
        bulk.append({"path": target, "src": path})
        expected.append({"serial": _serial(certificate), "names": names})
    # "bulk" is the module's certificates list as it is; "bulk_expected" what HAProxy must report.
    cases["bulk"] = bulk
    cases["bulk_expected"] = expected


if __name__ == "__main__":
    main()
