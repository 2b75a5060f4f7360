# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The real HAProxy of the lab, for the unit tests that need one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys

import pytest

LAB_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "lab"))
COLLECTION_DIR = os.path.normpath(os.path.join(LAB_DIR, "..", ".."))
# One root per checkout (ansible-test passes no environment through): `make units` reaps this
# root afterwards and must not stop the labs of another checkout's test run. The Makefile
# computes the same name (UNIT_LAB_ROOT).
LAB_ROOT = "/tmp/ingress-lab-" + hashlib.sha256(COLLECTION_DIR.encode()).hexdigest()[:8]


# Function scope on purpose: ansible-test runs each test in a forked child, where a module-scoped
# fixture is set up again and never torn down, leaving HAProxy processes behind.
@pytest.fixture
def start_lab():
    """``start_lab(preload=N)`` starts a one-instance lab and returns its state; it stops after the test."""
    sys.path.insert(0, LAB_DIR)
    try:
        from ingress_lab import Lab  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(LAB_DIR)
    with contextlib.ExitStack() as stack:
        def start(preload):
            lab = Lab(os.environ.get("INGRESS_LAB_ROOT", LAB_ROOT), instances=1, preload=preload)
            return stack.enter_context(lab).state
        yield start
