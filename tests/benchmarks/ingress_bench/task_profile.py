# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""HAProxy's own task profile: which handlers ran, their CPU, and how long they waited to run.

``set profiling tasks on`` starts (and resets) per-handler counters in the
worker; ``show profiling tasks`` prints them. 2.6 prints ``function calls
cpu_tot cpu_avg lat_tot lat_avg``; 3.x adds lock and memory columns and one
row per caller (``<- caller``). Rows are summed per function here; the
latency is the time a woken handler waited for a thread, which is where a
busy CLI (a commit) shows in the handshakes' handlers.
"""

from __future__ import annotations

import dataclasses
import re

from . import floor

_UNITS = {'ns': 1e-9, 'us': 1e-6, 'ms': 1e-3, 's': 1.0}
_VALUE_RE = re.compile(r'^([0-9.]+)(ns|us|ms|s)$')


@dataclasses.dataclass
class TaskRow:
    """One handler: calls, CPU seconds in total, latency seconds in total (wait between wake-up and run)."""

    function: str
    calls: int = 0
    cpu: float = 0.0
    latency: float = 0.0

    @property
    def cpu_avg(self) -> float:
        return self.cpu / self.calls if self.calls else 0.0

    @property
    def latency_avg(self) -> float:
        return self.latency / self.calls if self.calls else 0.0


def _seconds(text: str) -> float:
    match = _VALUE_RE.match(text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0


def parse(text: str) -> dict[str, TaskRow]:
    """``show profiling tasks`` of 2.6 to 3.4, summed per function."""
    rows: dict[str, TaskRow] = {}
    columns: list[str] = []
    for line in text.splitlines():
        words = line.split('<-')[0].split()
        if words[:2] == ['function', 'calls']:
            columns = words
            continue
        if not columns or len(words) < len(columns) or not words[1].isdigit():
            continue
        values = dict(zip(columns, words))
        row = rows.setdefault(values['function'], TaskRow(values['function']))
        calls = int(values['calls'])
        row.calls += calls
        row.cpu += _seconds(values['cpu_tot'])
        row.latency += _seconds(values['lat_avg']) * calls
    if not columns:
        raise ValueError(f'no task profile in {text[:200]!r}')
    return rows


def start(endpoint: str) -> None:
    """Start (and reset) the worker's task profiling."""
    with floor.Session(endpoint) as session:
        session.command('set profiling tasks on')


def finish(endpoint: str) -> dict[str, TaskRow]:
    """Read the task profile since ``start`` and stop profiling."""
    with floor.Session(endpoint) as session:
        text = session.command('show profiling tasks')
        session.command('set profiling tasks off')
    return parse(text)
