# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The real HAProxy of the lab, for the unit tests that need one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys

import pytest

LAB_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "lab"))
COLLECTION_DIR = os.path.normpath(os.path.join(LAB_DIR, "..", ".."))
# One root per checkout (ansible-test passes no environment through): `make units` reaps this
# root afterwards and must not stop the labs of another checkout's test run. The Makefile
# computes the same name (UNIT_LAB_ROOT).
LAB_ROOT = "/tmp/ingress-lab-" + hashlib.sha256(COLLECTION_DIR.encode()).hexdigest()[:8]
# The HAProxy version of these labs: `make units HAPROXY_VERSION=3.2` writes it next to the
# unit tests of the collection's copy (the same route as integration_config.yml); without
# that file, $INGRESS_HAPROXY_VERSION or the lab's default (2.6) applies.
LAB_CONFIG = os.path.join(COLLECTION_DIR, "tests", "unit", "lab_config.json")


def lab_haproxy_version():
    try:
        with open(LAB_CONFIG) as config:
            return json.load(config).get("haproxy")
    except (OSError, ValueError):
        return None


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
            lab = Lab(os.environ.get("INGRESS_LAB_ROOT", LAB_ROOT), instances=1, preload=preload,
                      haproxy=lab_haproxy_version())
            return stack.enter_context(lab).state
        yield start
