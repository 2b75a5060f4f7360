# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filter only dispatches: a known decision runs, an unknown one and a role error fail readably."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.ingress.haproxy.plugins.filter._certificates import FilterModule

certificates = FilterModule().filters()["_certificates"]


def test_a_decision_runs_with_its_arguments():
    assert certificates({"certificates_force_renew": "no"}, "settings") == {"force_renew": False}


def test_a_bad_variable_fails_naming_it():
    with pytest.raises(AnsibleFilterError, match="certificates_force_renew is 'perhaps'"):
        certificates({"certificates_force_renew": "perhaps"}, "settings")


def test_an_unknown_decision_is_refused():
    with pytest.raises(AnsibleFilterError, match="unknown decision 'CertificatesRoleError'"):
        certificates({}, "CertificatesRoleError")
