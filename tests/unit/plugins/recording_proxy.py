# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A TCP relay in front of a real Runtime API that records what clients send (for tests)."""

from __future__ import annotations

import socket
import threading


class RecordingProxy:
    """Relays to ``upstream`` (HOST:PORT); counts connections and keeps every byte clients sent (``sent``)."""

    def __init__(self, upstream):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.endpoint = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.connections = 0
        self.sent = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def bytes_sent(self):
        with self._lock:
            return len(self.sent)

    def commands(self):
        """The lines clients sent (payload lines included), in order."""
        with self._lock:
            return bytes(self.sent).decode("utf-8", "replace").splitlines()

    def _accept(self):
        while True:
            try:
                client, dummy_address = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                state = {"number": self.connections, "drop": False}
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._relay, args=(client, server, True, state), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, False, state), daemon=True).start()

    def on_client_data(self, data, state):
        """Hook, before a client's chunk is forwarded; ``state``: ``number`` (1 = first connection), ``drop``."""

    def _relay(self, source, sink, from_client, state):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_client:
                    with self._lock:
                        self.sent += data
                    self.on_client_data(data, state)
                elif state["drop"]:
                    # Hang up on the client instead of passing the reply on.
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()
