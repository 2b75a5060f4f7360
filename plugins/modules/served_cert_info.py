#!/usr/bin/python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: served_cert_info
short_description: See which TLS certificate servers present, by handshakes with SNI to many targets at once
version_added: 0.1.0
description:
  - Makes one TLS handshake with each target (an address, a port and an SNI name) and reports the leaf certificate
    the server presented, in the forms HAProxy's C(show ssl cert) uses (serial, SHA1 fingerprint, names), so it
    compares directly with M(ingress.haproxy.haproxy_ssl_cert_info) and with the bundles.
  - The handshakes run in parallel threads, at most O(concurrency) at a time, so one call checks every instance and
    every certificate. Use one call with a list of targets instead of a loop.
  - A target that is down, refuses the handshake or stays silent is an error for that target only; the others are
    still checked.
  - By default nothing is validated, since the point is to see what is served, trusted or not.
author:
  - ingress.haproxy maintainers (@ingress-haproxy)
extends_documentation_fragment:
  - ingress.haproxy._attributes
  - ingress.haproxy._cryptography
  - ingress.haproxy._attributes.INFO_MODULE
options:
  targets:
    description:
      - The handshakes to make, one per entry. RV(served) lists them in the same order.
    type: list
    elements: dict
    required: true
    suboptions:
      address:
        description:
          - Host name, IPv4 or IPv6 address (with or without brackets) to connect to.
        type: str
        required: true
      port:
        description:
          - TCP port of the TLS frontend.
        type: int
        required: true
      servername:
        description:
          - The SNI name to send; it selects the certificate on a server with several.
          - Empty sends no SNI (the server's default certificate).
        type: str
        default: ""
      expected_fingerprint:
        description:
          - SHA1 fingerprint of the leaf this target must present, uppercase hex without separators as C(show ssl cert)
            and M(ingress.haproxy.haproxy_cert_bundle) return it (colons and lowercase are accepted too).
          - Sets RV(served[].matches). Unset leaves it V(null) and never fails the call.
        type: str
      name:
        description:
          - A label for this target, returned as it is and used in messages (for example V(h1/www)).
        type: str
      key_type:
        description:
          - What kind of server key the client can use. V(any) is a modern client (TLS 1.3, every cipher suite).
          - V(EC) or V(RSA) makes a TLS 1.2 handshake offering only the ECDHE-ECDSA or only the ECDHE-RSA cipher
            suites, so a server holding an ECDSA and an RSA certificate for the same name (HAProxy picks by what the
            client can use) must present that one.
        type: str
        choices: [any, EC, RSA]
        default: any
  timeout:
    description:
      - Seconds allowed for each target's TCP connect plus TLS handshake (a deadline for both together, not per read).
      - Host names are resolved before the deadline starts.
    type: float
    default: 5
  concurrency:
    description:
      - How many handshakes run at the same time.
    type: int
    default: 16
  validate_certs:
    description:
      - Validate the chain (against O(ca_file), else the system's trust store) and that the certificate holds the
        SNI name (the address when O(targets[].servername) is empty).
      - A target that does not validate gets an RV(served[].error), RV(served[].verified=false), and still the
        summary of what it presented (read by a second handshake that checks nothing).
    type: bool
    default: false
  ca_file:
    description:
      - PEM file of the CA certificates to trust with O(validate_certs=true). Ignored (with a warning) otherwise.
    type: path
  fail_on_error:
    description:
      - Fail the task when any target has an error in RV(served[].error) (no connection, no handshake, timeout, not
        trusted).
      - With V(false) the task succeeds and the errors are in RV(served) only.
    type: bool
    default: true
  fail_on_mismatch:
    description:
      - Fail the task when any target presents another leaf than its O(targets[].expected_fingerprint).
      - Targets without an expected fingerprint never fail on this.
      - With V(false) the task succeeds and RV(served[].matches) says which differ.
    type: bool
    default: true
notes:
  - The module makes network connections from the host it runs on (usually the controller, with C(delegate_to)
    or a local connection), not from the HAProxy hosts.
  - Reading only, never changes anything; it runs in check mode too.
seealso:
  - module: ingress.haproxy.haproxy_ssl_cert_info
    description: What one HAProxy process holds in memory, through the Runtime API.
  - module: community.crypto.get_certificate
    description: One handshake with many more options; one module call per target.
"""

EXAMPLES = r"""
- name: What every instance serves for www.example.com, and is it the new certificate?
  ingress.haproxy.served_cert_info:
    targets: "{{ query('ingress.haproxy.service_instances', 'haproxy') | map('community.general.dict_kv', 'address')
                 | map('combine', {'port': 443, 'servername': 'www.example.com', 'expected_fingerprint': bundle.fingerprint})
                 | list }}"
  register: served

- name: Two certificates on two instances, by name, without failing
  ingress.haproxy.served_cert_info:
    targets:
      - {name: h1/www, address: 10.0.0.5, port: 443, servername: www.example.com}
      - {name: h1/api, address: 10.0.0.5, port: 443, servername: api.example.com}
      - {name: h2/www, address: "2001:db8::6", port: 443, servername: www.example.com}
      - {name: h2/api, address: "2001:db8::6", port: 443, servername: api.example.com}
    timeout: 3
    fail_on_error: false
  register: served

- name: Certificates served that expire within 30 days
  ansible.builtin.debug:
    msg: "{{ served.served | rejectattr('days_left', 'none') | selectattr('days_left', 'lt', 30) | map(attribute='name') | list }}"

- name: Also check that clients would trust it
  ingress.haproxy.served_cert_info:
    targets:
      - {address: www.example.com, port: 443, servername: www.example.com}
    validate_certs: true
    ca_file: /etc/ssl/certs/internal-ca.pem
"""

RETURN = r"""
served:
  description: One entry per target, in the order of O(targets).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: O(targets[].name), or V(null).
      type: str
      sample: h1/www
    address:
      description: The address connected to (without brackets).
      type: str
      sample: 10.0.0.5
    port:
      description: The port connected to.
      type: int
      sample: 443
    servername:
      description: The SNI name sent (empty for none).
      type: str
      sample: www.example.com
    client_key_type:
      description: The target's O(targets[].key_type) (V(any), V(EC) or V(RSA)).
      type: str
      sample: any
    expected_fingerprint:
      description: O(targets[].expected_fingerprint), normalised to uppercase hex, or V(null).
      type: str
      sample: 417A11CAE25F607B24F638B4A8AEE51D1E211477
    serial:
      description: Serial of the presented leaf, uppercase hex exactly as HAProxy's C(show ssl cert) prints it; V(null) without a certificate.
      type: str
      sample: 03ECC19BA54B25E85ABA46EE561B9A10D26F
    fingerprint:
      description: SHA1 fingerprint of the presented leaf, uppercase hex without separators; V(null) without a certificate.
      type: str
      sample: 417A11CAE25F607B24F638B4A8AEE51D1E211477
    not_before:
      description: Start of validity, ISO 8601 UTC.
      type: str
      sample: "2026-11-26T21:16:32Z"
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
      sample: "2027-02-25T21:16:32Z"
    days_left:
      description: Whole days until RV(served[].not_after); negative once expired.
      type: int
      sample: 89
    names:
      description: DNS names (subject alternative names) of the leaf, sorted.
      type: list
      elements: str
      sample: [example.com, www.example.com]
    subject:
      description: Subject of the leaf in HAProxy's one-line form.
      type: str
      sample: /CN=www.example.com
    issuer:
      description: Issuer of the leaf in HAProxy's one-line form.
      type: str
      sample: /C=US/O=Let's Encrypt/CN=R11
    key_type:
      description: Key type of the leaf (V(RSA), V(EC), V(DSA), V(Ed25519), V(Ed448)).
      type: str
      sample: EC
    matches:
      description:
        - Whether RV(served[].fingerprint) is O(targets[].expected_fingerprint).
        - V(null) when no fingerprint was expected or no certificate was presented.
      type: bool
      sample: true
    verified:
      description: With O(validate_certs=true), whether chain and name validated; V(null) otherwise.
      type: bool
      sample: null
    error:
      description: Why this target gave no (trusted) certificate, or V(null).
      type: str
      sample: "cannot connect: Connection refused"
    seconds:
      description: How long this target's handshake(s) took.
      type: float
      sample: 0.012
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
from ansible_collections.ingress.haproxy.plugins.module_utils import _tls_served
from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError


TARGET_SPEC = dict(
    address=dict(type="str", required=True),
    port=dict(type="int", required=True),
    servername=dict(type="str", default=""),
    expected_fingerprint=dict(type="str"),
    name=dict(type="str"),
    key_type=dict(type="str", choices=list(_tls_served.KEY_TYPES), default="any"),
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            targets=dict(type="list", elements="dict", required=True, options=TARGET_SPEC),
            timeout=dict(type="float", default=_tls_served.DEFAULT_TIMEOUT),
            concurrency=dict(type="int", default=_tls_served.DEFAULT_CONCURRENCY),
            validate_certs=dict(type="bool", default=False),
            ca_file=dict(type="path"),
            fail_on_error=dict(type="bool", default=True),
            fail_on_mismatch=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["ca_file"] and not params["validate_certs"]:
        module.warn("ca_file is ignored: validate_certs is false, so nothing is validated")

    entries = []
    try:
        _pem.require_cryptography()
        targets = [_tls_served.make_target(spec, index=index) for index, spec in enumerate(params["targets"])]
        handshakes = _tls_served.handshake_all(
            targets,
            timeout=params["timeout"],
            concurrency=params["concurrency"],
            validate=params["validate_certs"],
            ca_file=params["ca_file"],
        )
        entries = [_tls_served.served_entry(handshake) for handshake in handshakes]
        failures = _tls_served.problems(
            entries, targets, fail_on_error=params["fail_on_error"], fail_on_mismatch=params["fail_on_mismatch"]
        )
        if failures:
            raise IngressError("%d of %d targets failed: %s" % (len(failures), len(entries), "; ".join(failures)))
    except IngressError as exc:
        # The one place this module fails.
        exc.do_fail(module, served=entries)
    module.exit_json(changed=False, served=entries)


if __name__ == "__main__":
    main()
