# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""B2: replace one certificate of many — runtime update through the module versus a reload."""

from __future__ import annotations

import os
import signal
import time

from . import floor, handshake, procstat
from .ansible_run import PlaybookRunner, task_results
from .context import Context, loaded_certificates
from .report import Section, Target, duration, milliseconds, ratio
from .stats import Series

UPDATE_TASK = 'Replace the one certificate at runtime'
UPDATE_PLAY = [{
    'name': 'B2 one certificate',
    'hosts': 'haproxy',
    'gather_facts': False,
    'tasks': [{
        'name': UPDATE_TASK,
        'ingress.haproxy.haproxy_ssl_cert': {
            'endpoint': '{{ bench_endpoint }}',
            'path': '{{ bench_path }}',
            'src': '{{ bench_src }}',
        },
    }],
}]
EMPTY_PLAY = [{'name': 'Ansible fixed start', 'hosts': 'haproxy', 'gather_facts': False, 'tasks': []}]


class Measurement:
    """The rows' series: HAProxy CPU, wall time to new leaf served, peak RSS of the process tree."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.cpu = Series(label)
        self.served = Series(label)
        self.peak_rss = Series(label)
        self.probes = Series(label)


def _write_bundle(path: str, pem: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, 'w', encoding='utf-8') as out:
        out.write(pem)


def _runtime_update(instance: dict, apply, fingerprint: str, target_name: str, row: Measurement) -> None:
    """Measure ``apply()`` (a runtime update) — no process starts or ends, so schedstat is exact."""
    before = procstat.settled(instance['pid'])
    started = time.monotonic()
    with procstat.PeakRss(instance['pid']) as peak:
        apply()
        after = procstat.sample(instance['pid'])
    # The handshakes that confirm the new leaf come after the CPU reading: they are not the update's cost.
    served_at = handshake.wait_served(instance['address'], instance['tls_port'], target_name, fingerprint)
    if after.workers != before.workers:
        raise RuntimeError(f'the worker changed during a runtime update: {before.workers} -> {after.workers}')
    row.cpu.add((after.cpu_ns - before.cpu_ns) / 1e9)
    row.served.add(served_at - started)
    row.peak_rss.add(peak.peak)
    row.probes.add(1)


def _reload(instance: dict, target_path: str, pem: str, fingerprint: str, target_name: str,
            row: Measurement) -> None:
    """Write the new bundle where HAProxy loads it, SIGUSR2 the master, poll until served and settled."""
    _write_bundle(target_path, pem)
    before = procstat.settled(instance['pid'])
    started = time.monotonic()
    probes = 0
    with procstat.PeakRss(instance['pid']) as peak:
        os.kill(instance['pid'], signal.SIGUSR2)
        context = handshake.client_context()
        served_at = None
        deadline = started + 600
        while served_at is None:
            probes += 1
            try:
                if handshake.served_fingerprint(instance['address'], instance['tls_port'], target_name,
                                                context) == fingerprint:
                    served_at = time.monotonic()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f'reload: {target_name} not served after 600 s')
            # Probing every 50 ms keeps the probes' own HAProxy CPU under 1 % of a reload's.
            time.sleep(0.05)
        after = procstat.settled(instance['pid'], replacing=before.workers)
    row.cpu.add((after.cpu_ticks - before.cpu_ticks) / procstat.CLOCK_TICKS)
    row.served.add(served_at - started)
    row.peak_rss.add(peak.peak)
    row.probes.add(probes)


def _command_costs(instance: dict, path: str, pem: str, costs: dict[str, Series]) -> None:
    """Replay the module's writes for one update with the raw client, HAProxy CPU per write."""
    pid = instance['pid']

    def measured(label: str, action):
        before = procstat.sample(pid).cpu_ns
        result = action()
        costs.setdefault(label, Series(label)).add((procstat.sample(pid).cpu_ns - before) / 1e9)
        return result

    session = measured('connect + `prompt`', lambda: floor.Session(instance['runtime_tcp']))
    with session:
        measured('`show cli level` + `show info` in one write (level admin; the process identity the lock is '
                 'keyed by)', lambda: session.pipeline([('show cli level', None), ('show info', None)]))
        measured('`abort ssl cert /dev/null/…` + `show ssl cert PATH` in one write (the open transaction; '
                 'compare)', lambda: session.pipeline([
                     ('abort ssl cert /dev/null/ingress.haproxy-transaction-probe', None),
                     (f'show ssl cert {path}', None)]))
        replies = measured('`set ssl cert PATH <<` + `commit ssl cert PATH` + `show ssl cert PATH` in one write '
                           '(update; verify)', lambda: session.pipeline([
                               (f'set ssl cert {path}', pem), (f'commit ssl cert {path}', None),
                               (f'show ssl cert {path}', None)]))
        if f'for certificate {path}!' not in replies[0]:
            raise floor.FloorError(f'set ssl cert {path}: {replies[0]!r}')
        if 'Success!' not in replies[1]:
            raise floor.FloorError(f'commit ssl cert {path}: {replies[1]!r}')


def run(context: Context) -> Section:
    count = 200 if context.quick else 10000
    section = Section('B2', f'one certificate out of {count:,}')
    section.intro = (
        f'One HAProxy instance (master-worker mode) holding {count:,} certificates; each run replaces '
        'the same one certificate with a new version, either at runtime or by a reload. '
        'HAProxy CPU is read from /proc: for runtime updates as the schedstat nanoseconds of the '
        'worker and master (no process starts or ends, so this is exact and finer than the 10 ms '
        'ticks of /proc/PID/stat); for reloads as utime+stime of the master and its workers plus the '
        'master\'s cutime+cstime, read when the old worker has exited and been reaped, so the old '
        'worker\'s last CPU is counted. The reload row includes its own probe handshakes (every 50 ms). '
        'Wall time runs from the start of the update (the `ansible-playbook` start for the module row) '
        'to the first new handshake with SNI that presents the new leaf.'
    )
    with context.lab(instances=1, preload=count, master_worker=True) as lab:
        instance = lab.state['instances'][0]
        context.haproxy_version = lab.state['haproxy_version']
        loaded = loaded_certificates(instance)
        target = loaded[len(loaded) // 2]
        context.log(f'B2: lab up with {len(loaded)} certificates ({lab.state["startup_seconds"]} s); '
                    f'rotating {target.path}')
        runner = PlaybookRunner(context.scratch('b2/ansible'), context.python)
        playbook = runner.write('update.yml', UPDATE_PLAY)
        empty = runner.write('empty.yml', EMPTY_PLAY)
        sources_dir = context.scratch('b2/sources')

        rows = {key: Measurement(key) for key in ('module', 'floor', 'reload')}
        start = Series('start')
        costs: dict[str, Series] = {}
        for repetition in range(context.repetitions):
            versions = context.issuer.generation([target.name] * 4, f'b2-{repetition}')
            source = versions.write(os.path.join(sources_dir, str(repetition)))[0]
            inventory = runner.inventory(f'inventory-{repetition}.yml', {instance['name']: {
                'bench_endpoint': instance['runtime_tcp'], 'bench_path': target.path, 'bench_src': source}})

            def through_module(inventory=inventory):
                _elapsed, document = runner.run(playbook, inventory, forks=1)
                result = task_results(document, UPDATE_TASK)[instance['name']]
                actions = [entry.get('action') for entry in result.get('certificates', [])]
                if actions != ['updated']:
                    raise RuntimeError(f'module reported {actions} instead of one update: {result}')

            def through_floor(pem=versions.pems[1]):
                with floor.Session(instance['runtime_tcp']) as session:
                    session.replace_certificate(target.path, pem)

            _runtime_update(instance, through_module, versions.fingerprints[0], target.name, rows['module'])
            _runtime_update(instance, through_floor, versions.fingerprints[1], target.name, rows['floor'])
            _reload(instance, target.path, versions.pems[2], versions.fingerprints[2], target.name,
                    rows['reload'])
            elapsed, _document = runner.run(empty, inventory, forks=1)
            start.add(elapsed)
            _command_costs(instance, target.path, versions.pems[3], costs)
            context.log(f'B2 run {repetition + 1}: ' + ', '.join(
                f'{key} cpu={row.cpu.values[-1] * 1000:.2f}ms served={row.served.values[-1]:.2f}s'
                for key, row in rows.items()))

        module_cpu = rows['module'].cpu.median
        labels = {
            'module': 'runtime: `haproxy_ssl_cert` through ansible-playbook',
            'floor': 'runtime: raw `set` + `commit` (protocol floor, no Ansible)',
            'reload': 'reload: bundle written to disk, SIGUSR2 to the master',
        }
        table = []
        for key, label in labels.items():
            row = rows[key]
            table.append([label, milliseconds(row.cpu.median), ratio(row.cpu.median / module_cpu),
                          duration(row.served.median), f'{row.peak_rss.median / 2 ** 20:.0f} MiB'])
        table.append(['Ansible fixed start (empty play), for reference', '', '', duration(start.median), ''])
        section.table(['path', 'HAProxy CPU (median)', 'ratio to module', 'wall to new leaf served',
                       'peak RSS of the HAProxy tree'], table)
        section.table(['Runtime API write (the module\'s sequence for one update, replayed by the raw client)',
                       'HAProxy CPU (median)', 'share of the sequence'],
                      [[label, milliseconds(series.median),
                        f'{100 * series.median / sum(item.median for item in costs.values()):.0f} %']
                       for label, series in costs.items()])
        section.notes.append('CPU per run (ms): ' + '; '.join(
            f'{key} ' + ', '.join(f'{value * 1000:.2f}' for value in row.cpu.values) for key, row in rows.items()))
        section.notes.append(f'Runs: {context.repetitions}; reload probes per run (median): '
                             f'{rows["reload"].probes.median:.0f}.')
        section.notes.append('The module never asks for the full `show ssl cert` listing: it reads the open '
                             'transaction with an `abort ssl cert` on a name no certificate has (it aborts '
                             'nothing) and asks for the one path it was given.')
        floor_cpu = rows['floor'].cpu.median
        replayed = sum(item.median for item in costs.values())
        section.notes.append(
            f'The replayed sequence (medians of its writes) costs {replayed * 1000:.2f} ms, '
            f'{replayed / floor_cpu:.2f}× the raw set + commit; the module through ansible-playbook '
            f'{module_cpu * 1000:.2f} ms. Where these differ, HAProxy did the same work while ansible-playbook '
            'shared the 2 cores.')
        section.targets.append(Target('the module costs ≤ 2 × the HAProxy CPU of a raw set + commit',
                                      module_cpu <= 2 * floor_cpu,
                                      f'module {module_cpu * 1000:.2f} ms vs raw {floor_cpu * 1000:.2f} ms: '
                                      f'{module_cpu / floor_cpu:.2f}×'))
        cpu_ratio = rows['reload'].cpu.median / module_cpu
        section.targets.append(Target('the runtime path costs ≥ 3,000× less HAProxy CPU than a reload',
                                      cpu_ratio >= 3000,
                                      f'reload {rows["reload"].cpu.median:.2f} s vs module '
                                      f'{module_cpu * 1000:.2f} ms: {cpu_ratio:,.0f}×'))
    return section
