# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""bind9 for the lab: authoritative for ``haproxy.``, ``lab.test.`` and ``challenges.test.``, RFC 2136 updates with TSIG."""

from __future__ import annotations

import base64
import os
import socket

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from ._component import Component
from ._process import free_port

NAMED = os.environ.get('INGRESS_LAB_NAMED', '/usr/sbin/named')

SERVICE = 'haproxy'
# challenges.test holds the DNS-01 records lab.test delegates to it by CNAME (DELEGATION).
ZONES = ('haproxy', 'lab.test', 'challenges.test')
# Configured but its zone file never exists: bind9 answers SERVFAIL for every
# name in it, which a lookup must report as such.
UNLOADABLE_ZONE = 'unloadable.test'
TSIG_NAME = 'lab-key'
TSIG_ALGORITHM = 'hmac-sha256'

# Names in zone "haproxy." besides tasks.haproxy (every instance, A only).
NAMES = {
    'tasks': 'tasks.haproxy',               # A: every instance address
    'ipv6_only': 'tasks.haproxy6.haproxy',  # AAAA ::1, no A
    'mixed': 'tasks.mixed.haproxy',         # A of the first instance + AAAA ::1
    'no_address': 'tasks.empty.haproxy',    # exists (TXT only): NOERROR, no A/AAAA
    'nxdomain': 'tasks.missing.haproxy',    # does not exist
}

# _acme-challenge CNAMEs in lab.test: name -> what its challenge record is.
DELEGATION = {
    'zone': 'challenges.test',
    # _acme-challenge.delegated.lab.test. CNAME delegated.challenges.test.
    'delegated': {'domain': 'delegated.lab.test', 'target': 'delegated.challenges.test'},
    # _acme-challenge.looped.lab.test. CNAME looped.challenges.test. CNAME _acme-challenge.looped.lab.test.
    'looped': {'domain': 'looped.lab.test', 'target': ''},
}


def _free_dual_port(address: str) -> int:
    """A port free for both TCP and UDP on ``address`` (named serves both)."""
    for _attempt in range(50):
        port = free_port(address)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((address, port))
            except OSError:
                continue
        return port
    raise OSError(f'no port free for both TCP and UDP on {address}')


class _Named(Component):
    """A ``named -g`` of the lab (foreground, log to stderr = the log file), no rndc, its config 0600."""

    server = '127.0.0.1'
    port = 0

    @property
    def config(self) -> str:
        return os.path.join(self.workdir, 'named.conf')

    def _write_config(self, head: str, options: list[str], tail: str) -> None:
        """named.conf: ``head``, the options every lab named has plus ``options``, ``tail``; on a new free port."""
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        self.port = _free_dual_port(self.server)
        text = (
            f'// ingress.haproxy lab {self.name} (generated, state dir {self.state_dir})\n' + head
            + 'options {\n'
            f'    directory "{self.workdir}";\n'
            '    pid-file none;\n'
            f'    session-keyfile "{self.workdir}/session.key";\n'
            f'    managed-keys-directory "{self.workdir}";\n'
            f'    listen-on port {self.port} {{ {self.server}; }};\n'
            '    listen-on-v6 { none; };\n'
            '    allow-query { 127.0.0.0/8; };\n'
            '    dnssec-validation no;\n'
            '    notify no;\n'
            + ''.join(f'    {option}\n' for option in options)
            + '};\n'
            'controls { };\n'
            + tail)
        descriptor = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, 'w', encoding='ascii') as out:
            out.write(text)

    def argv(self) -> list[str]:
        # -g: foreground, log to stderr; -n 1: one worker thread is plenty here.
        return [NAMED, '-g', '-n', '1', '-c', self.config]

    def _answers_soa(self, zones: tuple[str, ...]) -> bool:
        try:
            for zone in zones:
                reply = dns.query.udp(dns.message.make_query(zone + '.', dns.rdatatype.SOA),
                                      self.server, port=self.port, timeout=0.3)
                if not reply.answer:
                    return False
        except (OSError, dns.exception.DNSException):
            return False
        return True


class Bind9(_Named):
    """The lab's authoritative server: recursion off, RFC 2136 updates signed with the TSIG key."""

    name = 'dns'

    def __init__(self, state_dir: str, addresses: list[str]) -> None:
        super().__init__(state_dir)
        self.addresses = addresses
        self.secret = base64.b64encode(os.urandom(32)).decode()

    def _zone_file(self, zone: str) -> str:
        return os.path.join(self.workdir, f'db.{zone}')

    def _write_zones(self) -> None:
        soa = '@ SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 5\n@ NS ns.{zone}.\nns A 127.0.0.1\n'
        haproxy_zone = ['$TTL 5\n', soa.format(zone='haproxy')]
        haproxy_zone += [f'tasks A {address}\n' for address in self.addresses]
        haproxy_zone += [
            'tasks.haproxy6 AAAA ::1\n',
            f'tasks.mixed A {self.addresses[0]}\n',
            'tasks.mixed AAAA ::1\n',
            'tasks.empty TXT "a name without addresses"\n',
        ]
        lab_zone = ['$TTL 5\n', soa.format(zone='lab.test')]
        lab_zone += [f'default A {address}\n' for address in self.addresses]
        lab_zone += [f'h{index} A {address}\n' for index, address in enumerate(self.addresses, start=1)]
        lab_zone += [
            '_acme-challenge.delegated CNAME delegated.challenges.test.\n',
            '_acme-challenge.looped CNAME looped.challenges.test.\n',
        ]
        challenges_zone = ['$TTL 5\n', soa.format(zone='challenges.test'),
                           'looped CNAME _acme-challenge.looped.lab.test.\n']
        for zone, lines in (('haproxy', haproxy_zone), ('lab.test', lab_zone), ('challenges.test', challenges_zone)):
            path = self._zone_file(zone)
            for stale in (path, path + '.jnl'):
                if os.path.exists(stale):
                    os.unlink(stale)
            with open(path, 'w', encoding='ascii') as out:
                out.writelines(lines)

    def prepare(self) -> None:
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        self._write_zones()
        zones = ''.join(
            f'zone "{zone}" {{\n    type primary;\n    file "{self._zone_file(zone)}";\n'
            f'    allow-update {{ key "{TSIG_NAME}"; }};\n}};\n'
            for zone in ZONES)
        zones += (f'zone "{UNLOADABLE_ZONE}" {{\n    type primary;\n'
                  f'    file "{self._zone_file(UNLOADABLE_ZONE)}";\n}};\n')
        key = f'key "{TSIG_NAME}" {{\n    algorithm {TSIG_ALGORITHM};\n    secret "{self.secret}";\n}};\n'
        self._write_config(key, ['recursion no;', 'allow-transfer { none; };'], zones)

    def probe(self) -> bool:
        return self._answers_soa(ZONES)

    def state(self) -> dict:
        return {
            'server': self.server,
            'port': self.port,
            'zones': list(ZONES),
            'unloadable_zone': UNLOADABLE_ZONE,
            'service': SERVICE,
            'names': dict(NAMES),
            'delegation': {key: (dict(value) if isinstance(value, dict) else value) for key, value in DELEGATION.items()},
            'tsig': {'name': TSIG_NAME, 'algorithm': TSIG_ALGORITHM, 'secret': self.secret},
            'pid': self.daemon.pid if self.daemon else None,
            'config': self.config,
            'log': self.log_path,
        }


class Bind9Resolver(_Named):
    """A second named, recursive, forwarding every query to the lab's bind9: the CA's resolver.

    An authoritative bind9 with recursion off does not follow a CNAME into
    another zone (it answers the CNAME alone); a CA's resolver does. pebble
    takes the TXT records from the answer it gets, so it asks this one, which
    follows ``_acme-challenge`` CNAMEs into ``challenges.test`` as public DNS would.
    """

    name = 'resolver'

    def __init__(self, state_dir: str, authoritative: Bind9) -> None:
        super().__init__(state_dir)
        self.authoritative = authoritative

    def prepare(self) -> None:
        self._write_config('', [
            'recursion yes;',
            'allow-recursion { 127.0.0.0/8; };',
            f'forwarders {{ {self.authoritative.server} port {self.authoritative.port}; }};',
            'forward only;',
            # No cache between a challenge record's write and the CA's look.
            'max-cache-ttl 1;',
            'max-ncache-ttl 1;',
        ], '')

    def probe(self) -> bool:
        return self._answers_soa(('lab.test',))

    def state(self) -> dict:
        return {'server': self.server, 'port': self.port, 'pid': self.daemon.pid if self.daemon else None,
                'config': self.config, 'log': self.log_path}
