# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The convergence logic: local validation, and the real HAProxy of the lab for the rest.

The playbook-level cases live in the haproxy_ssl_cert integration target; here
are the ones a playbook cannot stage: a transaction another client opens
between our look at the open transaction and our set (Debian's 2.6.12 then answers our set by
updating that other transaction), and the exact commands a rerun sends.
"""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_converge import (
    ConvergeError,
    Converger,
    converge_endpoint,
    describe_paths,
    diff_of,
    items_from_params,
    prepare_requests,
)
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_status import (
    parse_cert_detail,
    parse_cert_list,
)
from ansible_collections.ingress.haproxy.tests.unit.plugins.recording_proxy import RecordingProxy

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


class Pki:
    """A root and an intermediate; leaves signed by the intermediate."""

    def __init__(self):
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._sign("converge root", self.root_key.public_key(), "converge root", self.root_key, ca=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self._sign("converge intermediate", self.key.public_key(), "converge root",
                                       self.root_key, ca=True)

    @staticmethod
    def _sign(subject, public_key, issuer, signing_key, ca=False, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                            critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    def bundle(self, name, extra_names=0, key=None):
        key = key or ec.generate_private_key(ec.SECP256R1())
        names = [name] + ["h%04d.%s" % (index, name) for index in range(extra_names)]
        leaf = self._sign(name, key.public_key(), "converge intermediate", self.key, names=names)
        text = "".join(item.public_bytes(serialization.Encoding.PEM).decode() for item in (leaf, self.intermediate))
        text += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
        return leaf, text


@pytest.fixture(scope="module")
def pki():
    return Pki()


# -- local validation ------------------------------------------------------

def _items(**item):
    item.setdefault("path", "/etc/haproxy/certs/a.pem")
    return [item]


@pytest.mark.parametrize("items, words", [
    (_items(content="x", src="/x"), "give src or content, not both"),
    (_items(), "src or content is required"),
    (_items(state="absent", src="/x"), "state absent takes no src or content"),
    (_items(content="   \n"), "the content is empty"),
    (_items(path="/with space.pem", content="x"), "path '/with space.pem' holds ' '"),
    (_items(content="x", crt_list_options="[alpn h2]"), "without the surrounding [ ]"),
    (_items(content="x", sni_filters=["a b"]), "SNI filter 'a b'"),
    (_items(content="not pem"), "holds no PEM certificate"),
    (_items(src="/nonexistent/x.pem"), "/nonexistent/x.pem does not exist"),
    (_items(content="x") + _items(content="x"), "listed twice"),
])
def test_prepare_refuses(items, words):
    with pytest.raises(ConvergeError) as info:
        prepare_requests(items, "127.0.0.1:9999")
    message = str(info.value)
    assert words in message and "127.0.0.1:9999" in message and message.endswith("nothing was sent")


def test_prepare_sizes_the_set_commands(pki):
    dummy_leaf, small = pki.bundle("small.test")
    # Whole bundle over the buffer, certificates alone under it: chain as NAME, key as NAME.key.
    dummy_leaf, split = pki.bundle("split.test", extra_names=500, key=rsa.generate_private_key(65537, 4096))
    dummy_leaf, huge = pki.bundle("huge.test", extra_names=900)
    requests = prepare_requests([{"path": "/c/small.pem", "content": small},
                                 {"path": "/c/split.pem", "content": split}], "e", process="@1")
    assert [target for target, dummy_payload in requests[0].payloads] == ["/c/small.pem"]
    assert [target for target, dummy_payload in requests[1].payloads] == ["/c/split.pem", "/c/split.pem.key"]
    assert all(api.command_bytes("set ssl cert " + target, payload, "@1") <= api.DEFAULT_BUFSIZE - api.BUFSIZE_MARGIN
               for target, payload in requests[1].payloads)
    assert "PRIVATE KEY" not in requests[1].payloads[0][1] and "PRIVATE KEY" in requests[1].payloads[1][1]
    with pytest.raises(ConvergeError) as info:
        prepare_requests([{"path": "/c/huge.pem", "content": huge}], "e")
    assert "tune.bufsize 16384" in str(info.value)
    # With a larger buffer the same bundle goes in one command.
    assert len(prepare_requests([{"path": "/c/huge.pem", "content": huge}], "e", bufsize=65536)[0].payloads) == 1


def test_items_from_params_defaults():
    entries = [{"path": "/a", "src": "/s"}, {"path": "/b", "state": "absent", "crt_list": "/other"}]
    params = {"path": None, "certificates": entries, "state": "present", "crt_list": "/list",
              "crt_list_options": "alpn h2"}
    items = items_from_params(params)
    assert [(item["path"], item["state"], item["crt_list"], item["crt_list_options"]) for item in items] == [
        ("/a", "present", "/list", "alpn h2"), ("/b", "absent", "/other", "alpn h2")]


def test_describe_paths_and_diff():
    assert describe_paths(["/a"]) == "certificate /a"
    assert describe_paths(["/%d" % n for n in range(7)]) == "certificates /0, /1, /2, /3, /4 (and 2 more)"
    diff = diff_of([{"path": "/a", "changed": True, "before": None, "after": {"serial": "01"}},
                    {"path": "/b", "changed": False, "before": {}, "after": {}}])
    assert diff == {"before": {"/a": "absent"}, "after": {"/a": {"serial": "01"}}}


# -- the real HAProxy --------------------------------------------------------

@pytest.fixture
def lab(start_lab):
    return start_lab(preload=4)["instances"][0]


def _path(instance, number):
    return os.path.join(instance["cert_dir"], "preload-%04d.pem" % number)


class Recording:
    """Wraps a real session's execute and execute_batch to list the commands it sends (not the payloads).

    ``writes`` lists the commands of each write (one per execute, one per
    pipelined batch, however the batch is cut into writes).
    """

    def __init__(self, session):
        self.commands = []
        self.writes = []
        original, original_batch = session.execute, session.execute_batch

        def execute(command, payload=None):
            self.commands.append(command)
            self.writes.append([command])
            return original(command, payload)

        def execute_batch(commands, max_bytes=None):
            lines = [item if isinstance(item, str) else item[0] for item in commands]
            self.commands.extend(lines)
            self.writes.append(lines)
            return original_batch(commands, max_bytes=max_bytes)

        session.execute = execute
        session.execute_batch = execute_batch


def _transaction(instance):
    with api.RuntimeSession(instance["runtime_unix"], timeout=5) as session:
        return parse_cert_list(session.show_ssl_cert_list()).transaction


def test_rerun_sends_no_set(lab, pki):
    leaf, text = pki.bundle("rerun.test")
    requests = prepare_requests([{"path": _path(lab, 1), "content": text}], lab["runtime_tcp"])
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        recording = Recording(session)
        first = Converger(session).run(requests)
        second = Converger(session).run(requests)
    fingerprint = leaf.fingerprint(hashes.SHA1()).hex().upper()
    assert first[0]["action"] == "updated" and first[0]["after"]["fingerprint"] == fingerprint
    assert second[0]["action"] == "unchanged"
    path = _path(lab, 1)
    probe = "abort ssl cert " + api.TRANSACTION_PROBE
    # Never the full `show ssl cert` listing: the paths are known.
    assert recording.commands == [
        probe, "show ssl cert " + path, "set ssl cert " + path, "commit ssl cert " + path,
        "show ssl cert " + path,
        probe, "show ssl cert " + path,
    ]


def test_conflict_seen_in_the_set_reply(lab, pki):
    """Another client opens a transaction after we looked: the set reply tells.

    Debian's 2.6.12 puts our payload into the other client's transaction: it is
    aborted at once (so that client's commit fails instead of serving our
    certificate under its name) and ours is sent again. 3.x refuses the set:
    the other transaction is left alone, and we fail once ``wait`` runs out.
    """
    leaf, ours = pki.bundle("ours.test")
    dummy_leaf, theirs = pki.bundle("theirs.test")
    mine, other = _path(lab, 2), _path(lab, 3)
    requests = prepare_requests([{"path": mine, "content": ours}], lab["runtime_tcp"])
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        before = parse_cert_detail(session.show_ssl_cert(mine))
        stale = session.open_transaction()
        with api.RuntimeSession(lab["runtime_unix"], timeout=5) as other_client:
            other_client.set_ssl_cert(other, theirs)
        try:
            # The converger sees the open transaction as it was before the other client's set.
            session.open_transaction = lambda: stale
            converger = Converger(session, wait=0.5)
            try:
                results = converger.run(requests)
            except ConvergeError as exc:
                error = exc
            else:
                error = None
            pending = _transaction(lab)
            after = parse_cert_detail(session.show_ssl_cert(mine))
        finally:
            with api.RuntimeSession(lab["runtime_unix"], timeout=5) as cleanup:
                cleanup.abort_ssl_cert(other)
    if error is None:
        # 2.6.12: our payload went into their transaction; it was aborted, ours was sent again and committed.
        warnings = converger.warnings
        assert len(warnings) == 1 and "into the open transaction on %s" % other in warnings[0]
        assert "that transaction was aborted" in warnings[0]
        assert pending is None
        assert after.fingerprint == leaf.fingerprint(hashes.SHA1()).hex().upper()
        assert results[0]["retries"] == 1
    else:
        # 3.x: refused; their transaction stays theirs, ours is unchanged, the message says why.
        message = str(error)
        assert mine in message and lab["runtime_tcp"] in message and "on %s, is open" % other in message
        assert "nothing of ours was committed" in message
        assert pending == other
        assert after.fingerprint == before.fingerprint


def test_conflict_in_the_set_reply_with_abort_pending(lab, pki):
    leaf, ours = pki.bundle("ours2.test")
    dummy_leaf, theirs = pki.bundle("theirs2.test")
    mine, other = _path(lab, 2), _path(lab, 3)
    requests = prepare_requests([{"path": mine, "content": ours}], lab["runtime_tcp"])
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        stale = session.open_transaction()
        with api.RuntimeSession(lab["runtime_unix"], timeout=5) as other_client:
            other_client.set_ssl_cert(other, theirs)
        session.open_transaction = lambda: stale
        converger = Converger(session, abort_pending=True, wait=0.5)
        results = converger.run(requests)
    assert results[0]["after"]["fingerprint"] == leaf.fingerprint(hashes.SHA1()).hex().upper()
    # 2.6.12 put our payload into their transaction (aborted for that reason), 3.x refused (aborted: abort_pending).
    assert len(converger.warnings) == 1 and "transaction on %s" % other in converger.warnings[0]
    assert "aborted" in converger.warnings[0] and results[0]["retries"] == 1
    assert _transaction(lab) is None


def test_leftover_on_our_certificate_is_replaced_first(lab, pki):
    """A transaction left on one of our certificates is handled first, so the others do not run into it."""
    dummy_leaf, first = pki.bundle("first.test")
    leaf, second = pki.bundle("second.test")
    dummy_leaf, stale = pki.bundle("stale.test")
    one, two = _path(lab, 1), _path(lab, 4)
    with api.RuntimeSession(lab["runtime_unix"], timeout=5) as crashed_run:
        crashed_run.set_ssl_cert(two, stale)
    requests = prepare_requests([{"path": one, "content": first}, {"path": two, "content": second}],
                                lab["runtime_tcp"])
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        recording = Recording(session)
        results = Converger(session, wait=0.5).run(requests)
    assert [result["path"] for result in results] == [one, two]
    assert results[1].get("replaced_transaction") is True
    assert results[1]["after"]["fingerprint"] == leaf.fingerprint(hashes.SHA1()).hex().upper()
    sets = [command for command in recording.commands if command.startswith("set ")]
    assert sets == ["set ssl cert " + two, "set ssl cert " + one]
    assert _transaction(lab) is None


def test_new_certificate_into_a_missing_crt_list_changes_nothing(lab, pki):
    dummy_leaf, text = pki.bundle("orphan.test")
    path = os.path.join(lab["cert_dir"], "orphan.pem")
    requests = prepare_requests([{"path": path, "content": text, "crt_list": "/nonexistent/list"}],
                                lab["runtime_tcp"])
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        recording = Recording(session)
        with pytest.raises(ConvergeError) as info:
            Converger(session).run(requests)
        assert path not in parse_cert_list(session.show_ssl_cert_list())
    assert "crt-list /nonexistent/list is not loaded" in str(info.value)
    # Reads only (the transaction probe aborts nothing: no certificate has its name).
    reads = ("show ", "abort ssl cert " + api.TRANSACTION_PROBE)
    assert not [command for command in recording.commands if not command.startswith(reads)]


def test_absent_removes_every_crt_list_line(lab, pki):
    dummy_leaf, text = pki.bundle("twice.test")
    path = os.path.join(lab["cert_dir"], "twice.pem")
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        session.new_ssl_cert(path)
        session.set_ssl_cert(path, text)
        session.commit_ssl_cert(path)
        session.add_ssl_crt_list(lab["crt_list"], path + " twice.test")
        session.add_ssl_crt_list(lab["crt_list"], path + " [alpn h2] www.twice.test")
        results = Converger(session).run(prepare_requests([{"path": path, "state": "absent"}], lab["runtime_tcp"]))
        assert path not in parse_cert_list(session.show_ssl_cert_list())
        assert path not in session.show_ssl_crt_list(lab["crt_list"])
    assert results[0]["action"] == "removed" and results[0]["crt_lists"] == [lab["crt_list"]]


def test_connection_closed_by_haproxy_leaves_no_transaction(lab, pki):
    """Told a larger tune.bufsize than HAProxy has, the set is too large: 2.6 to 3.2 hang up.

    HAProxy 3.4 takes a payload larger than tune.bufsize: there the bundle is committed and verified.
    """
    leaf, text = pki.bundle("oversized.test", extra_names=900)
    path = _path(lab, 1)
    requests = prepare_requests([{"path": path, "content": text}], lab["runtime_tcp"], bufsize=1 << 20)
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5, bufsize=1 << 20) as session:
        version = tuple(int(part) for part in session.show_info()["Version"].split(".")[:2])
        if version >= (3, 4):
            results = Converger(session).run(requests)
            # 3.4 cuts this long `show ssl cert` reply (900 names) before the fingerprint: the serial tells.
            assert results[0]["action"] == "updated"
            assert int(results[0]["after"]["serial"], 16) == leaf.serial_number
            assert _transaction(lab) is None
            return
        with pytest.raises(ConvergeError) as info:
            Converger(session).run(requests)
    assert "set ssl cert %s" % path in str(info.value)
    # 2.6.12 hangs up without a word (the client says why); 3.0 and 3.2 say it before they hang up.
    assert ("larger than its tune.bufsize" in str(info.value)
            or "too big for the buffer size. Please change tune.bufsize" in str(info.value))
    assert "HAProxy still serves the previous certificate; no transaction is left open" in str(info.value)
    assert _transaction(lab) is None


def _mismatched_payload(pki, name):
    """A certificate with another key: HAProxy 2.6.12 takes it in `set` and refuses it at `commit`."""
    dummy_leaf, text = pki.bundle(name)
    dummy_other, other = pki.bundle("other-" + name)
    certificates = text[:text.index("-----BEGIN PRIVATE KEY-----")]
    return certificates + other[other.index("-----BEGIN PRIVATE KEY-----"):]


def test_refused_commit_is_aborted(lab, pki):
    """Nothing local can make HAProxy refuse a commit, so the validated payload is swapped for a bad one."""
    leaf, text = pki.bundle("commit.test")
    path = _path(lab, 2)
    requests = prepare_requests([{"path": path, "content": text}], lab["runtime_tcp"])
    requests[0].payloads = [(path, _mismatched_payload(pki, "commit.test"))]
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        before = parse_cert_detail(session.show_ssl_cert(path))
        recording = Recording(session)
        with pytest.raises(ConvergeError) as info:
            Converger(session).run(requests)
        after = parse_cert_detail(session.show_ssl_cert(path))
    message = str(info.value)
    assert path in message and lab["runtime_tcp"] in message and "Can't commit" in message
    # The verifying show went out with the commit (read-only, harmless after a refusal); then the abort.
    assert recording.commands[-4:-1] == ["commit ssl cert " + path, "show ssl cert " + path, "abort ssl cert " + path]
    assert _transaction(lab) is None
    assert after.fingerprint == before.fingerprint != leaf.fingerprint(hashes.SHA1()).hex().upper()


def test_refused_key_after_the_chain_is_aborted(lab, pki):
    """Split form: the chain's set opened the transaction, the key's set is refused; both are dropped."""
    dummy_leaf, text = pki.bundle("split-fail.test")
    path = _path(lab, 3)
    requests = prepare_requests([{"path": path, "content": text}], lab["runtime_tcp"])
    bundle = requests[0].bundle
    requests[0].payloads = [(path, bundle.certificates_pem()), (path + ".key", "not a key\n")]
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        before = parse_cert_detail(session.show_ssl_cert(path))
        recording = Recording(session)
        with pytest.raises(ConvergeError) as info:
            Converger(session).run(requests)
        after = parse_cert_detail(session.show_ssl_cert(path))
    assert "set ssl cert %s.key" % path in str(info.value)
    assert recording.commands[-3:-1] == ["set ssl cert %s.key" % path, "abort ssl cert " + path]
    assert _transaction(lab) is None
    assert after.fingerprint == before.fingerprint


class _DroppingProxy(RecordingProxy):
    """A TCP relay to a real HAProxy that, on its first connection, hangs up on the client right
    after forwarding the command starting with ``trigger``: HAProxy acts on it, the client never
    hears back (a network drop no real HAProxy can be made to stage on demand). Later connections
    are relayed as they are."""

    def __init__(self, upstream, trigger):
        self.trigger = trigger.encode()
        super().__init__(upstream)

    def on_client_data(self, data, state):
        if state["number"] == 1 and data.startswith(self.trigger):
            state["drop"] = True


def test_set_reply_lost_is_aborted_over_a_fresh_connection(lab, pki):
    """HAProxy opened our transaction but the connection died before its reply: a new one aborts it.

    The split form (chain, then key) sends its commands one by one, so the
    commit never went out.
    """
    dummy_leaf, text = pki.bundle("dropped.test")
    path = _path(lab, 4)
    proxy = _DroppingProxy(lab["runtime_tcp"], "set ssl cert ")
    try:
        requests = prepare_requests([{"path": path, "content": text}], proxy.endpoint)
        bundle = requests[0].bundle
        requests[0].payloads = [(path, bundle.certificates_pem()), (path + ".key", bundle.key_pem())]
        with api.RuntimeSession(lab["runtime_unix"], timeout=5) as session:
            before = parse_cert_detail(session.show_ssl_cert(path))
        with api.RuntimeSession(proxy.endpoint, timeout=5) as session:
            with pytest.raises(ConvergeError) as info:
                Converger(session).run(requests)
        with api.RuntimeSession(lab["runtime_unix"], timeout=5) as session:
            after = parse_cert_detail(session.show_ssl_cert(path))
    finally:
        proxy.close()
    assert "closed the connection without answering `set ssl cert %s`" % path in str(info.value)
    assert "abort" not in str(info.value)
    # One probe (is the process still there? yes: so not "gone") and one that aborts.
    assert proxy.connections == 3
    assert _transaction(lab) is None
    assert after.fingerprint == before.fingerprint


def test_pipelined_set_and_commit_lost_says_what_haproxy_serves(lab, pki):
    """Set and commit went out in one write and the connection died: the error says what HAProxy serves.

    Whether HAProxy still runs the commit that came in the same chunk as the set, once the
    client has hung up, is HAProxy's timing (both outcomes were seen on 2.6.12 under load):
    the message must match what is served either way, and nothing may stay open.
    """
    leaf, text = pki.bundle("dropped-pair.test")
    path = _path(lab, 3)
    proxy = _DroppingProxy(lab["runtime_tcp"], "set ssl cert ")
    try:
        with api.RuntimeSession(lab["runtime_unix"], timeout=5) as session:
            before = parse_cert_detail(session.show_ssl_cert(path))
        requests = prepare_requests([{"path": path, "content": text}], proxy.endpoint)
        with api.RuntimeSession(proxy.endpoint, timeout=5) as session:
            recording = Recording(session)
            with pytest.raises(ConvergeError) as info:
                Converger(session).run(requests)
        with api.RuntimeSession(lab["runtime_unix"], timeout=5) as session:
            after = parse_cert_detail(session.show_ssl_cert(path))
    finally:
        proxy.close()
    assert ["set ssl cert " + path, "commit ssl cert " + path, "show ssl cert " + path] in recording.writes
    message = str(info.value)
    assert path in message and "closed the connection" in message
    if after.fingerprint == leaf.fingerprint(hashes.SHA1()).hex().upper():
        assert "HAProxy serves the new certificate" in message
    else:
        assert after.fingerprint == before.fingerprint
        assert "HAProxy still serves the previous certificate" in message
    assert "no transaction is left open" in message
    assert _transaction(lab) is None


def test_bulk_run_pipelines_and_verifies_every_commit(lab, pki):
    """The probe and the compare shows in one batch, then set+commit+verifying show in one write each."""
    bundles = [pki.bundle("bulk%d.test" % number) for number in range(1, 5)]
    paths = [_path(lab, number) for number in range(1, 5)]
    requests = prepare_requests([{"path": path, "content": text} for path, (dummy_leaf, text) in zip(paths, bundles)],
                                lab["runtime_tcp"])
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        recording = Recording(session)
        results = Converger(session).run(requests)
    shows = ["show ssl cert " + path for path in paths]
    assert recording.writes == [["abort ssl cert " + api.TRANSACTION_PROBE] + shows] + [
        ["set ssl cert " + path, "commit ssl cert " + path, "show ssl cert " + path] for path in paths]
    assert [result["after"]["fingerprint"] for result in results] == [
        leaf.fingerprint(hashes.SHA1()).hex().upper() for leaf, dummy_text in bundles]


def test_verification_failure_names_the_certificate(lab, pki):
    """HAProxy must report the new fingerprint after the commit; a request told to expect another one fails."""
    (first_leaf, first), (dummy_leaf, second) = pki.bundle("verified.test"), pki.bundle("unverified.test")
    one, two = _path(lab, 1), _path(lab, 2)
    requests = prepare_requests([{"path": one, "content": first}, {"path": two, "content": second}],
                                lab["runtime_tcp"])
    # Nothing real makes HAProxy report another certificate after a successful commit: expect a wrong one.
    requests[1]._identity = ("0BAD", "00" * 20)  # pylint: disable=protected-access
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        with pytest.raises(ConvergeError) as info:
            Converger(session, wait=0.6).run(requests)
    message = str(info.value)
    # Sent again (it may be another writer's set that landed), then reported with what HAProxy holds.
    assert two in message and "after commit HAProxy holds content other than the bundle" in message
    assert "names unverified.test) after 1 retries" in message
    assert one not in message
    assert [result["path"] for result in info.value.results] == [one, two]
    assert info.value.results[0]["after"]["fingerprint"] == first_leaf.fingerprint(hashes.SHA1()).hex().upper()
    assert _transaction(lab) is None


def test_check_mode_warns_about_another_clients_transaction(lab, pki):
    """The real run would wait for it (and may fail): check mode says so instead of a silent 'updated'."""
    dummy_leaf, ours = pki.bundle("check-ours.test")
    dummy_leaf, theirs = pki.bundle("check-theirs.test")
    mine, other = _path(lab, 2), _path(lab, 3)
    requests = prepare_requests([{"path": mine, "content": ours}], lab["runtime_tcp"])
    with api.RuntimeSession(lab["runtime_unix"], timeout=5) as other_client:
        other_client.set_ssl_cert(other, theirs)
        try:
            with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
                converger = Converger(session, check_mode=True, wait=3)
                results = converger.run(requests)
        finally:
            other_client.abort_ssl_cert(other)
    assert results[0]["action"] == "updated"
    assert converger.warnings == [
        "a certificate transaction on %s is open on %s; a real run waits up to 3s for it, then fails" % (
            other, lab["runtime_tcp"])]


def test_a_real_run_checks_level_and_identity_in_one_write(lab, pki, monkeypatch):
    """converge_endpoint: `show cli level` and `show info` pipelined before the lock, then the update."""
    dummy_leaf, text = pki.bundle("session-start.test")
    path = _path(lab, 3)
    writes = []
    original = api.RuntimeSession._exchange_batch  # pylint: disable=protected-access

    def exchange_batch(session, batch):
        writes.append([command for command, dummy_data in batch])
        return original(session, batch)

    monkeypatch.setattr(api.RuntimeSession, "_exchange_batch", exchange_batch)
    requests = prepare_requests([{"path": path, "content": text}], lab["runtime_tcp"])
    results, error, dummy_warnings = converge_endpoint(api.parse_endpoint(lab["runtime_tcp"]), requests, timeout=5)
    assert error is None and results[0]["action"] == "updated"
    assert writes == [
        ["show cli level", "show info"],
        ["abort ssl cert " + api.TRANSACTION_PROBE, "show ssl cert " + path],
        ["set ssl cert " + path, "commit ssl cert " + path, "show ssl cert " + path],
    ]


def test_open_transaction_without_the_listing(lab, pki):
    """The probe names the open transaction (or none) on every version; it aborts nothing."""
    dummy_leaf, text = pki.bundle("probe.test")
    path = _path(lab, 3)
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        assert session.open_transaction() is None
        session.set_ssl_cert(path, text)
        try:
            assert session.open_transaction() == path
            assert _transaction(lab) == path
        finally:
            session.abort_ssl_cert(path)
        assert session.open_transaction() is None


def test_open_transaction_below_admin_reads_the_listing(lab, pki):
    """HAProxy refuses `abort` below admin level: the listing's transaction head tells instead."""
    dummy_leaf, text = pki.bundle("probe-operator.test")
    path = _path(lab, 3)
    with api.RuntimeSession(lab["runtime_operator"], timeout=5) as operator:
        assert operator.open_transaction() is None
        with api.RuntimeSession(lab["runtime_unix"], timeout=5) as admin:
            admin.set_ssl_cert(path, text)
            try:
                assert operator.open_transaction() == path
            finally:
                admin.abort_ssl_cert(path)


def test_one_of_many_asks_only_for_its_path(lab, pki):
    """Rotating one certificate reads the open transaction and that one path, never every certificate."""
    leaf, text = pki.bundle("one-of-many.test")
    path, absent = _path(lab, 2), os.path.join(lab["cert_dir"], "not-loaded.pem")
    requests = prepare_requests([{"path": path, "content": text}], lab["runtime_tcp"])
    with api.RuntimeSession(lab["runtime_tcp"], timeout=5) as session:
        recording = Recording(session)
        results = Converger(session).run(requests)
        assert "show ssl cert" not in recording.commands
        # A path HAProxy does not hold is reported as such, from its own `show ssl cert PATH`.
        missing = prepare_requests([{"path": absent, "content": text}], lab["runtime_tcp"])
        with pytest.raises(ConvergeError) as info:
            Converger(session).run(missing)
    assert results[0]["after"]["fingerprint"] == leaf.fingerprint(hashes.SHA1()).hex().upper()
    assert "HAProxy does not hold this certificate" in str(info.value) and absent in str(info.value)
