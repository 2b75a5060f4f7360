# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""pytest fixtures for the lab.

Load with ``pytest -p ingress_lab.pytest_plugin`` (tests/lab on sys.path) or
``pytest_plugins = ['ingress_lab.pytest_plugin']`` in a conftest.py.

- ``lab``: the state dict of a lab with 3 instances and bind9, one per test
  module (started before the module's first test, stopped after its last,
  also when tests fail).
- ``lab_factory``: ``lab_factory(instances=1, acme=True, preload=100, ...)``
  starts a lab with those options (the ``Lab`` arguments) and returns its
  state; every lab it started is stopped after the test.

The root for the state dirs is ``--lab-root`` or ``$INGRESS_LAB_ROOT``,
else /tmp/ingress-lab.
"""

from __future__ import annotations

import os

import pytest

from ._lab import DEFAULT_ROOT, Lab


def pytest_addoption(parser) -> None:
    parser.addoption('--lab-root', default=None,
                     help='parent dir of the lab state dirs (default $INGRESS_LAB_ROOT or '
                          f'{DEFAULT_ROOT})')


def _root(config) -> str:
    return config.getoption('--lab-root') or os.environ.get('INGRESS_LAB_ROOT') or DEFAULT_ROOT


@pytest.fixture(scope='module')
def lab(request):
    """A running lab (3 HAProxy instances + bind9) for the whole test module: its state dict."""
    with Lab(_root(request.config), instances=3, dns=True) as running:
        yield running.state


@pytest.fixture
def lab_factory(request):
    """Start labs with any ``Lab`` options; all are stopped when the test ends."""
    started: list[Lab] = []

    def start(**options) -> dict:
        new_lab = Lab(_root(request.config), **options)
        new_lab.start()
        started.append(new_lab)
        return new_lab.state

    yield start
    errors = []
    for running in reversed(started):
        try:
            running.stop()
        except Exception as exc:  # pylint: disable=broad-exception-caught  # stop every lab, then report
            errors.append(str(exc))
    if errors:
        pytest.fail('stopping the lab failed: ' + '; '.join(errors))
