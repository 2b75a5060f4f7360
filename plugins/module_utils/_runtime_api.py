# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""A client for HAProxy's Runtime API (the stats socket / master CLI).

One ``RuntimeSession`` is one connection in interactive ``prompt`` mode: many
commands, every reply read up to the prompt, a deadline on the connect and on
every reply. Commands that change certificates check HAProxy's reply against
its own success texts; anything else raises a ``RuntimeApiError`` subclass
carrying the endpoint, the command (never its payload) and the reply.

``execute_batch`` pipelines: several commands in one write, their replies
read in order (HAProxy answers each up to the prompt before it reads the
next command). ``show_ssl_certs``, ``replace_ssl_cert`` (set + commit in
one write), ``replace_ssl_cert_and_show`` (and the verifying show),
``open_transaction_and_certs`` (the transaction probe with the shows) and
``admin_process_identity`` (``show cli level`` + ``show info``) build on it
and check every reply as the one-command methods do.

No Ansible import and no helper process: plain sockets only.
"""

from __future__ import annotations

import re
import socket
import time

from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError

DEFAULT_TIMEOUT = 10.0
# HAProxy's default tune.bufsize. A command (line + payload) must stay below it:
# 2.6.12 closes the connection without a reply when it is larger, and crashes
# when it is exactly this size (both seen on Debian's 2.6.12-1+deb12u4).
DEFAULT_BUFSIZE = 16384
# Kept free below tune.bufsize, in case a build reserves a little of the buffer.
BUFSIZE_MARGIN = 64
# "Operations on certificates are currently locked!" lasts as long as another
# client's commit; retried for this long (capped by the session timeout).
LOCK_RETRY_SECONDS = 5.0
# Pipelining: at most this many commands, and at most half of tune.bufsize, go out in one write;
# their replies are read before the next write. HAProxy reads its request buffer command by
# command in prompt mode and answers each up to the prompt, in order (2.6.12 took 1,000 `show ssl
# cert PATH` lines, 69 kB, in one write); the bounds keep a client from ever having far more in
# flight than one buffer and its replies.
PIPELINE_MAX_COMMANDS = 64

_PROCESS_RE = re.compile(r"^@(?:!?[0-9]+|master)$")
_HOST_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_CONTINUATION_RE = re.compile(r"^(?:\+ )+")
_LOCKED_TEXT = "Operations on certificates are currently locked!"
# A name no certificate can have: `abort ssl cert` on it only reports the open transaction.
TRANSACTION_PROBE = "/dev/null/ingress.haproxy-transaction-probe"
_PROBE_COMMAND = "abort ssl cert %s" % TRANSACTION_PROBE
_SET_REPLY_RE = re.compile(r"^Transaction (?:created|updated) for certificate (?P<path>.+)!$", re.MULTILINE)
_OTHER_TRANSACTION_RE = re.compile(r"The ongoing transaction is about '(?P<path>[^']*)'")
# What HAProxy's CLI parser splits or reinterprets in a word: ';' ends a command, whitespace splits
# arguments, a backslash escapes and quotes group (2.x: `show ssl cert a;help` runs `help`).
_UNSAFE_NAME_CHARS = frozenset(";\\'\"`")
# The same set as one search (re's \s is str.isspace's whitespace): every word of every command passes it.
_UNSAFE_NAME_RE = re.compile("[;\\\\'\"`\\s\x00-\x1f\x7f]")


class RuntimeApiError(IngressError):
    """Any failure talking to HAProxy's Runtime API.

    ``endpoint`` is the endpoint as the user wrote it, ``command`` the command
    line (never a payload), ``reply`` what HAProxy answered (may be empty).
    """

    def __init__(self, message, endpoint=None, command=None, reply=None):
        super().__init__(message)
        self.endpoint = endpoint
        self.command = command
        self.reply = reply


class EndpointError(RuntimeApiError):
    """The endpoint or process prefix is not something this client can connect to."""


class ConnectError(RuntimeApiError):
    """Connecting failed (refused, no such socket, unreachable)."""


class ReplyTimeout(RuntimeApiError):
    """No complete reply (or no connection) within the timeout."""


class ConnectionClosed(RuntimeApiError):
    """HAProxy closed the connection before the prompt came back."""


class PayloadTooLarge(RuntimeApiError):
    """A command would not fit HAProxy's tune.bufsize; nothing was sent."""


class CommandFailed(RuntimeApiError):
    """HAProxy answered a command with something other than its success text."""


class PermissionDenied(CommandFailed):
    """The socket's level is below ``admin``."""


class NotFound(CommandFailed):
    """The certificate or crt-list named in a command is not loaded."""


class TransactionConflict(CommandFailed):
    """A certificate transaction on another certificate (``pending_path``) is open.

    ``polluted``: HAProxy did not refuse the ``set`` but put its payload into
    that other transaction (Debian's 2.6.12 answers "Transaction updated for
    certificate OTHER"), which now holds content meant for another name.
    """

    def __init__(self, message, pending_path, endpoint=None, command=None, reply=None, polluted=False):
        super().__init__(message, endpoint=endpoint, command=command, reply=reply)
        self.pending_path = pending_path
        self.polluted = polluted


class NoTransaction(CommandFailed):
    """``abort``/``commit`` found no open transaction."""


class UnsafeName(RuntimeApiError):
    """A name that HAProxy's CLI parser would split or reinterpret; nothing was sent."""


class ProcessGone(ConnectionClosed):
    """The connection was lost and a new one is refused: the HAProxy process stopped or was killed."""


class CertificatesLocked(CommandFailed):
    """HAProxy kept answering "Operations on certificates are currently locked!" past the retries."""


def check_name(value, what="name"):
    """Refuse a word HAProxy's CLI would split or reinterpret (``;``, whitespace, control characters, backslash,
    quotes); return it unchanged when safe. Raises ``UnsafeName`` naming ``what`` and the character."""
    if not isinstance(value, str) or not value:
        raise UnsafeName("%s %r must be a non-empty word" % (what, value))
    if _UNSAFE_NAME_RE.search(value) is None:
        return value
    for char in value:
        if char in _UNSAFE_NAME_CHARS or char.isspace() or ord(char) < 32 or ord(char) == 127:
            raise UnsafeName(
                "%s %r holds %r, which HAProxy's command line parser would split or reinterpret "
                "(refused: ';', whitespace, control characters, backslash, quotes); nothing was sent"
                % (what, value, char)
            )
    return value


class Endpoint:
    """Where a Runtime API listens: a unix socket path or a TCP host and port."""

    def __init__(self, text, family, address, port=None):
        self.text = text
        self.family = family
        self.address = address
        self.port = port

    @property
    def is_unix(self):
        return self.family == "unix"

    def __str__(self):
        return self.text

    def __repr__(self):
        return "Endpoint(%r)" % self.text

    def __eq__(self, other):
        if not isinstance(other, Endpoint):
            return NotImplemented
        return (self.family, self.address, self.port) == (other.family, other.address, other.port)

    def __hash__(self):
        return hash((self.family, self.address, self.port))


_ENDPOINT_FORMS = "/path/to/socket, unix:/path, tcp:HOST:PORT, HOST:PORT or [IPv6]:PORT"


def _parse_port(text, endpoint):
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise EndpointError(
            "endpoint %r: port %r is not a number from 1 to 65535" % (endpoint, text), endpoint=endpoint
        )
    return int(text)


def parse_endpoint(text):
    """Parse an endpoint string; raise ``EndpointError`` naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise EndpointError("the endpoint is empty; expected %s" % _ENDPOINT_FORMS, endpoint=text)
    if text != text.strip() or any(char in text for char in "\r\n\t\0"):
        raise EndpointError("endpoint %r holds whitespace or control characters" % text, endpoint=text)
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise EndpointError("endpoint %r names no socket path after 'unix:'" % text, endpoint=text)
        return Endpoint(text, "unix", path)
    if text.startswith("/"):
        return Endpoint(text, "unix", text)
    rest = text[len("tcp:"):] if text.startswith("tcp:") else text
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1:close + 2] != ":":
            raise EndpointError(
                "endpoint %r: an IPv6 endpoint is written [ADDRESS]:PORT" % text, endpoint=text
            )
        host = rest[1:close]
        try:
            socket.inet_pton(socket.AF_INET6, host)
        except (OSError, ValueError):
            raise EndpointError("endpoint %r: %r is not an IPv6 address" % (text, host), endpoint=text)
        return Endpoint(text, "tcp", host, _parse_port(rest[close + 2:], text))
    host, separator, port = rest.rpartition(":")
    if not separator or not host:
        raise EndpointError(
            "endpoint %r is neither a socket path nor HOST:PORT; expected %s" % (text, _ENDPOINT_FORMS),
            endpoint=text,
        )
    if ":" in host:
        raise EndpointError(
            "endpoint %r: write an IPv6 address in brackets, as [%s]:%s" % (text, host, port), endpoint=text
        )
    if not _HOST_RE.match(host):
        raise EndpointError("endpoint %r: %r is not a host name or address" % (text, host), endpoint=text)
    return Endpoint(text, "tcp", host, _parse_port(port, text))


def check_process(process, endpoint=None):
    """Validate a master CLI process prefix (``@1``, ``@!1234``, ``@master``)."""
    if process is None or process == "":
        return None
    if not isinstance(process, str) or not _PROCESS_RE.match(process):
        raise EndpointError(
            "process %r is not a master CLI prefix; expected @N (Nth worker), @!PID or @master" % (process,),
            endpoint=endpoint,
        )
    return process


def payload_lines(text):
    """The payload as HAProxy must receive it: LF endings, no blank line (a blank line ends a payload)."""
    lines = [line.rstrip("\r") for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(line for line in lines if line.strip()) + "\n"


def encode_command(command, payload=None, process=None):
    """The bytes sent for one command, its payload and the empty line that ends the payload."""
    line = "%s %s" % (process, command) if process else command
    if payload is None:
        return (line + "\n").encode("utf-8")
    return ("%s <<\n%s\n" % (line, payload_lines(payload))).encode("utf-8")


def command_bytes(command, payload=None, process=None):
    """How many bytes of HAProxy's buffer the command takes."""
    return len(encode_command(command, payload, process))


class RuntimeSession:
    """One connection to one HAProxy process, in ``prompt`` mode.

    Use as a context manager. ``process`` prefixes every command (master CLI).
    ``bufsize`` is the target's tune.bufsize; payload commands that would not
    fit are refused (``PayloadTooLarge``) before anything is sent.
    """

    def __init__(self, endpoint, process=None, timeout=DEFAULT_TIMEOUT, bufsize=DEFAULT_BUFSIZE):
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint)
        self.process = check_process(process, endpoint=str(self.endpoint))
        if not timeout or timeout <= 0:
            raise EndpointError("timeout must be a positive number of seconds, not %r" % (timeout,),
                                endpoint=str(self.endpoint))
        self.timeout = float(timeout)
        self.bufsize = int(bufsize)
        self.commands_sent = 0
        self._sock = None
        self._prompt = None

    # -- connection -------------------------------------------------------

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    @property
    def max_command_bytes(self):
        """Largest command (line + payload + terminating blank line) HAProxy accepts in one buffer."""
        return self.bufsize - BUFSIZE_MARGIN

    def _error(self, cls, message, command=None, reply=None, **kwargs):
        return cls(message, endpoint=str(self.endpoint), command=command, reply=reply, **kwargs)

    def open(self):
        endpoint = self.endpoint
        try:
            if endpoint.is_unix:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout)
                    sock.connect(endpoint.address)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((endpoint.address, endpoint.port), timeout=self.timeout)
        except socket.timeout:
            raise self._error(ReplyTimeout, "no connection to the Runtime API at %s within %gs"
                              % (endpoint, self.timeout))
        except (OSError, UnicodeError) as exc:
            raise self._error(ConnectError, "cannot connect to the Runtime API at %s: %s"
                              % (endpoint, getattr(exc, "strerror", None) or exc))
        self._sock = sock
        # The reply to "prompt" is the prompt itself: "\n> " on a worker, "master> " on the master CLI.
        raw = self._exchange(b"prompt\n", "prompt", first=True)
        self._prompt = raw.lstrip(b"\n")
        is_master = self._prompt.startswith(b"master")
        if is_master and not self.process:
            self.close()
            raise self._error(
                EndpointError,
                "%s is a master CLI: set process (@1 for the first worker, @!PID for one process)" % endpoint,
                command="prompt",
            )
        if self.process and not is_master:
            self.close()
            raise self._error(
                EndpointError,
                "%s is a worker's own Runtime API, not a master CLI: leave process (%s) unset"
                % (endpoint, self.process),
                command="prompt",
            )

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    # -- raw exchange -----------------------------------------------------

    def _complete(self, received, first):
        if first:
            stripped = received.lstrip(b"\n")
            return stripped.endswith(b"> ") and b"\n" not in stripped
        return received.endswith(b"\n" + self._prompt)

    def _exchange(self, data, command, first=False):
        if self._sock is None:
            raise self._error(ConnectionClosed, "the connection to %s is closed" % self.endpoint, command=command)
        deadline = time.monotonic() + self.timeout
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(data)
            self.commands_sent += 1
            received = b""
            while not self._complete(received, first):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout()
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
                if not chunk:
                    self.close()
                    text = _CONTINUATION_RE.sub("", received.decode("utf-8", "replace")).strip()
                    if text:
                        raise self._error(
                            ConnectionClosed,
                            "HAProxy at %s closed the connection after `%s`: %s" % (self.endpoint, command, text),
                            command=command, reply=text,
                        )
                    raise self._error(
                        ConnectionClosed,
                        "HAProxy at %s closed the connection without answering `%s`" % (self.endpoint, command),
                        command=command, reply="",
                    )
                received += chunk
        except socket.timeout:
            self.close()
            raise self._error(ReplyTimeout, "no complete reply from %s to `%s` within %gs"
                              % (self.endpoint, command, self.timeout), command=command)
        except OSError as exc:
            self.close()
            raise self._error(ConnectionClosed, "connection to %s failed during `%s`: %s"
                              % (self.endpoint, command, exc.strerror or exc), command=command)
        return received

    def _reply_text(self, raw):
        body = raw[:-len(self._prompt)] if raw.endswith(self._prompt) else raw
        text = body.decode("utf-8", "replace")
        # Each payload line earns a "+ " continuation prompt before the answer.
        text = _CONTINUATION_RE.sub("", text)
        return text.rstrip("\n")

    def execute(self, command, payload=None):
        """Send one command (and its payload) in one write; return the reply without prompt.

        ``command`` is one line. A ``payload`` is sent after ``<<`` with blank
        lines removed and ends with one empty line. Nothing is checked here.
        """
        data = self._encode_checked(command, payload)
        try:
            raw = self._exchange(data, command)
        except (ConnectionClosed, ReplyTimeout) as exc:
            if payload is None or exc.reply:
                raise
            raise self._explain_lost(exc, len(data))
        return self._reply_text(raw)

    def _reconnect_refused(self):
        """True when a new connection to the endpoint is refused: the process is gone, not just this connection."""
        probe = RuntimeSession(self.endpoint, process=self.process, timeout=min(self.timeout, 1.0),
                               bufsize=self.bufsize)
        try:
            probe.open()
        except ConnectError:
            return True
        except RuntimeApiError:
            # Accepted but silent (a worker spinning on an oversized command, say): not proof it is gone.
            return False
        probe.close()
        return False

    def _explain_lost(self, exc, size):
        """Why a payload command got no reply: the process went away, or (likely) it did not fit tune.bufsize."""
        if isinstance(exc, ConnectionClosed) and self._reconnect_refused():
            return self._error(
                ProcessGone,
                "%s, and a new connection is refused: the HAProxy process at %s stopped or was killed"
                % (exc.message, self.endpoint),
                command=exc.command, reply="",
            )
        # HAProxy up to 3.2 hangs up on a command larger than its buffer; 3.3+ gives no reply at all (the
        # worker spins). Either way the likely cause is a tune.bufsize smaller than the one this client was told.
        return self._error(
            type(exc),
            "%s; the command was %d bytes, and HAProxy %s a command larger than its tune.bufsize: if that is "
            "smaller than the %d assumed here, give the real value as tune_bufsize"
            % (exc.message, size,
               "hangs up like this on" if isinstance(exc, ConnectionClosed) else "(3.3 and later) never answers",
               self.bufsize),
            command=exc.command, reply="",
        )

    def _encode_checked(self, command, payload):
        if "\n" in command or "\r" in command:
            raise self._error(CommandFailed, "a command is one line: %r" % command.splitlines()[0], command=command)
        # The one gate every command passes: no word HAProxy's parser would split or reinterpret.
        for word in command.split(" "):
            try:
                check_name(word, "a word of the command")
            except UnsafeName as exc:
                raise self._error(UnsafeName, "`%s` to %s: %s" % (command, self.endpoint, exc), command=command)
        data = encode_command(command, payload, self.process)
        if payload is not None and len(data) > self.max_command_bytes:
            raise self._error(
                PayloadTooLarge,
                "`%s` with its payload is %d bytes, more than HAProxy's buffer takes (tune.bufsize %d, at most "
                "%d bytes per command); nothing was sent"
                % (command, len(data), self.bufsize, self.max_command_bytes),
                command=command,
            )
        return data

    def _exchange_batch(self, batch):
        """One write for every command of ``batch`` ([(command, bytes)]); their raw replies, in order."""
        first_command = batch[0][0]
        if self._sock is None:
            raise self._error(ConnectionClosed, "the connection to %s is closed" % self.endpoint,
                              command=first_command)
        separator = b"\n" + self._prompt
        deadline = time.monotonic() + self.timeout
        replies = []
        received = bytearray()
        start = 0
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(b"".join(data for dummy_command, data in batch))
            self.commands_sent += len(batch)
            while True:
                while len(replies) < len(batch):
                    end = received.find(separator, start)
                    if end < 0:
                        break
                    replies.append(bytes(received[start:end + len(separator)]))
                    start = end + len(separator)
                if len(replies) == len(batch):
                    return replies
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout()
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
                if not chunk:
                    self.close()
                    command = batch[len(replies)][0]
                    text = _CONTINUATION_RE.sub("", bytes(received[start:]).decode("utf-8", "replace")).strip()
                    raise self._error(
                        ConnectionClosed,
                        "HAProxy at %s closed the connection %s `%s`%s" % (
                            self.endpoint, "after" if text else "without answering", command,
                            ": " + text if text else ""),
                        command=command, reply=text,
                    )
                received += chunk
        except socket.timeout:
            self.close()
            command = batch[len(replies)][0]
            raise self._error(ReplyTimeout, "no complete reply from %s to `%s` within %gs"
                              % (self.endpoint, command, self.timeout), command=command)
        except OSError as exc:
            self.close()
            command = batch[len(replies)][0]
            raise self._error(ConnectionClosed, "connection to %s failed during `%s`: %s"
                              % (self.endpoint, command, exc.strerror or exc), command=command)

    def execute_batch(self, commands, max_bytes=None):
        """Pipeline several commands; return their replies (without prompt), in order. Nothing is checked here.

        ``commands`` are command lines or ``(command, payload)`` pairs. They go
        out in as few writes as the bounds allow (``PIPELINE_MAX_COMMANDS``
        commands and ``max_bytes``, by default half of tune.bufsize, per write;
        a single larger payload command goes alone); each write's replies are
        read before the next write. Every command is checked for size before
        anything is sent. A connection lost or a reply missing names the first
        command left without its reply.
        """
        encoded = []
        with_payload = {}
        for item in commands:
            command, payload = (item, None) if isinstance(item, str) else item
            encoded.append((command, self._encode_checked(command, payload)))
            if payload is not None:
                with_payload[command] = len(encoded[-1][1])
        limit = max_bytes if max_bytes is not None else self.max_command_bytes // 2
        replies = []
        start = 0
        while start < len(encoded):
            end, size = start, 0
            while end < len(encoded) and end - start < PIPELINE_MAX_COMMANDS and (
                    end == start or size + len(encoded[end][1]) <= limit):
                size += len(encoded[end][1])
                end += 1
            try:
                replies.extend(self._reply_text(raw) for raw in self._exchange_batch(encoded[start:end]))
            except (ConnectionClosed, ReplyTimeout) as exc:
                if exc.command not in with_payload or exc.reply:
                    raise
                raise self._explain_lost(exc, with_payload[exc.command])
            start = end
        return replies

    # -- checked commands ---------------------------------------------------

    def _fail(self, command, reply, what):
        if _LOCKED_TEXT in reply:
            raise self._error(
                CertificatesLocked,
                "HAProxy at %s still answers `%s` with %r after %gs of retries: another client's commit may be "
                "running long; if this lasts, HAProxy's certificate lock is stuck (seen on 3.4 after two "
                "concurrent writers) and only a restart of the process clears it"
                % (self.endpoint, command, _LOCKED_TEXT, min(LOCK_RETRY_SECONDS, self.timeout)),
                command=command, reply=reply,
            )
        if reply.strip() == "Permission denied":
            raise self._error(
                PermissionDenied,
                "the Runtime API socket at %s needs level admin: HAProxy answered 'Permission denied' to `%s`"
                % (self.endpoint, command), command=command, reply=reply,
            )
        other = _OTHER_TRANSACTION_RE.search(reply)
        if other:
            raise self._error(
                TransactionConflict,
                "a certificate transaction on %s is open on %s; HAProxy refused `%s`: %s"
                % (other.group("path"), self.endpoint, command, _one_line(reply)),
                pending_path=other.group("path"), command=command, reply=reply,
            )
        raise self._error(CommandFailed, "HAProxy at %s refused `%s` (%s): %s"
                          % (self.endpoint, command, what, _one_line(reply)), command=command, reply=reply)

    def _run_locked(self, command, payload=None):
        """Run a certificate command, retrying while another client holds the certificate lock."""
        deadline = time.monotonic() + min(LOCK_RETRY_SECONDS, self.timeout)
        delay = 0.05
        while True:
            reply = self.execute(command, payload)
            if _LOCKED_TEXT not in reply or time.monotonic() + delay > deadline:
                return reply
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def show_info(self):
        """``show info`` as a dict of field name to text."""
        return self._info_fields("show info", self.execute("show info"))

    def _info_fields(self, command, reply):
        fields = {}
        for line in reply.splitlines():
            name, separator, value = line.partition(": ")
            if separator:
                fields[name.strip()] = value.strip()
        if "Pid" not in fields:
            return self._fail(command, reply, "expected the process information (Pid: ...)")
        return fields

    @staticmethod
    def _identity_of(fields):
        return "%s/%s/%s" % (fields.get("node", ""), fields["Pid"], fields.get("Start_time_sec", "-"))

    def process_identity(self):
        """Which HAProxy process answers: ``NODE/PID/START`` from ``show info``.

        The same for every endpoint that reaches this process (its unix and TCP
        sockets, the master CLI with ``@1``, IPv4 and IPv6), different after a
        restart. ``Start_time_sec`` (2.6 and later) tells a new process with a
        reused pid apart; without it the identity is node and pid.
        """
        return self._identity_of(self.show_info())

    def admin_process_identity(self):
        """``require_admin`` then ``process_identity``, in one round trip.

        A real run needs both before it takes the process lock: ``show cli
        level`` and ``show info`` go out pipelined, and the level is checked
        first, as ``require_admin`` checks it.
        """
        level_reply, info_reply = self.execute_batch(["show cli level", "show info"])
        self._check_admin(level_reply.strip())
        return self._identity_of(self._info_fields("show info", info_reply))

    def cli_level(self):
        """``admin``, ``operator`` or ``user``; None when the HAProxy is too old to say."""
        return self._level_of(self.execute("show cli level").strip())

    @staticmethod
    def _level_of(text):
        return text if text in ("admin", "operator", "user") else None

    def require_admin(self):
        self._check_admin(self.execute("show cli level").strip())

    def _check_admin(self, text):
        level = self._level_of(text)
        if level is not None and level != "admin":
            raise self._error(
                PermissionDenied,
                "the Runtime API socket at %s needs level admin; it has level %s" % (self.endpoint, level),
                command="show cli level", reply=level,
            )

    def _refuse_below_operator(self, command, reply):
        # What `show ssl cert` gets on a socket below level operator.
        if reply.strip() == "Can't allocate memory!":
            raise self._error(
                PermissionDenied,
                "the Runtime API socket at %s needs level admin: HAProxy answered \"Can't allocate memory!\" to `%s`"
                % (self.endpoint, command), command=command, reply=reply,
            )

    def show_ssl_cert_list(self):
        """The raw ``show ssl cert`` listing (``# transaction`` head, ``# filename`` list)."""
        command = "show ssl cert"
        reply = self._run_locked(command)
        if reply.startswith("#") or reply == "":
            return reply
        self._refuse_below_operator(command, reply)
        return self._fail(command, reply, "expected a certificate listing")

    def open_transaction(self):
        """The path of the open certificate transaction, or None, without listing every certificate.

        ``abort ssl cert`` on a name no certificate can have (a path under
        /dev/null) aborts nothing and names the open transaction on 2.6 to 3.4
        ("The ongoing transaction is about 'PATH' ..." or "No ongoing
        transaction!"): a few bytes where ``show ssl cert`` prints every loaded
        certificate (10,000 lines on a large instance). Below admin level
        HAProxy refuses ``abort``: then the listing tells.
        """
        return self._transaction_from_probe(self.execute(_PROBE_COMMAND))

    def _transaction_from_probe(self, reply):
        if _LOCKED_TEXT in reply:
            reply = self._run_locked(_PROBE_COMMAND)
        other = _OTHER_TRANSACTION_RE.search(reply)
        if other:
            return other.group("path")
        if reply.strip() == "No ongoing transaction!":
            return None
        if reply.strip() != "Permission denied":
            self._fail(_PROBE_COMMAND, reply, "expected 'No ongoing transaction!' or the open transaction's name")
        text = self.show_ssl_cert_list()
        for line in text.splitlines():
            if line.startswith("*"):
                return line[1:].rstrip()
            if line.startswith("# filename"):
                break
        return None

    def open_transaction_and_certs(self, paths):
        """``(open_transaction(), show_ssl_certs(paths))``, the probe pipelined with the shows.

        One round trip fewer than asking one after the other: the probe aborts
        nothing, so its place in the batch changes no reply. Each reply is
        checked as the two methods check it; an error names its own command.
        """
        paths = list(paths)
        commands = ["show ssl cert %s" % path for path in paths]
        replies = self.execute_batch([_PROBE_COMMAND] + commands)
        transaction = self._transaction_from_probe(replies[0])
        return transaction, self._checked_details(paths, commands, replies[1:])

    def _checked_detail(self, path, command, reply):
        if reply.startswith("Filename:"):
            return reply
        if reply.startswith("Can't display the certificate"):
            raise self._error(NotFound, "%s is not loaded in HAProxy at %s" % (path.lstrip("*"), self.endpoint),
                              command=command, reply=reply)
        self._refuse_below_operator(command, reply)
        return self._fail(command, reply, "expected the certificate's details")

    def show_ssl_cert(self, path):
        """The raw detail of one loaded certificate (``*PATH``: the open transaction); NotFound if unknown."""
        command = "show ssl cert %s" % path
        return self._checked_detail(path, command, self._run_locked(command))

    def show_ssl_certs(self, paths):
        """``show ssl cert PATH`` for every path, pipelined; the raw details in order, None where not loaded.

        Each reply is checked as ``show_ssl_cert`` checks it; any other failure
        raises naming its own command. A reply that found the certificates
        locked is asked again on its own (with the usual retries).
        """
        paths = list(paths)
        commands = ["show ssl cert %s" % path for path in paths]
        return self._checked_details(paths, commands, self.execute_batch(commands))

    def _checked_details(self, paths, commands, replies):
        details = []
        for path, command, reply in zip(paths, commands, replies):
            if _LOCKED_TEXT in reply:
                reply = self._run_locked(command)
            try:
                details.append(self._checked_detail(path, command, reply))
            except NotFound:
                details.append(None)
        return details

    def set_ssl_cert(self, path, payload):
        """Open or update the transaction for ``path``; return the path HAProxy says it updated.

        Raises ``TransactionConflict`` when the reply names another certificate
        (Debian's 2.6.12 answers a ``set`` on B while A is open with
        "Transaction updated for certificate A!" and overwrites A's content).
        ``path`` may end in ``.key`` to send the private key alone.
        """
        command = "set ssl cert %s" % path
        return self._checked_set(path, command, self._run_locked(command, payload))

    def _checked_set(self, path, command, reply):
        match = _SET_REPLY_RE.search(reply)
        if match:
            named = match.group("path")
            expected = path[:-len(".key")] if path.endswith(".key") else path
            if named not in (path, expected):
                raise self._error(
                    TransactionConflict,
                    "a certificate transaction on %s is open on %s: HAProxy answered `%s` with %r and put this "
                    "payload into that transaction" % (named, self.endpoint, command, _one_line(reply)),
                    pending_path=named, command=command, reply=reply, polluted=True,
                )
            return named
        return self._fail(command, reply, "expected 'Transaction created/updated for certificate %s!'" % path)

    def commit_ssl_cert(self, path):
        command = "commit ssl cert %s" % path
        return self._checked_commit(path, command, self._run_locked(command))

    @staticmethod
    def _committed(reply):
        lines = reply.strip().splitlines()
        return bool(lines) and lines[0].startswith("Committing") and lines[-1] == "Success!"

    def replace_ssl_cert(self, path, payload):
        """``set ssl cert PATH`` with its payload and ``commit ssl cert PATH``, pipelined in one write.

        One round trip instead of two. Both replies are checked as
        ``set_ssl_cert`` and ``commit_ssl_cert`` check them, the set's first:
        a set refused, or answered for another certificate (TransactionConflict),
        raises whatever the commit answered. HAProxy refuses a commit on a
        certificate other than the open transaction's, and one without a
        transaction, so a failed set leaves nothing committed, unless a
        transaction on PATH itself was already open (the caller pipelines
        only when the listing showed none): a commit that succeeded anyway
        is named in the error. When the certificate lock was held, the
        commands are sent again one by one with the usual retries. When both
        do not fit one buffer, they go in two writes.
        """
        return self._replace(path, payload, show=False)[0]

    def replace_ssl_cert_and_show(self, path, payload):
        """``replace_ssl_cert`` with ``show ssl cert PATH`` in the same write: what HAProxy holds after the commit.

        Returns ``(shown, detail)``: with ``shown`` true, ``detail`` is
        ``show_ssl_cert``'s raw text, or None when HAProxy no longer holds
        PATH. ``shown`` is false when the show could not come back with the
        commit (the three commands do not fit one buffer, the certificates were
        locked, or the show was refused): the caller asks itself. HAProxy
        answers pipelined commands in order, each one finished before the next
        is read, so the show sees the commit done.
        """
        return self._replace(path, payload, show=True)[1]

    def _replace(self, path, payload, show):
        set_command = "set ssl cert %s" % path
        commit_command = "commit ssl cert %s" % path
        show_command = "show ssl cert %s" % path
        not_shown = (False, None)
        size = command_bytes(set_command, payload, self.process) + command_bytes(commit_command, None, self.process)
        if size > self.max_command_bytes:
            self.set_ssl_cert(path, payload)
            return self.commit_ssl_cert(path), not_shown
        commands = [(set_command, payload), commit_command]
        if show and size + command_bytes(show_command, None, self.process) <= self.max_command_bytes:
            commands.append(show_command)
        replies = self.execute_batch(commands, max_bytes=self.max_command_bytes)
        set_reply, commit_reply = replies[0], replies[1]
        if _LOCKED_TEXT in set_reply:
            if self._committed(commit_reply):
                return self._fail(commit_command, commit_reply,
                                  "the certificates were locked for our set, yet a transaction already open on %s "
                                  "was committed" % path)
            self.set_ssl_cert(path, payload)
            return self.commit_ssl_cert(path), not_shown
        try:
            self._checked_set(path, set_command, set_reply)
        except CommandFailed as exc:
            if self._committed(commit_reply):
                exc.message += ("; the commit sent with it committed a transaction on %s that was already open "
                                "(not our payload)" % path)
            raise
        if _LOCKED_TEXT in commit_reply:
            return self.commit_ssl_cert(path), not_shown
        committed = self._checked_commit(path, commit_command, commit_reply)
        if len(replies) < 3 or _LOCKED_TEXT in replies[2]:
            return committed, not_shown
        try:
            return committed, (True, self._checked_detail(path, show_command, replies[2]))
        except NotFound:
            return committed, (True, None)
        except RuntimeApiError:
            # The commit went through; the caller's own show reports what is wrong.
            return committed, not_shown

    def _checked_commit(self, path, command, reply):
        lines = reply.strip().splitlines()
        if lines and lines[0].startswith("Committing") and lines[-1] == "Success!":
            return reply
        if "No ongoing transaction" in reply:
            raise self._error(NoTransaction, "no open transaction on %s to commit on %s: %s"
                              % (path, self.endpoint, _one_line(reply)), command=command, reply=reply)
        return self._fail(command, reply, "expected 'Success!'")

    def abort_ssl_cert(self, path):
        """Abort the transaction on ``path``; True if one was aborted, False if none was open."""
        command = "abort ssl cert %s" % path
        reply = self._run_locked(command)
        if reply.startswith("Transaction aborted for certificate"):
            return True
        if reply.strip() == "No ongoing transaction!":
            return False
        return self._fail(command, reply, "expected 'Transaction aborted for certificate'")

    def new_ssl_cert(self, path):
        command = "new ssl cert %s" % path
        reply = self._run_locked(command)
        if reply.startswith("New empty certificate store"):
            return reply
        return self._fail(command, reply, "expected 'New empty certificate store'")

    def del_ssl_cert(self, path):
        command = "del ssl cert %s" % path
        reply = self._run_locked(command)
        if reply.startswith("Certificate '") and reply.rstrip().endswith("deleted!"):
            return reply
        return self._fail(command, reply, "expected 'Certificate ... deleted!'")

    def show_ssl_crt_lists(self):
        """The raw list of crt-list (and directory) names."""
        command = "show ssl crt-list"
        reply = self._run_locked(command)
        if reply.strip() == "Permission denied":
            return self._fail(command, reply, "")
        return reply

    def show_ssl_crt_list(self, name):
        """The raw entries of one crt-list, with line numbers (``-n``)."""
        command = "show ssl crt-list -n %s" % name
        reply = self._run_locked(command)
        if reply.startswith("# "):
            return reply
        if "didn't find the specified filename" in reply:
            raise self._error(NotFound, "crt-list %s is not loaded in HAProxy at %s" % (name, self.endpoint),
                              command=command, reply=reply)
        return self._fail(command, reply, "expected the crt-list's entries")

    def add_ssl_crt_list(self, crt_list, line):
        """Add one crt-list line (``PATH [OPTIONS] FILTERS``), sent as a payload so options and filters apply."""
        command = "add ssl crt-list %s" % crt_list
        reply = self._run_locked(command, line)
        lines = reply.strip().splitlines()
        if lines and lines[0].startswith("Inserting certificate") and lines[-1] == "Success!":
            return reply
        return self._fail(command, reply, "expected 'Inserting certificate ... Success!'")

    def del_ssl_crt_list(self, crt_list, entry):
        """Delete one crt-list entry (``PATH`` or ``PATH:LINE``)."""
        command = "del ssl crt-list %s %s" % (crt_list, entry)
        reply = self._run_locked(command)
        if reply.startswith("Entry '") and " deleted in crtlist " in reply:
            return reply
        return self._fail(command, reply, "expected 'Entry ... deleted in crtlist'")


def _one_line(reply):
    return " / ".join(line.strip() for line in reply.strip().splitlines() if line.strip()) or "(empty reply)"
