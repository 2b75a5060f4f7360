# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The CI recipes (examples/ci), checked without GitHub or GitLab.

- both against the official JSON schemas that check-jsonschema ships
  (vendor.github-workflows, vendor.gitlab-ci: no download at test time), and
  each schema shown to reject a broken copy, so a pass means something;
- what the schemas cannot say: a scheduled renew job, a scheduled status job, a
  manual trigger for each; one writer of the store at a time; both recipes run
  the same playbook commands (read out by ci_commands.py, which the integration
  target runs them with); every environment variable the inventory reads is
  set where the commands run; secrets come from the CI's secret store and no
  command prints one; the inventory sets only variables the role declares.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ci_commands  # noqa: E402  pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CI = os.path.join(ROOT, "examples", "ci")
GITHUB = os.path.join(CI, "github-actions.yml")
GITLAB = os.path.join(CI, "gitlab-ci.yml")
SCHEMAS = {GITHUB: "vendor.github-workflows", GITLAB: "vendor.gitlab-ci"}
BIN = os.path.dirname(sys.executable)
SECRETS = ("TSIG_SECRET", "STORE_VAULT_PASSWORD", "STORE_DEPLOY_KEY", "HAPROXY_SSH_KEY")
PLAYBOOKS = {"renew": "ansible-playbook -i inventory ingress.haproxy.site",
             "status": "ansible-playbook -i inventory ingress.haproxy.status"}
# The CI/CD variables the GitLab recipe asks for in the project's settings.
GITLAB_PROJECT_VARIABLES = set(SECRETS) | {"STORE_SSH_KNOWN_HOSTS"}


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def schema_check(path: str, schema: str) -> subprocess.CompletedProcess:
    tool = os.path.join(BIN, "check-jsonschema")
    assert os.access(tool, os.X_OK), "check-jsonschema is missing from the venv: install requirements-dev.txt"
    # No network: the schemas are the ones check-jsonschema ships.
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    return subprocess.run([tool, "--builtin-schema", schema, path], capture_output=True, text=True, env=env,
                          check=False, timeout=120)


def settings() -> dict:
    return load(os.path.join(CI, "inventory", "group_vars", "all.yml"))


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_recipe_matches_the_official_schema(path):
    result = schema_check(path, SCHEMAS[path])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path, breakage, needle", [
    (GITHUB, lambda recipe: recipe["jobs"]["renew"].update({"run-on": recipe["jobs"]["renew"].pop("runs-on")}), "run-on"),
    (GITLAB, lambda recipe: recipe["renew"].update({"scripts": recipe["renew"].pop("script")}), "scripts"),
], ids=["github", "gitlab"])
def test_schema_check_rejects_a_misspelt_key(tmp_path, path, breakage, needle):
    broken = copy.deepcopy(load(path))
    breakage(broken)
    copy_path = tmp_path / os.path.basename(path)
    copy_path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = schema_check(str(copy_path), SCHEMAS[path])
    assert result.returncode != 0
    assert needle in result.stdout + result.stderr


# --------------------------------------------------------------------------- what the schemas cannot say


def test_github_schedules_and_manual_trigger():
    workflow = load(GITHUB)
    triggers = workflow["on"]  # quoted in the file: YAML 1.1 reads a bare `on` as true
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert len(crons) == 2
    assert triggers["workflow_dispatch"]["inputs"]["job"]["options"] == ["renew", "status"]
    for job, cron in zip(("renew", "status"), crons):
        condition = workflow["jobs"][job]["if"]
        assert f"github.event.schedule == '{cron}'" in condition and f"inputs.job == '{job}'" in condition
    assert workflow["concurrency"] == {"group": "certificate-store", "cancel-in-progress": False}
    assert workflow["permissions"] == {"contents": "read"}


def test_gitlab_schedules_and_manual_trigger():
    pipeline = load(GITLAB)
    assert pipeline["workflow"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule" || $CI_PIPELINE_SOURCE == "web"'}]
    for job in ("renew", "status"):
        assert pipeline[job]["rules"] == [{"if": f'$CERTIFICATES_JOB == "{job}"'}]
    assert pipeline["renew"]["resource_group"] == "certificate-store"
    assert pipeline["status"]["artifacts"]["paths"] == ["status.json"]
    assert pipeline["status"]["artifacts"]["when"] == "always"


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_both_recipes_run_the_same_playbooks(path):
    assert sorted(ci_commands.jobs(path)) == ["renew", "status"]
    for job, command in PLAYBOOKS.items():
        assert ci_commands.playbook_commands(path, job) == [command]


def inventory_environment() -> set[str]:
    text = ""
    for directory, _subdirs, names in os.walk(os.path.join(CI, "inventory")):
        for name in names:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                text += handle.read()
    return set(re.findall(r"lookup\('ansible\.builtin\.env', '([A-Z_]+)'\)", text))


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_every_variable_the_inventory_reads_is_set(path):
    needed = inventory_environment()
    assert needed >= {"TSIG_SECRET", "CERTIFICATES_STORE_DIR", "STORE_VAULT_PASSWORD_FILE", "HAPROXY_SSH_KEY_FILE"}
    for job in ("renew", "status"):
        (step,) = [step for step in ci_commands.job_steps(path, job) if step["run"].strip() in PLAYBOOKS.values()]
        environment = set(step["env"])
        if path == GITLAB:
            # GitLab puts the project's CI/CD variables (the secrets) into every job's environment.
            environment |= GITLAB_PROJECT_VARIABLES
        # The status job reads the store and the instances only: no TSIG secret, no SSH to the HAProxy hosts.
        wanted = needed - ({"TSIG_SECRET", "HAPROXY_SSH_KEY_FILE"} if job == "status" else {"CERTIFICATES_STATUS_FILE"})
        assert wanted <= environment, f"{job}: {sorted(wanted - environment)} not set"
        assert "GIT_SSH_COMMAND" in environment and "StrictHostKeyChecking=yes" in step["env"]["GIT_SSH_COMMAND"]
        if job == "status" and path == GITHUB:
            assert not {"TSIG_SECRET", "HAPROXY_SSH_KEY_FILE"} & environment


def test_github_secrets_come_from_the_secret_store_and_are_never_printed():
    workflow = load(GITHUB)
    for job in ("renew", "status"):
        for step in workflow["jobs"][job]["steps"]:
            for name, value in (step.get("env") or {}).items():
                if name in SECRETS:
                    assert value == "${{ secrets.%s }}" % name, f"{job}/{step['name']}: {name}"
            for line in step.get("run", "").splitlines():
                assert not re.search(r"\bset -x|\bprintenv\b|^\s*env\s*$", line), line
                for secret in SECRETS:
                    if re.search(r"\$\{?%s\}?\b" % secret, line):
                        # Only ever redirected into a file, in a step that made new files private.
                        assert re.fullmatch(r"""\s*printf '%%s\\n' "\$%s" > "\$RUNNER_TEMP/[a-z_]+"\s*""" % secret, line), line
                        assert "umask 077" in step["run"]
    with open(GITHUB, encoding="utf-8") as handle:
        text = handle.read()
    assert "secrets." not in "".join(line for line in text.splitlines() if line.strip().startswith("run:"))


def test_gitlab_secrets_are_file_or_masked_variables_never_printed():
    pipeline = load(GITLAB)
    for job in ("renew", "status"):
        for step in ci_commands.gitlab_steps(GITLAB, job):
            assert not re.search(r"\bset -x|\bprintenv\b|\becho\b.*\$", step["run"]), step["run"]
            # TSIG_SECRET reaches Ansible from the environment only; the file variables are used as paths only.
            assert "TSIG_SECRET" not in step["run"], step["run"]
            for secret in set(SECRETS) - {"TSIG_SECRET"}:
                if re.search(r"\$\{?%s\}?\b" % secret, step["run"]):
                    assert re.match(r'chmod 0600 |export ([A-Z_]+_FILE|GIT_SSH_COMMAND)="', step["run"]), step["run"]
    # Secrets are defined in the project's settings (the header says which), never in the file.
    with open(GITLAB, encoding="utf-8") as handle:
        header = "".join(line for line in handle if line.startswith("#"))
    for name in GITLAB_PROJECT_VARIABLES:
        assert re.search(r"^#   %s +\((variable|file)\) " % name, header, re.MULTILINE), name
    defined = set(pipeline.get("variables") or {}) | {name for job in ("renew", "status") for name in pipeline[job].get("variables") or {}}
    assert not defined & set(SECRETS)


def test_inventory_holds_no_secret_and_sets_only_declared_variables():
    specs = load(os.path.join(ROOT, "roles", "certificates", "meta", "argument_specs.yml"))["argument_specs"]
    declared = {name for spec in specs.values() for name in spec.get("options", {})}
    values = settings()
    assert not sorted(set(values) - declared)
    assert values["certificates_rfc2136_key_secret"] == "{{ lookup('ansible.builtin.env', 'TSIG_SECRET') }}"
    assert values["certificates_store_vault_password_file"] == "{{ lookup('ansible.builtin.env', 'STORE_VAULT_PASSWORD_FILE') }}"
    assert values["certificates_store_git_repo"].startswith("git@")
    assert int(values["certificates_status_fail_days"]) > 0
    hosts = load(os.path.join(CI, "inventory", "hosts.yml"))
    assert values["certificates_persist_group"] in hosts["all"]["children"]


def test_commands_extract_for_the_integration_target(tmp_path):
    """ci_commands.py, as a script, prints what the integration target runs."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "examples", "ci_commands.py"), GITLAB, "renew"],
                            capture_output=True, text=True, check=True, timeout=60)
    steps = yaml.safe_load(result.stdout)
    assert steps[-1]["run"] == PLAYBOOKS["renew"]
    assert steps[-1]["env"]["CERTIFICATES_STORE_DIR"] == "$CI_PROJECT_DIR/../certificate-store"
