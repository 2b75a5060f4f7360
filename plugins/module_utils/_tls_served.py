# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""What TLS servers really present: many handshakes with SNI, in parallel threads.

A handshake is what a client sees, whatever HAProxy holds in memory or on disk.
Each target gets its own connection and its own deadline (connect plus
handshake); one target that is down or silent is an error for that target only.
The leaf each server presents is summarised by ``_pem`` (one place for every
certificate rule), so serial and fingerprint compare directly with
``show ssl cert`` and with the bundles.

No Ansible import: the standard library's ``ssl``, ``socket`` and threads.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import re
import socket
import ssl
import time

from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError

DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENCY = 16
_FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}$")
# A target's key_type: what the client can use of the server's key ("any": whatever the server prefers).
KEY_TYPES = ("any", "EC", "RSA")
_KEY_TYPE_CIPHERS = {"EC": "ECDHE+aECDSA", "RSA": "ECDHE+aRSA"}


class ServedCertError(IngressError):
    """Any failure of this module_utils; the message says what and where."""


class TargetSpecError(ServedCertError):
    """A target or an option is unusable (nothing was contacted)."""


class HandshakeFailed(ServedCertError):
    """One target gave no certificate: no connection, no handshake, or too slow."""


class ConnectFailed(HandshakeFailed):
    """The TCP connection was refused, reset or could not be routed."""


class HandshakeTimeout(HandshakeFailed):
    """Connect plus handshake took longer than the timeout."""


class HandshakeRefused(HandshakeFailed):
    """The TLS handshake itself failed (alert, closed connection, no certificate)."""


class NotTrusted(HandshakeFailed):
    """The chain or the name did not validate; ``der`` holds the leaf all the same, when it could be read."""

    def __init__(self, message: str, der: bytes | None = None):
        super().__init__(message)
        self.der = der


@dataclasses.dataclass(frozen=True)
class Target:
    """One handshake to make: where, with which SNI name, and what is expected there."""

    address: str
    port: int
    servername: str
    expected_fingerprint: str | None = None
    name: str | None = None
    # "EC" or "RSA": the client can use only that kind of server key (see client_context); None: any.
    key_type: str | None = None

    @property
    def hostport(self) -> str:
        if ":" in self.address:
            return "[%s]:%d" % (self.address, self.port)
        return "%s:%d" % (self.address, self.port)

    @property
    def label(self) -> str:
        """How messages name the target: its name (if any), the SNI name and where it was asked."""
        where = "%s at %s" % (self.servername, self.hostport) if self.servername else "%s (no SNI)" % self.hostport
        if self.key_type:
            where += ", %s key only" % self.key_type
        return "%s (%s)" % (self.name, where) if self.name else where


def normalize_fingerprint(value: str, *, where: str) -> str:
    """SHA1 as uppercase hex without separators (``show ssl cert``'s form); colons and lowercase are accepted."""
    text = str(value).strip().replace(":", "").upper()
    if not _FINGERPRINT_RE.match(text):
        raise TargetSpecError(
            "%s: expected_fingerprint %r is not a SHA1 fingerprint (40 hex digits, as show ssl cert prints it)" % (where, value)
        )
    return text


def make_target(spec: dict, *, index: int) -> Target:
    """Check one target as the user wrote it (``address``, ``port``, ``servername``, ``expected_fingerprint``, ``name``)."""
    where = "targets[%d]" % index
    address = str(spec.get("address") or "").strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not address:
        raise TargetSpecError("%s: address is empty" % where)
    if ":" in address:
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise TargetSpecError("%s: address %r has a colon but is not an IPv6 address (give the port in port)" % (where, address))
    try:
        port = int(spec.get("port"))
    except (TypeError, ValueError):
        raise TargetSpecError("%s: port %r is not a number" % (where, spec.get("port")))
    if not 0 < port < 65536:
        raise TargetSpecError("%s: port %d is outside 1-65535" % (where, port))
    servername = str(spec.get("servername") or "").strip()
    expected = spec.get("expected_fingerprint")
    if expected is not None and str(expected).strip() == "":
        expected = None
    if expected is not None:
        expected = normalize_fingerprint(expected, where=where)
    name = spec.get("name")
    key_type = str(spec.get("key_type") or "any").strip()
    if key_type not in KEY_TYPES:
        raise TargetSpecError("%s: key_type %r is not one of %s" % (where, key_type, ", ".join(KEY_TYPES)))
    return Target(address, port, servername, expected, str(name) if name not in (None, "") else None,
                  None if key_type == "any" else key_type)


def client_context(*, validate: bool, ca_file: str | None, key_type: str | None = None) -> ssl.SSLContext:
    """A client context: trusting nothing is checked unless ``validate``; then the chain (against ``ca_file``) and the name.

    With ``key_type`` the client speaks TLS 1.2 with only the cipher suites of
    that server key (ECDHE+aECDSA or ECDHE+aRSA): a server holding an ECDSA and
    an RSA certificate for one name (HAProxy picks by what the client can use)
    must present that one, as an old client that cannot verify ECDSA sees it.
    TLS 1.3 cipher suites say nothing of the key, and Python cannot narrow the
    signature algorithms, hence TLS 1.2.
    """
    if validate:
        try:
            context = ssl.create_default_context(cafile=ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise TargetSpecError("ca_file %s cannot be loaded: %s" % (ca_file, getattr(exc, "strerror", None) or exc))
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if key_type:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(_KEY_TYPE_CIPHERS[key_type])
    return context


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _handshake_until(tls: ssl.SSLSocket, deadline: float, timeout: float) -> None:
    # CPython bounds the whole do_handshake() call by the socket timeout (not each read),
    # so a server that trickles bytes cannot stretch it; what the connect used is taken off.
    left = _remaining(deadline)
    if left <= 0:
        raise HandshakeTimeout("no TLS handshake within %gs (the TCP connect took all of it)" % timeout)
    tls.settimeout(left)
    try:
        tls.do_handshake()
    except socket.timeout:
        raise HandshakeTimeout("no TLS handshake within %gs (the server accepted the connection but did not answer)" % timeout)


def fetch_leaf(target: Target, *, context: ssl.SSLContext, timeout: float) -> bytes:
    """Connect, make the handshake with SNI and return the DER of the leaf the server presented."""
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection((target.address, target.port), timeout=timeout)
    except socket.timeout:
        raise HandshakeTimeout("no TCP connection within %gs" % timeout)
    except OSError as exc:
        raise ConnectFailed("cannot connect: %s" % (exc.strerror or exc))
    # An IP literal is never sent as SNI; with validation it is still the name the certificate must hold.
    server_hostname = target.servername or (target.address if context.check_hostname else None)
    try:
        with context.wrap_socket(raw, server_hostname=server_hostname, do_handshake_on_connect=False) as tls:
            _handshake_until(tls, deadline, timeout)
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as exc:
        raise NotTrusted("certificate not trusted: %s" % (exc.verify_message or exc.reason or exc))
    except ssl.SSLError as exc:
        raise HandshakeRefused("TLS handshake failed: %s" % (exc.reason or exc))
    except socket.timeout:
        raise HandshakeTimeout("no TLS handshake within %gs" % timeout)
    except OSError as exc:
        raise HandshakeRefused("TLS handshake failed: %s" % (exc.strerror or exc))
    finally:
        raw.close()
    if not der:
        raise HandshakeRefused("the server presented no certificate")
    return der


@dataclasses.dataclass
class Handshake:
    """The outcome for one target: the leaf's DER (or None), why not (or None), whether it validated."""

    target: Target
    der: bytes | None
    error: str | None
    verified: bool | None
    seconds: float


def _handshake(target: Target, contexts: dict, validate: bool, timeout: float) -> Handshake:
    validating = contexts[(True, target.key_type)] if validate else None
    plain = contexts[(False, target.key_type)]
    started = time.monotonic()
    verified = None
    try:
        if validating is not None:
            try:
                der = fetch_leaf(target, context=validating, timeout=timeout)
                verified = True
            except NotTrusted as exc:
                # Show what is served all the same: a second handshake that checks nothing.
                verified = False
                try:
                    der = fetch_leaf(target, context=plain, timeout=timeout)
                except HandshakeFailed:
                    der = None
                return Handshake(target, der, str(exc), verified, time.monotonic() - started)
        else:
            der = fetch_leaf(target, context=plain, timeout=timeout)
    except HandshakeFailed as exc:
        return Handshake(target, None, str(exc), verified, time.monotonic() - started)
    return Handshake(target, der, None, verified, time.monotonic() - started)


def handshake_all(
    targets: list[Target],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    validate: bool = False,
    ca_file: str | None = None,
) -> list[Handshake]:
    """One handshake per target, at most ``concurrency`` at a time; the outcomes in the targets' order."""
    if timeout <= 0:
        raise TargetSpecError("timeout must be more than 0 seconds, not %g" % timeout)
    if concurrency < 1:
        raise TargetSpecError("concurrency must be at least 1, not %d" % concurrency)
    contexts = {}
    for key_type in {None} | {target.key_type for target in targets}:
        contexts[(False, key_type)] = client_context(validate=False, ca_file=None, key_type=key_type)
        if validate:
            contexts[(True, key_type)] = client_context(validate=True, ca_file=ca_file, key_type=key_type)
    if not targets:
        return []
    workers = min(concurrency, len(targets))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda target: _handshake(target, contexts, validate, timeout), targets))


def served_entry(handshake: Handshake, *, now=None) -> dict:
    """The result entry of one target: where, the leaf's summary (or nulls), whether it matches, the error."""
    target = handshake.target
    entry = {
        "name": target.name,
        "address": target.address,
        "port": target.port,
        "servername": target.servername,
        "client_key_type": target.key_type or "any",
        "expected_fingerprint": target.expected_fingerprint,
        "serial": None,
        "fingerprint": None,
        "not_before": None,
        "not_after": None,
        "days_left": None,
        "names": [],
        "subject": None,
        "issuer": None,
        "key_type": None,
        "matches": None,
        "verified": handshake.verified,
        "error": handshake.error,
        "seconds": round(handshake.seconds, 3),
    }
    if handshake.der is not None:
        try:
            summary = _pem.summarize_certificate(handshake.der, source="the certificate %s presented" % target.label)
        except _pem.PemError as exc:
            entry["error"] = str(exc) if entry["error"] is None else "%s; %s" % (entry["error"], exc)
        else:
            entry.update(summary.as_dict(now))
            if target.expected_fingerprint is not None:
                entry["matches"] = summary.fingerprint == target.expected_fingerprint
    return entry


def problems(entries: list[dict], targets: list[Target], *, fail_on_error: bool, fail_on_mismatch: bool) -> list[str]:
    """One line per target that fails the call: its error, or what it serves instead of what was expected."""
    lines = []
    for entry, target in zip(entries, targets):
        if entry["error"] is not None and fail_on_error:
            lines.append("%s: %s" % (target.label, entry["error"]))
        elif entry["matches"] is False and fail_on_mismatch:
            lines.append(
                "%s: serves fingerprint %s (serial %s), expected %s"
                % (target.label, entry["fingerprint"], entry["serial"], target.expected_fingerprint)
            )
    return lines
