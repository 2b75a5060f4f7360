# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fan-out: one call converging the same certificates on many endpoints.

Input checks run without HAProxy; the rest against the lab's real HAProxy, its
silent endpoint (accepts, never answers) and a closed port. The playbook-level
cases (three instances, check mode, diff) live in the haproxy_ssl_cert_endpoints
integration target.
"""

from __future__ import annotations

import datetime
import os
import socket

import pytest

from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils import _ssl_cert_fanout as fanout
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_status import parse_cert_detail
from ansible_collections.ingress.haproxy.tests.unit.plugins.recording_proxy import RecordingProxy

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def _bundle(name):
    """A self-signed leaf with its key: enough for HAProxy to load (no chain to check)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    text = leaf.public_bytes(serialization.Encoding.PEM).decode()
    text += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    return leaf, text


def _closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % sock.getsockname()[1]


# -- input ---------------------------------------------------------------------

@pytest.mark.parametrize("endpoints, kwargs, words", [
    ([], {}, "endpoints is empty"),
    (["127.0.0.1:9999", ""], {}, "endpoints[1] is empty"),
    (["127.0.0.1:9999", "127.0.0.1:99999"], {}, "endpoints[1] (127.0.0.1:99999)"),
    (["127.0.0.1:9999", "tcp:127.0.0.1:9999"], {}, "endpoints[1] (tcp:127.0.0.1:9999) is the same endpoint as "
                                                   "endpoints[0]"),
    (["127.0.0.1:9999"], {"process": "1"}, "process '1' is not a master CLI prefix"),
    (["127.0.0.1:9999"], {"concurrency": 0}, "concurrency must be a whole number of at least 1"),
    ([{"endpoint": "127.0.0.1:9999", "certdir": "/x"}], {}, "endpoints[0]: unknown key(s) certdir"),
    ([{"endpoint": "127.0.0.1:9999", "cert_dir": "/a b"}], {}, "endpoints[0]: cert_dir '/a b' holds ' '"),
    ([{"endpoint": "/m.sock", "process": "@1"}, {"endpoint": "unix:/m.sock", "process": "@1"}], {},
     "endpoints[1] (unix:/m.sock) is the same endpoint as endpoints[0]"),
    ([{"process": "@1"}], {}, "endpoints[0] is empty"),
])
def test_parse_endpoints_refuses(endpoints, kwargs, words):
    with pytest.raises(fanout.FanoutError) as info:
        fanout.parse_endpoints(endpoints, **kwargs)
    message = str(info.value)
    assert words in message and message.endswith("nothing was sent")


def test_parse_endpoints_keeps_order_and_process():
    targets = fanout.parse_endpoints(["127.0.0.12:9999", "/run/a.sock", {"endpoint": "/run/a.sock", "process": "@2"},
                                      {"endpoint": "[::1]:9999", "process": "", "cert_dir": "/h4", "crt_list": "/l"}],
                                     process="@1")
    assert [str(target) for target in targets] == ["127.0.0.12:9999", "/run/a.sock", "/run/a.sock", "[::1]:9999"]
    assert [target.endpoint.family for target in targets] == ["tcp", "unix", "unix", "tcp"]
    assert [target.process for target in targets] == ["@1", "@1", "@2", "@1"]
    assert [target.variant for target in targets] == [("@1", None, None)] * 2 + [("@2", None, None),
                                                                                 ("@1", "/h4", "/l")]
    assert fanout.parse_endpoints(["127.0.0.1:1"], process="")[0].process is None


def test_prepare_variants_per_cert_dir_and_crt_list(tmp_path):
    dummy_leaf, text = _bundle("variants.test")
    source = tmp_path / "bundle.pem"
    source.write_text(text)
    reads = []

    def read_file(path):
        reads.append(path)
        with open(path, "rb") as handle:
            return handle.read()

    targets = fanout.parse_endpoints(["h1:1", {"endpoint": "h2:1", "cert_dir": "/lab/h2/certs"},
                                      {"endpoint": "h3:1", "cert_dir": "/lab/h3/certs", "crt_list": "/lab/h3/list"},
                                      "h4:1"])
    items = [{"path": "/etc/haproxy/certs/www.pem", "src": str(source), "crt_list": "/etc/haproxy/list"}]
    variants = fanout.prepare_variants(targets, items, read_file=read_file)
    assert reads == [str(source)]
    assert len(variants) == 3
    assert [(request.path, request.crt_list) for target in targets for request in variants[target.variant]] == [
        ("/etc/haproxy/certs/www.pem", "/etc/haproxy/list"),
        ("/lab/h2/certs/www.pem", "/etc/haproxy/list"),
        ("/lab/h3/certs/www.pem", "/lab/h3/list"),
        ("/etc/haproxy/certs/www.pem", "/etc/haproxy/list"),
    ]
    assert variants[targets[2].variant][0].payloads[0][0] == "/lab/h3/certs/www.pem"
    # A bad bundle is refused before anything is sent, naming the endpoints it was for.
    with pytest.raises(fanout.ConvergeError) as info:
        fanout.prepare_variants(targets, [dict(items[0], src=str(tmp_path / "missing.pem"))])
    assert "2 endpoints (h1:1, h4:1)" in str(info.value) and str(info.value).endswith("nothing was sent")


def test_describe_endpoints():
    assert fanout.describe_endpoints(["a:1"]) == "a:1"
    assert fanout.describe_endpoints(["a:%d" % port for port in range(1, 8)]) == \
        "7 endpoints (a:1, a:2, a:3, a:4, a:5 and 2 more)"


def test_failure_message_and_diff():
    unchanged = {"path": "/c/a.pem", "state": "present", "action": "unchanged", "changed": False,
                 "before": {"serial": "01"}, "after": {"serial": "01"}}
    updated = dict(unchanged, action="updated", changed=True, after={"serial": "02"})
    instances = [
        {"endpoint": "h1:1", "failed": False, "changed": True, "certificates": [updated]},
        {"endpoint": "h2:1", "failed": True, "changed": False, "certificates": [],
         "msg": "certificate /c/a.pem on h2:1: refused"},
        {"endpoint": "h3:1", "failed": False, "changed": False, "certificates": [unchanged]},
    ]
    assert fanout.failure_message(instances) == (
        "1 of 3 endpoints failed (h2:1), every other endpoint was handled all the same: "
        "h2:1: certificate /c/a.pem on h2:1: refused")
    assert fanout.failure_message([instances[0], instances[2]]) is None
    assert fanout.diff_of_instances(instances) == [
        {"before_header": "h1:1 /c/a.pem", "after_header": "h1:1 /c/a.pem",
         "before": {"serial": "01"}, "after": {"serial": "02"}}]


# -- the real HAProxy ----------------------------------------------------------------

@pytest.fixture
def lab(start_lab):
    return start_lab(preload=2)


def _preloaded(instance):
    """The path HAProxy knows the first preloaded certificate by (the file it loaded at start)."""
    return os.path.join(instance["cert_dir"],
                        sorted(name for name in os.listdir(instance["cert_dir"]) if name.startswith("preload-"))[0])


def _served(instance, path):
    with api.RuntimeSession(instance["runtime_unix"], timeout=5) as session:
        return parse_cert_detail(session.show_ssl_cert(path))


def test_one_dead_endpoint_fails_alone(lab):
    """Real, closed and silent endpoints in one call: the real one converges, the others say why, in order."""
    instance = lab["instances"][0]
    path = _preloaded(instance)
    leaf, text = _bundle("fanout.test")
    closed = _closed_port()
    texts = [closed, instance["runtime_tcp"], lab["silent_endpoint"]]
    targets = fanout.parse_endpoints(texts)
    variants = fanout.prepare_variants(targets, [{"path": path, "content": text}])
    instances, warnings = fanout.converge_endpoints(targets, variants, timeout=1.5)
    assert [item["endpoint"] for item in instances] == texts
    assert [item["failed"] for item in instances] == [True, False, True]
    assert "cannot connect to the Runtime API at %s" % closed in instances[0]["msg"]
    assert path in instances[0]["msg"] and instances[0]["certificates"] == []
    assert lab["silent_endpoint"] in instances[2]["msg"] and "1.5s" in instances[2]["msg"]
    assert "msg" not in instances[1]
    assert instances[1]["changed"] is True and instances[1]["certificates"][0]["action"] == "updated"
    fingerprint = leaf.fingerprint(hashes.SHA1()).hex().upper()
    assert instances[1]["certificates"][0]["after"]["fingerprint"] == fingerprint
    assert _served(instance, path).fingerprint == fingerprint
    assert warnings == []
    message = fanout.failure_message(instances)
    assert message.startswith("2 of 3 endpoints failed (%s, %s)" % (closed, lab["silent_endpoint"]))

    # Check mode, then a rerun, through one thread: nothing to change anywhere it answers.
    targets = fanout.parse_endpoints([instance["runtime_unix"]], concurrency=1)
    variants = fanout.prepare_variants(targets, [{"path": path, "content": text}])
    for check_mode in (True, False):
        instances, dummy_warnings = fanout.converge_endpoints(targets, variants, check_mode=check_mode,
                                                              concurrency=1, timeout=5)
        assert [(item["failed"], item["changed"]) for item in instances] == [(False, False)]
        assert instances[0]["certificates"][0]["action"] == "unchanged"


def test_check_mode_sends_nothing(lab):
    instance = lab["instances"][0]
    path = _preloaded(instance)
    before = _served(instance, path)
    dummy_leaf, text = _bundle("check.fanout.test")
    targets = fanout.parse_endpoints([instance["runtime_operator"]])
    variants = fanout.prepare_variants(targets, [{"path": path, "content": text}])
    instances, dummy_warnings = fanout.converge_endpoints(targets, variants, check_mode=True, timeout=5)
    assert instances[0]["failed"] is False and instances[0]["changed"] is True
    assert instances[0]["certificates"][0]["action"] == "updated"
    assert instances[0]["certificates"][0]["before"]["fingerprint"] == before.fingerprint
    assert _served(instance, path).fingerprint == before.fingerprint
    # A real run on an operator socket fails before any change, naming the level it needs.
    instances, dummy_warnings = fanout.converge_endpoints(targets, variants, timeout=5)
    assert instances[0]["failed"] is True and "level admin" in instances[0]["msg"]
    assert _served(instance, path).fingerprint == before.fingerprint


def test_aliases_of_one_process_are_converged_once(lab):
    """Its unix socket, a TCP socket (through a recording relay) and the master CLI reach one process: it is
    converged once, through the first; the others only answered `show info`, and their entries say so."""
    instance = lab["instances"][0]
    path = _preloaded(instance)
    leaf, text = _bundle("alias.fanout.test")
    relay = RecordingProxy(instance["runtime_tcp"])
    try:
        texts = [instance["runtime_unix"], relay.endpoint, {"endpoint": instance["master_cli"], "process": "@1"}]
        targets = fanout.parse_endpoints(texts)
        variants = fanout.prepare_variants(targets, [{"path": path, "content": text}])
        instances, dummy_warnings = fanout.converge_endpoints(targets, variants, timeout=5)
        through_relay = relay.commands()
    finally:
        relay.close()
    fingerprint = leaf.fingerprint(hashes.SHA1()).hex().upper()
    assert instances[0]["aliases"] == [relay.endpoint, instance["master_cli"]]
    assert [item.get("alias_of") for item in instances] == [None, instance["runtime_unix"], instance["runtime_unix"]]
    assert [(item["failed"], item["changed"]) for item in instances] == [(False, True)] * 3
    assert instances[0]["certificates"][0]["after"]["fingerprint"] == fingerprint
    assert _served(instance, path).fingerprint == fingerprint
    # The relayed alias was asked who it is, and nothing else.
    assert through_relay == ["prompt", "show info"]


def test_alias_with_another_cert_dir_sends_nothing(lab):
    instance = lab["instances"][0]
    path = _preloaded(instance)
    dummy_leaf, text = _bundle("alias2.fanout.test")
    targets = fanout.parse_endpoints([instance["runtime_unix"],
                                      {"endpoint": instance["runtime_tcp"], "cert_dir": "/elsewhere"}])
    variants = fanout.prepare_variants(targets, [{"path": path, "content": text}])
    instances, dummy_warnings = fanout.converge_endpoints(targets, variants, timeout=5)
    assert instances[0]["failed"] is False and instances[0]["aliases"] == [instance["runtime_tcp"]]
    assert instances[1]["failed"] is True and instances[1]["certificates"] == []
    assert "reaches the same HAProxy process as %s" % instance["runtime_unix"] in instances[1]["msg"]
    assert "/elsewhere" in instances[1]["msg"]
