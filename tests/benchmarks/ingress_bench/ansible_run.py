# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run ``ansible-playbook`` as a user would and read every task result back.

Ansible's own defaults are kept (no pipelining, no fact gathering tricks)
except: the ``ansible.posix.json`` stdout callback, so the benchmark can
check what each module reported; forks equal to the number of hosts, so
instances are served in parallel; a private temp dir; and the venv's Python
as the hosts' interpreter (the modules need ``cryptography``).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time

import yaml

from . import procstat


class PlaybookFailed(Exception):
    """ansible-playbook exited non-zero; carries the tail of its output."""


class PlaybookRunner:
    """Write inventories and playbooks under ``workdir`` and time ``ansible-playbook`` runs."""

    def __init__(self, workdir: str, python: str = sys.executable) -> None:
        self.workdir = workdir
        self.python = python
        self.ansible_playbook = os.path.join(os.path.dirname(python), 'ansible-playbook')
        os.makedirs(workdir, exist_ok=True)
        self.config = os.path.join(workdir, 'ansible.cfg')
        with open(self.config, 'w', encoding='utf-8') as out:
            out.write('[defaults]\n'
                      'stdout_callback = ansible.posix.json\n'
                      'host_key_checking = false\n'
                      'retry_files_enabled = false\n'
                      f'local_tmp = {os.path.join(workdir, "ansible-local")}\n'
                      f'remote_tmp = {os.path.join(workdir, "ansible-remote")}\n')

    def write(self, name: str, data) -> str:
        """Write ``data`` as YAML under ``workdir``; return the path."""
        path = os.path.join(self.workdir, name)
        with open(path, 'w', encoding='utf-8') as out:
            yaml.safe_dump(data, out, sort_keys=False, default_flow_style=False)
        return path

    def inventory(self, name: str, hosts: dict[str, dict]) -> str:
        """An inventory of local-connection hosts in group ``haproxy``, each with its own vars."""
        host_vars = {}
        for host, variables in hosts.items():
            host_vars[host] = {'ansible_connection': 'local', 'ansible_python_interpreter': self.python,
                               **variables}
        return self.write(name, {'haproxy': {'hosts': host_vars}})

    def run(self, playbook: str, inventory: str, forks: int = 5,
            extra_vars_file: str | None = None, peak: list | None = None) -> tuple[float, dict]:
        """Run one playbook (a path or a collection playbook's FQCN); return (wall seconds, the json document).

        With ``peak`` (a list), the highest total RSS of the ansible-playbook process tree (the controller
        and the modules it starts) is appended to it, in bytes.
        """
        argv = [self.ansible_playbook, '-i', inventory, '--forks', str(forks), playbook]
        if extra_vars_file:
            argv += ['--extra-vars', f'@{extra_vars_file}']
        env = dict(os.environ, ANSIBLE_CONFIG=self.config, ANSIBLE_NOCOLOR='1')
        started = time.perf_counter()
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=self.workdir) as process:
            if peak is None:
                stdout, stderr = process.communicate()
            else:
                with procstat.TreePeakRss(process.pid) as watcher:
                    stdout, stderr = process.communicate()
                peak.append(watcher.peak)
        elapsed = time.perf_counter() - started
        completed = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
        try:
            document = json.loads(completed.stdout)
        except ValueError:
            document = {}
        if completed.returncode != 0:
            raise PlaybookFailed(f'{" ".join(argv)} exited '
                                 f'{completed.returncode}:\n{_failures(document) or completed.stdout[-3000:]}'
                                 f'\n{completed.stderr[-2000:]}')
        return elapsed, document


def task_results(document: dict, task_name: str) -> dict[str, dict]:
    """``{host: result}`` of the task called ``task_name`` in a json callback document."""
    for play in document.get('plays', []):
        for task in play.get('tasks', []):
            if task.get('task', {}).get('name') == task_name:
                return task.get('hosts', {})
    raise KeyError(f'no task {task_name!r} in the playbook output')


def task_durations(document: dict) -> dict[str, float]:
    """Wall seconds per task name (summed over the play), from the json callback's task timestamps."""
    totals: dict[str, float] = {}
    for play in document.get('plays', []):
        for task in play.get('tasks', []):
            info = task.get('task', {})
            duration = info.get('duration', {})
            try:
                began = datetime.datetime.fromisoformat(duration['start'].replace('Z', '+00:00'))
                ended = datetime.datetime.fromisoformat(duration['end'].replace('Z', '+00:00'))
            except (KeyError, ValueError):
                continue
            name = info.get('name') or '(unnamed)'
            totals[name] = totals.get(name, 0.0) + (ended - began).total_seconds()
    return totals


def _failures(document: dict) -> str:
    lines = []
    for play in document.get('plays', []):
        for task in play.get('tasks', []):
            for host, result in task.get('hosts', {}).items():
                if result.get('failed') or result.get('unreachable'):
                    lines.append(f'{task.get("task", {}).get("name")} on {host}: {result.get("msg")}')
    return '\n'.join(lines)
