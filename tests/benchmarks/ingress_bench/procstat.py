# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CPU time and memory of an HAProxy process tree, read from /proc.

HAProxy in master-worker mode keeps one master PID across reloads: on
SIGUSR2 the master re-executes itself (same process, its CPU counters carry
on), parses the configuration and every certificate again, forks a new
worker and tells the old one to finish. The master reaps its exited workers,
so their CPU time moves into the master's ``cutime``/``cstime``. Hence

    tree CPU = master (utime + stime + cutime + cstime) + live workers (utime + stime)

is continuous over a reload, provided it is read while no worker is between
exiting and being reaped: read it when the tree is settled (see ``settled``).

``/proc/PID/stat`` counts in clock ticks (10 ms). A runtime update costs far
less than one tick, so ``/proc/PID/task/*/schedstat`` (nanoseconds of CPU,
per thread) is read as well; it covers live threads only, which is exact
when no process of the tree starts or ends during the measurement.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

from .context import lab_package

CLOCK_TICKS = os.sysconf('SC_CLK_TCK')
PAGE_SIZE = os.sysconf('SC_PAGE_SIZE')


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: index 0 is field 3 (state)."""
    return lab_package().read_proc_stat(pid)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children file)."""
    found: list[int] = []
    try:
        threads = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f'/proc/{pid}/task/{tid}/children', encoding='ascii') as children_file:
                found.extend(int(child) for child in children_file.read().split())
        except OSError:
            continue
    return found


def _thread_ns(pid: int) -> int:
    total = 0
    try:
        threads = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return 0
    for tid in threads:
        try:
            with open(f'/proc/{pid}/task/{tid}/schedstat', encoding='ascii') as schedstat:
                total += int(schedstat.read().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total


@dataclasses.dataclass
class TreeSample:
    """One reading of a master (or single process) and its live children."""

    cpu_ticks: int        # utime + stime (+ cutime + cstime of the root), clock ticks
    cpu_ns: int           # schedstat of live threads, nanoseconds
    rss_bytes: int        # resident memory of root + live children
    workers: tuple[int, ...]
    zombies: int          # children exited but not reaped yet

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_ticks / CLOCK_TICKS


def sample(root_pid: int) -> TreeSample:
    """CPU and RSS of ``root_pid`` (counting its reaped children) and its live children."""
    fields = _stat_fields(root_pid)
    if fields is None:
        raise ProcessLookupError(root_pid)
    # stat(5) fields 14-17 (utime stime cutime cstime) and 24 (rss), indexed from field 3.
    ticks = sum(int(value) for value in fields[11:15])
    rss = int(fields[21]) * PAGE_SIZE
    cpu_ns = _thread_ns(root_pid)
    workers = []
    zombies = 0
    for child in children(root_pid):
        child_fields = _stat_fields(child)
        if child_fields is None:
            continue
        ticks += int(child_fields[11]) + int(child_fields[12])
        if child_fields[0] in ('Z', 'X'):
            zombies += 1
            continue
        workers.append(child)
        rss += int(child_fields[21]) * PAGE_SIZE
        cpu_ns += _thread_ns(child)
    return TreeSample(ticks, cpu_ns, rss, tuple(sorted(workers)), zombies)


def settled(root_pid: int, workers: int = 1, replacing: tuple[int, ...] = (),
            timeout: float = 300.0) -> TreeSample:
    """Wait until the tree has exactly ``workers`` live children, none of them in ``replacing``, and
    no zombie; return that sample. After a reload pass the old workers as ``replacing``."""
    deadline = time.monotonic() + timeout
    while True:
        current = sample(root_pid)
        if (len(current.workers) == workers and current.zombies == 0
                and not set(current.workers) & set(replacing)):
            # Read once more: a worker may have been reaped between the two reads above.
            again = sample(root_pid)
            if again.workers == current.workers and again.zombies == 0:
                return again
        if time.monotonic() > deadline:
            raise TimeoutError(f'HAProxy {root_pid} did not settle to {workers} worker(s): {current}')
        time.sleep(0.02)


class PeakRss:
    """Poll the tree's total RSS in a background thread; ``peak`` is the highest seen."""

    def __init__(self, root_pid: int, interval: float = 0.01) -> None:
        self._root_pid = root_pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0
        self.processes_seen: set[int] = set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                current = sample(self._root_pid)
            except ProcessLookupError:
                return
            self.peak = max(self.peak, current.rss_bytes)
            self.processes_seen.update(current.workers)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def descendants_rss(root_pid: int) -> int:
    """Resident memory of ``root_pid`` and every live descendant (children's children too), in bytes."""
    parents: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[0] in ('Z', 'X'):
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * PAGE_SIZE
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        total += rss.get(pid, 0)
        pending.extend(parents.get(pid, []))
    return total


class TreePeakRss(PeakRss):
    """Like PeakRss, over the whole tree: ansible-playbook, its forks and the module processes they start."""

    def __init__(self, root_pid: int, interval: float = 0.05) -> None:
        super().__init__(root_pid, interval)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, descendants_rss(self._root_pid))
            self._stop.wait(self._interval)
