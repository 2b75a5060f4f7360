# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Tests of the cert_changes event source on a real file system (pytest's tmp_path). Time is
# passed to CertificateWatcher.poll() explicitly, so debouncing is tested without sleeping;
# main() and the stand-alone command line are tested for real, with short settle times.

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.extensions.eda.plugins.event_source import cert_changes
from ansible_collections.ingress.haproxy.extensions.eda.plugins.event_source.cert_changes import (
    CertChangesError,
    CertificateWatcher,
    InvalidCertificate,
    WatchSettings,
    certificate_stem,
    group_certificates,
    validate_pem,
)

BACKENDS = [pytest.param(True, id="cryptography"), pytest.param(False, id="structural")]
SETTLE = 3.0


def make_certificate(common_name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[bytes, bytes]]:
    return {name: make_certificate(f"{name}.example.test") for name in ("one", "two", "three")}


def bundle(pair: tuple[bytes, bytes]) -> bytes:
    return pair[0] + pair[1]


def write_atomically(path, data: bytes) -> None:
    """What haproxy_cert_bundle, certbot and most tools do: a temporary file renamed over the name."""
    temporary = path.parent / f".{path.name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, path)


def watcher_for(*paths, **options) -> CertificateWatcher:
    settings = WatchSettings.from_args({"paths": [str(path) for path in paths], "settle": SETTLE, **options})
    watcher = CertificateWatcher(settings)
    watcher.start()
    return watcher


def settle_events(watcher: CertificateWatcher, start: float) -> list[dict]:
    """Poll at 0.5 s steps until nothing is pending; every event seen on the way."""
    events = []
    now = start
    for _step in range(40):
        event = watcher.poll(now)
        if event is not None:
            events.append(event)
        if not watcher.pending and now > start:
            break
        now += 0.5
    assert not watcher.pending, "the change never settled"
    return events


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("use_cryptography", BACKENDS)
def test_valid_bundle_passes(pairs, use_cryptography):
    validate_pem(bundle(pairs["one"]), use_cryptography=use_cryptography)
    # key first, certificate last: the blocks are found in any order; with CRLF line ends too
    validate_pem(pairs["one"][0] + pairs["one"][1].replace(b"\n", b"\r\n"), use_cryptography=use_cryptography)


@pytest.mark.parametrize("use_cryptography", BACKENDS)
def test_every_cut_of_a_bundle_is_refused(pairs, use_cryptography):
    """A file read while it is being written: every prefix that ends before the key's END line fails."""
    data = bundle(pairs["one"])
    complete_at = data.rindex(b"-----END PRIVATE KEY-----") + len(b"-----END PRIVATE KEY-----")
    for cut in range(0, complete_at, 3):
        with pytest.raises(InvalidCertificate):
            validate_pem(data[:cut], use_cryptography=use_cryptography)
    validate_pem(data[:complete_at], use_cryptography=use_cryptography)


@pytest.mark.parametrize("use_cryptography", BACKENDS)
@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda cert, key: cert, "no private key"),
        (lambda cert, key: key, "no certificate"),
        (lambda cert, key: cert + key + key, "2 private keys"),
        (lambda cert, key: b"", "no certificate"),
        (lambda cert, key: cert.replace(b"M", b"*", 1) + key, "not valid base64"),
        # drop one base64 line in the middle of the certificate: the DER length no longer fits
        (lambda cert, key: b"\n".join(cert.split(b"\n")[:3] + cert.split(b"\n")[4:]) + key, "truncated or corrupt DER"),
        (
            lambda cert, key: cert + key.replace(b"BEGIN PRIVATE KEY", b"BEGIN ENCRYPTED PRIVATE KEY").replace(
                b"END PRIVATE KEY", b"END ENCRYPTED PRIVATE KEY"
            ),
            "encrypted",
        ),
    ],
)
def test_invalid_content_names_the_reason(pairs, use_cryptography, mangle, reason):
    certificate, key = pairs["one"]
    with pytest.raises(InvalidCertificate, match=reason):
        validate_pem(mangle(certificate, key), use_cryptography=use_cryptography)


def test_key_of_another_certificate_is_refused_with_cryptography(pairs):
    mismatched = pairs["one"][0] + pairs["two"][1]
    with pytest.raises(InvalidCertificate, match="does not match the first certificate"):
        validate_pem(mismatched, use_cryptography=True)
    # The structural check cannot know: that is why the watcher logs which check it runs.
    validate_pem(mismatched, use_cryptography=False)


def test_garbage_in_a_block_is_refused_by_cryptography(pairs):
    """Well-framed DER that is no certificate: only a real parse notices."""
    fake = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"  # SEQUENCE { INTEGER 1 }
    validate_pem(fake + pairs["one"][1], use_cryptography=False)
    with pytest.raises(InvalidCertificate, match="certificate 1 does not parse"):
        validate_pem(fake + pairs["one"][1], use_cryptography=True)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "filename, stem",
    [
        ("site.pem", "site"),
        ("site.crt", "site"),
        ("site.key", "site"),
        ("site.pem.key", "site"),
        ("www.example.com.pem", "www.example.com"),
        ("tls.crt", "tls"),
        (".pem", ".pem"),
    ],
)
def test_certificate_stem(filename, stem):
    assert certificate_stem(filename) == stem


def test_grouping_by_layout(tmp_path):
    paths = [
        "/etc/letsencrypt/live/example.com/cert.pem",
        "/etc/letsencrypt/live/example.com/chain.pem",
        "/etc/letsencrypt/live/example.com/fullchain.pem",
        "/etc/letsencrypt/live/example.com/privkey.pem",
        "/run/secrets/web-tls/tls.crt",
        "/run/secrets/web-tls/tls.key",
        "/run/secrets/web-tls/ca.crt",
        "/etc/haproxy/certs/a.pem",
        "/etc/haproxy/certs/b.crt",
        "/etc/haproxy/certs/b.key",
        "/etc/haproxy/certs/c.pem",
        "/etc/haproxy/certs/c.pem.key",
    ]
    grouped = {certificate.name: certificate for certificate in group_certificates(paths).values()}
    assert sorted(grouped) == ["a", "b", "c", "example.com", "web-tls"]
    certbot = grouped["example.com"]
    assert certbot.layout == "certbot"
    assert certbot.certificate_files == ("/etc/letsencrypt/live/example.com/fullchain.pem",)
    assert certbot.key_files == ("/etc/letsencrypt/live/example.com/privkey.pem",)
    assert len(certbot.paths) == 4
    secret = grouped["web-tls"]
    assert (secret.layout, secret.certificate_files, secret.key_files) == (
        "tls_secret",
        ("/run/secrets/web-tls/tls.crt",),
        ("/run/secrets/web-tls/tls.key",),
    )
    assert secret.other_files == ("/run/secrets/web-tls/ca.crt",)
    assert grouped["a"].certificate_files == ("/etc/haproxy/certs/a.pem",) and grouped["a"].key_files == ()
    assert grouped["b"].certificate_files == ("/etc/haproxy/certs/b.crt",)
    assert grouped["b"].key_files == ("/etc/haproxy/certs/b.key",)
    assert grouped["c"].key_files == ("/etc/haproxy/certs/c.pem.key",)
    assert {certificate.layout for name, certificate in grouped.items() if name in "abc"} == {"files"}


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "args, message",
    [
        ({}, "'paths' must be a list"),
        ({"paths": []}, "at least one directory"),
        ({"paths": ["/x", 3]}, "'paths' must be a list of non-empty strings"),
        ({"paths": ["/x"], "settle": "soon"}, "'settle' must be a number"),
        ({"paths": ["/x"], "settle": -1}, "'settle' must be >= 0"),
        ({"paths": ["/x"], "poll_interval": 0}, "'poll_interval' must be > 0"),
        ({"paths": ["/x"], "recursive": "maybe"}, "'recursive' must be a boolean"),
        ({"paths": ["/x"], "patterns": "*.pem"}, "'patterns' must be a list"),
        ({"paths": ["/x"], "setle": 3}, "unknown argument"),
    ],
)
def test_bad_arguments_name_the_argument(args, message):
    with pytest.raises(CertChangesError, match=message):
        WatchSettings.from_args(args)


def test_arguments_defaults_and_alias(tmp_path):
    settings = WatchSettings.from_args({"path": str(tmp_path), "recursive": "yes", "eda_feedback_queue": object()})
    assert settings.paths == (str(tmp_path),)
    assert settings.recursive is True
    assert settings.settle == 3.0 and settings.poll_interval == 1.0 and settings.startup_event is False
    assert "*.pem" in settings.patterns and ".*" in settings.ignore_patterns


# --------------------------------------------------------------------------- watching


def test_new_file_gives_one_event_after_settle(tmp_path, pairs):
    watcher = watcher_for(tmp_path)
    (tmp_path / "site.pem").write_bytes(bundle(pairs["one"]))
    assert watcher.poll(100.0) is None  # change seen, not settled
    assert watcher.poll(100.0 + SETTLE - 0.1) is None
    event = watcher.poll(100.0 + SETTLE)
    assert event == {
        "cert_changes": {
            "reason": "change",
            "names": ["site"],
            "certificates": [
                {
                    "name": "site",
                    "layout": "files",
                    "directory": str(tmp_path),
                    "paths": [str(tmp_path / "site.pem")],
                    "change": "created",
                }
            ],
            "validation": "cryptography",
        }
    }
    assert watcher.poll(100.0 + 2 * SETTLE) is None  # reported once


def test_burst_of_writes_gives_one_event(tmp_path, pairs):
    target = tmp_path / "site.pem"
    target.write_bytes(bundle(pairs["one"]))
    watcher = watcher_for(tmp_path)
    events = []
    now = 0.0
    for index in range(20):  # 20 atomic rewrites, polled every 0.25 s: never settles in between
        write_atomically(target, bundle(pairs["two" if index % 2 else "three"]))
        events.append(watcher.poll(now))
        now += 0.25
    assert events == [None] * 20
    events = settle_events(watcher, now)
    assert len(events) == 1
    assert events[0]["cert_changes"]["names"] == ["site"]
    assert events[0]["cert_changes"]["certificates"][0]["change"] == "modified"


def test_atomic_rename_is_a_change_and_temporary_files_are_skipped(tmp_path, pairs):
    target = tmp_path / "site.pem"
    target.write_bytes(bundle(pairs["one"]))
    watcher = watcher_for(tmp_path)
    for temporary_name in (".site.pem.new", "site.pem.tmp", "site.pem~", "site.pem.swp"):
        (tmp_path / temporary_name).write_bytes(bundle(pairs["two"]))
    assert settle_events(watcher, 0.0) == []  # none of them is a certificate file
    os.replace(tmp_path / ".site.pem.new", target)
    (events,) = [settle_events(watcher, 10.0)]
    assert [event["cert_changes"]["names"] for event in events] == [["site"]]


def test_unchanged_content_gives_no_event(tmp_path, pairs):
    target = tmp_path / "site.pem"
    target.write_bytes(bundle(pairs["one"]))
    watcher = watcher_for(tmp_path)
    os.utime(target, ns=(0, 0))
    assert settle_events(watcher, 0.0) == []
    write_atomically(target, bundle(pairs["one"]))  # new inode, same bytes
    assert settle_events(watcher, 10.0) == []


def test_half_written_file_gives_no_event_and_a_reason_until_complete(tmp_path, pairs, caplog):
    caplog.set_level(logging.INFO, logger="ingress.haproxy.cert_changes")
    target = tmp_path / "site.pem"
    data = bundle(pairs["one"])
    watcher = watcher_for(tmp_path)
    target.write_bytes(data[: len(data) - 60])  # the writer stalls longer than the settle time
    assert settle_events(watcher, 0.0) == []
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(target) in warnings[0] and "without a matching END line" in warnings[0]
    with open(target, "ab") as handle:  # the writer finishes
        handle.write(data[len(data) - 60:])
    events = settle_events(watcher, 10.0)
    assert [event["cert_changes"]["certificates"][0]["change"] for event in events] == ["created"]


def test_invalid_certificate_among_valid_ones(tmp_path, pairs, caplog):
    watcher = watcher_for(tmp_path)
    (tmp_path / "good.pem").write_bytes(bundle(pairs["one"]))
    (tmp_path / "wrongkey.pem").write_bytes(pairs["one"][0] + pairs["two"][1])
    (tmp_path / "onlycert.crt").write_bytes(pairs["three"][0])
    events = settle_events(watcher, 0.0)
    assert [event["cert_changes"]["names"] for event in events] == [["good"]]
    messages = " | ".join(record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)
    assert "wrongkey" in messages and "does not match" in messages
    assert "onlycert" in messages and "no private key" in messages


def test_pair_files_are_one_certificate(tmp_path, pairs):
    watcher = watcher_for(tmp_path)
    (tmp_path / "site.crt").write_bytes(pairs["one"][0])
    (tmp_path / "site.key").write_bytes(pairs["one"][1])
    (events,) = [settle_events(watcher, 0.0)]
    assert len(events) == 1
    (entry,) = events[0]["cert_changes"]["certificates"]
    assert entry["name"] == "site"
    assert entry["paths"] == [str(tmp_path / "site.crt"), str(tmp_path / "site.key")]
    # a new key alone, not matching the certificate: no event until the certificate follows
    (tmp_path / "site.key").write_bytes(pairs["two"][1])
    assert settle_events(watcher, 10.0) == []
    (tmp_path / "site.crt").write_bytes(pairs["two"][0])
    assert [event["cert_changes"]["names"] for event in settle_events(watcher, 20.0)] == [["site"]]


def test_kubernetes_secret_symlink_swap(tmp_path, pairs):
    """The kubelet writes a new ..TIMESTAMP directory, then renames a ..data symlink over the old one."""
    mount = tmp_path / "web-tls"
    mount.mkdir()

    def publish(version: str, pair: tuple[bytes, bytes]) -> None:
        (mount / version).mkdir()
        (mount / version / "tls.crt").write_bytes(pair[0])
        (mount / version / "tls.key").write_bytes(pair[1])
        os.symlink(version, mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")

    publish("..2026_11_27_10_00_00.000000001", pairs["one"])
    for name in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{name}", mount / name)
    watcher = watcher_for(mount)
    publish("..2026_11_27_11_00_00.000000002", pairs["two"])
    events = settle_events(watcher, 0.0)
    assert len(events) == 1
    (entry,) = events[0]["cert_changes"]["certificates"]
    assert (entry["name"], entry["layout"], entry["change"]) == ("web-tls", "tls_secret", "modified")
    assert entry["paths"] == [str(mount / "tls.crt"), str(mount / "tls.key")]  # the visible names


def test_certbot_renewal(tmp_path, pairs):
    """certbot writes archive/NAME/*2.pem, then re-points the live/NAME/*.pem symlinks."""
    config = tmp_path / "letsencrypt"
    live, archive = config / "live" / "example.com", config / "archive" / "example.com"
    live.mkdir(parents=True)
    archive.mkdir(parents=True)
    (config / "renewal").mkdir()

    def issue(number: int, pair: tuple[bytes, bytes]) -> None:
        files = {"cert": pair[0], "chain": b"", "fullchain": pair[0], "privkey": pair[1]}
        for kind, data in files.items():
            (archive / f"{kind}{number}.pem").write_bytes(data)
        for kind in files:
            link = live / f"{kind}.pem"
            os.symlink(f"../../archive/example.com/{kind}{number}.pem", live / f".{kind}.pem.new")
            os.replace(live / f".{kind}.pem.new", link)

    issue(1, pairs["one"])
    watcher = watcher_for(config, recursive=True)
    assert [record.certificate.name for record in watcher._records.values()] == ["example.com"]
    issue(2, pairs["two"])
    events = settle_events(watcher, 0.0)
    assert len(events) == 1
    (entry,) = events[0]["cert_changes"]["certificates"]
    assert (entry["name"], entry["layout"], entry["directory"]) == ("example.com", "certbot", str(live))


def test_startup_event_lists_valid_certificates(tmp_path, pairs):
    (tmp_path / "a.pem").write_bytes(bundle(pairs["one"]))
    (tmp_path / "b.pem").write_bytes(bundle(pairs["two"]))
    (tmp_path / "broken.pem").write_bytes(pairs["three"][0])
    settings = WatchSettings.from_args({"paths": [str(tmp_path)], "startup_event": True})
    event = CertificateWatcher(settings, use_cryptography=False).start()
    assert event["cert_changes"]["reason"] == "startup"
    assert event["cert_changes"]["names"] == ["a", "b"]
    assert event["cert_changes"]["validation"] == "structural"
    assert {entry["change"] for entry in event["cert_changes"]["certificates"]} == {"present"}


def test_directory_that_appears_later(tmp_path, pairs, caplog):
    later = tmp_path / "later"
    watcher = watcher_for(later)
    assert any("not a directory (yet)" in record.getMessage() for record in caplog.records)
    later.mkdir()
    (later / "site.pem").write_bytes(bundle(pairs["one"]))
    assert [event["cert_changes"]["names"] for event in settle_events(watcher, 0.0)] == [["site"]]


def test_removed_certificate_is_logged_not_reported(tmp_path, pairs, caplog):
    caplog.set_level(logging.INFO, logger="ingress.haproxy.cert_changes")
    (tmp_path / "site.pem").write_bytes(bundle(pairs["one"]))
    watcher = watcher_for(tmp_path)
    (tmp_path / "site.pem").unlink()
    assert settle_events(watcher, 0.0) == []
    assert any("site" in record.getMessage() and "removed" in record.getMessage() for record in caplog.records)


# --------------------------------------------------------------------------- entry points


def test_main_puts_events_on_the_queue(tmp_path, pairs):
    async def scenario() -> dict:
        queue: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(
            cert_changes.main(queue, {"paths": [str(tmp_path)], "settle": 0.3, "poll_interval": 0.1})
        )
        try:
            await asyncio.sleep(0.3)
            write_atomically(tmp_path / "site.pem", bundle(pairs["one"]))
            event = await asyncio.wait_for(queue.get(), timeout=10)
            await asyncio.sleep(1.0)
            assert queue.empty(), "one change, one event"
            return event
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    event = asyncio.run(scenario())
    assert event["cert_changes"]["names"] == ["site"]


def test_main_refuses_bad_arguments():
    with pytest.raises(CertChangesError, match="'settle'"):
        asyncio.run(cert_changes.main(asyncio.Queue(), {"paths": ["/x"], "settle": "x"}))


def test_stand_alone_command_prints_events(tmp_path, pairs):
    (tmp_path / "site.pem").write_bytes(bundle(pairs["one"]))
    command = [sys.executable, cert_changes.__file__, "--path", str(tmp_path), "--startup-event", "--settle", "0.2", "-v"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            line = process.stdout.readline()
        finally:
            process.kill()
        stderr = process.stderr.read().decode()
    assert json.loads(line)["cert_changes"]["names"] == ["site"]
    assert "validating certificates with cryptography" in stderr


def test_stand_alone_command_reports_bad_arguments(tmp_path):
    result = subprocess.run(
        [sys.executable, cert_changes.__file__, "--path", str(tmp_path), "--poll-interval", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "'poll_interval' must be > 0" in result.stderr


# --------------------------------------------------------------------------- hostile file systems (issue 15)
#
# Permissions do not stop root, and these tests run as root: the cases about permissions run in a
# forked child that has become the unprivileged user nobody, on a directory of its own.

NOBODY = 65534


def as_nobody(scenario, directory) -> dict:
    """Run scenario(directory) -> JSON-able result in a child process as nobody; its result, or its error."""
    os.chown(directory, NOBODY, NOBODY)
    os.chmod(directory, 0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = {"result": scenario(directory)}
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            result = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write_end, "w") as handle:
            json.dump(result, handle)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as handle:
        output = handle.read()
    os.waitpid(pid, 0)
    outcome = json.loads(output)
    assert "error" not in outcome, outcome["error"]
    return outcome["result"]


class LogLines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines():
    handler = LogLines()
    logger = logging.getLogger("ingress.haproxy.cert_changes")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.fixture
def nobody_dir(tmp_path_factory):
    import tempfile  # pylint: disable=import-outside-toplevel

    directory = tempfile.mkdtemp(prefix="cert-changes-nobody-", dir="/tmp")
    yield directory
    subprocess.run(["chmod", "-R", "u+rwx", directory], check=False)
    subprocess.run(["rm", "-rf", directory], check=False)


def names_of(events: list[dict]) -> list[list[str]]:
    return [event["cert_changes"]["names"] for event in events]


def test_symlink_loop_is_logged_once_and_the_rest_is_watched(tmp_path, pairs, log_lines):
    os.symlink("loop.pem", tmp_path / "loop.pem")
    watcher = watcher_for(tmp_path)
    for step in range(5):
        assert watcher.poll(float(step)) is None
    loop_lines = [line for line in log_lines if str(tmp_path / "loop.pem") in line]
    assert len(loop_lines) == 1, log_lines
    assert "Too many levels of symbolic links" in loop_lines[0]
    write_atomically(tmp_path / "site.pem", bundle(pairs["one"]))
    assert names_of(settle_events(watcher, 10.0)) == [["site"]]


def test_fifo_is_never_opened_and_the_rest_is_watched(tmp_path, pairs, log_lines):
    import threading  # pylint: disable=import-outside-toplevel

    os.mkfifo(tmp_path / "fifo.pem")
    settings = WatchSettings.from_args({"paths": [str(tmp_path)], "settle": SETTLE, "startup_event": True})
    watcher = CertificateWatcher(settings)
    # start() reads every certificate: an open() of the FIFO would block it for good
    starting = threading.Thread(target=watcher.start, daemon=True)
    starting.start()
    starting.join(timeout=10)
    if starting.is_alive():
        os.close(os.open(tmp_path / "fifo.pem", os.O_WRONLY | os.O_NONBLOCK))  # release the blocked reader
        pytest.fail("the watcher blocked on the FIFO")
    write_atomically(tmp_path / "site.pem", bundle(pairs["one"]))
    assert names_of(settle_events(watcher, 0.0)) == [["site"]]
    fifo_lines = [line for line in log_lines if "fifo.pem" in line]
    assert len(fifo_lines) == 1 and "is a fifo, not a regular file; skipped" in fifo_lines[0], log_lines


def test_a_fifo_swapped_in_after_the_snapshot_is_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "fifo.pem")
    with pytest.raises(OSError, match="not a regular file"):
        cert_changes.read_regular_file(str(tmp_path / "fifo.pem"))


def test_socket_is_skipped(tmp_path, pairs, log_lines):
    import socket  # pylint: disable=import-outside-toplevel

    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.pem"))
        watcher = watcher_for(tmp_path)
        write_atomically(tmp_path / "site.pem", bundle(pairs["one"]))
        assert names_of(settle_events(watcher, 0.0)) == [["site"]]
    assert any("sock.pem" in line and "is a socket" in line for line in log_lines)


def _unsearchable_subdirectory(directory):
    """As nobody: a subdirectory without execute permission in a watched tree, then a real change next to it."""
    root = os.path.join(directory, "live")
    locked = os.path.join(root, "locked")
    os.makedirs(os.path.join(locked, "inner"))
    os.chmod(locked, 0o600)  # listable names, but no search: is_dir() and stat() of entries fail
    handler = LogLines()
    logging.getLogger("ingress.haproxy.cert_changes").addHandler(handler)
    pair = make_certificate("site.example.test")
    watcher = CertificateWatcher(WatchSettings.from_args({"paths": [root], "recursive": True, "settle": SETTLE}))
    watcher.start()
    for step in range(4):
        watcher.poll(float(step))
    os.makedirs(os.path.join(root, "site"))
    with open(os.path.join(root, "site", "fullchain.pem"), "wb") as handle:
        handle.write(pair[0])
    with open(os.path.join(root, "site", "privkey.pem"), "wb") as handle:
        handle.write(pair[1])
    events = settle_events(watcher, 10.0)
    return {"names": names_of(events), "logs": handler.lines}


def test_subdirectory_without_permission_is_logged_once_and_the_rest_is_watched(nobody_dir):
    outcome = as_nobody(_unsearchable_subdirectory, nobody_dir)
    assert outcome["names"] == [["site"]]
    locked = [line for line in outcome["logs"] if "locked" in line]
    assert len(locked) == 1 and "Permission denied" in locked[0], outcome["logs"]


def _unreadable_then_readable(directory):
    """As nobody: new content, chmod 000 before it was read, chmod 644: the new content is reported."""
    path = os.path.join(directory, "site.pem")
    first, second = make_certificate("one.example.test"), make_certificate("two.example.test")
    with open(path, "wb") as handle:
        handle.write(first[0] + first[1])
    handler = LogLines()
    logging.getLogger("ingress.haproxy.cert_changes").addHandler(handler)
    watcher = CertificateWatcher(WatchSettings.from_args({"paths": [directory], "settle": SETTLE}))
    watcher.start()
    with open(path, "wb") as handle:
        handle.write(second[0] + second[1])
    os.chmod(path, 0o000)
    while_unreadable = names_of(settle_events(watcher, 0.0))
    os.chmod(path, 0o644)  # size, mtime and inode stay the same
    after = settle_events(watcher, 100.0)
    # the same dance without a change of content: nothing to report
    os.chmod(path, 0o000)
    settle_events(watcher, 200.0)
    os.chmod(path, 0o644)
    unchanged = names_of(settle_events(watcher, 300.0))
    return {
        "while_unreadable": while_unreadable,
        "after": names_of(after),
        "change": [entry["change"] for event in after for entry in event["cert_changes"]["certificates"]],
        "unchanged": unchanged,
        "logs": handler.lines,
    }


def test_file_that_becomes_readable_again_is_read_and_reported(nobody_dir):
    outcome = as_nobody(_unreadable_then_readable, nobody_dir)
    assert outcome["while_unreadable"] == []
    assert outcome["after"] == [["site"]]
    assert outcome["change"] == ["modified"]
    assert outcome["unchanged"] == []
    assert any("Permission denied" in line and "no event" in line for line in outcome["logs"]), outcome["logs"]


def test_watched_directory_that_disappears_and_returns(tmp_path, pairs, log_lines):
    root = tmp_path / "certs"
    root.mkdir()
    (root / "site.pem").write_bytes(bundle(pairs["one"]))
    watcher = watcher_for(root)
    os.rename(root, tmp_path / "away")
    assert settle_events(watcher, 0.0) == []
    assert any("not a directory (yet); watching for it" in line for line in log_lines)
    os.rename(tmp_path / "away", root)  # back with the same content: nothing to push
    assert settle_events(watcher, 100.0) == []
    write_atomically(root / "site.pem", bundle(pairs["two"]))
    assert names_of(settle_events(watcher, 200.0)) == [["site"]]
    os.rename(root, tmp_path / "away")
    settle_events(watcher, 300.0)
    (tmp_path / "away" / "site.pem").write_bytes(bundle(pairs["three"]))
    os.rename(tmp_path / "away", root)  # back with new content: pushed
    assert names_of(settle_events(watcher, 400.0)) == [["site"]]


def test_main_survives_a_failing_poll(tmp_path, pairs, monkeypatch, log_lines):
    """Whatever goes wrong in one poll is logged once and the next polls go on."""
    original = CertificateWatcher.poll
    failures = {"left": 3}

    def flaky(self, now):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("disk on fire")
        return original(self, now)

    monkeypatch.setattr(CertificateWatcher, "poll", flaky)

    async def scenario() -> dict:
        queue: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(cert_changes.main(queue, {"paths": [str(tmp_path)], "settle": 0.3, "poll_interval": 0.1}))
        try:
            await asyncio.sleep(0.5)
            write_atomically(tmp_path / "site.pem", bundle(pairs["one"]))
            return await asyncio.wait_for(queue.get(), timeout=10)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    assert asyncio.run(scenario())["cert_changes"]["names"] == ["site"]
    assert len([line for line in log_lines if line.startswith("polling failed")]) == 1


# --------------------------------------------------------------------------- certificates_items names (issue 15)


def test_events_name_the_items_by_their_source_path(tmp_path, pairs, log_lines):
    live = tmp_path / "letsencrypt" / "live"
    secrets = tmp_path / "secrets"
    bundles = tmp_path / "store" / "bundles"
    for directory in (live / "www.example.com", live / "orphan.example.com", secrets / "api", bundles, tmp_path / "own"):
        directory.mkdir(parents=True)
    items = [
        {"name": "www", "domains": ["www.example.com"], "certbot_live": str(live / "www.example.com")},
        {"name": "api", "haproxy_path": "/etc/haproxy/certs/api.pem"},  # certificates_tls_secret_dir/api
        {"name": "files", "fullchain": str(tmp_path / "own" / "full.pem"), "privatekey": str(tmp_path / "own" / "full.key")},
        {"name": "bundled"},  # its bundle in certificates_bundle_dir (store_dir/bundles)
    ]
    watcher = watcher_for(
        live, secrets, bundles, tmp_path / "own", recursive=True, items=items,
        tls_secret_dir=str(secrets), store_dir=str(tmp_path / "store"), certbot_live_dir=str(live),
    )
    for directory in (live / "www.example.com", live / "orphan.example.com"):
        (directory / "fullchain.pem").write_bytes(pairs["one"][0])
        (directory / "privkey.pem").write_bytes(pairs["one"][1])
    (secrets / "api" / "tls.crt").write_bytes(pairs["two"][0])
    (secrets / "api" / "tls.key").write_bytes(pairs["two"][1])
    (tmp_path / "own" / "full.pem").write_bytes(pairs["three"][0])
    (tmp_path / "own" / "full.key").write_bytes(pairs["three"][1])
    (bundles / "bundled.pem").write_bytes(bundle(pairs["one"]))
    (events,) = settle_events(watcher, 0.0)
    assert events["cert_changes"]["names"] == ["api", "bundled", "files", "www"]
    by_name = {entry["name"]: entry["items"] for entry in events["cert_changes"]["certificates"]}
    assert by_name == {"www.example.com": ["www"], "api": ["api"], "full": ["files"], "bundled": ["bundled"]}
    assert any("orphan.example.com" in line and "source of no entry of certificates_items" in line for line in log_lines)


def test_only_unknown_sources_give_no_event(tmp_path, pairs):
    watcher = watcher_for(tmp_path, items=[{"name": "www", "certbot_live": "/etc/letsencrypt/live/www"}])
    write_atomically(tmp_path / "site.pem", bundle(pairs["one"]))
    assert settle_events(watcher, 0.0) == []


@pytest.mark.parametrize(
    "args, message",
    [
        ({"items": "www"}, "'items' must be a list"),
        ({"items": [{"domains": ["a"]}]}, r"'items\[0\]' must be a dict with a 'name'"),
        ({"items": [{"name": "www", "certbot_live": ["x"]}]}, r"'items\[0\].certbot_live' \(www\) must be a path"),
        ({"store_dir": 3}, "'store_dir' must be a directory"),
        ({"check_inventory": "maybe"}, "'check_inventory' must be a boolean"),
    ],
)
def test_bad_item_arguments_name_the_argument(args, message):
    with pytest.raises(CertChangesError, match=message):
        WatchSettings.from_args({"paths": ["/x"], **args})


# --------------------------------------------------------------------------- inventory beside group_vars (issue 15)


def test_inventory_file_with_group_vars_beside_it_is_refused(tmp_path):
    (tmp_path / "hosts.ini").write_text("localhost\n")
    assert cert_changes.inventory_problem(["--rulebook", "x", "-i", str(tmp_path / "hosts.ini")]) is None
    (tmp_path / "group_vars").mkdir()
    for argv in (["-i", str(tmp_path / "hosts.ini")], [f"--inventory={tmp_path / 'hosts.ini'}"], [f"-i{tmp_path / 'hosts.ini'}"]):
        problem = cert_changes.inventory_problem(argv)
        assert problem is not None and "group_vars/" in problem and f"--inventory {tmp_path}" in problem
    assert cert_changes.inventory_problem(["--inventory", str(tmp_path)]) is None  # the directory is fine


def test_main_refuses_an_inventory_file_with_group_vars_beside_it(tmp_path, monkeypatch):
    (tmp_path / "hosts.ini").write_text("localhost\n")
    (tmp_path / "group_vars").mkdir()
    monkeypatch.setattr(sys, "argv", ["/opt/eda/bin/ansible-rulebook", "--inventory", str(tmp_path / "hosts.ini")])
    with pytest.raises(CertChangesError, match="pass a directory|Pass a directory"):
        asyncio.run(cert_changes.main(asyncio.Queue(), {"paths": [str(tmp_path)]}))

    async def start_and_stop():  # turned off, it starts (and is cancelled here at once)
        task = asyncio.create_task(cert_changes.main(asyncio.Queue(), {"paths": [str(tmp_path)], "check_inventory": False}))
        await asyncio.sleep(0.2)
        assert not task.done()
        task.cancel()

    asyncio.run(start_and_stop())


# --------------------------------------------------------------------------- documentation (issue 12)


def test_documentation_blocks_are_valid_yaml():
    import yaml  # pylint: disable=import-outside-toplevel

    documentation = yaml.safe_load(cert_changes.DOCUMENTATION)
    assert documentation["name"] == "cert_changes"
    assert all(isinstance(line, str) for line in documentation["description"])
    assert {"paths", "items", "check_inventory"} <= set(documentation["options"])
    assert yaml.safe_load(cert_changes.RETURN)["cert_changes"]["contains"]["names"]
    assert len(yaml.safe_load(cert_changes.EXAMPLES)) == 2
    # every argument from_args knows is documented (path is the documented alias of paths)
    source = open(cert_changes.__file__, encoding="utf-8").read()
    known = source.split("known = {", 1)[1].split("}", 1)[0]
    arguments = {word.strip().strip('"') for word in known.replace("\n", " ").split(",") if word.strip()}
    assert arguments - {"path"} == set(documentation["options"])
