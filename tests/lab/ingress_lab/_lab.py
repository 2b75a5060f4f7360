# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Start the whole lab, record it in ``<state_dir>/state.json``, stop exactly what it started."""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile
import time

from ._acme import Pebble
from ._pebbles import pebble_binary
from ._component import Component
from ._dns import Bind9, Bind9Resolver
from ._errors import LabError
from ._haproxy import STORE_CERT_NAME, STORE_SERVERNAME, HAProxyInstance, haproxy_version
from ._mtls import write_mtls
from ._pki import CertificateAuthority, cert_pem, key_pem, new_key
from ._process import Daemon, free_port_on_all, is_ours, is_running, log_tail, spawn, stop_daemons
from ._roots import DEFAULT_VERSION, build_for, ensure_root

DEFAULT_ROOT = '/tmp/ingress-lab'
STATE_FILE = 'state.json'
LAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Instance N listens on 127.0.0.(10 + N): 200 keeps every address below .255 (issue 17 fans out to 200).
MAX_INSTANCES = 200
# How often a daemon is restarted on new ports when a port it was given got taken meanwhile.
_BIND_ATTEMPTS = 3


class SilentEndpoint(Component):
    """A process that accepts TCP connections on 127.0.0.1 and never answers."""

    name = 'silent'

    def __init__(self, state_dir: str) -> None:
        super().__init__(state_dir)
        self.port = 0

    @property
    def ready_file(self) -> str:
        return os.path.join(self.workdir, 'port')

    def prepare(self) -> None:
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)

    def argv(self) -> list[str]:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_silent.py')
        return [sys.executable, script, '--address', '127.0.0.1', '--ready-file', self.ready_file]

    def probe(self) -> bool:
        try:
            with open(self.ready_file, encoding='ascii') as ready:
                self.port = int(ready.read())
        except (OSError, ValueError):
            return False
        return True

    def state(self) -> dict:
        return {'endpoint': f'127.0.0.1:{self.port}', 'pid': self.daemon.pid if self.daemon else None}


def _has_crt_store(version: str) -> bool:
    """HAProxy ``version`` ('3.2.26-1') knows ``crt-store`` sections (3.2 and later)."""
    major, minor = (int(part) for part in version.split('.')[:2])
    return (major, minor) >= (3, 2)


def _write_json_private(path: str, data: dict) -> None:
    """Atomically replace ``path`` (0600: the state holds the TSIG secret)."""
    temporary = path + '.tmp'
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, 'w', encoding='utf-8') as out:
        json.dump(data, out, indent=2, sort_keys=True)
        out.write('\n')
    os.replace(temporary, path)


def _preload_certificates(ca: CertificateAuthority, count: int) -> list[tuple[str, bytes]]:
    """``count`` extra certificates, fast: one EC key shared by all, signed by the EC lab CA."""
    if count <= 0:
        return []
    key = new_key('ec')
    key_text = key_pem(key)
    width = max(4, len(str(count)))
    extra = []
    for number in range(1, count + 1):
        label = f'preload-{number:0{width}d}'
        cert, _key = ca.issue([f'{label}.lab.test'], key=key, days=90)
        extra.append((f'{label}.pem', cert_pem(cert) + key_text))
    return extra


class Lab:
    """The loopback lab. ``with Lab(root, instances=3, dns=True) as lab: lab.state``.

    ``acme=True`` implies ``dns=True`` (pebble validates DNS-01 against the lab's
    bind9). Instance 1 always runs in master-worker mode (so ``master_cli`` is
    usable); ``master_worker=True`` runs every instance that way. ``haproxy``
    picks the HAProxy version ('2.6', '3.0', '3.2', '3.4'; default
    $INGRESS_HAPROXY_VERSION, else 2.6, the host's). ``pebble`` picks pebble
    ('2.4', the host's, default; '2.10', Debian sid's, with profiles and ARI);
    ``acme_eab`` makes pebble require External Account Binding.
    """

    def __init__(self, root: str = DEFAULT_ROOT, instances: int = 3, dns: bool = False,
                 acme: bool = False, master_worker: bool = False, preload: int = 0,
                 bufsize: int | None = None, nbthread: int | None = None,
                 keep: bool = False, timeout: float = 30.0, haproxy: str | None = None,
                 pebble: str | None = None, acme_eab: bool = False) -> None:
        if not 1 <= instances <= MAX_INSTANCES:
            raise LabError(f'instances must be between 1 and {MAX_INSTANCES}, got {instances}')
        if preload < 0:
            raise LabError(f'preload must not be negative, got {preload}')
        self.root = os.path.abspath(root)
        self.instance_count = instances
        self.dns = dns or acme
        self.acme = acme
        self.master_worker = master_worker
        self.preload = preload
        self.bufsize = bufsize
        self.nbthread = nbthread
        self.keep = keep
        self.timeout = timeout
        self.build = build_for(haproxy)
        self.pebble = pebble
        self.acme_eab = acme_eab
        self.state_dir = ''
        self.state: dict = {}
        self._daemons: list[Daemon] = []

    # -- start -------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> dict:
        """Start everything; on any failure stop what was started and raise LabError."""
        started = time.monotonic()
        os.makedirs(self.root, exist_ok=True)
        self.state_dir = tempfile.mkdtemp(prefix='lab-', dir=self.root)
        os.makedirs(os.path.join(self.state_dir, 'pids'))
        self.state = {'state_dir': self.state_dir, 'status': 'starting', 'processes': []}
        self._save()
        try:
            self._start(started)
        except BaseException:
            self.stop()
            raise
        return self.state

    def _start(self, started: float) -> None:
        # First: a missing Debian root takes about a minute to build.
        haproxy_root = ensure_root(self.build)
        version = haproxy_version(haproxy_root)
        crt_store = _has_crt_store(version)
        ca = CertificateAuthority.create()
        ca_dir = os.path.join(self.state_dir, 'ca')
        os.makedirs(ca_dir, mode=0o700)
        ca_cert, ca_key = os.path.join(ca_dir, 'ca.crt'), os.path.join(ca_dir, 'ca.key')
        ca.write(ca_cert, ca_key)
        default_cert, default_key = ca.issue(['default.lab.test'], key=new_key('rsa'), days=365)
        default_pem = cert_pem(default_cert) + key_pem(default_key)
        extra = _preload_certificates(ca, self.preload)
        store_pem = None
        if crt_store:
            store_cert, store_key = ca.issue([STORE_SERVERNAME], key=new_key('ec'), days=90)
            store_pem = cert_pem(store_cert) + key_pem(store_key)

        mtls = write_mtls(self.state_dir)
        indexes = range(1, self.instance_count + 1)
        addresses = [HAProxyInstance.address_of(index) for index in indexes]
        tls_port = free_port_on_all(addresses)
        runtime_port = free_port_on_all(addresses)
        while runtime_port == tls_port:
            runtime_port = free_port_on_all(addresses)
        mtls_port = free_port_on_all(addresses)
        while mtls_port in (tls_port, runtime_port):
            mtls_port = free_port_on_all(addresses)
        instances = [HAProxyInstance(self.state_dir, index,
                                     master_worker=self.master_worker or index == 1,
                                     bufsize=self.bufsize, nbthread=self.nbthread,
                                     ports=(tls_port, runtime_port), root=haproxy_root,
                                     crt_store=crt_store, mtls=mtls, mtls_port=mtls_port)
                     for index in indexes]
        for instance in instances:
            instance.write_certificates(default_pem, extra, store_pem)
        components: list[Component] = [*instances]
        dns = acme = resolver = None
        if self.dns:
            dns = Bind9(self.state_dir, [instance.address for instance in instances])
            components.append(dns)
        silent = SilentEndpoint(self.state_dir)
        components.append(silent)
        if self.acme and dns:  # acme implies dns (see __init__)
            # pebble needs bind9's port, chosen in dns.prepare(): prepare dns first.
            dns.prepare()
            # pebble asks a recursive resolver, as a CA does: it follows _acme-challenge CNAMEs across zones.
            resolver = Bind9Resolver(self.state_dir, dns)
            resolver.prepare()
            components.append(resolver)
            binary, pebble_version = pebble_binary(self.pebble)
            acme = Pebble(self.state_dir, ca, ca_cert, f'{resolver.server}:{resolver.port}',
                          binary=binary, version=pebble_version, eab=self.acme_eab)
            components.append(acme)

        self._run(components, prepared={dns, resolver} if acme else set())

        self.state.update({
            'root': self.root,
            'lab_dir': LAB_DIR,
            'python': sys.executable,
            'haproxy_version': version,
            'haproxy': self.build.version,
            'haproxy_root': haproxy_root,
            'instances': [instance.state() for instance in instances],
            # Shared by every instance (each on its own address), as in a Swarm service.
            'runtime_port': runtime_port,
            'tls_port': tls_port,
            'ca': {'cert': ca_cert, 'key': ca_key},
            'default_names': ['default.lab.test'],
            # HAProxy 3.2+: one certificate loaded through a crt-store section (else None).
            'crt_store': ({'name': STORE_CERT_NAME, 'servername': STORE_SERVERNAME}
                          if crt_store else None),
            'preloaded': len(extra),
            # The mTLS frontend (verify required) of every instance: its port, CA file,
            # CRL file, client CAs, client certificates and ready-made payloads.
            'mtls': dict(mtls, port=mtls_port),
            'silent_endpoint': silent.state()['endpoint'],
            'silent_pid': silent.daemon.pid if silent.daemon else None,
            'status': 'running',
        })
        if dns:
            self.state['dns'] = dns.state()
        if acme:
            self.state['acme'] = acme.state()
            self.state['dns']['resolver'] = resolver.state()
        self.state['startup_seconds'] = round(time.monotonic() - started, 2)
        self._save()

    def _run(self, components: list[Component], prepared: set) -> None:
        """Spawn every component, then wait until all answer (they start in parallel)."""
        attempts = {}
        for component in components:
            if component not in prepared:
                component.prepare()
            self._spawn(component)
            attempts[component.name] = 1
        pending = list(components)
        deadline = time.monotonic() + self.timeout
        while pending:
            waiting = []
            for component in pending:
                daemon = component.daemon
                running = is_running(daemon.pid)
                if component.bind_conflict() and attempts[component.name] < _BIND_ATTEMPTS:
                    # A port was taken between choosing and binding it: new ports, again.
                    stop_daemons([daemon], self.state_dir, grace=2)
                    self._forget(daemon)
                    os.rename(component.log_path, f'{component.log_path}.{attempts[component.name]}')
                    component.prepare()
                    self._spawn(component)
                    attempts[component.name] += 1
                    waiting.append(component)
                elif not running:
                    raise LabError(f'{component.name} (pid {daemon.pid}) exited during start-up; '
                                   f'last lines of {daemon.log}:\n{log_tail(daemon.log)}')
                elif component.probe():
                    component.finish()
                else:
                    waiting.append(component)
            pending = waiting
            if pending and time.monotonic() > deadline:
                details = '\n'.join(f'--- {c.log_path}\n{log_tail(c.log_path)}' for c in pending)
                raise LabError(f'not ready after {self.timeout:.0f}s: '
                               f'{", ".join(c.name for c in pending)}\n{details}')
            if pending:
                time.sleep(0.02)

    def _spawn(self, component: Component) -> None:
        os.makedirs(component.workdir, mode=0o700, exist_ok=True)
        component.daemon = spawn(component.name, component.argv(), runs=component.runs(),
                                 log_path=component.log_path,
                                 pidfile=os.path.join(self.state_dir, 'pids', f'{component.name}.pid'),
                                 env=component.env(), cwd=component.workdir)
        self._daemons.append(component.daemon)
        self._save()

    def _forget(self, daemon: Daemon) -> None:
        self._daemons = [known for known in self._daemons if known.pid != daemon.pid]
        self._save()

    def _refresh(self) -> None:
        """Take in processes another Lab object (or the CLI) recorded for this state dir meanwhile."""
        try:
            with open(os.path.join(self.state_dir, STATE_FILE), encoding='utf-8') as state_file:
                recorded = json.load(state_file)
        except (OSError, ValueError):
            return
        known = {daemon.pid for daemon in self._daemons}
        for entry in recorded.get('processes', []):
            if entry['pid'] not in known:
                self._daemons.append(Daemon.from_dict(entry))
        if recorded.get('instances'):
            self.state['instances'] = recorded['instances']

    def _save(self) -> None:
        self.state['processes'] = [daemon.as_dict() for daemon in self._daemons]
        _write_json_private(os.path.join(self.state_dir, STATE_FILE), self.state)

    # -- one instance ------------------------------------------------------

    def _instance(self, name: str) -> dict:
        for instance in self.state.get('instances', []):
            if instance['name'] == name:
                return instance
        raise LabError(f'no instance {name!r} in {self.state_dir} '
                       f'(have: {", ".join(i["name"] for i in self.state.get("instances", []))})')

    def stop_instance(self, name: str) -> list[str]:
        """Stop one HAProxy instance (e.g. to show that a push fails for it alone)."""
        self._refresh()
        self._instance(name)
        daemons = [daemon for daemon in self._daemons if daemon.name == name]
        report = stop_daemons(daemons, self.state_dir)
        for daemon in daemons:
            self._forget(daemon)
        self._instance(name)['pid'] = None
        self._save()
        return report

    def start_instance(self, name: str) -> dict:
        """Start a stopped instance again: same config, ports and certificate files on disk."""
        self._refresh()
        instance = self._instance(name)
        if any(daemon.name == name and is_ours(daemon, self.state_dir) for daemon in self._daemons):
            raise LabError(f'instance {name} is already running')
        # The config written at lab start is reused as is: same ports, same crt-list.
        component = HAProxyInstance(self.state_dir, instance['index'],
                                    master_worker=instance['master_worker'],
                                    root=self.state.get('haproxy_root'))
        self._spawn(component)
        deadline = time.monotonic() + self.timeout
        while not component.probe():
            if not is_running(component.daemon.pid):
                raise LabError(f'{name} exited during start-up; last lines of {component.log_path}:\n'
                               f'{log_tail(component.log_path)}')
            if time.monotonic() > deadline:
                raise LabError(f'{name} not ready after {self.timeout:.0f}s')
            time.sleep(0.02)
        instance['pid'] = component.daemon.pid
        self._save()
        return instance

    # -- stop --------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop every process this lab started; remove the state dir unless ``keep``."""
        if not self.state_dir:
            return []
        self._refresh()
        report = stop_daemons(self._daemons, self.state_dir)
        survivors = [daemon for daemon in self._daemons if is_ours(daemon, self.state_dir)]
        if survivors:
            raise LabError('still running after stop: '
                           + ', '.join(f'{daemon.name} pid {daemon.pid}' for daemon in survivors))
        self._daemons = []
        if self.keep:
            self.state['status'] = 'stopped'
            self._save()
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return report

    @classmethod
    def attach(cls, state_dir: str, keep: bool = False) -> Lab:
        """The lab recorded in ``state_dir`` (started by this or another process)."""
        state = load_state(state_dir)
        lab = cls(root=os.path.dirname(os.path.abspath(state_dir)), keep=keep,
                  haproxy=state.get('haproxy') or DEFAULT_VERSION)
        lab.state_dir = state['state_dir']
        lab.state = state
        lab._daemons = [Daemon.from_dict(entry) for entry in state.get('processes', [])]
        return lab


def load_state(state_dir: str) -> dict:
    """state.json of a lab; if it is missing or torn, what the pidfiles still tell."""
    state_dir = os.path.abspath(state_dir)
    path = os.path.join(state_dir, STATE_FILE)
    try:
        with open(path, encoding='utf-8') as state_file:
            state = json.load(state_file)
        state['state_dir'] = state_dir
        return state
    except (OSError, ValueError):
        pass
    if not os.path.isdir(os.path.join(state_dir, 'pids')):
        raise LabError(f'{state_dir} is not a lab state directory (no {STATE_FILE}, no pids/)')
    processes = []
    for pidfile in sorted(glob.glob(os.path.join(state_dir, 'pids', '*.pid'))):
        try:
            with open(pidfile, encoding='ascii') as pid_in:
                pid = int(pid_in.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        # Without state.json the executable is unknown: take /proc's, the
        # state-dir marker on the command line is the real check.
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as cmdline:
                executable = cmdline.read().split(b'\0')[0].decode() or 'unknown'
            with open(f'/proc/{pid}/stat', encoding='ascii') as stat:
                start_time = int(stat.read().rsplit(')', 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            continue
        name = os.path.basename(pidfile)[:-len('.pid')]
        processes.append(Daemon(name=name, argv=[executable], pid=pid, start_time=start_time,
                                log='', pidfile=pidfile).as_dict())
    return {'state_dir': state_dir, 'status': 'unknown', 'processes': processes}


def stop_lab(state_dir: str, keep: bool = False) -> list[str]:
    """Stop the lab recorded in ``state_dir`` (only the PIDs recorded there).

    A state dir that no longer exists was stopped already: nothing to do.
    """
    if not os.path.exists(state_dir):
        return [f'{state_dir} does not exist: nothing to stop']
    return Lab.attach(state_dir, keep=keep).stop()


def find_labs(root: str = DEFAULT_ROOT) -> list[str]:
    """State directories of the labs under ``root``."""
    return sorted(path for path in glob.glob(os.path.join(os.path.abspath(root), 'lab-*'))
                  if os.path.isdir(path))


def stop_all(root: str = DEFAULT_ROOT, keep: bool = False) -> dict[str, list[str]]:
    """Stop every lab found under ``root``; a lab that fails to stop does not stop the others."""
    reports = {}
    errors = []
    for state_dir in find_labs(root):
        try:
            reports[state_dir] = stop_lab(state_dir, keep=keep)
        except LabError as exc:
            errors.append(f'{state_dir}: {exc}')
    if errors:
        raise LabError('; '.join(errors))
    return reports
