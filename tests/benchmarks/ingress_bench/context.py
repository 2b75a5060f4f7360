# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every benchmark gets: the lab, a scratch directory, the run's size, a logger."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certs import Issuer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LAB_DIR = os.path.join(REPO_ROOT, 'tests', 'lab')


def lab_package():
    """The lab's package ``ingress_lab`` (tests/lab is not on sys.path by default)."""
    if LAB_DIR not in sys.path:
        sys.path.insert(0, LAB_DIR)
    # pylint: disable-next=import-outside-toplevel
    import ingress_lab
    return ingress_lab


def lab_class():
    """The lab's ``Lab``."""
    return lab_package().Lab


@dataclasses.dataclass
class LoadedCertificate:
    """A certificate an instance loaded at start: its HAProxy name (path), server name, fingerprint."""

    path: str
    name: str
    fingerprint: str


def loaded_certificates(instance: dict) -> list[LoadedCertificate]:
    """The crt-list entries of a lab instance except its default certificate, in list order."""
    found = []
    with open(instance['crt_list'], encoding='utf-8') as crt_list:
        paths = [line.split()[0] for line in crt_list if line.strip() and not line.startswith('#')]
    for path in paths:
        if path == instance['default_cert']:
            continue
        with open(path, 'rb') as pem:
            cert = x509.load_pem_x509_certificate(pem.read())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        der = cert.public_bytes(serialization.Encoding.DER)
        found.append(LoadedCertificate(path, names.get_values_for_type(x509.DNSName)[0],
                                       hashlib.sha1(der).hexdigest().upper()))  # nosec - HAProxy's fingerprint
    return found


@dataclasses.dataclass
class Context:
    """Shared by all benchmarks of one ``run.py`` invocation."""

    lab_root: str
    workdir: str
    quick: bool
    repetitions: int
    python: str = sys.executable
    issuer: Issuer = dataclasses.field(default_factory=Issuer)
    haproxy_version: str = ''

    def log(self, message: str) -> None:
        print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)

    def scratch(self, name: str) -> str:
        path = os.path.join(self.workdir, name)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def lab(self, **options):
        """A started lab (context manager); remembers the HAProxy version for the report."""
        options.setdefault('timeout', 600.0)
        return lab_class()(self.lab_root, **options)
