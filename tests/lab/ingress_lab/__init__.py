# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The loopback lab: real HAProxy, bind9 and pebble processes for the tests.

Test infrastructure of the ingress.haproxy collection, not part of the
collection's content. See tests/lab/README.md.
"""

from __future__ import annotations

from ._errors import LabError
from ._lab import DEFAULT_ROOT, Lab, find_labs, load_state, stop_all, stop_lab
from ._process import read_proc_stat
from ._runtime import runtime_command
from ._served import client_request, served

__all__ = [
    'DEFAULT_ROOT',
    'Lab',
    'LabError',
    'client_request',
    'find_labs',
    'load_state',
    'read_proc_stat',
    'runtime_command',
    'served',
    'stop_all',
    'stop_lab',
]
