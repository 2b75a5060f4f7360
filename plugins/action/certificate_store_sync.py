# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The documentation is in plugins/modules/certificate_store_sync.py; the logic in
# plugins/plugin_utils/_certificate_store.py. This runs on the controller only.

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.ingress.haproxy.plugins.plugin_utils import _certificate_store as store_sync

ARGUMENT_SPEC = {
    "direction": {"type": "str", "required": True, "choices": ["pull", "push"]},
    "store_dir": {"type": "path", "required": True},
    "checkout_dir": {"type": "path", "required": True},
    "vault_password_file": {"type": "path", "required": True},
    "reason": {"type": "str", "default": ""},
    "renewals": {"type": "dict", "default": {}},
}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        check_mode = bool(self._task.check_mode)
        try:
            vault = store_sync.AnsibleVault(store_sync.read_password_file(args["vault_password_file"]))
            if args["direction"] == "pull":
                outcome = store_sync.pull(args["store_dir"], args["checkout_dir"], vault, check_mode=check_mode)
            else:
                outcome = store_sync.push(args["store_dir"], args["checkout_dir"], vault, check_mode=check_mode,
                                          reason=args["reason"], renewals=args["renewals"])
        except store_sync.CertificateStoreError as exc:
            result.update(failed=True, msg=exc.message)
            return result
        except OSError as exc:  # a directory that is not writable, a full disk: every file written is whole
            result.update(failed=True, msg=f"certificate_store_sync {args['direction']}: cannot read or write "
                                           f"{exc.filename}: {exc.strerror}. Each file is written whole (temporary "
                                           "file, then rename); run again once it is fixed.")
            return result
        result.update(outcome)
        return result
