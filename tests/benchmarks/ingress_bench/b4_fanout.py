# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""B4: fan-out — 10 certificates to 1 and to 200 HAProxy instances in one ``haproxy_ssl_cert`` call."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .ansible_run import PlaybookRunner, task_results
from .context import Context, loaded_certificates
from .profile_module import collections_root
from .report import Section, Target, ratio, seconds
from .stats import Series

CERTIFICATES = 10
TASK = 'Converge the certificates on every instance'
PLAY = [{
    'name': 'B4 fan-out',
    'hosts': 'localhost',
    'gather_facts': False,
    'tasks': [{
        'name': TASK,
        'ingress.haproxy.haproxy_ssl_cert': {
            'endpoints': '{{ bench_endpoints }}',
            'certificates': '{{ bench_certificates }}',
        },
    }],
}]


# The module's fan-out, phase by phase, in a fresh process as the module runs (threads make cProfile blind:
# it sees only the main thread waiting for the pool).
_PHASES_DRIVER = '''
import json, sys, time
started = time.perf_counter()
from ansible_collections.ingress.haproxy.plugins.module_utils import _ssl_cert_fanout as fanout
from concurrent.futures import ThreadPoolExecutor
imported = time.perf_counter()
endpoints, certificates = json.load(open(sys.argv[1]))
targets = fanout.parse_endpoints(endpoints, concurrency=fanout.DEFAULT_CONCURRENCY)
variants = fanout.prepare_variants(targets, [dict(item, state="present") for item in certificates])
prepared = time.perf_counter()
with ThreadPoolExecutor(max_workers=min(fanout.DEFAULT_CONCURRENCY, len(targets))) as pool:
    list(pool.map(fanout.identify, targets))
identified = time.perf_counter()
instances, warnings = fanout.converge_endpoints(targets, variants)
converged = time.perf_counter()
failed = [instance["endpoint"] for instance in instances if instance["failed"]]
print(json.dumps({"import": imported - started, "prepare": prepared - imported, "identify": identified - prepared,
                  "converge": converged - identified, "failed": failed}))
'''


def _write_sources(directory: str, names: list[str], pems: list[str]) -> list[str]:
    """One bundle file per name (0600: it holds the key); their paths."""
    sources = []
    for name, pem in zip(names, pems):
        source = os.path.join(directory, name)
        descriptor = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, 'w', encoding='utf-8') as out:
            out.write(pem)
        sources.append(source)
    return sources


class BenchmarkError(Exception):
    """The module's result says something other than: every certificate updated on every instance."""


def _check(document: dict, size: int, fingerprints: list[str]) -> None:
    result = task_results(document, TASK)['localhost']
    endpoints = result.get('instances') or []
    if result.get('failed') or len(endpoints) != size:
        raise BenchmarkError(f'expected {size} endpoints converged, got: {result.get("msg")}')
    for endpoint in endpoints:
        served = [item.get('after', {}).get('fingerprint') for item in endpoint.get('certificates', [])]
        actions = {item.get('action') for item in endpoint.get('certificates', [])}
        if endpoint.get('failed') or actions != {'updated'} or served != fingerprints:
            raise BenchmarkError(f'{endpoint.get("endpoint")}: {endpoint.get("msg")} {actions}')


def run(context: Context) -> Section:
    largest = 20 if context.quick else 200
    sizes = (1, largest)
    section = Section('B4', f'fan-out: {CERTIFICATES} certificates to 1 and to {largest} instances')
    section.intro = (
        f'One `ingress.haproxy.haproxy_ssl_cert` task with `endpoints` (every instance\'s TCP Runtime API and '
        f'its `cert_dir`) and {CERTIFICATES} `certificates` (`src` files on the controller): the module reads '
        'and validates each bundle once and converges every instance in parallel, one connection each. '
        f'Each run sends a new generation of the {CERTIFICATES} certificates, so every run changes every '
        'certificate on every instance; the module\'s result must list each as `updated` with the new '
        'fingerprint read back from HAProxy. The controller\'s peak memory is the highest total RSS of the '
        'ansible-playbook process tree (controller, fork, module), sampled every 50 ms.'
    )
    with context.lab(instances=largest, preload=CERTIFICATES) as lab:
        instances = lab.state['instances']
        context.haproxy_version = lab.state['haproxy_version']
        names = [os.path.basename(entry.path) for entry in loaded_certificates(instances[0])][:CERTIFICATES]
        domains = [entry.name for entry in loaded_certificates(instances[0])][:CERTIFICATES]
        runner = PlaybookRunner(context.scratch('b4/ansible'), context.python)
        inventory = runner.write('inventory.yml', {'all': {'hosts': {'localhost': {
            'ansible_connection': 'local', 'ansible_python_interpreter': context.python}}}})
        playbook = runner.write('fanout.yml', PLAY)
        rows = {size: Series(str(size)) for size in sizes}
        peaks: dict[int, list[int]] = {size: [] for size in sizes}
        for repetition in range(context.repetitions):
            for size in sizes:
                version = context.issuer.generation(domains, f'b4-{repetition}-{size}')
                sources = _write_sources(context.scratch(f'b4/source/{repetition}-{size}'), names, version.pems)
                variables = runner.write(f'vars-{repetition}-{size}.yml', {
                    'bench_endpoints': [{'endpoint': instance['runtime_tcp'], 'cert_dir': instance['cert_dir']}
                                        for instance in instances[:size]],
                    'bench_certificates': [{'path': os.path.join(instances[0]['cert_dir'], name), 'src': source}
                                           for name, source in zip(names, sources)],
                })
                elapsed, document = runner.run(playbook, inventory, forks=5, extra_vars_file=variables,
                                               peak=peaks[size])
                _check(document, size, list(version.fingerprints))
                rows[size].add(elapsed)
                context.log(f'B4 run {repetition + 1}: {size} instance(s) {elapsed:.2f} s, '
                            f'peak {peaks[size][-1] / 2**20:.0f} MiB')

        phases = {size: _phases(context, instances[:size], names, domains, f'{size}') for size in sizes}
        section.notes.append(
            'Where the module\'s time goes: its phases timed once more per size, run directly in a fresh Python '
            '(a new generation; same endpoints and certificates): ' + '; '.join(
                f'{size} instance(s): imports {phase["import"]:.2f} s, read and validate '
                f'{phase["prepare"]:.2f} s, identity pass alone {phase["identify"]:.2f} s, the whole fan-out '
                f'(its own identity pass, then converge) {phase["converge"]:.2f} s'
                for size, phase in phases.items())
            + '. The rest of each row above is ansible-playbook (start, task, module transfer).')
        one = rows[1].median
        section.table(['instances', 'wall (median)', f'runs (min–max, n={context.repetitions})', 'ratio to 1',
                       'controller peak RSS (max)'],
                      [[str(size), seconds(series.median), series.spread, ratio(series.median / one),
                        f'{max(peaks[size]) / 2**20:.0f} MiB'] for size, series in rows.items()])
        section.targets.append(Target(f'{largest} instances × {CERTIFICATES} certificates ≤ 3 × one instance',
                                      rows[largest].median <= 3 * one,
                                      f'{rows[largest].median:.2f} s vs 3 × {one:.2f} s; controller peak '
                                      f'{max(peaks[largest]) / 2**20:.0f} MiB'))
    return section


def _phases(context: Context, instances: list[dict], names: list[str], domains: list[str], label: str) -> dict:
    """Run the module's fan-out directly, timing imports, bundle preparation, the identity pass and the converge."""
    version = context.issuer.generation(domains, f'b4-phases-{label}')
    source_dir = context.scratch(f'b4/phases/{label}')
    certificates = [{'path': os.path.join(instances[0]['cert_dir'], name), 'src': source}
                    for name, source in zip(names, _write_sources(source_dir, names, version.pems))]
    arguments = os.path.join(source_dir, 'arguments.json')
    with open(arguments, 'w', encoding='utf-8') as out:
        json.dump([[{'endpoint': instance['runtime_tcp'], 'cert_dir': instance['cert_dir']}
                    for instance in instances], certificates], out)
    completed = subprocess.run([sys.executable, '-c', _PHASES_DRIVER, arguments], capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=collections_root()), check=False)
    try:
        result = json.loads(completed.stdout)
    except ValueError as exc:
        raise BenchmarkError(f'the phase driver failed: {completed.stderr[-1500:]}') from exc
    if result['failed']:
        raise BenchmarkError(f'the phase driver failed on {result["failed"]}')
    return result
