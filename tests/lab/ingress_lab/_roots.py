# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which HAProxy the lab runs: the host's, or Debian's newer builds from a cached Debian root.

``--haproxy 2.6`` (the default) runs the host's /usr/sbin/haproxy. 3.0, 3.2
and 3.4 run /usr/sbin/haproxy of a Debian root (trixie, sid, experimental)
built once with debootstrap, cached outside the checkout and rebuilt only
when missing. A root is built in a temporary directory next to its final
place and renamed when complete, under an exclusive lock, so two runs that
ask at once build it once and nobody ever sees a half-built root.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time

from ._errors import LabError

VERSION_ENV = 'INGRESS_HAPROXY_VERSION'
ROOTS_ENV = 'INGRESS_HAPROXY_ROOTS'
DEFAULT_ROOTS = '/var/cache/ingress-haproxy/roots'
DEFAULT_VERSION = '2.6'
HOST_HAPROXY = os.environ.get('INGRESS_LAB_HAPROXY', '/usr/sbin/haproxy')
CHROOT_HAPROXY = '/usr/sbin/haproxy'
# Debian's package mirror, as apt of this machine knows it.
_SOURCES = ('/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list')
_FALLBACK_MIRROR = 'http://deb.debian.org/debian'
# Written last into a finished root: a directory without it is not a root.
_COMPLETE = '.ingress-haproxy-root'
_BUILD_TIMEOUT = 1200


@dataclasses.dataclass(frozen=True)
class Build:
    """How to get one HAProxy version: ``suite`` None means the host's."""

    version: str
    suite: str | None
    # Installed from this suite on top of ``suite`` (experimental is no full suite).
    extra_suite: str | None = None


BUILDS = {
    '2.6': Build('2.6', None),
    '3.0': Build('3.0', 'trixie'),
    '3.2': Build('3.2', 'sid'),
    '3.4': Build('3.4', 'sid', 'experimental'),
}


def known_versions() -> list[str]:
    return list(BUILDS)


def build_for(version: str | None) -> Build:
    """The build of ``version`` ('3.2', or None/'' for $INGRESS_HAPROXY_VERSION, else 2.6)."""
    wanted = version or os.environ.get(VERSION_ENV) or DEFAULT_VERSION
    if wanted not in BUILDS:
        raise LabError(f'unknown HAProxy version {wanted!r}: choose one of {", ".join(BUILDS)}')
    return BUILDS[wanted]


def roots_dir() -> str:
    return os.path.abspath(os.environ.get(ROOTS_ENV) or DEFAULT_ROOTS)


def root_path(build: Build) -> str | None:
    """Where the Debian root of ``build`` lives (None: the host's HAProxy)."""
    if build.suite is None:
        return None
    name = build.suite + (f'+{build.extra_suite}' if build.extra_suite else '')
    return os.path.join(roots_dir(), name)


def is_complete(root: str) -> bool:
    return os.path.isfile(os.path.join(root, _COMPLETE)) and os.path.isfile(root + CHROOT_HAPROXY)


def debian_mirror() -> str:
    """The first ``URIs:`` (deb822) or ``deb URL`` of apt's sources that is Debian's main archive."""
    for path in _SOURCES:
        try:
            with open(path, encoding='utf-8') as sources:
                text = sources.read()
        except OSError:
            continue
        for url in re.findall(r'^\s*(?:URIs:|deb)\s+(\S+)', text, re.MULTILINE):
            if url.rstrip('/').endswith('/debian'):
                return url.rstrip('/')
    return _FALLBACK_MIRROR


def _run(argv: list[str], log, what: str) -> None:
    log.write(f'$ {" ".join(argv)}\n'.encode())
    log.flush()
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                timeout=_BUILD_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f'{what}: cannot run {argv[0]}: {exc}') from exc
    if result.returncode != 0:
        raise LabError(f'{what} failed (exit {result.returncode}), see {log.name}')


def _build(build: Build, target: str, log) -> None:
    """debootstrap into ``target``; for an extra suite, install haproxy from it inside."""
    if shutil.which('debootstrap') is None:
        raise LabError('debootstrap is not installed (tests/utils/bootstrap.sh installs it)')
    mirror = debian_mirror()
    _run(['debootstrap', '--variant=minbase', '--include=haproxy', build.suite, target, mirror],
         log, f'debootstrap {build.suite}')
    if build.extra_suite:
        with open(os.path.join(target, 'etc/apt/sources.list.d', f'{build.extra_suite}.list'),
                  'w', encoding='utf-8') as extra:
            extra.write(f'deb {mirror} {build.extra_suite} main\n')
        # The registry is a snapshot: its Release files are past Valid-Until.
        apt = ['chroot', target, 'apt-get', '-q', '-o', 'Acquire::Check-Valid-Until=false']
        _run(apt + ['update'], log, f'apt-get update in the {build.suite} root')
        _run(apt + ['-y', '-t', build.extra_suite, 'install', 'haproxy'], log,
             f'installing haproxy from {build.extra_suite}')
    # Packages only: no apt lists or .deb files kept (they are most of the size).
    for cache in ('var/cache/apt/archives', 'var/lib/apt/lists'):
        for entry in os.listdir(os.path.join(target, cache)):
            path = os.path.join(target, cache, entry)
            if os.path.isfile(path) and not entry.startswith('lock'):
                os.unlink(path)


def _remove_unmounted(path: str) -> None:
    """Remove a failed build, unless debootstrap left a mount in it (never delete through one)."""
    with open('/proc/self/mounts', encoding='utf-8') as mounts:
        mounted = [line.split()[1] for line in mounts if line.split()[1].startswith(path + '/')]
    if mounted:
        raise LabError(f'failed build {path} still has mounts ({", ".join(mounted)}): '
                       'unmount them, then remove it')
    shutil.rmtree(path, ignore_errors=True)


def ensure_root(build: Build) -> str | None:
    """The Debian root of ``build``, built now if missing (None: the host's HAProxy)."""
    root = root_path(build)
    if root is None or is_complete(root):
        return root
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, '.build.lock'), 'a', encoding='ascii') as lock:
        # Another run may be building the same root: wait for it, then use its result.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(root):
            return root
        if os.path.exists(root):
            # A root without the completion mark was never renamed into place by us:
            # refuse rather than guess (it may be a root someone made by hand).
            raise LabError(f'{root} exists but is not a complete root (no {_COMPLETE}): remove it')
        started = time.monotonic()
        building = tempfile.mkdtemp(prefix=f'.{os.path.basename(root)}.', dir=parent)
        log_path = root + '.build.log'
        try:
            with open(log_path, 'wb') as log:
                _build(build, building, log)
            with open(os.path.join(building, _COMPLETE), 'w', encoding='ascii') as mark:
                mark.write(f'built in {time.monotonic() - started:.0f}s\n')
            os.rename(building, root)
        except BaseException:
            _remove_unmounted(building)
            raise
    return root


# Runs in a private mount namespace (unshare), so the bind mount disappears with the
# process, however it ends, and no other process ever sees it: ``directory`` appears
# at the same path inside the root, so config, certificate and socket paths are the
# same inside and outside. /proc is mounted for HAProxy's master-worker mode.
_CHROOT_SCRIPT = (
    'set -e; root=$1; dir=$2; shift 2; '
    'mkdir -p "$root$dir"; mount --bind "$dir" "$root$dir"; '
    'mount -t proc proc "$root/proc"; '
    'exec chroot "$root" "$@"'
)


def in_root(root: str, directory: str, argv: list[str]) -> list[str]:
    """Command line that runs ``argv`` chrooted into ``root`` with ``directory`` bind-mounted.

    The process keeps its PID through every exec, and ends up running ``argv``.
    """
    return ['unshare', '--mount', '--propagation', 'private', '--',
            'sh', '-c', _CHROOT_SCRIPT, 'lab-chroot', root, os.path.abspath(directory), *argv]


def haproxy_argv(root: str | None) -> list[str]:
    """The command that starts HAProxy of ``root`` (None: the host's) before its own arguments."""
    return [HOST_HAPROXY] if root is None else [CHROOT_HAPROXY]
