# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a TLS server really presents: a handshake with SNI, the leaf summarised."""

from __future__ import annotations

import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ._errors import LabError


def haproxy_serial(cert: x509.Certificate) -> str:
    """The serial as HAProxy's ``show ssl cert`` prints it.

    HAProxy dumps the bytes of the ASN.1 INTEGER (big-endian magnitude, as
    OpenSSL stores it) in uppercase hex: whole bytes, so an odd number of
    digits gets one leading zero, and nothing else is padded.
    """
    digits = format(cert.serial_number, 'X')
    return digits if len(digits) % 2 == 0 else '0' + digits


def summarize(cert: x509.Certificate) -> dict:
    """serial, fingerprint (SHA1, uppercase hex), validity, subject, issuer and DNS names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sorted(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = []
    return {
        'serial': haproxy_serial(cert),
        'fingerprint': cert.fingerprint(hashes.SHA1()).hex().upper(),  # nosec - HAProxy's own fingerprint
        'not_before': cert.not_valid_before_utc.strftime('%Y-%m-%dT%H:%M:%SZ'),
        'not_after': cert.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ'),
        'subject': cert.subject.rfc4514_string(),
        'issuer': cert.issuer.rfc4514_string(),
        'names': names,
    }


def served(address: str, port: int, servername: str, ca_file: str | None = None,
           timeout: float = 5.0) -> dict:
    """Handshake with ``address:port`` sending SNI ``servername``; summarise the leaf it presents.

    With ``ca_file`` the chain and the name are verified as a client would
    (failure raises LabError); without it any certificate is accepted and
    ``verified`` is false.
    """
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((address, int(port)), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=servername) as tls:
                der = tls.getpeercert(binary_form=True)
                version = tls.version()
    except (OSError, ssl.SSLError) as exc:
        raise LabError(f'TLS handshake with {address}:{port} (SNI {servername}) failed: {exc}') from exc
    if not der:
        raise LabError(f'{address}:{port} (SNI {servername}) presented no certificate')
    result = summarize(x509.load_der_x509_certificate(der))
    result.update(address=address, port=int(port), servername=servername,
                  verified=bool(ca_file), tls_version=version)
    return result


def client_request(address: str, port: int, cert_file: str, key_file: str, timeout: float = 5.0) -> dict:
    """An HTTPS GET presenting a client certificate: was it accepted by an mTLS frontend?

    ``accepted`` is true when HAProxy answered 200 (the lab's mTLS frontend
    says ``client ok``); a handshake alert or a connection closed before any
    answer (TLS 1.3 reports a rejected client certificate only on the first
    read) is ``accepted: false`` with the ``error``. The server certificate is
    not verified: the subject is the client side.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert_file, key_file)
    result = {'address': address, 'port': int(port), 'cert': cert_file}
    try:
        with socket.create_connection((address, int(port)), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname='mtls.lab.test') as tls:
                tls.sendall(b'GET / HTTP/1.1\r\nHost: mtls.lab.test\r\nConnection: close\r\n\r\n')
                answer = b''
                while True:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
    except (OSError, ssl.SSLError) as exc:
        result.update(accepted=False, error=str(exc) or type(exc).__name__)
        return result
    status_line = answer.split(b'\r\n', 1)[0].decode('latin-1')
    if not status_line:
        result.update(accepted=False, error='connection closed without an answer')
        return result
    result.update(accepted=status_line.split(' ')[1:2] == ['200'], status_line=status_line)
    return result
