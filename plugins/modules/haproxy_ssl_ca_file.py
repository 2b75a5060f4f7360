#!/usr/bin/python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: haproxy_ssl_ca_file
short_description: Replace or create the CA files a running HAProxy process verifies client certificates with
version_added: 0.2.0
description:
  - Converges the CA files (C(ca-file) of a C(bind) line, for mutual TLS) that HAProxy processes hold in memory,
    through the Runtime API, without a reload. One call handles one file (O(path) with O(src) or O(content)) or many
    (O(ca_files)), on one endpoint (O(endpoint)) or on many in parallel (O(endpoints)).
  - Every file is validated first, on the host the module runs on; when one is bad nothing at all is sent. A file must
    hold only PEM certificates, each of which parses.
  - For each file the module reads C(show ssl ca-file PATH) and compares the SHA1 fingerprints of the certificates
    HAProxy lists, in order, with the file's. When they are equal nothing is sent. Otherwise it sends
    C(set ssl ca-file PATH) and C(commit ssl ca-file PATH), then reads C(show ssl ca-file PATH) again and fails
    unless HAProxy now lists the file's certificates. Any error after the C(set) aborts the transaction
    (C(abort ssl ca-file PATH)) before the module fails, so no transaction is left open.
  - A CA file HAProxy does not hold yet is created with C(new ssl ca-file) (HAProxy 2.6 and later), then filled and
    committed. It is not used by any C(bind) until a crt-list line names it.
  - The whole file is replaced (C(set)); HAProxy 3.x's C(add ssl ca-file), which appends, is not used, so the result
    does not depend on what was there before.
  - A transaction another client has open on another CA file makes HAProxy refuse the C(set); the module fails and
    names that file.
  - Changes are made in memory only. Write the file where HAProxy loads it at start as well.
author:
  - ingress.haproxy maintainers (@ingress-haproxy)
extends_documentation_fragment:
  - ingress.haproxy._attributes
  - ingress.haproxy._cryptography
  - ingress.haproxy.runtime_api
attributes:
  check_mode:
    support: full
    details:
      - Reads what HAProxy holds and reports what would change; sends no C(new), C(set) or C(commit).
  diff_mode:
    support: full
    details:
      - Shows subject, serial, SHA1 fingerprint and notAfter of each certificate before and after, per changed file
        (headed C(ENDPOINT PATH) with O(endpoints)).
  idempotent:
    support: full
    details:
      - A second run with the same files sends only C(show ssl ca-file).
options:
  endpoint:
    description:
      - The Runtime API of one HAProxy process, written as in M(ingress.haproxy.haproxy_ssl_cert).
      - Changing CA files needs a socket with C(level admin).
      - Exactly one of O(endpoint) and O(endpoints) is required.
    type: str
    required: false
  endpoints:
    description:
      - The Runtime APIs of many HAProxy processes; the same files are converged on each, in parallel, one
        connection each. An entry is an endpoint string or a dictionary with C(endpoint) and optionally C(process).
      - The result is then RV(instances), one entry per endpoint in this order, instead of RV(files). An endpoint
        that fails is reported in its entry, the others are converged all the same, and the module then fails
        naming every endpoint that failed.
      - Exactly one of O(endpoint) and O(endpoints) is required.
    type: list
    elements: raw
  concurrency:
    description:
      - With O(endpoints), how many endpoints are worked on at the same time.
    type: int
    default: 16
  path:
    description:
      - The CA file's name in HAProxy, which is the path it was loaded from (as C(show ssl ca-file) lists it).
      - Mutually exclusive with O(ca_files).
    type: str
  src:
    description:
      - PEM file with the CA certificates, read on the host the module runs on.
      - Mutually exclusive with O(content).
    type: path
  content:
    description:
      - The PEM CA certificates themselves.
      - Mutually exclusive with O(src).
    type: str
  ca_files:
    description:
      - Many CA files in one call, over one connection per endpoint. Results come back in the same order.
      - Mutually exclusive with O(path), O(src) and O(content).
    type: list
    elements: dict
    suboptions:
      path:
        description: As O(path).
        type: str
        required: true
      src:
        description: As O(src).
        type: path
      content:
        description: As O(content).
        type: str
  tune_bufsize:
    description:
      - HAProxy's C(tune.bufsize) on the target. Each C(set) with its payload must fit it; a file that does not is
        refused before anything is sent.
    type: int
    default: 16384
notes:
  - HAProxy 2.6 or newer (C(new ssl ca-file) and C(show ssl ca-file NAME) with fingerprints). Tested on 2.6.12 and
    3.2.
seealso:
  - module: ingress.haproxy.haproxy_ssl_crl_file
  - module: ingress.haproxy.haproxy_ssl_cert
  - name: HAProxy Runtime API, set ssl ca-file
    description: The commands this module uses.
    link: https://docs.haproxy.org/2.6/management.html#9.3-set%20ssl%20ca-file
"""

EXAMPLES = r"""
- name: Trust the new client CA as well as the old one on every instance, without a reload
  ingress.haproxy.haproxy_ssl_ca_file:
    endpoints: "{{ query('ingress.haproxy.service_instances', 'haproxy', port=9999) }}"
    path: /etc/haproxy/clients-ca.pem
    src: /srv/pki/clients-ca.pem

- name: Two CA files over one connection
  ingress.haproxy.haproxy_ssl_ca_file:
    endpoint: /run/haproxy/admin.sock
    ca_files:
      - path: /etc/haproxy/partners-ca.pem
        src: /srv/pki/partners-ca.pem
      - path: /etc/haproxy/staff-ca.pem
        src: /srv/pki/staff-ca.pem
"""

RETURN = r"""
files:
  description: One entry per file, in input order.
  returned: with O(endpoint)
  type: list
  elements: dict
  contains:
    path:
      description: The CA file's name in HAProxy.
      type: str
      sample: /etc/haproxy/clients-ca.pem
    action:
      description: What was done (or would be, in check mode).
      type: str
      choices: [created, updated, unchanged]
      sample: updated
    changed:
      description: Whether the file changed (or would).
      type: bool
      sample: true
    before:
      description: The certificates HAProxy listed before, or V(null) when it held no such file.
      type: list
      elements: dict
      sample: [{subject: /O=Example/CN=Clients CA 1, serial: 7ED04F10D869A280, fingerprint: C9D61E8DC23951C23B7D6C9F3F9F2D022E33AE67,
                not_after: "2036-11-30T07:17:40Z"}]
    after:
      description: The certificates HAProxy lists afterwards; in check mode, the file's.
      type: list
      elements: dict
      sample: []
commands:
  description: How many Runtime API commands were sent (a run with nothing to change sends one C(show) per file).
  returned: with O(endpoint)
  type: int
  sample: 1
instances:
  description: One entry per endpoint of O(endpoints), in the order they were given.
  returned: with O(endpoints)
  type: list
  elements: dict
  contains:
    endpoint:
      description: The endpoint.
      type: str
    failed:
      description: Whether this endpoint failed.
      type: bool
    msg:
      description: Why it failed.
      type: str
      returned: when it failed
    changed:
      description: Whether a file changed there.
      type: bool
    files:
      description: As RV(files).
      type: list
      elements: dict
      returned: when the endpoint was reached
    commands:
      description: As RV(commands).
      type: int
      returned: when the endpoint was reached
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingress.haproxy.plugins.module_utils import _ssl_ca_crl
from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError
from ansible_collections.ingress.haproxy.plugins.module_utils._runtime_api import DEFAULT_BUFSIZE


def main():
    file_options = dict(path=dict(type="str", required=True), src=dict(type="path"), content=dict(type="str"))
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str"),
            endpoints=dict(type="list", elements="raw"),
            concurrency=dict(type="int", default=16),
            process=dict(type="str"),
            timeout=dict(type="float", default=10),
            path=dict(type="str"),
            src=dict(type="path"),
            content=dict(type="str"),
            ca_files=dict(type="list", elements="dict", options=file_options),
            tune_bufsize=dict(type="int", default=DEFAULT_BUFSIZE),
        ),
        mutually_exclusive=[("endpoint", "endpoints"), ("path", "ca_files"), ("src", "content"),
                            ("ca_files", "src"), ("ca_files", "content")],
        required_one_of=[("endpoint", "endpoints"), ("path", "ca_files")],
        supports_check_mode=True,
    )
    try:
        output = _ssl_ca_crl.run(module, _ssl_ca_crl.CA_FILE, "ca_files")
    except IngressError as exc:
        # The one place this module fails.
        exc.do_fail(module)
    else:
        module.exit_json(**output)


if __name__ == "__main__":
    main()
