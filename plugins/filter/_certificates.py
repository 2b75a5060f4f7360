# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: _certificates
short_description: The decisions of the certificates role (private)
version_added: 0.1.0
author:
  - ingress.haproxy maintainers
description:
  - Private to the P(ingress.haproxy.certificates#role) role; its decisions and arguments may change in any release.
  - Runs one decision of the role on the input - what is due and why, what each instance loads, the persist plan,
    the push, verify, report and status outcomes - and returns plain data keyed by certificate and instance name.
  - A bad role variable fails with a message naming the variable.
positional: decision
options:
  _input:
    description: What the decision works on (for example C(certificates_items) for V(select)).
    type: raw
    required: true
  decision:
    description: Which decision to run, one of the functions of C(plugins/plugin_utils/_certificates_role.py).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Pick the certificates of this run
  ansible.builtin.set_fact:
    _certificates_selected: "{{ certificates_items | ingress.haproxy._certificates('select', certificates_only, 'acme') }}"
"""

RETURN = r"""
_value:
  description: The decision's result.
  type: raw
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ingress.haproxy.plugins.plugin_utils import _certificates_role as role

DECISIONS = frozenset((
    "settings", "acme_contact", "acme_terms_problem", "acme_profile_problem", "acme_eab_problem", "select", "challenge_plan", "renewal_decisions",
    "ari_unavailable", "ari_answers", "ari_store_entries", "challenge_records", "rfc2136_hint", "bundle_entries", "bundle_read_entries", "bundles",
    "bundle_failure", "persist_hosts", "instances", "push_endpoints", "push_certificates", "push_outcome",
    "persist_plan", "persisted", "persisted_on_play_hosts", "handshake_targets", "verify_outcome", "report", "report_lines", "status_rows",
    "status_lines", "keep_previous_entries", "rollout_plan", "rollout_plan_lines", "wave_instances", "wave_verdict", "rollback_plan",
    "rolled_back", "rollback_persist_plan", "restore_store_entries", "merge_persisted",
    "trust_files", "trust_endpoints", "trust_outcome", "merge_trust",
))


def certificates(data, decision, *args, **kwargs):
    """Run one decision of the role; a CertificatesRoleError becomes one AnsibleFilterError with its message."""
    if decision not in DECISIONS:
        raise AnsibleFilterError("ingress.haproxy._certificates: unknown decision %r (known: %s)"
                                 % (decision, ", ".join(sorted(DECISIONS))))
    try:
        return getattr(role, decision)(data, *args, **kwargs)
    except role.CertificatesRoleError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """ingress.haproxy._certificates: the certificates role's decisions."""

    def filters(self):
        return {"_certificates": certificates}
