# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One Runtime API command, one connection: how the lab itself (and tests) peek at HAProxy.

Deliberately independent of the collection's own client, so tests can check
that client's effects with a second, trivially simple implementation.
"""

from __future__ import annotations

import socket
import time

from ._errors import LabError


def _connect(endpoint: str, timeout: float) -> socket.socket:
    if endpoint.startswith('unix:'):
        endpoint = endpoint[len('unix:'):]
    if endpoint.startswith('/'):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint)
        except OSError:
            sock.close()
            raise
        return sock
    if endpoint.startswith('tcp:'):
        endpoint = endpoint[len('tcp:'):]
    host, _sep, port = endpoint.rpartition(':')
    return socket.create_connection((host.strip('[]'), int(port)), timeout=timeout)


def runtime_command(endpoint: str, command: str, payload: str | None = None,
                    timeout: float = 5.0) -> str:
    """Send one command (with an optional ``<<`` payload) and return HAProxy's whole reply.

    ``endpoint``: a unix socket path (optionally ``unix:``), ``HOST:PORT`` or
    ``tcp:HOST:PORT``. For the master CLI put the ``@1 `` prefix in ``command``.
    """
    if payload is not None:
        lines = [line for line in payload.splitlines() if line.strip()]
        request = f'{command} <<\n' + '\n'.join(lines) + '\n\n'
    else:
        request = command + '\n'
    try:
        with _connect(endpoint, timeout) as sock:
            sock.sendall(request.encode())
            # The master CLI answers only once it sees the end of the request.
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            deadline = time.monotonic() + timeout
            while True:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except (OSError, ValueError) as exc:
        raise LabError(f'Runtime API {endpoint}: {command!r} failed: {exc}') from exc
    return b''.join(chunks).decode('utf-8', 'replace')
