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
  - With O(endpoints) instead of O(endpoint), the same certificates are converged on many HAProxy processes in this
    one call (for example every task of a Swarm service), each over its own connection in its own thread, at most
    O(concurrency) at a time. Each bundle is read once and validated before any connection. An endpoint that cannot be
    reached or fails is reported in its RV(instances) entry and the others are converged all the same; the module
    then fails naming every endpoint that failed.
  - Every bundle is validated first, on the host the module runs on; when one is bad nothing at all is sent. A
    bundle must parse, hold exactly one private key that matches the leaf, list the chain in order leaf to issuers,
    and the leaf must be inside its validity window (unless O(allow_expired=true)).
  - For each certificate the module reads C(show ssl cert PATH) and compares the serial, the SHA1 fingerprint and the
    chain HAProxy reports with the bundle. When they are equal nothing is sent. Otherwise it sends
    C(set ssl cert PATH) and C(commit ssl cert PATH), then reads C(show ssl cert PATH) again and fails unless
    HAProxy now reports the new certificate. Any error after the C(set) aborts the transaction
    (C(abort ssl cert PATH)) before the module fails, so no transaction is left open.
  - The module asks only about the certificates it is given, never for the list of every certificate HAProxy
    holds; it learns which certificate transaction is open from C(abort ssl cert) on a name no certificate can
    have (C(/dev/null/ingress.haproxy-transaction-probe)), which aborts nothing. Below level admin, where HAProxy
    refuses that command, it reads the head of C(show ssl cert) instead.
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
    putting B's content into A's transaction; that transaction is then aborted at once (it holds content meant for
    another name, and its owner's commit must fail rather than serve it) and the module sends again. A transaction
    left open on one of the module's own certificates (by an earlier run that died) is replaced.
  - Another client writing certificates to the same process at the same time is survived. After the commit the
    module reads what HAProxy holds; when it is not the bundle (another client's C(set) landed in the
    transaction), it sends the bundle again until HAProxy holds it or O(timeout) runs out (each certificate's
    RV(certificates[].retries) counts the extra tries). The failure names every certificate that still holds
    foreign content and what it holds.
  - Runs of this module on one host that change the same HAProxy process take turns, whichever endpoint they
    reach it by. The process is recognised by C(show info) (node, pid and start time); the lock is an exclusive
    C(flock) on a file in a private directory under the system temp dir (C($TMPDIR/ingress.haproxy-locks-UID)),
    released when the run ends or dies; a run waits for it at most O(timeout) seconds. Check mode takes no lock.
  - Names are sent as words of HAProxy's command line, which splits a line at C(;) and at whitespace and treats
    backslash and quotes specially. A O(path), O(crt_list), SNI filter, C(cert_dir) of O(endpoints) or word of
    O(crt_list_options) holding any of them, or a control character, is refused before anything is sent.
  - Changes are made in memory only. Write the bundle where HAProxy loads it at start as well (for example with
    M(ingress.haproxy.haproxy_cert_bundle)) so a restart serves the same certificate.
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
      - Reads what HAProxy holds and reports what would change; sends no C(set), C(commit), C(new), C(add) or C(del).
      - With O(endpoints), per endpoint.
      - Works on a socket with C(level operator), except for new certificates and O(state=absent), which read the
        crt-lists (that needs C(level admin)).
  diff_mode:
    support: full
    details:
      - Shows serial, SHA1 fingerprint, notAfter and DNS names before and after for each changed certificate; never
        key material.
      - With O(endpoints), one diff per endpoint and changed certificate, headed C(ENDPOINT PATH).
  idempotent:
    support: partial
    details:
      - A second run with the same bundles sends no C(set).
      - Except for leaf keys other than RSA, EC and DSA (such as Ed25519), for which HAProxy prints no fingerprint;
        those are sent on every run, with a warning.
options:
  endpoint:
    description:
      - Where the Runtime API of one HAProxy process listens (a C(stats socket), or the master CLI of a
        master-worker HAProxy together with O(process)).
      - A unix socket as C(/run/haproxy/admin.sock) or C(unix:/run/haproxy/admin.sock); a TCP socket as
        C(tcp:HOST:PORT), C(HOST:PORT) or C([IPv6]:PORT).
      - The module connects once and sends every command over that one connection in interactive C(prompt) mode.
      - Changing certificates needs a socket with C(level admin); reading them works with C(level operator).
      - The socket is reached from the host the module runs on.
      - Exactly one of O(endpoint) and O(endpoints) is required.
    type: str
    required: false
  endpoints:
    description:
      - The Runtime APIs of many HAProxy processes. The same certificates are converged on every one of them, in
        parallel, one connection each.
      - Each entry is an endpoint written as O(endpoint), or a dictionary with C(endpoint) (required) and optionally
        C(process) (the master CLI prefix for this endpoint, instead of O(process)), C(cert_dir) (the directory this
        process loads the certificates from; it replaces the directory of every certificate's O(path) there, so
        V(/etc/haproxy/certs/www.pem) becomes C(CERT_DIR/www.pem)) and C(crt_list) (the crt-list new certificates
        are added to on this process, instead of each certificate's O(crt_list)).
      - O(timeout) and O(tune_bufsize) apply to every endpoint.
      - The result is then RV(instances), one entry per endpoint in this order, instead of RV(certificates).
      - An endpoint listed twice (with the same process) is refused, since two sessions on one process would race
        each other's transactions.
      - Endpoints that reach the same HAProxy process by different addresses (its unix and TCP sockets, the master
        CLI, an IPv4 and an IPv6 address) are recognised by C(show info) (node, pid, start time) and converged once,
        through the first of them; its RV(instances[].aliases) lists the others, whose entries repeat its outcome
        with RV(instances[].alias_of). An alias with another C(cert_dir) or C(crt_list) fails, sending nothing.
      - Exactly one of O(endpoint) and O(endpoints) is required.
    type: list
    elements: raw
    version_added: 0.2.0
  concurrency:
    description:
      - With O(endpoints), how many endpoints are worked on at the same time (one thread and one connection each).
    type: int
    default: 16
    version_added: 0.2.0
  path:
    description:
      - The certificate's name in HAProxy, which is the path of the file it was loaded from (as C(show ssl cert)
        lists it).
      - A certificate a C(crt-store) section loads (HAProxy 3.2 and later) is named C(@STORE/NAME); it is updated
        (also in check mode, with diff, split in two above O(tune_bufsize)) like a file's. Creating one with
        O(state=present) does not add it to the section (HAProxy has no such command), and C(cert_dir) of
        O(endpoints) would rewrite its name, so do not use it for such names.
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
      - HAProxy 2.6 to 3.2 close the connection on a larger command; 3.4 reads a payload larger than its buffer, so
        with 3.4 a larger value lets a larger bundle go in one command.
    type: int
    default: 16384
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

- name: Push the renewed certificate into every task of the Swarm service haproxy, in parallel, in one call
  ingress.haproxy.haproxy_ssl_cert:
    endpoints: "{{ query('ingress.haproxy.service_instances', 'haproxy', port=9999) }}"
    path: /etc/haproxy/certs/www.example.com.pem
    src: /srv/bundles/www.example.com.pem
  register: pushed

- name: The same, where each process loads the certificates from its own directory and crt-list
  ingress.haproxy.haproxy_ssl_cert:
    endpoints:
      - endpoint: 10.0.0.5:9999
        cert_dir: /srv/haproxy-a/certs
        crt_list: /srv/haproxy-a/crt-list.txt
      - endpoint: /run/haproxy-b/master.sock
        process: "@1"
        cert_dir: /srv/haproxy-b/certs
        crt_list: /srv/haproxy-b/crt-list.txt
    path: /etc/haproxy/certs/www.example.com.pem
    src: /srv/bundles/www.example.com.pem

- name: Show what each instance did
  ansible.builtin.debug:
    msg: "{{ item.endpoint }}: {{ item.msg if item.failed else item.certificates | map(attribute='action') | join(', ') }}"
  loop: "{{ pushed.instances }}"
  loop_control:
    label: "{{ item.endpoint }}"

- name: Stop serving a certificate
  ingress.haproxy.haproxy_ssl_cert:
    endpoint: /run/haproxy/admin.sock
    path: /etc/haproxy/certs/old.example.com.pem
    state: absent
"""

RETURN = r"""
certificates:
  description: One entry per certificate, in the order they were given.
  returned: with O(endpoint)
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
    retries:
      description:
        - How many times the certificate was sent again because another client got in the way (its transaction
          was open, or its C(set) landed in ours and HAProxy held something else after the commit).
      type: int
      returned: when it happened
      version_added: 0.2.0
instances:
  description:
    - One entry per endpoint of O(endpoints), in the order they were given.
  returned: with O(endpoints)
  type: list
  elements: dict
  contains:
    endpoint:
      description: The endpoint, as given.
      type: str
      sample: 127.0.0.11:9999
    failed:
      description: Whether converging this endpoint failed.
      type: bool
      sample: false
    msg:
      description: Why it failed, naming the certificate and the endpoint.
      type: str
      returned: when RV(instances[].failed=true)
      sample: "certificate /etc/haproxy/certs/www.example.com.pem on 10.0.0.7:9999: cannot connect to the Runtime API
        at 10.0.0.7:9999: Connection refused"
    changed:
      description: Whether any certificate changed on this endpoint.
      type: bool
      sample: true
    aliases:
      description: The other endpoints of O(endpoints) that reach the same HAProxy process; converged through this one.
      type: list
      elements: str
      returned: when there are any
      sample: [/run/haproxy/admin.sock]
      version_added: 0.2.0
    alias_of:
      description: This endpoint reaches the same HAProxy process as this earlier one; its outcome is repeated here.
      type: str
      returned: for an alias
      sample: 127.0.0.11:9999
      version_added: 0.2.0
    certificates:
      description:
        - One entry per certificate, in the order they were given, with the same keys as RV(certificates); C(path)
          is the name on this endpoint (after C(cert_dir)).
        - On a failed endpoint, the certificates handled before the failure.
      type: list
      elements: dict
      sample: [{path: /etc/haproxy/certs/www.example.com.pem, state: present, action: updated, changed: true,
                before: {serial: 03ECC1, fingerprint: 417A11CAE25F607B24F638B4A8AEE51D1E211477,
                         not_after: "2027-02-25T21:16:32Z", names: [www.example.com]},
                after: {serial: 04A1B2, fingerprint: 5B6D3E6F1C0A4E2C9F08C41D6D47E29BD2F0A1C3,
                        not_after: "2027-05-26T21:16:32Z", names: [www.example.com]}}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_converge import (
    ConvergeError,
    converge_endpoint,
    describe_paths,
    diff_of,
    items_from_params,
    prepare_requests,
)
from ansible_collections.ingress.haproxy.plugins.module_utils import _ssl_cert_fanout as fanout


def _check_bufsize(params, where):
    if params["tune_bufsize"] < 1024:
        raise ConvergeError("%s on %s: tune_bufsize %d is too small (HAProxy's default is 16384); nothing was sent"
                            % (describe_paths(item["path"] for item in items_from_params(params)),
                               where, params["tune_bufsize"]))


def _converge_one(module):
    """endpoint: the result is ``certificates``."""
    params = module.params
    try:
        endpoint = api.parse_endpoint(params["endpoint"])
        process = api.check_process(params["process"], endpoint=params["endpoint"])
    except api.RuntimeApiError as exc:
        raise ConvergeError("%s on %s: %s" % (describe_paths(item["path"] for item in items_from_params(params)),
                                              params["endpoint"], exc), certificates=[], changed=False)
    _check_bufsize(params, params["endpoint"])
    requests = prepare_requests(items_from_params(params), endpoint, process=process,
                                bufsize=params["tune_bufsize"], allow_expired=params["allow_expired"])
    results, error, warnings = converge_endpoint(
        endpoint, requests, process=process, timeout=params["timeout"], bufsize=params["tune_bufsize"],
        check_mode=module.check_mode, force=params["force"], abort_pending=params["abort_pending"])
    for warning in warnings:
        module.warn(warning)
    changed = any(result.get("changed") for result in results)
    if error is not None:
        raise ConvergeError(error, certificates=results, changed=changed)
    output = dict(changed=changed, certificates=results)
    if module._diff:
        output["diff"] = diff_of(results)
    return output


def _converge_many(module):
    """endpoints: every bundle validated once, then each endpoint in its own thread; the result is ``instances``."""
    params = module.params
    targets = fanout.parse_endpoints(params["endpoints"], process=params["process"], concurrency=params["concurrency"])
    _check_bufsize(params, fanout.describe_endpoints(targets))
    variants = fanout.prepare_variants(targets, items_from_params(params), bufsize=params["tune_bufsize"],
                                       allow_expired=params["allow_expired"])
    instances, warnings = fanout.converge_endpoints(
        targets, variants, timeout=params["timeout"], bufsize=params["tune_bufsize"],
        check_mode=module.check_mode, force=params["force"], abort_pending=params["abort_pending"],
        concurrency=params["concurrency"])
    for warning in warnings:
        module.warn(warning)
    changed = any(instance["changed"] for instance in instances)
    error = fanout.failure_message(instances)
    if error is not None:
        raise ConvergeError(error, instances=instances, changed=changed)
    output = dict(changed=changed, instances=instances)
    if module._diff:
        output["diff"] = fanout.diff_of_instances(instances)
    return output


NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def _without_secrets(value, secrets, shortest):
    """A copy of ``value`` with every no_log value masked, as Ansible's remove_values masks it.

    A string equal to a secret becomes the placeholder; a secret inside a
    longer string becomes ********. Only strings at least as long as the
    shortest secret are searched: Ansible tries every secret on every string
    and every number, which costs 1,000 x 15,000 tries for a bulk call.
    """
    if isinstance(value, str):
        if value in secrets:
            return NO_LOG_PLACEHOLDER
        if len(value) >= shortest:
            for secret in secrets:
                value = value.replace(secret, "*" * 8)
        return value
    if isinstance(value, dict):
        return dict((_without_secrets(key, secrets, shortest), _without_secrets(item, secrets, shortest))
                    for key, item in value.items())
    if isinstance(value, (list, tuple, set)):
        return [_without_secrets(item, secrets, shortest) for item in value]
    if isinstance(value, (bool, type(None))):
        return value
    if isinstance(value, (int, float)):
        text = str(value)
        if len(text) >= shortest and any(secret in text for secret in secrets):
            return NO_LOG_PLACEHOLDER
        return value
    # Anything else goes through Ansible's own scrubbing (see _returned).
    raise TypeError(type(value).__name__)


def _returned(module, method, **result):
    """``exit_json`` or ``fail_json`` with the no_log values masked in one pass over the result.

    The result (and the invocation Ansible would add: the parameters) is
    masked here; Ansible's own pass then has nothing left to find, so it is
    given no values to look for. Should anything in the result be of a type
    this pass does not know, Ansible's pass runs as usual.
    """
    secrets = set(module.no_log_values)
    if secrets:
        try:
            shortest = min(len(secret) for secret in secrets)
            masked = _without_secrets(dict(result, invocation={"module_args": module.params}), secrets, shortest)
        except TypeError:
            masked = None
        if masked is not None:
            result = masked
            module.no_log_values = set()
    method(**result)


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
            endpoint=dict(type="str"),
            endpoints=dict(type="list", elements="raw"),
            concurrency=dict(type="int", default=fanout.DEFAULT_CONCURRENCY),
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
            ("endpoint", "endpoints"),
            ("path", "certificates"),
            ("src", "content"),
            ("certificates", "src"),
            ("certificates", "content"),
            ("certificates", "sni_filters"),
        ],
        required_one_of=[("endpoint", "endpoints"), ("path", "certificates")],
        supports_check_mode=True,
    )
    many = module.params["endpoints"] is not None
    try:
        _pem.require_cryptography()
        output = _converge_many(module) if many else _converge_one(module)
    except IngressError as exc:
        # The one place this module fails; a failure before any endpoint was reached has an empty result.
        _returned(module, module.fail_json, msg=exc.message,
                  **dict({"instances" if many else "certificates": [], "changed": False}, **exc.result))
    else:
        _returned(module, module.exit_json, **output)


if __name__ == "__main__":
    main()
