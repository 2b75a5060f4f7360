# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""New TLS handshakes with SNI: which leaf is served, how long it takes, under load.

The load client runs in several processes (the GIL would otherwise serialise
the handshakes' CPU work). Each process starts handshakes at a fixed pace
(an open loop, so a slow server shows up as latency, not as fewer samples),
round-robin over the server names, never reusing a TLS session.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import queue
import socket
import ssl
import time


def client_context() -> ssl.SSLContext:
    """A client that accepts any certificate: the benchmark checks the fingerprint itself."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def served_fingerprint(address: str, port: int, servername: str, context: ssl.SSLContext | None = None,
                       timeout: float = 5.0) -> str:
    """SHA1 fingerprint (uppercase hex, as HAProxy prints it) of the leaf served for ``servername``."""
    context = context or client_context()
    with socket.create_connection((address, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=servername) as tls:
            der = tls.getpeercert(binary_form=True)
    return hashlib.sha1(der).hexdigest().upper()  # nosec - HAProxy's own fingerprint


def wait_served(address: str, port: int, servername: str, fingerprint: str, timeout: float = 300.0,
                interval: float = 0.005) -> float:
    """Poll new handshakes until ``fingerprint`` is served; return the monotonic time it first was."""
    context = client_context()
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            if served_fingerprint(address, port, servername, context) == fingerprint:
                return time.monotonic()
        except (OSError, ssl.SSLError) as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f'{address}:{port} SNI {servername} never served {fingerprint} (last error: {last_error})')


def _load_worker(address: str, port: int, names: list[str], accepted: dict[str, list[str]],
                 start_at: float, duration: float, rate: float, offset: int, results) -> None:
    """One client process: handshake at ``rate`` per second from ``start_at`` for ``duration`` seconds.

    Sends back a list of ``(started_relative, latency, outcome)`` with
    outcome ``ok``, ``wrong-leaf`` or the error's type name.
    """
    context = client_context()
    accepted_sets = {name: set(prints) for name, prints in accepted.items()}
    samples = []
    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))
    origin = time.perf_counter()
    count = 0
    index = offset
    while True:
        scheduled = count / rate
        if scheduled >= duration:
            break
        now = time.perf_counter() - origin
        if now < scheduled:
            time.sleep(scheduled - now)
        name = names[index % len(names)]
        index += 1
        count += 1
        began = time.perf_counter()
        try:
            with socket.create_connection((address, port), timeout=5.0) as raw:
                with context.wrap_socket(raw, server_hostname=name) as tls:
                    # Connect + handshake: the clock stops before closing.
                    latency = time.perf_counter() - began
                    der = tls.getpeercert(binary_form=True)
            fingerprint = hashlib.sha1(der).hexdigest().upper()  # nosec - HAProxy's own fingerprint
            outcome = 'ok' if fingerprint in accepted_sets[name] else 'wrong-leaf'
        except (OSError, ssl.SSLError) as exc:
            latency = time.perf_counter() - began
            outcome = type(exc).__name__
        samples.append((began - origin, latency, outcome))
    results.put(samples)


class LoadRun:
    """Start ``processes`` client processes now; ``collect()`` waits for them and merges their samples.

    Total rate is ``rate`` handshakes per second, for ``duration`` seconds;
    ``accepted`` maps each server name to the fingerprints that count as
    correct (any known version of that name's certificate).
    """

    def __init__(self, address: str, port: int, names: list[str], accepted: dict[str, list[str]],
                 duration: float, rate: float, processes: int = 2, warmup: float = 0.5) -> None:
        context = multiprocessing.get_context('spawn')
        self._results = context.Queue()
        self.start_at = time.time() + warmup + 1.0
        self.duration = duration
        self._processes = [
            context.Process(target=_load_worker,
                            args=(address, port, names, accepted, self.start_at, duration,
                                  rate / processes, number * len(names) // processes, self._results))
            for number in range(processes)
        ]
        for process in self._processes:
            process.start()

    def wait_started(self) -> None:
        """Block until the clients' common start time."""
        time.sleep(max(0.0, self.start_at - time.time()))

    def collect(self) -> list[tuple[float, float, str]]:
        samples: list[tuple[float, float, str]] = []
        pending = len(self._processes)
        deadline = self.start_at + self.duration + 60
        while pending:
            try:
                samples.extend(self._results.get(timeout=0.5))
                pending -= 1
            except queue.Empty as exc:
                if time.time() > deadline or not any(process.is_alive() for process in self._processes):
                    self._stop_all()
                    raise RuntimeError(f'{pending} load client process(es) ended without results') from exc
        self._stop_all()
        return samples

    def _stop_all(self) -> None:
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
