#!/usr/bin/python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name
# (plugins/action/certificate_store_sync.py); this file holds its documentation.

from __future__ import annotations


DOCUMENTATION = r"""
module: certificate_store_sync
short_description: Keep a certificate store directory and a git work tree in step, private keys encrypted with ansible-vault
version_added: 0.1.0
description:
  - Syncs the cleartext certificate store of the P(ingress.haproxy.certificates#role) role (ACME account key,
    C(live/NAME/*.pem), C(bundles/*.pem)) with a git work tree on the controller, so an ephemeral CI runner gets the
    store back from a git remote instead of registering and renewing again on every job.
  - Every file whose content holds a C(PRIVATE KEY) block is written to the work tree only as C(PATH.vault),
    encrypted with ansible-vault; every other file as it is. Contents are compared in cleartext (a vault file is
    decrypted first), so an unchanged store changes no file and makes no commit.
  - O(direction=pull) brings the work tree's files into the store, three ways against the sync state the store keeps
    (C(.ingress-haproxy-store-sync.json), the hashes of what the work tree held at the last pull) - a file the store
    changed since then is kept (RV(kept)), so a certificate issued here and not pushed yet is never overwritten;
    a file only the work tree changed is taken, a file it removed is removed.
  - O(direction=push) writes what the store holds into the work tree and returns RV(message), the commit message
    listing what changed and why. A file the work tree has and the store lacks is removed only when the store held
    it at the last pull.
  - It runs no git command. Clone, commit and push with M(ansible.builtin.git) and M(ansible.builtin.command) around
    it; after a rejected push, fetch and reset the work tree to the remote, then pull and push again (the store
    keeps every local change, so nothing is lost and both changes end up in the history).
  - Files and directories whose names start with a dot are not synced (C(.git), the sync state).
  - Every file is read, decrypted and checked before the first write; a bad input changes nothing.
author:
  - ingress.haproxy maintainers (@ingress-haproxy)
extends_documentation_fragment:
  - ingress.haproxy._attributes
  - ansible.builtin.action_common_attributes.flow
options:
  direction:
    description:
      - V(pull) copies from the work tree into the store, V(push) from the store into the work tree.
    type: str
    choices: [pull, push]
    required: true
  store_dir:
    description:
      - The cleartext store on the controller (the role's C(certificates_store_dir)). Absolute. Created by a pull when
        missing (mode 0700; files holding a private key 0600, others 0644).
    type: path
    required: true
  checkout_dir:
    description:
      - The git work tree the store is mirrored in (the root of a clone of C(certificates_store_git_repo)). Absolute,
        must exist, and neither may contain the other.
    type: path
    required: true
  vault_password_file:
    description:
      - File holding the ansible-vault password the keys are encrypted with (its trailing newline is ignored). A plain
        file; a script is not run.
    type: path
    required: true
  reason:
    description:
      - Text added to the end of RV(message), for example which certificates the run renewed and why.
    type: str
    default: ""
  renewals:
    description:
      - The renewal decisions of the P(ingress.haproxy.certificates#role) role (its C(certificates_renewal_decisions) fact,
        C(NAME) mapped to C(due) and C(reason)). RV(message) then says why each renewed certificate was renewed.
      - Used by O(direction=push) only.
    type: dict
    default: {}
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Reports what would be written, and for O(direction=push) the commit message, without writing.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - The results name files, never their content; no key material and no password is ever returned.
  - The same password must be used by every writer of a store; a work tree file that does not decrypt with it fails
    the task before anything is written.
seealso:
  - name: ansible-vault
    description: How vault files are encrypted.
    link: https://docs.ansible.com/ansible/latest/vault_guide/index.html
"""

EXAMPLES = r"""
- name: Get the store from its git remote
  ansible.builtin.git:
    repo: git@git.example.com:ops/certificate-store.git
    dest: /var/tmp/certificate-store
    version: main

- name: Bring it into the cleartext store
  ingress.haproxy.certificate_store_sync:
    direction: pull
    store_dir: /var/lib/ingress_haproxy/certificates
    checkout_dir: /var/tmp/certificate-store
    vault_password_file: /run/secrets/vault_password

# ... renew ...

- name: Write what changed into the work tree, keys encrypted
  ingress.haproxy.certificate_store_sync:
    direction: push
    store_dir: /var/lib/ingress_haproxy/certificates
    checkout_dir: /var/tmp/certificate-store
    vault_password_file: /run/secrets/vault_password
  register: store

- name: Commit it, one commit for the run
  ansible.builtin.command:
    argv: [git, -C, /var/tmp/certificate-store, commit, --all, --message, "{{ store.message }}"]
  when: store is changed
"""

RETURN = r"""
added:
  description: Files the sync added, relative to the destination (the work tree's names, with C(.vault), for a push).
  returned: always
  type: list
  elements: str
  sample: [live/www/cert.pem, live/www/privkey.pem.vault]
updated:
  description: Files the sync rewrote, relative to the destination.
  returned: always
  type: list
  elements: str
  sample: [bundles/www.pem.vault]
removed:
  description: Files the sync removed, relative to the destination.
  returned: always
  type: list
  elements: str
  sample: []
kept:
  description:
    - Store files that differ from the work tree and were kept because the store changed them since the last pull
      (they are committed by the next push).
  returned: when O(direction=pull)
  type: list
  elements: str
  sample: [live/www/cert.pem]
message:
  description:
    - The commit message for what the push wrote, a subject line and one line per file saying what and why
      (a certificate issued or renewed, with its expiry and serial). Empty when nothing changed.
  returned: when O(direction=push)
  type: str
  sample: |-
    certificates store: 4 files changed (www issued or renewed)

    add bundles/www.pem.vault
    add live/www/cert.pem (certificate www issued, because: no certificate yet, not after 2027-03-01 10:00 UTC, serial 3F2A)
    add live/www/fullchain.pem
    add live/www/privkey.pem.vault
"""
