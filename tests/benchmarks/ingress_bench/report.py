# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Markdown each benchmark contributes to docs/benchmarks.md (and prints)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Target:
    """A stated goal and whether this run met it, with the numbers that decide it."""

    text: str
    met: bool
    evidence: str
    # False in --quick runs: their sizes are too small for the targets to mean anything.
    judged: bool = True

    @property
    def verdict(self) -> str:
        if not self.judged:
            return 'not judged (quick run)'
        return 'met' if self.met else '**missed**'

    def markdown(self) -> str:
        return f'- Target: {self.text} — {self.verdict} ({self.evidence}).'


@dataclasses.dataclass
class Section:
    """One benchmark's part of the report."""

    key: str
    title: str
    intro: str = ''
    tables: list[tuple[list[str], list[list[str]]]] = dataclasses.field(default_factory=list)
    targets: list[Target] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    error: str = ''

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.tables.append((header, rows))

    def markdown(self) -> str:
        parts = [f'## {self.key} — {self.title}', '']
        if self.intro:
            parts += [self.intro, '']
        if self.error:
            parts += ['**The benchmark did not complete:**', '', '```', self.error.strip(), '```', '']
        for header, rows in self.tables:
            parts.append('| ' + ' | '.join(header) + ' |')
            parts.append('|' + '|'.join('---' if index == 0 else '---:' for index in range(len(header))) + '|')
            for row in rows:
                parts.append('| ' + ' | '.join(row) + ' |')
            parts.append('')
        if self.targets:
            parts += [target.markdown() for target in self.targets] + ['']
        if self.notes:
            parts += [f'- {note}' for note in self.notes] + ['']
        return '\n'.join(parts)


def seconds(value: float) -> str:
    return f'{value:.2f} s'


def duration(value: float) -> str:
    """Seconds, or milliseconds below one second."""
    return seconds(value) if value >= 1 else milliseconds(value)


def milliseconds(value: float) -> str:
    return f'{value * 1000:.2f} ms' if value < 0.01 else f'{value * 1000:.0f} ms'


def ratio(value: float) -> str:
    return f'{value:.2f}×' if value < 100 else f'{value:,.0f}×'
