# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run a module of the collection as Ansible does: its own process, its arguments from a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

MODULES = "ansible_collections.ingress.haproxy.plugins.modules."


def run_module(name, args, tmp_path, check_mode=False):
    """Run module ``name`` with ``args``; return its JSON result."""
    args_file = tmp_path / ("%s-args.json" % name)
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode)}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    completed = subprocess.run([sys.executable, "-m", MODULES + name, str(args_file)], capture_output=True,
                               text=True, env=env, timeout=60, check=False)
    try:
        return json.loads(completed.stdout)
    except ValueError:
        raise AssertionError("module %s printed no JSON (rc %d): %s %s"
                             % (name, completed.returncode, completed.stdout, completed.stderr))
