# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The git-backed certificate store, with real git repositories and real ansible-vault.

`job()` does what the role's _store_pull.yml / _store_push.yml do around the
sync (clone, pull, commit, push, on a rejected push fetch + reset + pull + push
again), so the scenarios of issue 16 run here end to end: two CI jobs in a row,
a second writer between a job's pull and its push, every object of the bare
repository searched for private-key lines.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.plugins.plugin_utils import _certificate_store as store_sync
from ansible_collections.ingress.haproxy.plugins.plugin_utils._certificate_store import (
    STATE_FILE,
    AnsibleVault,
    CertificateStoreError,
)

PASSWORD = b"correct horse battery staple"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
}


def git(*args: str, cwd: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=check, timeout=60)


def key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def cert_pem(key: bytes, name: str = "www.example.test", days: int = 90, serial: int | None = None) -> bytes:
    private = serialization.load_pem_private_key(key, None)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private.public_key())
            .serial_number(serial or x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(private, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(store: str, name: str) -> dict[str, bytes]:
    """What the role writes for one certificate: live/NAME/{privkey,cert,fullchain}.pem and its bundle."""
    key = key_pem()
    cert = cert_pem(key, name)
    files = {f"live/{name}/privkey.pem": key, f"live/{name}/cert.pem": cert, f"live/{name}/fullchain.pem": cert,
             f"bundles/{name}.pem": cert + key}
    for relative, content in files.items():
        path = os.path.join(store, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    return files


def read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


@pytest.fixture(name="vault")
def vault_fixture() -> AnsibleVault:
    return AnsibleVault(PASSWORD)


@pytest.fixture(name="remote")
def remote_fixture(tmp_path) -> str:
    """A bare repository with one commit on main (a README), as a store's remote starts."""
    remote = str(tmp_path / "remote.git")
    git("init", "--bare", "--initial-branch=main", remote)
    seed = str(tmp_path / "seed")
    git("clone", remote, seed)
    (tmp_path / "seed" / "README.md").write_text("certificate store\n")
    git("add", "README.md", cwd=seed)
    git("commit", "-m", "start", cwd=seed)
    git("push", "origin", "HEAD:main", cwd=seed)
    return remote


def clone(remote: str, checkout: str) -> None:
    git("clone", "--branch", "main", remote, checkout)


def commit_and_push(checkout: str, message: str) -> bool:
    git("add", "--all", ".", cwd=checkout)
    if not git("status", "--porcelain", cwd=checkout).stdout.strip():
        return True
    git("commit", "-m", message, cwd=checkout)
    return git("push", "origin", "HEAD:main", cwd=checkout, check=False).returncode == 0


def job(remote: str, store: str, checkout: str, vault, work=None, between=None, retries: int = 3) -> dict:
    """One run of the role: clone, pull, WORK(store), push (retried on rejection), pull to record what was pushed."""
    if not os.path.isdir(checkout):
        clone(remote, checkout)
    else:
        git("pull", "--ff-only", "origin", "main", cwd=checkout)
    pulled = store_sync.pull(store, checkout, vault)
    if work:
        work(store)
    pushed = store_sync.push(store, checkout, vault)
    if between:
        between()
    attempts = 1
    while pushed["changed"] and not commit_and_push(checkout, pushed["message"]):
        if attempts > retries:
            raise AssertionError("push still rejected")
        attempts += 1
        git("fetch", "origin", "main", cwd=checkout)
        git("reset", "--hard", "origin/main", cwd=checkout)
        store_sync.pull(store, checkout, vault)
        pushed = store_sync.push(store, checkout, vault)
    store_sync.pull(store, checkout, vault)
    return {"pulled": pulled, "pushed": pushed, "attempts": attempts}


def history_blobs(remote: str) -> list[bytes]:
    objects = git("rev-list", "--all", "--objects", cwd=remote).stdout.split()
    kinds = subprocess.run(["git", "cat-file", "--batch-check=%(objectname) %(objecttype)"], cwd=remote, env=GIT_ENV,
                           input="\n".join(objects) + "\n", capture_output=True, text=True, check=True).stdout
    blobs = [line.split()[0] for line in kinds.splitlines() if line.endswith(" blob")]
    return [subprocess.run(["git", "cat-file", "blob", blob], cwd=remote, env=GIT_ENV, capture_output=True,
                           check=True).stdout for blob in blobs]


def everything_in(result: dict) -> str:
    return json.dumps(result)


# --------------------------------------------------------------------------- two CI jobs, a second writer


def test_commit_message_prints_the_serial_as_haproxy_does():
    # HAProxy prints whole bytes: 0xABC is "0ABC" in `show ssl cert`, and so in the store's log.
    summary = store_sync._leaf_summary(cert_pem(key_pem(), serial=0xABC))
    assert summary.endswith(", serial 0ABC")


def test_two_ci_jobs_the_second_pushes_nothing(tmp_path, remote, vault):
    first = job(remote, str(tmp_path / "job1-store"), str(tmp_path / "job1-checkout"), vault,
                work=lambda store: issue(store, "www"))
    assert first["pushed"]["changed"] and first["pushed"]["added"] == [
        "bundles/www.pem.vault", "live/www/cert.pem", "live/www/fullchain.pem", "live/www/privkey.pem.vault"]
    assert first["pushed"]["message"].startswith("certificates store: 4 files changed (www issued or renewed)\n")
    assert "add live/www/cert.pem (certificate www issued, not after " in first["pushed"]["message"]
    head = git("rev-parse", "main", cwd=remote).stdout
    # A fresh job: new working directories, the same remote. It gets the store back and commits nothing.
    second = job(remote, str(tmp_path / "job2-store"), str(tmp_path / "job2-checkout"), vault)
    assert second["pulled"]["added"] == ["README.md", "bundles/www.pem", "live/www/cert.pem", "live/www/fullchain.pem",
                                         "live/www/privkey.pem"]
    assert not second["pushed"]["changed"]
    assert git("rev-parse", "main", cwd=remote).stdout == head
    assert read(str(tmp_path / "job2-store/live/www/privkey.pem")) == read(str(tmp_path / "job1-store/live/www/privkey.pem"))
    assert oct(os.stat(tmp_path / "job2-store/live/www/privkey.pem").st_mode & 0o777) == "0o600"
    assert oct(os.stat(tmp_path / "job2-store/bundles/www.pem").st_mode & 0o777) == "0o600"


def test_no_private_key_line_in_any_object_of_the_remote(tmp_path, remote, vault):
    store = str(tmp_path / "store")
    job(remote, store, str(tmp_path / "c1"), vault, work=lambda s: issue(s, "www"))
    job(remote, store, str(tmp_path / "c1"), vault, work=lambda s: issue(s, "www"))  # renewed: a new key
    blobs = history_blobs(remote)
    assert len(blobs) == 7  # README, then per job: the key and the bundle encrypted, the certificate (= fullchain)
    assert not [blob for blob in blobs if b"PRIVATE KEY" in blob]
    # The search can fail: the same search finds the key in the cleartext store.
    assert b"PRIVATE KEY" in read(os.path.join(store, "live/www/privkey.pem"))


def test_second_writer_between_pull_and_push_loses_nothing(tmp_path, remote, vault):
    job(remote, str(tmp_path / "seed-store"), str(tmp_path / "seed-checkout"), vault, work=lambda s: issue(s, "a"))
    other = {}

    def other_writer():
        other.update(issue(str(tmp_path / "other-store"), "b"))
        job(remote, str(tmp_path / "other-store"), str(tmp_path / "other-checkout"), vault)

    ours = {}
    result = job(remote, str(tmp_path / "store"), str(tmp_path / "checkout"), vault,
                 work=lambda s: ours.update(issue(s, "a")), between=other_writer)
    assert result["attempts"] == 2
    log = git("log", "--format=%s", "main", cwd=remote).stdout.splitlines()
    assert log[0].startswith("certificates store: 4 files changed (a issued or renewed)")
    assert log[1].startswith("certificates store: 4 files changed (b issued or renewed)")
    # A fresh job sees both: our renewal of a, the other writer's b.
    fresh = str(tmp_path / "fresh-store")
    job(remote, fresh, str(tmp_path / "fresh-checkout"), vault)
    for files in (ours, other):
        for relative, content in files.items():
            assert read(os.path.join(fresh, relative)) == content, relative
    # And our store got b too, at the retry.
    assert read(str(tmp_path / "store/live/b/privkey.pem")) == other["live/b/privkey.pem"]


# --------------------------------------------------------------------------- three-way pull


def test_pull_keeps_what_was_issued_here_and_not_pushed(tmp_path, remote, vault):
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    job(remote, store, checkout, vault, work=lambda s: issue(s, "www"))
    renewed = issue(store, "www")  # issued, then the push failed: only the cleartext store has it
    result = store_sync.pull(store, checkout, vault)
    assert not result["changed"]
    assert result["kept"] == sorted(renewed)
    assert read(os.path.join(store, "live/www/privkey.pem")) == renewed["live/www/privkey.pem"]
    pushed = store_sync.push(store, checkout, vault, renewals={
        "www": {"due": True, "reason": "12 days left"}, "other": {"due": True, "reason": "not in this store"}})
    assert pushed["updated"] == ["bundles/www.pem.vault", "live/www/cert.pem", "live/www/fullchain.pem",
                                 "live/www/privkey.pem.vault"]
    assert "update live/www/cert.pem (certificate www renewed, because: 12 days left, not after" in pushed["message"]
    assert "other" not in pushed["message"]


def test_pull_takes_what_only_the_remote_changed_and_removed(tmp_path, remote, vault):
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    job(remote, store, checkout, vault, work=lambda s: (issue(s, "a"), issue(s, "b")))
    other_store, other_checkout = str(tmp_path / "other-store"), str(tmp_path / "other-checkout")

    def renew_a_remove_b(s):
        issue(s, "a")
        for relative in ("live/b/privkey.pem", "live/b/cert.pem", "live/b/fullchain.pem", "bundles/b.pem"):
            os.unlink(os.path.join(s, relative))

    job(remote, other_store, other_checkout, vault, work=renew_a_remove_b)
    git("pull", "--ff-only", "origin", "main", cwd=checkout)
    result = store_sync.pull(store, checkout, vault)
    assert result["updated"] == ["bundles/a.pem", "live/a/cert.pem", "live/a/fullchain.pem", "live/a/privkey.pem"]
    assert result["removed"] == ["bundles/b.pem", "live/b/cert.pem", "live/b/fullchain.pem", "live/b/privkey.pem"]
    assert not os.path.exists(os.path.join(store, "live/b"))
    assert read(os.path.join(store, "live/a/privkey.pem")) == read(os.path.join(other_store, "live/a/privkey.pem"))
    assert not store_sync.push(store, checkout, vault)["changed"]


def test_push_leaves_a_file_that_came_from_elsewhere(tmp_path, remote, vault):
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    clone(remote, checkout)
    store_sync.pull(store, checkout, vault)
    assert store_sync.push(store, checkout, vault)["changed"] is False  # README.md is in both now
    (tmp_path / "checkout" / "notes.txt").write_text("from elsewhere\n")
    assert store_sync.push(store, checkout, vault)["changed"] is False
    assert (tmp_path / "checkout" / "notes.txt").exists()


def test_a_key_added_to_a_file_renames_it_to_vault(tmp_path, remote, vault):
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    os.makedirs(store)
    with open(os.path.join(store, "extra.pem"), "wb") as handle:
        handle.write(cert_pem(key_pem()))
    job(remote, store, checkout, vault)
    with open(os.path.join(store, "extra.pem"), "ab") as handle:
        handle.write(key_pem())
    pushed = store_sync.push(store, checkout, vault)
    assert pushed["added"] == ["extra.pem.vault"] and pushed["removed"] == ["extra.pem"]
    assert "add extra.pem.vault (encrypted: it now holds a private key)\n" in pushed["message"]
    assert "remove extra.pem\n" in pushed["message"]
    assert not os.path.exists(os.path.join(checkout, "extra.pem"))


# --------------------------------------------------------------------------- cleartext comparison, check mode, secrets


def test_unchanged_store_rewrites_no_vault_file(tmp_path, remote, vault):
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    job(remote, store, checkout, vault, work=lambda s: issue(s, "www"))
    before = read(os.path.join(checkout, "live/www/privkey.pem.vault"))
    assert store_sync.push(store, checkout, vault) == {"changed": False, "added": [], "updated": [], "removed": [],
                                                       "message": ""}
    assert read(os.path.join(checkout, "live/www/privkey.pem.vault")) == before
    assert vault.decrypt(before) == read(os.path.join(store, "live/www/privkey.pem"))


def test_check_mode_writes_nothing(tmp_path, remote, vault):
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    clone(remote, checkout)
    issue(store, "www")
    pushed = store_sync.push(store, checkout, vault, check_mode=True)
    assert pushed["changed"] and len(pushed["added"]) == 4
    assert sorted(os.listdir(checkout)) == [".git", "README.md"]
    pulled = store_sync.pull(store, checkout, vault, check_mode=True)
    assert pulled["changed"] and pulled["added"] == ["README.md"]
    assert not os.path.exists(os.path.join(store, "README.md")) and not os.path.exists(os.path.join(store, STATE_FILE))


def test_results_hold_no_secret(tmp_path, remote, vault):
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    files = {}
    result = job(remote, store, checkout, vault, work=lambda s: files.update(issue(s, "www")),
                 between=lambda: None)
    text = everything_in(result) + everything_in(job(remote, str(tmp_path / "s2"), str(tmp_path / "c2"), vault))
    assert "PRIVATE KEY" not in text and PASSWORD.decode() not in text
    body = files["live/www/privkey.pem"].decode().splitlines()[1]
    assert body not in text


# --------------------------------------------------------------------------- bad input: clear error, nothing written


def snapshot(*roots: str) -> dict[str, bytes]:
    found = {}
    for root in roots:
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = [name for name in subdirs if name != ".git"]
            for name in names:
                found[os.path.join(directory, name)] = read(os.path.join(directory, name))
    return found


def test_wrong_password_fails_and_writes_nothing(tmp_path, remote, vault):
    job(remote, str(tmp_path / "s1"), str(tmp_path / "c1"), vault, work=lambda s: issue(s, "www"))
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    clone(remote, checkout)
    issue(store, "other")
    before = snapshot(store, checkout)
    for direction in (store_sync.pull, store_sync.push):
        with pytest.raises(CertificateStoreError, match=r"cannot decrypt (bundles/www\.pem|live/www/privkey\.pem)\.vault .*"
                           r"certificates_store_vault_password_file.*Nothing was written"):
            direction(store, checkout, AnsibleVault(b"wrong"))
    assert snapshot(store, checkout) == before


def test_key_in_clear_in_the_work_tree_is_refused(tmp_path, remote, vault):
    store, checkout = str(tmp_path / "store"), str(tmp_path / "checkout")
    clone(remote, checkout)
    (tmp_path / "checkout" / "account.key").write_bytes(key_pem())
    with pytest.raises(CertificateStoreError, match=r"account\.key holds a private key in clear"):
        store_sync.pull(store, checkout, vault)
    assert not os.path.exists(store)


@pytest.mark.parametrize("case, match", [
    ("both", r"both account\.key and account\.key\.vault exist"),
    ("not-vault", r"account\.key\.vault is not an ansible-vault file"),
    ("vault-in-store", r"account\.key\.vault ends in \.vault"),
    ("bad-state", r"cannot read the sync state"),
    ("relative", r"store_dir must be an absolute path"),
    ("nested", r"must not contain each other"),
    ("no-checkout", r"is not a directory: clone the store's git repository there first"),
])
def test_bad_input_is_refused_before_any_write(tmp_path, vault, case, match):
    store, checkout = tmp_path / "store", tmp_path / "checkout"
    store.mkdir()
    checkout.mkdir()
    (store / "cert.pem").write_bytes(cert_pem(key_pem()))
    if case == "both":
        (checkout / "account.key").write_bytes(b"not a key\n")
        (checkout / "account.key.vault").write_bytes(vault.encrypt(key_pem()))
    elif case == "not-vault":
        (checkout / "account.key.vault").write_bytes(b"cleartext\n")
    elif case == "vault-in-store":
        (store / "account.key.vault").write_bytes(b"x")
    elif case == "bad-state":
        (store / STATE_FILE).write_text("{not json")
    store_dir, checkout_dir = str(store), str(checkout)
    if case == "relative":
        store_dir = "store"
    elif case == "nested":
        checkout_dir = str(store / "git")
        os.makedirs(checkout_dir)
    elif case == "no-checkout":
        checkout_dir = str(tmp_path / "missing")
    before = snapshot(str(tmp_path))
    for direction in (store_sync.pull, store_sync.push):
        with pytest.raises(CertificateStoreError, match=match):
            direction(store_dir, checkout_dir, vault)
    assert snapshot(str(tmp_path)) == before


def test_password_file(tmp_path):
    path = tmp_path / "password"
    path.write_bytes(PASSWORD + b"\n")
    assert store_sync.read_password_file(str(path)) == PASSWORD
    path.write_bytes(b"\n")
    with pytest.raises(CertificateStoreError, match=r"password file .* is empty"):
        store_sync.read_password_file(str(path))
    with pytest.raises(CertificateStoreError, match=r"cannot read the vault password file .*missing: No such file"):
        store_sync.read_password_file(str(tmp_path / "missing"))
    with pytest.raises(CertificateStoreError, match=r"vault_password_file is empty: set certificates_store_vault_password_file"):
        store_sync.read_password_file("")
