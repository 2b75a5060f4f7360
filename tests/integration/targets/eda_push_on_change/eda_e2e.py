#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end test of the push_on_change rulebook with the real ansible-rulebook.

Timing cases (the rulebook runs a recording playbook in place of the push):
  1. a new certificate file -> exactly one run, within a few seconds;
  2. a burst of 20 writes in one second -> at most two runs;
  3. a half-written file and a key of another certificate -> no run, a logged reason;
  4. a change that settles while a slow run is going -> queued, run after it;
  and over all of them: no two runs overlap.
Push case (the rulebook runs ingress.haproxy.push against the lab's three
HAProxy instances): a renewed certificate written in certbot's layout is served
by every instance; then a half-written renewal changes nothing that is served.

Run by runme.sh (ansible-test) with the integration config that `make
integration` writes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
DEFAULT_JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
SETTLE = 2.0
POLL_INTERVAL = 0.5
# from a settled write to the playbook's first task: settle + polls + ansible-playbook start-up
RUN_DEADLINE = 30.0
QUIET = SETTLE + 3 * POLL_INTERVAL + 8.0  # long enough for an event that should not come to have come


class Failure(Exception):
    """A check of the test failed; the message says what was expected and what was seen."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def log(message: str) -> None:
    print(f"[eda_e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- set-up


def load_config(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    for key in ("ingress_lab_python", "ingress_lab_dir", "ingress_lab_root"):
        check(key in config, f"{path} has no {key}: run this through `make integration`")
    return config


def find_rulebook(config: dict) -> str:
    """ansible-rulebook lives in its own venv (it pins its own dependencies); installed there if missing."""
    if config.get("ingress_eda_rulebook"):
        check(os.access(config["ingress_eda_rulebook"], os.X_OK), f"ingress_eda_rulebook {config['ingress_eda_rulebook']} is not executable")
        return config["ingress_eda_rulebook"]
    # make's layout: <checkout>/.venv/bin/python, so <checkout>/.tmp/eda-venv
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(config["ingress_lab_python"])))
    venv = os.path.join(checkout, ".tmp", "eda-venv")
    binary = os.path.join(venv, "bin", "ansible-rulebook")
    if not os.access(binary, os.X_OK):
        requirements = os.path.join(HERE, "requirements-eda.txt")
        log(f"installing ansible-rulebook into {venv} from {requirements}")
        subprocess.run([config["ingress_lab_python"], "-m", "venv", "--clear", venv], check=True)
        subprocess.run(
            [os.path.join(venv, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check", "-r", requirements],
            check=True,
        )
    return binary


def java_home(config: dict) -> str:
    home = config.get("ingress_java_home") or os.environ.get("JAVA_HOME") or DEFAULT_JAVA_HOME
    check(os.access(os.path.join(home, "bin", "java"), os.X_OK), f"no Java at {home} (ansible-rulebook needs Java 17)")
    return home


def make_pem(ca, name: str, *, key=None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for NAME.lab.test, signed by the CA."""
    from ingress_lab._pki import cert_pem, key_pem  # pylint: disable=import-error,import-outside-toplevel

    certificate, private_key = ca.issue([f"{name}.lab.test"], key=key)
    return cert_pem(certificate), key_pem(private_key)


def write_atomically(path: str, data: bytes) -> None:
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


# --------------------------------------------------------------------------- the rulebook


class Rulebook:
    """One ansible-rulebook process running ingress.haproxy.push_on_change."""

    def __init__(self, binary: str, java: str, work: str, variables: dict, inventory: str, environment: dict,
                 extra_args: tuple[str, ...] = (), prefix: tuple[str, ...] = ()):
        self.binary = binary
        self.prefix = prefix
        self.extra_args = extra_args
        self.java = java
        self.work = work
        self.variables = variables
        self.inventory = inventory
        self.environment = environment
        self.log_path = os.path.join(work, f"rulebook-{int(time.time())}.log")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Rulebook:
        vars_path = os.path.join(self.work, "rulebook-vars.yml")
        with open(vars_path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(self.variables, handle)
        env = dict(os.environ)
        env.update(self.environment)
        env["JAVA_HOME"] = self.java
        env["PATH"] = os.pathsep.join([os.path.join(self.java, "bin"), env.get("PATH", "")])
        command = [
            *self.prefix,
            self.binary,
            "--rulebook", "ingress.haproxy.push_on_change",
            "--inventory", self.inventory,
            "--vars", vars_path,
            "-v",
            *self.extra_args,
        ]
        log(f"starting {' '.join(command)}")
        with open(self.log_path, "wb") as output:
            # its own session: stop() ends ansible-rulebook and the playbook it may be running
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=self.work, start_new_session=True
            )
        self.wait_for_log("Waiting for events", timeout=120)
        return self

    def wait_for_exit(self, timeout: float) -> int:
        """For a run that must stop by itself: its exit code."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"ansible-rulebook still runs after {timeout} s:\n{self.tail()}") from None

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.process is not None and self.process.poll() is not None:
                raise Failure(f"ansible-rulebook exited ({self.process.returncode}):\n{self.tail()}")
            time.sleep(0.2)
        raise Failure(f"ansible-rulebook did not log {text!r} within {timeout} s:\n{self.tail()}")

    def alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise Failure(f"ansible-rulebook exited ({self.process.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


# --------------------------------------------------------------------------- timing cases


class Recorder:
    """The runs the recording playbook wrote down."""

    def __init__(self, work: str):
        self.path = os.path.join(work, "runs.jsonl")
        self.control = os.path.join(work, "control.json")
        self.set_duration(0)

    def set_duration(self, seconds: float) -> None:
        with open(self.control, "w", encoding="utf-8") as handle:
            json.dump({"seconds": seconds}, handle)

    def runs(self) -> list[dict]:
        """One dict per run (start, end, names, received_at), in start order; end is None while running."""
        if not os.path.exists(self.path):
            return []
        runs: dict[str, dict] = {}
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                run = runs.setdefault(record["event"], {"names": record["names"], "received_at": record["received_at"]})
                run[record["phase"]] = record["time"]
        return sorted(({"end": None, **run} for run in runs.values()), key=lambda run: run["start"])

    def runs_for(self, name: str) -> list[dict]:
        return [run for run in self.runs() if name in run["names"]]

    def wait_for(self, rulebook: Rulebook, name: str, *, count: int = 1, phase: str = "end", timeout: float = RUN_DEADLINE) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rulebook.alive()
            runs = self.runs_for(name)
            if len(runs) >= count and all(run.get(phase) for run in runs[:count]):
                return runs
            time.sleep(0.2)
        raise Failure(f"no {phase} of run {count} for {name!r} within {timeout} s; runs: {self.runs()}\n{rulebook.tail()}")


# Root reads any file, so permission cases would not show: the watcher runs without the capabilities that
# let root ignore file permissions (as an unprivileged user would; its Python lives under /root here).
WITHOUT_FILE_PERMISSION_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")


def timing_cases(config: dict, rulebook_binary: str, java: str, work: str, ca) -> None:
    os.makedirs(work)
    watched = os.path.join(work, "watched")
    playbook_dir = os.path.join(work, "playbook")  # alone in its directory: ansible-rulebook copies the directory
    os.makedirs(watched)
    os.makedirs(playbook_dir)
    shutil.copy(os.path.join(HERE, "files", "record_push.yml"), playbook_dir)
    inventory = os.path.join(work, "inventory.ini")
    with open(inventory, "w", encoding="utf-8") as handle:
        handle.write(f"localhost ansible_connection=local ansible_python_interpreter={config['ingress_lab_python']}\n")
    recorder = Recorder(work)
    variables = {
        "cert_changes_paths": [watched],
        "cert_changes_recursive": True,  # the hostile cases put a locked subdirectory in it
        "cert_changes_settle": SETTLE,
        "cert_changes_poll_interval": POLL_INTERVAL,
        "cert_changes_playbook": os.path.join(playbook_dir, "record_push.yml"),
    }
    environment = {"EDA_E2E_RECORDS": recorder.path, "EDA_E2E_CONTROL": recorder.control}
    alpha, beta, gamma = (make_pem(ca, name) for name in ("alpha", "beta", "gamma"))

    # The rulebook's own execution_strategy must win over the command line's default.
    extra_args = ("--execution-strategy", "parallel")
    with Rulebook(rulebook_binary, java, work, variables, inventory, environment, extra_args,
                  prefix=WITHOUT_FILE_PERMISSION_OVERRIDE) as rulebook:
        log("case 1: a new certificate file -> exactly one run within a few seconds")
        written = time.time()
        write_atomically(os.path.join(watched, "alpha.pem"), alpha[0] + alpha[1])
        (run,) = recorder.wait_for(rulebook, "alpha")
        latency = run["start"] - written
        log(f"  run started {latency:.1f} s after the write ({SETTLE} s of it the settle time)")
        check(latency < 15, f"the run started {latency:.1f} s after the write, expected within a few seconds")
        check(run["names"] == ["alpha"], f"the run was given {run['names']}, expected ['alpha']")
        time.sleep(QUIET)
        check(len(recorder.runs_for("alpha")) == 1, f"one write, {len(recorder.runs_for('alpha'))} runs: {recorder.runs()}")

        log("case 2: a burst of 20 writes in one second -> at most two runs")
        before = len(recorder.runs())
        burst_path = os.path.join(watched, "burst.pem")
        started = time.monotonic()
        for index in range(20):
            pair = beta if index % 2 else gamma
            if index % 4 == 3:  # some writers rewrite in place, two writes per file: half-written states too
                with open(burst_path, "wb") as handle:
                    handle.write(pair[0])
                    handle.flush()
                    handle.write(pair[1])
            else:
                write_atomically(burst_path, pair[0] + pair[1])
            time.sleep(max(0.0, started + (index + 1) * 0.05 - time.monotonic()))
        burst_seconds = time.monotonic() - started
        check(burst_seconds < 1.5, f"the burst took {burst_seconds:.2f} s, meant to be about one second")
        recorder.wait_for(rulebook, "burst")
        time.sleep(QUIET)
        burst_runs = recorder.runs_for("burst")
        log(f"  20 writes in {burst_seconds:.2f} s -> {len(burst_runs)} run(s)")
        check(1 <= len(burst_runs) <= 2, f"20 writes in one second gave {len(burst_runs)} runs: {burst_runs}")
        check(len(recorder.runs()) == before + len(burst_runs), f"runs for other names appeared: {recorder.runs()}")

        log("case 3: a half-written file and a key of another certificate -> no run, a logged reason")
        before = len(recorder.runs())
        delta = make_pem(ca, "delta")
        half = delta[0] + delta[1]
        with open(os.path.join(watched, "broken.pem"), "wb") as handle:
            handle.write(half[: len(half) - 80])  # the writer stalls in the middle of the key
        write_atomically(os.path.join(watched, "mismatch.pem"), alpha[0] + beta[1])
        time.sleep(QUIET)
        check(len(recorder.runs()) == before, f"invalid files started a run: {recorder.runs()[before:]}")
        output = rulebook.output()
        for name, reason in (("broken", "without a matching END line"), ("mismatch", "does not match the first certificate")):
            lines = [line for line in output.splitlines() if "cert_changes" in line and f"{name}:" in line and reason in line]
            check(len(lines) == 1, f"expected one logged reason for {name} ({reason!r}), found {lines}")
            log(f"  logged: {lines[0].split(' - ', 3)[-1]}")
        with open(os.path.join(watched, "broken.pem"), "ab") as handle:  # the writer finishes
            handle.write(half[len(half) - 80:])
        (run,) = recorder.wait_for(rulebook, "broken")
        check(run["names"] == ["broken"], f"the completed file gave a run for {run['names']}, expected ['broken']")

        log("case 4: a change that settles while a slow run is going -> queued, runs after it (despite --execution-strategy parallel)")
        recorder.set_duration(8)
        write_atomically(os.path.join(watched, "slow1.pem"), beta[0] + beta[1])
        recorder.wait_for(rulebook, "slow1", phase="start")
        write_atomically(os.path.join(watched, "slow2.pem"), gamma[0] + gamma[1])
        recorder.set_duration(0)  # read by the next run when it starts
        (first,) = recorder.wait_for(rulebook, "slow1", timeout=RUN_DEADLINE + 8)
        (second,) = recorder.wait_for(rulebook, "slow2", timeout=RUN_DEADLINE + 8)
        received = _timestamp(second["received_at"])
        origin = first["start"]
        log(
            f"  slow1 ran 0.0-{first['end'] - origin:.1f} s, slow2's event came at {received - origin:.1f} s, "
            f"slow2 ran {second['start'] - origin:.1f}-{second['end'] - origin:.1f} s"
        )
        check(received < first["end"], "slow2's event should have come while slow1 was running (make the run longer)")
        check(second["start"] >= first["end"], f"slow2 started before slow1 ended: {first} {second}")

        hostile_cases(rulebook, recorder, watched, ca)

        runs = recorder.runs()
        for earlier, later in zip(runs, runs[1:]):
            check(later["start"] >= earlier["end"], f"two runs overlapped: {earlier} {later}")
        log(f"no overlap among all {len(runs)} runs")


def _logged(rulebook: Rulebook, *texts: str) -> list[str]:
    return [line for line in rulebook.output().splitlines() if all(text in line for text in texts)]


def hostile_cases(rulebook: Rulebook, recorder: Recorder, watched: str, ca) -> None:
    """Issue 15: each hostile entry is logged once, the watcher stays alive and runs the push for the next change."""
    started = time.monotonic()

    def logged_once_and_next_change_pushed(name: str, logged: tuple[str, ...]) -> None:
        """The hostile entry is in place: let a few polls see it, then a real change must still be run."""
        time.sleep(SETTLE + 2 * POLL_INTERVAL)
        write_atomically(os.path.join(watched, f"{name}.pem"), b"".join(make_pem(ca, name)))
        (run,) = recorder.wait_for(rulebook, name)
        check(run["names"] == [name], f"the run for {name} was given {run['names']}")
        lines = _logged(rulebook, *logged)
        check(len(lines) == 1, f"expected one log line with {logged}, found {lines}")

    log("hostile 1: a symlink loop (ln -s loop.pem loop.pem) -> logged once, the next change is pushed")
    os.symlink("loop.pem", os.path.join(watched, "loop.pem"))
    logged_once_and_next_change_pushed("after-loop", ("loop.pem", "Too many levels of symbolic links"))
    os.unlink(os.path.join(watched, "loop.pem"))

    log("hostile 2: a subdirectory without execute permission -> logged once, the next change is pushed")
    locked = os.path.join(watched, "locked")
    os.makedirs(os.path.join(locked, "inner"))
    os.chmod(locked, 0o600)  # no search permission, even for its owner
    logged_once_and_next_change_pushed("after-locked", ("locked", "Permission denied"))
    os.chmod(locked, 0o755)
    shutil.rmtree(locked)

    log("hostile 3: a FIFO named fifo.pem -> skipped with a log line, never opened; the next change is pushed")
    os.mkfifo(os.path.join(watched, "fifo.pem"))
    logged_once_and_next_change_pushed("after-fifo", ("fifo.pem", "not a regular file"))
    os.unlink(os.path.join(watched, "fifo.pem"))

    log("hostile 4: new content, chmod 000 before it is read, chmod 644 -> no run while unreadable, then one")
    unreadable = os.path.join(watched, "unreadable.pem")
    write_atomically(unreadable, b"".join(make_pem(ca, "unreadable")))
    recorder.wait_for(rulebook, "unreadable")
    with open(unreadable, "wb") as handle:  # in place: the inode stays, as with a plain rewrite
        handle.write(b"".join(make_pem(ca, "unreadable")))
    os.chmod(unreadable, 0o000)
    time.sleep(QUIET)
    check(len(recorder.runs_for("unreadable")) == 1, f"a run while the file was unreadable: {recorder.runs()}")
    lines = _logged(rulebook, "unreadable", "Permission denied", "no event")
    check(len(lines) == 1, f"expected one logged reason for the unreadable file, found {lines}")
    os.chmod(unreadable, 0o644)  # size, mtime and inode unchanged
    recorder.wait_for(rulebook, "unreadable", count=2)

    log("hostile 5: the watched directory disappears and returns with a new certificate -> pushed")
    away = watched + ".away"
    os.rename(watched, away)
    time.sleep(SETTLE + 2 * POLL_INTERVAL)
    write_atomically(os.path.join(away, "returned.pem"), b"".join(make_pem(ca, "returned")))
    os.rename(away, watched)
    recorder.wait_for(rulebook, "returned")
    check(len(_logged(rulebook, watched, "not a directory (yet)")) == 1, "the missing directory was not logged once")
    rulebook.alive()
    log(f"  the five hostile cases took {time.monotonic() - started:.1f} s; ansible-rulebook is still running")


# --------------------------------------------------------------------------- the real push


class CertbotLive:
    """certbot's layout: live/NAME/*.pem symlinks to archive/NAME/*N.pem, re-pointed at each renewal."""

    KINDS = ("cert", "chain", "fullchain", "privkey")

    def __init__(self, root: str, name: str):
        self.live = os.path.join(root, "live", name)
        self.archive = os.path.join(root, "archive", name)
        os.makedirs(self.live)
        os.makedirs(self.archive)
        os.makedirs(os.path.join(root, "renewal"))
        self.version = 0

    def renew(self, certificate: bytes, key: bytes, *, key_written: bytes | None = None) -> None:
        """Write version N+1 and re-point the symlinks; key_written cuts the key file short (a stalled writer)."""
        self.version += 1
        contents = {"cert": certificate, "chain": b"", "fullchain": certificate, "privkey": key if key_written is None else key_written}
        for kind, data in contents.items():
            path = os.path.join(self.archive, f"{kind}{self.version}.pem")
            with open(path, "wb") as handle:
                handle.write(data)
            os.chmod(path, 0o600 if kind == "privkey" else 0o644)
        for kind in self.KINDS:
            temporary = os.path.join(self.live, f".{kind}.pem.new")
            os.symlink(os.path.join("..", "..", "archive", os.path.basename(self.archive), f"{kind}{self.version}.pem"), temporary)
            os.replace(temporary, os.path.join(self.live, f"{kind}.pem"))

    def finish_key(self, key: bytes) -> None:
        with open(os.path.join(self.archive, f"privkey{self.version}.pem"), "wb") as handle:
            handle.write(key)


def served_serials(lab_state: dict, servername: str) -> dict[str, str]:
    from ingress_lab import served  # pylint: disable=import-error,import-outside-toplevel

    return {
        instance["name"]: served(instance["address"], instance["tls_port"], servername, ca_file=lab_state["ca"]["cert"])["serial"]
        for instance in lab_state["instances"]
    }


def wait_until_served(rulebook: Rulebook, lab_state: dict, servername: str, serial: str, timeout: float) -> float:
    started = time.monotonic()
    seen: dict[str, str] = {}
    while time.monotonic() - started < timeout:
        rulebook.alive()
        seen = served_serials(lab_state, servername)
        if set(seen.values()) == {serial}:
            return time.monotonic() - started
        time.sleep(0.5)
    raise Failure(f"after {timeout} s the instances serve {seen}, expected {serial} everywhere\n{rulebook.tail(120)}")


def push_case(config: dict, rulebook_binary: str, java: str, work: str) -> None:
    from ingress_lab import Lab  # pylint: disable=import-error,import-outside-toplevel
    from ingress_lab._pki import CertificateAuthority  # pylint: disable=import-error,import-outside-toplevel
    from ingress_lab._served import haproxy_serial  # pylint: disable=import-error,import-outside-toplevel

    os.makedirs(work)
    with Lab(config["ingress_lab_root"], instances=3) as lab:
        state = lab.state
        ca = CertificateAuthority(*_lab_ca(state))
        letsencrypt = os.path.join(work, "letsencrypt")
        # The item is `web`; certbot names its lineage after the domain: the event must name the item.
        certbot = CertbotLive(letsencrypt, "default.lab.test")
        first_certificate, first_key = ca.issue(["default.lab.test"])
        certbot.renew(*_pem_pair(first_certificate, first_key))
        inventory = _push_inventory(config, work, state, letsencrypt)
        refused_inventory_file(rulebook_binary, java, work, inventory)
        with open(os.path.join(inventory, "group_vars", "all.yml"), encoding="utf-8") as handle:
            variables = yaml.safe_load(handle)  # the rulebook reads the items from the same settings
        variables.update({
            "cert_changes_paths": [os.path.join(letsencrypt, "live")],
            "cert_changes_recursive": True,
            "cert_changes_settle": SETTLE,
            "cert_changes_poll_interval": POLL_INTERVAL,
        })
        before = served_serials(state, "default.lab.test")
        log(f"push case: the lab's instances serve {before}")
        with Rulebook(rulebook_binary, java, work, variables, inventory, {}) as rulebook:
            log("push case 1: certbot renews -> every instance serves the new certificate")
            renewed, renewed_key = ca.issue(["default.lab.test"])
            serial = haproxy_serial(renewed)
            check(serial not in before.values(), "the renewed certificate's serial is already served")
            certbot.renew(*_pem_pair(renewed, renewed_key))
            seconds = wait_until_served(rulebook, state, "default.lab.test", serial, timeout=120)
            log(f"  every instance serves serial {serial} {seconds:.1f} s after the renewal")
            recaps = wait_for_recaps(rulebook, 1)
            time.sleep(QUIET)
            check(len(playbook_recaps(rulebook.output())) == 1, f"one renewal, several pushes:\n{rulebook.tail(120)}")
            check(recaps[0]["ok"], f"the push failed: {recaps[0]['text']}\n{rulebook.tail(120)}")

            log("push case 2: a renewal whose key is still being written -> no push, a logged reason, nothing changes")
            third, third_key = ca.issue(["default.lab.test"])
            certificate_pem, key_pem = _pem_pair(third, third_key)
            certbot.renew(certificate_pem, key_pem, key_written=key_pem[: len(key_pem) // 2])
            time.sleep(QUIET)
            check(len(playbook_recaps(rulebook.output())) == 1, f"a half-written key started a push:\n{rulebook.tail(120)}")
            reasons = [line for line in rulebook.output().splitlines() if "cert_changes" in line and "default.lab.test:" in line and "no event" in line]
            check(len(reasons) == 1, f"expected one logged reason for the half-written key, found {reasons}")
            log(f"  logged: {reasons[0].split(' - ', 3)[-1]}")
            now_served = served_serials(state, "default.lab.test")
            check(set(now_served.values()) == {serial}, f"the instances changed what they serve: {now_served}")

            log("push case 3: the writer finishes -> the certificate goes live")
            certbot.finish_key(key_pem)
            third_serial = haproxy_serial(third)
            seconds = wait_until_served(rulebook, state, "default.lab.test", third_serial, timeout=120)
            log(f"  every instance serves serial {third_serial} {seconds:.1f} s after the key was complete")
            recaps = wait_for_recaps(rulebook, 2)
            check(recaps[1]["ok"], f"the push failed: {recaps[1]['text']}\n{rulebook.tail(120)}")

        log("deploy hook case: certbot renews and runs the hook cert_watch installed -> every instance serves it")
        hook = install_deploy_hook(config, work, inventory, letsencrypt)
        fourth, fourth_key = ca.issue(["default.lab.test"])
        certbot.renew(*_pem_pair(fourth, fourth_key))
        started = time.monotonic()
        environment = {**os.environ, "RENEWED_LINEAGE": certbot.live, "RENEWED_DOMAINS": "default.lab.test"}
        result = subprocess.run([hook], env=environment, capture_output=True, text=True, timeout=300, check=False)
        check(result.returncode == 0, f"the deploy hook failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        now_served = served_serials(state, "default.lab.test")
        check(set(now_served.values()) == {haproxy_serial(fourth)}, f"after the hook the instances serve {now_served}")
        log(f"  the hook pushed serial {haproxy_serial(fourth)} to every instance in {time.monotonic() - started:.1f} s")


def install_deploy_hook(config: dict, work: str, inventory: str, letsencrypt: str) -> str:
    """Apply ingress.haproxy.cert_watch (no systemd here: files only) so that it writes certbot's deploy hook."""
    with open(os.path.join(inventory, "group_vars", "all.yml"), encoding="utf-8") as handle:
        settings = yaml.safe_load(handle)
    variables = {
        "cert_watch_manage_service": False,
        "cert_watch_unit_dir": os.path.join(work, "units"),
        "cert_watch_certbot_dir": letsencrypt,
        "cert_watch_items": settings["certificates_items"],
        "cert_watch_inventory": inventory,
        "cert_watch_ansible_playbook": shutil.which("ansible-playbook"),
        "cert_watch_lock_file": os.path.join(work, "push.lock"),
    }
    os.makedirs(variables["cert_watch_unit_dir"])
    playbook = os.path.join(work, "install_cert_watch.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        yaml.safe_dump([{"name": "Install cert_watch", "hosts": "localhost", "gather_facts": False,
                         "roles": ["ingress.haproxy.cert_watch"]}], handle)
    with open(os.path.join(work, "install_cert_watch.json"), "w", encoding="utf-8") as handle:
        json.dump(variables, handle)
    result = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={config['ingress_lab_python']}",
         "-e", f"@{handle.name}", playbook],
        capture_output=True, text=True, timeout=300, check=False,
    )
    check(result.returncode == 0, f"installing cert_watch failed:\n{result.stdout[-3000:]}")
    hook = os.path.join(letsencrypt, "renewal-hooks", "deploy", "ingress-haproxy-cert-watch.sh")
    check(os.access(hook, os.X_OK), f"cert_watch wrote no executable {hook}")
    return hook


def refused_inventory_file(rulebook_binary: str, java: str, work: str, inventory: str) -> None:
    """Issue 15: an inventory FILE with group_vars/ beside it would push without them: refused at start."""
    log("inventory case: --inventory FILE with group_vars/ beside it -> ansible-rulebook stops at start, saying why")
    hosts_file = os.path.join(inventory, "hosts.yml")
    rulebook = Rulebook(rulebook_binary, java, work, {"cert_changes_paths": [work]}, hosts_file, {})
    try:
        with contextlib.suppress(Failure):
            rulebook.__enter__()  # pylint: disable=unnecessary-dunder-call
        code = rulebook.wait_for_exit(timeout=120)
        message = "Pass a directory that holds the inventory and its group_vars/"
        check(code != 0 and message in rulebook.output(), f"exit {code}, expected the refusal:\n{rulebook.tail()}")
        log(f"  exit code {code}, logged: {message} ... --inventory {inventory}")
    finally:
        rulebook.stop()


def playbook_recaps(output: str) -> list[dict]:
    """The PLAY RECAP of every playbook run in ansible-rulebook's output: its text and whether all went well."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    recaps = []
    for block in plain.split("PLAY RECAP")[1:]:
        lines = [line for line in block.splitlines()[1:] if ":" in line and "ok=" in line]
        text = "\n".join(lines)
        recaps.append({"text": text, "ok": bool(lines) and not re.search(r"\b(failed|unreachable)=[1-9]", text)})
    return recaps


def wait_for_recaps(rulebook: Rulebook, count: int, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rulebook.alive()
        recaps = playbook_recaps(rulebook.output())
        if len(recaps) >= count and recaps[count - 1]["text"]:
            return recaps
        time.sleep(0.5)
    raise Failure(f"fewer than {count} playbook runs ended within {timeout} s\n{rulebook.tail(120)}")


def _lab_ca(state: dict):
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel

    with open(state["ca"]["cert"], "rb") as handle:
        certificate = x509.load_pem_x509_certificate(handle.read())
    with open(state["ca"]["key"], "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    return certificate, key


def _pem_pair(certificate, key) -> tuple[bytes, bytes]:
    from ingress_lab._pki import cert_pem, key_pem  # pylint: disable=import-error,import-outside-toplevel

    return cert_pem(certificate), key_pem(key)


def _push_inventory(config: dict, work: str, state: dict, letsencrypt: str) -> str:
    """The inventory a user would give the rulebook: the HAProxy hosts and the push settings as group_vars."""
    inventory = os.path.join(work, "inventory")
    os.makedirs(os.path.join(inventory, "group_vars"))
    python = config["ingress_lab_python"]
    hosts = {
        "all": {
            # ansible-rulebook runs playbooks with --limit all, which the implicit localhost never matches
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": python}},
            "children": {
                "haproxy": {
                    "hosts": {
                        instance["name"]: {
                            "ansible_host": instance["address"],
                            "ansible_connection": "local",
                            "ansible_python_interpreter": python,
                            "certificates_host_cert_dir": instance["cert_dir"],
                            "certificates_host_crt_list": instance["crt_list"],
                            "certificates_host_verify_port": instance["tls_port"],
                        }
                        for instance in state["instances"]
                    }
                }
            },
        }
    }
    with open(os.path.join(inventory, "hosts.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(hosts, handle)
    settings = {
        "certificates_items": [
            {
                "name": "web",
                "domains": ["default.lab.test"],
                "haproxy_path": "/etc/haproxy/certs/default.pem",
                "certbot_live": os.path.join(letsencrypt, "live", "default.lab.test"),
            }
        ],
        "certificates_source": "certbot",
        "certificates_certbot_live_dir": os.path.join(letsencrypt, "live"),
        "certificates_store_dir": os.path.join(work, "store"),
        "certificates_persist_group": "haproxy",
        "certificates_endpoints": [instance["runtime_tcp"] for instance in state["instances"]],
    }
    with open(os.path.join(inventory, "group_vars", "all.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(settings, handle)
    return inventory


def _timestamp(iso: str) -> float:
    from datetime import datetime  # pylint: disable=import-outside-toplevel

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- entry point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="tests/integration/integration_config.yml")
    args = parser.parse_args()
    # Stopped from outside (a timeout): unwind, so that ansible-rulebook and the lab are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config = load_config(args.config)
    sys.path.insert(0, config["ingress_lab_dir"])
    from ingress_lab._pki import CertificateAuthority  # pylint: disable=import-error,import-outside-toplevel

    rulebook_binary = find_rulebook(config)
    java = java_home(config)
    os.makedirs(config["ingress_lab_root"], exist_ok=True)
    work = tempfile.mkdtemp(prefix="eda-e2e-", dir=config["ingress_lab_root"])
    passed = False
    try:
        timing_cases(config, rulebook_binary, java, os.path.join(work, "timing"), CertificateAuthority.create())
        push_case(config, rulebook_binary, java, os.path.join(work, "push"))
        passed = True
    except Failure as failure:
        print(f"FAILED: {failure}", file=sys.stderr, flush=True)
    finally:
        if passed:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} for inspection", file=sys.stderr)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
