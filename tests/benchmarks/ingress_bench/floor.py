# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The protocol floor: the least work a client can do to rotate certificates.

One persistent Runtime API connection in prompt mode, one ``set ssl cert``
(payload in the same write) and one ``commit ssl cert`` per certificate,
each reply read to the prompt and checked. No listing, no comparison, no
verification: whatever the collection does on top of this is its overhead.
Written plainly on purpose, independent of the collection's own client.
"""

from __future__ import annotations

import socket
import threading
import time

PROMPT = b'\n> '


class FloorError(Exception):
    """HAProxy answered something other than success, or the connection failed."""


def connect(endpoint: str, timeout: float = 10.0) -> socket.socket:
    """``HOST:PORT`` (TCP) or a unix socket path."""
    if endpoint.startswith('/'):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(endpoint)
        return sock
    host, _sep, port = endpoint.rpartition(':')
    sock = socket.create_connection((host.strip('[]'), int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Session:
    """One prompt-mode connection; ``command`` returns the reply without the prompt."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self._sock = connect(endpoint, timeout)
        self._sock.sendall(b'prompt\n')
        self._read_replies(1)

    def _read_replies(self, count: int) -> list[str]:
        """The next ``count`` replies, each read up to its prompt (the prompt dropped)."""
        buffer = bytearray()
        while buffer.count(PROMPT) < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise FloorError(f'{self.endpoint}: connection closed after {bytes(buffer[-200:])!r}')
            buffer += chunk
        return [reply.decode('utf-8', 'replace') for reply in bytes(buffer).split(PROMPT)[:count]]

    def command(self, line: str, payload: str | None = None) -> str:
        return self.pipeline([(line, payload)])[0]

    def pipeline(self, commands: list[tuple[str, str | None]]) -> list[str]:
        """Several ``(line, payload)`` commands in one write, as the module pipelines them; their replies."""
        self._sock.sendall(b''.join(self._encode(line, payload) for line, payload in commands))
        # Prompt mode echoes one "+ " per payload line before the answer.
        return [reply.replace('+ ', '') if payload is not None else reply
                for (dummy_line, payload), reply in zip(commands, self._read_replies(len(commands)))]

    @staticmethod
    def _encode(line: str, payload: str | None) -> bytes:
        if payload is None:
            return line.encode() + b'\n'
        body = '\n'.join(text for text in payload.splitlines() if text.strip())
        return f'{line} <<\n{body}\n\n'.encode()

    def replace_certificate(self, path: str, pem: str) -> None:
        """``set`` then ``commit`` one certificate, checking both replies."""
        reply = self.command(f'set ssl cert {path}', pem)
        if f'for certificate {path}!' not in reply or 'Transaction' not in reply:
            raise FloorError(f'{self.endpoint}: set ssl cert {path}: {reply.strip()!r}')
        reply = self.command(f'commit ssl cert {path}')
        if 'Success!' not in reply:
            raise FloorError(f'{self.endpoint}: commit ssl cert {path}: {reply.strip()!r}')

    def close(self) -> None:
        try:
            self._sock.sendall(b'quit\n')
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def rotate(endpoint: str, items: list[tuple[str, str]]) -> None:
    """Replace every ``(path, pem)`` on one instance over one connection."""
    with Session(endpoint) as session:
        for path, pem in items:
            session.replace_certificate(path, pem)


def run_parallel(jobs: dict[str, list[tuple[str, str]]], worker=rotate) -> float:
    """Run ``worker(endpoint, items)`` for every endpoint at once, one thread each; return wall seconds.

    The first error of any thread is raised after all threads have ended.
    """
    errors: list[BaseException] = []

    def guarded(endpoint: str, items: list[tuple[str, str]]) -> None:
        try:
            worker(endpoint, items)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(endpoint, items)) for endpoint, items in jobs.items()]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed
