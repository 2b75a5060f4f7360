#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the command lines of the deploy examples against the loopback lab.

There is no container engine here, so each example's container is played by a
directory: its volumes, configs and secrets are materialised at the paths the
stack file or manifest mounts them at (under that directory), and its command,
read from the stack file or manifest, runs with those paths. The example's
settings (inventory, group_vars, watch.yml) are used as written; only what must
differ in the lab (domain names, ACME server, DNS server and ports, the lab's
three instances as extra HAProxy hosts) is added as host_vars/localhost.yml and
one more inventory file, and printed.

Swarm (examples/swarm/stack.yml):
  1. certificates-renew's command issues the certificate from pebble;
  2. certificates-watch's command (ansible-rulebook) pushes it at start: every
     instance serves it;
  3. a forced renewal (the README's command) -> the watcher pushes it;
  4. the README's status command shows every instance serving it;
  5. one instance down during a renewal: the others get it, the watcher lives
     on, and the restarted instance serves it from the persisted files.
Kubernetes (examples/kubernetes/*.yaml, one resource per file):
  6. the CronJob's command (headless-service lookup, prefix '') issues, persists
     and pushes a new certificate: every instance serves it; a second run
     changes nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
# The rulebook runner and its helpers live with the rulebook's own end-to-end test.
sys.path.insert(0, os.path.join(HERE, "..", "eda_push_on_change"))
from eda_e2e import (  # noqa: E402  pylint: disable=import-error,wrong-import-position
    Failure, Rulebook, check, find_rulebook, java_home, load_config, playbook_recaps, wait_for_recaps,
)

SERVERNAME_DOMAIN = "lab.test"
RUN_TIMEOUT = 300


def log(message: str) -> None:
    print(f"[examples_deploy {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- containers as directories


class Container:
    """The file system one example container sees, rooted in a directory."""

    def __init__(self, root: str, mount_points: list[str]):
        self.root = root
        # Longest first, so that /a/b wins over /a.
        prefixes = sorted(set(mount_points), key=len, reverse=True)
        self._pattern = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(p) for p in prefixes) + r")(?=[/\s'\"\],]|$)")

    def path(self, text: str) -> str:
        """TEXT with every container path that lies under a mount point moved under the root (once: idempotent)."""
        return self._pattern.sub(lambda match: self.root + match.group(1), text)

    def write(self, target: str, content: str, mode: int = 0o644) -> str:
        local = self.path(target)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w", encoding="utf-8") as handle:
            handle.write(self.path(content))
        os.chmod(local, mode)
        return local

    def mkdir(self, target: str) -> str:
        local = self.path(target)
        os.makedirs(local, exist_ok=True)
        return local


def swarm_container(stack_dir: str, stack: dict, service_name: str, root: str, secrets: dict[str, str]) -> tuple[Container, list[str], dict]:
    """The Swarm service's volumes, configs and secrets under ROOT; its command and environment."""
    service = stack["services"][service_name]
    volumes = [volume["target"] for volume in service.get("volumes", [])]
    configs = service.get("configs", [])
    container = Container(root, volumes + [os.path.dirname(config["target"]) for config in configs] + ["/run/secrets"])
    for target in volumes:
        container.mkdir(target)
    for config in configs:
        with open(os.path.join(stack_dir, stack["configs"][config["source"]]["file"]), encoding="utf-8") as handle:
            container.write(config["target"], handle.read())
    for name in service.get("secrets", []):
        check(name in secrets, f"the stack gives {service_name} the secret {name}, the test has no value for it")
        container.write(f"/run/secrets/{name}", secrets[name], 0o400)
    environment = {key: container.path(str(value)) for key, value in service.get("environment", {}).items()}
    return container, [container.path(arg) for arg in service["command"]], environment


def cronjob_container(manifests: list[dict], name: str, root: str, secrets: dict[tuple[str, str], str]) -> tuple[Container, list[str], dict]:
    """The CronJob's volumes (ConfigMap items, projected Secrets, PVCs) under ROOT; its command and environment."""
    by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for doc in manifests}
    pod = by_kind[("CronJob", name)]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (spec,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = spec["volumeMounts"]
    container = Container(root, [mount["mountPath"] for mount in mounts])
    for mount in mounts:
        volume = volumes[mount["name"]]
        base = mount["mountPath"]
        container.mkdir(base)
        if "configMap" in volume:
            data = by_kind[("ConfigMap", volume["configMap"]["name"])]["data"]
            for item in volume["configMap"]["items"]:
                container.write(f"{base}/{item['path']}", data[item["key"]])
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                for item in source["secret"]["items"]:
                    key = (source["secret"]["name"], item["key"])
                    check(key in secrets, f"the CronJob mounts Secret {key[0]} key {key[1]}, the test has no value for it")
                    container.write(f"{base}/{item['path']}", secrets[key], 0o400)
        else:
            check("persistentVolumeClaim" in volume, f"volume {mount['name']}: only ConfigMap, projected Secret and PVC are played here")
    environment = {entry["name"]: container.path(entry["value"]) for entry in spec.get("env", [])}
    return container, [container.path(arg) for arg in spec["command"] + spec.get("args", [])], environment


# --------------------------------------------------------------------------- the lab's differences


def add_lab_settings(inventory_dir: str, lab_state: dict, *, service: str | None = None) -> dict:
    """What must differ in the lab, as host_vars of localhost and one more inventory file; returns the overrides."""
    with open(os.path.join(inventory_dir, "group_vars", "all.yml"), encoding="utf-8") as handle:
        example = yaml.safe_load(handle)
    dns, acme, first = lab_state["dns"], lab_state["acme"], lab_state["instances"][0]
    overrides = {
        "certificates_items": [dict(item, domains=[f"{item['name']}.{SERVERNAME_DOMAIN}"]) for item in example["certificates_items"]],
        "certificates_acme_directory": acme["directory"],
        "certificates_acme_ca_file": acme["ca_file"],
        "certificates_rfc2136_server": dns["server"],
        "certificates_rfc2136_port": dns["port"],
        "certificates_rfc2136_zone": SERVERNAME_DOMAIN,
        "certificates_rfc2136_key_name": dns["tsig"]["name"],
        "certificates_dns_nameservers": [dns["server"]],
        "certificates_dns_port": dns["port"],
        "certificates_runtime_port": int(first["runtime_tcp"].rsplit(":", 1)[1]),
        "certificates_verify_port": first["tls_port"],
        "certificates_acme_timeout": 10,
    }
    if service is not None:
        overrides["certificates_service"] = service
    os.makedirs(os.path.join(inventory_dir, "host_vars"), exist_ok=True)
    with open(os.path.join(inventory_dir, "host_vars", "localhost.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(overrides, handle)
    # The lab's instances keep their files in their own directories: they join the persist group as hosts.
    lab_hosts = {
        instance["name"]: {
            "ansible_host": instance["address"],
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "certificates_host_cert_dir": instance["cert_dir"],
            "certificates_host_crt_list": instance["crt_list"],
        }
        for instance in lab_state["instances"]
    }
    with open(os.path.join(inventory_dir, "lab.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump({"all": {"children": {example["certificates_persist_group"]: {"hosts": lab_hosts}}}}, handle)
    kept = sorted(set(example) - set(overrides))
    log(f"  the example's settings kept as written: {', '.join(kept)}")
    log(f"  set for the lab: {', '.join(sorted(overrides))}; lab hosts {', '.join(lab_hosts)} added to {example['certificates_persist_group']}")
    return example


# --------------------------------------------------------------------------- running and checking


def run(command: list[str], environment: dict, work: str, label: str) -> str:
    log(f"{label}: {' '.join(command)}")
    started = time.monotonic()
    result = subprocess.run(command, env={**os.environ, **environment}, cwd=work, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    output = result.stdout + result.stderr
    with open(os.path.join(work, f"{label}.log"), "w", encoding="utf-8") as handle:
        handle.write(output)
    check(result.returncode == 0, f"{label} exited {result.returncode}:\n{output[-6000:]}")
    log(f"  exit 0 in {time.monotonic() - started:.1f} s")
    return output


def store_serial(store: str, name: str) -> str:
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from ingress_lab._served import haproxy_serial  # pylint: disable=import-error,import-outside-toplevel

    with open(os.path.join(store, "live", name, "cert.pem"), "rb") as handle:
        return haproxy_serial(x509.load_pem_x509_certificate(handle.read()))


def served_serials(lab_state: dict, servername: str, names: list[str] | None = None) -> dict[str, str]:
    from ingress_lab import served  # pylint: disable=import-error,import-outside-toplevel

    return {
        instance["name"]: served(instance["address"], instance["tls_port"], servername)["serial"]
        for instance in lab_state["instances"]
        if names is None or instance["name"] in names
    }


def wait_until_served(lab_state: dict, servername: str, serial: str, watcher: Rulebook, names: list[str] | None = None, timeout: float = 120) -> float:
    started = time.monotonic()
    seen: dict[str, str] = {}
    while time.monotonic() - started < timeout:
        watcher.alive()
        seen = served_serials(lab_state, servername, names)
        if set(seen.values()) == {serial}:
            return time.monotonic() - started
        time.sleep(0.5)
    raise Failure(f"after {timeout} s the instances serve {seen}, expected {serial}\n{watcher.tail()}")


class Watcher(Rulebook):
    """The certificates-watch service's own command line (not the one Rulebook builds), in its own session."""

    def __init__(self, command: list[str], environment: dict, work: str):  # pylint: disable=super-init-not-called
        self.command, self.environment, self.work = command, environment, work
        self.log_path = os.path.join(work, "certificates-watch.log")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Watcher:
        log(f"certificates-watch: {' '.join(self.command)}")
        with open(self.log_path, "wb") as output:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                self.command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **self.environment}, cwd=self.work, start_new_session=True
            )
        return self


# --------------------------------------------------------------------------- the examples


def swarm_case(examples: str, config: dict, lab, work: str) -> None:
    stack_dir = os.path.join(examples, "swarm")
    with open(os.path.join(stack_dir, "stack.yml"), encoding="utf-8") as handle:
        stack = yaml.safe_load(handle)
    state = lab.state
    secrets = {"tsig_secret": state["dns"]["tsig"]["secret"] + "\n", "vault_password": "not used by the example's settings\n"}
    # Both certificates services run on one node with the same volumes and configs: one directory.
    root = os.path.join(work, "swarm-node")
    container, renew_command, environment = swarm_container(stack_dir, stack, "certificates-renew", root, secrets)
    watch_container, watch_command, watch_environment = swarm_container(stack_dir, stack, "certificates-watch", root, secrets)
    check(watch_environment == environment, "the two certificates services should share their environment")
    rulebook = find_rulebook(config)
    java = java_home(config)
    check(watch_command[0] == "ansible-rulebook", f"certificates-watch runs {watch_command[0]}, expected ansible-rulebook")
    watch_command[0] = rulebook
    watch_environment = {**environment, "JAVA_HOME": java, "PATH": os.pathsep.join([os.path.join(java, "bin"), os.environ["PATH"]])}
    inventory = container.path("/etc/ingress-haproxy/inventory")
    example = add_lab_settings(inventory, state)
    store = container.path(example["certificates_store_dir"])
    volume_bundle = container.path(example["certificates_items"][0]["haproxy_path"])
    name = example["certificates_items"][0]["name"]
    servername = f"{name}.{SERVERNAME_DOMAIN}"
    # What the README tells to run in the certificates-watch container.
    force_renew = [*renew_command, "-e", "certificates_force_renew=true"]
    status_command = [renew_command[0], "-i", inventory, "ingress.haproxy.status"]
    check(renew_command[:3] == ["ansible-playbook", "-i", inventory], f"certificates-renew runs {renew_command}")

    # HAProxy's entrypoint.sh creates the empty crt-list on a new volume.
    container.write(example["certificates_items"][0]["crt_list"], "")

    log("swarm 1: certificates-renew issues the certificate")
    run(renew_command, environment, work, "certificates-renew")
    first = store_serial(store, name)

    with Watcher(watch_command, watch_environment, work) as watcher:
        log("swarm 2: certificates-watch starts and pushes what the store holds")
        seconds = wait_until_served(state, servername, first, watcher)
        log(f"  every instance serves {first} {seconds:.1f} s after the watcher started")
        recaps = wait_for_recaps(watcher, 1)
        check(recaps[0]["ok"], f"the first push failed: {recaps[0]['text']}")
        # The rollout writes a host's files once its wave passed the check, after every instance serves: look
        # once the run has ended.
        check(os.path.exists(volume_bundle), f"the bundle was not written to the shared volume ({volume_bundle})")
        check(oct(os.stat(volume_bundle).st_mode & 0o777) == oct(0o600), f"{volume_bundle} is not 0600")

        log("swarm 3: a renewal (README: force one) -> the watcher pushes it")
        run(force_renew, environment, work, "renew-forced-1")
        second = store_serial(store, name)
        check(second != first, "the forced renewal kept the serial")
        seconds = wait_until_served(state, servername, second, watcher)
        log(f"  every instance serves {second} {seconds:.1f} s after the renewal")
        recaps = wait_for_recaps(watcher, 2)
        check(recaps[1]["ok"], f"the push after the renewal failed: {recaps[1]['text']}")

        log("swarm 4: the status command shows every instance serving it")
        output = run(status_command, environment, work, "status")
        for instance in state["instances"]:
            rows = [line for line in output.splitlines() if instance["name"] in line and second in line and "matches bundle" in line]
            check(rows, f"status shows no row for {instance['name']} serving {second}:\n{output[-4000:]}")

        log("swarm 5: h2 is down during a renewal -> the others get it; h2 serves it once it is back")
        lab.stop_instance("h2")
        run(force_renew, environment, work, "renew-forced-2")
        third = store_serial(store, name)
        seconds = wait_until_served(state, servername, third, watcher, names=["h1", "h3"])
        log(f"  h1 and h3 serve {third} {seconds:.1f} s after the renewal")
        recaps = wait_for_recaps(watcher, 3)
        check(not recaps[2]["ok"], f"the push with h2 down should fail (for h2): {recaps[2]['text']}")
        log(f"  the push reported the failure: {' '.join(recaps[2]['text'].split())}")
        watcher.alive()
        lab.start_instance("h2")
        restarted = served_serials(state, servername, ["h2"])
        check(restarted == {"h2": third}, f"the restarted instance serves {restarted}, expected the persisted {third}")
        log(f"  h2 restarted and serves {third} from the persisted files")


def kubernetes_case(examples: str, lab, work: str) -> None:
    manifests = []
    for name in sorted(os.listdir(os.path.join(examples, "kubernetes"))):
        if name.endswith(".yaml"):
            with open(os.path.join(examples, "kubernetes", name), encoding="utf-8") as handle:
                manifests.append(yaml.safe_load(handle))
    state = lab.state
    secrets = {("certificates-tsig", "secret"): state["dns"]["tsig"]["secret"] + "\n", ("certificates-vault", "password"): "unused\n"}
    container, command, environment = cronjob_container(manifests, "certificates", os.path.join(work, "k8s-pod"), secrets)
    inventory = container.path("/etc/ingress-haproxy/inventory")
    # The lab has no cluster DNS: tasks.haproxy is its name that lists every instance by itself.
    example = add_lab_settings(inventory, state, service="tasks.haproxy")
    check(example["certificates_service_prefix"] == "", "the Kubernetes example should look the headless Service up with prefix ''")
    store = container.path(example["certificates_store_dir"])
    name = example["certificates_items"][0]["name"]
    servername = f"{name}.{SERVERNAME_DOMAIN}"
    before = served_serials(state, servername)
    # The DaemonSet's init container creates the empty crt-list on a new volume.
    container.write(example["certificates_items"][0]["crt_list"], "")

    log("kubernetes 6: the CronJob's command issues, persists, pushes and verifies")
    run(command, environment, work, "cronjob-1")
    issued = store_serial(store, name)
    check(issued not in before.values(), f"the CronJob's certificate {issued} was already served: {before}")
    after = served_serials(state, servername)
    check(set(after.values()) == {issued}, f"after the CronJob's run the instances serve {after}, expected {issued}")
    log(f"  every instance serves {issued}")
    output = run(command, environment, work, "cronjob-2")
    recap = playbook_recaps(output)
    check(recap and recap[-1]["ok"], f"the second run failed:\n{output[-4000:]}")
    check(served_serials(state, servername) == after, "the second run changed what is served")
    check(store_serial(store, name) == issued, "the second run renewed a certificate that was not due")
    log("  a second run renews nothing and changes nothing served")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="tests/integration/integration_config.yml")
    parser.add_argument("--case", choices=("all", "swarm", "kubernetes"), default="all", help="run one example only")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config = load_config(args.config)
    sys.path.insert(0, config["ingress_lab_dir"])
    from ingress_lab import Lab  # pylint: disable=import-error,import-outside-toplevel

    examples = os.path.normpath(os.path.join(config["ingress_lab_dir"], "..", "..", "examples"))
    os.makedirs(config["ingress_lab_root"], exist_ok=True)
    work = tempfile.mkdtemp(prefix="examples-", dir=config["ingress_lab_root"])
    try:
        with Lab(config["ingress_lab_root"], instances=3, dns=True, acme=True) as lab:
            if args.case in ("all", "swarm"):
                swarm_case(examples, config, lab, work)
            if args.case in ("all", "kubernetes"):
                kubernetes_case(examples, lab, work)
            secret = lab.state["dns"]["tsig"]["secret"]
        check_no_secret(work, secret)
    except Failure as failure:
        sys.exit(f"FAILED: {failure}\nkept {work} for inspection")
    shutil.rmtree(work, ignore_errors=True)


def check_no_secret(work: str, secret: str) -> None:
    for name in sorted(os.listdir(work)):
        if name.endswith(".log"):
            with open(os.path.join(work, name), encoding="utf-8", errors="replace") as handle:
                check(secret not in handle.read(), f"the TSIG secret appears in the output of {name[:-4]}")
    log("the TSIG secret appears in no output")


if __name__ == "__main__":
    main()
