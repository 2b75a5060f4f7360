# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: service_instances
short_description: Find the address of every instance of a service through DNS
version_added: 0.1.0
author:
  - ingress.haproxy maintainers (@ingress)
requirements:
  - dnspython >= 2.0.0 (on the controller)
description:
  - Resolves the DNS name that lists every instance of a service and returns their addresses, ready to be used as
    Runtime API endpoints by M(ingress.haproxy.haproxy_ssl_cert) and M(ingress.haproxy.haproxy_ssl_cert_info).
  - In a Docker Swarm, C(tasks.SERVICE) lists the address of every task of the service; this is what the default
    O(prefix) asks for. For a Kubernetes headless service, set O(prefix) to the empty string and O(domain) to
    C(NAMESPACE.svc.cluster.local).
  - The name asked for is O(prefix) + the term + C(.) + O(domain), and it is always treated as absolute (a trailing dot
    is added), so a search domain or C(ndots) setting of the resolver configuration never changes it.
  - Every call asks the DNS server again, nothing is cached, so an instance added or removed since the last run is seen.
  - CNAMEs are followed, also where an authoritative server given in O(nameservers) stops at the edge of its zone
    (at most 8 in a row; a loop is an error).
  - Every failure is one error that names the DNS name, the record type, the servers asked and what happened
    (NXDOMAIN, SERVFAIL, REFUSED, no reply within O(timeout), no records when O(fail_on_empty=true), a bad option).
    An NXDOMAIN answer (the name does not exist) is an error unless O(fail_on_empty=false).
options:
  _terms:
    description:
      - Names of the services. Several names resolve in one call; their addresses are merged into one list.
    type: list
    elements: str
    required: true
  port:
    description:
      - Port to append to every address, giving C(ADDRESS:PORT) (C([ADDRESS]:PORT) for IPv6).
      - Without it, the bare addresses are returned.
    type: int
  prefix:
    description:
      - Prepended to every term. A dot is added between O(prefix) and the term if O(prefix) does not end with one.
      - Use the empty string for a Kubernetes headless service or any name that lists the instances by itself.
    type: str
    default: tasks.
  domain:
    description:
      - Appended to every term after a dot, for example C(default.svc.cluster.local).
    type: str
  nameservers:
    description:
      - IP addresses of the DNS servers to ask, instead of the ones in the system resolver configuration
        (C(/etc/resolv.conf)). They are tried in turn until one answers.
      - Inside a Docker Swarm, the system resolver is Docker's embedded DNS, which is what knows C(tasks.SERVICE).
    type: list
    elements: str
  dns_port:
    description:
      - Port the DNS servers listen on, for O(nameservers) as well as for the system resolver.
    type: int
    default: 53
  record_types:
    description:
      - Address record types to ask for, one or both of V(A) (IPv4) and V(AAAA) (IPv6); case does not matter.
      - A name that has records of only some of these types is fine.
    type: list
    elements: str
    default: [A, AAAA]
  timeout:
    description:
      - Seconds the whole lookup may take, for all terms, record types, servers and retries together.
        When it runs out, the lookup fails naming the servers that did not answer; it never hangs.
    type: float
    default: 5
  fail_on_empty:
    description:
      - Fail when a name exists but has no records of the types in O(record_types).
      - Also fail when the name does not exist (NXDOMAIN), which usually means a misspelt service name.
      - With V(false), such a name contributes nothing, and a service without any instance gives an empty list. That
        includes NXDOMAIN - Docker Swarm's answer for C(tasks.SERVICE) of a service scaled to zero - but not a CNAME
        that points at a name that does not exist.
    type: bool
    default: true
notes:
  - Call it with C(query), or with C(lookup) and C(wantlist=true), because C(lookup) alone joins several results into one comma-separated string.
  - The lookup runs on the controller, so the DNS servers must be reachable from there.
seealso:
  - module: ingress.haproxy.haproxy_ssl_cert
  - module: ingress.haproxy.haproxy_ssl_cert_info
"""

EXAMPLES = r"""
- name: Every task of the Docker Swarm service haproxy (tasks.haproxy), Runtime API on port 9999
  ansible.builtin.debug:
    msg: "{{ query('ingress.haproxy.service_instances', 'haproxy', port=9999) }}"
  # ['10.0.1.5:9999', '10.0.1.6:9999', '10.0.1.7:9999']

- name: Every pod of the Kubernetes headless service haproxy in the namespace ingress
  ansible.builtin.debug:
    msg: >-
      {{ query('ingress.haproxy.service_instances', 'haproxy', port=9999,
               prefix='', domain='ingress.svc.cluster.local') }}

- name: Ask a given DNS server on port 5353, IPv4 only, give up after 3 seconds
  ansible.builtin.debug:
    msg: >-
      {{ query('ingress.haproxy.service_instances', 'haproxy', 'haproxy-internal',
               nameservers=['10.0.0.53'], dns_port=5353, record_types=['A'], timeout=3) }}

- name: A service that may be scaled to zero gives an empty list instead of an error
  ansible.builtin.set_fact:
    haproxy_endpoints: "{{ query('ingress.haproxy.service_instances', 'haproxy', port=9999, fail_on_empty=false) }}"

- name: Push the renewed certificate to every instance, one after the other
  ingress.haproxy.haproxy_ssl_cert:
    endpoint: "{{ item }}"
    path: /etc/haproxy/certs/www.example.com.pem
    src: /srv/certificates/www.example.com.pem
  loop: "{{ query('ingress.haproxy.service_instances', 'haproxy', port=9999) }}"

# One inventory host per instance: a following play with "hosts: haproxy_instances"
# then pushes to up to "forks" instances in parallel.
- name: Add one inventory host per HAProxy instance
  ansible.builtin.add_host:
    # The endpoint is not the host name: add_host would read ADDRESS:PORT as a host and an SSH port.
    name: "haproxy-{{ instance_index }}"
    groups: haproxy_instances
    haproxy_endpoint: "{{ item }}"
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  loop: "{{ query('ingress.haproxy.service_instances', 'haproxy', port=9999) }}"
  loop_control:
    index_var: instance_index

# In the play for "hosts: haproxy_instances" (gather_facts: false):
- name: Push the renewed certificate to this instance
  ingress.haproxy.haproxy_ssl_cert:
    endpoint: "{{ haproxy_endpoint }}"
    path: /etc/haproxy/certs/www.example.com.pem
    src: /srv/certificates/www.example.com.pem
"""

RETURN = r"""
_list:
  description:
    - One entry per instance, without duplicates, sorted numerically (IPv4 addresses before IPv6 addresses); the
      addresses of all terms are merged into this one list.
    - C(ADDRESS:PORT) when O(port) is set, with IPv6 addresses in brackets (C([ADDRESS]:PORT)); the bare address
      otherwise.
  type: list
  elements: str
  sample:
    - 10.0.1.5:9999
    - 10.0.1.6:9999
    - "[fd00::5]:9999"
"""

import typing as t

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.module_utils.basic import missing_required_lib
from ansible.plugins.lookup import LookupBase

from ansible_collections.ingress.haproxy.plugins.plugin_utils._service_dns import (
    DNSPYTHON_REQUIREMENT,
    ServiceDnsError,
    ServiceResolver,
    check_port,
    dnspython_version_problem,
    format_instances,
    service_name,
)


class LookupModule(LookupBase):

    def run(self, terms: list[t.Any], variables: dict[str, t.Any] | None = None, **kwargs: t.Any) -> list[str]:
        problem = dnspython_version_problem()
        if problem is not None:
            raise AnsibleLookupError(
                f"The ingress.haproxy.service_instances lookup cannot run: {missing_required_lib(DNSPYTHON_REQUIREMENT)}. Reason: {problem}."
            ) from None
        try:
            self.set_options(var_options=variables, direct=kwargs)
        except AnsibleError as error:
            raise AnsibleLookupError(f"Bad option: {error.message}") from error

        try:
            port = self.get_option("port")
            if port is not None:
                port = check_port(port, "port")
            names = [service_name(term, self.get_option("prefix"), self.get_option("domain")) for term in _flatten(terms)]
            resolver = ServiceResolver(
                nameservers=self.get_option("nameservers"),
                dns_port=self.get_option("dns_port"),
                record_types=self.get_option("record_types"),
                timeout=self.get_option("timeout"),
            )
            addresses = resolver.instances(names, fail_on_empty=self.get_option("fail_on_empty"))
        except ServiceDnsError as error:
            raise AnsibleLookupError(str(error)) from error
        return format_instances(addresses, port)


def _flatten(terms: t.Iterable[t.Any]) -> t.Iterator[t.Any]:
    """query(..., ['a', 'b']) passes the list as one term: take its items as terms."""
    for term in terms:
        if isinstance(term, (list, tuple)):
            yield from _flatten(term)
        else:
            yield term
