# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The lab on Debian's newer HAProxy builds: version choice, cached roots, chroot, crt-store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# pylint: disable=wrong-import-position
from ingress_lab import Lab, LabError, runtime_command, served  # noqa: E402
from ingress_lab._process import is_running  # noqa: E402
from ingress_lab._roots import ROOTS_ENV, VERSION_ENV, build_for, ensure_root, root_path  # noqa: E402

LAB_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lab.py')


def test_unknown_version_is_refused(tmp_path):
    with pytest.raises(LabError, match=r"unknown HAProxy version '2\.8': choose one of 2\.6, 3\.0, 3\.2, 3\.4"):
        Lab(str(tmp_path), haproxy='2.8')
    result = subprocess.run([sys.executable, LAB_PY, 'start', '--root', str(tmp_path), '--haproxy', '2.8'],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "invalid choice: '2.8'" in result.stderr
    assert not os.listdir(tmp_path)


def test_version_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(VERSION_ENV, '3.4')
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    build = build_for(None)
    assert (build.suite, build.extra_suite) == ('sid', 'experimental')
    assert root_path(build) == str(tmp_path / 'sid+experimental')
    # An explicit version wins over the environment; 2.6 is the host's HAProxy, no root.
    assert root_path(build_for('2.6')) is None
    monkeypatch.delenv(VERSION_ENV)
    assert build_for(None).version == '2.6'


def test_incomplete_root_is_refused_and_kept(monkeypatch, tmp_path):
    # A directory where a root belongs, without the mark a finished build writes last.
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    (tmp_path / 'trixie' / 'usr' / 'sbin').mkdir(parents=True)
    (tmp_path / 'trixie' / 'usr' / 'sbin' / 'haproxy').write_text('half-built')
    with pytest.raises(LabError, match='is not a complete root'):
        ensure_root(build_for('3.0'))
    assert (tmp_path / 'trixie' / 'usr' / 'sbin' / 'haproxy').read_text() == 'half-built'


def test_host_lab_has_no_crt_store(lab_factory):
    state = lab_factory(instances=1, dns=False, haproxy='2.6')
    assert state['haproxy'] == '2.6' and state['haproxy_root'] is None
    assert state['haproxy_version'].startswith('2.6.')
    assert state['crt_store'] is None and state['instances'][0]['crt_store_cert'] is None


def test_debian_3_2_lab(tmp_path):
    lab = Lab(str(tmp_path), instances=2, haproxy='3.2')
    with lab:
        state = lab.state
        assert state['haproxy'] == '3.2'
        assert state['haproxy_version'].startswith('3.2.')
        assert os.path.isfile(os.path.join(state['haproxy_root'], 'usr/sbin/haproxy'))
        first, second = state['instances']
        # Runtime API on the same paths as outside the root; the master CLI works in the chroot.
        assert 'worker' in runtime_command(first['master_cli'], 'show proc')
        listing = runtime_command(first['runtime_unix'], 'show ssl cert').splitlines()
        assert first['default_cert'] in listing and '@lab/store' in listing
        assert state['crt_store'] == {'name': '@lab/store', 'servername': 'store.lab.test'}
        leaf = served(second['address'], second['tls_port'], 'store.lab.test', ca_file=state['ca']['cert'])
        assert leaf['names'] == ['store.lab.test'] and leaf['verified'] is True
        default = served(second['address'], second['tls_port'], 'other.lab.test', ca_file=None)
        assert default['names'] == ['default.lab.test']
        # The bind mount lives in the process's own mount namespace: the host never sees it.
        with open('/proc/self/mountinfo', encoding='utf-8') as mounts:
            assert state['state_dir'] not in mounts.read()
        with open(f"/proc/{first['pid']}/mountinfo", encoding='utf-8') as mounts:
            assert state['state_dir'] in mounts.read()
        # A restarted instance runs from the same root.
        lab.stop_instance('h2')
        restarted = lab.start_instance('h2')
        assert '@lab/store' in runtime_command(restarted['runtime_unix'], 'show ssl cert')
        pids = [entry['pid'] for entry in lab.state['processes']]
    assert not [pid for pid in pids if is_running(pid)]
    assert not os.path.exists(state['state_dir'])
