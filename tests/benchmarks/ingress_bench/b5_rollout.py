# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""B5: the cost of a staged rollout (canary, then the rest) against pushing every instance at once."""

from __future__ import annotations

from .ansible_run import PlaybookRunner, task_durations
from .context import Context, loaded_certificates
from .report import Section, Target, ratio, seconds
from .stats import Series

MODES = (('all at once', 0), ('canary 1, then the rest', 1))
REPORT_TASK = 'Report | Put together the outcome on every instance'


class BenchmarkError(Exception):
    """The role's report says something other than: every instance pushed and verified."""


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
    size = 5 if context.quick else 20
    section = Section('B5', f'staged rollout: canary then the rest vs all at once, {size} instances')
    section.intro = (
        'The `ingress.haproxy.push` playbook (bundle → push → verify, persist skipped as in B4) with '
        f'`certificates_endpoints` listing {size} lab instances, once with `certificates_rollout_canary: 0` '
        '(one wave: one push call, one handshake call) and once with the default `certificates_rollout_canary: 1` '
        '(two waves: the canary is pushed and checked, then the rest). One new certificate version per run; '
        'the role\'s report must show every instance `changed` and verified `ok`. The modes alternate within '
        'each repetition.'
    )
    with context.lab(instances=size, preload=1) as lab:
        instances = lab.state['instances']
        context.haproxy_version = lab.state['haproxy_version']
        target = loaded_certificates(instances[0])[0]
        runner = PlaybookRunner(context.scratch('b5/ansible'), context.python)
        inventory = runner.write('inventory.yml', {'all': {'hosts': {'localhost': {
            'ansible_connection': 'local', 'ansible_python_interpreter': context.python}}}})
        store = context.scratch('b5/store')
        rows = {label: Series(label) for label, _canary in MODES}
        breakdown: dict[str, float] = {}
        for repetition in range(context.repetitions):
            for label, canary in MODES:
                version = context.issuer.generation([target.name], f'b5-{repetition}-{canary}')
                certificate, key = version.write_split(context.scratch(f'b5/source/{repetition}-{canary}'))
                variables = runner.write(f'vars-{repetition}-{canary}.yml', {
                    'certificates_source': 'files',
                    'certificates_items': [{'name': 'bench', 'domains': [target.name],
                                            'haproxy_path': target.path,
                                            'certificate': certificate, 'privatekey': key}],
                    'certificates_store_dir': store,
                    'certificates_persist_group': '',
                    'certificates_rollout_canary': canary,
                    'certificates_endpoints': [{'name': instance['name'], 'endpoint': instance['runtime_tcp'],
                                                'cert_dir': instance['cert_dir'],
                                                'verify_host': instance['address'],
                                                'verify_port': instance['tls_port']}
                                               for instance in instances],
                })
                elapsed, document = runner.run('ingress.haproxy.push', inventory, forks=5,
                                               extra_vars_file=variables)
                _check_report(document, size)
                rows[label].add(elapsed)
                if canary and repetition == context.repetitions - 1:
                    breakdown = task_durations(document)
                context.log(f'B5 run {repetition + 1}: {label} {elapsed:.2f} s')

        base = rows[MODES[0][0]].median
        section.table(['mode', 'wall (median)', f'runs (min–max, n={context.repetitions})', 'ratio to all at once'],
                      [[label, seconds(series.median), series.spread, ratio(series.median / base)]
                       for label, series in rows.items()])
        staged = rows[MODES[1][0]].median
        section.targets.append(Target(f'a rollout with a canary to {size} instances costs ≤ 1.5 × the all-at-once push',
                                      staged <= 1.5 * base, f'{staged:.2f} s vs 1.5 × {base:.2f} s',
                                      judged=not context.quick))
        if breakdown:
            top = sorted(breakdown.items(), key=lambda item: item[1], reverse=True)[:8]
            section.notes.append('Where the canary run spends its time (task wall time from the json callback, '
                                 'slowest first): '
                                 + '; '.join(f'{name.split(" : ", 1)[-1]} {value:.2f} s' for name, value in top) + '.')
    return section
