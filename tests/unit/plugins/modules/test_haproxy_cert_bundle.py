# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The file handling of haproxy_cert_bundle: mode parsing, atomic writes, backups."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.ingress.haproxy.plugins.modules import haproxy_cert_bundle as module
from ansible_collections.ingress.haproxy.plugins.modules.haproxy_cert_bundle import DestinationError


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
    assert module.resolve_dest(str(link)) == str(target)
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
