# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which pebble the lab runs: the host's (2.4, Debian 12) or Debian sid's (2.10+).

pebble 2.10 offers ACME profiles, renewalInfo (ARI) and ``/set-renewal-info/``
on its management port; Debian 12's 2.4 has none of them. sid's package is a
Go binary that needs only libc 2.34, so it runs on the host: no chroot. The
package is found in sid's ``Packages.xz`` index, checked against the index's
SHA256, unpacked with ``dpkg-deb -x`` next to the HAProxy roots and kept.
Like a root, it is unpacked in a temporary directory and renamed when complete,
under the same lock, so two runs that ask at once fetch it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request

from ._errors import LabError
from ._roots import debian_mirror, roots_dir

HOST_PEBBLE = os.environ.get('INGRESS_LAB_PEBBLE', '/usr/bin/pebble')
# version -> the Debian suite it comes from (None: the host's).
PEBBLE_SUITES = {'2.4': None, '2.10': 'sid'}
DEFAULT_PEBBLE = '2.4'
_COMPLETE = '.ingress-pebble'
_TIMEOUT = 300


def known_pebbles() -> list[str]:
    return list(PEBBLE_SUITES)


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as reply:  # nosec - Debian's registry
            return reply.read()
    except (OSError, urllib.error.URLError) as exc:
        raise LabError(f'cannot fetch {url}: {exc}') from exc


def _architecture() -> str:
    try:
        return subprocess.run(['dpkg', '--print-architecture'], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f'cannot ask dpkg for the architecture: {exc}') from exc


def _stanza(index: bytes, package: str) -> dict[str, str]:
    """The ``package`` entry of a Packages index (the last one if several)."""
    found: dict[str, str] = {}
    for block in index.decode('utf-8', 'replace').split('\n\n'):
        fields = dict(line.split(': ', 1) for line in block.splitlines() if ': ' in line and not line[0].isspace())
        if fields.get('Package') == package:
            found = fields
    return found


def _upstream(version: str) -> tuple[int, ...]:
    """'2.10.0+ds1-2' -> (2, 10, 0)."""
    digits = version.split(':')[-1].split('+')[0].split('-')[0]
    return tuple(int(part) for part in digits.split('.') if part.isdigit())


def offers_profiles(version: str) -> bool:
    """Whether a pebble of this version (package or lab form) has ACME profiles and renewalInfo (2.10 and newer)."""
    return _upstream(version) >= (2, 10)


def pebble_binary(version: str | None) -> tuple[str, str]:
    """(path of the pebble binary, its package version) for ``version``; fetched once if needed."""
    wanted = version or DEFAULT_PEBBLE
    if wanted not in PEBBLE_SUITES:
        raise LabError(f'unknown pebble version {wanted!r}: choose one of {", ".join(PEBBLE_SUITES)}')
    suite = PEBBLE_SUITES[wanted]
    if suite is None:
        return HOST_PEBBLE, wanted
    target = os.path.join(roots_dir(), f'pebble-{suite}')
    binary = os.path.join(target, 'usr/bin/pebble')
    mark = os.path.join(target, _COMPLETE)
    os.makedirs(roots_dir(), exist_ok=True)
    with open(os.path.join(roots_dir(), '.build.lock'), 'a', encoding='ascii') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (os.path.isfile(mark) and os.access(binary, os.X_OK)):
            _unpack(suite, wanted, target)
    with open(mark, encoding='ascii') as done:
        return binary, done.read().strip()


def _unpack(suite: str, wanted: str, target: str) -> None:
    mirror = debian_mirror()
    index_url = f'{mirror}/dists/{suite}/main/binary-{_architecture()}/Packages.xz'
    stanza = _stanza(lzma.decompress(_fetch(index_url)), 'pebble')
    if not stanza.get('Filename') or not stanza.get('SHA256'):
        raise LabError(f'no pebble package in {index_url}')
    if _upstream(stanza['Version']) < _upstream(wanted):
        raise LabError(f'{suite} has pebble {stanza["Version"]}, the lab needs {wanted} or newer')
    package = _fetch(f'{mirror}/{stanza["Filename"]}')
    if hashlib.sha256(package).hexdigest() != stanza['SHA256']:
        raise LabError(f'{mirror}/{stanza["Filename"]}: SHA256 differs from {index_url}')
    if os.path.exists(target):
        shutil.rmtree(target)  # an unfinished unpack (no mark): ours, since only we write pebble-*
    unpacking = tempfile.mkdtemp(prefix='.pebble.', dir=os.path.dirname(target))
    try:
        deb = os.path.join(unpacking, 'pebble.deb')
        with open(deb, 'wb') as out:
            out.write(package)
        subprocess.run(['dpkg-deb', '-x', deb, unpacking], check=True, capture_output=True, timeout=_TIMEOUT)
        os.unlink(deb)
        with open(os.path.join(unpacking, _COMPLETE), 'w', encoding='ascii') as mark:
            mark.write(stanza['Version'] + '\n')
        os.rename(unpacking, target)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(unpacking, ignore_errors=True)
        raise LabError(f'cannot unpack pebble {stanza["Version"]}: {exc}') from exc
