# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the status and renew jobs of each CI recipe (examples/ci) as the recipe writes them.

The commands are read out of the recipe by tests/examples/ci_commands.py and
run with bash, the environment set as the CI sets it (the recipe's own `env:`
or `variables:` values, with what GitHub or GitLab would put in for
`${{ runner.temp }}`, `${{ secrets.* }}`, `$CI_PROJECT_DIR` and file variables).
Only the steps that install Ansible and the collections are left out: the
collection under test is the one ansible-test runs with.

Status job: in a fresh directory holding a copy of examples/ci/inventory (the
store's remote replaced by a bare repository holding one commit), no TSIG
secret (the status job must not need it). The inventory's instances
(haproxy1/2.example.com) do not resolve, so the job must fail with a readable
summary naming each instance, and still write the JSON.

Renew job: against the lab (tests/lab: two HAProxy instances, bind9, pebble),
the store's remote a bare git repository with one initial commit on its branch.
The recipe's inventory is copied and only what names the lab is changed (the
HAProxy hosts, the ACME directory, the RFC 2136 server and zone, the endpoints,
the remote); the store directory, the vault password file and the TSIG secret
still come from the environment the job sets. Two consecutive jobs per recipe,
each in a fresh directory (new checkout, new runner temp, new store), the same
remote: the first renews (pebble issues, the store is pushed as one commit,
every instance serves the certificate), the second renews nothing and pushes
nothing. In the GitLab recipe's first job another writer
pushes a commit between the job's pull and its push: the push is rejected, the
role takes that commit and pushes again, both changes are in the history.
Then every object of the bare repository is searched for private-key lines:
none, and the keys are there as ansible-vault files the job's password opens.
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import yaml


def status_job(ci_commands, root: str, recipe: str, work: str) -> None:
    """CI_COMMANDS is tests/examples/ci_commands.py of the collection's copy."""
    (step,) = [step for step in ci_commands.job_steps(recipe, "status") if step["run"].strip().startswith("ansible-playbook ")]
    shutil.copytree(os.path.join(root, "examples", "ci", "inventory"), os.path.join(work, "inventory"))
    # The status job pulls the store too: its remote is a bare repository here (one commit, an empty store).
    vars_file = os.path.join(work, "inventory", "group_vars", "all.yml")
    with open(vars_file, encoding="utf-8") as handle:
        settings = yaml.safe_load(handle)
    settings["certificates_store_git_repo"] = os.path.join(work, "certificate-store.git")
    bare_remote(settings["certificates_store_git_repo"], settings["certificates_store_git_branch"])
    with open(vars_file, "w", encoding="utf-8") as handle:
        yaml.safe_dump(settings, handle, sort_keys=False)
    password = os.path.join(work, "vault_password")
    with open(password, "w", encoding="utf-8") as handle:
        handle.write("the store holds no key yet\n")
    os.chmod(password, 0o600)
    status_file = os.path.join(work, "status.json")
    env = {name: value for name, value in os.environ.items() if name not in ("TSIG_SECRET", "HAPROXY_SSH_KEY_FILE")}
    env.update(CERTIFICATES_STORE_DIR=os.path.join(work, "store"), CERTIFICATES_STATUS_FILE=status_file,
               STORE_VAULT_PASSWORD_FILE=password, ANSIBLE_NOCOLOR="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    assert set(env) >= {name for name in step["env"] if name != "GIT_SSH_COMMAND"}, "the recipe's step sets variables this run does not"
    started = time.monotonic()
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], cwd=work, env=env, capture_output=True,
                            text=True, check=False, timeout=600)
    print(f"{os.path.basename(recipe)}: status job took {time.monotonic() - started:.0f} s")
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


# --- the renew job against the lab ---------------------------------------------------------------------------------

PRIVATE_KEY_LINE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
# The steps of a job that install Ansible and the collections (from PyPI and Galaxy): left out.
INSTALL_LINE = re.compile(r"^(apt-get |python3 -m venv |\S*/bin/pip |\S*/bin/ansible-galaxy |\"\$RUNNER_TEMP/venv/bin/)")
VAULT_PASSWORD = "ci-recipes vault password"
ITEM = {"name": "www", "domains": ["www.lab.test"], "haproxy_path": "/etc/haproxy/certs/www.lab.test.pem",
        "crt_list": "/etc/haproxy/crt-list.txt"}


def git(*args: str, cwd: str | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def bare_remote(path: str, branch: str) -> None:
    """A bare repository whose BRANCH has one commit, as the role requires of a store's remote."""
    git("init", "--quiet", "--bare", "--initial-branch", branch, path)
    seed = path + ".seed"
    git("clone", "--quiet", path, seed)
    with open(os.path.join(seed, "README"), "w", encoding="utf-8") as handle:
        handle.write("The certificate store of the CI recipes' test.\n")
    git("-C", seed, "add", "README")
    git("-C", seed, "-c", "user.name=ci_recipes", "-c", "user.email=ci-recipes@localhost", "commit", "--quiet", "-m", "An empty store")
    git("-C", seed, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
    shutil.rmtree(seed)


class SecondWriter(threading.Thread):
    """Another writer of the store: pushes a commit to REMOTE once the job under JOB has pulled the store and built
    its bundle, so the job's push is rejected and the role must take this commit and push again."""

    NOTE = "notes/second-writer.txt"

    def __init__(self, remote: str, branch: str, job: str) -> None:
        super().__init__(daemon=True)
        self.remote, self.branch, self.job = remote, branch, job
        self.done = threading.Event()
        self.pushed = ""
        self.error = ""

    def run(self) -> None:
        deadline = time.monotonic() + 300
        # The cleartext store's bundle: written after the pull, long before the push (the work tree holds .vault files).
        while not glob.glob(os.path.join(self.job, "**", "bundles", "www.pem"), recursive=True):
            if self.done.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.05)
        clone = os.path.join(self.job, "second-writer")
        try:
            git("clone", "--quiet", "--branch", self.branch, self.remote, clone)
            os.makedirs(os.path.join(clone, "notes"))
            with open(os.path.join(clone, self.NOTE), "w", encoding="utf-8") as handle:
                handle.write("Written by another writer while a CI job ran.\n")
            git("-C", clone, "add", self.NOTE)
            git("-C", clone, "-c", "user.name=second writer", "-c", "user.email=second-writer@localhost", "commit", "--quiet",
                "-m", "A second writer's change")
            git("-C", clone, "push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}")
            self.pushed = git("-C", clone, "rev-parse", "HEAD").strip()
        except AssertionError as error:
            self.error = str(error)


def lab_inventory(root: str, work: str, lab: dict, remote: str) -> str:
    """examples/ci/inventory copied into WORK, with what names the lab instead of example.com; returns its path."""
    inventory = os.path.join(work, "inventory")
    shutil.copytree(os.path.join(root, "examples", "ci", "inventory"), inventory)
    hosts_file = os.path.join(inventory, "hosts.yml")
    with open(hosts_file, encoding="utf-8") as handle:
        hosts = yaml.safe_load(handle)
    # The lab's instances share one machine: local connection, each its own certificate directory and crt-list.
    hosts["all"]["children"]["haproxy"] = {"hosts": {
        instance["name"]: {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                           "ansible_host": instance["address"], "certificates_host_cert_dir": instance["cert_dir"],
                           "certificates_host_crt_list": instance["crt_list"]}
        for instance in lab["instances"]}}
    with open(hosts_file, "w", encoding="utf-8") as handle:
        yaml.safe_dump(hosts, handle, sort_keys=False)
    vars_file = os.path.join(inventory, "group_vars", "all.yml")
    with open(vars_file, encoding="utf-8") as handle:
        settings = yaml.safe_load(handle)
    # What the job's environment provides stays as the recipe writes it.
    for name, variable in (("certificates_store_dir", "CERTIFICATES_STORE_DIR"), ("certificates_rfc2136_key_secret", "TSIG_SECRET"),
                           ("certificates_store_vault_password_file", "STORE_VAULT_PASSWORD_FILE")):
        assert variable in settings[name] and "lookup('ansible.builtin.env'" in settings[name], f"{name}: {settings[name]}"
    dns, acme = lab["dns"], lab["acme"]
    settings.update(
        certificates_items=[ITEM], certificates_store_git_repo=remote,
        certificates_acme_directory=acme["directory"], certificates_acme_ca_file=acme["ca_file"], certificates_acme_timeout=10,
        certificates_rfc2136_server=dns["server"], certificates_rfc2136_port=int(dns["port"]), certificates_rfc2136_zone="lab.test",
        certificates_rfc2136_key_name=dns["tsig"]["name"], certificates_rfc2136_key_algorithm=dns["tsig"]["algorithm"],
        certificates_dns_nameservers=[dns["server"]], certificates_dns_port=int(dns["port"]),
        certificates_endpoints=[f"tcp:{instance['runtime_tcp']}" for instance in lab["instances"]],
        certificates_verify_port=int(lab["instances"][0]["tls_port"]), certificates_runtime_timeout=3)
    with open(vars_file, "w", encoding="utf-8") as handle:
        yaml.safe_dump(settings, handle, sort_keys=False)
    return inventory


def _github_value(value: str, context: dict) -> str:
    return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda match: context[match.group(1)], value)


def _gitlab_value(value: str, env: dict) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda match: env.get(match.group(1), ""), value)


def _run(script: str, cwd: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=600)


def github_renew(ci_commands, recipe: str, job: str, base_env: dict, secrets: dict) -> tuple[int, str, str]:
    """Every run step of the renew job, as a runner runs them; returns (rc, output, store dir)."""
    workspace, runner_temp = os.path.join(job, "workspace"), os.path.join(job, "runner-temp")
    os.makedirs(runner_temp)
    context = {"runner.temp": runner_temp, "github.workspace": workspace, "vars.STORE_SSH_KNOWN_HOSTS": ""}
    context.update({f"secrets.{name}": value for name, value in secrets.items()})
    env = dict(base_env, RUNNER_TEMP=runner_temp, GITHUB_WORKSPACE=workspace)
    output, failed, store = [], 0, ""
    for step in ci_commands.job_steps(recipe, "renew"):
        if INSTALL_LINE.match(step["run"].strip()):
            continue
        step_env = dict(env, **{name: _github_value(str(value), context) for name, value in step["env"].items()})
        store = step_env.get("CERTIFICATES_STORE_DIR", store)
        if failed and "rm -f" not in step["run"]:  # only the `if: always()` clean-up runs after a failure
            continue
        result = _run(step["run"], workspace, step_env)
        output.append(f"## {step['name']} (rc {result.returncode})\n{result.stdout}{result.stderr}")
        failed = failed or result.returncode
    for name in ("store_vault_password", "store_deploy_key", "haproxy_ssh_key"):
        assert not os.path.exists(os.path.join(runner_temp, name)), f"the job left {name} behind"
    return failed, "\n".join(output), store


def gitlab_renew(ci_commands, recipe: str, job: str, base_env: dict, secrets: dict) -> tuple[int, str, str]:
    """before_script and script of the renew job in one shell, as a runner runs them; returns (rc, output, store dir)."""
    project, files = os.path.join(job, "project"), os.path.join(job, "file-variables")
    os.makedirs(files, mode=0o700)
    env = dict(base_env, CI_PROJECT_DIR=project, TSIG_SECRET=secrets["TSIG_SECRET"])
    for name in ("STORE_VAULT_PASSWORD", "STORE_DEPLOY_KEY", "HAPROXY_SSH_KEY", "STORE_SSH_KNOWN_HOSTS"):
        # A file variable: GitLab writes the value into a file and puts the file's path in the variable.
        env[name] = os.path.join(files, name)
        with open(env[name], "w", encoding="utf-8") as handle:
            handle.write(secrets.get(name, "") + "\n")
    steps = ci_commands.job_steps(recipe, "renew")
    for name, value in steps[0]["env"].items():  # the pipeline's and the job's variables, expanded as GitLab does
        env[name] = _gitlab_value(str(value), env)
    lines = [step["run"] for step in steps if not INSTALL_LINE.match(step["run"].strip())]
    assert any(line.startswith("ansible-playbook ") for line in lines), lines
    result = _run("\n".join(lines), project, env)
    return result.returncode, result.stdout + result.stderr, env["CERTIFICATES_STORE_DIR"]


def _fingerprint(pem_file: str) -> str:
    with open(pem_file, encoding="ascii") as handle:
        body = handle.read().split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return hashlib.sha1(base64.b64decode("".join(body.split()))).hexdigest().upper()  # nosec: a fingerprint, as HAProxy's


def served(config: dict, lab: dict) -> list[dict]:
    """What every lab instance presents for www.lab.test, read by tests/lab (not by the collection)."""
    found = []
    for instance in lab["instances"]:
        result = subprocess.run([config["ingress_lab_python"], os.path.join(config["ingress_lab_dir"], "lab.py"), "served",
                                 "--address", instance["address"], "--port", str(instance["tls_port"]),
                                 "--servername", "www.lab.test"], capture_output=True, text=True, check=True, timeout=60)
        found.append(json.loads(result.stdout))
    return found


def private_key_lines(blob: bytes) -> list[bytes]:
    return PRIVATE_KEY_LINE.findall(blob)


def check_remote(remote: str, branch: str, store: str, ansible_vault: str, password_file: str) -> None:
    """Every object of REMOTE: no private-key line; the keys are there as vault files PASSWORD_FILE opens."""
    objects = subprocess.run(["git", "-C", remote, "cat-file", "--batch-all-objects", "--batch"], capture_output=True,
                             check=True, timeout=60).stdout
    assert objects.count(b" blob ") >= 4, "the remote holds fewer blobs than a store"
    assert not private_key_lines(objects), f"{remote}: private-key lines in the repository's objects"
    # The same search finds the keys in the cleartext store, so it would find them in the repository.
    keys = ["account.key", "live/www/privkey.pem", "bundles/www.pem"]
    for name in keys:
        with open(os.path.join(store, name), "rb") as handle:
            assert private_key_lines(handle.read()), f"{store}/{name}: the search does not see its key"
    files = git("-C", remote, "ls-tree", "-r", "--name-only", branch).split()
    assert {f"{name}.vault" for name in keys} <= set(files), files
    assert "live/www/cert.pem" in files and "live/www/privkey.pem" not in files, files
    for name in keys:
        blob = git("-C", remote, "show", f"{branch}:{name}.vault")
        assert blob.startswith("$ANSIBLE_VAULT;"), f"{name}.vault: {blob[:40]!r}"
        opened = subprocess.run([ansible_vault, "view", "--vault-password-file", password_file, "-"], input=blob,
                                capture_output=True, text=True, check=False, timeout=60)
        with open(os.path.join(store, name), encoding="ascii") as handle:
            assert opened.returncode == 0 and opened.stdout == handle.read(), f"{name}.vault does not open to the store's key"


def renew_jobs(ci_commands, root: str, config: dict, lab: dict, recipe: str, work: str) -> None:
    """Two renew jobs of RECIPE, each in a fresh directory, one bare remote; then the remote's objects."""
    label = os.path.basename(recipe)
    branch = "main"
    remote = os.path.join(work, "certificate-store.git")
    bare_remote(remote, branch)
    secrets = {"TSIG_SECRET": lab["dns"]["tsig"]["secret"], "STORE_VAULT_PASSWORD": VAULT_PASSWORD,
               "STORE_DEPLOY_KEY": "unused: the remote is a local bare repository",
               "HAPROXY_SSH_KEY": "unused: the lab's hosts are local"}
    env = {name: value for name, value in os.environ.items()
           if name not in ("TSIG_SECRET", "HAPROXY_SSH_KEY_FILE", "CERTIFICATES_STORE_DIR", "STORE_VAULT_PASSWORD_FILE")}
    env.update(ANSIBLE_NOCOLOR="1", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    run = github_renew if ci_commands.recipe_kind(recipe) == "github" else gitlab_renew
    before = served(config, lab)
    stores = []
    for number in (1, 2):
        job = os.path.join(work, f"job-{number}")
        checkout = os.path.join(job, "workspace" if run is github_renew else "project")
        os.makedirs(checkout)
        lab_inventory(root, checkout, lab, remote)
        head = git("-C", remote, "rev-parse", branch)
        commits = int(git("-C", remote, "rev-list", "--count", branch))
        # Once through the real role (the second recipe's first job): another writer pushes between pull and push.
        writer = SecondWriter(remote, branch, job) if number == 1 and run is gitlab_renew else None
        if writer:
            writer.start()
        started = time.monotonic()
        rc, output, store = run(ci_commands, recipe, job, env, secrets)
        print(f"{label}: renew job {number} took {time.monotonic() - started:.0f} s")
        if writer:
            writer.done.set()
            writer.join(60)
            assert writer.pushed and not writer.error, f"the second writer did not push: {writer.error}"
        assert rc == 0, f"{label}: renew job {number} failed:\n{output}"
        assert VAULT_PASSWORD not in output and secrets["TSIG_SECRET"] not in output, f"{label}: a secret in the job's log"
        assert store.startswith(job + os.sep) and os.path.isfile(os.path.join(store, "live", "www", "cert.pem")), store
        stores.append(store)
        now = served(config, lab)
        fingerprint = _fingerprint(os.path.join(store, "live", "www", "cert.pem"))
        assert [cert["fingerprint"] for cert in now] == [fingerprint] * len(lab["instances"]), (fingerprint, now)
        assert all(cert["names"] == ["www.lab.test"] and "Pebble" in cert["issuer"] for cert in now), now
        if number == 1:
            assert "www: renew — no certificate yet" in output, output
            assert [cert["fingerprint"] for cert in before] != [fingerprint] * len(lab["instances"]), before
            theirs = [writer.pushed] if writer else []
            history = git("-C", remote, "log", "--first-parent", "--format=%H", f"{head.strip()}..{branch}").split()
            assert history[1:] == theirs, f"{label}: not one commit of the job after {theirs}:\n{history}\n{output}"
            author, message = git("-C", remote, "log", "-1", "--format=%an <%ae>%n%B", branch).split("\n", 1)
            assert author == "certificates CI <certificates-ci@example.com>", author  # the recipe's GIT_AUTHOR_*
            assert "www" in message, message
            if writer:
                # Nothing lost: both changes in the history and in the remote's tree, the job's after a rejected push.
                files = git("-C", remote, "ls-tree", "-r", "--name-only", branch).split()
                assert SecondWriter.NOTE in files and "live/www/cert.pem" in files, files
                assert re.search(r"Store \| Next attempt\] \**\nok: ", output), f"{label}: the job's push was not rejected:\n{output}"
                print(f"{label}: a second writer pushed {writer.pushed[:12]} between the job's pull and push; the job "
                      "took it and pushed again, both changes are in the history")
            print(f"{label}: renew job 1 renewed www (pebble), every instance serves {fingerprint}, pushed: {message.strip()!r}")
        else:
            assert re.search(r"www: current, [0-9.]+ days left", output) and "renew —" not in output, output
            with open(os.path.join(stores[0], "live", "www", "cert.pem"), encoding="ascii") as first:
                with open(os.path.join(store, "live", "www", "cert.pem"), encoding="ascii") as this:
                    assert first.read() == this.read(), f"job {number}'s store does not hold the first job's certificate"
            if run is gitlab_renew:
                assert os.path.isfile(os.path.join(store, SecondWriter.NOTE)), "the second writer's change is not in the store"
            pushed = git("-C", remote, "log", "--format=%B", f"{head.strip()}..{branch}")
            assert not pushed and git("-C", remote, "rev-parse", branch) == head, f"{label}: job {number} pushed:\n{output}"
            assert int(git("-C", remote, "rev-list", "--count", branch)) == commits
            print(f"{label}: renew job {number} in a fresh directory renewed nothing and pushed nothing ({commits} commits)")
    password_file = os.path.join(work, "vault_password")
    with open(password_file, "w", encoding="utf-8") as handle:
        handle.write(VAULT_PASSWORD + "\n")
    os.chmod(password_file, 0o600)
    check_remote(remote, branch, stores[-1], os.path.join(os.path.dirname(sys.executable), "ansible-vault"), password_file)
    print(f"{label}: no private-key line in any object of {remote}; the keys are vault files the job's password opens")


def start_lab(config: dict) -> dict:
    result = subprocess.run([config["ingress_lab_python"], os.path.join(config["ingress_lab_dir"], "lab.py"), "start",
                             "--root", config["ingress_lab_root"], "--haproxy", str(config.get("ingress_lab_haproxy", "2.6")),
                             "--instances", "2", "--acme"], capture_output=True, text=True, check=False, timeout=900)
    assert result.returncode == 0, f"lab.py start failed: {result.stderr}"
    return json.loads(result.stdout)


def stop_lab(config: dict, lab: dict) -> None:
    subprocess.run([config["ingress_lab_python"], os.path.join(config["ingress_lab_dir"], "lab.py"), "stop",
                    "--state-dir", lab["state_dir"]], capture_output=True, check=False, timeout=120)


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
    started = time.monotonic()
    lab = start_lab(config)
    print(f"the lab started in {time.monotonic() - started:.0f} s")
    try:
        for name in ("github-actions.yml", "gitlab-ci.yml"):
            with tempfile.TemporaryDirectory(prefix="ci_recipes.") as work:
                renew_jobs(ci_commands, root, config, lab, os.path.join(root, "examples", "ci", name), work)
    finally:
        stop_lab(config, lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
