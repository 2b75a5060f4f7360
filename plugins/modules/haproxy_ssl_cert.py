#!/usr/bin/python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: haproxy_ssl_cert
short_description: Replace, add or remove the TLS certificates a running HAProxy process serves
version_added: 0.1.0
description:
  - Converges the certificates one HAProxy process holds in memory through its Runtime API, without a reload and
    without dropping a connection. One call handles one certificate (O(path) with O(src) or O(content)) or many
    (O(certificates)), all over one connection.
  - Every bundle is validated first, on the host the module runs on; when one is bad nothing at all is sent. A
    bundle must parse, hold exactly one private key that matches the leaf, list the chain in order leaf to issuers,
    and the leaf must be inside its validity window (unless O(allow_expired=true)).
  - For each certificate the module reads C(show ssl cert PATH) and compares the serial, the SHA1 fingerprint and the
    chain HAProxy reports with the bundle. When they are equal nothing is sent. Otherwise it sends
    C(set ssl cert PATH) and C(commit ssl cert PATH), then reads C(show ssl cert PATH) again and fails unless
    HAProxy now reports the new certificate. Any error after the C(set) aborts the transaction
    (C(abort ssl cert PATH)) before the module fails, so no transaction is left open.
  - A certificate HAProxy does not hold yet is created with C(new ssl cert), filled and committed, then added to
    O(crt_list) with its SSL options and SNI filters (C(add ssl crt-list)). Without O(crt_list) that is an error.
  - O(state=absent) removes the certificate from every crt-list that holds it (C(del ssl crt-list)), then deletes
    it (C(del ssl cert)).
  - The PEM is sent without blank lines (a blank line ends a Runtime API payload). A command must fit HAProxy's
    buffer (O(tune_bufsize)); a bundle that does not is sent as two commands in the same transaction, the
    certificates as C(set ssl cert PATH) and the key as C(set ssl cert PATH.key). When the certificates alone do not
    fit, the module fails before sending anything.
  - HAProxy allows one certificate transaction per process. The module reads the open transaction once when it
    connects. One on another certificate is waited for up to O(timeout) seconds, then reported by name, or aborted
    with O(abort_pending=true). Every C(set) reply is checked to name the module's own certificate, because
    HAProxy builds without the 2024 fix (such as Debian 12's 2.6.12) answer a C(set) on B while A is open by
    putting B's content into A's transaction. A transaction left open on one of the module's own certificates (by
    an earlier run that died) is replaced.
  - Changes are made in memory only. Write the bundle where HAProxy loads it at start as well (for example with
    M(ingress.haproxy.haproxy_cert_bundle)) so a restart serves the same certificate.
author:
  - ingress.haproxy maintainers (@ingress-haproxy)
extends_documentation_fragment:
  - ingress.haproxy._attributes
  - ingress.haproxy.runtime_api
attributes:
  check_mode:
    support: full
    details:
      - Reads what HAProxy holds and reports what would change; sends no C(set), C(commit), C(new), C(add) or C(del).
      - Works on a socket with C(level operator), except for new certificates and O(state=absent), which read the
        crt-lists (that needs C(level admin)).
  diff_mode:
    support: full
    details:
      - Shows serial, SHA1 fingerprint, notAfter and DNS names before and after for each changed certificate; never
        key material.
  idempotent:
    support: partial
    details:
      - A second run with the same bundles sends no C(set).
      - Except for leaf keys other than RSA, EC and DSA (such as Ed25519), for which HAProxy prints no fingerprint;
        those are sent on every run, with a warning.
options:
  path:
    description:
      - The certificate's name in HAProxy, which is the path of the file it was loaded from (as C(show ssl cert)
        lists it).
      - Mutually exclusive with O(certificates).
    type: str
  src:
    description:
      - PEM bundle (leaf, intermediates, private key) to load for O(path), read on the host the module runs on.
      - Mutually exclusive with O(content).
    type: path
  content:
    description:
      - The PEM bundle itself, as a string.
      - Mutually exclusive with O(src).
    type: str
  state:
    description:
      - V(present) makes HAProxy serve the bundle; V(absent) removes the certificate.
      - With O(certificates), the default for entries that do not set their own.
    type: str
    choices: [present, absent]
    default: present
  crt_list:
    description:
      - The crt-list (as C(show ssl crt-list) lists it) a new certificate is added to.
      - Only used when HAProxy does not hold the certificate yet.
      - With O(certificates), the default for entries that do not set their own.
    type: str
  crt_list_options:
    description:
      - The SSL options of the new crt-list line, without the surrounding brackets, for example
        V(alpn h2,http/1.1 ssl-min-ver TLSv1.2).
      - With O(certificates), the default for entries that do not set their own.
    type: str
  sni_filters:
    description:
      - SNI filters of the new crt-list line, for example V([www.example.com, "*.example.com", "!old.example.com"]).
      - Without filters HAProxy uses the certificate's own names.
    type: list
    elements: str
  certificates:
    description:
      - Many certificates in one call, over one connection. Results come back in the same order.
      - Mutually exclusive with O(path), O(src), O(content) and O(sni_filters).
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
      state:
        description: As O(state).
        type: str
        choices: [present, absent]
      crt_list:
        description: As O(crt_list).
        type: str
      crt_list_options:
        description: As O(crt_list_options).
        type: str
      sni_filters:
        description: As O(sni_filters).
        type: list
        elements: str
  force:
    description:
      - Send and commit the bundle even when HAProxy already holds the same certificate.
    type: bool
    default: false
  allow_expired:
    description:
      - Accept a leaf outside its validity window (expired or not valid yet).
    type: bool
    default: false
  abort_pending:
    description:
      - Abort a certificate transaction another client left open on another certificate (after waiting O(timeout)
        seconds for it) instead of failing.
    type: bool
    default: false
  tune_bufsize:
    description:
      - The C(tune.bufsize) of the HAProxy process (16384 unless its configuration sets it). One Runtime API command
        must fit it; the module splits or refuses bundles that would not, before sending.
    type: int
    default: 16384
requirements:
  - cryptography >= 41.0.0
notes:
  - HAProxy 2.4 or newer. The module parses C(show ssl cert) by field name, so the lines newer versions add do not
    matter.
  - For leaf keys other than RSA, EC and DSA (Ed25519, Ed448), HAProxy's C(show ssl cert) stops after C(Algorithm:)
    and prints no fingerprint. Such certificates cannot be compared, so the module sends them on every run, reports
    them as changed, says so in a warning, and verifies the commit by serial number.
seealso:
  - module: ingress.haproxy.haproxy_ssl_cert_info
  - module: ingress.haproxy.haproxy_cert_bundle
  - name: HAProxy Runtime API, set ssl cert
    description: The commands this module uses.
    link: https://docs.haproxy.org/2.6/management.html#9.3-set%20ssl%20cert
"""

EXAMPLES = r"""
- name: Serve the renewed certificate (nothing is sent when HAProxy already has it)
  ingress.haproxy.haproxy_ssl_cert:
    endpoint: /run/haproxy/admin.sock
    path: /etc/haproxy/certs/www.example.com.pem
    src: /etc/haproxy/certs/www.example.com.pem

- name: Many certificates over one connection, to the first worker behind a master CLI
  ingress.haproxy.haproxy_ssl_cert:
    endpoint: /run/haproxy/master.sock
    process: "@1"
    certificates:
      - path: /etc/haproxy/certs/www.example.com.pem
        src: /srv/bundles/www.example.com.pem
      - path: /etc/haproxy/certs/api.example.com.pem
        src: /srv/bundles/api.example.com.pem

- name: Add a certificate HAProxy does not hold yet to a crt-list, with options and SNI filters
  ingress.haproxy.haproxy_ssl_cert:
    endpoint: 10.0.0.5:9999
    path: /etc/haproxy/certs/shop.example.com.pem
    content: "{{ lookup('ansible.builtin.file', 'shop.example.com.pem') }}"
    crt_list: /etc/haproxy/crt-list.txt
    crt_list_options: alpn h2,http/1.1 ssl-min-ver TLSv1.2
    sni_filters:
      - shop.example.com
      - "!old.shop.example.com"

- name: Stop serving a certificate
  ingress.haproxy.haproxy_ssl_cert:
    endpoint: /run/haproxy/admin.sock
    path: /etc/haproxy/certs/old.example.com.pem
    state: absent
"""

RETURN = r"""
certificates:
  description: One entry per certificate, in the order they were given.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The certificate's name in HAProxy.
      type: str
      sample: /etc/haproxy/certs/www.example.com.pem
    state:
      description: The state asked for.
      type: str
      sample: present
    action:
      description: What was done (or, in check mode, would be done).
      type: str
      choices: [created, updated, unchanged, removed]
      sample: updated
    changed:
      description: Whether this certificate changed.
      type: bool
      sample: true
    before:
      description:
        - What HAProxy served before, or V(null) when it did not hold the certificate.
      type: dict
      contains:
        serial:
          description: Serial number, uppercase hex as HAProxy prints it.
          type: str
          sample: 03ECC19BA54B25E85ABA46EE561B9A10D26F
        fingerprint:
          description: SHA1 fingerprint of the leaf, uppercase hex; V(null) for key types HAProxy prints none for.
          type: str
          sample: 417A11CAE25F607B24F638B4A8AEE51D1E211477
        not_after:
          description: End of validity, ISO 8601 UTC.
          type: str
          sample: "2027-02-25T21:16:32Z"
        names:
          description: DNS names of the leaf, sorted.
          type: list
          elements: str
          sample: [example.com, www.example.com]
    after:
      description:
        - What HAProxy serves afterwards (as it reports it after the commit), or V(null) after removal. In check mode,
          the bundle's values.
      type: dict
      sample: {serial: 04A1B2, fingerprint: 5B6D3E6F1C0A4E2C9F08C41D6D47E29BD2F0A1C3, not_after: "2027-02-25T21:16:32Z",
               names: [www.example.com]}
    crt_list:
      description: The crt-list a created certificate was added to.
      type: str
      returned: when RV(certificates[].action=created) and a crt-list was given
    crt_lists:
      description: The crt-lists a removed certificate was taken out of.
      type: list
      elements: str
      returned: when RV(certificates[].action=removed)
    replaced_transaction:
      description: An open transaction on this certificate, left by an earlier run, was replaced.
      type: bool
      returned: when it happened
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_converge import (
    ConvergeError,
    Converger,
    describe_paths,
    diff_of,
    items_from_params,
    prepare_requests,
)


def main():
    certificate_options = dict(
        path=dict(type="str", required=True),
        src=dict(type="path"),
        content=dict(type="str", no_log=True),
        state=dict(type="str", choices=["present", "absent"]),
        crt_list=dict(type="str"),
        crt_list_options=dict(type="str"),
        sni_filters=dict(type="list", elements="str"),
    )
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str", required=True),
            process=dict(type="str"),
            timeout=dict(type="float", default=10),
            path=dict(type="str"),
            src=dict(type="path"),
            content=dict(type="str", no_log=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            crt_list=dict(type="str"),
            crt_list_options=dict(type="str"),
            sni_filters=dict(type="list", elements="str"),
            certificates=dict(type="list", elements="dict", options=certificate_options),
            force=dict(type="bool", default=False),
            allow_expired=dict(type="bool", default=False),
            abort_pending=dict(type="bool", default=False),
            tune_bufsize=dict(type="int", default=api.DEFAULT_BUFSIZE),
        ),
        mutually_exclusive=[
            ("path", "certificates"),
            ("src", "content"),
            ("certificates", "src"),
            ("certificates", "content"),
            ("certificates", "sni_filters"),
        ],
        required_one_of=[("path", "certificates")],
        supports_check_mode=True,
    )
    if not _pem.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib(_pem.CRYPTOGRAPHY_REQUIREMENT),
                         exception=_pem.CRYPTOGRAPHY_IMPORT_ERROR)
    params = module.params
    results = []
    warnings = []
    error = None
    converger = None
    try:
        endpoint = api.parse_endpoint(params["endpoint"])
        process = api.check_process(params["process"], endpoint=params["endpoint"])
        if params["tune_bufsize"] < 1024:
            raise ConvergeError("%s on %s: tune_bufsize %d is too small (HAProxy's default is 16384); nothing was sent"
                                % (describe_paths(item["path"] for item in items_from_params(params)),
                                   params["endpoint"], params["tune_bufsize"]))
        requests = prepare_requests(items_from_params(params), endpoint, process=process,
                                    bufsize=params["tune_bufsize"], allow_expired=params["allow_expired"])
        with api.RuntimeSession(endpoint, process=process, timeout=params["timeout"],
                                bufsize=params["tune_bufsize"]) as session:
            if not module.check_mode:
                session.require_admin()
            converger = Converger(session, check_mode=module.check_mode, force=params["force"],
                                  abort_pending=params["abort_pending"])
            results = converger.run(requests)
    except ConvergeError as exc:
        error, results = exc.message, exc.results
    except api.RuntimeApiError as exc:
        error = "%s on %s: %s" % (describe_paths(item["path"] for item in items_from_params(params)),
                                  params["endpoint"], exc)
    if converger is not None:
        warnings = converger.warnings
    for warning in warnings:
        module.warn(warning)
    changed = any(result.get("changed") for result in results)
    if error is not None:
        module.fail_json(msg=error, certificates=results, changed=changed)
    output = dict(changed=changed, certificates=results)
    if module._diff:
        output["diff"] = diff_of(results)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
