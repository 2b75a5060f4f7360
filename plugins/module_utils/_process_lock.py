# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""One writer per HAProxy process on this machine.

Module runs that converge the same HAProxy process (named by its identity
from ``show info``: node, pid, start time, whatever endpoint reached it) take
the same exclusive ``flock`` on a file in a private directory under the system
temp dir. The kernel releases it when the holder exits or dies, so a crashed
run never blocks the next one; the wait for it is bounded.

No Ansible import: plain ``fcntl``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import tempfile
import time

from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError

POLL_SECONDS = 0.05


class LockError(IngressError):
    """The lock could not be taken: held too long by another run, or its directory is unsafe."""


def lock_dir():
    """``<tempdir>/ingress.haproxy-locks-<uid>``, mode 0700, owned by us, not a symlink (created if missing)."""
    path = os.path.join(tempfile.gettempdir(), "ingress.haproxy-locks-%d" % os.geteuid())
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise LockError("cannot create the lock directory %s: %s" % (path, exc.strerror or exc))
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise LockError("the lock directory %s is not a private directory of this user (mode 0700, owner uid %d); "
                        "remove it" % (path, os.geteuid()))
    return path


class ProcessLock:
    """Exclusive lock for one process identity; ``acquire(timeout)`` waits at most ``timeout`` seconds."""

    def __init__(self, identity, directory=None):
        self.identity = identity
        name = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32] + ".lock"
        self.path = os.path.join(directory or lock_dir(), name)
        self._fd = None

    def acquire(self, timeout):
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise LockError("cannot open the lock file %s: %s" % (self.path, exc.strerror or exc))
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise LockError("cannot lock %s: %s" % (self.path, exc.strerror or exc))
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockError(
                    "another run on this machine is changing the certificates of the same HAProxy process (%s) "
                    "and did not finish within %gs (lock file %s)" % (self.identity, timeout, self.path))
            time.sleep(POLL_SECONDS)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.release()
