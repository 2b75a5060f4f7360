# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""The one error family of the collection's module_utils.

Every error a module can meet (Runtime API, convergence, PEM, lock, TLS
handshake) derives from ``IngressError``. A module catches it once and calls
``do_fail``: the single place it fails.
"""

from __future__ import annotations


class IngressError(Exception):
    """What went wrong, as a message that names what and where; ``result`` holds result keys for the failure."""

    def __init__(self, message, **result):
        super().__init__(message)
        self.message = message
        self.result = result

    def __str__(self):
        return self.message

    def do_fail(self, module, **result):
        """Fail the module with this message and the result keys (``result`` wins over the ones carried)."""
        module.fail_json(msg=self.message, **dict(self.result, **result))
