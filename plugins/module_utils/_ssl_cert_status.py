# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""Parse HAProxy's ``show ssl cert`` and ``show ssl crt-list`` replies into records.

Fields are read by name, never by position: HAProxy 2.4 to 3.3 add, drop and
reorder lines (``Chain Filename:``, ``OCSP Response Key:``, ``Crt filename:``,
``Status: Uncommitted``, ``Option:``...). Unknown fields are kept, not fatal.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError

# The field names HAProxy prints in "show ssl cert NAME" (2.4 .. 3.3). Used to
# split a line where HAProxy left out a newline: for key types other than
# RSA/EC/DSA it stops after "Algorithm: " and the next field follows on the
# same line ("Algorithm: OCSP Response Key: " on 2.6).
KNOWN_FIELDS = (
    "Filename",
    "Status",
    "Crt filename",
    "Key filename",
    "Chain Filename",
    "Serial",
    "notBefore",
    "notAfter",
    "Subject Alternative Name",
    "Algorithm",
    "SHA1 FingerPrint",
    "Subject",
    "Issuer",
    "Chain Subject",
    "Chain Issuer",
    "OCSP Response Key",
    "Option",
)
_FIELD_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9 ]*?): ?(?P<value>.*)$")
# A value that starts with a known field name is two fields on one line (see KNOWN_FIELDS).
_GLUED_RE = re.compile("|".join(re.escape(field + ":") for field in KNOWN_FIELDS))
# Parsing 1,000 replies is on the module's hot path: known names skip the regex, keys are computed once.
_KNOWN_NAMES = frozenset(KNOWN_FIELDS)
_FIELD_KEYS = dict((field, field.lower().replace(" ", "_")) for field in KNOWN_FIELDS)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class StatusParseError(IngressError, ValueError):
    """A reply does not have the shape of the command's output."""


def parse_asn1_time(text):
    """``Nov 26 21:16:32 2026 GMT`` (OpenSSL's ASN1_TIME_print) -> aware UTC datetime."""
    words = text.split()
    if words and words[-1] == "GMT":
        words = words[:-1]
    if len(words) != 4 or words[0] not in _MONTHS:
        raise StatusParseError("not an OpenSSL time: %r" % text)
    month = _MONTHS.index(words[0]) + 1
    clock = words[2].split(".")[0].split(":")
    try:
        return datetime.datetime(
            int(words[3]), month, int(words[1]), int(clock[0]), int(clock[1]), int(clock[2]),
            tzinfo=datetime.timezone.utc,
        )
    except (ValueError, IndexError):
        raise StatusParseError("not an OpenSSL time: %r" % text)


def iso8601(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def certificate_summary(serial, fingerprint, not_after, names):
    """The before/after summary ``haproxy_ssl_cert`` reports and diffs, whether HAProxy or a bundle is its source."""
    return {
        "serial": serial,
        "fingerprint": fingerprint,
        "not_after": iso8601(not_after),
        "names": list(names),
    }


def _now(now):
    return now if now is not None else datetime.datetime.now(datetime.timezone.utc)


class CertListing:
    """``show ssl cert``: every loaded certificate path and the open transaction, if any."""

    def __init__(self, paths, transaction=None):
        self.paths = list(paths)
        self.transaction = transaction
        self._known = set(self.paths)

    def __contains__(self, path):
        return path in self._known

    def add(self, path):
        if path not in self._known:
            self._known.add(path)
            self.paths.append(path)

    def discard(self, path):
        if path in self._known:
            self._known.discard(path)
            self.paths.remove(path)


def parse_cert_list(text):
    """Parse the ``show ssl cert`` listing.

    With an open transaction the listing starts ``# transaction`` followed by
    ``*PATH``; the loaded certificates follow ``# filename``.
    """
    transaction = None
    paths = []
    section = None
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        if line.startswith("#"):
            section = line[1:].strip()
            continue
        if section == "transaction":
            transaction = line[1:] if line.startswith("*") else line
        elif section == "filename":
            paths.append(line)
        else:
            raise StatusParseError("unexpected line in the `show ssl cert` listing: %r" % line)
    if section is None and paths == [] and text.strip():
        raise StatusParseError("not a `show ssl cert` listing: %r" % text[:200])
    return CertListing(paths, transaction)


def _split_fields(text):
    """Yield (name, value) for every ``Name: value`` in a detail reply, in order."""
    for raw_line in text.splitlines():
        line = raw_line.rstrip("\r")
        while line:
            name, colon, value = line.partition(":")
            if colon and name in _KNOWN_NAMES:
                if value[:1] == " ":
                    value = value[1:]
            else:
                match = _FIELD_RE.match(line)
                if not match:
                    raise StatusParseError("unexpected line in `show ssl cert` details: %r" % raw_line)
                name, value = match.group("name"), match.group("value")
            # "Algorithm: OCSP Response Key: " -> ("Algorithm", "") then the next field.
            if ":" in value and _GLUED_RE.match(value):
                yield name, ""
                line = value
                continue
            yield name, value
            line = ""


class CertDetail:
    """``show ssl cert PATH``: what one loaded certificate (or the open transaction) holds."""

    def __init__(self):
        self.path = None
        self.pending = False
        self.status = None
        self.serial = None
        self.not_before = None
        self.not_after = None
        self.names = []
        self.algorithm = None
        self.fingerprint = None
        self.subject = None
        self.issuer = None
        self.chain = []
        self.chain_filename = None
        self.fields = {}

    @property
    def empty(self):
        """A store created by ``new ssl cert`` that never got a certificate."""
        return self.status == "Empty" or self.serial is None

    def days_left(self, now=None):
        if self.not_after is None:
            return None
        return (self.not_after - _now(now)).days

    def summary(self):
        """What the module compares and reports (never key material)."""
        return certificate_summary(self.serial, self.fingerprint, self.not_after, self.names)

    def as_dict(self, now=None):
        return {
            "path": self.path,
            "status": self.status,
            "serial": self.serial,
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "issuer": self.issuer,
            "names": list(self.names),
            "not_before": iso8601(self.not_before),
            "not_after": iso8601(self.not_after),
            "days_left": self.days_left(now),
            "algorithm": self.algorithm,
            "chain": [dict(item) for item in self.chain],
        }


def parse_cert_detail(text):
    """Parse ``show ssl cert PATH`` (or ``*PATH``) into a ``CertDetail``."""
    detail = CertDetail()
    for name, value in _split_fields(text):
        value = value.strip()
        if name == "Filename":
            detail.pending = value.startswith("*")
            detail.path = value[1:] if detail.pending else value
        elif name == "Status":
            detail.status = value
            if value == "Uncommitted":
                detail.pending = True
        elif name == "Serial":
            detail.serial = value.upper() or None
        elif name == "notBefore":
            detail.not_before = parse_asn1_time(value)
        elif name == "notAfter":
            detail.not_after = parse_asn1_time(value)
        elif name == "Subject Alternative Name":
            detail.names = sorted(
                item.strip()[len("DNS:"):] for item in value.split(",") if item.strip().startswith("DNS:")
            )
        elif name == "Algorithm":
            detail.algorithm = value or None
        elif name == "SHA1 FingerPrint":
            detail.fingerprint = value.upper() or None
        elif name == "Subject":
            detail.subject = value
        elif name == "Issuer":
            detail.issuer = value
        elif name == "Chain Subject":
            detail.chain.append({"subject": value, "issuer": None})
        elif name == "Chain Issuer":
            if detail.chain and detail.chain[-1]["issuer"] is None:
                detail.chain[-1]["issuer"] = value
            else:
                detail.chain.append({"subject": None, "issuer": value})
        elif name == "Chain Filename":
            detail.chain_filename = value
        key = _FIELD_KEYS.get(name) or name.lower().replace(" ", "_")
        if key in detail.fields:
            previous = detail.fields[key]
            detail.fields[key] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            detail.fields[key] = value
    if detail.path is None:
        raise StatusParseError("`show ssl cert` details without a Filename: %r" % text[:200])
    return detail


def parse_crt_list_names(text):
    """``show ssl crt-list``: one crt-list (or certificate directory) per line."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class CrtListEntry:
    """One line of a crt-list as HAProxy holds it."""

    def __init__(self, crt_list, path, line=None, options=None, sni_filters=None):
        self.crt_list = crt_list
        self.path = path
        self.line = line
        self.options = options
        self.sni_filters = list(sni_filters or [])

    def as_dict(self):
        return {
            "path": self.path,
            "line": self.line,
            "options": self.options,
            "sni_filters": list(self.sni_filters),
        }


def parse_crt_list(text):
    """``show ssl crt-list [-n] LIST`` -> (list name, [CrtListEntry]).

    Entries are ``PATH[:LINE] [[OPTIONS]] [FILTER ...]``. HAProxy 2.6 prints a
    NUL byte after the ALPN list in the options (``[alpn h2,http/1.1\\0 ...]``);
    it is dropped.
    """
    name = None
    entries = []
    for raw_line in text.replace("\0", "").splitlines():
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("#"):
            if name is None:
                name = line[1:].strip()
            continue
        head, dummy_sep, rest = line.partition(" ")
        path, number = head, None
        before, colon, after = head.rpartition(":")
        if colon and after.isdigit() and before:
            path, number = before, int(after)
        rest = rest.strip()
        options = None
        if rest.startswith("["):
            close = rest.find("]")
            if close < 0:
                raise StatusParseError("unterminated [options] in crt-list line %r" % raw_line)
            options = " ".join(rest[1:close].split())
            rest = rest[close + 1:].strip()
        entries.append(CrtListEntry(name, path, number, options, rest.split()))
    if name is None:
        raise StatusParseError("not a `show ssl crt-list LIST` reply: %r" % text[:200])
    for entry in entries:
        entry.crt_list = name
    return name, entries
