# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""B3: new TLS handshakes under load while certificates rotate at runtime, versus while reloading."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

from . import floor, procstat, task_profile
from .context import Context, loaded_certificates
from .handshake import LoadRun
from .report import Section, Target, milliseconds, ratio
from .stats import percentile

PHASES = ('idle', 'rotation', 'reload')
PROFILE_ROWS = 6


def _microseconds(value: float) -> str:
    return f'{value * 1e6:.1f} µs'


def _rotate_until(stop: threading.Event, endpoint: str, paths: list[str], generations, counter: dict) -> None:
    """Replace every certificate, generation after generation, until ``stop`` is set."""
    with floor.Session(endpoint) as session:
        turn = 0
        while not stop.is_set():
            generation = generations[turn % len(generations)]
            for path, pem in zip(paths, generation.pems):
                if stop.is_set():
                    break
                session.replace_certificate(path, pem)
                counter['actions'] += 1
            turn += 1


def _reload_until(stop: threading.Event, master_pid: int, pause: float, counter: dict) -> None:
    """SIGUSR2 the master, wait for the new worker to take over alone, pause, again, until ``stop``."""
    while not stop.is_set():
        before = procstat.settled(master_pid)
        os.kill(master_pid, signal.SIGUSR2)
        procstat.settled(master_pid, replacing=before.workers)
        counter['actions'] += 1
        stop.wait(pause)


def _phase(phase: str, instance: dict, names: list[str], accepted: dict, duration: float, rate: float,
           paths: list[str], generations) -> tuple[list, int, float]:
    """Run the load for ``duration`` with the phase's background action.

    Returns the samples, how many background actions ran, and HAProxy's CPU seconds over the phase.
    """
    stop = threading.Event()
    counter = {'actions': 0}
    errors = []

    def guarded(target, *args):
        try:
            target(*args)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            errors.append(exc)

    worker = None
    if phase == 'rotation':
        worker = threading.Thread(target=guarded, args=(_rotate_until, stop, instance['runtime_tcp'], paths,
                                                        generations, counter))
    elif phase == 'reload':
        worker = threading.Thread(target=guarded, args=(_reload_until, stop, instance['pid'], 0.5, counter))
    before = procstat.settled(instance['pid'])
    load = LoadRun(instance['address'], instance['tls_port'], names, accepted, duration, rate)
    try:
        load.wait_started()
        if worker:
            worker.start()
        time.sleep(duration)
    finally:
        stop.set()
        if worker and worker.is_alive():
            worker.join()
        # Always wait for (or end) the client processes, also when the phase failed.
        samples = load.collect()
    if errors:
        raise errors[0]
    after = procstat.settled(instance['pid'])
    return samples, counter['actions'], (after.cpu_ticks - before.cpu_ticks) / procstat.CLOCK_TICKS


def run(context: Context) -> Section:
    count = 100 if context.quick else 1000
    duration = 1.0 if context.quick else 6.0
    rounds = 1 if context.quick else 3
    rate = 200.0
    section = Section('B3', f'zero downtime under load ({count:,} certificates)')
    section.intro = (
        f'One HAProxy instance (master-worker, HAProxy\'s default threads: one per CPU) holding {count:,} certificates. A Python client '
        f'in 2 processes opens new TLS connections at a fixed pace ({rate:.0f} handshakes/s in total, '
        'round-robin over the server names as SNI, no session reuse) and checks that every handshake '
        'presents a known version of that name\'s certificate. Phases of '
        f'{duration:.0f} s, repeated {rounds}× in turn (idle, rotation, reload) and pooled: '
        '**idle**: load only; **rotation**: a Runtime API client replaces every certificate, over and over, '
        'as fast as HAProxy answers (set + commit per certificate, one connection); '
        '**reload**: SIGUSR2 to the master, wait until the new worker is alone, 0.5 s pause, again. '
        'Latency is connect + handshake, measured by the client.'
    )
    with context.lab(instances=1, preload=count, master_worker=True) as lab:
        instance = lab.state['instances'][0]
        context.haproxy_version = lab.state['haproxy_version']
        loaded = loaded_certificates(instance)
        names = [entry.name for entry in loaded]
        paths = [entry.path for entry in loaded]
        generations = [context.issuer.generation(names, f'b3-{label}') for label in ('a', 'b')]
        accepted = {entry.name: [entry.fingerprint] for entry in loaded}
        for generation in generations:
            for name, fingerprint in zip(generation.names, generation.fingerprints):
                accepted[name].append(fingerprint)
        context.log(f'B3: lab up with {len(loaded)} certificates')

        samples = {phase: [] for phase in PHASES}
        actions = collections.Counter()
        cpu = collections.Counter()
        for round_number in range(rounds):
            for phase in PHASES:
                phase_samples, phase_actions, phase_cpu = _phase(phase, instance, names, accepted, duration,
                                                                 rate, paths, generations)
                samples[phase].extend(phase_samples)
                actions[phase] += phase_actions
                cpu[phase] += phase_cpu
                latencies = [latency for _start, latency, outcome in phase_samples if outcome in ('ok', 'wrong-leaf')]
                context.log(f'B3 round {round_number + 1} {phase}: {len(phase_samples)} handshakes, '
                            f'p99 {percentile(latencies, 0.99) * 1000:.2f} ms, {phase_actions} actions')

        table = []
        summary = {}
        for phase in PHASES:
            outcomes = collections.Counter(outcome for _start, _latency, outcome in samples[phase])
            latencies = [latency for _start, latency, outcome in samples[phase] if outcome in ('ok', 'wrong-leaf')]
            failed = sum(number for outcome, number in outcomes.items() if outcome not in ('ok', 'wrong-leaf'))
            summary[phase] = {'failed': failed, 'wrong': outcomes['wrong-leaf'],
                              'p99': percentile(latencies, 0.99) if latencies else float('inf')}
            background = {'idle': '—', 'rotation': f'{actions[phase]:,} certificates replaced',
                          'reload': f'{actions[phase]} reloads'}[phase]
            table.append([
                phase, background, f'{cpu[phase] / (rounds * duration) * 100:.0f} %', f'{len(latencies):,}', f'{failed:,}', f'{outcomes["wrong-leaf"]:,}',
                milliseconds(percentile(latencies, 0.5)) if latencies else '—',
                milliseconds(summary[phase]['p99']) if latencies else '—',
                milliseconds(max(latencies)) if latencies else '—',
                ratio(summary[phase]['p99'] / summary['idle']['p99']) if latencies else '—',
            ])
            errors = {outcome: number for outcome, number in outcomes.items() if outcome not in ('ok', 'wrong-leaf')}
            if errors:
                section.notes.append(f'{phase}: failed handshakes by error: '
                                     + ', '.join(f'{name} {number}' for name, number in sorted(errors.items())))
        section.table(['phase', 'background work', 'HAProxy CPU (of one core)', 'completed handshakes', 'failed', 'wrong leaf',
                       'p50', 'p99', 'max', 'p99 / idle p99'], table)
        _profile_pass(section, context, instance, names, accepted, duration, rate, paths, generations)
        rotation = summary['rotation']
        bound = 1.2 * summary['idle']['p99']
        section.targets.append(Target('0 failed handshakes during rotation', rotation['failed'] == 0
                                      and rotation['wrong'] == 0,
                                      f'{rotation["failed"]} failed, {rotation["wrong"]} wrong leaf'))
        section.targets.append(Target('p99 during rotation ≤ 1.2 × idle p99', rotation['p99'] <= bound,
                                      f'{rotation["p99"] * 1000:.2f} ms vs bound {bound * 1000:.2f} ms'))
    return section


def _profile_pass(section: Section, context: Context, instance: dict, names: list[str], accepted: dict,
                  duration: float, rate: float, paths: list[str], generations) -> None:
    """One more idle and rotation phase with HAProxy's task profiling on: where the rotation's latency comes from.

    Kept out of the measured rounds above: profiling costs HAProxy a little on every task.
    """
    profiles, p99 = {}, {}
    for phase in ('idle', 'rotation'):
        task_profile.start(instance['runtime_tcp'])
        phase_samples, _actions, _cpu = _phase(phase, instance, names, accepted, duration, rate, paths, generations)
        profiles[phase] = task_profile.finish(instance['runtime_tcp'])
        latencies = [latency for _start, latency, outcome in phase_samples if outcome in ('ok', 'wrong-leaf')]
        p99[phase] = percentile(latencies, 0.99) if latencies else float('inf')
    busiest = sorted(profiles['rotation'].values(), key=lambda row: row.cpu, reverse=True)[:PROFILE_ROWS]
    rows = []
    for row in busiest:
        idle = profiles['idle'].get(row.function, task_profile.TaskRow(row.function))
        rows.append([f'`{row.function}`', f'{idle.calls:,}', _microseconds(idle.cpu_avg), _microseconds(idle.latency_avg),
                     f'{row.calls:,}', _microseconds(row.cpu_avg), _microseconds(row.latency_avg),
                     f'{row.cpu:.2f} s'])
    section.table(['HAProxy task handler (busiest during rotation)', 'idle: calls', 'idle: CPU per call',
                   'idle: wait per call', 'rotation: calls', 'rotation: CPU per call', 'rotation: wait per call',
                   'rotation: CPU total'], rows)
    section.notes.append(
        f'The handler table comes from one more idle and rotation phase of {duration:.0f} s each with HAProxy\'s '
        '`set profiling tasks on` (read with `show profiling tasks`, summed per handler; "wait" is the time '
        'between a handler\'s wake-up and its run, i.e. how long it queued for a thread). That pass is not in the '
        f'rows above; its handshake p99 was {p99["idle"] * 1000:.2f} ms idle and {p99["rotation"] * 1000:.2f} ms '
        'during rotation.')
    context.log(f'B3 profile pass: p99 idle {p99["idle"] * 1000:.2f} ms, rotation {p99["rotation"] * 1000:.2f} ms')
