# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One HAProxy process of the lab: TLS frontend on a crt-list, Runtime API on TCP and unix."""

from __future__ import annotations

import os
import subprocess

from ._component import Component
from ._errors import LabError
from ._process import free_port
from ._roots import haproxy_argv, in_root
from ._runtime import runtime_command

# The crt-store section of 3.2+ labs and the one certificate it loads (store.pem).
STORE_NAME = 'lab'
STORE_ALIAS = 'store'
STORE_CERT_NAME = f'@{STORE_NAME}/{STORE_ALIAS}'
STORE_SERVERNAME = 'store.lab.test'

# Longest path a unix socket address can hold (sun_path, NUL included).
_SUN_PATH_MAX = 108


def haproxy_version(root: str | None = None) -> str:
    """``2.6.12-1+deb12u4`` from the first line of ``haproxy -v`` (of the Debian ``root``, if given)."""
    argv = haproxy_argv(root) + ['-v']
    if root:
        argv = ['chroot', root] + argv
    try:
        output = subprocess.run(argv, capture_output=True, text=True, check=True,
                                timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f'cannot run {" ".join(argv)}: {exc}') from exc
    words = output.split()
    if len(words) < 3 or words[0] != 'HAProxy':
        raise LabError(f'unexpected output of {" ".join(argv)}: {output[:200]!r}')
    return words[2]


class HAProxyInstance(Component):
    """Instance number ``index`` (1-based) listens on 127.0.0.(10 + index)."""

    def __init__(self, state_dir: str, index: int, *, master_worker: bool,
                 bufsize: int | None = None, nbthread: int | None = None,
                 ports: tuple[int, int] | None = None, root: str | None = None,
                 crt_store: bool = False, mtls: dict | None = None,
                 mtls_port: int | None = None) -> None:
        super().__init__(state_dir)
        # The mTLS frontend's CA file and CRL file (paths), and its shared port.
        self.mtls = mtls
        self.shared_mtls_port = mtls_port
        self.mtls_port = 0
        # A Debian root to chroot into (None: the host's HAProxy).
        self.root = root
        # Also load one certificate through a crt-store section (HAProxy 3.2+).
        self.crt_store = crt_store
        # Like the tasks of a Swarm service, all instances answer on the same
        # (TLS, Runtime API) ports, each on its own address.
        self.shared_ports = ports
        self.index = index
        self.name = f'h{index}'
        self.address = self.address_of(index)
        self.master_worker = master_worker
        self.bufsize = bufsize
        self.nbthread = nbthread
        self.tls_port = 0
        self.runtime_port = 0
        for path in (self.admin_socket, self.operator_socket, self.user_socket, self.master_socket):
            if len(path.encode()) >= _SUN_PATH_MAX:
                raise LabError(f'unix socket path {path} is longer than {_SUN_PATH_MAX - 1} bytes: '
                               'use a shorter --root')

    @staticmethod
    def address_of(index: int) -> str:
        return f'127.0.0.{10 + index}'

    @property
    def cert_dir(self) -> str:
        return os.path.join(self.workdir, 'certs')

    @property
    def crt_list(self) -> str:
        return os.path.join(self.cert_dir, 'crt-list.txt')

    @property
    def default_cert(self) -> str:
        return os.path.join(self.cert_dir, 'default.pem')

    @property
    def config(self) -> str:
        return os.path.join(self.workdir, 'haproxy.cfg')

    @property
    def admin_socket(self) -> str:
        return os.path.join(self.workdir, 'admin.sock')

    @property
    def operator_socket(self) -> str:
        return os.path.join(self.workdir, 'operator.sock')

    @property
    def user_socket(self) -> str:
        return os.path.join(self.workdir, 'user.sock')

    @property
    def master_socket(self) -> str:
        return os.path.join(self.workdir, 'master.sock')

    @property
    def store_cert(self) -> str:
        return os.path.join(self.cert_dir, 'store.pem')

    def write_certificates(self, default_pem: bytes, extra: list[tuple[str, bytes]],
                           store_pem: bytes | None = None) -> None:
        """default.pem first (the frontend's default certificate), then ``extra`` (name, PEM).

        ``store_pem`` (with ``crt_store``): store.pem, loaded through the crt-store
        section, not the crt-list.
        """
        os.makedirs(self.cert_dir, mode=0o700, exist_ok=True)
        files = [('default.pem', default_pem)] + extra
        if self.crt_store and store_pem is not None:
            files.append(('store.pem', store_pem))
        lines = []
        for file_name, pem in files:
            path = os.path.join(self.cert_dir, file_name)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, 'wb') as out:
                out.write(pem)
            if file_name != 'store.pem':
                lines.append(path + '\n')
        with open(self.crt_list, 'w', encoding='utf-8') as out:
            out.writelines(lines)

    def prepare(self) -> None:
        if self.shared_ports and not self.tls_port:
            self.tls_port, self.runtime_port = self.shared_ports
        else:
            # First start without shared ports, or a retry after a port was
            # taken meanwhile: ports of this instance's own.
            self.tls_port = free_port(self.address)
            self.runtime_port = free_port(self.address)
        if self.mtls:
            self.mtls_port = (self.shared_mtls_port if self.shared_mtls_port and not self.mtls_port
                              else free_port(self.address))
        for path in (self.admin_socket, self.operator_socket, self.user_socket, self.master_socket):
            if os.path.exists(path):
                os.unlink(path)
        tuning = []
        if self.nbthread:
            tuning.append(f'    nbthread {self.nbthread}')
        if self.bufsize:
            tuning.append(f'    tune.bufsize {self.bufsize}')
        store_section, store_bind = [], ''
        if self.crt_store:
            # Shows as @lab/store in "show ssl cert"; the bind serves it by SNI.
            store_section = [f'crt-store {STORE_NAME}',
                             f'    crt-base {self.cert_dir}',
                             f'    load crt "store.pem" alias "{STORE_ALIAS}"',
                             '']
            store_bind = f' crt "{STORE_CERT_NAME}"'
        text = '\n'.join([
            f'# ingress.haproxy lab, instance {self.name} (generated, state dir {self.state_dir})',
            'global',
            f'    stats socket ipv4@{self.address}:{self.runtime_port} level admin',
            f'    stats socket {self.admin_socket} mode 600 level admin',
            f'    stats socket {self.operator_socket} mode 600 level operator',
            f'    stats socket {self.user_socket} mode 600 level user',
            '    stats timeout 2m',
            *tuning,
            '',
            'defaults',
            '    mode http',
            '    timeout connect 5s',
            '    timeout client 30s',
            '    timeout server 30s',
            '    timeout http-request 10s',
            '',
            *store_section,
            'frontend tls',
            f'    bind {self.address}:{self.tls_port} ssl crt-list {self.crt_list}{store_bind} alpn h2,http/1.1',
            f'    http-request return status 200 content-type text/plain string "{self.name}\\n"',
            '',
            *self._mtls_section(),
        ])
        with open(self.config, 'w', encoding='utf-8') as out:
            out.write(text)

    def _mtls_section(self) -> list[str]:
        """A frontend that requires a client certificate (CA file and CRL file of the lab)."""
        if not self.mtls:
            return []
        return ['frontend mtls',
                f'    bind {self.address}:{self.mtls_port} ssl crt {self.default_cert}'
                f' ca-file {self.mtls["ca_file"]} crl-file {self.mtls["crl_file"]} verify required',
                '    http-request return status 200 content-type text/plain string "client ok\\n"',
                '']

    def runs(self) -> list[str]:
        """What the process runs once any chroot wrapper has exec'd into HAProxy."""
        if self.master_worker:
            return haproxy_argv(self.root) + ['-W', '-db', '-S', self.master_socket, '-f', self.config]
        return haproxy_argv(self.root) + ['-db', '-f', self.config]

    def argv(self) -> list[str]:
        if self.root is None:
            return self.runs()
        return in_root(self.root, self.state_dir, self.runs())

    def probe(self) -> bool:
        """The worker answers ``show info`` (and, in master-worker mode, the master ``show proc``)."""
        try:
            if 'Pid:' not in runtime_command(self.admin_socket, 'show info', timeout=0.5):
                return False
            if self.master_worker:
                return 'worker' in runtime_command(self.master_socket, 'show proc', timeout=0.5)
        except LabError:
            return False
        return True

    def state(self) -> dict:
        return {
            'name': self.name,
            'index': self.index,
            'address': self.address,
            'pid': self.daemon.pid if self.daemon else None,
            'tls_port': self.tls_port,
            'runtime_tcp': f'{self.address}:{self.runtime_port}',
            'runtime_unix': self.admin_socket,
            'runtime_operator': self.operator_socket,
            'runtime_user': self.user_socket,
            'master_cli': self.master_socket if self.master_worker else None,
            'master_worker': self.master_worker,
            'cert_dir': self.cert_dir,
            'crt_list': self.crt_list,
            'default_cert': self.default_cert,
            'config': self.config,
            'log': self.log_path,
            'bufsize': self.bufsize or 16384,
            # The certificate loaded through the crt-store section (HAProxy 3.2+), else None.
            'crt_store_cert': STORE_CERT_NAME if self.crt_store else None,
            'crt_store_file': self.store_cert if self.crt_store else None,
            'mtls_port': self.mtls_port or None,
        }
