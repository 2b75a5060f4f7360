# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every daemon of the lab has in common."""

from __future__ import annotations

import os
import re

from ._process import Daemon, log_tail

# How HAProxy, named and pebble (Go) say that a port was taken meanwhile.
_BIND_CONFLICT = re.compile(r'address (already )?in use', re.IGNORECASE)


class Component:
    """A daemon of the lab: plans its files and ports, says how to run and probe it."""

    name = ''

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.daemon: Daemon | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, f'{self.name}.log')

    @property
    def workdir(self) -> str:
        return os.path.join(self.state_dir, self.name)

    def prepare(self) -> None:
        """Choose free ports and write the daemon's configuration (again on a retry)."""
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def runs(self) -> list[str]:
        """The command line the process ends up with (differs when ``argv`` is a wrapper that execs)."""
        return self.argv()

    def env(self) -> dict[str, str] | None:
        return None

    def probe(self) -> bool:
        """True once the daemon really answers on what it serves."""
        raise NotImplementedError

    def finish(self) -> None:
        """Runs once the daemon answers (e.g. fetch what it generated)."""

    def bind_conflict(self) -> bool:
        """The daemon's log says a port was taken between choosing and binding it."""
        return bool(_BIND_CONFLICT.search(log_tail(self.log_path, 40)))

    def state(self) -> dict:
        raise NotImplementedError
