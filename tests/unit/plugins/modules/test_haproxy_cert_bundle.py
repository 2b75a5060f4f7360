# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The file handling of haproxy_cert_bundle: mode parsing, atomic writes, backups."""

from __future__ import annotations

import datetime
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.plugins.modules import haproxy_cert_bundle as module
from ansible_collections.ingress.haproxy.plugins.modules.haproxy_cert_bundle import DestinationError
from ansible_collections.ingress.haproxy.tests.unit.plugins.module_runner import run_module


@pytest.fixture
def open_umask():
    """The most permissive umask: whatever keeps the key private must not be the umask."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.mark.parametrize("value, mode", [("0600", 0o600), ("600", 0o600), ("0640", 0o640), (" 0644 ", 0o644),
                                         ("2750", 0o2750), (0o640, 0o640), (384, 0o600)])
def test_parse_mode(value, mode):
    assert module.parse_mode(value) == mode


@pytest.mark.parametrize("value", ["u=rw", "0999", "rw-------", "", True, 0o17777, None])
def test_parse_mode_rejects(value):
    with pytest.raises(DestinationError, match="mode"):
        module.parse_mode(value)


def test_write_atomically_creates_private_file(tmp_path, open_umask):
    dest = tmp_path / "www.pem"
    module.write_atomically(str(dest), b"bundle\n", 0o600, -1, -1)
    assert dest.read_bytes() == b"bundle\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["www.pem"]


def test_write_atomically_replaces_in_one_step(tmp_path, open_umask):
    dest = tmp_path / "www.pem"
    dest.write_bytes(b"old\n")
    dest.chmod(0o644)
    old_inode = dest.stat().st_ino
    module.write_atomically(str(dest), b"new\n", 0o640, os.getuid(), os.getgid())
    assert dest.read_bytes() == b"new\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    # A new inode: readers that opened the old file keep reading the old content whole.
    assert dest.stat().st_ino != old_inode
    assert sorted(path.name for path in tmp_path.iterdir()) == ["www.pem"]


def test_write_atomically_failure_leaves_nothing(tmp_path):
    # The rename fails (dest is a non-empty directory): no temporary file stays behind.
    dest = tmp_path / "www.pem"
    dest.mkdir()
    (dest / "keep").write_text("x")
    with pytest.raises(DestinationError) as excinfo:
        module.write_atomically(str(dest), b"new\n", 0o600, -1, -1)
    assert str(dest) in str(excinfo.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["www.pem"]
    assert (dest / "keep").read_text() == "x"


def test_backup_copy_keeps_bytes_mode_and_mtime(tmp_path, open_umask):
    dest = tmp_path / "www.pem"
    dest.write_bytes(b"old bundle\n")
    dest.chmod(0o640)
    os.utime(str(dest), (1_700_000_000, 1_700_000_000))
    backup = module.backup_copy(str(dest), dest.read_bytes())
    assert backup.startswith(str(dest) + ".")
    assert backup.endswith("~")
    with open(backup, "rb") as handle:
        assert handle.read() == b"old bundle\n"
    status = os.stat(backup)
    assert stat.S_IMODE(status.st_mode) == 0o640
    assert int(status.st_mtime) == 1_700_000_000


def test_resolve_dest(tmp_path):
    assert module.resolve_dest(str(tmp_path / "www.pem")) == str(tmp_path / "www.pem")
    target = tmp_path / "real.pem"
    target.write_text("x")
    link = tmp_path / "link.pem"
    link.symlink_to(target)
    assert module.resolve_dest(str(link)) == str(link)
    assert module.resolve_dest(str(link), follow=True) == str(target)
    with pytest.raises(DestinationError, match="its directory %s does not exist" % (tmp_path / "nope")):
        module.resolve_dest(str(tmp_path / "nope" / "www.pem"))
    with pytest.raises(DestinationError, match="is not a directory"):
        module.resolve_dest(str(target / "www.pem"))
    with pytest.raises(DestinationError, match="it is a directory"):
        module.resolve_dest(str(tmp_path))


def test_collect_sources_names_files_and_options(tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    (live / "fullchain.pem").write_text("chain")
    (live / "privkey.pem").write_text("key")
    params = dict.fromkeys(["certbot_live", "tls_secret_dir", "certificate", "chain", "fullchain", "privatekey",
                            "certificate_content", "chain_content", "fullchain_content", "privatekey_content"])
    assert module.collect_sources(dict(params, certbot_live=str(live))) == [
        (str(live / "fullchain.pem"), b"chain"), (str(live / "privkey.pem"), b"key")]
    assert module.collect_sources(dict(params, fullchain=str(live / "fullchain.pem"), privatekey_content="k")) == [
        (str(live / "fullchain.pem"), b"chain"), ("privatekey_content", "k")]


# The list form (bundles): every entry validated before any is written.

def _issue(common_name, key, issuer=None, issuer_key=None, *, ca=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    """A CA and two leaves with their keys, as PEM text."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Bundle Test CA", ca_key, ca=True)
    pem = {"ca": ca.public_bytes(serialization.Encoding.PEM).decode()}
    for name in ("www.example.test", "api.example.test"):
        key = ec.generate_private_key(ec.SECP256R1())
        pem[name] = _issue(name, key, ca, ca_key).public_bytes(serialization.Encoding.PEM).decode()
        pem[name + ".key"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()).decode()
    return pem


def _defaults(**values):
    """The top-level parameters as AnsibleModule hands them over (every option present)."""
    params = {option: None for option in module.BUNDLE_OPTIONS}
    params.update(allow_expired=False, mode="0600", backup=False, dest=None, bundles=None)
    params.update(values)
    return params


def _entry(**values):
    """One entry of bundles as AnsibleModule hands it over (suboptions left out are None)."""
    entry = {option: None for option in module.BUNDLE_OPTIONS}
    entry.update(values)
    return entry


def test_entry_params_top_level_values_are_defaults():
    defaults = _defaults(mode="0640", group="haproxy", certbot_live="/top/live", privatekey_passphrase="secret")
    merged = module.entry_params(defaults, _entry(dest="/a.pem", mode="0600"))
    assert merged["mode"] == "0600"
    assert merged["group"] == "haproxy"
    assert merged["certbot_live"] == "/top/live"
    assert merged["privatekey_passphrase"] == "secret"
    # An entry naming its own source uses only its sources: no top-level certbot_live mixed in.
    merged = module.entry_params(defaults, _entry(dest="/b.pem", fullchain="/b/fullchain.pem", privatekey="/b/key.pem"))
    assert merged["certbot_live"] is None
    assert (merged["fullchain"], merged["privatekey"]) == ("/b/fullchain.pem", "/b/key.pem")


@pytest.mark.parametrize("entry, reason", [
    (dict(certbot_live="/l", tls_secret_dir="/s"), r"mutually exclusive: certbot_live\|tls_secret_dir"),
    (dict(certbot_live="/l", privatekey="/k"), r"mutually exclusive: certbot_live\|privatekey"),
    (dict(certificate="/c", certificate_content="x"), r"mutually exclusive: certificate\|certificate_content"),
    (dict(privatekey="/k"), "no certificate source"),
])
def test_entry_params_rejects_bad_sources(entry, reason):
    with pytest.raises(module.PemError, match=reason):
        module.entry_params(_defaults(), _entry(dest="/a.pem", **entry))


def test_plan_bundles_validates_all_and_names_every_bad_entry(tmp_path, pki):
    good = _entry(dest=str(tmp_path / "www.pem"), fullchain_content=pki["www.example.test"] + pki["ca"],
                  privatekey_content=pki["www.example.test.key"])
    mismatch = _entry(dest=str(tmp_path / "api.pem"), fullchain_content=pki["api.example.test"],
                      privatekey_content=pki["www.example.test.key"])
    missing = _entry(dest=str(tmp_path / "gone.pem"), certbot_live=str(tmp_path / "no-such-live"))
    with pytest.raises(module.BundlesError) as excinfo:
        module.plan_bundles(_defaults(), [good, mismatch, missing])
    errors = excinfo.value.errors
    assert [(error["index"], error["dest"]) for error in errors] == [(1, mismatch["dest"]), (2, missing["dest"])]
    assert "2 of 3 bundles invalid, nothing was written" in str(excinfo.value)
    assert "bundles[1] (dest %s)" % mismatch["dest"] in str(excinfo.value)
    assert str(tmp_path / "no-such-live" / "fullchain.pem") in errors[1]["msg"]
    # The reasons, not the key material.
    assert "PRIVATE KEY" not in str(excinfo.value)
    assert list(tmp_path.iterdir()) == []


def test_plan_bundles_refuses_two_entries_for_one_file(tmp_path, pki):
    entry = _entry(dest=str(tmp_path / "www.pem"), fullchain_content=pki["www.example.test"],
                   privatekey_content=pki["www.example.test.key"])
    link = tmp_path / "link.pem"
    (tmp_path / "www.pem").write_text("old")
    link.symlink_to(tmp_path / "www.pem")
    with pytest.raises(module.BundlesError, match=r"bundles\[1\] \(dest %s\): it writes the same file as bundles\[0\]" % link):
        module.plan_bundles(_defaults(), [entry, dict(entry, dest=str(link))])


def test_plan_bundles_in_input_order(tmp_path, pki):
    entries = [_entry(dest=str(tmp_path / ("%s.pem" % name)), fullchain_content=pki[name],
                      privatekey_content=pki[name + ".key"], mode=mode)
               for name, mode in (("www.example.test", None), ("api.example.test", "0640"))]
    plans = module.plan_bundles(_defaults(mode="0600"), entries)
    assert [plan["summary"]["names"] for plan in plans] == [["www.example.test"], ["api.example.test"]]
    assert [plan["mode"] for plan in plans] == [0o600, 0o640]
    assert [plan["old"] for plan in plans] == [None, None]
    assert list(tmp_path.iterdir()) == []


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("follow", [False, True])
def test_symlink_dest_never_hands_the_key_to_the_target_owner(tmp_path, pki, follow):
    """dest is a link to a file of another user: the link is replaced by our own regular file (or, with
    follow, the target is written but gets our owner): that user cannot read the key either way."""
    target = tmp_path / "elsewhere.pem"
    target.write_text("not a bundle\n")
    os.chown(target, NOBODY, NOBODY)
    target.chmod(0o644)
    dest = tmp_path / "www.pem"
    dest.symlink_to(target)
    args = {"dest": str(dest), "certificate_content": pki["www.example.test"],
            "privatekey_content": pki["www.example.test.key"], "follow": follow}
    result = run_module("haproxy_cert_bundle", args, tmp_path)
    assert result["changed"] is True and "failed" not in result, result
    written = target if follow else dest
    assert not written.is_symlink()
    info = written.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), os.getegid(), 0o600)
    assert "BEGIN PRIVATE KEY" in written.read_text()
    if not follow:
        # The other user's file is left as it was.
        assert target.read_text() == "not a bundle\n" and target.stat().st_uid == NOBODY
    assert result["dest"] == str(written)
    # And the next run changes nothing.
    assert run_module("haproxy_cert_bundle", args, tmp_path)["changed"] is False
