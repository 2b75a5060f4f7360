#!/usr/bin/python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: haproxy_cert_bundle
short_description: Build, validate and atomically write the one-file PEM bundle HAProxy loads
version_added: 0.1.0
description:
  - HAProxy loads one file per certificate holding the leaf certificate, its intermediates and the private key.
    This module builds that file from what certificate tools leave behind - a certbot C(live/) directory, a mounted
    Kubernetes TLS secret (cert-manager), or separate certificate, chain and key files or strings - and writes it
    to O(dest).
  - Before anything is written the inputs are validated. Every input parses (PEM, or DER for single certificates
    and keys); there is exactly one private key; it matches the leaf; the other certificates are put in order leaf
    to issuers, checked by name and by signature (a certificate that is not part of the chain is an error, a
    self-signed root is dropped because clients hold it anyway); the leaf is inside its validity window unless
    O(allow_expired=true); an encrypted key needs O(privatekey_passphrase) and is written decrypted, because HAProxy
    cannot load an encrypted key.
  - The output is normalised (leaf, intermediates, key as unencrypted PKCS#8, LF line endings, no blank lines).
    It is written to a temporary file in the directory of O(dest) that is created with mode C(0600), gets its final
    mode and owner, is flushed to disk and then renamed over O(dest); the key is never readable by others, not even
    for a moment, and a failure leaves the old O(dest) untouched. When the content is already identical the file is
    not rewritten (its modification time stays).
  - Each failure names the file (or parameter) and the reason, and changes nothing.
  - The module runs on the host where the source files are, and writes O(dest) there.
author:
  - ingress.haproxy maintainers (@ingress)
extends_documentation_fragment:
  - ingress.haproxy._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads and validates every source; writes nothing.
  diff_mode:
    support: full
    details:
      - Shows serial, SHA1 fingerprint, notAfter and DNS names of the old and the new leaf (and mode or owner changes),
        never key material.
  idempotent:
    support: full
options:
  dest:
    description:
      - Path of the bundle to write, the file HAProxy loads with C(crt).
      - Its directory must exist.
      - When O(dest) is a symbolic link, the file it points to is written.
    type: path
    required: true
  certbot_live:
    description:
      - A certbot C(live/NAME) directory. Its C(fullchain.pem) and C(privkey.pem) (symbolic links into C(archive/))
        are read.
      - Mutually exclusive with O(tls_secret_dir) and the single-file options.
    type: path
  tls_secret_dir:
    description:
      - A directory where a Kubernetes TLS secret (for example one that cert-manager manages) is mounted. Its
        C(tls.crt) and C(tls.key) are read; C(ca.crt) is not, because it holds the CA, not the chain HAProxy sends.
      - Mutually exclusive with O(certbot_live) and the single-file options.
    type: path
  certificate:
    description:
      - File with the leaf certificate (PEM or DER). May also hold the chain and the key.
    type: path
  chain:
    description:
      - File with the intermediate certificates (PEM, or one DER certificate), in any order.
    type: path
  fullchain:
    description:
      - File with the leaf and the intermediate certificates (PEM).
    type: path
  privatekey:
    description:
      - File with the private key of the leaf (PEM or DER; PKCS#8 or the traditional OpenSSL forms).
    type: path
  certificate_content:
    description:
      - The leaf certificate as a PEM string, instead of O(certificate).
      - Never logged. A private key found here is used as well (a whole bundle pasted into it), so the string is
        treated as secret.
    type: str
  chain_content:
    description:
      - The intermediate certificates as a PEM string, instead of O(chain).
      - Never logged. A private key found here is used as well (a whole bundle pasted into it), so the string is
        treated as secret.
    type: str
  fullchain_content:
    description:
      - The leaf and intermediate certificates as a PEM string, instead of O(fullchain).
      - Never logged. A private key found here is used as well (a whole bundle pasted into it), so the string is
        treated as secret.
    type: str
  privatekey_content:
    description:
      - The private key as a PEM string, instead of O(privatekey). Never logged.
    type: str
  privatekey_passphrase:
    description:
      - Passphrase of an encrypted private key. The key is written decrypted (HAProxy cannot load an encrypted key).
      - Ignored for an unencrypted key.
    type: str
  allow_expired:
    description:
      - Accept a leaf that has expired or is not valid yet.
    type: bool
    default: false
  mode:
    description:
      - Permissions of O(dest), in octal (V("0600"), V("0640")). Quote it in YAML, or give the number with a leading
        zero (V(0600)).
      - The file holds a private key; it is created with V("0600") and gets this mode before it replaces O(dest).
    type: raw
    default: "0600"
  owner:
    description:
      - User (name or number) that owns O(dest).
      - When not given, a replaced O(dest) keeps its owner; a new one belongs to the user the module runs as.
    type: str
  group:
    description:
      - Group (name or number) of O(dest).
      - When not given, a replaced O(dest) keeps its group; a new one gets the group of the user the module runs as.
    type: str
  backup:
    description:
      - Keep a copy of the old O(dest) (mode C(0600) from its creation, then the old mode) before replacing it.
    type: bool
    default: false
notes:
  - The certificates may come in any order and from several options; a certificate given twice (for example the
    leaf in O(certificate) and again in O(fullchain)) counts once.
  - DH parameters found in a source are kept after the key, as HAProxy reads them from the same file.
  - HAProxy cannot compute a fingerprint of Ed25519 or Ed448 certificates; such bundles are written as any other, and
    RV(key_type) says which it is.
requirements:
  - cryptography >= 37.0.0
seealso:
  - module: ingress.haproxy.haproxy_ssl_cert
    description: Push the bundle into running HAProxy processes without a reload.
  - module: community.crypto.acme_certificate
    description: Obtain the certificate over ACME.
"""

EXAMPLES = r"""
- name: Bundle what certbot renewed for HAProxy
  ingress.haproxy.haproxy_cert_bundle:
    certbot_live: /etc/letsencrypt/live/www.example.com
    dest: /etc/haproxy/certs/www.example.com.pem
    owner: root
    group: haproxy
    mode: "0640"
  register: bundle

- name: Say how long it lasts
  ansible.builtin.debug:
    msg: "{{ bundle.dest }}: serial {{ bundle.serial }}, {{ bundle.days_left }} days left"

- name: Bundle a certificate that cert-manager keeps in a mounted Kubernetes TLS secret
  ingress.haproxy.haproxy_cert_bundle:
    tls_secret_dir: /var/run/secrets/tls/www-example-com
    dest: /usr/local/etc/haproxy/certs/www.example.com.pem

- name: Bundle separate files (the intermediates may come in any order; DER is fine too)
  ingress.haproxy.haproxy_cert_bundle:
    certificate: /etc/pki/www.example.com/cert.der
    chain: /etc/pki/www.example.com/intermediates.pem
    privatekey: /etc/pki/www.example.com/key.pem
    privatekey_passphrase: "{{ vault_www_key_passphrase }}"
    dest: /etc/haproxy/certs/www.example.com.pem
    backup: true

- name: Bundle strings, for example from a vault
  ingress.haproxy.haproxy_cert_bundle:
    fullchain_content: "{{ lookup('ansible.builtin.file', 'files/www.example.com/fullchain.pem') }}"
    privatekey_content: "{{ vault_www_private_key }}"
    dest: /etc/haproxy/certs/www.example.com.pem
"""

RETURN = r"""
dest:
  description: The bundle's path (the file written, when O(dest) is a symbolic link).
  returned: success
  type: str
  sample: /etc/haproxy/certs/www.example.com.pem
serial:
  description: Serial of the leaf as HAProxy's C(show ssl cert) prints it (uppercase hex, whole bytes).
  returned: success
  type: str
  sample: 03A1B2C3D4E5F60718293A4B5C6D7E8F9012
fingerprint:
  description: SHA1 fingerprint of the leaf (uppercase hex, no separators), as HAProxy prints it.
  returned: success
  type: str
  sample: 0F7E1C2A9FE27897F1A4A16AC71B6DAB6C18D2E8
not_before:
  description: Start of the leaf's validity (UTC, ISO 8601).
  returned: success
  type: str
  sample: "2026-11-27T08:00:00Z"
not_after:
  description: End of the leaf's validity (UTC, ISO 8601).
  returned: success
  type: str
  sample: "2027-02-25T08:00:00Z"
days_left:
  description: Whole days until RV(not_after); negative once expired.
  returned: success
  type: int
  sample: 89
names:
  description: DNS names of the leaf (subjectAltName), sorted.
  returned: success
  type: list
  elements: str
  sample: [example.com, www.example.com]
subject:
  description: Subject of the leaf in OpenSSL's one-line form, as HAProxy prints it.
  returned: success
  type: str
  sample: /CN=www.example.com
issuer:
  description: Issuer of the leaf in OpenSSL's one-line form.
  returned: success
  type: str
  sample: /C=US/O=Let's Encrypt/CN=R11
key_type:
  description: Key type of the leaf (C(RSA), C(EC), C(DSA), C(Ed25519) or C(Ed448)).
  returned: success
  type: str
  sample: EC
chain:
  description: Subjects of the intermediate certificates written after the leaf, in order.
  returned: success
  type: list
  elements: str
  sample: [/C=US/O=Let's Encrypt/CN=R11]
backup_file:
  description: Path of the copy of the old O(dest).
  returned: when O(backup=true) and O(dest) was replaced
  type: str
  sample: /etc/haproxy/certs/www.example.com.pem.4242.2026-11-27@10:00:00~
"""

import grp
import os
import pwd
import re
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.ingress.haproxy.plugins.module_utils._pem import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    CRYPTOGRAPHY_REQUIREMENT,
    HAS_CRYPTOGRAPHY,
    PemError,
    build_bundle,
    read_file,
    summarize_certificate,
)


# The file options in the order their certificates are read (the order does not matter for the result).
FILE_OPTIONS = ("certificate", "chain", "fullchain", "privatekey")
LAYOUTS = {
    "certbot_live": ("fullchain.pem", "privkey.pem"),
    "tls_secret_dir": ("tls.crt", "tls.key"),
}
DIFF_KEYS = ("serial", "fingerprint", "not_after", "names")


class DestinationError(PemError):
    """dest cannot be read, checked or written; the message names it."""


def collect_sources(params: dict) -> list[tuple[str, bytes | str]]:
    """(name, data) of every input: file paths name themselves, strings are named after their option."""
    for option, files in LAYOUTS.items():
        if params[option]:
            return [(path, read_file(path)) for path in (os.path.join(params[option], name) for name in files)]
    sources = []
    for option in FILE_OPTIONS:
        if params[option]:
            sources.append((params[option], read_file(params[option])))
        if params[option + "_content"]:
            sources.append((option + "_content", params[option + "_content"]))
    return sources


def parse_mode(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}|[0-7]{4}", value.strip()):
        mode = int(value.strip(), 8)
    else:
        raise DestinationError("mode must be octal permissions such as '0600' or '0640', not %r" % (value,))
    if mode & ~0o7777:
        raise DestinationError("mode %r is out of range: octal permissions go up to 07777" % (value,))
    return mode


def resolve_owner(owner: str | None) -> int:
    if owner is None:
        return -1
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        if owner.isdigit():
            return int(owner)
        raise DestinationError("owner %r is not a user on this host" % owner)


def resolve_group(group: str | None) -> int:
    if group is None:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise DestinationError("group %r is not a group on this host" % group)


def resolve_dest(dest: str) -> str:
    """The path to write: dest itself, or the file a symlink dest points to. Its directory must exist."""
    path = os.path.realpath(dest) if os.path.islink(dest) else dest
    directory = os.path.dirname(os.path.abspath(path))
    try:
        directory_status = os.stat(directory)
    except FileNotFoundError:
        raise DestinationError("cannot write %s: its directory %s does not exist" % (dest, directory))
    except OSError as exc:
        raise DestinationError("cannot write %s: its directory %s cannot be reached: %s" % (dest, directory, exc.strerror or exc))
    if not stat.S_ISDIR(directory_status.st_mode):
        raise DestinationError("cannot write %s: %s is not a directory" % (dest, directory))
    if os.path.isdir(path):
        raise DestinationError("cannot write %s: it is a directory" % dest)
    return path


def read_dest(path: str) -> bytes | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise DestinationError("cannot read the current %s: %s" % (path, exc.strerror or exc))


def summary_for_diff(data: bytes | None, path: str) -> dict:
    if data is None:
        return {}
    try:
        summary = summarize_certificate(data, source=path).as_dict()
    except PemError as exc:
        # Whatever was there is replaced; say what it was without showing any of it.
        return {"content": "not a certificate bundle (%s)" % exc}
    return {key: summary[key] for key in DIFF_KEYS}


def write_atomically(path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Write data to path through a temporary file in the same directory.

    mkstemp creates the file with mode 0600; owner and mode are set on the open
    file before the rename, so the key is never readable by anyone else, and the
    rename either leaves the old file or puts the complete new one in its place.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise DestinationError("cannot create a temporary file in %s to write %s: %s" % (directory, path, exc.strerror or exc))
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view):]
            if uid != -1 or gid != -1:
                os.fchown(handle, uid, gid)
            os.fchmod(handle, mode)
            os.fsync(handle)
        finally:
            os.close(handle)
        os.rename(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise DestinationError("cannot write %s: %s" % (path, exc.strerror or exc))
    # The rename is durable once the directory entry is on disk.
    try:
        directory_handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory_handle)
    except OSError:
        pass
    finally:
        os.close(directory_handle)


def backup_copy(path: str, data: bytes) -> str:
    """Copy the old file next to it (Ansible's backup naming), never readable by others while it is written."""
    status = os.stat(path)
    name = "%s.%s.%s" % (path, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S~", time.localtime()))
    try:
        handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view):]
            os.fchown(handle, status.st_uid, status.st_gid)
            os.fchmod(handle, status.st_mode & 0o7777)
        finally:
            os.close(handle)
        os.utime(name, (status.st_atime, status.st_mtime))
    except OSError as exc:
        raise DestinationError("cannot back up %s to %s: %s" % (path, name, exc.strerror or exc))
    return name


def converge_attributes(module: AnsibleModule, path: str, mode: int, changed: bool, diff: dict) -> bool:
    """Mode, owner and group of an unchanged file (honours check mode, records the diff)."""
    changed = module.set_owner_if_different(path, module.params["owner"], changed, diff)
    changed = module.set_group_if_different(path, module.params["group"], changed, diff)
    return module.set_mode_if_different(path, mode, changed, diff)


def run(module: AnsibleModule) -> dict:
    params = module.params
    mode = parse_mode(params["mode"])
    uid = resolve_owner(params["owner"])
    gid = resolve_group(params["group"])
    path = resolve_dest(params["dest"])

    bundle = build_bundle(
        collect_sources(params),
        passphrase=params["privatekey_passphrase"],
        allow_expired=params["allow_expired"],
    )
    new = bundle.to_pem().encode("ascii")
    old = read_dest(path)

    summary = bundle.summary.as_dict()
    diff = {
        "before_header": path,
        "after_header": path,
        "before": summary_for_diff(old, path),
        "after": {key: summary[key] for key in DIFF_KEYS},
    }
    result = dict(summary, dest=path, chain=[item.subject for item in bundle.chain_summaries], changed=False)

    if old == new:
        result["changed"] = converge_attributes(module, path, mode, False, diff)
    else:
        result["changed"] = True
        if old is not None:
            old_mode = os.stat(path).st_mode & 0o7777
            if old_mode != mode:
                diff["before"]["mode"] = "0%03o" % old_mode
                diff["after"]["mode"] = "0%03o" % mode
        if not module.check_mode:
            if old is not None:
                status = os.stat(path)
                # A replaced file keeps its owner and group unless told otherwise.
                uid = status.st_uid if uid == -1 else uid
                gid = status.st_gid if gid == -1 else gid
                if params["backup"]:
                    result["backup_file"] = backup_copy(path, old)
            write_atomically(path, new, mode, uid, gid)
    if module._diff:
        result["diff"] = diff
    return result


def main() -> None:
    content_options = [option + "_content" for option in FILE_OPTIONS]
    single_sources = list(FILE_OPTIONS) + content_options
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            certbot_live=dict(type="path"),
            tls_secret_dir=dict(type="path"),
            certificate=dict(type="path"),
            chain=dict(type="path"),
            fullchain=dict(type="path"),
            privatekey=dict(type="path"),
            certificate_content=dict(type="str", no_log=True),
            chain_content=dict(type="str", no_log=True),
            fullchain_content=dict(type="str", no_log=True),
            privatekey_content=dict(type="str", no_log=True),
            privatekey_passphrase=dict(type="str", no_log=True),
            allow_expired=dict(type="bool", default=False),
            mode=dict(type="raw", default="0600"),
            owner=dict(type="str"),
            group=dict(type="str"),
            backup=dict(type="bool", default=False),
        ),
        mutually_exclusive=(
            [("certbot_live", "tls_secret_dir")]
            + [(layout, option) for layout in LAYOUTS for option in single_sources]
            + [(option, option + "_content") for option in FILE_OPTIONS]
        ),
        required_one_of=[["certbot_live", "tls_secret_dir", "certificate", "fullchain", "certificate_content", "fullchain_content"]],
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib(CRYPTOGRAPHY_REQUIREMENT), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    try:
        result = run(module)
    except PemError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
