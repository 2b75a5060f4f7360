# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # The options every module that talks to HAProxy's Runtime API shares.
    DOCUMENTATION = r"""
options:
  endpoint:
    description:
      - Where the Runtime API of one HAProxy process listens (a C(stats socket), or the master CLI of a
        master-worker HAProxy together with O(process)).
      - A unix socket as C(/run/haproxy/admin.sock) or C(unix:/run/haproxy/admin.sock); a TCP socket as
        C(tcp:HOST:PORT), C(HOST:PORT) or C([IPv6]:PORT).
      - The module connects once and sends every command over that one connection in interactive C(prompt) mode.
      - Changing certificates needs a socket with C(level admin); reading them works with C(level operator).
      - The socket is reached from the host the module runs on.
    type: str
    required: true
  process:
    description:
      - When O(endpoint) is a master CLI, the process every command is for, as the master CLI writes it
        C(@1) (first worker), C(@!PID) (the process with that PID) or C(@master).
      - Leave unset for a worker's own stats socket.
    type: str
  timeout:
    description:
      - Seconds to wait for the connection and for each reply. A process that does not answer in time is an error,
        not a hang.
      - Also how long a certificate transaction another client left open is waited for.
    type: float
    default: 10
"""
