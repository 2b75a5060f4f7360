# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the lab itself: run with ``.venv/bin/python -m pytest tests/lab``."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest


# pylint: disable=wrong-import-position
from ingress_lab import Lab, LabError, client_request, runtime_command, served, stop_all  # noqa: E402
from ingress_lab._process import is_running  # noqa: E402


LAB_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lab.py')


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if is_running(pid)]


def test_fixture_lab_serves_default_certificate(lab):
    assert len(lab['instances']) == 3
    for instance in lab['instances']:
        leaf = served(instance['address'], instance['tls_port'], 'default.lab.test', ca_file=lab['ca']['cert'])
        assert leaf['names'] == ['default.lab.test']
        assert leaf['verified'] is True
        listing = runtime_command(instance['runtime_unix'], f"show ssl cert {instance['default_cert']}")
        assert f"Serial: {leaf['serial']}" in listing.splitlines()
        assert f"SHA1 FingerPrint: {leaf['fingerprint']}" in listing.splitlines()


def test_operator_socket_is_refused(lab):
    instance = lab['instances'][1]
    with open(instance['default_cert'], encoding='ascii') as pem:
        reply = runtime_command(instance['runtime_operator'], f"set ssl cert {instance['default_cert']}",
                                payload=pem.read())
    assert reply.splitlines()[0] == 'Permission denied'


def _client(instance: dict, mtls: dict, name: str) -> dict:
    return client_request(instance['address'], mtls['port'], mtls[name]['cert'], mtls[name]['key'])


def test_mtls_frontend_accepts_ca1_rejects_ca2_until_pushed(lab_factory):
    state = lab_factory(instances=1)
    instance, mtls = state['instances'][0], state['mtls']
    assert instance['mtls_port'] == mtls['port']
    assert _client(instance, mtls, 'client1')['accepted'] is True
    rejected = _client(instance, mtls, 'client2')
    assert rejected['accepted'] is False and rejected['error']
    # The ready-made payloads do what their names say, through the real Runtime API.
    for kind, payload in (('ca-file', 'ca_both'), ('crl-file', 'crl_revoked')):
        name = mtls['ca_file' if kind == 'ca-file' else 'crl_file']
        with open(mtls[payload], encoding='ascii') as pem:
            assert 'transaction created' in runtime_command(instance['runtime_unix'], f'set ssl {kind} {name}',
                                                            payload=pem.read())
        assert 'Success!' in runtime_command(instance['runtime_unix'], f'commit ssl {kind} {name}')
        if kind == 'ca-file':
            assert _client(instance, mtls, 'client2')['accepted'] is True
    assert _client(instance, mtls, 'client2')['accepted'] is False
    assert _client(instance, mtls, 'client1')['accepted'] is True
    for name in ('ca1', 'ca2', 'client1', 'client2'):
        assert os.stat(mtls[name]['key']).st_mode & 0o777 == 0o600


def test_silent_endpoint_times_out(lab):
    started = time.monotonic()
    with pytest.raises(LabError, match='timed out'):
        runtime_command(lab['silent_endpoint'], 'show info', timeout=0.5)
    assert time.monotonic() - started < 2


def test_stop_and_start_one_instance(lab_factory):
    state = lab_factory(instances=2)
    lab = Lab.attach(state['state_dir'], keep=True)
    old_pid = state['instances'][1]['pid']
    lab.stop_instance('h2')
    assert not _alive([old_pid])
    with pytest.raises(LabError):
        served(state['instances'][1]['address'], state['instances'][1]['tls_port'], 'default.lab.test')
    assert _alive([state['instances'][0]['pid']])
    restarted = lab.start_instance('h2')
    assert restarted['pid'] != old_pid
    leaf = served(restarted['address'], restarted['tls_port'], 'default.lab.test')
    assert leaf['names'] == ['default.lab.test']
    with open(os.path.join(state['state_dir'], 'state.json'), encoding='utf-8') as state_file:
        recorded = json.load(state_file)
    assert restarted['pid'] in [entry['pid'] for entry in recorded['processes']]


def test_preload_and_acme(lab_factory):
    state = lab_factory(instances=1, acme=True, preload=20, bufsize=32768)
    instance = state['instances'][0]
    listing = runtime_command(instance['runtime_tcp'], 'show ssl cert').splitlines()
    assert len([line for line in listing if line.endswith('.pem')]) == 21
    assert state['dns']['pid'] and state['acme']['pid']
    with open(state['acme']['issuer_root'], encoding='ascii') as root:
        assert root.read().startswith('-----BEGIN CERTIFICATE-----')
    assert 'tune.bufsize 32768' in open(instance['config'], encoding='utf-8').read()


def _directory(acme: dict) -> dict:
    context = ssl.create_default_context(cafile=acme['ca_file'])
    with urllib.request.urlopen(acme['directory'], context=context, timeout=10) as reply:  # nosec - lab URL
        return json.load(reply)


def test_pebble_2_10_offers_profiles_ari_and_requires_eab(lab_factory):
    """Debian sid's pebble runs on the host: profiles (a 6-day one), renewalInfo, EAB required."""
    state = lab_factory(instances=1, acme=True, pebble='2.10', acme_eab=True)
    acme = state['acme']
    assert acme['version'].startswith('2.') and tuple(int(part) for part in acme['version'].split('.')[:2]) >= (2, 10)
    assert acme['profiles'] == {'default': 90 * 86400, 'shortlived': 6 * 86400}
    assert acme['eab']['kid'] == 'kid-lab' and len(acme['eab']['hmac']) == 43
    directory = _directory(acme)
    assert 'renewalInfo' in directory
    assert set(directory['meta']['profiles']) == {'default', 'shortlived'}
    assert directory['meta']['externalAccountRequired'] is True


def test_host_pebble_has_no_profiles(lab_factory):
    acme = lab_factory(instances=1, acme=True)['acme']
    assert acme['version'] == '2.4' and acme['profiles'] == {} and acme['eab'] is None
    directory = _directory(acme)
    assert 'profiles' not in directory.get('meta', {}) and 'renewalInfo' not in directory


def test_pebbles_resolver_follows_a_delegated_challenge_the_authoritative_server_does_not(lab_factory):
    import dns.message
    import dns.query
    import dns.rdatatype
    import dns.tsigkeyring
    import dns.update

    state = lab_factory(instances=1, acme=True)['dns']
    delegation = state['delegation']
    keyring = dns.tsigkeyring.from_text({state['tsig']['name']: state['tsig']['secret']})
    update = dns.update.UpdateMessage(delegation['zone'] + '.', keyring=keyring, keyalgorithm=state['tsig']['algorithm'])
    update.add(delegation['delegated']['target'] + '.', 5, 'TXT', '"token"')
    assert dns.query.tcp(update, state['server'], port=state['port'], timeout=3).rcode() == 0
    challenge = '_acme-challenge.' + delegation['delegated']['domain'] + '.'

    def txt(port):
        reply = dns.query.udp(dns.message.make_query(challenge, dns.rdatatype.TXT), state['server'], port=port, timeout=3)
        return [rdata.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.TXT for rdata in rrset]

    assert txt(state['port']) == []  # the CNAME alone
    assert txt(state['resolver']['port']) == ['"token"']


def test_cli_start_stop_all_leaves_nothing(tmp_path):
    root = str(tmp_path)
    started = subprocess.run([sys.executable, LAB_PY, 'start', '--root', root, '--instances', '1', '--dns'],
                             capture_output=True, text=True, check=True)
    state = json.loads(started.stdout)
    pids = [entry['pid'] for entry in state['processes']]
    assert len(pids) == 3 and len(_alive(pids)) == 3
    subprocess.run([sys.executable, LAB_PY, 'stop-all', '--root', root], check=True, capture_output=True)
    assert not _alive(pids)
    assert not os.path.exists(state['state_dir'])


def test_stop_never_signals_a_foreign_process(tmp_path):
    """A recorded PID that is not the lab's (reused, or forged) is left alone."""
    with subprocess.Popen(['sleep', '30']) as foreign:
        state_dir = tmp_path / 'lab-forged'
        (state_dir / 'pids').mkdir(parents=True)
        (state_dir / 'pids' / 'h1.pid').write_text(f'{foreign.pid}\n')
        stop_all(str(tmp_path))
        assert foreign.poll() is None
        foreign.kill()


def test_failed_start_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setattr('ingress_lab._pebbles.HOST_PEBBLE', '/bin/false')
    lab = Lab(str(tmp_path), instances=1, acme=True)
    with pytest.raises(LabError, match='acme .* exited during start-up'):
        lab.start()
    assert not os.listdir(tmp_path)
    assert not _alive([entry['pid'] for entry in lab.state['processes']])


def test_stop_includes_instances_restarted_elsewhere(tmp_path):
    """An instance restarted through another Lab object (or the CLI) is still stopped with the lab."""
    with Lab(str(tmp_path), instances=2) as lab:
        other = Lab.attach(lab.state_dir, keep=True)
        restarted = other.start_instance('h2') if other.stop_instance('h2') else None
        assert restarted and _alive([restarted['pid']])
    assert not _alive([restarted['pid']])
    assert not os.listdir(tmp_path)
