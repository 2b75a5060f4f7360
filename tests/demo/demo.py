#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""make demo: the whole pipeline on the loopback lab, from nothing.

Starts three HAProxy instances, bind9 and pebble (tests/lab), then runs
``ansible-playbook ingress.haproxy.site``: pebble issues a certificate over
ACME DNS-01 (the TXT records written to bind9 through RFC 2136 with TSIG), the
role bundles it, writes it into every instance's certificate directory, pushes
it into the three running instances it finds through ``tasks.haproxy`` (no
reload), and checks each by TLS handshake. Then ``ingress.haproxy.status``
prints what every instance serves, a second run shows everything unchanged,
and the lab is stopped (always).

    python tests/demo/demo.py --lab-root DIR      (make demo runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(COLLECTION_ROOT, 'tests', 'lab'))

# pylint: disable-next=wrong-import-position
from ingress_lab import Lab, LabError, runtime_command, served  # noqa: E402

DOMAIN = 'www.lab.test'
CERT_NAME = 'www'
# The path every HAProxy host would load the certificate from; on each lab
# instance the host variable certificates_host_cert_dir maps it into that
# instance's own certificate directory.
HAPROXY_PATH = '/etc/haproxy/certs/www.lab.test.pem'


class DemoError(Exception):
    """A step of the demo did not do what it should."""


def say(text: str = '') -> None:
    print(text, flush=True)


def banner(text: str) -> None:
    say()
    say('=' * 78)
    say(text)
    say('=' * 78)


def ansible_environment() -> dict:
    env = dict(os.environ)
    if 'ANSIBLE_COLLECTIONS_PATH' not in env:
        # .../ansible_collections/ingress/haproxy -> the dir holding ansible_collections
        env['ANSIBLE_COLLECTIONS_PATH'] = os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_ROOT)))
    env.setdefault('ANSIBLE_DISPLAY_SKIPPED_HOSTS', 'false')
    env.setdefault('ANSIBLE_NOCOLOR', '1')
    env.setdefault('ANSIBLE_LOCALHOST_WARNING', 'false')
    env.setdefault('ANSIBLE_INVENTORY_UNPARSED_WARNING', 'false')
    return env


def ansible_playbook() -> str:
    beside_python = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    if os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which('ansible-playbook')
    if not found:
        raise DemoError('ansible-playbook not found (run make demo, which sets up the venv)')
    return found


def write_inventory(lab_state: dict, work_dir: str) -> tuple[str, str]:
    """An inventory (the three instances as HAProxy hosts) and the role's variables, from the lab state."""
    hosts = {}
    for instance in lab_state['instances']:
        hosts[instance['name']] = {
            # The lab's instances all live on this machine, in their own directories.
            'ansible_connection': 'local',
            'ansible_pipelining': True,
            'ansible_python_interpreter': sys.executable,
            'ansible_host': instance['address'],
            'certificates_host_cert_dir': instance['cert_dir'],
            'certificates_host_crt_list': instance['crt_list'],
        }
    inventory = {
        'all': {
            'hosts': {'localhost': {'ansible_connection': 'local', 'ansible_pipelining': True,
                                    'ansible_python_interpreter': sys.executable}},
            'children': {'haproxy': {'hosts': hosts}},
        },
    }
    dns, acme = lab_state['dns'], lab_state['acme']
    variables = {
        'certificates_items': [
            {'name': CERT_NAME, 'domains': [DOMAIN], 'haproxy_path': HAPROXY_PATH, 'crt_list': '/etc/haproxy/crt-list.txt'},
        ],
        'certificates_store_dir': os.path.join(work_dir, 'store'),
        'certificates_acme_directory': acme['directory'],
        'certificates_acme_ca_file': acme['ca_file'],
        'certificates_acme_terms_agreed': True,
        'certificates_acme_contact': 'demo@lab.test',
        'certificates_rfc2136_server': dns['server'],
        'certificates_rfc2136_port': dns['port'],
        'certificates_rfc2136_zone': 'lab.test',
        'certificates_rfc2136_key_name': dns['tsig']['name'],
        'certificates_rfc2136_key_secret': dns['tsig']['secret'],
        'certificates_rfc2136_key_algorithm': dns['tsig']['algorithm'],
        'certificates_service': dns['service'],
        'certificates_dns_nameservers': [dns['server']],
        'certificates_dns_port': dns['port'],
        # Every instance listens on the same ports (as every task of a swarm service does).
        'certificates_runtime_port': int(lab_state['instances'][0]['runtime_tcp'].rsplit(':', 1)[1]),
        'certificates_verify_port': lab_state['instances'][0]['tls_port'],
        'certificates_persist_group': 'haproxy',
        'certificates_report_file': os.path.join(work_dir, 'report.json'),
        'certificates_status_file': os.path.join(work_dir, 'status.json'),
    }
    inventory_path = os.path.join(work_dir, 'inventory.json')
    vars_path = os.path.join(work_dir, 'vars.json')
    for path, data in ((inventory_path, inventory), (vars_path, variables)):
        # The variables hold the lab's TSIG secret.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, 'w', encoding='utf-8') as out:
            json.dump(data, out, indent=2)
    return inventory_path, vars_path


def run_playbook(name: str, inventory: str, variables: str) -> float:
    command = [ansible_playbook(), f'ingress.haproxy.{name}', '-i', inventory, '-e', f'@{variables}']
    say(f'$ ansible-playbook ingress.haproxy.{name} -i {inventory} -e @{variables}')
    started = time.monotonic()
    completed = subprocess.run(command, env=ansible_environment(), check=False)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise DemoError(f'ansible-playbook ingress.haproxy.{name} failed (rc {completed.returncode})')
    say(f'(ingress.haproxy.{name} took {elapsed:.1f} s)')
    return elapsed


def handshakes(lab_state: dict) -> dict:
    """What a TLS client asking for www.lab.test gets from every instance, checked against pebble's root."""
    seen = {}
    for instance in lab_state['instances']:
        try:
            leaf = served(instance['address'], instance['tls_port'], DOMAIN)
            seen[instance['name']] = leaf
        except LabError as error:
            seen[instance['name']] = {'error': str(error)}
    return seen


def worker_pids(lab_state: dict) -> dict:
    """The PID of the process that answers each instance's Runtime API (a reload would change it)."""
    pids = {}
    for instance in lab_state['instances']:
        info = runtime_command(instance['runtime_tcp'], 'show info', timeout=5)
        pids[instance['name']] = next((line.split(':', 1)[1].strip() for line in info.splitlines()
                                       if line.startswith('Pid:')), '?')
    return pids


def chain_verifies(lab_state: dict, instance: dict) -> str:
    """'yes' when a client trusting only pebble's root accepts the chain and the name."""
    try:
        served(instance['address'], instance['tls_port'], DOMAIN, ca_file=lab_state['acme']['issuer_root'])
    except LabError as error:
        return f'no ({error})'
    return 'yes'


def read_report(path: str) -> dict:
    with open(path, encoding='utf-8') as report_file:
        report = json.load(report_file)
    return {instance['name']: instance for instance in report['instances']}


def print_serials(title: str, lab_state: dict, before: dict, report: dict, after: dict) -> list[str]:
    banner(title)
    say(f'{"instance":<9} {"serial before":<58} {"serial after (push)":<20} {"TLS handshake sees":<20} {"action":<10} chain ok')
    actions = []
    for instance in lab_state['instances']:
        name = instance['name']
        entry = report.get(name, {})
        cert = next((c for c in entry.get('certificates', []) if c['name'] == CERT_NAME), {})
        seen_before = before.get(name, {})
        seen_after = after.get(name, {})
        before_text = seen_before.get('serial', 'none')
        if seen_before.get('names') and DOMAIN not in seen_before['names']:
            # Before the first run the frontend answers www.lab.test with its default certificate.
            before_text = f"{before_text} ({','.join(seen_before['names'])})"
        actions.append(cert.get('action', 'missing'))
        say(f'{name:<9} {before_text:<58} {cert.get("serial_after") or "-":<20} '
            f'{seen_after.get("serial", seen_after.get("error", "-")):<20} {cert.get("action", "-"):<10} '
            f'{chain_verifies(lab_state, instance)}')
    return actions


def demo(lab_root: str) -> None:
    banner('1. Start the lab: 3 HAProxy instances, bind9 (RFC 2136, tasks.haproxy), pebble (ACME)')
    with Lab(lab_root, instances=3, dns=True, acme=True) as lab:
        state = lab.state
        work_dir = os.path.join(state['state_dir'], 'demo')
        os.makedirs(work_dir, mode=0o700)
        for instance in state['instances']:
            say(f"  {instance['name']}: Runtime API {instance['runtime_tcp']}, TLS {instance['address']}:{instance['tls_port']}, "
                f"pid {instance['pid']}")
        say(f"  bind9 {state['dns']['server']}:{state['dns']['port']} (zones {', '.join(state['dns']['zones'])}), "
            f"pebble {state['acme']['directory']}")
        inventory, variables = write_inventory(state, work_dir)
        pids = worker_pids(state)

        before = handshakes(state)

        banner('2. ingress.haproxy.site: renew (pebble, DNS-01 via RFC 2136) -> bundle -> persist -> push -> verify')
        run_playbook('site', inventory, variables)
        first = read_report(os.path.join(work_dir, 'report.json'))
        after = handshakes(state)
        actions = print_serials('Serials per instance after the first run', state, before, first, after)
        if set(actions) != {'created'}:
            raise DemoError(f'first run: expected the certificate created on every instance, got {actions}')
        for name, leaf in after.items():
            if leaf.get('names') != [DOMAIN]:
                raise DemoError(f'{name} does not serve the new certificate: {leaf}')
        served_serials = {leaf['serial'] for leaf in after.values()}
        if len(served_serials) != 1:
            raise DemoError(f'the instances serve different certificates: {served_serials}')

        banner('3. ingress.haproxy.status: what every instance serves')
        run_playbook('status', inventory, variables)

        banner('4. ingress.haproxy.site again: nothing to renew, nothing to push')
        run_playbook('site', inventory, variables)
        second = read_report(os.path.join(work_dir, 'report.json'))
        again = handshakes(state)
        actions = print_serials('Serials per instance after the second run', state, after, second, again)
        if set(actions) != {'unchanged'}:
            raise DemoError(f'second run: expected unchanged on every instance, got {actions}')
        if {leaf.get('serial') for leaf in again.values()} != served_serials:
            raise DemoError('the served certificate changed on the second run')

        still = worker_pids(state)
        if still != pids:
            raise DemoError(f'an instance was reloaded or restarted: worker PIDs {pids} -> {still}')
        say()
        say(f'Same HAProxy worker PIDs throughout ({", ".join(f"{k} {v}" for k, v in pids.items())}): '
            'the certificate went live without a reload.')
    banner('Lab stopped. Demo done.')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lab-root', required=True, help='where the lab keeps its state directories')
    args = parser.parse_args()
    try:
        demo(args.lab_root)
    except (DemoError, LabError) as error:
        print(f'demo failed: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
