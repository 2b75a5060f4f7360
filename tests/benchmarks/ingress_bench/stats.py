# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Medians and percentiles, and the repeated measurement every row is built from."""

from __future__ import annotations

import math
import statistics


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.99 for p99) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Series:
    """Repeated measurements of one row; ``median`` is what the tables report."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.values: list[float] = []

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> str:
        """``min–max`` of the runs, for the reader to judge the noise."""
        if len(self.values) < 2:
            return 'one run'
        return f'{min(self.values):.2f}–{max(self.values):.2f}'
