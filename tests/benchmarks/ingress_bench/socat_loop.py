# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The seed's way, kept only as a point of comparison: two ``socat`` processes per certificate.

The first sends ``set ssl cert PATH <<`` with the bundle, the second
``commit ssl cert PATH``, each over a fresh connection in HAProxy's one-shot
(non-prompt) mode, exactly as shell deploy hooks do.
"""

from __future__ import annotations

import subprocess

from .floor import FloorError


def _socat(endpoint: str, request: bytes) -> str:
    address = f'UNIX-CONNECT:{endpoint}' if endpoint.startswith('/') else f'TCP:{endpoint}'
    completed = subprocess.run(['socat', 'stdio', address], input=request, capture_output=True,
                               check=False, timeout=30)
    if completed.returncode != 0:
        raise FloorError(f'socat {address} exited {completed.returncode}: {completed.stderr.decode()!r}')
    return completed.stdout.decode('utf-8', 'replace')


def rotate(endpoint: str, items: list[tuple[str, str]]) -> None:
    """Replace every ``(path, pem)`` on one instance, two socat runs per certificate."""
    for path, pem in items:
        body = '\n'.join(text for text in pem.splitlines() if text.strip())
        reply = _socat(endpoint, f'set ssl cert {path} <<\n{body}\n\n'.encode())
        if f'for certificate {path}!' not in reply:
            raise FloorError(f'socat set ssl cert {path}: {reply.strip()!r}')
        reply = _socat(endpoint, f'commit ssl cert {path}\n'.encode())
        if 'Success!' not in reply:
            raise FloorError(f'socat commit ssl cert {path}: {reply.strip()!r}')
