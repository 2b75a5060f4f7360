# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private filters of the ingress.haproxy.certificates role, not for use
# outside this collection: their names and arguments may change in any release.

"""The certificates role's decisions (plugins/plugin_utils/_certificates_role.py) as Jinja filters.

Each filter is one function of that module; a CertificatesRoleError becomes
one AnsibleFilterError with its message, which names the variable at fault.
"""

from __future__ import annotations

import functools

from ansible.errors import AnsibleFilterError

from ansible_collections.ingress.haproxy.plugins.plugin_utils import _certificates_role as role

_EXPORTED = (
    "settings", "acme_contact", "acme_terms_problem", "select", "zone_problem", "renewal_decisions",
    "challenge_records", "failed_results", "rfc2136_hint", "bundle_entries", "bundle_read_entries", "bundles", "bundle_failure",
    "persist_hosts", "instances", "push_endpoints", "push_certificates", "push_outcome", "persist_plan", "persisted",
    "handshake_targets", "verify_outcome", "report", "report_lines", "status_rows", "status_lines",
)


def _guarded(function):
    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except role.CertificatesRoleError as exc:
            raise AnsibleFilterError(str(exc)) from None

    return run


class FilterModule:
    """ingress.haproxy._certificates_NAME for every decision NAME of the certificates role."""

    def filters(self):
        return {"_certificates_" + name: _guarded(getattr(role, name)) for name in _EXPORTED}
