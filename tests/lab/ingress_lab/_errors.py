# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one exception the lab raises."""

from __future__ import annotations


class LabError(Exception):
    """Starting, probing or stopping a part of the lab failed; the message says which and why."""
