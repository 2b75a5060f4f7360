#!/usr/bin/python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: haproxy_ssl_crl_file
short_description: Replace or create the CRL files a running HAProxy process checks client certificates against
version_added: 0.2.0
description:
  - Converges the CRL files (C(crl-file) of a C(bind) line, for mutual TLS) that HAProxy processes hold in memory,
    through the Runtime API, without a reload. One call handles one file (O(path) with O(src) or O(content)) or many
    (O(crl_files)), on one endpoint (O(endpoint)) or on many in parallel (O(endpoints)).
  - Every file is validated first, on the host the module runs on; when one is bad nothing at all is sent. A file must
    hold only PEM CRLs (C(X509 CRL) blocks), each of which parses; with O(ca_src) or O(ca_content) each CRL's
    signature must verify against a CA of that file; a CRL past its nextUpdate is refused unless
    O(allow_expired=true) (HAProxy would reject every client of that CA).
  - For each file the module reads C(show ssl crl-file PATH) and compares each CRL's issuer, lastUpdate, nextUpdate
    and revoked serial numbers, in order, with the file's. When they are equal nothing is sent. Otherwise it sends
    C(set ssl crl-file PATH) and C(commit ssl crl-file PATH), then reads C(show ssl crl-file PATH) again and fails
    unless HAProxy now lists the file's CRLs. Any error after the C(set) aborts the transaction
    (C(abort ssl crl-file PATH)) before the module fails, so no transaction is left open.
  - A CRL file HAProxy does not hold yet is created with C(new ssl crl-file), then filled and committed. HAProxy's
    C(help) lists that command from 3.0 on; Debian's 2.6.12 accepts it all the same. The new file is not used by any
    C(bind) until a crt-list line names it.
  - HAProxy checks the CRL of every CA of a client's chain (C(crl-file) sets OpenSSL's CRL_CHECK_ALL), so a CRL file
    needs one CRL per CA of the bind's CA file, or clients of the CAs without one are rejected.
  - A transaction another client has open on another CRL file makes HAProxy refuse the C(set); the module fails and
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
      - Shows issuer, lastUpdate, nextUpdate and the number of revoked certificates of each CRL before and after,
        per changed file (headed C(ENDPOINT PATH) with O(endpoints)).
  idempotent:
    support: full
    details:
      - A second run with the same files sends only C(show ssl crl-file).
options:
  endpoint:
    description:
      - The Runtime API of one HAProxy process, written as in M(ingress.haproxy.haproxy_ssl_cert).
      - Changing CRL files needs a socket with C(level admin).
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
      - The CRL file's name in HAProxy, which is the path it was loaded from (as C(show ssl crl-file) lists it).
      - Mutually exclusive with O(crl_files).
    type: str
  src:
    description:
      - PEM file with the CRLs, read on the host the module runs on.
      - Mutually exclusive with O(content).
    type: path
  content:
    description:
      - The PEM CRLs themselves.
      - Mutually exclusive with O(src).
    type: str
  crl_files:
    description:
      - Many CRL files in one call, over one connection per endpoint. Results come back in the same order.
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
  ca_src:
    description:
      - PEM file of CA certificates (typically the bind's CA file); every CRL must be signed by one of them.
      - Mutually exclusive with O(ca_content). Without either, signatures are not checked.
    type: path
  ca_content:
    description:
      - As O(ca_src), the PEM text itself.
    type: str
  allow_expired:
    description:
      - Send CRLs past their nextUpdate as well.
    type: bool
    default: false
  tune_bufsize:
    description:
      - HAProxy's C(tune.bufsize) on the target. Each C(set) with its payload must fit it; a file that does not is
        refused before anything is sent.
    type: int
    default: 16384
notes:
  - HAProxy 2.6 or newer. Tested on 2.6.12 and 3.2.
seealso:
  - module: ingress.haproxy.haproxy_ssl_ca_file
  - name: HAProxy Runtime API, set ssl crl-file
    description: The commands this module uses.
    link: https://docs.haproxy.org/2.6/management.html#9.3-set%20ssl%20crl-file
"""

EXAMPLES = r"""
- name: Publish the new CRL of the client CA on every instance, checking its signature first
  ingress.haproxy.haproxy_ssl_crl_file:
    endpoints: "{{ query('ingress.haproxy.service_instances', 'haproxy', port=9999) }}"
    path: /etc/haproxy/clients.crl
    src: /srv/pki/clients.crl
    ca_src: /srv/pki/clients-ca.pem
"""

RETURN = r"""
files:
  description: One entry per file, in input order.
  returned: with O(endpoint)
  type: list
  elements: dict
  contains:
    path:
      description: The CRL file's name in HAProxy.
      type: str
      sample: /etc/haproxy/clients.crl
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
      description: The CRLs HAProxy listed before (issuer, last_update, next_update, revoked count), or V(null) when
        it held no such file.
      type: list
      elements: dict
      sample: [{issuer: /O=Example/CN=Clients CA, last_update: "2026-12-03T07:12:40Z", next_update: "2026-12-10T07:12:40Z",
                revoked: 1}]
    after:
      description: The CRLs HAProxy lists afterwards; in check mode, the file's.
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
            crl_files=dict(type="list", elements="dict", options=file_options),
            ca_src=dict(type="path"),
            ca_content=dict(type="str"),
            allow_expired=dict(type="bool", default=False),
            tune_bufsize=dict(type="int", default=DEFAULT_BUFSIZE),
        ),
        mutually_exclusive=[("endpoint", "endpoints"), ("path", "crl_files"), ("src", "content"),
                            ("crl_files", "src"), ("crl_files", "content"), ("ca_src", "ca_content")],
        required_one_of=[("endpoint", "endpoints"), ("path", "crl_files")],
        supports_check_mode=True,
    )
    try:
        output = _ssl_ca_crl.run(module, _ssl_ca_crl.CRL_FILE, "crl_files")
    except IngressError as exc:
        # The one place this module fails.
        exc.do_fail(module)
    else:
        module.exit_json(**output)


if __name__ == "__main__":
    main()
