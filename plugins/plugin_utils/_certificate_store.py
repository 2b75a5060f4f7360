# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module of the ingress.haproxy collection; it may change at any time.
#
# The git-backed certificate store: keep the cleartext store directory (what the
# certificates role reads and writes: account key, live/NAME/*.pem, bundles/*.pem)
# and a git work tree (what is committed) in step, on the controller.
#
# - A file whose content holds a PRIVATE KEY block is committed only as PATH.vault
#   (ansible-vault); every other file as it is.
# - Contents are compared in CLEARTEXT (a vault file is decrypted first): vault
#   ciphertext differs on every encryption, so an unchanged store changes no file.
# - pull (work tree -> store) is a three-way merge against the sync state, the
#   hashes of what the work tree held at the last pull: a file the store changed
#   since then is kept (the next push commits it); a file only the work tree
#   changed is taken. So a pull never overwrites a certificate that was issued
#   here and not pushed yet.
# - push (store -> work tree) writes what differs and says what changed, as a
#   commit message. git itself runs in the role's tasks, never here.
#
# Every file is read and every decision taken before the first write: a bad input
# (wrong vault password, a key in clear in the work tree) changes nothing.

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import tempfile
import typing as t

from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError
from ansible_collections.ingress.haproxy.plugins.module_utils._pem import format_serial

STATE_FILE = ".ingress-haproxy-store-sync.json"
VAULT_SUFFIX = ".vault"
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_VAULT_HEADER = b"$ANSIBLE_VAULT;"


class CertificateStoreError(IngressError):
    """A store sync that cannot be done; nothing was written."""


class Vault(t.Protocol):
    """What the sync needs of ansible-vault (ansible.parsing.vault.VaultLib fits)."""

    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, vaulttext: bytes) -> bytes: ...


class AnsibleVault:
    """ansible-vault with one password (format 1.1, vault id "default")."""

    def __init__(self, password: bytes):
        from ansible.parsing.vault import VaultLib, VaultSecret

        if not password:
            raise CertificateStoreError("the vault password is empty. Nothing was written.")
        self._secret = VaultSecret(password)
        self._vault = VaultLib([("default", self._secret)])

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._vault.encrypt(plaintext, self._secret)

    def decrypt(self, vaulttext: bytes) -> bytes:
        return self._vault.decrypt(vaulttext)


def read_password_file(path: str) -> bytes:
    """The vault password in PATH, without its trailing newline (as ansible-vault reads a password file)."""
    if not path:
        raise CertificateStoreError(
            "vault_password_file is empty: set certificates_store_vault_password_file (or ANSIBLE_VAULT_PASSWORD_FILE). "
            "Nothing was written.")
    try:
        with open(path, "rb") as handle:
            password = handle.read().strip()
    except OSError as exc:
        raise CertificateStoreError(f"cannot read the vault password file {path}: {exc.strerror}. Nothing was written.") from None
    if not password:
        raise CertificateStoreError(f"the vault password file {path} is empty. Nothing was written.")
    return password


def holds_private_key(content: bytes) -> bool:
    return bool(_PRIVATE_KEY.search(content))


def digest(content: bytes | None) -> str | None:
    return None if content is None else hashlib.sha256(content).hexdigest()


def _walk(root: str) -> t.Iterator[str]:
    """Relative paths (with /) of the regular files under ROOT; names starting with a dot are not synced."""
    if not os.path.isdir(root):
        return
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                yield os.path.relpath(path, root).replace(os.sep, "/")


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def read_store(store_dir: str) -> dict[str, bytes]:
    """The store's files by relative path, in cleartext."""
    files = {}
    for relative in _walk(store_dir):
        if relative.endswith(VAULT_SUFFIX):
            raise CertificateStoreError(
                f"certificate store {store_dir}: {relative} ends in {VAULT_SUFFIX}, the suffix the git store keeps for "
                "encrypted files; rename it. Nothing was written.")
        files[relative] = _read(os.path.join(store_dir, relative))
    return files


def read_checkout(checkout_dir: str, vault: Vault) -> dict[str, bytes]:
    """The work tree's files by the store path they stand for, decrypted."""
    files: dict[str, bytes] = {}
    for relative in _walk(checkout_dir):
        content = _read(os.path.join(checkout_dir, relative))
        if relative.endswith(VAULT_SUFFIX):
            name = relative[: -len(VAULT_SUFFIX)]
            if not content.startswith(_VAULT_HEADER):
                raise CertificateStoreError(
                    f"certificate store git work tree {checkout_dir}: {relative} is not an ansible-vault file. "
                    "Nothing was written.")
            try:
                content = vault.decrypt(content)
            except Exception as exc:  # ansible-vault raises AnsibleError and others; all mean the same here
                raise CertificateStoreError(
                    f"certificate store git work tree {checkout_dir}: cannot decrypt {relative} ({exc.__class__.__name__}); "
                    "is certificates_store_vault_password_file the password the store was encrypted with? "
                    "Nothing was written.") from None
        else:
            name = relative
            if holds_private_key(content):
                raise CertificateStoreError(
                    f"certificate store git work tree {checkout_dir}: {relative} holds a private key in clear. "
                    f"Remove it from the repository's history and let a push commit it as {relative}{VAULT_SUFFIX}. "
                    "Nothing was written.")
        if name in files:
            raise CertificateStoreError(
                f"certificate store git work tree {checkout_dir}: both {name} and {name}{VAULT_SUFFIX} exist; "
                "remove the one that is out of date. Nothing was written.")
        files[name] = content
    return files


def read_state(store_dir: str) -> dict[str, str]:
    path = os.path.join(store_dir, STATE_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        files = state["files"]
        if not isinstance(files, dict) or not all(isinstance(value, str) for value in files.values()):
            raise ValueError("files is not a mapping of path to hash")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CertificateStoreError(
            f"certificate store {store_dir}: cannot read the sync state {STATE_FILE} ({exc}); remove it to treat "
            "every file of the store as not pushed yet. Nothing was written.") from None
    return files


def plan_pull(store: dict[str, bytes], checkout: dict[str, bytes], state: dict[str, str]) -> dict[str, t.Any]:
    """What a pull does, three ways: the store (local), the work tree (remote), the state (base).

    Returns {"take": {path: content or None (remove)}, "kept": [paths changed here and kept], "state": new state}.
    """
    take: dict[str, bytes | None] = {}
    kept = []
    for path in sorted(set(store) | set(checkout) | set(state)):
        local, remote = digest(store.get(path)), digest(checkout.get(path))
        if local == remote:
            continue
        if local == state.get(path):
            take[path] = checkout.get(path)
        else:
            kept.append(path)
    new_state = {path: digest(content) for path, content in sorted(checkout.items())}
    return {"take": take, "kept": kept, "state": new_state}


def checkout_name(path: str, content: bytes) -> str:
    return path + VAULT_SUFFIX if holds_private_key(content) else path


def plan_push(store: dict[str, bytes], checkout: dict[str, bytes], state: dict[str, str]) -> dict[str, t.Any]:
    """What a push does to the work tree: {"write": {work tree name: (store path, cleartext)}, "remove": [work tree names]}.

    A file the work tree has and the store lacks is removed only when the store had
    it at the last pull (the store removed it); one that came from elsewhere since is
    left for the next pull. A file that gains or loses a private key changes name
    (PATH <-> PATH.vault): the old name is removed.
    """
    write = {}
    remove = []
    for path, content in sorted(store.items()):
        if checkout.get(path) == content:
            continue
        write[checkout_name(path, content)] = (path, content)
        if path in checkout and checkout_name(path, checkout[path]) != checkout_name(path, content):
            remove.append(checkout_name(path, checkout[path]))
    remove.extend(checkout_name(path, checkout[path]) for path in checkout if path not in store and path in state)
    return {"write": write, "remove": sorted(remove)}


def _write_file(root: str, relative: str, content: bytes, mode: int) -> None:
    """Write atomically: a temporary file in the same directory, then a rename."""
    path = os.path.join(root, *relative.split("/"))
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".sync-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _remove_file(root: str, relative: str) -> None:
    path = os.path.join(root, *relative.split("/"))
    if os.path.lexists(path):
        os.unlink(path)
    # Drop directories left empty (a removed certificate's live/NAME), never ROOT itself.
    directory = os.path.dirname(path)
    while os.path.abspath(directory) != os.path.abspath(root) and not os.listdir(directory):
        os.rmdir(directory)
        directory = os.path.dirname(directory)


def _file_mode(content: bytes) -> int:
    return 0o600 if holds_private_key(content) else 0o644


def write_state(store_dir: str, state: dict[str, str]) -> None:
    content = json.dumps({"version": 1, "files": state}, indent=2, sort_keys=True).encode() + b"\n"
    _write_file(store_dir, STATE_FILE, content, 0o600)


def _check_dirs(store_dir: str, checkout_dir: str) -> None:
    for name, path in (("store_dir", store_dir), ("checkout_dir", checkout_dir)):
        if not os.path.isabs(path):
            raise CertificateStoreError(f"{name} must be an absolute path, got {path!r}. Nothing was written.")
    if not os.path.isdir(checkout_dir):
        raise CertificateStoreError(
            f"checkout_dir {checkout_dir} is not a directory: clone the store's git repository there first. "
            "Nothing was written.")
    store, checkout = os.path.realpath(store_dir), os.path.realpath(checkout_dir)
    if store == checkout or store.startswith(checkout + os.sep) or checkout.startswith(store + os.sep):
        raise CertificateStoreError(
            f"store_dir {store_dir} and checkout_dir {checkout_dir} must not contain each other: the work tree would "
            "commit the cleartext store. Nothing was written.")


def pull(store_dir: str, checkout_dir: str, vault: Vault, check_mode: bool = False) -> dict[str, t.Any]:
    """Bring what the work tree holds into the store, keeping what the store changed since the last pull."""
    _check_dirs(store_dir, checkout_dir)
    store, checkout, state = read_store(store_dir), read_checkout(checkout_dir, vault), read_state(store_dir)
    plan = plan_pull(store, checkout, state)
    added = sorted(path for path, content in plan["take"].items() if content is not None and path not in store)
    updated = sorted(path for path, content in plan["take"].items() if content is not None and path in store)
    removed = sorted(path for path, content in plan["take"].items() if content is None)
    if not check_mode:
        for path, content in plan["take"].items():
            if content is None:
                _remove_file(store_dir, path)
            else:
                _write_file(store_dir, path, content, _file_mode(content))
        if plan["state"] != state or not os.path.exists(os.path.join(store_dir, STATE_FILE)):
            write_state(store_dir, plan["state"])
    return {"changed": bool(plan["take"]), "added": added, "updated": updated, "removed": removed,
            "kept": plan["kept"]}


def _leaf_summary(content: bytes) -> str | None:
    """'not after DATE, serial HEX' of the first certificate in CONTENT, or None if there is none.

    The serial is printed as ``show ssl cert`` prints it, so the store's log and HAProxy agree.
    """
    try:
        from cryptography import x509
    except ImportError:  # the role needs cryptography anyway; a message without the date is still right
        return None
    try:
        leaf = x509.load_pem_x509_certificate(content)
    except ValueError:
        return None
    not_after = getattr(leaf, "not_valid_after_utc", None) or leaf.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return f"not after {not_after.strftime('%Y-%m-%d %H:%M UTC')}, serial {format_serial(leaf.serial_number)}"


def _renewal_reason(renewals: dict[str, dict] | None, name: str) -> str:
    decision = (renewals or {}).get(name)
    if isinstance(decision, dict) and decision.get("due") and decision.get("reason"):
        return f"because: {decision['reason']}"
    return ""


def commit_message(checkout: dict[str, bytes], plan: dict[str, t.Any], reason: str = "",
                   renewals: dict[str, dict] | None = None) -> str:
    """One commit per run: a subject saying what changed, a body listing every file and why.

    RENEWALS is the certificates role's certificates_renewal_decisions (NAME -> {due, reason}):
    the line of a renewed certificate says why it was renewed.
    """
    lines = []
    certificates = []
    removed_names = set(plan["remove"])
    existing = {checkout_name(path, content) for path, content in checkout.items()}
    for name, (path, content) in sorted(plan["write"].items()):
        verb = "update" if name in existing else "add"
        parts = path.split("/")
        why = ""
        if len(parts) == 3 and parts[0] == "live" and parts[2] == "cert.pem":
            certificates.append(parts[1])
            details = [summary for summary in (_renewal_reason(renewals, parts[1]), _leaf_summary(content)) if summary]
            why = f" (certificate {parts[1]} {'renewed' if path in checkout else 'issued'}{''.join(', ' + text for text in details)})"
        elif path in checkout and checkout_name(path, checkout[path]) in removed_names:
            why = " (encrypted: it now holds a private key)" if name.endswith(VAULT_SUFFIX) else " (no longer holds a private key)"
        lines.append(f"{verb} {name}{why}")
    renamed = {checkout_name(path, checkout[path]) for path, _content in plan["write"].values() if path in checkout}
    for name in plan["remove"]:
        lines.append(f"remove {name}" + ("" if name in renamed else " (removed from the store)"))
    count = len({path for path, _content in plan["write"].values()} | {name.removesuffix(VAULT_SUFFIX) for name in plan["remove"]})
    subject = f"certificates store: {count} file{'s' if count != 1 else ''} changed"
    if certificates:
        subject += f" ({', '.join(certificates)} issued or renewed)"
    return f"{subject}\n\n" + "\n".join(lines) + "\n" + (f"\n{reason.strip()}\n" if reason.strip() else "")


def push(store_dir: str, checkout_dir: str, vault: Vault, check_mode: bool = False, reason: str = "",
         renewals: dict[str, dict] | None = None) -> dict[str, t.Any]:
    """Write what the store holds into the work tree, keys encrypted; the commit message says what and why."""
    _check_dirs(store_dir, checkout_dir)
    store, checkout, state = read_store(store_dir), read_checkout(checkout_dir, vault), read_state(store_dir)
    plan = plan_push(store, checkout, state)
    changed = bool(plan["write"] or plan["remove"])
    if changed and not check_mode:
        # Encrypt everything first: a failure leaves the work tree as it was.
        encoded = {name: vault.encrypt(content) if name != path else content for name, (path, content) in plan["write"].items()}
        for name in plan["remove"]:
            _remove_file(checkout_dir, name)
        for name, content in encoded.items():
            _write_file(checkout_dir, name, content, 0o644)
    existing = {checkout_name(path, content) for path, content in checkout.items()}
    return {
        "changed": changed,
        "added": sorted(name for name in plan["write"] if name not in existing),
        "updated": sorted(name for name in plan["write"] if name in existing),
        "removed": plan["remove"],
        "message": commit_message(checkout, plan, reason, renewals) if changed else "",
    }
