# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""B4: one certificate to 1, 5, 10 and 20 instances through the ``ingress.haproxy.push`` playbook."""

from __future__ import annotations

from .ansible_run import PlaybookRunner, task_durations
from .context import Context, loaded_certificates
from .report import Section, Target, ratio, seconds
from .stats import Series


REPORT_TASK = 'Report | Put together the outcome on every instance'


class BenchmarkError(Exception):
    """The playbook's own report says something other than: every instance updated and verified."""


def _check_report(document: dict, count: int) -> None:
    """The role's own report (fact ``certificates_report``) must show every instance changed and verified."""
    report = None
    for play in document.get('plays', []):
        for task in play.get('tasks', []):
            if task.get('task', {}).get('name', '').endswith(REPORT_TASK):
                report = task.get('hosts', {}).get('localhost', {}).get('ansible_facts', {}).get('certificates_report')
    if report is None:
        raise BenchmarkError(f'no task {REPORT_TASK!r} setting certificates_report in the playbook output')
    instances = report.get('instances', [])
    wrong = [instance for instance in instances
             if instance.get('failed') or instance.get('push') != 'changed' or instance.get('verify') != 'ok']
    if report.get('failed') or len(instances) != count or wrong:
        raise BenchmarkError(f'expected {count} instances pushed and verified, report says: {report}')


def run(context: Context) -> Section:
    sizes = (1, 5) if context.quick else (1, 5, 10, 20)
    section = Section('B4', 'fan-out: one certificate to ' + ', '.join(str(size) for size in sizes) + ' instances')
    section.intro = (
        'The `ingress.haproxy.push` playbook as a watcher runs it (steps bundle → push → verify; persist '
        'skipped with `certificates_persist_group: ""` because the lab\'s instances are processes on this '
        'machine, not hosts) with `certificates_endpoints` listing the first N lab instances. One new '
        'certificate version per run (source `files`), so every run bundles, pushes and verifies a real change; '
        'the role\'s own report of every run (fact `certificates_report`) must show each instance '
        '`changed` and verified `ok`. The sizes alternate within each repetition.'
    )
    with context.lab(instances=max(sizes), preload=1) as lab:
        instances = lab.state['instances']
        context.haproxy_version = lab.state['haproxy_version']
        target = loaded_certificates(instances[0])[0]
        runner = PlaybookRunner(context.scratch('b4/ansible'), context.python)
        inventory = runner.write('inventory.yml', {'all': {'hosts': {'localhost': {
            'ansible_connection': 'local', 'ansible_python_interpreter': context.python}}}})
        store = context.scratch('b4/store')
        rows = {size: Series(str(size)) for size in sizes}
        breakdown: dict[str, float] = {}
        for repetition in range(context.repetitions):
            for size in sizes:
                version = context.issuer.generation([target.name], f'b4-{repetition}-{size}')
                certificate, key = version.write_split(context.scratch(f'b4/source/{repetition}-{size}'))
                variables = runner.write(f'vars-{repetition}-{size}.yml', {
                    'certificates_source': 'files',
                    'certificates_items': [{'name': 'bench', 'domains': [target.name],
                                            'haproxy_path': target.path,
                                            'certificate': certificate, 'privatekey': key}],
                    'certificates_store_dir': store,
                    'certificates_persist_group': '',
                    'certificates_endpoints': [{'name': instance['name'], 'endpoint': instance['runtime_tcp'],
                                                'cert_dir': instance['cert_dir'],
                                                'verify_host': instance['address'],
                                                'verify_port': instance['tls_port']}
                                               for instance in instances[:size]],
                })
                elapsed, document = runner.run('ingress.haproxy.push', inventory, forks=5,
                                               extra_vars_file=variables)
                _check_report(document, size)
                rows[size].add(elapsed)
                if size == max(sizes) and repetition == context.repetitions - 1:
                    breakdown = task_durations(document)
                context.log(f'B4 run {repetition + 1}: {size} instance(s) {elapsed:.2f} s')

        one = rows[sizes[0]].median
        section.table(['instances', 'wall (median)', f'runs (min–max, n={context.repetitions})', 'ratio to 1'],
                      [[str(size), seconds(series.median), series.spread, ratio(series.median / one)]
                       for size, series in rows.items()])
        largest = max(sizes)
        section.targets.append(Target(f'{largest} instances cost ≤ 2 × one instance (parallel, not serial)',
                                      rows[largest].median <= 2 * one,
                                      f'{rows[largest].median:.2f} s vs 2 × {one:.2f} s'))
        if breakdown:
            top = sorted(breakdown.items(), key=lambda item: item[1], reverse=True)[:8]
            section.notes.append(f'Where the {largest}-instance run spends its time (task wall time from the '
                                 'json callback, slowest first): '
                                 + '; '.join(f'{name.split(" : ", 1)[-1]} {value:.2f} s' for name, value in top) + '.')
    return section
