# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Start daemons as children in their own process groups, wait for them, stop exactly them.

A process is only ever signalled after /proc shows it is still the one the lab
started: same executable name, the lab's state directory on its command line
and the same start time. A recycled PID therefore never gets a signal.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time

from ._errors import LabError

# Popen objects of the daemons this Python process started, so it can reap them.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclasses.dataclass
class Daemon:
    """One process the lab started (its process group has the same id)."""

    name: str
    argv: list[str]
    pid: int
    start_time: int
    log: str
    pidfile: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Daemon:
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})


def free_port(address: str = '127.0.0.1') -> int:
    """A TCP port that is free on ``address`` right now (bound to port 0, then released)."""
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def free_port_on_all(addresses: list[str]) -> int:
    """A TCP port that is free on every one of ``addresses`` right now."""
    for _attempt in range(50):
        port = free_port(addresses[0])
        family = socket.AF_INET6 if ':' in addresses[0] else socket.AF_INET
        try:
            for address in addresses[1:]:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.bind((address, port))
        except OSError:
            continue
        return port
    raise OSError(f'no TCP port free on all of {", ".join(addresses)}')


def read_proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is the state), or None."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii', errors='replace') as stat_file:
            text = stat_file.read()
    except OSError:
        return None
    return text[text.rindex(')') + 2:].split()


def _start_time(pid: int) -> int | None:
    fields = read_proc_stat(pid)
    # Field 22 of stat(5), "starttime", counted after the ")" that ends field 2.
    return int(fields[19]) if fields else None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as cmdline_file:
            raw = cmdline_file.read()
    except OSError:
        return []
    return [part.decode('utf-8', 'replace') for part in raw.split(b'\0') if part]


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    fields = read_proc_stat(pid)
    return fields is not None and fields[0] not in ('Z', 'X')


def _matches(pid: int, executable: str, marker: str) -> bool:
    """The process ``pid`` runs ``executable`` with ``marker`` somewhere on its command line."""
    cmdline = _cmdline(pid)
    if not cmdline:
        return False
    return (os.path.basename(cmdline[0]) == os.path.basename(executable)
            and any(marker in arg for arg in cmdline))


def is_ours(daemon: Daemon, marker: str) -> bool:
    """``daemon.pid`` is still the very process the lab started."""
    return (is_running(daemon.pid)
            and _start_time(daemon.pid) == daemon.start_time
            and _matches(daemon.pid, daemon.argv[0], marker))


def _group_members(daemon: Daemon, marker: str) -> list[int]:
    """Live processes in the daemon's process group that carry the lab's marker.

    HAProxy's master-worker mode forks workers into the master's group; if the
    master died first, its workers are still found (and only they).
    """
    members = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        pid = int(entry)
        fields = read_proc_stat(pid)
        if (fields and int(fields[2]) == daemon.pid and fields[0] not in ('Z', 'X')
                and _matches(pid, daemon.argv[0], marker)):
            members.append(pid)
    return members


def spawn(name: str, argv: list[str], *, log_path: str, pidfile: str,
          env: dict[str, str] | None = None, cwd: str | None = None,
          runs: list[str] | None = None) -> Daemon:
    """Start ``argv`` in a new session (own process group), output to ``log_path``.

    ``runs``: the command line the process ends up with when ``argv`` is a wrapper
    that execs into it (same PID); recorded so the lab recognises its process.
    """
    with open(log_path, 'ab') as log_file:
        try:
            child = subprocess.Popen(  # pylint: disable=consider-using-with  # a daemon outlives this call
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=cwd, env=env, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise LabError(f'{name}: cannot start {argv[0]}: {exc}') from exc
    _CHILDREN[child.pid] = child
    start_time = _start_time(child.pid)
    with open(pidfile, 'w', encoding='ascii') as pid_out:
        pid_out.write(f'{child.pid}\n')
    return Daemon(name=name, argv=list(runs or argv), pid=child.pid, start_time=start_time or 0,
                  log=log_path, pidfile=pidfile)


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as log_file:
            return ''.join(log_file.readlines()[-lines:]).rstrip()
    except OSError:
        return '(no log)'


def wait_ready(waits: list[tuple[Daemon, object]], timeout: float) -> None:
    """Wait until every probe returns true; fail fast when a daemon exits.

    ``waits`` holds (daemon, probe) pairs; a probe is a callable returning True
    once the daemon really answers. All daemons are polled in one loop, so
    they start up in parallel.
    """
    pending = list(waits)
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for daemon, probe in pending:
            if not is_running(daemon.pid):
                raise LabError(f'{daemon.name} (pid {daemon.pid}) exited during start-up; '
                               f'last lines of {daemon.log}:\n{log_tail(daemon.log)}')
            if not probe():
                still.append((daemon, probe))
        pending = still
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ', '.join(daemon.name for daemon, _probe in pending)
            details = '\n'.join(f'--- {daemon.log}\n{log_tail(daemon.log)}' for daemon, _probe in pending)
            raise LabError(f'not ready after {timeout:.0f}s: {names}\n{details}')
        time.sleep(0.02)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_daemons(daemons: list[Daemon], marker: str, grace: float = 5.0) -> list[str]:
    """SIGTERM exactly these daemons (and their marked group members), SIGKILL what remains.

    Returns one line per daemon saying what happened, for the caller to report.
    """
    report = []
    targets: dict[int, str] = {}
    for daemon in daemons:
        members = _group_members(daemon, marker)
        if is_ours(daemon, marker):
            _signal(daemon.pid, signal.SIGTERM)
            targets[daemon.pid] = daemon.name
            report.append(f'{daemon.name}: pid {daemon.pid} terminated')
        elif members:
            report.append(f'{daemon.name}: pid {daemon.pid} gone, group members {members} terminated')
        else:
            report.append(f'{daemon.name}: pid {daemon.pid} not running (or no longer the lab\'s process): left alone')
        for member in members:
            if member != daemon.pid:
                _signal(member, signal.SIGTERM)
                targets[member] = daemon.name
    deadline = time.monotonic() + grace
    while targets and time.monotonic() < deadline:
        targets = {pid: name for pid, name in targets.items() if is_running(pid)}
        if targets:
            time.sleep(0.02)
    for pid, name in targets.items():
        # Still alive after the grace period: same process (checked above), kill it.
        _signal(pid, signal.SIGKILL)
        report.append(f'{name}: pid {pid} killed after {grace:.0f}s')
    deadline = time.monotonic() + 2.0
    while any(is_running(pid) for pid in targets) and time.monotonic() < deadline:
        time.sleep(0.02)
    for daemon in daemons:
        child = _CHILDREN.pop(daemon.pid, None)
        if child is not None:
            try:
                child.wait(timeout=1)
            except subprocess.TimeoutExpired:
                report.append(f'{daemon.name}: pid {daemon.pid} did not exit')
    return report
