# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin util is private, not for use outside this collection.
# It can change or disappear in any release.

"""Find the addresses of every instance of a service through DNS (dnspython).

Every dnspython call of the service_instances lookup goes through _guarded()
here, so every failure leaves as one ServiceDnsError whose message names the
DNS name, the record type, the servers asked and what happened.
"""

from __future__ import annotations

import functools
import ipaddress
import time
import typing as t

DNSPYTHON_IMPORT_ERROR: ImportError | None
try:
    import dns.exception
    import dns.name
    import dns.resolver
    import dns.version
except ImportError as import_error:
    DNSPYTHON_IMPORT_ERROR = import_error
else:
    DNSPYTHON_IMPORT_ERROR = None

DNSPYTHON_REQUIREMENT = "dnspython >= 2.0.0"
ADDRESS_RECORD_TYPES = ("A", "AAAA")
# CNAMEs followed one after the other before giving up (a loop ends sooner, at the first repeat).
MAX_CNAME_HOPS = 8

Address = t.Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class ServiceDnsError(Exception):
    """Finding a service's instances failed; the message says what, where and why."""


class ServiceNameMissing(ServiceDnsError):
    """The server answered NXDOMAIN: the name does not exist (Docker Swarm's answer for a service scaled to zero)."""


def dnspython_version_problem() -> str | None:
    """Say why the installed dnspython cannot be used, or None when it can."""
    if DNSPYTHON_IMPORT_ERROR is not None:
        return f"cannot import dnspython ({DNSPYTHON_IMPORT_ERROR})"
    if dns.version.MAJOR < 2:
        return f"found dnspython {dns.version.version}"
    return None


def check_port(value: t.Any, option: str) -> int:
    """Return a TCP/UDP port number, or raise naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ServiceDnsError(f"Option {option}: {value!r} is not a port number (1-65535).")
    return value


def service_name(term: t.Any, prefix: str | None, domain: str | None) -> str:
    """Build the absolute DNS name (trailing dot) for one service name.

    The name is made absolute on purpose: a search domain from the resolver
    configuration must never turn ``tasks.haproxy`` into some other name.
    """
    service = str(term).strip().strip(".") if term is not None else ""
    if not service:
        raise ServiceDnsError(f"Service name {term!r} is empty.")
    labels = []
    prefix = (prefix or "").strip()
    if prefix:
        labels.append(prefix.strip("."))
    labels.append(service)
    domain = (domain or "").strip().strip(".")
    if domain:
        labels.append(domain)
    return ".".join(labels) + "."


def format_instances(addresses: t.Iterable[Address], port: int | None) -> list[str]:
    """Sort (IPv4 first, then IPv6, numerically), drop duplicates and format.

    With a port: ``ADDR:PORT`` and ``[ADDR]:PORT`` for IPv6; without: the bare address.
    """
    unique = sorted(set(addresses), key=lambda address: (address.version, int(address)))
    if port is None:
        return [address.compressed for address in unique]
    return [
        f"[{address.compressed}]:{port}" if address.version == 6 else f"{address.compressed}:{port}"
        for address in unique
    ]


def _endpoint_text(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _server_text(server: t.Any, port: int) -> str:
    """``127.0.0.1:53`` for whatever dnspython uses to name a nameserver.

    dnspython 2.4+ names them ``Do53:ADDR@PORT``, older releases by the bare address.
    """
    text = str(server)
    if text.startswith("Do53:"):
        text = text[len("Do53:"):].rsplit("@", 1)[0]
    return _endpoint_text(text, port)


def _failure_text(error: t.Any) -> str:
    """What went wrong with one server, from dnspython's error tuple entry."""
    if isinstance(error, str):
        # dnspython records an unwanted rcode by its name (SERVFAIL, REFUSED, ...).
        return f"answered {error}"
    if isinstance(error, dns.exception.Timeout):
        return "did not reply in time"
    if isinstance(error, ConnectionRefusedError):
        return "refused the connection (nothing listening?)"
    if isinstance(error, dns.exception.FormError):
        return f"sent a malformed reply ({error})"
    return f"failed: {error}"


def _server_failures(errors: t.Iterable[t.Any]) -> str:
    parts = []
    for entry in errors or ():
        # (nameserver, tcp, port, error, response) in dnspython 2.x
        server, tcp, port, error = entry[0], entry[1], entry[2], entry[3]
        over_tcp = " over TCP" if tcp else ""
        parts.append(f"{_server_text(server, port)}{over_tcp} {_failure_text(error)}")
    # Retries repeat the same failure; say each once, in order.
    return "; ".join(dict.fromkeys(parts))


class ServiceResolver:
    """Resolve service names to addresses, no cache, bounded by one timeout."""

    def __init__(
        self,
        *,
        nameservers: list[str] | None,
        dns_port: int,
        record_types: list[str],
        timeout: float,
    ) -> None:
        problem = dnspython_version_problem()
        if problem is not None:
            raise ServiceDnsError(f"dnspython is not usable: {problem}.")
        self._dns_port = check_port(dns_port, "dns_port")
        self._record_types = self._check_record_types(record_types)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ServiceDnsError(f"Option timeout: {timeout!r} is not a positive number of seconds.")
        self._timeout = float(timeout)
        self._resolver = self._make_resolver(nameservers)
        self._servers = ", ".join(_server_text(server, self._dns_port) for server in self._resolver.nameservers)
        if not nameservers:
            self._servers = f"the system resolver ({self._servers})"

    @staticmethod
    def _check_record_types(record_types: list[str]) -> tuple[str, ...]:
        if not record_types:
            raise ServiceDnsError(f"Option record_types is empty; use one or both of {', '.join(ADDRESS_RECORD_TYPES)}.")
        chosen = []
        for record_type in record_types:
            if str(record_type).upper() not in ADDRESS_RECORD_TYPES:
                raise ServiceDnsError(
                    f"Option record_types: unknown record type {record_type!r}; use one or both of {', '.join(ADDRESS_RECORD_TYPES)}."
                )
            chosen.append(str(record_type).upper())
        return tuple(dict.fromkeys(chosen))

    def _make_resolver(self, nameservers: list[str] | None) -> t.Any:
        if nameservers:
            addresses = []
            for nameserver in nameservers:
                try:
                    addresses.append(ipaddress.ip_address(str(nameserver).strip()).compressed)
                except ValueError:
                    raise ServiceDnsError(
                        f"Option nameservers: {nameserver!r} is not an IP address (give the servers' addresses, not names)."
                    ) from None
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = addresses
        else:
            resolver = _guarded(
                "Reading the system resolver configuration (set the nameservers option to ask specific servers)",
                functools.partial(dns.resolver.Resolver, configure=True),
            )
        resolver.port = self._dns_port
        # Instances come and go: every lookup must ask the server again.
        resolver.cache = None
        return resolver

    def instances(self, names: list[str], *, fail_on_empty: bool) -> list[Address]:
        """Addresses of every name (absolute, from service_name()), all within the timeout."""
        deadline = time.monotonic() + self._timeout
        found: list[Address] = []
        for name in names:
            qname = _guarded(f"Checking the DNS name {name!r}", functools.partial(dns.name.from_text, name))
            addresses: list[Address] = []
            try:
                for record_type in self._record_types:
                    addresses.extend(self._query(qname, record_type, deadline))
            except ServiceNameMissing as exc:
                if fail_on_empty:
                    raise ServiceDnsError(f"{exc} (Set fail_on_empty to false to get an empty list instead.)") from None
                # Swarm answers NXDOMAIN for tasks.<svc> of a service scaled to zero: no instance, not an error.
                continue
            if not addresses and fail_on_empty:
                raise ServiceDnsError(
                    f"{self._what(qname, self._record_types)} found nothing: the name exists but has no such records"
                    " (set fail_on_empty to false to get an empty list instead)."
                )
            found.extend(addresses)
        return found

    def _what(self, qname: t.Any, record_types: t.Iterable[str]) -> str:
        return f"Looking up {' and '.join(record_types)} records of {qname.to_text()} at {self._servers}"

    def _query(self, qname: t.Any, record_type: str, deadline: float) -> list[Address]:
        """Addresses of one type for one name, following CNAMEs the server did not follow itself.

        A recursive resolver answers with the whole CNAME chain; an authoritative server
        (asked directly through the nameservers option) stops at the edge of its zone.
        """
        name = qname
        seen = {qname}
        for _hop in range(MAX_CNAME_HOPS + 1):
            what = self._what(qname, (record_type,)) + (f" (following a CNAME to {name.to_text()})" if name != qname else "")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceDnsError(f"{what} failed: timeout, the {self._timeout:g} s ran out before this query.")
            try:
                answer = _guarded(
                    what,
                    functools.partial(
                        self._resolver.resolve, name, record_type, search=False, raise_on_no_answer=False,
                        lifetime=remaining
                    ),
                    timeout=self._timeout,
                )
            except ServiceNameMissing as exc:
                if name == qname:
                    raise
                # A CNAME to nowhere is a broken record, not a service scaled to zero.
                raise ServiceDnsError(str(exc)) from None
            if answer.rrset is not None:
                return [ipaddress.ip_address(rdata.address) for rdata in answer.rrset]
            if answer.canonical_name == name:
                # NOERROR without records of this type: fine as long as another type has some.
                return []
            if answer.canonical_name in seen:
                raise ServiceDnsError(f"{what} failed: CNAME loop, {answer.canonical_name.to_text()} is already in the chain.")
            name = answer.canonical_name
            seen.add(name)
        raise ServiceDnsError(
            f"{self._what(qname, (record_type,))} failed: more than {MAX_CNAME_HOPS} CNAMEs in a row (last {name.to_text()})."
        )


def _guarded(what: str, call: t.Callable[[], t.Any], timeout: float | None = None) -> t.Any:
    """Run one dnspython call; turn whatever it raises into one ServiceDnsError starting with ``what``."""
    try:
        return call()
    except dns.resolver.NXDOMAIN:
        raise ServiceNameMissing(f"{what} failed: NXDOMAIN, the name does not exist.") from None
    except dns.exception.Timeout as error:
        failures = _server_failures(error.kwargs.get("errors"))
        within = f" within {timeout:g} s" if timeout is not None else ""
        message = f"timeout, no answer{within}" + (f" ({failures})." if failures else ".")
    except dns.resolver.NoNameservers as error:
        message = (_server_failures(error.kwargs.get("errors")) or "no server left to ask") + "."
    except dns.exception.DNSException as error:
        message = str(error) or type(error).__name__
    raise ServiceDnsError(f"{what} failed: {message}")
