# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # The cryptography floor, as plugins/module_utils/_pem.py declares and checks it (a unit test keeps them equal).
    DOCUMENTATION = r"""
options: {}
requirements:
  - cryptography >= 37.0.0 on the host the module runs on
"""
