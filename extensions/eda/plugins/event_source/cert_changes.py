#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
name: cert_changes
short_description: Emit one event per settled, valid change of TLS certificate files
version_added: 0.1.0
description:
  - Watches one or more directories that hold TLS certificates and emits one event when certificate
    files have changed and then stayed unchanged for O(settle) seconds. The event lists every
    certificate whose content changed and is valid, so a rule can push exactly those.
  - Recognises the ways certificates are replaced in practice. An atomic write (temporary file, then a
    rename over the old name) is seen as a change of the file. certbot's C(live/NAME/*.pem) symlinks
    that move to new C(archive/NAME/*N.pem) files, and the C(..data) symlink swap of a mounted
    Kubernetes secret, are seen as changes of the files the visible names resolve to.
  - Debounces. Every poll compares a snapshot of the watched files (resolved path, device, inode,
    size, modification time); only when the snapshot has stayed the same for O(settle) seconds is the
    change looked at. A burst of writes therefore gives one event.
  - Validates before it reports. A certificate that does not parse as PEM certificates plus exactly one
    private key (for example a file still being written, or a key that belongs to another certificate)
    produces no event; the reason is logged as a warning. With the Python C(cryptography) library the
    certificates and key are parsed and the key is checked against the first certificate (the leaf);
    without it only the PEM structure is checked (every block complete, base64 and DER framing sound).
    Which of the two is used is logged at start.
  - Only content counts. Rewriting identical bytes or touching a file emits nothing.
  - Polls with C(os.scandir) and C(os.stat) only, so it needs no inotify library and works on every
    file system, including network and overlay file systems where inotify misses changes.
  - "How files become certificates (the names in the event): a directory holding C(fullchain.pem) and
    C(privkey.pem) is one certificate named after the directory (a certbot C(live/NAME) directory); a
    directory holding C(tls.crt) and C(tls.key) is one certificate named after the directory (a mounted
    Kubernetes TLS secret); in any other directory each file is a certificate named after its file name
    without the C(.key) ending and without the C(.pem), C(.crt) or C(.cer) extension, so C(site.pem) is
    C(site), and C(site.crt) with C(site.key), or C(site.pem) with C(site.pem.key) (HAProxy's own
    convention), together are the certificate C(site)."
  - In a certbot configuration directory (one that holds both C(live) and C(archive)) only C(live) is
    read; the numbered files in C(archive) are reached through the C(live) symlinks.
  - With O(items) (the certificates role's C(certificates_items)) the event names the items instead, each
    found by its source path - its certbot C(live/NAME) directory, its Kubernetes secret directory, its
    files, its bundle or its directory in the role's store - so C(certificates_only) can be set to them.
    A changed certificate that is the source of no item is logged and left out of the event.
  - Never stops on a file system error. An entry that cannot be looked at (a symlink loop, a directory
    without search or read permission) is logged once, with its path and the error, and skipped until it
    recovers; the rest is watched on. Only regular files are opened, without blocking, so a FIFO, socket
    or device named like a certificate is skipped with a log line. Whether a file is readable is part of
    its state, so a file that becomes readable again is read and, if its content changed, reported. A
    watched directory that disappears is waited for; when it returns, only a change of content against
    what was last read is reported.
options:
  paths:
    description:
      - Directories to watch. A directory that does not exist yet is logged and watched for.
      - O(path) is accepted as an alias for a single directory.
    type: list
    elements: path
    required: true
  patterns:
    description:
      - Shell patterns (C(fnmatch)) of the file names that belong to certificates.
    type: list
    elements: str
    default: ['*.pem', '*.crt', '*.key', 'tls.crt', 'tls.key']
  ignore_patterns:
    description:
      - Shell patterns of names that are never looked at, neither files nor directories. The defaults
        skip editors' and tools' temporary files, and the hidden C(..data) and C(..TIMESTAMP) entries
        of a Kubernetes secret mount (their content is seen through the visible symlinks).
    type: list
    elements: str
    default: ['.*', '*.tmp', '*~', '*.swp']
  recursive:
    description:
      - Also watch every subdirectory (not those matching O(ignore_patterns)). Needed for a certbot
        C(live) directory, which holds one subdirectory per certificate.
    type: bool
    default: false
  settle:
    description:
      - Seconds the files must stay unchanged before a change is reported.
    type: float
    default: 3
  poll_interval:
    description:
      - Seconds between two snapshots of the watched directories.
    type: float
    default: 1
  startup_event:
    description:
      - Emit one event at start listing every valid certificate found, so that a push brings the
        instances in line with the files after the watcher was down.
    type: bool
    default: false
  items:
    description:
      - The certificates role's C(certificates_items). Each item's source paths are its C(certbot_live),
        C(tls_secret_dir), C(certificate), C(chain), C(fullchain) and C(privatekey) when it sets them, else
        O(certbot_live_dir)C(/NAME) and O(tls_secret_dir)C(/NAME); and always O(store_dir)C(/live/NAME) and
        O(bundle_dir)C(/NAME.pem). Other keys of the items are ignored.
      - Empty (the default) names certificates after their directory or file, as described above.
    type: list
    elements: dict
    default: []
  certbot_live_dir:
    description:
      - The certificates role's C(certificates_certbot_live_dir), for O(items).
    type: path
  tls_secret_dir:
    description:
      - The certificates role's C(certificates_tls_secret_dir), for O(items).
    type: path
  store_dir:
    description:
      - The certificates role's C(certificates_store_dir), for O(items).
    type: path
  bundle_dir:
    description:
      - The certificates role's C(certificates_bundle_dir), for O(items). Default O(store_dir)C(/bundles).
    type: path
  check_inventory:
    description:
      - At start, fail when ansible-rulebook was given an inventory file that has C(group_vars/) or
        C(host_vars/) beside it. ansible-rulebook copies only the file for the playbook it runs, so those
        variables (typically C(certificates_items)) would be missing from every push; the message says to
        pass the directory instead.
    type: bool
    default: true
notes:
  - Runs in the Python environment of C(ansible-rulebook), not in the collection's; it imports nothing
    from the collection. Install C(cryptography) there for the full validation.
  - Run it stand-alone to see what it would emit, for example
    C(python cert_changes.py --path /etc/letsencrypt/live --recursive -v); events are printed as JSON
    lines.
author:
  - ingress.haproxy contributors
"""

EXAMPLES = r"""
---
- name: Push certbot renewals
  hosts: all
  execution_strategy: sequential
  sources:
    - ingress.haproxy.cert_changes:
        paths:
          - /etc/letsencrypt/live
        recursive: true
        settle: 5
        # name the events after the certificates role's items (from the rulebook's --vars)
        items: "{{ certificates_items }}"
        certbot_live_dir: /etc/letsencrypt/live
  rules:
    - name: Push the changed certificates
      condition: event.cert_changes is defined
      action:
        run_playbook:
          name: ingress.haproxy.push
          extra_vars:
            certificates_only: "{{ event.cert_changes.names }}"

- name: Watch a mounted Kubernetes TLS secret and a directory of HAProxy bundles
  hosts: all
  sources:
    - ingress.haproxy.cert_changes:
        paths:
          - /etc/tls/www-example-com   # holds tls.crt and tls.key (symlinks into ..data)
          - /etc/haproxy/certs         # holds one PEM bundle per certificate
        startup_event: true
  rules:
    - name: Show what changed
      condition: event.cert_changes is defined
      action:
        debug:
          msg: "{{ event.cert_changes.names }}"
"""

RETURN = r"""
cert_changes:
  description: The event's only key (ansible-rulebook may add C(meta)).
  returned: always
  type: dict
  contains:
    reason:
      description: C(change) for a settled change, C(startup) for the event O(startup_event) asks for.
      type: str
      sample: change
    names:
      description:
        - Names of the changed certificates, sorted, each once; with O(items) the names of the items.
      type: list
      elements: str
      sample: [example.com]
    certificates:
      description: One entry per changed certificate.
      type: list
      elements: dict
      contains:
        name:
          description: The certificate's name (see the description above).
          type: str
        layout:
          description: C(certbot), C(tls_secret) or C(files).
          type: str
        directory:
          description: The directory that holds its files.
          type: str
        paths:
          description: Its files, as seen in the watched directory (not resolved through symlinks).
          type: list
          elements: str
        change:
          description: C(created), C(modified) or, in a startup event, C(present).
          type: str
        items:
          description: With O(items), the names of the items this certificate is the source of.
          type: list
          elements: str
    validation:
      description: C(cryptography) or C(structural), the check the certificates passed.
      type: str
"""

import argparse
import asyncio
import base64
import binascii
import fnmatch
import hashlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from stat import S_ISBLK, S_ISCHR, S_ISFIFO, S_ISREG, S_ISSOCK
from typing import Any

try:
    from cryptography import __version__ as CRYPTOGRAPHY_VERSION
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_VERSION = None
else:
    HAS_CRYPTOGRAPHY = True


LOGGER = logging.getLogger("ingress.haproxy.cert_changes")

DEFAULT_PATTERNS = ("*.pem", "*.crt", "*.key", "tls.crt", "tls.key")
DEFAULT_IGNORE_PATTERNS = (".*", "*.tmp", "*~", "*.swp")
DEFAULT_SETTLE = 3.0
DEFAULT_POLL_INTERVAL = 1.0

CERTIFICATE_EXTENSIONS = (".pem", ".crt", ".cer")
KEY_EXTENSION = ".key"
# (layout, certificate file, key file): a directory holding both files is one certificate.
DIRECTORY_LAYOUTS = (
    ("certbot", "fullchain.pem", "privkey.pem"),
    ("tls_secret", "tls.crt", "tls.key"),
)

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>.*?)-----END (?P=label)-----",
    re.DOTALL,
)
_PEM_BEGIN = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----")


class CertChangesError(Exception):
    """Bad arguments of the event source; the message names the argument."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ItemSource:
    """Where one entry of the certificates role's certificates_items is read from (see O(items))."""

    name: str
    directories: tuple[str, ...]  # certbot live dir, Kubernetes secret dir, the store's live/NAME
    files: tuple[str, ...]  # the item's own files, its bundle

    def holds(self, certificate: Certificate) -> bool:
        if certificate.layout != "files":
            return _same_path(certificate.directory, self.directories)
        return any(_same_path(path, self.files) for path in certificate.paths)


def _same_path(path: str, candidates: tuple[str, ...]) -> bool:
    """PATH is one of CANDIDATES, as written or once symlinks are resolved."""
    if os.path.normpath(path) in candidates:
        return True
    real = os.path.realpath(path)
    return any(real == os.path.realpath(candidate) for candidate in candidates)


ITEM_FILE_KEYS = ("certificate", "chain", "fullchain", "privatekey")


@dataclass(frozen=True)
class WatchSettings:
    paths: tuple[str, ...]
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    ignore_patterns: tuple[str, ...] = DEFAULT_IGNORE_PATTERNS
    recursive: bool = False
    settle: float = DEFAULT_SETTLE
    poll_interval: float = DEFAULT_POLL_INTERVAL
    startup_event: bool = False
    items: tuple[ItemSource, ...] = ()
    check_inventory: bool = True

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> WatchSettings:
        """Check the rulebook's arguments; raise CertChangesError naming the bad one."""
        known = {
            "paths", "path", "patterns", "ignore_patterns", "recursive", "settle", "poll_interval", "startup_event",
            "items", "certbot_live_dir", "tls_secret_dir", "store_dir", "bundle_dir", "check_inventory",
        }
        # ansible-rulebook may add its own eda_* arguments (eda_feedback_queue)
        unknown = sorted(name for name in set(args) - known if not name.startswith("eda_"))
        if unknown:
            raise CertChangesError(f"cert_changes: unknown argument(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        paths = args.get("paths", args.get("path"))
        if isinstance(paths, str):
            paths = [paths]
        paths = _string_list(paths, "paths")
        if not paths:
            raise CertChangesError("cert_changes: 'paths' needs at least one directory")
        return cls(
            paths=tuple(os.path.abspath(os.path.expanduser(path)) for path in paths),
            patterns=tuple(_string_list(args.get("patterns", list(DEFAULT_PATTERNS)), "patterns")),
            ignore_patterns=tuple(_string_list(args.get("ignore_patterns", list(DEFAULT_IGNORE_PATTERNS)), "ignore_patterns")),
            recursive=_boolean(args.get("recursive", False), "recursive"),
            settle=_seconds(args.get("settle", DEFAULT_SETTLE), "settle", allow_zero=True),
            poll_interval=_seconds(args.get("poll_interval", DEFAULT_POLL_INTERVAL), "poll_interval", allow_zero=False),
            startup_event=_boolean(args.get("startup_event", False), "startup_event"),
            items=_item_sources(args),
            check_inventory=_boolean(args.get("check_inventory", True), "check_inventory"),
        )


def _item_sources(args: dict[str, Any]) -> tuple[ItemSource, ...]:
    """Each item's source paths, with the certificates role's defaults for those the item does not set."""
    items = args.get("items") or []
    if not isinstance(items, list):
        raise CertChangesError(f"cert_changes: 'items' must be a list (certificates_items), got {items!r}")
    folders = {}
    for key in ("certbot_live_dir", "tls_secret_dir", "store_dir", "bundle_dir"):
        value = args.get(key) or ""
        if not isinstance(value, str):
            raise CertChangesError(f"cert_changes: '{key}' must be a directory, got {value!r}")
        folders[key] = os.path.abspath(os.path.expanduser(value)) if value else ""
    if folders["store_dir"] and not folders["bundle_dir"]:
        folders["bundle_dir"] = os.path.join(folders["store_dir"], "bundles")
    sources = []
    for number, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise CertChangesError(f"cert_changes: 'items[{number}]' must be a dict with a 'name', got {item!r}")
        name = item["name"]
        for key in ("certbot_live", "tls_secret_dir", *ITEM_FILE_KEYS):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise CertChangesError(f"cert_changes: 'items[{number}].{key}' ({name}) must be a path, got {item[key]!r}")
        directories = [
            item.get("certbot_live") or (folders["certbot_live_dir"] and os.path.join(folders["certbot_live_dir"], name)),
            item.get("tls_secret_dir") or (folders["tls_secret_dir"] and os.path.join(folders["tls_secret_dir"], name)),
            folders["store_dir"] and os.path.join(folders["store_dir"], "live", name),
        ]
        files = [item.get(key) for key in ITEM_FILE_KEYS]
        files.append(folders["bundle_dir"] and os.path.join(folders["bundle_dir"], f"{name}.pem"))
        sources.append(
            ItemSource(
                name=name,
                directories=tuple(os.path.normpath(os.path.abspath(path)) for path in directories if path),
                files=tuple(os.path.normpath(os.path.abspath(path)) for path in files if path),
            )
        )
    return tuple(sources)


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise CertChangesError(f"cert_changes: '{name}' must be a list of non-empty strings, got {value!r}")
    return list(value)


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise CertChangesError(f"cert_changes: '{name}' must be a boolean, got {value!r}")


def _seconds(value: Any, name: str, *, allow_zero: bool) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise CertChangesError(f"cert_changes: '{name}' must be a number of seconds, got {value!r}") from None
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise CertChangesError(f"cert_changes: '{name}' must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return seconds


def inventory_problem(argv: list[str]) -> str | None:
    """What is wrong with the inventory ansible-rulebook was given on its command line, if anything.

    ansible-rulebook copies an inventory FILE alone into the playbook's private directory, so the
    group_vars/ and host_vars/ beside it (where certificates_items usually lives) are silently lost.
    """
    inventories = []
    for index, argument in enumerate(argv):
        if argument in ("-i", "--inventory") and index + 1 < len(argv):
            inventories.append(argv[index + 1])
        elif argument.startswith("--inventory="):
            inventories.append(argument.split("=", 1)[1])
        elif argument.startswith("-i") and len(argument) > 2 and not argument.startswith("--"):
            inventories.append(argument[2:])
    for inventory in inventories:
        if not os.path.isfile(inventory):
            continue
        beside = [name for name in ("group_vars", "host_vars") if os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(inventory)), name))]
        if beside:
            return (
                f"cert_changes: the inventory {inventory} is a file with {' and '.join(d + '/' for d in beside)} beside it; "
                "ansible-rulebook copies only the file for the playbook, which then runs without those variables. "
                "Pass a directory that holds the inventory and its group_vars/ (and nothing else Ansible would read "
                f"as inventory): --inventory {os.path.dirname(os.path.abspath(inventory))}"
            )
    return None


# --------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class FileState:
    """What identifies one version of a file, seen through any symlinks.

    kind is C(file) for a regular file, else what it is (C(fifo), C(socket), C(device), C(other)): only
    regular files are ever opened. readable is part of the state, so a file that becomes readable again
    is a change and is read.
    """

    resolved: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    kind: str = "file"
    readable: bool = True


# path as seen in the watched directory -> its state (None: a dangling symlink, e.g. mid-swap)
Snapshot = dict[str, "FileState | None"]
# path -> what is wrong with it (it cannot be stat'ed or listed, or is no regular file)
Problems = dict[str, str]


def file_state(path: str, problems: Problems | None = None) -> FileState | None:
    """The state of PATH; None when it is gone or cannot be looked at (then the reason is put in problems)."""
    try:
        stat = os.stat(path)
        resolved = os.path.realpath(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symlink loop, a directory on the way without search permission, ...
        if problems is not None:
            problems[path] = _os_error(exc)
        return None
    kind = _file_kind(stat.st_mode)
    if kind != "file" and problems is not None:
        problems[path] = f"is a {kind}, not a regular file; skipped"
    return FileState(resolved, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, kind, os.access(path, os.R_OK))


def _file_kind(mode: int) -> str:
    if S_ISREG(mode):
        return "file"
    if S_ISFIFO(mode):
        return "fifo"
    if S_ISSOCK(mode):
        return "socket"
    if S_ISCHR(mode) or S_ISBLK(mode):
        return "device"
    return "other"


def _os_error(exc: OSError) -> str:
    return exc.strerror or str(exc)


def take_snapshot(settings: WatchSettings, problems: Problems | None = None) -> Snapshot:
    """Every matching file under the watched directories and its state; what could not be read goes to problems."""
    snapshot: Snapshot = {}
    for root in settings.paths:
        _scan_directory(root, settings, snapshot, visited=set(), problems=problems if problems is not None else {})
    return snapshot


def _ignored(name: str, settings: WatchSettings) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.ignore_patterns)


def _scan_directory(directory: str, settings: WatchSettings, snapshot: Snapshot, visited: set[str], problems: Problems) -> None:
    real = os.path.realpath(directory)
    if real in visited:  # a symlink loop
        return
    visited.add(real)
    try:
        with os.scandir(directory) as iterator:
            entries = list(iterator)
    except (FileNotFoundError, NotADirectoryError):
        return  # a missing root is reported by the watcher, a vanished subdirectory is simply gone
    except OSError as exc:
        problems[directory] = f"cannot list the directory: {_os_error(exc)}"
        return
    subdirectories = {entry.name for entry in entries if _is_directory(entry)}
    # A certbot configuration directory: archive/ and keys/ are seen through live/'s symlinks.
    certbot_config = {"live", "archive"} <= subdirectories
    for entry in sorted(entries, key=lambda item: item.name):
        if _ignored(entry.name, settings):
            continue
        if entry.name in subdirectories:
            if settings.recursive and (not certbot_config or entry.name == "live"):
                _scan_directory(entry.path, settings, snapshot, visited, problems)
            continue
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in settings.patterns):
            state = file_state(entry.path, problems)
            if state is not None and state.kind != "file":
                continue  # never opened: a FIFO would block the read, a device never ends
            if state is None and entry.path in problems:
                continue  # cannot be looked at (e.g. a symlink loop): logged, not a certificate
            snapshot[entry.path] = state


def _is_directory(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


# --------------------------------------------------------------------------- grouping


@dataclass(frozen=True)
class Certificate:
    """The files that make up one certificate, in the order they are validated."""

    name: str
    layout: str
    directory: str
    certificate_files: tuple[str, ...]
    key_files: tuple[str, ...]
    other_files: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.directory, self.name)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(sorted(self.certificate_files + self.key_files + self.other_files))


def certificate_stem(filename: str) -> str:
    """`site.pem`, `site.crt`, `site.key` and `site.pem.key` all belong to `site`."""
    stem = filename
    if stem.endswith(KEY_EXTENSION):
        stem = stem[: -len(KEY_EXTENSION)]
    for extension in CERTIFICATE_EXTENSIONS:
        if stem.endswith(extension) and len(stem) > len(extension):
            return stem[: -len(extension)]
    return stem


def group_certificates(paths: list[str] | tuple[str, ...]) -> dict[tuple[str, str], Certificate]:
    by_directory: dict[str, list[str]] = {}
    for path in paths:
        by_directory.setdefault(os.path.dirname(path), []).append(os.path.basename(path))
    certificates: dict[tuple[str, str], Certificate] = {}
    for directory, names in sorted(by_directory.items()):
        names = sorted(names)
        for layout, certificate_name, key_name in DIRECTORY_LAYOUTS:
            if certificate_name in names and key_name in names:
                certificate = Certificate(
                    name=os.path.basename(directory) or directory,
                    layout=layout,
                    directory=directory,
                    certificate_files=(os.path.join(directory, certificate_name),),
                    key_files=(os.path.join(directory, key_name),),
                    other_files=tuple(os.path.join(directory, name) for name in names if name not in (certificate_name, key_name)),
                )
                certificates[certificate.key] = certificate
                break
        else:
            stems: dict[str, list[str]] = {}
            for name in names:
                stems.setdefault(certificate_stem(name), []).append(name)
            for stem, members in stems.items():
                keys = [name for name in members if name.endswith(KEY_EXTENSION)]
                certificate = Certificate(
                    name=stem,
                    layout="files",
                    directory=directory,
                    certificate_files=tuple(os.path.join(directory, name) for name in members if name not in keys),
                    key_files=tuple(os.path.join(directory, name) for name in keys),
                )
                certificates[certificate.key] = certificate
    return certificates


# --------------------------------------------------------------------------- validation


class InvalidCertificate(Exception):
    """The files do not make a certificate HAProxy can load; the message says why."""


def validation_backend() -> str:
    return "cryptography" if HAS_CRYPTOGRAPHY else "structural"


def validate_pem(data: bytes, *, use_cryptography: bool | None = None) -> None:
    """Certificates plus exactly one private key that matches the first one; raise InvalidCertificate."""
    if use_cryptography is None:
        use_cryptography = HAS_CRYPTOGRAPHY
    if use_cryptography and not HAS_CRYPTOGRAPHY:
        raise RuntimeError("the cryptography library is not importable")
    blocks = _pem_blocks(data)
    certificates = [block for block in blocks if block[0] == "CERTIFICATE"]
    keys = [block for block in blocks if block[0].endswith("PRIVATE KEY")]
    if not certificates:
        raise InvalidCertificate("no certificate (no complete '-----BEGIN CERTIFICATE-----' block)")
    if not keys:
        raise InvalidCertificate("no private key (no complete '-----BEGIN ... PRIVATE KEY-----' block)")
    if len(keys) > 1:
        raise InvalidCertificate(f"{len(keys)} private keys, expected exactly one")
    label, _der, text = keys[0]
    if label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in text:
        raise InvalidCertificate("the private key is encrypted; HAProxy cannot load it")
    if use_cryptography:
        _validate_with_cryptography(certificates, keys[0])


def _pem_blocks(data: bytes) -> list[tuple[str, bytes, bytes]]:
    """(label, DER, PEM text) of every block; raise InvalidCertificate on anything cut or corrupt."""
    blocks = []
    for number, match in enumerate(_PEM_BLOCK.finditer(data), start=1):
        label = match.group("label").decode("ascii")
        if b"Proc-Type:" in match.group("body"):
            # An encrypted traditional key carries headers: not base64, reported as encrypted.
            blocks.append((label, b"", match.group(0)))
            continue
        body = re.sub(rb"\s+", b"", match.group("body"))
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCertificate(f"PEM block {number} ({label}) is not valid base64") from None
        if not _complete_der(der):
            raise InvalidCertificate(f"PEM block {number} ({label}) holds truncated or corrupt DER")
        blocks.append((label, der, match.group(0)))
    begun = len(_PEM_BEGIN.findall(data))
    if begun != len(blocks):
        raise InvalidCertificate(
            f"{begun - len(blocks)} PEM block(s) without a matching END line (file cut short or still being written?)"
        )
    return blocks


def _complete_der(der: bytes) -> bool:
    """One DER SEQUENCE whose encoded length is exactly the data's length."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return 2 + first == len(der)
    octets = first & 0x7F
    if octets == 0 or octets > 4 or len(der) < 2 + octets:
        return False
    length = int.from_bytes(der[2 : 2 + octets], "big")
    return 2 + octets + length == len(der)


def _validate_with_cryptography(certificates: list[tuple[str, bytes, bytes]], key: tuple[str, bytes, bytes]) -> None:
    parsed = []
    for number, (_label, der, _text) in enumerate(certificates, start=1):
        try:
            parsed.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise InvalidCertificate(f"certificate {number} does not parse: {exc}") from None
    try:
        private_key = serialization.load_pem_private_key(key[2], password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidCertificate(f"the private key does not parse: {exc}") from None
    except UnsupportedAlgorithm as exc:
        raise InvalidCertificate(f"the private key cannot be used: {exc}") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if parsed[0].public_key().public_bytes(*spki) != private_key.public_key().public_bytes(*spki):
        raise InvalidCertificate("the private key does not match the first certificate (the leaf must come first)")


# --------------------------------------------------------------------------- watcher


def read_regular_file(path: str) -> bytes:
    """The content of a regular file; never blocks on a FIFO or a device put there after the snapshot."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{path} is not a regular file")
        chunks = []
        while chunk := os.read(descriptor, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


@dataclass
class CertificateRecord:
    """What the watcher last saw of one certificate."""

    certificate: Certificate
    states: tuple[FileState | None, ...]
    digest: str | None
    problem: str | None  # None: valid
    was_valid: bool = False  # this or an earlier version was valid: a change is then "modified"
    readable: bool = True  # False: digest is the last content read, not the current one


@dataclass
class CertificateWatcher:
    """Snapshots, debounce and validation; time is passed in so that tests need not sleep."""

    settings: WatchSettings
    use_cryptography: bool | None = None
    _records: dict[tuple[str, str], CertificateRecord] = field(default_factory=dict)
    _snapshot: Snapshot = field(default_factory=dict)
    _changed_at: float | None = None
    _missing_roots: set[str] = field(default_factory=set)
    _problems: Problems = field(default_factory=dict)  # logged once each, until they go away
    _gone: dict[tuple[str, str], CertificateRecord] = field(default_factory=dict)  # e.g. a root that went away

    def start(self) -> dict[str, Any] | None:
        """Take the baseline; return the startup event if one is asked for."""
        self._note_missing_roots()
        self._snapshot = self._take_snapshot()
        certificates = group_certificates(tuple(self._snapshot))
        self._records = {}
        for key, certificate in certificates.items():
            record = self._read(certificate, self._snapshot)
            self._records[key] = record
            if record.problem:
                LOGGER.warning("%s: %s: %s", certificate.name, _describe(certificate), record.problem)
        LOGGER.info(
            "watching %s: %d certificate(s), %d valid (validation: %s)",
            ", ".join(self.settings.paths),
            len(self._records),
            sum(1 for record in self._records.values() if not record.problem),
            self._backend(),
        )
        if not self.settings.startup_event:
            return None
        present = [record.certificate for record in self._records.values() if not record.problem]
        if not present:
            LOGGER.info("startup event skipped: no valid certificate found")
            return None
        return self._event("startup", [(certificate, "present") for certificate in present])

    def poll(self, now: float) -> dict[str, Any] | None:
        """Take one snapshot; return an event once a change has settled and holds valid certificates."""
        self._note_missing_roots()
        snapshot = self._take_snapshot()
        if snapshot != self._snapshot:
            self._snapshot = snapshot
            self._changed_at = now
            return None
        if self._changed_at is None or now - self._changed_at < self.settings.settle:
            return None
        return self._settle(snapshot, now)

    @property
    def pending(self) -> bool:
        return self._changed_at is not None

    def _settle(self, snapshot: Snapshot, now: float) -> dict[str, Any] | None:
        certificates = group_certificates(tuple(snapshot))
        records: dict[tuple[str, str], CertificateRecord] = {}
        changes: list[tuple[Certificate, str]] = []
        for key, certificate in certificates.items():
            previous = self._records.get(key) or self._gone.get(key)
            states = tuple(snapshot[path] for path in certificate.paths)
            if previous is not None and previous.certificate == certificate and previous.states == states:
                records[key] = previous
                continue
            record = self._read(certificate, snapshot, previous)
            if self._moved_since(certificate, snapshot):
                # Written to while we read it: wait for it to settle again, report nothing yet.
                self._changed_at = now
                return None
            record.was_valid = record.problem is None or (previous is not None and previous.was_valid)
            records[key] = record
            if not record.readable:
                LOGGER.warning("%s: %s; no event for it until it can be read", certificate.name, record.problem)
                continue
            if previous is not None and previous.digest == record.digest and record.digest is not None:
                LOGGER.debug("%s: files touched, content unchanged", certificate.name)
                continue
            if record.problem:
                LOGGER.warning("%s: %s: %s; no event for it", certificate.name, _describe(certificate), record.problem)
                continue
            changes.append((certificate, "modified" if previous is not None and previous.was_valid else "created"))
        for key in sorted(set(self._records) - set(records)):
            removed = self._records[key].certificate
            LOGGER.info("%s: %s: removed; no event for it", removed.name, _describe(removed))
            # Kept: when it comes back (a root directory remounted) only a change of content is an event.
            self._gone[key] = self._records[key]
        for key in records:
            self._gone.pop(key, None)
        self._records = records
        self._changed_at = None
        if not changes:
            return None
        return self._event("change", changes)

    def _read(self, certificate: Certificate, snapshot: Snapshot, previous: CertificateRecord | None = None) -> CertificateRecord:
        states = tuple(snapshot.get(path) for path in certificate.paths)
        contents: dict[str, bytes] = {}
        problem = None
        for path in certificate.paths:
            try:
                contents[path] = read_regular_file(path)
            except OSError as exc:
                problem = f"cannot read {path}: {_os_error(exc)}"
        if problem is not None:
            # The content is unknown: keep the last one read, so that once the file is readable again
            # only a change of content against it is an event.
            return CertificateRecord(
                certificate, states, previous.digest if previous else None, problem,
                was_valid=previous is not None and previous.was_valid, readable=False,
            )
        hasher = hashlib.sha256()
        for path in certificate.paths:
            hasher.update(os.path.basename(path).encode() + b"\0" + contents[path] + b"\0")
        pem = b"\n".join(contents[path] for path in certificate.certificate_files + certificate.key_files)
        try:
            validate_pem(pem, use_cryptography=self.use_cryptography)
        except InvalidCertificate as exc:
            problem = str(exc)
        return CertificateRecord(certificate, states, hasher.hexdigest(), problem, was_valid=problem is None)

    @staticmethod
    def _moved_since(certificate: Certificate, snapshot: Snapshot) -> bool:
        return any(file_state(path) != snapshot.get(path) for path in certificate.paths)

    def _backend(self) -> str:
        if self.use_cryptography is None:
            return validation_backend()
        return "cryptography" if self.use_cryptography else "structural"

    def _event(self, reason: str, changes: list[tuple[Certificate, str]]) -> dict[str, Any] | None:
        entries = []
        for certificate, change in sorted(changes, key=lambda item: item[0].key):
            entry = {
                "name": certificate.name,
                "layout": certificate.layout,
                "directory": certificate.directory,
                "paths": list(certificate.paths),
                "change": change,
            }
            if self.settings.items:
                entry["items"] = sorted({item.name for item in self.settings.items if item.holds(certificate)})
                if not entry["items"]:
                    LOGGER.warning(
                        "%s: %s is the source of no entry of certificates_items; not in the event",
                        certificate.name, _describe(certificate),
                    )
                    continue
            entries.append(entry)
        if not entries:
            return None
        names = sorted({name for entry in entries for name in entry.get("items", [entry["name"]])})
        LOGGER.info("%s: %s", reason, ", ".join(names))
        return {
            "cert_changes": {
                "reason": reason,
                "names": names,
                "certificates": entries,
                "validation": self._backend(),
            }
        }

    def _take_snapshot(self) -> Snapshot:
        """A snapshot; each path that cannot be looked at is logged once, and again only after it recovered."""
        problems: Problems = {}
        snapshot = take_snapshot(self.settings, problems)
        for path, problem in sorted(problems.items()):
            if self._problems.get(path) != problem:
                LOGGER.warning("%s: %s; watching the rest", path, problem)
        for path in sorted(set(self._problems) - set(problems)):
            LOGGER.info("%s: no longer %s", path, "a problem" if os.path.lexists(path) else "there")
        self._problems = problems
        return snapshot

    def _note_missing_roots(self) -> None:
        missing = {path for path in self.settings.paths if not os.path.isdir(path)}
        for path in sorted(missing - self._missing_roots):
            LOGGER.warning("%s is not a directory (yet); watching for it", path)
        for path in sorted(self._missing_roots - missing):
            LOGGER.info("%s appeared", path)
        self._missing_roots = missing


def _describe(certificate: Certificate) -> str:
    """The files that were validated: one path, or the directory and the file names."""
    validated = certificate.certificate_files + certificate.key_files
    if len(validated) == 1:
        return validated[0]
    return f"{certificate.directory}/{{{','.join(os.path.basename(path) for path in validated)}}}"


# --------------------------------------------------------------------------- entry points


async def main(queue: asyncio.Queue, args: dict[str, Any]) -> None:
    """ansible-rulebook's entry point: watch until cancelled."""
    settings = WatchSettings.from_args(args)
    if settings.check_inventory and "rulebook" in os.path.basename(sys.argv[0]):
        problem = inventory_problem(sys.argv[1:])
        if problem:
            raise CertChangesError(problem)
    if HAS_CRYPTOGRAPHY:
        LOGGER.info("validating certificates with cryptography %s", CRYPTOGRAPHY_VERSION)
    else:
        LOGGER.warning(
            "cryptography is not importable in this Python (%s): only the PEM structure is checked, "
            "not whether the key matches the certificate",
            sys.executable,
        )
    watcher = CertificateWatcher(settings)
    event = await asyncio.to_thread(watcher.start)
    if event is not None:
        await queue.put(event)
    failure = None
    while True:
        await asyncio.sleep(settings.poll_interval)
        try:
            event = await asyncio.to_thread(watcher.poll, time.monotonic())
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # A watcher that dies misses every later renewal: log (once per kind of failure) and poll on.
            if repr(exc) != failure:
                LOGGER.exception("polling failed; trying again in %s s", settings.poll_interval)
            failure = repr(exc)
            continue
        failure = None
        if event is not None:
            await queue.put(event)


class PrintingQueue:
    """Stands in for ansible-rulebook's queue when run stand-alone: one JSON line per event."""

    async def put(self, event: dict[str, Any]) -> None:
        print(json.dumps(event, sort_keys=True), flush=True)


def _command_line(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description="Print the events ingress.haproxy.cert_changes would emit (one JSON line each).",
    )
    parser.add_argument("--path", dest="paths", action="append", required=True, help="directory to watch (repeatable)")
    parser.add_argument("--pattern", dest="patterns", action="append", help="file name pattern (repeatable)")
    parser.add_argument("--ignore", dest="ignore_patterns", action="append", help="name pattern to skip (repeatable)")
    parser.add_argument("--recursive", action="store_true", help="watch subdirectories too")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE, help="seconds without change before an event")
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL, help="seconds between snapshots")
    parser.add_argument("--startup-event", action="store_true", help="emit an event for the certificates found at start")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v: what is found and why; -vv: debug")
    options = parser.parse_args(argv)
    level = logging.WARNING if options.verbose == 0 else logging.INFO if options.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = {key: value for key, value in vars(options).items() if key != "verbose" and value is not None}
    return args


if __name__ == "__main__":
    try:
        asyncio.run(main(PrintingQueue(), _command_line()))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    except CertChangesError as error:
        sys.exit(str(error))
