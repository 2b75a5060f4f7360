# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How fetching Debian sid's pebble fails: clearly, and leaving nothing half-unpacked.

The success path runs against Debian's registry in test_lab.py. These cases
need a registry that misbehaves, so they get a local one (a ``file://``
mirror holding a ``Packages.xz`` written here); the code under test is the
same ``pebble_binary`` the lab calls.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import subprocess

import pytest

# conftest.py puts tests/lab on sys.path.
from ingress_lab import _pebbles
from ingress_lab._errors import LabError


def _mirror(tmp_path, stanza: str, package: bytes = b'not a deb') -> str:
    """A file:// mirror whose sid index holds ``stanza`` (with FILENAME and SHA256 filled in)."""
    mirror = tmp_path / 'mirror'
    architecture = subprocess.run(['dpkg', '--print-architecture'], capture_output=True, text=True,
                                  check=True).stdout.strip()
    index_dir = mirror / 'dists' / 'sid' / 'main' / f'binary-{architecture}'
    index_dir.mkdir(parents=True)
    (mirror / 'pool').mkdir()
    (mirror / 'pool' / 'pebble.deb').write_bytes(package)
    text = stanza.replace('FILENAME', 'pool/pebble.deb').replace('SHA256SUM', hashlib.sha256(package).hexdigest())
    (index_dir / 'Packages.xz').write_bytes(lzma.compress(text.encode()))
    return f'file://{mirror}'


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    roots = tmp_path / 'roots'
    monkeypatch.setenv('INGRESS_HAPROXY_ROOTS', str(roots))
    return roots


@pytest.mark.parametrize('stanza, message', [
    ('Package: haproxy\nVersion: 3.2.26-1\nFilename: FILENAME\nSHA256: SHA256SUM\n',
     'no pebble package in file://'),
    ('Package: pebble\nVersion: 2.4.0-1\nFilename: FILENAME\nSHA256: SHA256SUM\n',
     'sid has pebble 2.4.0-1, the lab needs 2.10 or newer'),
    ('Package: pebble\nVersion: 2.10.0+ds1-2\nFilename: FILENAME\nSHA256: ' + '0' * 64 + '\n',
     'pool/pebble.deb: SHA256 differs from file://'),
    ('Package: pebble\nVersion: 2.10.0+ds1-2\nFilename: FILENAME\nSHA256: SHA256SUM\n',
     'cannot unpack pebble 2.10.0+ds1-2'),
], ids=['no-pebble-in-index', 'pebble-too-old', 'sha256-mismatch', 'not-a-deb'])
def test_a_bad_registry_fails_naming_what_and_unpacks_nothing(tmp_path, monkeypatch, empty_cache, stanza, message):
    monkeypatch.setattr(_pebbles, 'debian_mirror', lambda: _mirror(tmp_path, stanza))
    with pytest.raises(LabError, match=re.escape(message)):
        _pebbles.pebble_binary('2.10')
    # Nothing but the lock: no pebble-sid, no temporary .pebble.* directory left behind.
    assert sorted(os.listdir(empty_cache)) == ['.build.lock']


def test_an_unknown_version_is_refused_before_any_fetch(monkeypatch, empty_cache):
    monkeypatch.setattr(_pebbles, 'debian_mirror', lambda: pytest.fail('nothing may be fetched'))
    with pytest.raises(LabError, match="unknown pebble version '2.7': choose one of 2.4, 2.10"):
        _pebbles.pebble_binary('2.7')
    assert not empty_cache.exists()
