# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The deploy examples, checked without a container engine or a cluster.

- examples/swarm/stack.yml against the Compose specification's JSON schema
  (shipped inside check-jsonschema, no download at test time);
- examples/kubernetes/*.yaml against the Kubernetes schemas (shipped inside
  kubernetes-validate), strict: unknown fields are errors;
- both validators shown to reject a broken copy, so a pass means something;
- the HAProxy configurations with `haproxy -c`, the execution environment
  with `ansible-builder create`;
- what the schemas cannot say: the Runtime API port is never published and
  only on an internal network (Swarm) or behind a NetworkPolicy (Kubernetes),
  secrets are Swarm secrets / Kubernetes Secrets, and the files the commands
  read are the files the stack and the manifests mount.
The commands themselves run against the lab in the integration target
examples_deploy.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWARM = os.path.join(ROOT, "examples", "swarm")
KUBERNETES = os.path.join(ROOT, "examples", "kubernetes")
BIN = os.path.dirname(sys.executable)
KUBERNETES_VERSION = "1.33.0"
RUNTIME_PORT = 9999


def tool(name: str) -> str:
    path = os.path.join(BIN, name)
    assert os.access(path, os.X_OK), f"{name} is missing from the venv: install requirements-dev.txt"
    return path


def run(*command: str, cwd: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=120)


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def manifests() -> list[dict]:
    documents = []
    for name in sorted(os.listdir(KUBERNETES)):
        if name.endswith(".yaml"):
            with open(os.path.join(KUBERNETES, name), encoding="utf-8") as handle:
                documents.append(yaml.safe_load(handle))  # one resource per file (ansible-test's yamllint)
    return documents


def find(kind: str, name: str) -> dict:
    matches = [doc for doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


@pytest.fixture(name="stack")
def stack_fixture() -> dict:
    return load(os.path.join(SWARM, "stack.yml"))


# --------------------------------------------------------------------------- schemas


def compose_check(path: str) -> subprocess.CompletedProcess:
    return run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", path)


def test_stack_matches_the_compose_specification():
    result = compose_check(os.path.join(SWARM, "stack.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_a_misspelt_key(stack, tmp_path):
    broken = copy.deepcopy(stack)
    broken["services"]["haproxy"]["deploy"]["placment"] = {}
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = compose_check(str(path))
    assert result.returncode != 0
    assert "placment" in result.stdout + result.stderr


def kubernetes_check(*paths: str) -> subprocess.CompletedProcess:
    return run(tool("kubernetes-validate"), "--strict", "--kubernetes-version", KUBERNETES_VERSION, *paths)


def test_manifests_match_the_kubernetes_schemas():
    paths = sorted(os.path.join(KUBERNETES, name) for name in os.listdir(KUBERNETES) if name.endswith(".yaml"))
    result = kubernetes_check(*paths)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Every resource was checked against a schema (none skipped as unknown).
    passed = [line for line in output.splitlines() if " passed for resource " in line]
    assert len(passed) == len(manifests()), output


def test_kubernetes_schema_check_rejects_a_misspelt_field(tmp_path):
    service = copy.deepcopy(find("Service", "haproxy-runtime"))
    service["spec"]["clusterIp"] = service["spec"].pop("clusterIP")
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(service), encoding="utf-8")
    result = kubernetes_check(str(path))
    assert result.returncode != 0
    assert "clusterIp" in result.stdout + result.stderr


# --------------------------------------------------------------------------- HAProxy and the execution environment


def haproxy_check(config: str, tmp_path, environment: dict | None = None) -> subprocess.CompletedProcess:
    """haproxy -c on CONFIG with its certificate directory moved into tmp_path (an empty crt-list, as at first start)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "crt-list.txt").write_text("", encoding="utf-8")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config.replace("/usr/local/etc/haproxy/certs", str(certs)), encoding="utf-8")
    return run(shutil.which("haproxy") or "/usr/sbin/haproxy", "-c", "-f", str(path), env={**os.environ, **(environment or {})})


def test_swarm_haproxy_config_is_valid(tmp_path):
    with open(os.path.join(SWARM, "haproxy", "haproxy.cfg"), encoding="utf-8") as handle:
        config = handle.read()
    result = haproxy_check(config, tmp_path, {"RUNTIME_ADDRESS": "127.0.0.1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_haproxy_config_is_valid(tmp_path):
    result = haproxy_check(find("ConfigMap", "haproxy-config")["data"]["haproxy.cfg"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_execution_environment_definition_builds_a_context(tmp_path):
    shutil.copy(os.path.join(SWARM, "execution-environment.yml"), tmp_path)
    (tmp_path / "ee-context").mkdir()
    (tmp_path / "ee-context" / "ingress-haproxy.tar.gz").write_bytes(b"")  # stands in for the built collection
    result = run(tool("ansible-builder"), "create", "-f", "execution-environment.yml", "--context", "context", cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    build = tmp_path / "context" / "_build"
    collections = [entry["name"] for entry in load(str(build / "requirements.yml"))["collections"]]
    assert collections == ["galaxy/ingress-haproxy.tar.gz", "community.crypto", "community.general"]
    assert (build / "galaxy" / "ingress-haproxy.tar.gz").exists()
    assert "ansible-rulebook==" in (build / "requirements.txt").read_text(encoding="utf-8")
    assert "java-17-openjdk-headless" in (build / "bindep.txt").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- Swarm: what the schema cannot say


def test_swarm_runtime_api_is_only_on_the_internal_network(stack):
    services = stack["services"]
    for name, service in services.items():
        published = [port.get("target") for port in service.get("ports", [])]
        assert RUNTIME_PORT not in published, f"{name} publishes the Runtime API port"
    runtime = stack["networks"]["runtime"]
    assert runtime["driver"] == "overlay" and runtime["internal"] is True and runtime["attachable"] is False
    on_runtime = sorted(name for name, service in services.items() if "runtime" in service.get("networks", []))
    assert on_runtime == ["certificates-renew", "certificates-watch", "haproxy"]
    # HAProxy binds the Runtime API to its address in that network's subnet only.
    with open(os.path.join(SWARM, "haproxy", "haproxy.cfg"), encoding="utf-8") as handle:
        assert 'stats socket "ipv4@${RUNTIME_ADDRESS}:9999" level admin' in handle.read()
    (subnet,) = [entry["subnet"] for entry in runtime["ipam"]["config"]]
    prefix = services["haproxy"]["environment"]["RUNTIME_SUBNET_PREFIX"]
    assert subnet.endswith(".0/24") and subnet[: -len("0/24")] == prefix


def test_swarm_secrets_are_swarm_secrets(stack):
    assert stack["secrets"] == {"tsig_secret": {"external": True}, "vault_password": {"external": True}}
    settings = load(os.path.join(SWARM, "certificates", "inventory", "group_vars", "all.yml"))
    assert settings["certificates_rfc2136_key_secret"] == "{{ lookup('ansible.builtin.file', '/run/secrets/tsig_secret') }}"
    for name in ("certificates-renew", "certificates-watch"):
        service = stack["services"][name]
        assert service["secrets"] == ["tsig_secret", "vault_password"]
        assert service["environment"]["ANSIBLE_VAULT_PASSWORD_FILE"] == "/run/secrets/vault_password"


def test_swarm_commands_read_what_the_stack_mounts(stack):
    for name in ("certificates-renew", "certificates-watch"):
        service = stack["services"][name]
        targets = {config["target"] for config in service["configs"]}
        assert {"/etc/ingress-haproxy/inventory/hosts.yml", "/etc/ingress-haproxy/inventory/group_vars/all.yml"} <= targets
        for config in service["configs"]:
            assert os.path.isfile(os.path.join(SWARM, stack["configs"][config["source"]]["file"]))
        command = service["command"]
        assert command[command.index("--inventory" if "--inventory" in command else "-i") + 1] == "/etc/ingress-haproxy/inventory"
        volumes = {volume["source"]: volume["target"] for volume in service["volumes"]}
        settings = load(os.path.join(SWARM, "certificates", "inventory", "group_vars", "all.yml"))
        assert volumes["certificates-store"] == settings["certificates_store_dir"]
        # The certificates services see the certificate volume where HAProxy loads it.
        assert volumes["haproxy-certs"] == stack["services"]["haproxy"]["volumes"][0]["target"]
        for item in settings["certificates_items"]:
            assert os.path.dirname(item["haproxy_path"]) == volumes["haproxy-certs"]
    watch = stack["services"]["certificates-watch"]["command"]
    assert watch[:3] == ["ansible-rulebook", "--rulebook", "ingress.haproxy.push_on_change"]
    assert watch[watch.index("--vars") + 1] == "/etc/ingress-haproxy/watch.yml"
    watched = load(os.path.join(SWARM, "certificates", "watch.yml"))["cert_changes_paths"]
    assert watched == [settings["certificates_store_dir"] + "/live"]


# --------------------------------------------------------------------------- Kubernetes: what the schema cannot say


def test_kubernetes_runtime_api_is_behind_a_network_policy():
    policy = find("NetworkPolicy", "haproxy-runtime")["spec"]
    haproxy_labels = find("DaemonSet", "haproxy")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= haproxy_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    runtime_rules = [rule for rule in policy["ingress"] if any(port["port"] == RUNTIME_PORT for port in rule["ports"])]
    assert len(runtime_rules) == 1 and "from" in runtime_rules[0], "port 9999 must be open to the certificates pods only"
    (allowed,) = runtime_rules[0]["from"]
    job_labels = find("CronJob", "certificates")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert allowed["podSelector"]["matchLabels"].items() <= job_labels.items()
    assert find("Service", "haproxy")["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https"}]


def test_kubernetes_lookup_names_the_headless_service():
    service = find("Service", "haproxy-runtime")
    assert service["spec"]["clusterIP"] == "None"
    assert [port["port"] for port in service["spec"]["ports"]] == [RUNTIME_PORT]
    settings = yaml.safe_load(find("ConfigMap", "certificates-config")["data"]["all.yml"])
    namespace = service["metadata"]["namespace"]
    assert settings["certificates_service"] == f"haproxy-runtime.{namespace}.svc.cluster.local"
    assert settings["certificates_service_prefix"] == ""
    assert settings["certificates_runtime_port"] == RUNTIME_PORT


def test_kubernetes_job_reads_what_it_mounts():
    pod = find("CronJob", "certificates")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    command = container["command"]
    assert command[command.index("-i") + 1] == mounts["inventory"]
    config = find("ConfigMap", "certificates-config")["data"]
    items = {item["path"]: item["key"] for item in volumes["inventory"]["configMap"]["items"]}
    assert items == {"hosts.yml": "hosts.yml", "group_vars/all.yml": "all.yml"} and set(items.values()) <= set(config)
    settings = yaml.safe_load(config["all.yml"])
    assert mounts["store"] == settings["certificates_store_dir"]
    assert settings["certificates_persist_group"] in yaml.safe_load(config["hosts.yml"])["all"]["children"]
    haproxy_mounts = {mount["name"]: mount["mountPath"] for mount in find("DaemonSet", "haproxy")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["certs"] == haproxy_mounts["certs"]
    for item in settings["certificates_items"]:
        assert os.path.dirname(item["haproxy_path"]) == mounts["certs"]
    # Secrets come from Kubernetes Secrets, never from the ConfigMap.
    secret_files = {item["path"] for source in volumes["secrets"]["projected"]["sources"] for item in source["secret"]["items"]}
    assert secret_files == {"tsig_secret", "vault_password"} and mounts["secrets"] == "/run/secrets"
    assert settings["certificates_rfc2136_key_secret"] == "{{ lookup('ansible.builtin.file', '/run/secrets/tsig_secret') }}"
    assert {"name": "ANSIBLE_VAULT_PASSWORD_FILE", "value": "/run/secrets/vault_password"} in container["env"]
    assert not any(doc["kind"] == "Secret" for doc in manifests()), "secret values belong in kubectl create secret, not in the example"


# --------------------------------------------------------------------------- the role's variables


def example_settings() -> dict[str, dict]:
    return {
        "swarm": load(os.path.join(SWARM, "certificates", "inventory", "group_vars", "all.yml")),
        "kubernetes": yaml.safe_load(find("ConfigMap", "certificates-config")["data"]["all.yml"]),
    }


def test_examples_set_only_variables_the_role_declares():
    specs = load(os.path.join(ROOT, "roles", "certificates", "meta", "argument_specs.yml"))["argument_specs"]
    declared = set(specs["main"]["options"])
    for recipe, settings in example_settings().items():
        unknown = sorted(set(settings) - declared)
        assert not unknown, f"the {recipe} example sets variables the certificates role does not declare: {unknown}"


def test_role_readme_names_every_variable_the_examples_set():
    with open(os.path.join(ROOT, "roles", "certificates", "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    section = readme[readme.index("## Deploy recipes"):]
    for recipe, settings in example_settings().items():
        missing = sorted(name for name in settings if f"`{name}`" not in section)
        assert not missing, f"roles/certificates/README.md (Deploy recipes) does not name what the {recipe} example sets: {missing}"
