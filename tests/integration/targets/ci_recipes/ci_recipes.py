# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the status job of each CI recipe (examples/ci) as the recipe writes it.

The command line is read out of the recipe by tests/examples/ci_commands.py and
run with bash in a fresh directory holding a copy of examples/ci/inventory, the
environment set as a CI job sets it (store directory, status file, vault
password file; no TSIG secret, which the status job must not need). The
inventory's instances (haproxy1/2.example.com) do not resolve, so the job must
fail with a readable summary naming each instance, and still write the JSON.

The renew job needs the git store wired into the role (issue 16); see
docs/issue-16-wiring.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml


def status_job(ci_commands, root: str, recipe: str, work: str) -> None:
    """CI_COMMANDS is tests/examples/ci_commands.py of the collection's copy."""
    (step,) = [step for step in ci_commands.job_steps(recipe, "status") if step["run"].strip().startswith("ansible-playbook ")]
    shutil.copytree(os.path.join(root, "examples", "ci", "inventory"), os.path.join(work, "inventory"))
    password = os.path.join(work, "vault_password")
    with open(password, "w", encoding="utf-8") as handle:
        handle.write("not used by the status job yet\n")
    os.chmod(password, 0o600)
    status_file = os.path.join(work, "status.json")
    env = {name: value for name, value in os.environ.items() if name not in ("TSIG_SECRET", "HAPROXY_SSH_KEY_FILE")}
    env.update(CERTIFICATES_STORE_DIR=os.path.join(work, "store"), CERTIFICATES_STATUS_FILE=status_file,
               STORE_VAULT_PASSWORD_FILE=password, ANSIBLE_NOCOLOR="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    assert set(env) >= {name for name in step["env"] if name != "GIT_SSH_COMMAND"}, "the recipe's step sets variables this run does not"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], cwd=work, env=env, capture_output=True,
                            text=True, check=False, timeout=600)
    output = result.stdout + result.stderr
    label = os.path.basename(recipe)
    assert result.returncode != 0, f"{label}: the status job passed with unreachable instances:\n{output}"
    assert "2 of 2 certificates served fail certificates_status_fail_days (14)" in output, output
    for instance in ("haproxy1.example.com", "haproxy2.example.com"):
        assert f"{instance}/www: unreachable" in output, output
    assert "INSTANCE" in output and "DAYS LEFT" in output, output  # the table is in the log
    with open(status_file, encoding="utf-8") as handle:
        rows = json.load(handle)["instances"]
    assert sorted(row["instance"] for row in rows) == ["haproxy1.example.com", "haproxy2.example.com"]
    assert all(row["state"].startswith("unreachable") for row in rows), rows
    print(f"{label}: status job `{step['run']}` failed as it must, with the summary and {status_file}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="tests/integration/integration_config.yml")
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    # The collection's copy ansible-test works in (this target runs from a partial copy of its own).
    root = os.path.normpath(os.path.join(config["ingress_lab_dir"], "..", ".."))
    sys.path.insert(0, os.path.join(root, "tests", "examples"))
    import ci_commands  # pylint: disable=import-error,import-outside-toplevel

    for name in ("github-actions.yml", "gitlab-ci.yml"):
        with tempfile.TemporaryDirectory(prefix="ci_recipes.") as work:
            status_job(ci_commands, root, os.path.join(root, "examples", "ci", name), work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
