# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One writer per HAProxy process on a controller: the flock, its bounds, and converge_endpoint holding it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.ingress.haproxy.plugins.module_utils import _process_lock
from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._process_lock import LockError, ProcessLock
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_converge import (
    converge_endpoint,
    prepare_requests,
)
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_status import parse_cert_detail


def test_second_holder_waits_then_fails_naming_the_process(tmp_path):
    first = ProcessLock("node/42/1700000000", directory=str(tmp_path)).acquire(1)
    try:
        started = time.monotonic()
        with pytest.raises(LockError) as info:
            ProcessLock("node/42/1700000000", directory=str(tmp_path)).acquire(0.3)
        assert time.monotonic() - started >= 0.3
        assert "same HAProxy process (node/42/1700000000)" in str(info.value) and "0.3s" in str(info.value)
        # Another process's lock is another file.
        ProcessLock("node/43/1700000000", directory=str(tmp_path)).acquire(0.1).release()
    finally:
        first.release()
    ProcessLock("node/42/1700000000", directory=str(tmp_path)).acquire(0.1).release()
    assert stat.S_IMODE(os.stat(first.path).st_mode) == 0o600


def test_a_holder_that_dies_releases_it(tmp_path):
    lock = ProcessLock("node/7/1", directory=str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"), lock.path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError):
            ProcessLock("node/7/1", directory=str(tmp_path)).acquire(0.2)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    ProcessLock("node/7/1", directory=str(tmp_path)).acquire(1).release()


def test_lock_dir_is_private(tmp_path, monkeypatch):
    monkeypatch.setattr(_process_lock.tempfile, "tempdir", str(tmp_path))
    path = _process_lock.lock_dir()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700 and os.stat(path).st_uid == os.geteuid()
    os.chmod(path, 0o777)
    with pytest.raises(LockError, match="not a private directory"):
        _process_lock.lock_dir()


def test_converge_waits_for_a_run_holding_the_process(start_lab, tmp_path, monkeypatch):
    """A run that reaches the same process by another endpoint while this one holds it: bounded wait, then a
    failure naming the lock; nothing changed."""
    instance = start_lab(preload=1)["instances"][0]
    monkeypatch.setattr(_process_lock.tempfile, "tempdir", str(tmp_path))
    path = os.path.join(instance["cert_dir"], "preload-0001.pem")
    with open(instance["default_cert"]) as handle:
        bundle = handle.read()
    with api.RuntimeSession(instance["runtime_unix"], timeout=5) as session:
        identity = session.process_identity()
        before = parse_cert_detail(session.show_ssl_cert(path))
    requests = prepare_requests([{"path": path, "content": bundle}], instance["runtime_tcp"])
    held = ProcessLock(identity).acquire(1)
    try:
        results, error, dummy_warnings = converge_endpoint(instance["runtime_tcp"], requests, timeout=0.5)
    finally:
        held.release()
    assert results == [] and error is not None
    assert "another run on this machine is changing the certificates of the same HAProxy process" in error
    assert path in error and instance["runtime_tcp"] in error and error.endswith("nothing was changed")
    with api.RuntimeSession(instance["runtime_unix"], timeout=5) as session:
        assert parse_cert_detail(session.show_ssl_cert(path)).fingerprint == before.fingerprint
    # Released: the same call now converges.
    results, error, dummy_warnings = converge_endpoint(instance["runtime_tcp"], requests, timeout=5)
    assert error is None and results[0]["action"] == "updated"
