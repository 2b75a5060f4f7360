# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin util is private, not for use outside this collection.
# It can change or disappear in any release.

"""Where the DNS-01 TXT record of a name has to be written (dnspython).

Sites often delegate ``_acme-challenge.NAME`` by CNAME to a zone made for the
challenges, so the TSIG key can write nothing else. The CA follows that
CNAME; so must the writer. ``ChallengeDns.target`` follows the chain
(bounded, a loop stops at its first repeat) and ``ChallengeDns.zone_of`` finds
the zone that holds the last name, both by asking the RFC 2136 server, which
is authoritative for what the role writes. When that server will not answer
for a name (REFUSED, NOTAUTH, SERVFAIL: not its zone and no recursion), the
CNAME is asked of the system resolver, as the CA sees public DNS.
"""

from __future__ import annotations


try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.resolver
except ImportError:  # reported by ChallengeDns(), which needs it
    dns = None

# The same bound as the service_instances lookup: a longer chain is a mistake.
MAX_CNAME_HOPS = 8
_UNANSWERED = ("REFUSED", "NOTAUTH", "SERVFAIL", "NOTIMP")


class ChallengeDnsError(Exception):
    """The record's place cannot be found; the message says which name, where and why."""


class ChallengeDns:
    """Ask one server (the RFC 2136 one) about CNAMEs and zones, each query bounded by ``timeout``."""

    def __init__(self, server: str, port: int, timeout: float) -> None:
        if dns is None:
            raise ChallengeDnsError("following _acme-challenge CNAMEs needs dnspython on the controller")
        self.server, self.port, self.timeout = server, int(port), float(timeout)
        self._system = None  # the system resolver, read from resolv.conf once, when first needed

    def _ask_server(self, name: str, rdtype: str) -> tuple[str, list[tuple[str, str, str]], bool]:
        """(rcode, answer records as (owner, type, data), authoritative) for one query to the server."""
        query = dns.message.make_query(name, rdtype)
        try:
            reply = dns.query.udp(query, self.server, port=self.port, timeout=self.timeout)
            if reply.flags & dns.flags.TC:
                reply = dns.query.tcp(query, self.server, port=self.port, timeout=self.timeout)
        except (OSError, dns.exception.DNSException) as exc:
            raise ChallengeDnsError(f"asking {self.server}:{self.port} for the {rdtype} of {name} failed: "
                                    f"{exc or type(exc).__name__}") from None
        records = [(rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text().lower())
                   for rrset in reply.answer for rdata in rrset]
        return dns.rcode.to_text(reply.rcode()), records, bool(reply.flags & dns.flags.AA)

    def _ask_system(self, name: str) -> str | None:
        """The CNAME of ``name`` as the system resolver sees it, or None."""
        try:
            self._system = self._system or dns.resolver.Resolver()
            answer = self._system.resolve(name, "CNAME", search=False, raise_on_no_answer=False, lifetime=self.timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as exc:
            raise ChallengeDnsError(f"the RFC 2136 server {self.server}:{self.port} does not answer for {name}, "
                                    f"and the system resolver failed too: {exc or type(exc).__name__}") from None
        return answer.rrset[0].target.to_text().lower() if answer.rrset else None

    def _cname(self, name: str, ask_system: bool) -> str | None:
        rcode, records, _authoritative = self._ask_server(name, "CNAME")
        if rcode in _UNANSWERED:
            return self._ask_system(name) if ask_system else None
        for owner, rdtype, data in records:
            if owner == name and rdtype == "CNAME":
                return data
        return None

    def target(self, record: str, ask_system: bool = True) -> list[str]:
        """The chain of names from ``record`` (absolute, lower case) to the one that holds the TXT, ``record`` first."""
        chain = [record.lower()]
        while True:
            following = self._cname(chain[-1], ask_system)
            if following is None:
                return chain
            if following in chain:
                raise ChallengeDnsError(f"{record} is a CNAME loop: {' -> '.join(chain + [following])}")
            chain.append(following)
            if len(chain) > MAX_CNAME_HOPS + 1:
                raise ChallengeDnsError(f"{record} goes through more than {MAX_CNAME_HOPS} CNAMEs "
                                        f"({' -> '.join(chain)})")

    def zone_of(self, name: str) -> str | None:
        """The zone (no trailing dot) the server is authoritative for that holds ``name``, or None."""
        labels = name.rstrip(".").split(".")
        for start in range(len(labels)):
            candidate = ".".join(labels[start:]) + "."
            rcode, records, authoritative = self._ask_server(candidate, "SOA")
            if rcode == "NOERROR" and authoritative and any(
                    owner == candidate and rdtype == "SOA" for owner, rdtype, _data in records):
                return candidate.rstrip(".")
        return None
