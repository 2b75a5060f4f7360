#!/usr/bin/python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: haproxy_ssl_cert_info
short_description: Read the TLS certificates and crt-lists a running HAProxy process holds
version_added: 0.1.0
description:
  - Reads, over one Runtime API connection, every certificate one HAProxy process holds in memory (or the ones named
    in O(paths)) with C(show ssl cert), the crt-lists with their lines with C(show ssl crt-list), and the open
    certificate transaction, if any.
  - What it reports is what the process serves now, which can differ from the files on disk after a Runtime API
    update.
author:
  - ingress.haproxy maintainers (@ingress-haproxy)
extends_documentation_fragment:
  - ingress.haproxy._attributes
  - ingress.haproxy._attributes.INFO_MODULE
  - ingress.haproxy.runtime_api
options:
  paths:
    description:
      - Only these certificates (their names in HAProxy, as C(show ssl cert) lists them). Names HAProxy does not hold
        are listed in RV(missing).
      - All certificates when unset.
    type: list
    elements: str
notes:
  - A socket with C(level operator) is enough for the certificates; the crt-lists need C(level admin). On an
    operator socket RV(crt_lists) is V(null) and a warning says why.
  - For leaf keys other than RSA, EC and DSA (such as Ed25519) HAProxy prints nothing after C(Algorithm:), so
    fingerprint, subject, issuer and chain are V(null) or empty for them.
  - Certificates a C(crt-store) section loads (HAProxy 3.2 and later) are listed and read by their C(@STORE/NAME)
    names, like files' paths.
seealso:
  - module: ingress.haproxy.haproxy_ssl_cert
"""

EXAMPLES = r"""
- name: What does the first worker serve?
  ingress.haproxy.haproxy_ssl_cert_info:
    endpoint: /run/haproxy/master.sock
    process: "@1"
  register: served

- name: Certificates that expire within 30 days
  ansible.builtin.debug:
    msg: "{{ served.certificates | selectattr('days_left', 'lt', 30) | map(attribute='path') | list }}"

- name: One certificate, over TCP
  ingress.haproxy.haproxy_ssl_cert_info:
    endpoint: 10.0.0.5:9999
    paths:
      - /etc/haproxy/certs/www.example.com.pem
"""

RETURN = r"""
certificates:
  description: The certificates, in HAProxy's order (or in the order of O(paths)).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The certificate's name in HAProxy.
      type: str
      sample: /etc/haproxy/certs/www.example.com.pem
    status:
      description: HAProxy's status, V(Used) (in a crt-list or bind line), V(Unused) or V(Empty) (created, never filled).
      type: str
      sample: Used
    serial:
      description: Serial number, uppercase hex as HAProxy prints it.
      type: str
      sample: 03ECC19BA54B25E85ABA46EE561B9A10D26F
    fingerprint:
      description: SHA1 fingerprint of the leaf, uppercase hex; V(null) when HAProxy prints none.
      type: str
      sample: 417A11CAE25F607B24F638B4A8AEE51D1E211477
    subject:
      description: Subject of the leaf, in OpenSSL's one-line form.
      type: str
      sample: /CN=www.example.com
    issuer:
      description: Issuer of the leaf.
      type: str
      sample: /C=US/O=Let's Encrypt/CN=R11
    names:
      description: DNS names (subject alternative names) of the leaf, sorted.
      type: list
      elements: str
      sample: [example.com, www.example.com]
    not_before:
      description: Start of validity, ISO 8601 UTC.
      type: str
      sample: "2026-11-26T21:16:32Z"
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
      sample: "2027-02-25T21:16:32Z"
    days_left:
      description: Whole days until RV(certificates[].not_after); negative once expired.
      type: int
      sample: 89
    algorithm:
      description: Key algorithm and size as HAProxy prints it (V(EC256), V(RSA2048)).
      type: str
      sample: EC256
    chain:
      description: Subject and issuer of each chain certificate HAProxy sends after the leaf.
      type: list
      elements: dict
      sample: [{subject: /C=US/O=Let's Encrypt/CN=R11, issuer: /C=US/O=Internet Security Research Group/CN=ISRG Root X1}]
crt_lists:
  description:
    - Every crt-list (or certificate directory) and its lines. V(null) when the socket may not read them.
  returned: always
  type: dict
  sample:
    /etc/haproxy/crt-list.txt:
      - {path: /etc/haproxy/certs/www.example.com.pem, line: 1, options: "alpn h2,http/1.1",
         sni_filters: [www.example.com]}
transaction:
  description: The certificate whose transaction is open (set, not yet committed or aborted), or V(null).
  returned: always
  type: str
  sample: null
missing:
  description: Names from O(paths) that HAProxy does not hold.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_converge import read_status


def main():
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str", required=True),
            process=dict(type="str"),
            timeout=dict(type="float", default=10),
            paths=dict(type="list", elements="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        for index, path in enumerate(params["paths"] or []):
            api.check_name(path, "paths[%d]" % index)
        with api.RuntimeSession(params["endpoint"], process=params["process"], timeout=params["timeout"]) as session:
            status, warnings = read_status(session, params["paths"])
    except IngressError as exc:
        # The one place this module fails.
        IngressError("reading the certificates on %s: %s" % (params["endpoint"], exc)).do_fail(module)
    else:
        for warning in warnings:
            module.warn(warning)
        module.exit_json(changed=False, **status)


if __name__ == "__main__":
    main()
