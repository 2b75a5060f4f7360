# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""B1: converge N certificates on 3 instances — protocol floor, socat loop, the module, a no-op rerun."""

from __future__ import annotations

import json
import os
import subprocess
import time

from . import floor, socat_loop
from .ansible_run import PlaybookRunner, task_results
from .context import Context, loaded_certificates
from .profile_module import collections_root, profile_module
from .report import Section, Target, ratio, seconds
from .stats import Series

INSTANCES = 3
CONVERGE_TASK = 'Converge every certificate of this instance in one call'
CONVERGE_PLAY = [{
    'name': 'B1 bulk convergence',
    'hosts': 'haproxy',
    'gather_facts': False,
    'tasks': [{
        'name': CONVERGE_TASK,
        'ingress.haproxy.haproxy_ssl_cert': {
            'endpoint': '{{ bench_endpoint }}',
            'certificates': '{{ bench_certificates }}',
        },
    }],
}]
EMPTY_PLAY = [{'name': 'Ansible fixed start', 'hosts': 'haproxy', 'gather_facts': False, 'tasks': []}]
# What any one module task costs on these hosts (fork, AnsiballZ, a Python start per host): the part of
# (c) and (d) that is Ansible's, not this collection's.
PING_PLAY = [{'name': 'Ansible task floor', 'hosts': 'haproxy', 'gather_facts': False,
              'tasks': [{'name': 'One trivial module per instance', 'ansible.builtin.ping': {}}]}]


class BenchmarkError(Exception):
    """A run produced something other than what the row requires (the numbers would be meaningless)."""


def _check_results(results: dict[str, dict], count: int, action: str) -> None:
    for host, result in sorted(results.items()):
        actions = [entry.get('action') for entry in result.get('certificates', [])]
        wrong = [index for index, value in enumerate(actions) if value != action]
        if len(actions) != count or wrong:
            raise BenchmarkError(f'{host}: expected {count} certificates all {action!r}, got {len(actions)} '
                                 f'with {len(wrong)} otherwise (first: {actions[wrong[0]] if wrong else None})')
        if result.get('changed') != (action != 'unchanged'):
            raise BenchmarkError(f'{host}: changed={result.get("changed")} with every certificate {action}')


def _check_held(instances: list[dict], loaded: dict[str, list], fingerprints: list[str]) -> None:
    """HAProxy itself must hold the generation just pushed (first and last certificate)."""
    for instance in instances:
        entries = loaded[instance['name']]
        with floor.Session(instance['runtime_tcp']) as session:
            for index in (0, len(entries) - 1):
                reply = session.command(f'show ssl cert {entries[index].path}')
                if f'SHA1 FingerPrint: {fingerprints[index]}' not in reply:
                    raise BenchmarkError(f'{instance["name"]} does not hold the new {entries[index].path}: {reply}')


def run_modules_directly(python: str, calls: dict[str, dict], workdir: str) -> tuple[float, dict[str, dict]]:
    """Run one haproxy_ssl_cert process per instance at once, as AnsiballZ does in the end; wall seconds, results.

    No Ansible on the controller: what (c) costs without passing the
    1,000-entry argument and result through ansible-playbook.
    """
    os.makedirs(workdir, exist_ok=True)
    module = 'ansible_collections.ingress.haproxy.plugins.modules.haproxy_ssl_cert'
    env = dict(os.environ, PYTHONPATH=collections_root())
    files = {}
    for host, args in calls.items():
        files[host] = os.path.join(workdir, f'{host}.args.json')
        descriptor = os.open(files[host], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, 'w', encoding='utf-8') as out:
            json.dump({'ANSIBLE_MODULE_ARGS': args}, out)
    started = time.perf_counter()
    processes = {host: subprocess.Popen([python, '-m', module, path], stdout=subprocess.PIPE,  # nosec - our module
                                        stderr=subprocess.DEVNULL, text=True, env=env)
                 for host, path in files.items()}
    outputs = {host: process.communicate()[0] for host, process in processes.items()}
    elapsed = time.perf_counter() - started
    results = {}
    for host, output in outputs.items():
        try:
            results[host] = json.loads(output)
        except ValueError as exc:
            raise BenchmarkError(f'{host}: the module printed no result: {output[-300:]!r}') from exc
    return elapsed, results


def run(context: Context) -> Section:
    count = 50 if context.quick else 1000
    section = Section('B1', f'bulk convergence ({count:,} certificates × {INSTANCES} instances)')
    section.intro = (
        f'Every instance starts with {count:,} certificates loaded; each row replaces all of them '
        '(two certificate generations alternate, so every row really changes every certificate). '
        'Instances are served in parallel in every row: one thread per instance for (a) and (b), '
        f'Ansible forks = {INSTANCES} for (c) and (d). All rows use the TCP Runtime API socket.'
    )
    with context.lab(instances=INSTANCES, preload=count) as lab:
        instances = lab.state['instances']
        context.haproxy_version = lab.state['haproxy_version']
        loaded = {instance['name']: loaded_certificates(instance) for instance in instances}
        names = [entry.name for entry in loaded[instances[0]['name']]]
        context.log(f'B1: lab up ({lab.state["startup_seconds"]} s), generating 2 × {count} certificates')
        generations = [context.issuer.generation(names, f'b1-{label}') for label in ('a', 'b')]
        sources = [generation.write(context.scratch(f'b1/{generation.label}')) for generation in generations]

        runner = PlaybookRunner(context.scratch('b1/ansible'), context.python)
        inventories = []
        for generation_sources in sources:
            hosts = {}
            for instance in instances:
                entries = loaded[instance['name']]
                hosts[instance['name']] = {
                    'bench_endpoint': instance['runtime_tcp'],
                    'bench_certificates': [{'path': entry.path, 'src': source}
                                           for entry, source in zip(entries, generation_sources)],
                }
            inventories.append(runner.inventory(f'inventory-{len(inventories)}.yml', hosts))
        converge = runner.write('converge.yml', CONVERGE_PLAY)
        empty = runner.write('empty.yml', EMPTY_PLAY)
        ping = runner.write('ping.yml', PING_PLAY)

        def jobs(generation):
            """What the raw clients send: every instance's certificate paths with this generation's bundles."""
            return {instance['runtime_tcp']: [(entry.path, pem) for entry, pem in
                                              zip(loaded[instance['name']], generation.pems)]
                    for instance in instances}

        def direct_calls(generation_sources):
            return {instance['name']: {'endpoint': instance['runtime_tcp'],
                                       'certificates': [{'path': entry.path, 'src': source} for entry, source
                                                        in zip(loaded[instance['name']], generation_sources)]}
                    for instance in instances}

        rows = {key: Series(key) for key in ('a', 'b', 'c', 'd', 'm', 'start', 'task')}
        for repetition in range(context.repetitions):
            first, second = repetition % 2, (repetition + 1) % 2
            rows['a'].add(floor.run_parallel(jobs(generations[first])))
            rows['b'].add(floor.run_parallel(jobs(generations[second]), socat_loop.rotate))
            elapsed, document = runner.run(converge, inventories[first], forks=INSTANCES)
            _check_results(task_results(document, CONVERGE_TASK), count, 'updated')
            _check_held(instances, loaded, generations[first].fingerprints)
            rows['c'].add(elapsed)
            elapsed, document = runner.run(converge, inventories[first], forks=INSTANCES)
            _check_results(task_results(document, CONVERGE_TASK), count, 'unchanged')
            rows['d'].add(elapsed)
            elapsed, results = run_modules_directly(context.python, direct_calls(sources[second]),
                                                    context.scratch('b1/direct'))
            _check_results(results, count, 'updated')
            _check_held(instances, loaded, generations[second].fingerprints)
            rows['m'].add(elapsed)
            elapsed, _document = runner.run(empty, inventories[first], forks=INSTANCES)
            rows['start'].add(elapsed)
            elapsed, _document = runner.run(ping, inventories[first], forks=INSTANCES)
            rows['task'].add(elapsed)
            context.log(f'B1 run {repetition + 1}: '
                        + ', '.join(f'{key}={series.values[-1]:.2f}s' for key, series in rows.items()))

        floor_time = rows['a'].median
        start = rows['start'].median
        labels = {
            'a': '(a) floor: one connection per instance, set + commit per certificate',
            'b': '(b) seed\'s way: two socat processes per certificate',
            'c': '(c) ansible-playbook, one bulk haproxy_ssl_cert call per instance',
            'd': '(d) same playbook again, nothing to change',
            'm': '(m) the same module calls without Ansible: one module process per instance, at once',
            'start': 'Ansible fixed start (empty play, same inventory)',
            'task': 'Ansible task floor (one `ansible.builtin.ping` per instance, same inventory)',
        }
        table = []
        for key, label in labels.items():
            series = rows[key]
            table.append([label, seconds(series.median), series.spread, ratio(series.median / floor_time)])
        table.append(['(c) minus Ansible start', seconds(rows['c'].median - start), '',
                      ratio((rows['c'].median - start) / floor_time)])
        table.append(['(c) minus Ansible task floor', seconds(rows['c'].median - rows['task'].median),
                      '', ratio((rows['c'].median - rows['task'].median) / floor_time)])
        table.append(['(d) minus Ansible task floor', seconds(rows['d'].median - rows['task'].median), '', ''])
        table.append(['(c) minus (m) minus Ansible start: what ansible-playbook adds (per-task cost, 1,000-entry arguments and results)',
                      seconds(rows['c'].median - rows['m'].median - start), '', ''])
        section.table(['row', 'wall (median)', f'runs (min–max, n={context.repetitions})', 'ratio to (a)'],
                      table)
        bound_c = 1.3 * floor_time + start
        section.targets.append(Target('(c) ≤ 1.3 × (a) + Ansible start', rows['c'].median <= bound_c,
                                      f'(c) {rows["c"].median:.2f} s, bound {bound_c:.2f} s'))
        bound_d = start + 0.3
        section.targets.append(Target('(d) sends no `set` (every certificate `unchanged` in the module '
                                      'results, checked every run) and ≤ Ansible start + 0.3 s',
                                      rows['d'].median <= bound_d,
                                      f'(d) {rows["d"].median:.2f} s, bound {bound_d:.2f} s'))
        section.notes.append('Every (c) run was checked: each module result lists every certificate as '
                             '`updated`, and HAProxy\'s `show ssl cert` reports the new fingerprint '
                             '(first and last certificate of each instance).')
        section.notes.append('Every (m) run was checked the same way. (m) is the module\'s own cost on this '
                             'machine, Python start and imports included: (c) minus (m) is what running it '
                             'through ansible-playbook adds.')
        # The generation HAProxy holds now: the last (m) run's, or the one the (c) profile below sends.
        current = context.repetitions % 2
        if rows['c'].median > bound_c:
            current = 1 - current
            context.log('B1: (c) missed its target, profiling the module')
            instance = instances[0]
            entries = loaded[instance['name']]
            args = {'endpoint': instance['runtime_tcp'],
                    'certificates': [{'path': entry.path, 'src': source}
                                     for entry, source in zip(entries, sources[current])]}
            try:
                profile = profile_module('haproxy_ssl_cert', args, context.scratch('b1/profile'))
            except (OSError, RuntimeError, ValueError) as exc:
                profile = f'profiling failed: {exc}'
            section.notes.append('(c) missed: cProfile of one module run (the same bulk call, '
                                 f'{instance["name"]}, run directly with the venv Python):\n\n' + profile)
        if rows['d'].median > bound_d:
            context.log('B1: (d) missed its target, profiling the module on the no-op rerun')
            instance = instances[0]
            entries = loaded[instance['name']]
            # The generation HAProxy holds already: the same call changes nothing.
            args = {'endpoint': instance['runtime_tcp'],
                    'certificates': [{'path': entry.path, 'src': source}
                                     for entry, source in zip(entries, sources[current])]}
            try:
                profile = profile_module('haproxy_ssl_cert', args, context.scratch('b1/profile-d'))
            except (OSError, RuntimeError, ValueError) as exc:
                profile = f'profiling failed: {exc}'
            section.notes.append('(d) missed: cProfile of one no-op module run (the same bulk call, '
                                 f'{instance["name"]}; Ansible\'s own work on the controller is not in it):\n\n'
                                 + profile)
    return section
