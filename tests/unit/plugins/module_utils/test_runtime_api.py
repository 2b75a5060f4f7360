# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Runtime API client.

Against the real HAProxy 2.6.12 of the lab for everything it can be made to
do; against a scripted socket replaying recorded replies (captured from 2.6.12,
3.0.11, 3.2.26 and 3.4.7) for what it cannot: other versions' texts, a
held certificate lock, a server that stops mid-reply.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import socket
import threading
import time

import pytest

from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_status import (
    parse_cert_detail,
    parse_cert_list,
    parse_crt_list,
)

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def _documents():
    documents = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "haproxy-*.json"))):
        with open(path) as handle:
            documents.append(json.load(handle))
    return documents


DOCUMENTS = _documents()
DOCUMENT_IDS = [document["haproxy_version"] for document in DOCUMENTS]
CAPTURED = [document for document in DOCUMENTS if document["source"].startswith("captured")][0]


# -- endpoints -------------------------------------------------------------

@pytest.mark.parametrize("text, family, address, port", [
    ("/run/haproxy/admin.sock", "unix", "/run/haproxy/admin.sock", None),
    ("unix:/run/haproxy/admin.sock", "unix", "/run/haproxy/admin.sock", None),
    ("unix:relative.sock", "unix", "relative.sock", None),
    ("tcp:127.0.0.1:9999", "tcp", "127.0.0.1", 9999),
    ("127.0.0.1:9999", "tcp", "127.0.0.1", 9999),
    ("tasks.haproxy:9999", "tcp", "tasks.haproxy", 9999),
    ("[::1]:9999", "tcp", "::1", 9999),
    ("tcp:[fe80::1]:1", "tcp", "fe80::1", 1),
])
def test_parse_endpoint(text, family, address, port):
    endpoint = api.parse_endpoint(text)
    assert (endpoint.family, endpoint.address, endpoint.port) == (family, address, port)
    assert str(endpoint) == text


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("unix:", "no socket path"),
    ("127.0.0.1", "neither a socket path nor HOST:PORT"),
    ("127.0.0.1:", "port ''"),
    ("127.0.0.1:0", "port '0'"),
    ("127.0.0.1:65536", "port '65536'"),
    ("127.0.0.1:http", "port 'http'"),
    ("::1:9999", "in brackets"),
    ("[::1]9999", "[ADDRESS]:PORT"),
    ("[not-v6]:9999", "not an IPv6 address"),
    ("bad host:1", "not a host name"),
    ("ho$t:1", "not a host name"),
    (" 127.0.0.1:1", "whitespace"),
])
def test_parse_endpoint_rejects(text, reason):
    with pytest.raises(api.EndpointError) as info:
        api.parse_endpoint(text)
    assert reason in str(info.value)


@pytest.mark.parametrize("process", ["@1", "@12", "@!4242", "@master"])
def test_process_prefix(process):
    assert api.check_process(process) == process


@pytest.mark.parametrize("process", ["1", "@", "@-1", "@!", "@1 show", "@!x"])
def test_process_prefix_rejects(process):
    with pytest.raises(api.EndpointError) as info:
        api.check_process(process)
    assert "master CLI prefix" in str(info.value)


def test_payload_lines_drop_blank_lines():
    # A blank line ends a payload: inside a PEM it would cut the key off.
    assert api.payload_lines("A\r\n\r\nB\n  \nC") == "A\nB\nC\n"


# -- a scripted socket ----------------------------------------------------

class Script(threading.Thread):
    """A one-connection server: checks each command it receives and sends the recorded reply.

    ``steps`` is a list of ``(expected command line, reply)``; a reply is text,
    ``"silent"`` (never answer), ``"close"`` (hang up), ``"gone"`` (hang up and stop listening, as a killed
    process does) or ``(text,)`` (answer, then hang up).
    Payload commands are read up to their empty line. Received commands are kept.
    """

    def __init__(self, steps, family=socket.AF_INET, path=None):
        super().__init__(daemon=True)
        self.steps = list(steps)
        self.received = []
        self.errors = []
        self.server = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_UNIX:
            self.server.bind(path)
            self.endpoint = path
        else:
            self.server.bind(("127.0.0.1", 0))
            self.endpoint = "127.0.0.1:%d" % self.server.getsockname()[1]
        self.server.listen(1)
        self.server.settimeout(10)
        self.start()

    def _read_command(self, conn, pending):
        while b"\n" not in pending:
            data = conn.recv(65536)
            if not data:
                return None, pending
            pending += data
        line, pending = pending.split(b"\n", 1)
        text = line.decode()
        if text.endswith(" <<"):
            while b"\n\n" not in b"\n" + pending:
                data = conn.recv(65536)
                if not data:
                    return None, pending
                pending += data
            payload, pending = (b"\n" + pending).split(b"\n\n", 1)
            text = text + "\n" + payload[1:].decode() + "\n"
        return text, pending

    def run(self):
        try:
            conn, dummy_address = self.server.accept()
        except OSError:
            return
        pending = b""
        with conn:
            conn.settimeout(10)
            for expected, reply in self.steps:
                command, pending = self._read_command(conn, pending)
                if command is None:
                    return
                self.received.append(command)
                if command.split("\n")[0].split(" <<")[0] != expected:
                    self.errors.append("expected %r, got %r" % (expected, command))
                    return
                if reply == "silent":
                    time.sleep(30)
                    return
                if reply == "close":
                    return
                if reply == "gone":
                    # The process died: this connection and the listener with it.
                    self.server.close()
                    return
                close_after = isinstance(reply, tuple)
                if close_after:
                    reply = reply[0]
                conn.sendall(reply if isinstance(reply, bytes) else reply.encode("latin-1"))
                if close_after:
                    return
            # Wait for the client to hang up.
            try:
                conn.recv(1)
            except OSError:
                pass

    def finish(self):
        self.server.close()
        self.join(5)
        assert not self.errors


def exchange(document, name):
    item = document["exchanges"][name]
    return item["command"], item["reply"]


def steps_of(document, *names):
    return [exchange(document, "prompt")] + [exchange(document, name) for name in names]


@pytest.mark.parametrize("document", DOCUMENTS, ids=DOCUMENT_IDS)
def test_replayed_transaction(document):
    a = document["paths"]["a"]
    # The capture commits certificate b under "commit" and a under "commit_split".
    commit = "commit_split" if "commit_split" in document["exchanges"] else "commit"
    script = Script(steps_of(document, "show_ssl_cert", "set_created", commit, "show_ssl_cert_ec"))
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        assert parse_cert_list(session.show_ssl_cert_list()).paths
        assert session.set_ssl_cert(a, "-----BEGIN CERTIFICATE-----\nAAAA\n\n-----END CERTIFICATE-----\n") == a
        session.commit_ssl_cert(a)
        assert parse_cert_detail(session.show_ssl_cert(a)).path == a
        assert session.commands_sent == 5
    script.finish()
    # One write per command: the line, "<<", the payload without its blank line, one empty line.
    assert script.received[2] == "set ssl cert %s <<\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" % a


@pytest.mark.parametrize("document", DOCUMENTS, ids=DOCUMENT_IDS)
def test_replayed_conflict_names_the_other_certificate(document):
    # 2.4-2.8 answer "Transaction updated for certificate A!" to a set on B; 3.2+ refuse naming A. Both are conflicts.
    a, b = document["paths"]["a"], document["paths"]["b"]
    script = Script(steps_of(document, "set_while_other_open"))
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        with pytest.raises(api.TransactionConflict) as info:
            session.set_ssl_cert(b, "x")
    script.finish()
    assert info.value.pending_path == a
    assert a in str(info.value) and "set ssl cert %s" % b in str(info.value)
    assert info.value.endpoint == script.endpoint


@pytest.mark.parametrize("document", DOCUMENTS, ids=DOCUMENT_IDS)
def test_replayed_not_found(document):
    script = Script(steps_of(document, "show_ssl_cert_not_found"))
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        with pytest.raises(api.NotFound) as info:
            session.show_ssl_cert("/etc/haproxy/unknown.pem")
    script.finish()
    assert "/etc/haproxy/unknown.pem is not loaded" in str(info.value)


@pytest.mark.parametrize("document", DOCUMENTS, ids=DOCUMENT_IDS)
def test_replayed_crt_list(document):
    name = document["paths"]["crt_list"]
    script = Script(steps_of(document, "show_ssl_crt_list_n"))
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        listed, entries = parse_crt_list(session.show_ssl_crt_list(name))
    script.finish()
    assert listed == name and len(entries) >= 3


@pytest.mark.parametrize("name, error, words", [
    ("operator_set", api.PermissionDenied, "needs level admin"),
    ("set_unknown", api.CommandFailed, "not referenced by the configuration"),
    ("set_garbage", api.CommandFailed, "Can't load the payload"),
])
def test_replayed_set_errors(name, error, words):
    command, reply = exchange(CAPTURED, name)
    prompt = exchange(CAPTURED, "operator_prompt" if name.startswith("operator") else "prompt")
    script = Script([prompt, (command, reply)])
    path = command.split()[-1]
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        with pytest.raises(error) as info:
            session.set_ssl_cert(path, "-----BEGIN SECRET-----\nDO-NOT-ECHO\n-----END SECRET-----\n")
    script.finish()
    message = str(info.value)
    assert words in message and command in message and script.endpoint in message
    # The payload never appears in an error.
    assert "DO-NOT-ECHO" not in message and "DO-NOT-ECHO" not in repr(vars(info.value))


@pytest.mark.parametrize("name, method, error", [
    ("commit_none", "commit_ssl_cert", api.NoTransaction),
    ("commit_key_first", "commit_ssl_cert", api.CommandFailed),
    ("commit_other", "commit_ssl_cert", api.TransactionConflict),
    ("abort_other", "abort_ssl_cert", api.TransactionConflict),
    ("new_ssl_cert_exists", "new_ssl_cert", api.CommandFailed),
    ("del_ssl_cert_in_use", "del_ssl_cert", api.CommandFailed),
    ("del_ssl_cert_missing", "del_ssl_cert", api.CommandFailed),
    ("show_ssl_crt_list_not_found", "show_ssl_crt_list", api.NotFound),
    ("user_show_ssl_cert_ec", "show_ssl_cert", api.PermissionDenied),
    ("operator_commit", "commit_ssl_cert", api.PermissionDenied),
])
def test_replayed_command_errors(name, method, error):
    command, reply = exchange(CAPTURED, name)
    argument = command.split()[-1]
    prompt = exchange(CAPTURED, name.split("_")[0] + "_prompt" if name.startswith(("user", "operator")) else "prompt")
    sent = "show ssl crt-list -n " + argument if method == "show_ssl_crt_list" else command
    script = Script([prompt, (sent, reply)])
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        with pytest.raises(error) as info:
            getattr(session, method)(argument)
    script.finish()
    message = str(info.value)
    assert argument in message and script.endpoint in message
    assert info.value.command == sent and info.value.reply


def test_replayed_successes_of_every_command():
    doc = CAPTURED
    paths = doc["paths"]
    script = Script(steps_of(doc, "abort", "abort_none", "new_ssl_cert", "add_crt_list", "del_crt_list_line",
                             "del_ssl_cert"))
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        assert session.abort_ssl_cert(paths["a"]) is True
        assert session.abort_ssl_cert(paths["a"]) is False
        session.new_ssl_cert(paths["added"])
        session.add_ssl_crt_list(paths["crt_list"], "%s [alpn h2] new.fixture.test" % paths["added"])
        session.del_ssl_crt_list(paths["crt_list"], paths["added"] + ":6")
        session.del_ssl_cert(paths["added"])
    script.finish()
    assert script.received[4] == "add ssl crt-list %s <<\n%s [alpn h2] new.fixture.test\n" % (
        paths["crt_list"], paths["added"])


def test_user_level_listing_means_admin_needed():
    script = Script(steps_of(CAPTURED, "user_show_ssl_cert"))
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        with pytest.raises(api.PermissionDenied) as info:
            session.show_ssl_cert_list()
    script.finish()
    assert "needs level admin" in str(info.value)


def test_master_cli_prefix_and_prompt():
    doc = CAPTURED
    a = doc["paths"]["a"]
    script = Script([exchange(doc, "master_prompt"), exchange(doc, "master_show_ssl_cert"),
                     exchange(doc, "master_set"), exchange(doc, "master_abort")])
    with api.RuntimeSession(script.endpoint, process="@1", timeout=5) as session:
        assert a in parse_cert_list(session.show_ssl_cert_list()).paths
        assert session.set_ssl_cert(a, "x") == a
        assert session.abort_ssl_cert(a) is True
    script.finish()


def test_master_cli_without_process_is_refused():
    script = Script([exchange(CAPTURED, "master_prompt")])
    with pytest.raises(api.EndpointError) as info:
        api.RuntimeSession(script.endpoint, timeout=5).open()
    script.finish()
    assert "master CLI" in str(info.value) and "@1" in str(info.value)


def test_process_on_a_worker_socket_is_refused():
    script = Script([exchange(CAPTURED, "prompt")])
    with pytest.raises(api.EndpointError) as info:
        api.RuntimeSession(script.endpoint, process="@1", timeout=5).open()
    script.finish()
    assert "not a master CLI" in str(info.value)


def test_master_cli_unknown_process_closes():
    command, reply = exchange(CAPTURED, "master_unknown_process")
    assert CAPTURED["exchanges"]["master_unknown_process"]["end"] == "closed"
    script = Script([exchange(CAPTURED, "master_prompt"), (command, (reply,))])
    with api.RuntimeSession(script.endpoint, process="@!1", timeout=5) as session:
        with pytest.raises(api.ConnectionClosed) as info:
            session.show_ssl_cert_list()
    script.finish()
    assert "Can't find the target PID" in str(info.value)


def test_locked_operations_are_retried():
    a = CAPTURED["paths"]["a"]
    locked = "+ Can't update the certificate!\nOperations on certificates are currently locked!\n\n> "
    created = exchange(CAPTURED, "set_created")
    script = Script([exchange(CAPTURED, "prompt"), (created[0], locked), (created[0], locked), created])
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        assert session.set_ssl_cert(a, "x") == a
        assert session.commands_sent == 4
    script.finish()


def test_locked_operations_give_up():
    a = CAPTURED["paths"]["a"]
    locked = "Can't commit the certificate!\nOperations on certificates are currently locked!\n\n> "
    command = "commit ssl cert " + a
    script = Script([exchange(CAPTURED, "prompt")] + [(command, locked)] * 200)
    started = time.monotonic()
    with api.RuntimeSession(script.endpoint, timeout=1) as session:
        with pytest.raises(api.CertificatesLocked) as info:
            session.commit_ssl_cert(a)
    assert time.monotonic() - started < 3
    # Reported as HAProxy's own lock (3.4.7 kept it for good after two concurrent writers), not retried forever.
    assert "currently locked" in str(info.value) and "after 1s of retries" in str(info.value)
    assert "only a restart of the process clears it" in str(info.value)


def test_silent_server_times_out():
    script = Script([("prompt", "silent")])
    started = time.monotonic()
    with pytest.raises(api.ReplyTimeout) as info:
        api.RuntimeSession(script.endpoint, timeout=0.5).open()
    assert time.monotonic() - started < 2
    assert "within 0.5s" in str(info.value) and script.endpoint in str(info.value)


def test_reply_cut_off_is_an_error():
    script = Script([exchange(CAPTURED, "prompt"), ("show ssl cert", "# filename\n/a.pem\n")])
    with api.RuntimeSession(script.endpoint, timeout=1) as session:
        with pytest.raises(api.ReplyTimeout):
            session.show_ssl_cert_list()
        # The session is unusable afterwards, and says so.
        with pytest.raises(api.ConnectionClosed):
            session.show_ssl_cert_list()


def test_closed_without_reply():
    command, reply = exchange(CAPTURED, "oversized_set_too_large")
    assert reply.replace("+ ", "") == ""  # 2.6.12 answered a too large command with nothing at all
    script = Script([exchange(CAPTURED, "prompt"), (command, "close")])
    with api.RuntimeSession(script.endpoint, timeout=5, bufsize=1 << 20) as session:
        with pytest.raises(api.ConnectionClosed) as info:
            session.set_ssl_cert(command.split()[-1], "x" * 100)
    assert "closed the connection without answering `%s`" % command in str(info.value)
    # The likely reason, since the client was told a larger buffer than HAProxy has.
    sent = api.command_bytes(command, "x" * 100)
    assert "the command was %d bytes" % sent in str(info.value)
    assert "larger than its tune.bufsize" in str(info.value) and "1048576" in str(info.value)


def test_process_gone_is_named_not_the_buffer(tmp_path):
    """Killed mid-push: the connection drops and a new one is refused; the message says the process is gone."""
    command = "set ssl cert /a.pem"
    script = Script([exchange(CAPTURED, "prompt"), (command, "gone")], family=socket.AF_UNIX,
                    path=str(tmp_path / "gone.sock"))
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        with pytest.raises(api.ProcessGone) as info:
            session.set_ssl_cert("/a.pem", "x" * 100)
    message = str(info.value)
    assert "closed the connection without answering `%s`" % command in message
    assert "a new connection is refused: the HAProxy process at %s stopped or was killed" % script.endpoint in message
    assert "tune.bufsize" not in message and "tune_bufsize" not in message


def test_large_command_timing_out_names_tune_bufsize():
    """3.3+ never answers a command larger than its buffer (the worker spins): a payload command that times
    out says tune_bufsize is the likely cause (the pre-send check keeps this from happening with the right value)."""
    command = "set ssl cert /a.pem"
    script = Script([exchange(CAPTURED, "prompt"), (command, "silent")])
    with api.RuntimeSession(script.endpoint, timeout=1, bufsize=1 << 20) as session:
        with pytest.raises(api.ReplyTimeout) as info:
            session.set_ssl_cert("/a.pem", "x" * 100)
    message = str(info.value)
    assert "no complete reply from %s to `%s` within 1s" % (script.endpoint, command) in message
    assert "never answers a command larger than its tune.bufsize" in message and "give the real value as tune_bufsize" in message


def test_plain_command_timing_out_blames_no_buffer():
    script = Script([exchange(CAPTURED, "prompt"), ("show ssl cert", "silent")])
    with api.RuntimeSession(script.endpoint, timeout=1) as session:
        with pytest.raises(api.ReplyTimeout) as info:
            session.show_ssl_cert_list()
    assert "tune" not in str(info.value)


def test_closed_without_reply_to_a_plain_command_blames_no_buffer():
    script = Script([exchange(CAPTURED, "prompt"), ("show ssl cert", "close")])
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        with pytest.raises(api.ConnectionClosed) as info:
            session.show_ssl_cert_list()
    assert "closed the connection without answering `show ssl cert`" in str(info.value)
    assert "tune.bufsize" not in str(info.value)


def test_payload_too_large_sends_nothing():
    script = Script([exchange(CAPTURED, "prompt"), ("show ssl cert", exchange(CAPTURED, "show_ssl_cert")[1])])
    with api.RuntimeSession(script.endpoint, timeout=5, bufsize=1024) as session:
        with pytest.raises(api.PayloadTooLarge) as info:
            session.set_ssl_cert("/a.pem", "A" * 2000)
        # The connection is still good, and nothing of the payload went out.
        session.show_ssl_cert_list()
    script.finish()
    assert script.received == ["prompt", "show ssl cert"]
    assert "tune.bufsize 1024" in str(info.value) and "nothing was sent" in str(info.value)


def test_refused_endpoint():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(api.ConnectError) as info:
        api.RuntimeSession("127.0.0.1:%d" % port, timeout=2).open()
    assert "cannot connect to the Runtime API at 127.0.0.1:%d" % port in str(info.value)


def test_missing_unix_socket(tmp_path):
    with pytest.raises(api.ConnectError) as info:
        api.RuntimeSession(str(tmp_path / "none.sock"), timeout=2).open()
    assert "none.sock" in str(info.value)


def test_unix_endpoint(tmp_path):
    path = str(tmp_path / "admin.sock")
    script = Script(steps_of(CAPTURED, "show_cli_level"), family=socket.AF_UNIX, path=path)
    with api.RuntimeSession("unix:" + path, timeout=5) as session:
        assert session.cli_level() == "admin"
    script.finish()


# -- the real HAProxy of the lab ------------------------------------------

def _bundle(common_name, serial, issuer_cert=None, issuer_key=None, extra_names=0):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName(common_name)] + [x509.DNSName("h%04d.%s" % (i, common_name)) for i in range(extra_names)]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(issuer_key or key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return certificate, cert_pem, key_pem


@pytest.fixture
def lab(start_lab):
    return start_lab(preload=2)


def _fingerprint(certificate):
    return certificate.fingerprint(hashes.SHA1()).hex().upper()


@pytest.mark.parametrize("which", ["runtime_tcp", "runtime_unix", "master_cli"])
def test_lab_every_endpoint_form(lab, which):
    instance = lab["instances"][0]
    process = "@1" if which == "master_cli" else None
    with api.RuntimeSession(instance[which], process=process, timeout=5) as session:
        listing = parse_cert_list(session.show_ssl_cert_list())
        assert instance["default_cert"] in listing.paths
        assert listing.transaction is None
        assert session.cli_level() == "admin"
        detail = parse_cert_detail(session.show_ssl_cert(instance["default_cert"]))
        assert detail.status == "Used" and detail.fingerprint


def test_lab_update_and_split_commit(lab):
    instance = lab["instances"][0]
    target = os.path.join(instance["cert_dir"], "preload-0001.pem")
    certificate, cert_pem, key_pem = _bundle("split.lab.test", 0x5117)
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as session:
        # Chain as NAME, key as NAME.key, one commit: how a bundle larger than tune.bufsize still goes in.
        assert session.set_ssl_cert(target, cert_pem) == target
        assert session.set_ssl_cert(target + ".key", key_pem) == target
        session.commit_ssl_cert(target)
        detail = parse_cert_detail(session.show_ssl_cert(target))
    assert detail.fingerprint == _fingerprint(certificate)
    assert detail.serial == "5117"


def test_lab_conflict_on_debian_2_6(lab):
    # Debian's 2.6.12 does not refuse a set on B while A is open: it updates A. The client must see that.
    instance = lab["instances"][0]
    first = os.path.join(instance["cert_dir"], "preload-0001.pem")
    second = os.path.join(instance["cert_dir"], "preload-0002.pem")
    dummy_certificate, cert_pem, key_pem = _bundle("conflict.lab.test", 0xC0F1)
    with api.RuntimeSession(instance["runtime_unix"], timeout=5) as holder:
        holder.set_ssl_cert(first, cert_pem + key_pem)
        try:
            with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as other:
                assert parse_cert_list(other.show_ssl_cert_list()).transaction == first
                with pytest.raises(api.TransactionConflict) as info:
                    other.set_ssl_cert(second, cert_pem + key_pem)
        finally:
            assert holder.abort_ssl_cert(first) is True
    assert info.value.pending_path == first
    if lab["haproxy_version"].startswith("2.6."):
        assert "Transaction updated for certificate %s!" % first in info.value.reply


def _takes_payloads_beyond_bufsize(lab):
    """HAProxy 3.4 reads a CLI payload larger than tune.bufsize; 2.6 to 3.2 close the connection (seen in the lab)."""
    major, minor = (int(part) for part in lab["haproxy_version"].split(".")[:2])
    return (major, minor) >= (3, 4)


def test_lab_payload_limits(lab):
    instance = lab["instances"][0]
    target = os.path.join(instance["cert_dir"], "preload-0002.pem")
    dummy_certificate, cert_pem, key_pem = _bundle("big.lab.test", 0xB16, extra_names=700)
    payload = cert_pem + key_pem
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as session:
        with pytest.raises(api.PayloadTooLarge):
            session.set_ssl_cert(target, payload)
        assert parse_cert_list(session.show_ssl_cert_list()).transaction is None
    # Told a larger buffer than HAProxy has, the client sends it: 2.6.12 hangs up without a word, 3.0 and
    # 3.2 hang up saying the command is too big; 3.4 takes a payload larger than tune.bufsize.
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5, bufsize=1 << 20) as session:
        if _takes_payloads_beyond_bufsize(lab):
            assert session.set_ssl_cert(target, payload) == target
            session.abort_ssl_cert(target)
        else:
            with pytest.raises((api.ConnectionClosed, api.ReplyTimeout)) as info:
                session.set_ssl_cert(target, payload)
            assert "set ssl cert %s" % target in str(info.value)
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as session:
        assert parse_cert_list(session.show_ssl_cert_list()).transaction is None


def test_lab_operator_socket(lab):
    instance = lab["instances"][0]
    with api.RuntimeSession(instance["runtime_operator"], timeout=5) as session:
        # Reading works at level operator...
        assert parse_cert_list(session.show_ssl_cert_list()).paths
        with pytest.raises(api.PermissionDenied) as info:
            session.require_admin()
        assert "needs level admin; it has level operator" in str(info.value)
        with pytest.raises(api.PermissionDenied) as info:
            session.set_ssl_cert(instance["default_cert"], "x")
        assert "needs level admin" in str(info.value)


@pytest.mark.parametrize("which", ["runtime_tcp", "master_cli"])
def test_lab_admin_process_identity_in_one_write(lab, which):
    """The level check and the lock's identity share one round trip; the identity is process_identity's."""
    instance = lab["instances"][0]
    process = "@1" if which == "master_cli" else None
    with api.RuntimeSession(instance[which], process=process, timeout=5) as session:
        recording = Writes(session)
        identity = session.admin_process_identity()
        assert recording.counts == [2]
        assert identity == session.process_identity()
    # The same process reached by another endpoint: the same identity.
    with api.RuntimeSession(instance["runtime_unix"], timeout=5) as other:
        assert other.process_identity() == identity


def test_lab_admin_process_identity_below_admin(lab):
    instance = lab["instances"][0]
    with api.RuntimeSession(instance["runtime_operator"], timeout=5) as session:
        with pytest.raises(api.PermissionDenied) as info:
            session.admin_process_identity()
        # The session is still in step after the refusal: both replies were read.
        assert session.cli_level() == "operator"
    assert "needs level admin; it has level operator" in str(info.value)
    assert info.value.command == "show cli level"


def test_lab_open_transaction_and_certs_in_one_write(lab):
    instance = lab["instances"][0]
    first = os.path.join(instance["cert_dir"], "preload-0001.pem")
    missing = os.path.join(instance["cert_dir"], "missing.pem")
    dummy_certificate, cert_pem, key_pem = _bundle("probe-pair.lab.test", 0x9A1B)
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as session:
        recording = Writes(session)
        transaction, details = session.open_transaction_and_certs([first, missing])
        assert recording.counts == [3]
        assert transaction is None
        assert parse_cert_detail(details[0]).path == first and details[1] is None
        session.set_ssl_cert(first, cert_pem + key_pem)
        try:
            transaction, details = session.open_transaction_and_certs([instance["default_cert"]])
        finally:
            session.abort_ssl_cert(first)
    assert transaction == first
    assert parse_cert_detail(details[0]).path == instance["default_cert"]


def test_lab_open_transaction_and_certs_below_admin(lab):
    """HAProxy refuses the probe at level operator: the listing names the open transaction instead."""
    instance = lab["instances"][0]
    first = os.path.join(instance["cert_dir"], "preload-0002.pem")
    dummy_certificate, cert_pem, key_pem = _bundle("probe-operator-pair.lab.test", 0x9A1C)
    with api.RuntimeSession(instance["runtime_operator"], timeout=5) as operator:
        with api.RuntimeSession(instance["runtime_unix"], timeout=5) as admin:
            admin.set_ssl_cert(first, cert_pem + key_pem)
            try:
                transaction, details = operator.open_transaction_and_certs([first])
            finally:
                admin.abort_ssl_cert(first)
    assert transaction == first
    assert parse_cert_detail(details[0]).path == first


def test_lab_silent_endpoint(lab):
    started = time.monotonic()
    with pytest.raises(api.ReplyTimeout):
        api.RuntimeSession(lab["silent_endpoint"], timeout=1).open()
    assert time.monotonic() - started < 2.5


# -- pipelining ------------------------------------------------------------

def test_lab_pipelined_replies_come_back_in_order(lab):
    instance = lab["instances"][0]
    paths = [os.path.join(instance["cert_dir"], "preload-%04d.pem" % number) for number in (1, 2)]
    paths.append(instance["default_cert"])
    commands = ["show ssl cert %s" % path for path in paths] + ["show cli level"]
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as session:
        recording = Writes(session)
        replies = session.execute_batch(commands)
        assert recording.writes == 1
        one_by_one = [session.execute(command) for command in commands]
    assert session.commands_sent == 1 + 2 * len(commands)
    assert replies == one_by_one
    assert [parse_cert_detail(reply).path for reply in replies[:3]] == paths
    assert replies[3] == "admin"


def test_lab_pipelined_not_found_in_the_middle(lab):
    instance = lab["instances"][0]
    first = os.path.join(instance["cert_dir"], "preload-0001.pem")
    missing = os.path.join(instance["cert_dir"], "missing.pem")
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as session:
        details = session.show_ssl_certs([first, missing, instance["default_cert"]])
        assert session.cli_level() == "admin"
    assert parse_cert_detail(details[0]).path == first and details[1] is None
    assert parse_cert_detail(details[2]).path == instance["default_cert"]


def test_pipelined_error_in_the_middle_names_its_command():
    # A real HAProxy answers every show on one connection alike; the recorded 2.6.12 reply of a
    # user-level socket stands in for a failure in the middle of a batch.
    doc = CAPTURED
    a, b = doc["paths"]["a"], doc["paths"]["b"]
    detail = exchange(doc, "show_ssl_cert_ec")[1]
    refused = exchange(doc, "user_show_ssl_cert_ec")[1]
    script = Script([exchange(doc, "prompt"), ("show ssl cert " + a, detail), ("show ssl cert " + b, refused),
                     ("show ssl cert " + a, detail), ("show cli level", exchange(doc, "show_cli_level")[1])])
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        recording = Writes(session)
        with pytest.raises(api.PermissionDenied) as info:
            session.show_ssl_certs([a, b, a])
        # Every reply of the batch was read: the session is still in step.
        assert session.cli_level() == "admin"
    script.finish()
    assert recording.counts == [3]
    assert info.value.command == "show ssl cert " + b
    assert "`show ssl cert %s`" % b in str(info.value) and "needs level admin" in str(info.value)


def test_lab_pipelined_batch_larger_than_one_write(lab):
    instance = lab["instances"][0]
    paths = [os.path.join(instance["cert_dir"], "preload-%04d.pem" % (1 + index % 2))
             for index in range(3 * api.PIPELINE_MAX_COMMANDS + 5)]
    with api.RuntimeSession(instance["runtime_unix"], timeout=5) as session:
        by_count = Writes(session)
        details = session.show_ssl_certs(paths)
    # At most 64 commands per write...
    assert by_count.counts == [64, 64, 64, 5]
    assert [parse_cert_detail(detail).path for detail in details] == paths
    with api.RuntimeSession(instance["runtime_unix"], timeout=5, bufsize=2048) as session:
        by_size = Writes(session)
        details = session.show_ssl_certs(paths)
    # ...and at most half of the buffer (here a declared tune.bufsize of 2048).
    assert sum(by_size.counts) == len(paths) and len(by_size.counts) > 4
    assert max(by_size.sizes) <= (2048 - api.BUFSIZE_MARGIN) // 2
    assert [parse_cert_detail(detail).path for detail in details] == paths


def test_lab_master_cli_pipelined(lab):
    instance = lab["instances"][0]
    paths = [os.path.join(instance["cert_dir"], "preload-%04d.pem" % number) for number in (1, 2)] * 40
    with api.RuntimeSession(instance["master_cli"], process="@1", timeout=5) as session:
        details = session.show_ssl_certs(paths)
    assert [parse_cert_detail(detail).path for detail in details] == paths


def test_lab_set_and_commit_in_one_write(lab):
    instance = lab["instances"][0]
    target = os.path.join(instance["cert_dir"], "preload-0001.pem")
    certificate, cert_pem, key_pem = _bundle("pair.lab.test", 0xFA1F)
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as session:
        recording = Writes(session)
        session.replace_ssl_cert(target, cert_pem + key_pem)
        detail = parse_cert_detail(session.show_ssl_cert(target))
        # A refused set: the commit sent with it finds no transaction, and nothing changes.
        with pytest.raises(api.CommandFailed) as info:
            session.replace_ssl_cert(target, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        after = parse_cert_detail(session.show_ssl_cert(target))
        assert parse_cert_list(session.show_ssl_cert_list()).transaction is None
    # set+commit, show, set+commit, show, listing
    assert recording.writes == 5 and recording.counts == [2, 2]
    assert detail.fingerprint == _fingerprint(certificate) == after.fingerprint
    assert info.value.command == "set ssl cert %s" % target and "Can't load the payload" in str(info.value)
    assert "already open" not in str(info.value)


def test_lab_set_commit_and_show_in_one_write(lab):
    instance = lab["instances"][0]
    target = os.path.join(instance["cert_dir"], "preload-0002.pem")
    certificate, cert_pem, key_pem = _bundle("triple.lab.test", 0x7819)
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as session:
        recording = Writes(session)
        shown, raw = session.replace_ssl_cert_and_show(target, cert_pem + key_pem)
        assert recording.counts == [3]
        assert shown and parse_cert_detail(raw).fingerprint == _fingerprint(certificate)
        # A refused set raises as replace_ssl_cert does; nothing is committed, no transaction stays open.
        with pytest.raises(api.CommandFailed):
            session.replace_ssl_cert_and_show(target, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        assert parse_cert_detail(session.show_ssl_cert(target)).fingerprint == _fingerprint(certificate)
        assert parse_cert_list(session.show_ssl_cert_list()).transaction is None
    # When the show does not fit the buffer with set and commit, they go without it: the caller asks.
    second, cert_pem, key_pem = _bundle("triple-small.lab.test", 0x781A)
    payload = cert_pem + key_pem
    pair = api.command_bytes("set ssl cert " + target, payload) + api.command_bytes("commit ssl cert " + target)
    with api.RuntimeSession(instance["runtime_tcp"], timeout=5, bufsize=pair + api.BUFSIZE_MARGIN + 1) as session:
        recording = Writes(session)
        assert session.replace_ssl_cert_and_show(target, payload) == (False, None)
        assert recording.counts == [2]
        assert parse_cert_detail(session.show_ssl_cert(target)).fingerprint == _fingerprint(second)


def test_lab_set_and_commit_in_one_write_sees_the_conflict(lab):
    # Debian's 2.6.12 puts a set on B into the open transaction on A; the commit on B sent with it is refused.
    instance = lab["instances"][0]
    first = os.path.join(instance["cert_dir"], "preload-0001.pem")
    second = os.path.join(instance["cert_dir"], "preload-0002.pem")
    dummy_certificate, cert_pem, key_pem = _bundle("pair-conflict.lab.test", 0xC0F2)
    with api.RuntimeSession(instance["runtime_unix"], timeout=5) as holder:
        holder.set_ssl_cert(first, cert_pem + key_pem)
        try:
            with api.RuntimeSession(instance["runtime_tcp"], timeout=5) as other:
                before = parse_cert_detail(other.show_ssl_cert(second))
                with pytest.raises(api.TransactionConflict) as info:
                    other.replace_ssl_cert(second, cert_pem + key_pem)
                after = parse_cert_detail(other.show_ssl_cert(second))
        finally:
            assert holder.abort_ssl_cert(first) is True
    assert info.value.pending_path == first
    assert after.fingerprint == before.fingerprint


def test_pipelined_connection_lost_names_the_first_unanswered_command():
    doc = CAPTURED
    a = doc["paths"]["a"]
    show_command, show_reply = exchange(doc, "show_ssl_cert_ec")
    script = Script([exchange(doc, "prompt"), (show_command, show_reply), ("show ssl cert " + a, "close")])
    with api.RuntimeSession(script.endpoint, timeout=5) as session:
        with pytest.raises(api.ConnectionClosed) as info:
            session.execute_batch([show_command, "show ssl cert " + a, "show cli level"])
    script.finish()
    assert info.value.command == "show ssl cert " + a
    assert "without answering `show ssl cert %s`" % a in str(info.value)


def test_pipelined_payload_too_large_sends_nothing():
    script = Script([exchange(CAPTURED, "prompt"), ("show ssl cert", exchange(CAPTURED, "show_ssl_cert")[1])])
    with api.RuntimeSession(script.endpoint, timeout=5, bufsize=1024) as session:
        with pytest.raises(api.PayloadTooLarge):
            session.execute_batch(["show cli level", ("set ssl cert /a.pem", "A" * 2000), "commit ssl cert /a.pem"])
        session.show_ssl_cert_list()
    script.finish()
    assert script.received == ["prompt", "show ssl cert"]


class Writes:
    """Counts the writes a real session makes (and their sizes)."""

    def __init__(self, session):
        self.writes = 0
        self.sizes = []
        self.counts = []
        original = session._exchange_batch  # pylint: disable=protected-access
        single = session._exchange  # pylint: disable=protected-access

        def exchange_batch(batch):
            self.writes += 1
            self.sizes.append(sum(len(data) for dummy_command, data in batch))
            self.counts.append(len(batch))
            return original(batch)

        def exchange_one(data, command, first=False):
            self.writes += 1
            return single(data, command, first)

        session._exchange_batch = exchange_batch  # pylint: disable=protected-access
        session._exchange = exchange_one  # pylint: disable=protected-access
