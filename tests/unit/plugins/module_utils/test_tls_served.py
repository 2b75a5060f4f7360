# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the lab's HAProxy cannot be made to do for _tls_served.py.

The integration target ``served_cert_info`` covers handshakes with the lab's
HAProxy (SNI, closed port, silent endpoint, validation). The lab's HAProxy
listens on IPv4 only and never trickles bytes, so these two cases use small
stdlib TLS/TCP servers here, plus the input checks, which need no server.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import ssl
import tempfile
import threading
import time

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.plugins.module_utils import _tls_served
from ansible_collections.ingress.haproxy.plugins.module_utils._tls_served import TargetSpecError, make_target


def _self_signed(common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x80FF)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@contextlib.contextmanager
def _tls_server_on_ipv6_loopback(certificate, key):
    """A TLS server on [::1] that presents ``certificate`` to every client, until the block ends."""
    with tempfile.TemporaryDirectory() as workdir:
        cert_path = os.path.join(workdir, "cert.pem")
        key_path = os.path.join(workdir, "key.pem")
        with open(cert_path, "wb") as handle:
            handle.write(certificate.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as handle:
            handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        listener.bind(("::1", 0))
        listener.listen(8)
        listener.settimeout(0.2)
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                try:
                    connection, dummy_peer = listener.accept()
                except socket.timeout:
                    continue
                try:
                    with context.wrap_socket(connection, server_side=True) as tls:
                        tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            thread.join(5)
            listener.close()


@contextlib.contextmanager
def _trickling_server():
    """Accepts, then sends a TLS record header announcing 16 KiB and one more byte every 0.1 s, for 4 s.

    (Then it hangs up, so that a client without a deadline fails the test instead of hanging it.)
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve():
        connection, dummy_peer = listener.accept()
        with connection:
            connection.sendall(b"\x16\x03\x03\x40\x00")
            for dummy_tick in range(40):
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(b"\x02")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_ipv6_target_in_brackets_is_served_and_labelled():
    certificate, key = _self_signed("v6.test")
    with _tls_server_on_ipv6_loopback(certificate, key) as port:
        target = make_target({"address": "[::1]", "port": port, "servername": "v6.test", "name": "v6"}, index=0)
        handshakes = _tls_served.handshake_all([target], timeout=5)
    entry = _tls_served.served_entry(handshakes[0])
    assert target.address == "::1"
    assert target.label == "v6 (v6.test at [::1]:%d)" % port
    assert entry["error"] is None
    assert entry["fingerprint"] == certificate.fingerprint(hashes.SHA1()).hex().upper()
    # HAProxy's serial form: whole bytes, no DER sign byte.
    assert entry["serial"] == "80FF"
    assert entry["names"] == ["v6.test"]


def test_a_server_that_trickles_bytes_is_cut_at_the_deadline():
    # A timeout per read would never fire here: a byte arrives every 0.1 s.
    with _trickling_server() as port:
        target = make_target({"address": "127.0.0.1", "port": port, "servername": "slow.test"}, index=0)
        started = time.monotonic()
        handshakes = _tls_served.handshake_all([target], timeout=1)
        elapsed = time.monotonic() - started
    assert handshakes[0].der is None
    assert handshakes[0].error.startswith("no TLS handshake within 1s")
    assert 0.95 <= elapsed < 2.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"address": " ", "port": 443}, "targets[3]: address is empty"),
        ({"address": "10.0.0.1:443", "port": 443}, "targets[3]: address '10.0.0.1:443' has a colon but is not an IPv6 address"),
        ({"address": "10.0.0.1", "port": 70000}, "targets[3]: port 70000 is outside 1-65535"),
        ({"address": "10.0.0.1", "port": "https"}, "targets[3]: port 'https' is not a number"),
        ({"address": "10.0.0.1", "port": 443, "expected_fingerprint": "AB:CD"}, "targets[3]: expected_fingerprint 'AB:CD' is not a SHA1"),
        ({"address": "10.0.0.1", "port": 443, "key_type": "ecdsa"}, "targets[3]: key_type 'ecdsa' is not one of any, EC, RSA"),
    ],
)
def test_bad_targets_are_refused_naming_the_entry(spec, message):
    with pytest.raises(TargetSpecError) as caught:
        make_target(spec, index=3)
    assert str(caught.value).startswith(message)


def test_fingerprint_forms_are_normalised():
    target = make_target({"address": "10.0.0.1", "port": 443, "expected_fingerprint": "ab:" * 19 + "ab"}, index=0)
    assert target.expected_fingerprint == "AB" * 20
    assert target.label == "10.0.0.1:443 (no SNI)"


def test_a_key_type_narrows_the_client_to_tls_1_2_and_that_kind_of_key():
    target = make_target({"address": "10.0.0.1", "port": 443, "servername": "www", "key_type": "RSA"}, index=0)
    assert target.key_type == "RSA" and target.label == "www at 10.0.0.1:443, RSA key only"
    assert make_target({"address": "10.0.0.1", "port": 443, "key_type": "any"}, index=0).key_type is None
    for key_type, kind in (("EC", "ECDSA"), ("RSA", "RSA")):
        context = _tls_served.client_context(validate=False, ca_file=None, key_type=key_type)
        assert context.maximum_version == ssl.TLSVersion.TLSv1_2
        tls12 = [cipher for cipher in context.get_ciphers() if cipher["protocol"] == "TLSv1.2"]
        assert tls12 and {cipher["auth"] for cipher in tls12} == {"auth-" + kind.lower()}
    assert _tls_served.client_context(validate=False, ca_file=None).maximum_version != ssl.TLSVersion.TLSv1_2
