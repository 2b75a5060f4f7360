# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Names HAProxy's CLI parser would split or reinterpret never reach HAProxy.

2.6.12 splits a line at ``;`` (``show ssl cert x.pem;help`` runs ``help``) and
at whitespace, and treats backslash and quotes specially. Each case runs the
real module (haproxy_ssl_cert or haproxy_ssl_cert_info, as Ansible runs it: a
process reading its arguments file) against a recording TCP proxy in front of
the lab's real HAProxy: the module fails naming the parameter, and the proxy
saw not one byte.
"""

from __future__ import annotations

import pytest

from ansible_collections.ingress.haproxy.tests.unit.plugins.module_runner import run_module
from ansible_collections.ingress.haproxy.tests.unit.plugins.recording_proxy import RecordingProxy


@pytest.fixture
def proxy(start_lab):
    relay = RecordingProxy(start_lab(preload=1)["instances"][0]["runtime_tcp"])
    yield relay
    relay.close()


BUNDLE_PATH = "/etc/haproxy/certs/www.pem"
# Never read: the names are refused first. (A short no_log value would be masked all over the messages.)
PEM = "-----BEGIN CERTIFICATE-----\nnot read\n-----END CERTIFICATE-----\n"

CASES = [
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + ";help", "content": PEM}, "path '%s;help' holds ';'" % BUNDLE_PATH),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + ";quit", "state": "absent"}, "holds ';'"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + " help", "content": PEM}, "holds ' '"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + "\thelp", "content": PEM}, "holds '\\t'"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + "\nhelp", "content": PEM}, "holds '\\n'"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + "\x1b", "content": PEM}, "holds '\\x1b'"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + "\\", "content": PEM}, "holds '\\\\'"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + "'", "content": PEM}, "holds \"'\""),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH + '"', "content": PEM}, "holds '\"'"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH, "content": PEM, "crt_list": "/etc/haproxy/list;help"},
     "crt_list '/etc/haproxy/list;help' holds ';'"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH, "content": PEM, "crt_list": "/l", "sni_filters": ["a;help"]},
     "SNI filter 'a;help' holds ';'"),
    ("haproxy_ssl_cert", {"path": BUNDLE_PATH, "content": PEM, "crt_list": "/l", "crt_list_options": "alpn h2;help"},
     "a word of crt_list_options 'h2;help' holds ';'"),
    ("haproxy_ssl_cert", {"certificates": [{"path": BUNDLE_PATH, "content": PEM},
                                           {"path": BUNDLE_PATH + "2;help", "content": PEM}]}, "holds ';'"),
    ("haproxy_ssl_cert_info", {"paths": [BUNDLE_PATH, BUNDLE_PATH + ";help"]}, "paths[1] '%s;help' holds ';'"
     % BUNDLE_PATH),
]


@pytest.mark.parametrize("module, args, words", CASES, ids=[repr(args)[:60] for dummy, args, dummy in CASES])
def test_unsafe_name_sends_nothing(proxy, tmp_path, module, args, words):
    result = run_module(module, dict(args, endpoint=proxy.endpoint), tmp_path)
    assert result.get("failed") is True, result
    assert words in result["msg"] and "nothing was sent" in result["msg"]
    assert (proxy.connections, proxy.bytes_sent) == (0, 0)


def test_unsafe_cert_dir_sends_nothing(proxy, tmp_path):
    args = {"endpoints": [proxy.endpoint, {"endpoint": proxy.endpoint.replace("127.0.0.1", "localhost"),
                                           "cert_dir": "/etc/haproxy;help"}],
            "path": BUNDLE_PATH, "content": PEM}
    result = run_module("haproxy_ssl_cert", args, tmp_path)
    assert result.get("failed") is True
    assert "endpoints[1]: cert_dir '/etc/haproxy;help' holds ';'" in result["msg"]
    assert (proxy.connections, proxy.bytes_sent) == (0, 0)


def test_the_proxy_counts(proxy, tmp_path):
    """The control: a safe name goes through the same proxy and is counted."""
    result = run_module("haproxy_ssl_cert_info", {"endpoint": proxy.endpoint, "paths": [BUNDLE_PATH]}, tmp_path)
    assert result.get("failed") is not True, result
    assert result["missing"] == [BUNDLE_PATH]
    assert proxy.connections == 1 and proxy.bytes_sent > len("prompt\nshow ssl cert\n")
