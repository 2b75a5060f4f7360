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
  - ingress.haproxy._cryptography
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
      - When O(dest) is a symbolic link it is replaced by a regular file, unless O(follow=true).
      - Required unless O(bundles) is given; mutually exclusive with O(bundles).
    type: path
  bundles:
    description:
      - Build many bundles in one call, instead of one per O(dest).
      - Every entry is read and validated before any file is written. When any entry is invalid the module fails,
        naming each invalid entry by its index, its O(bundles[].dest) and the reason (also returned as RV(errors)),
        and writes nothing at all. Then each bundle is written as the single form writes it.
      - The other options of this module, given at the top level, are defaults for every entry. An entry that names
        any source (O(bundles[].certbot_live), O(bundles[].certificate), ...) uses only its own sources; an entry
        without a source uses the top-level sources.
      - Mutually exclusive with O(dest).
    type: list
    elements: dict
    suboptions:
      dest:
        description:
          - Path of this bundle, as O(dest). Two entries may not write the same file.
        type: path
        required: true
      certbot_live:
        description:
          - As O(certbot_live).
        type: path
      tls_secret_dir:
        description:
          - As O(tls_secret_dir).
        type: path
      certificate:
        description:
          - As O(certificate).
        type: path
      chain:
        description:
          - As O(chain).
        type: path
      fullchain:
        description:
          - As O(fullchain).
        type: path
      privatekey:
        description:
          - As O(privatekey).
        type: path
      certificate_content:
        description:
          - As O(certificate_content). Never logged.
        type: str
      chain_content:
        description:
          - As O(chain_content). Never logged.
        type: str
      fullchain_content:
        description:
          - As O(fullchain_content). Never logged.
        type: str
      privatekey_content:
        description:
          - As O(privatekey_content). Never logged.
        type: str
      privatekey_passphrase:
        description:
          - As O(privatekey_passphrase). Never logged.
          - Defaults to the top-level O(privatekey_passphrase).
        type: str
      allow_expired:
        description:
          - As O(allow_expired). Defaults to the top-level O(allow_expired).
        type: bool
      mode:
        description:
          - As O(mode). Defaults to the top-level O(mode).
        type: raw
      owner:
        description:
          - As O(owner). Defaults to the top-level O(owner).
        type: str
      group:
        description:
          - As O(group). Defaults to the top-level O(group).
        type: str
      backup:
        description:
          - As O(backup). Defaults to the top-level O(backup).
        type: bool
      follow:
        description:
          - As O(follow). Defaults to the top-level O(follow).
        type: bool
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
      - When not given, a replaced regular O(dest) keeps its owner; a new one (or one written through a symbolic
        link) belongs to the user the module runs as.
    type: str
  group:
    description:
      - Group (name or number) of O(dest).
      - When not given, a replaced regular O(dest) keeps its group; a new one (or one written through a symbolic
        link) gets the group of the user the module runs as.
    type: str
  backup:
    description:
      - Keep a copy of the old O(dest) (mode C(0600) from its creation, then the old mode) before replacing it.
    type: bool
    default: false
  follow:
    description:
      - When O(dest) is a symbolic link, write the file it points to instead of replacing the link by a regular file.
      - The file written then gets O(owner) and O(group), or belongs to the user the module runs as; it never keeps
        the owner of the link's target, who could otherwise read the private key.
    type: bool
    default: false
    version_added: 0.2.0
notes:
  - The certificates may come in any order and from several options; a certificate given twice (for example the
    leaf in O(certificate) and again in O(fullchain)) counts once.
  - DH parameters found in a source are kept after the key, as HAProxy reads them from the same file.
  - HAProxy cannot compute a fingerprint of Ed25519 or Ed448 certificates; such bundles are written as any other, and
    RV(key_type) says which it is.
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

- name: Bundle every certificate certbot keeps, in one call (nothing is written unless all of them are valid)
  ingress.haproxy.haproxy_cert_bundle:
    bundles:
      - certbot_live: /etc/letsencrypt/live/www.example.com
        dest: /etc/haproxy/certs/www.example.com.pem
      - certbot_live: /etc/letsencrypt/live/api.example.com
        dest: /etc/haproxy/certs/api.example.com.pem
      - tls_secret_dir: /var/run/secrets/tls/shop-example-com
        dest: /etc/haproxy/certs/shop.example.com.pem
        mode: "0600"
    group: haproxy
    mode: "0640"
  register: bundles

- name: Say what changed
  ansible.builtin.debug:
    msg: "{{ bundles.bundles | selectattr('changed') | map(attribute='dest') | list }}"

- name: Bundle strings, for example from a vault
  ingress.haproxy.haproxy_cert_bundle:
    fullchain_content: "{{ lookup('ansible.builtin.file', 'files/www.example.com/fullchain.pem') }}"
    privatekey_content: "{{ vault_www_private_key }}"
    dest: /etc/haproxy/certs/www.example.com.pem
"""

RETURN = r"""
dest:
  description: The bundle's path (with O(follow=true), the file a symbolic link O(dest) points to).
  returned: success, without O(bundles)
  type: str
  sample: /etc/haproxy/certs/www.example.com.pem
serial:
  description: Serial of the leaf as HAProxy's C(show ssl cert) prints it (uppercase hex, whole bytes).
  returned: success, without O(bundles)
  type: str
  sample: 03A1B2C3D4E5F60718293A4B5C6D7E8F9012
fingerprint:
  description: SHA1 fingerprint of the leaf (uppercase hex, no separators), as HAProxy prints it.
  returned: success, without O(bundles)
  type: str
  sample: 0F7E1C2A9FE27897F1A4A16AC71B6DAB6C18D2E8
not_before:
  description: Start of the leaf's validity (UTC, ISO 8601).
  returned: success, without O(bundles)
  type: str
  sample: "2026-11-27T08:00:00Z"
not_after:
  description: End of the leaf's validity (UTC, ISO 8601).
  returned: success, without O(bundles)
  type: str
  sample: "2027-02-25T08:00:00Z"
days_left:
  description: Whole days until RV(not_after); negative once expired.
  returned: success, without O(bundles)
  type: int
  sample: 89
names:
  description: DNS names of the leaf (subjectAltName), sorted.
  returned: success, without O(bundles)
  type: list
  elements: str
  sample: [example.com, www.example.com]
subject:
  description: Subject of the leaf in OpenSSL's one-line form, as HAProxy prints it.
  returned: success, without O(bundles)
  type: str
  sample: /CN=www.example.com
issuer:
  description: Issuer of the leaf in OpenSSL's one-line form.
  returned: success, without O(bundles)
  type: str
  sample: /C=US/O=Let's Encrypt/CN=R11
key_type:
  description: Key type of the leaf (C(RSA), C(EC), C(DSA), C(Ed25519) or C(Ed448)).
  returned: success, without O(bundles)
  type: str
  sample: EC
chain:
  description: Subjects of the intermediate certificates written after the leaf, in order.
  returned: success, without O(bundles)
  type: list
  elements: str
  sample: [/C=US/O=Let's Encrypt/CN=R11]
backup_file:
  description: Path of the copy of the old O(dest).
  returned: when O(backup=true) and O(dest) was replaced
  type: str
  sample: /etc/haproxy/certs/www.example.com.pem.4242.2026-11-27@10:00:00~
bundles:
  description:
    - One entry per entry of O(bundles), in the same order, each with the keys the single form returns
      (RV(dest), C(changed), RV(serial), RV(fingerprint), RV(not_before), RV(not_after), RV(days_left), RV(names),
      RV(subject), RV(issuer), RV(key_type), RV(chain), and RV(backup_file) when a backup was made).
    - When writing one bundle fails (after all were validated), the module fails and returns the entries written
      before it.
  returned: when O(bundles) is given
  type: list
  elements: dict
  sample:
    - dest: /etc/haproxy/certs/www.example.com.pem
      changed: true
      serial: 03A1B2C3D4E5F60718293A4B5C6D7E8F9012
      fingerprint: 0F7E1C2A9FE27897F1A4A16AC71B6DAB6C18D2E8
      not_before: "2026-11-27T08:00:00Z"
      not_after: "2027-02-25T08:00:00Z"
      days_left: 89
      names: [example.com, www.example.com]
      subject: /CN=www.example.com
      issuer: /C=US/O=Let's Encrypt/CN=R11
      key_type: EC
      chain: [/C=US/O=Let's Encrypt/CN=R11]
errors:
  description:
    - The invalid entries of O(bundles) (the module fails and writes nothing), each with C(index) (from 0),
      C(dest) and C(msg) (the reason, as the single form would give it).
  returned: failure, when entries of O(bundles) are invalid
  type: list
  elements: dict
  sample:
    - index: 1
      dest: /etc/haproxy/certs/api.example.com.pem
      msg: "/etc/letsencrypt/live/api.example.com/privkey.pem: no such file"
"""

import grp
import os
import pwd
import re
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError
from ansible_collections.ingress.haproxy.plugins.module_utils._pem import (
    PemError,
    build_bundle,
    read_file,
    require_cryptography,
    summarize_certificate,
)


# The file options in the order their certificates are read (the order does not matter for the result).
FILE_OPTIONS = ("certificate", "chain", "fullchain", "privatekey")
LAYOUTS = {
    "certbot_live": ("fullchain.pem", "privkey.pem"),
    "tls_secret_dir": ("tls.crt", "tls.key"),
}
DIFF_KEYS = ("serial", "fingerprint", "not_after", "names")
CONTENT_OPTIONS = tuple(option + "_content" for option in FILE_OPTIONS)
SINGLE_SOURCES = FILE_OPTIONS + CONTENT_OPTIONS
SOURCE_OPTIONS = tuple(LAYOUTS) + SINGLE_SOURCES
# One of these must be given: they bring the leaf.
LEAF_OPTIONS = ("certbot_live", "tls_secret_dir", "certificate", "fullchain", "certificate_content", "fullchain_content")
SETTING_OPTIONS = ("privatekey_passphrase", "allow_expired", "mode", "owner", "group", "backup", "follow")
# Every per-bundle option, without defaults: an entry of bundles that leaves one out takes the top-level value.
BUNDLE_OPTIONS = dict(
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
    allow_expired=dict(type="bool"),
    mode=dict(type="raw"),
    owner=dict(type="str"),
    group=dict(type="str"),
    backup=dict(type="bool"),
    follow=dict(type="bool"),
)
TOP_LEVEL_DEFAULTS = dict(allow_expired=False, mode="0600", backup=False, follow=False)


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


def resolve_dest(dest: str, follow: bool = False) -> str:
    """The path to write: dest itself (a symlink is replaced), or with ``follow`` the file it points to.

    Its directory must exist.
    """
    path = os.path.realpath(dest) if follow and os.path.islink(dest) else dest
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


def converge_attributes(module: AnsibleModule, path: str, params: dict, mode: int, diff: dict) -> bool:
    """Mode, owner and group of an unchanged file (honours check mode, records the diff)."""
    changed = module.set_owner_if_different(path, params["owner"], False, diff)
    changed = module.set_group_if_different(path, params["group"], changed, diff)
    return module.set_mode_if_different(path, mode, changed, diff)


class BundlesError(PemError):
    """One or more entries of bundles are invalid; nothing was written. errors: index, dest and reason of each."""

    def __init__(self, message: str, errors: list[dict]):
        super().__init__(message, errors=errors)
        self.errors = errors


class BundleWriteError(PemError):
    """Writing one entry of bundles failed after every entry was validated; results: the entries done before."""

    def __init__(self, message: str, results: list[dict]):
        super().__init__(message, bundles=results, changed=any(item["changed"] for item in results))
        self.results = results


def check_sources(params: dict) -> None:
    """The source rules AnsibleModule enforces for the single form, for one merged entry of bundles."""
    given = [option for option in SOURCE_OPTIONS if params[option]]
    layouts = [option for option in LAYOUTS if params[option]]
    if len(layouts) > 1 or (layouts and len(given) > 1):
        raise PemError("parameters are mutually exclusive: %s" % "|".join(given))
    for option in FILE_OPTIONS:
        if params[option] and params[option + "_content"]:
            raise PemError("parameters are mutually exclusive: %s|%s_content" % (option, option))
    if not any(params[option] for option in LEAF_OPTIONS):
        raise PemError("no certificate source: one of %s is required" % ", ".join(LEAF_OPTIONS))


def entry_params(defaults: dict, entry: dict) -> dict:
    """One entry of bundles with the top-level values filled in.

    The sources come from the entry when it names any, else from the top level
    (mixing them would build a bundle from two places); every other option the
    entry leaves out takes the top-level value.
    """
    params = {option: entry[option] for option in SOURCE_OPTIONS}
    if not any(params.values()):
        params = {option: defaults[option] for option in SOURCE_OPTIONS}
    for option in SETTING_OPTIONS:
        params[option] = defaults[option] if entry[option] is None else entry[option]
    params["dest"] = entry["dest"]
    check_sources(params)
    return params


def plan_bundle(params: dict) -> dict:
    """Read and validate every input of one bundle and compare it with dest; writes nothing."""
    mode = parse_mode(params["mode"])
    uid = resolve_owner(params["owner"])
    gid = resolve_group(params["group"])
    follow = bool(params.get("follow"))
    path = resolve_dest(params["dest"], follow)
    # A link is replaced, so what it points to is not "the old content"; followed, the file it points to
    # is written, and its owner (maybe not ours) is not inherited.
    link_replaced = os.path.islink(path)
    inherit_owner = not follow or not os.path.islink(params["dest"])
    bundle = build_bundle(
        collect_sources(params),
        passphrase=params["privatekey_passphrase"],
        allow_expired=params["allow_expired"],
    )
    summary = bundle.summary.as_dict()
    old = None if link_replaced else read_dest(path)
    return dict(
        params=params, path=path, mode=mode, uid=uid, gid=gid, old=old, new=bundle.to_pem().encode("ascii"),
        summary=summary, chain=[item.subject for item in bundle.chain_summaries], inherit_owner=inherit_owner,
        link_replaced=link_replaced,
        diff={
            "before_header": path,
            "after_header": path,
            "before": ({"content": "a symbolic link to %s (replaced by a regular file)" % os.readlink(path)}
                       if link_replaced else summary_for_diff(old, path)),
            "after": {key: summary[key] for key in DIFF_KEYS},
        },
    )


def apply_plan(module: AnsibleModule, plan: dict) -> dict:
    """Write one validated bundle (unless it is already there or in check mode); its result and diff."""
    path, mode, old, diff = plan["path"], plan["mode"], plan["old"], plan["diff"]
    result = dict(plan["summary"], dest=path, chain=plan["chain"], changed=False)
    if old == plan["new"]:
        result["changed"] = converge_attributes(module, path, plan["params"], mode, diff)
        return result
    result["changed"] = True
    uid, gid = plan["uid"], plan["gid"]
    if old is not None:
        status = os.stat(path)
        if status.st_mode & 0o7777 != mode:
            diff["before"]["mode"] = "0%03o" % (status.st_mode & 0o7777)
            diff["after"]["mode"] = "0%03o" % mode
        if plan["inherit_owner"]:
            # A replaced regular file keeps its owner and group unless told otherwise.
            uid = status.st_uid if uid == -1 else uid
            gid = status.st_gid if gid == -1 else gid
    if not module.check_mode:
        if old is not None and plan["params"]["backup"]:
            result["backup_file"] = backup_copy(path, old)
        write_atomically(path, plan["new"], mode, uid, gid)
    return result


def plan_bundles(defaults: dict, entries: list[dict]) -> list[dict]:
    """Validate every entry of bundles before any is written; all errors at once, naming index and dest."""
    plans, errors, seen = [], [], {}
    for index, entry in enumerate(entries):
        try:
            plan = plan_bundle(entry_params(defaults, entry))
            target = os.path.realpath(plan["path"])
            if target in seen:
                raise PemError("it writes the same file as bundles[%d] (%s)" % (seen[target], target))
            seen[target] = index
            plans.append(plan)
        except PemError as exc:
            errors.append({"index": index, "dest": entry["dest"], "msg": str(exc)})
    if errors:
        raise BundlesError(
            "%d of %d bundles invalid, nothing was written: %s" % (
                len(errors), len(entries),
                "; ".join("bundles[%d] (dest %s): %s" % (error["index"], error["dest"], error["msg"]) for error in errors)),
            errors)
    return plans


def run_bundles(module: AnsibleModule) -> dict:
    """The list form: every bundle validated first, then each written as the single form writes it."""
    plans = plan_bundles(module.params, module.params["bundles"])
    results = []
    for index, plan in enumerate(plans):
        try:
            results.append(apply_plan(module, plan))
        except PemError as exc:
            raise BundleWriteError("bundles[%d] (dest %s): %s" % (index, plan["params"]["dest"], exc), results)
    result = dict(changed=any(item["changed"] for item in results), bundles=results)
    if module._diff:
        result["diff"] = [plan["diff"] for plan in plans]
    return result


def run(module: AnsibleModule) -> dict:
    if module.params["bundles"] is not None:
        return run_bundles(module)
    plan = plan_bundle(module.params)
    result = apply_plan(module, plan)
    if module._diff:
        result["diff"] = plan["diff"]
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path"),
            bundles=dict(type="list", elements="dict", options=dict(
                {option: dict(spec) for option, spec in BUNDLE_OPTIONS.items()},
                dest=dict(type="path", required=True),
            )),
            **{option: dict(spec, **({"default": TOP_LEVEL_DEFAULTS[option]} if option in TOP_LEVEL_DEFAULTS else {}))
               for option, spec in BUNDLE_OPTIONS.items()}
        ),
        mutually_exclusive=(
            [("dest", "bundles"), ("certbot_live", "tls_secret_dir")]
            + [(layout, option) for layout in LAYOUTS for option in SINGLE_SOURCES]
            + [(option, option + "_content") for option in FILE_OPTIONS]
        ),
        required_one_of=[["dest", "bundles"]],
        supports_check_mode=True,
    )
    try:
        require_cryptography()
        if module.params["dest"] is not None and not any(module.params[option] for option in LEAF_OPTIONS):
            raise PemError("one of the following is required: %s" % ", ".join(LEAF_OPTIONS))
        result = run(module)
    except IngressError as exc:
        # The one place this module fails.
        exc.do_fail(module)
    else:
        module.exit_json(**result)


if __name__ == "__main__":
    main()
