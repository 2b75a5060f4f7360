# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Two writers push different bundles for the same paths to one HAProxy at the same time, round after round.

Each round issues, for every path, a fresh leaf for writer A and another for
writer B (both for the path's own name), then runs haproxy_ssl_cert twice at
once, as Ansible runs it (a process per module run), A over the unix socket
and B over TCP. By default every other round the two runs have separate lock
directories (two controllers: nothing on the controller serialises them, so
HAProxy's own behaviour and the module's self-healing are what is tested) and
in the other rounds a shared one (one controller: the process lock).

After each round it checks from outside, with the lab's own Runtime API client
and a TLS handshake: every path holds the leaf of A or of B for that round,
never a leaf for another name; the handshake serves what HAProxy holds; no
transaction is open. A writer may fail, but its message must name the
certificate and the endpoint. At the end writer A runs twice more alone: the
second run must change nothing.

Prints a JSON summary; exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

MODULE = "ansible_collections.ingress.haproxy.plugins.modules.haproxy_ssl_cert"


def collections_root():
    """The directory holding ``ansible_collections`` (this file lives inside the collection)."""
    path = os.path.dirname(os.path.abspath(__file__))
    while os.path.basename(path) != "ansible_collections":
        parent = os.path.dirname(path)
        if parent == path:
            raise SystemExit("concurrent_writers.py must run from inside an ansible_collections tree")
        path = parent
    return os.path.dirname(path)


def start_module(args, work, name, lock_dir):
    args_file = os.path.join(work, "%s.json" % name)
    with open(args_file, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False)}, handle)
    env = dict(os.environ, PYTHONPATH=collections_root(), TMPDIR=lock_dir)
    return subprocess.Popen([sys.executable, "-m", MODULE, args_file], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(process):
    stdout, stderr = process.communicate(timeout=300)
    try:
        return json.loads(stdout)
    except ValueError:
        return {"failed": True, "msg": "no JSON from the module (rc %s): %s %s" % (process.returncode, stdout, stderr)}


def detail(lab_runtime, endpoint, path):
    reply = lab_runtime(endpoint, "show ssl cert %s" % path)
    serial = re.search(r"^Serial: (\S+)", reply, re.MULTILINE)
    sha1 = re.search(r"^SHA1 FingerPrint: (\S+)", reply, re.MULTILINE)
    return (serial.group(1) if serial else None, sha1.group(1) if sha1 else None)


def main():
    work = tempfile.mkdtemp(prefix="concurrent-writers-")
    try:
        return run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work):
    """Every round and the checks; ``work`` holds the bundles, the module arguments and the lock dirs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, help="the lab's state.json")
    parser.add_argument("--lab-dir", required=True, help="tests/lab (for the lab's own client and PKI)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--paths", type=int, default=40, help="how many of the preloaded certificates")
    parser.add_argument("--locks", choices=["separate", "shared", "alternate"], default="alternate")
    parser.add_argument("--handshakes", type=int, default=5, help="paths checked by TLS handshake each round")
    parser.add_argument("--progress", help="rewrite the summary so far to this file after every round (long runs)")
    options = parser.parse_args()

    sys.path.insert(0, options.lab_dir)
    # pylint: disable=import-outside-toplevel
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from ingress_lab import runtime_command, served
    from ingress_lab._pki import CertificateAuthority, cert_pem, key_pem, new_key
    from ingress_lab._served import haproxy_serial

    with open(options.state) as handle:
        state = json.load(handle)
    instance = state["instances"][0]
    with open(state["ca"]["cert"], "rb") as handle:
        ca_cert = x509.load_pem_x509_certificate(handle.read())
    with open(state["ca"]["key"], "rb") as handle:
        ca = CertificateAuthority(ca_cert, serialization.load_pem_private_key(handle.read(), None))
    names = ["preload-%04d.lab.test" % number for number in range(1, options.paths + 1)]
    paths = [os.path.join(instance["cert_dir"], "preload-%04d.pem" % number) for number in range(1, options.paths + 1)]
    writers = {"A": instance["runtime_unix"], "B": instance["runtime_tcp"]}
    keys = {writer: new_key("ec") for writer in writers}
    summary = {"rounds": 0, "paths": len(paths), "wrong_name": 0, "not_of_the_round": 0, "transactions_left": 0,
               "handshake_mismatch": 0, "writer_failures": 0, "unexplained_failures": 0, "retries": 0,
               "warnings": 0, "failures": [], "seconds": 0.0, "rerun_changed": None, "rerun_failed": None}
    started = time.monotonic()
    locks = {writer: tempfile.mkdtemp(prefix="lock-%s-" % writer, dir=work) for writer in writers}
    shared_lock = tempfile.mkdtemp(prefix="lock-shared-", dir=work)
    args = {}
    for round_number in range(options.rounds):
        expected = {}
        for writer in writers:
            certificates = []
            for path, name in zip(paths, names):
                leaf, dummy_key = ca.issue([name], key=keys[writer], days=30)
                bundle = os.path.join(work, "%s-%s" % (writer, os.path.basename(path)))
                with open(bundle, "wb") as handle:
                    handle.write(cert_pem(leaf) + key_pem(keys[writer]))
                os.chmod(bundle, 0o600)
                certificates.append({"path": path, "src": bundle})
                expected.setdefault(path, {})[(haproxy_serial(leaf), leaf.fingerprint(hashes.SHA1()).hex().upper())] = writer
            args[writer] = {"endpoint": writers[writer], "certificates": certificates, "timeout": 10}
        shared = options.locks == "shared" or (options.locks == "alternate" and round_number % 2 == 1)
        running = {writer: start_module(args[writer], work, writer, shared_lock if shared else locks[writer])
                   for writer in writers}
        results = {writer: finish(process) for writer, process in running.items()}
        summary["rounds"] += 1
        for writer, result in results.items():
            summary["warnings"] += len(result.get("warnings", []))
            summary["retries"] += sum(item.get("retries", 0) for item in result.get("certificates", []))
            if result.get("failed"):
                summary["writer_failures"] += 1
                message = result.get("msg", "")
                if len(summary["failures"]) < 10:
                    summary["failures"].append("round %d writer %s: %s" % (round_number, writer, message[:600]))
                if writers[writer] not in message or "certificate" not in message:
                    summary["unexplained_failures"] += 1
        any_failed = any(result.get("failed") for result in results.values())
        for path, name in zip(paths, names):
            held = detail(runtime_command, writers["A"], path)
            if held not in expected[path]:
                reply = runtime_command(writers["A"], "show ssl cert %s" % path)
                subject = re.search(r"^Subject: (.*)$", reply, re.MULTILINE)
                if subject is None or ("CN=%s" % name) not in subject.group(1):
                    summary["wrong_name"] += 1
                    summary["failures"].append("round %d: %s holds %s" % (round_number, path, subject and subject.group(1)))
                elif not any_failed:
                    summary["not_of_the_round"] += 1
        for path, name in list(zip(paths, names))[:options.handshakes]:
            leaf = served(instance["address"], instance["tls_port"], name)
            if (leaf["serial"], leaf["fingerprint"]) != detail(runtime_command, writers["A"], path):
                summary["handshake_mismatch"] += 1
        listing = runtime_command(writers["A"], "show ssl cert")
        if any(line.startswith("*") for line in listing.splitlines()):
            summary["transactions_left"] += 1
            for line in listing.splitlines():
                if line.startswith("*"):
                    runtime_command(writers["A"], "abort ssl cert %s" % line[1:])
        if options.progress:
            summary["seconds"] = round(time.monotonic() - started, 1)
            with open(options.progress, "w") as handle:
                json.dump(summary, handle)
    # A rerun converges; the one after it changes nothing.
    for attempt in range(2):
        result = finish(start_module(args["A"], work, "A", locks["A"]))
        summary["rerun_failed"] = bool(result.get("failed"))
        summary["rerun_changed"] = result.get("changed")
        if result.get("failed"):
            summary["failures"].append("rerun %d: %s" % (attempt, result.get("msg", "")[:600]))
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary, indent=2))
    sound = (summary["wrong_name"] == 0 and summary["not_of_the_round"] == 0 and summary["transactions_left"] == 0
             and summary["handshake_mismatch"] == 0 and summary["unexplained_failures"] == 0
             and summary["rerun_changed"] is False and summary["rerun_failed"] is False)
    return 0 if sound else 1


if __name__ == "__main__":
    sys.exit(main())
