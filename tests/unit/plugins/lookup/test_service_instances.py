# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the lab's bind9 cannot be made to do; everything else is in the
integration target lookup_service_instances, against the real bind9."""

from __future__ import annotations

import importlib
import socket
import sys
import threading
import time

import dns.message
import dns.rrset
import pytest

from ansible.errors import AnsibleLookupError

from ansible_collections.ingress.haproxy.plugins.plugin_utils._service_dns import (
    ServiceDnsError,
    ServiceResolver,
)

LOOKUP = "ansible_collections.ingress.haproxy.plugins.lookup.service_instances"
HELPER = "ansible_collections.ingress.haproxy.plugins.plugin_utils._service_dns"


def test_missing_dnspython_names_the_requirement(monkeypatch):
    # Import the lookup afresh in an interpreter state where dnspython cannot be imported.
    for name in list(sys.modules):
        if name == "dns" or name.startswith("dns."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "dns", None)
    monkeypatch.delitem(sys.modules, LOOKUP, raising=False)
    monkeypatch.delitem(sys.modules, HELPER, raising=False)
    lookup = importlib.import_module(LOOKUP)

    with pytest.raises(AnsibleLookupError) as failure:
        lookup.LookupModule().run(["haproxy"], variables={})

    message = str(failure.value)
    assert "ingress.haproxy.service_instances" in message
    assert "dnspython >= 2.0.0" in message
    assert "cannot import dnspython" in message


class SlowDnsServer:
    """A UDP DNS server on 127.0.0.1 that answers every A query, each after a delay.

    bind9 answers at once; only a slow server shows that the timeout bounds the
    whole lookup (every name, every query) and not each query on its own.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.queries: list[str] = []
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = self.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self.socket.recvfrom(4096)
            except socket.timeout:
                continue
            query = dns.message.from_wire(wire)
            question = query.question[0]
            self.queries.append(question.name.to_text())
            time.sleep(self.delay)
            reply = dns.message.make_response(query)
            reply.answer.append(dns.rrset.from_text(question.name, 5, "IN", "A", "127.0.0.5"))
            self.socket.sendto(reply.to_wire(), client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture
def slow_server():
    server = SlowDnsServer(delay=0.4)
    yield server
    server.close()


def test_timeout_bounds_the_whole_lookup(slow_server):
    # Each answer takes 0.4 s: the first two names fit into 1 s, the third does not.
    resolver = ServiceResolver(nameservers=["127.0.0.1"], dns_port=slow_server.port, record_types=["A"], timeout=1)
    started = time.monotonic()
    with pytest.raises(ServiceDnsError) as failure:
        resolver.instances(["a.test.", "b.test.", "c.test.", "d.test."], fail_on_empty=True)
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 1.5
    message = str(failure.value)
    assert "Looking up A records of c.test." in message
    assert f"127.0.0.1:{slow_server.port}" in message
    assert "timeout, no answer within 1 s" in message
    assert "d.test." not in slow_server.queries
