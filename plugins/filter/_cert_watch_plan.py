# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
name: _cert_watch_plan
short_description: (Private) what the cert_watch role installs, decided from its variables
version_added: 0.2.0
description:
  - Private to the C(ingress.haproxy.cert_watch) role; its input and output may change at any time.
  - Coerces the role's boolean and number variables (V(false), V("false"), V("no") and V(0) all mean false), checks
    every value, expands the watched paths to one directory per certbot lineage, and builds the units' command lines
    and the certbot deploy hook's lineage map, quoted for systemd and the shell.
positional: _input
options:
  _input:
    description: The role's variables, without the C(cert_watch_) prefix.
    type: dict
    required: true
  certbot_dir_exists:
    description: Whether the certbot configuration directory exists on the target (decides C(certbot_hook=auto)).
    type: bool
    default: false
author:
  - ingress.haproxy contributors
"""

EXAMPLES = r"""
---
- name: Decide what to install
  ansible.builtin.set_fact:
    cert_watch_plan: "{{ {'paths': ['/etc/letsencrypt/live/www'], 'manage_service': 'false'} | ingress.haproxy._cert_watch_plan }}"
"""

RETURN = r"""
---
_value:
  description: The plan; C(errors) lists what is wrong (empty when the variables are usable).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ingress.haproxy.plugins.plugin_utils._cert_watch import plan_cert_watch


def cert_watch_plan(settings, certbot_dir_exists=False):
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"_cert_watch_plan expects a dict of the role's variables, got {type(settings).__name__}")
    return plan_cert_watch(settings, certbot_dir_exists=certbot_dir_exists)


class FilterModule:
    """Private filters of the cert_watch role."""

    def filters(self):
        return {"_cert_watch_plan": cert_watch_plan}
