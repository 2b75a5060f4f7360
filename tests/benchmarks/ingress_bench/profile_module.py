# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where a module's time goes: one run of it under cProfile, outside Ansible.

The module is executed the way AnsiballZ does in the end (``__main__`` with
its arguments in a JSON file), from the collection tree this benchmark runs
in, in a child process so its ``exit_json`` ends only that process.
"""

from __future__ import annotations

import io
import json
import os
import pstats
import subprocess
import sys

from .context import REPO_ROOT

OWN_CODE = r'(_runtime_api|_ssl_cert_\w+|_pem|haproxy_ssl_cert\w*)\.py|socket'
_DRIVER = '''
import cProfile, io, pstats, runpy, sys
module, args_file, stats_file = sys.argv[1:4]
sys.argv = [module, args_file]
profiler = cProfile.Profile()
try:
    profiler.runcall(runpy.run_module, module, run_name='__main__', alter_sys=True)
except SystemExit:
    pass
profiler.dump_stats(stats_file)
'''


def collections_root() -> str:
    """The directory holding ``ansible_collections`` that this copy of the collection lives in."""
    parent = os.path.dirname(os.path.dirname(REPO_ROOT))
    if os.path.basename(parent) != 'ansible_collections':
        raise RuntimeError(f'{REPO_ROOT} is not inside an ansible_collections tree: run from the '
                           'collection mirror (make bench does)')
    return os.path.dirname(parent)


def profile_module(module: str, args: dict, workdir: str, top: int = 24) -> str:
    """Run ``ingress.haproxy.<module>`` once with ``args`` under cProfile; return the top entries as text."""
    os.makedirs(workdir, exist_ok=True)
    args_file = os.path.join(workdir, f'{module}.args.json')
    stats_file = os.path.join(workdir, f'{module}.pstats')
    descriptor = os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, 'w', encoding='utf-8') as out:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, out)
    env = dict(os.environ, PYTHONPATH=collections_root())
    completed = subprocess.run([sys.executable, '-c', _DRIVER,
                                f'ansible_collections.ingress.haproxy.plugins.modules.{module}',
                                args_file, stats_file],
                               capture_output=True, text=True, env=env, check=False)
    try:
        result = json.loads(completed.stdout)
    except ValueError:
        result = {'failed': True, 'msg': completed.stdout[-500:] + completed.stderr[-1500:]}
    text = io.StringIO()
    stats = pstats.Stats(stats_file, stream=text)
    # The collection's own functions and the socket calls they wait in, then the hottest functions of all.
    stats.strip_dirs().sort_stats('cumulative').print_stats(OWN_CODE, top)
    stats.sort_stats('tottime').print_stats(top // 2)
    status = 'failed: ' + str(result.get('msg')) if result.get('failed') else 'ok'
    # Drop pstats' banner lines (date, file name): they say nothing about the module.
    lines = [line for line in text.getvalue().strip().splitlines() if stats_file not in line]
    return f'module result: {status}\n\n```\n' + '\n'.join(lines).strip() + '\n```'
