# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""pebble for the lab: an ACME CA that validates DNS-01 against the lab's bind9.

With pebble 2.10+ (``--pebble 2.10``) it offers two profiles, ``default``
(90 days) and ``shortlived`` (6 days, like Let's Encrypt's), and ARI; with
``eab`` it requires External Account Binding with one key, ``kid-lab``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import urllib.error
import urllib.request

from ._component import Component
from ._errors import LabError
from ._pki import CertificateAuthority, cert_pem, key_pem, write_private, write_public
from ._pebbles import HOST_PEBBLE, offers_profiles
from ._process import free_port

PROFILES = {'default': 90 * 86400, 'shortlived': 6 * 86400}
EAB_KID = 'kid-lab'


class Pebble(Component):
    """Listens on 127.0.0.1 (ACME + management); its TLS certificate comes from the lab CA."""

    name = 'acme'

    def __init__(self, state_dir: str, ca: CertificateAuthority, ca_file: str, dns_server: str,
                 binary: str = HOST_PEBBLE, version: str = '2.4', eab: bool = False) -> None:
        super().__init__(state_dir)
        self.binary = binary
        self.version = version
        self.profiles = PROFILES if offers_profiles(version) else {}
        # The MAC key as pebble and community.crypto take it: base64url, no padding.
        self.eab_hmac = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b'=').decode() if eab else None
        self.ca = ca
        self.ca_file = ca_file
        self.dns_server = dns_server
        self.address = '127.0.0.1'
        self.port = 0
        self.management_port = 0

    @property
    def config(self) -> str:
        return os.path.join(self.workdir, 'pebble.json')

    @property
    def directory(self) -> str:
        return f'https://{self.address}:{self.port}/dir'

    @property
    def management(self) -> str:
        return f'https://{self.address}:{self.management_port}'

    @property
    def issuer_root(self) -> str:
        return os.path.join(self.workdir, 'issuer-root.pem')

    @property
    def issuer_intermediate(self) -> str:
        return os.path.join(self.workdir, 'issuer-intermediate.pem')

    def prepare(self) -> None:
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        cert_path = os.path.join(self.workdir, 'pebble.crt')
        key_path = os.path.join(self.workdir, 'pebble.key')
        if not os.path.exists(cert_path):
            cert, key = self.ca.issue(['localhost'], ips=[self.address], days=30)
            write_public(cert_path, cert_pem(cert))
            write_private(key_path, key_pem(key))
        self.port = free_port(self.address)
        self.management_port = free_port(self.address)
        config = {'pebble': {
            'listenAddress': f'{self.address}:{self.port}',
            'managementListenAddress': f'{self.address}:{self.management_port}',
            'certificate': cert_path,
            'privateKey': key_path,
            # Only DNS-01 is used; the HTTP-01/TLS-ALPN-01 ports are never reached.
            'httpPort': free_port(self.address),
            'tlsPort': free_port(self.address),
            'ocspResponderURL': '',
            'externalAccountBindingRequired': self.eab_hmac is not None,
        }}
        if self.eab_hmac:
            config['pebble']['externalAccountMACKeys'] = {EAB_KID: self.eab_hmac}
        if self.profiles:
            config['pebble']['profiles'] = {
                name: {'description': f'lab profile {name}', 'validityPeriod': seconds}
                for name, seconds in self.profiles.items()}
        with open(self.config, 'w', encoding='utf-8') as out:
            json.dump(config, out, indent=2)

    def argv(self) -> list[str]:
        return [self.binary, '-config', self.config, '-dnsserver', self.dns_server]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            'PEBBLE_VA_NOSLEEP': '1',       # validate at once, no random sleeps
            'PEBBLE_WFE_NONCEREJECT': '0',  # never reject a good nonce
            'PEBBLE_VA_ALWAYS_VALID': '0',  # really look up the TXT records
            'PEBBLE_AUTHZREUSE': '0',       # every order gets fresh challenges
        })
        return env

    def _get(self, url: str, timeout: float) -> bytes:
        context = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(url, context=context, timeout=timeout) as reply:  # nosec - lab URL
            return reply.read()

    def probe(self) -> bool:
        try:
            return b'newOrder' in self._get(self.directory, 0.5)
        except (OSError, urllib.error.URLError, ssl.SSLError):
            return False

    def finish(self) -> None:
        """Keep pebble's root and intermediate (regenerated at every start) as PEM files."""
        for kind, path in (('roots', self.issuer_root), ('intermediates', self.issuer_intermediate)):
            try:
                pem = self._get(f'{self.management}/{kind}/0', 5)
            except (OSError, urllib.error.URLError, ssl.SSLError) as exc:
                raise LabError(f'pebble: cannot fetch {self.management}/{kind}/0: {exc}') from exc
            write_public(path, pem)

    def state(self) -> dict:
        return {
            'directory': self.directory,
            'ca_file': self.ca_file,
            'pid': self.daemon.pid if self.daemon else None,
            'management': self.management,
            'issuer_root': self.issuer_root,
            'issuer_intermediate': self.issuer_intermediate,
            'dns_server': self.dns_server,
            'version': self.version,
            # Profile name -> validity in seconds ({} before pebble 2.10).
            'profiles': dict(self.profiles),
            'eab': {'kid': EAB_KID, 'hmac': self.eab_hmac} if self.eab_hmac else None,
            'config': self.config,
            'log': self.log_path,
        }
