# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""Converge the certificates one HAProxy process holds, over one Runtime API session.

``prepare_requests`` validates every bundle locally (nothing is sent when one
is bad); ``Converger.run`` then compares each with what HAProxy reports and
replaces, creates or removes it in certificate transactions. ``read_status``
is the read-only side used by ``haproxy_ssl_cert_info``.

No Ansible import: modules hand in their parameters and get plain data back.
"""

from __future__ import annotations

import time
import warnings

from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError
from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._process_lock import LockError, ProcessLock
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_status import (
    CertListing,
    StatusParseError,
    certificate_summary,
    parse_cert_detail,
    parse_cert_list,
    parse_crt_list,
    parse_crt_list_names,
)

# How often the open transaction of another client is looked at while waiting for it.
CONFLICT_POLL_SECONDS = 0.25
# Committed certificates are verified (`show ssl cert PATH` must report the new fingerprint) in
# pipelined batches of this many, so at most this many are committed and not yet verified.
VERIFY_BATCH = api.PIPELINE_MAX_COMMANDS


class ConvergeError(IngressError):
    """A certificate could not be converged; the message names the certificate, the endpoint and the reason.

    ``results`` holds what was done before the failure (input order).
    """

    def __init__(self, message, results=None, **result):
        super().__init__(message, **result)
        self.results = results or []


def _one_line(reply):
    return " / ".join(line.strip() for line in (reply or "").strip().splitlines() if line.strip()) or "-"


def describe_paths(paths, limit=5):
    """``certificate A`` or ``certificates A, B, C (and 997 more)``, for messages about a whole call."""
    paths = [str(path) for path in paths]
    text = ", ".join(paths[:limit])
    if len(paths) > limit:
        text += " (and %d more)" % (len(paths) - limit)
    return ("certificate " if len(paths) == 1 else "certificates ") + text


class Request:
    """One certificate to converge, validated."""

    def __init__(self, path, state="present", bundle=None, source=None, crt_list=None,
                 crt_list_options=None, sni_filters=None, payloads=None):
        self.path = path
        self.state = state
        self.bundle = bundle
        self.source = source
        self.crt_list = crt_list
        self.crt_list_options = crt_list_options
        self.sni_filters = list(sni_filters or [])
        # [(set target, payload)]: the whole bundle, or the chain then NAME.key when it is too large.
        self.payloads = payloads or []
        self._summary = None
        self._chain_names = None
        self._identity = None

    @property
    def serial(self):
        return self.identity[0]

    @property
    def fingerprint(self):
        return self.identity[1]

    @property
    def identity(self):
        """The leaf's serial and SHA1 fingerprint as HAProxy prints them: all a comparison needs.

        The same values as the bundle's summary, without the rest of it (names,
        subject, issuer, validity), which a run with nothing to change never uses.
        """
        if self._identity is None:
            leaf = self.bundle.leaf
            with warnings.catch_warnings():
                # A zero or negative serial only warns; _pem formats it as HAProxy prints it.
                warnings.simplefilter("ignore")
                serial = leaf.serial_number
            self._identity = (_pem.format_serial(serial), leaf.fingerprint(_pem.hashes.SHA1()).hex().upper())
        return self._identity

    @property
    def summary(self):
        """The bundle's before/after summary (a fresh copy: results may be changed by the caller)."""
        if self.bundle is None:
            return None
        if self._summary is None:
            summary = self.bundle.summary
            self._summary = certificate_summary(summary.serial, summary.fingerprint, summary.not_after,
                                                summary.names)
        return dict(self._summary, names=list(self._summary["names"]))

    @property
    def chain_names(self):
        if self._chain_names is None:
            self._chain_names = [{"subject": _pem.format_name(item.subject), "issuer": _pem.format_name(item.issuer)}
                                 for item in self.bundle.chain]
        return self._chain_names

    def crt_list_line(self):
        parts = [self.path]
        if self.crt_list_options:
            parts.append("[%s]" % self.crt_list_options)
        parts.extend(self.sni_filters)
        return " ".join(parts)


class _Retry(Exception):
    """Another writer got in the way of one push; worth sending again (the message says why)."""


class _Foreign(Exception):
    """After commit and every retry, a certificate holds something other than its bundle."""

    def __init__(self, path, detail, retries):
        super().__init__(path)
        self.path = path
        self.detail = detail
        self.retries = retries

    def __str__(self):
        if self.detail is None:
            return "%s is no longer listed" % self.path
        return "%s holds serial %s (SHA1 %s, names %s) after %d retries" % (
            self.path, self.detail.serial, self.detail.fingerprint, ", ".join(self.detail.names) or "none",
            self.retries)


class _Invalid(Exception):
    """One certificate's parameters are unusable (the caller adds which certificate and where)."""


def _check_word(value, what):
    try:
        api.check_name(value, what)
    except api.UnsafeName as exc:
        raise _Invalid(exc.message.replace("; nothing was sent", ""))


def _plan_payloads(path, bundle, process, bufsize):
    """The ``set ssl cert`` commands for a bundle: one when it fits tune.bufsize, else chain then key."""
    limit = bufsize - api.BUFSIZE_MARGIN
    whole = bundle.to_pem()
    if api.command_bytes("set ssl cert %s" % path, whole, process) <= limit:
        return [(path, whole)]
    chain = bundle.certificates_pem()
    key = bundle.key_pem()
    chain_size = api.command_bytes("set ssl cert %s" % path, chain, process)
    if chain_size > limit:
        raise _Invalid(
            "the certificates of the bundle alone take %d bytes with the command, more than HAProxy's buffer "
            "holds (tune.bufsize %d allows %d per command); it cannot be sent over the Runtime API "
            "(raise tune.bufsize on HAProxy and the module's tune_bufsize, or shorten the chain)"
            % (chain_size, bufsize, limit)
        )
    if api.command_bytes("set ssl cert %s.key" % path, key, process) > limit:
        raise _Invalid("the private key alone does not fit HAProxy's buffer (tune.bufsize %d)" % bufsize)
    return [(path, chain), (path + ".key", key)]


ITEM_KEYS = ("path", "src", "content", "state", "crt_list", "crt_list_options", "sni_filters")


def items_from_params(params):
    """The certificates a module call asks for: the single form (``path``) or the ``certificates`` list.

    In the list, an entry without ``state``, ``crt_list`` or ``crt_list_options``
    takes the top-level value.
    """
    if params.get("certificates") is None:
        return [dict((key, params.get(key)) for key in ITEM_KEYS)]
    items = []
    for entry in params["certificates"]:
        item = dict((key, entry.get(key)) for key in ITEM_KEYS)
        for key in ("state", "crt_list", "crt_list_options"):
            if item.get(key) is None:
                item[key] = params.get(key)
        items.append(item)
    return items


def prepare_requests(items, endpoint, process=None, bufsize=api.DEFAULT_BUFSIZE, allow_expired=False,
                     read_file=_pem.read_file, now=None):
    """Validate every certificate before anything is sent.

    ``items`` are dicts with path, state, src, content, crt_list,
    crt_list_options, sni_filters. Raises ConvergeError naming the certificate,
    the endpoint and the reason for the first bad one.
    """
    requests = []
    seen = set()
    for item in items:
        path = item.get("path")
        if path in seen:
            raise ConvergeError("certificate %s on %s: it is listed twice; nothing was sent" % (path, endpoint))
        seen.add(path)
        if isinstance(path, str) and path.strip():
            # Every name before any bundle is read: an unsafe one is reported as such, whatever else is wrong.
            try:
                _check_word(path, "path")
            except _Invalid as exc:
                raise ConvergeError("certificate %s on %s: %s; nothing was sent" % (path, endpoint, exc))
    for index, item in enumerate(items):
        path = item.get("path")
        where = "certificates[%d]" % index
        if not isinstance(path, str) or not path.strip():
            raise ConvergeError("%s on %s: path is required" % (where, endpoint))
        try:
            _check_word(path, "path")
            state = item.get("state") or "present"
            crt_list = item.get("crt_list")
            options = item.get("crt_list_options")
            filters = item.get("sni_filters") or []
            if crt_list is not None:
                _check_word(crt_list, "crt_list")
            if options is not None:
                if any(char in options for char in "[]"):
                    raise _Invalid("crt_list_options %r must not hold brackets (give the options without the "
                                   "surrounding [ ])" % options)
                if any(ord(char) < 32 or ord(char) == 127 for char in options):
                    raise _Invalid("crt_list_options %r must not hold line breaks or control characters" % options)
                for word in options.split(" "):
                    if word:
                        _check_word(word, "a word of crt_list_options")
                options = " ".join(options.split()) or None
            for sni in filters:
                _check_word(sni, "SNI filter")
            if state == "absent":
                if item.get("src") is not None or item.get("content") is not None:
                    raise _Invalid("state absent takes no src or content")
                requests.append(Request(path, state="absent"))
                continue
            src, content = item.get("src"), item.get("content")
            if src is not None and content is not None:
                raise _Invalid("give src or content, not both")
            if src is None and content is None:
                raise _Invalid("src or content is required with state present")
            if src is not None:
                data, source = read_file(src), src
            else:
                data, source = content, "the content for %s" % path
                if not content.strip():
                    raise _Invalid("the content is empty")
            bundle = _pem.load_bundle(data, source=source, allow_expired=allow_expired, now=now)
            payloads = _plan_payloads(path, bundle, process, bufsize)
            requests.append(Request(path, "present", bundle, source, crt_list, options, filters, payloads))
        except (_pem.PemError, _Invalid) as exc:
            raise ConvergeError("certificate %s on %s: %s; nothing was sent" % (path, endpoint, exc))
    return requests


class Converger:
    """Converge requests over one open ``RuntimeSession``."""

    def __init__(self, session, check_mode=False, force=False, abort_pending=False, wait=None):
        self.session = session
        self.endpoint = str(session.endpoint)
        self.check_mode = check_mode
        self.force = force
        self.abort_pending = abort_pending
        self.wait = session.timeout if wait is None else wait
        self.warnings = []
        self.results = []
        self.listing = None
        self._foreign_cleared = False
        self._crt_lists = None
        self._crt_list_entries = {}
        # Raw `show ssl cert PATH` replies read ahead (path -> text, None: not held): the compare batch, and
        # the show sent with a commit.
        self._prefetched = {}
        # [(request, result)] committed, waiting for their verifying `show ssl cert PATH`.
        self._unverified = []

    # -- helpers -----------------------------------------------------------

    def _fail(self, path, reason):
        return ConvergeError("certificate %s on %s: %s" % (path, self.endpoint, reason), list(self.results))

    def _open_transaction(self):
        return self.session.open_transaction()

    def _detail(self, path):
        if path in self._prefetched:
            raw = self._prefetched.pop(path)
            return None if raw is None else parse_cert_detail(raw)
        try:
            return parse_cert_detail(self.session.show_ssl_cert(path))
        except api.NotFound:
            return None

    def _read_state(self, requests):
        """The open transaction and every requested certificate, in one pipelined batch.

        Comparing 1,000 certificates then costs a few round trips instead of
        1,000, and rotating one certificate out of 10,000 asks about that one
        only: the paths are known, so the full ``show ssl cert`` listing (every
        loaded certificate) is never read. A path HAProxy does not hold answers
        "Not found" and is left out of ``self.listing``.
        """
        paths = [request.path for request in requests]
        try:
            transaction, details = self.session.open_transaction_and_certs(paths)
        except api.RuntimeApiError as exc:
            command = exc.command or ""
            path = command[len("show ssl cert "):] if command.startswith("show ssl cert ") else None
            raise ConvergeError("%s on %s: %s" % (
                "certificate %s" % path if path else describe_paths(paths), self.endpoint, exc))
        self.listing = CertListing([], transaction)
        for path, raw in zip(paths, details):
            if raw is not None:
                self._prefetched[path] = raw
                self.listing.add(path)

    def _crt_list_names(self):
        if self._crt_lists is None:
            self._crt_lists = parse_crt_list_names(self.session.show_ssl_crt_lists())
        return self._crt_lists

    def _entries(self, crt_list):
        if crt_list not in self._crt_list_entries:
            dummy_name, entries = parse_crt_list(self.session.show_ssl_crt_list(crt_list))
            self._crt_list_entries[crt_list] = entries
        return self._crt_list_entries[crt_list]

    def _clear_foreign_transaction(self, path):
        """Before our first write: wait for another client's open transaction, abort it or fail."""
        if self._foreign_cleared:
            return
        pending = self.listing.transaction
        if pending is None or pending == path:
            self._foreign_cleared = True
            return
        if self.check_mode:
            self.warnings.append(
                "a certificate transaction on %s is open on %s; a real run waits up to %gs for it, then %s"
                % (pending, self.endpoint, self.wait,
                   "aborts it (abort_pending)" if self.abort_pending else "fails")
            )
            self._foreign_cleared = True
            return
        deadline = time.monotonic() + self.wait
        while pending is not None and time.monotonic() < deadline:
            time.sleep(CONFLICT_POLL_SECONDS)
            pending = self._open_transaction()
        if pending is not None:
            if not self.abort_pending:
                raise self._fail(
                    path,
                    "another certificate transaction, on %s, is open and was not committed or aborted within %gs; "
                    "nothing was changed (abort_pending: true aborts it)" % (pending, self.wait),
                )
            self.session.abort_ssl_cert(pending)
            self.warnings.append("aborted the open certificate transaction on %s (abort_pending) on %s"
                                 % (pending, self.endpoint))
        self.listing.transaction = None
        self._foreign_cleared = True

    def _abort_quietly(self, path):
        try:
            self.session.abort_ssl_cert(path)
        except api.RuntimeApiError as exc:
            return " (abort ssl cert %s failed too: %s)" % (path, exc)
        return ""

    def _push(self, request, result):
        """set and commit until HAProxy takes them, or ``wait`` runs out; the tries after the first count as retries.

        Another writer on the same process shows in the replies: its open
        transaction (waited for, or aborted with abort_pending), our payload
        put into its transaction (aborted at once: it holds content meant for
        another name), or our transaction aborted before our commit.
        """
        deadline = time.monotonic() + self.wait
        delay = CONFLICT_POLL_SECONDS
        while True:
            try:
                return self._push_once(request)
            except _Retry as retry:
                if time.monotonic() + delay > deadline:
                    raise self._fail(request.path, "%s; still so after %d retries in %gs, nothing of ours was "
                                     "committed" % (retry, result.get("retries", 0), self.wait))
            result["retries"] = result.get("retries", 0) + 1
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _push_once(self, request):
        """set (once, or chain then key) and commit; abort ours on any failure after the first set."""
        sent = pipelined = False
        try:
            if len(request.payloads) == 1 and self.listing.transaction is None:
                # No transaction was open when we looked: set and commit go in one write (see
                # RuntimeSession.replace_ssl_cert for why a failed set cannot commit anything of ours).
                sent = pipelined = True
                shown, raw = self.session.replace_ssl_cert_and_show(request.path, request.payloads[0][1])
                if shown:
                    # The verifying show came back with the commit: _detail and _verify_pending use it.
                    self._prefetched[request.path] = raw
            else:
                for target, payload in request.payloads:
                    sent = True
                    self.session.set_ssl_cert(target, payload)
                self.session.commit_ssl_cert(request.path)
        except api.TransactionConflict as exc:
            self._resolve_conflict(request, exc)
        except api.NoTransaction as exc:
            if not sent:
                raise self._fail(request.path, str(exc))
            # Another client aborted our transaction between our set and our commit.
            raise _Retry("our transaction on %s was aborted by another client before our commit (%s)"
                         % (request.path, _one_line(exc.reply)))
        except api.RuntimeApiError as exc:
            extra = ""
            if sent and isinstance(exc, api.ProcessGone):
                extra = " (its transactions went with it; nothing is left open)"
            elif sent and isinstance(exc, (api.ConnectionClosed, api.ReplyTimeout)):
                extra = self._abort_after_reconnect(request, pipelined)
            elif sent:
                extra = self._abort_quietly(request.path)
            raise self._fail(request.path, "%s%s" % (exc, extra))
        return None

    def _resolve_conflict(self, request, exc):
        """Another certificate's transaction got in our way: always raises (_Retry, or the failure)."""
        if exc.polluted:
            # Debian's 2.6.12 put our payload into the other writer's open transaction: abort it now, so
            # that writer's commit fails (and it sends again) instead of serving our certificate under its name.
            extra = self._abort_quietly(exc.pending_path)
            self.warnings.append(
                "HAProxy at %s put the bundle for %s into the open transaction on %s (another client's); that "
                "transaction was aborted so it cannot serve content meant for another name%s"
                % (self.endpoint, request.path, exc.pending_path, extra))
            raise _Retry("HAProxy put our payload into the open transaction on %s (aborted)" % exc.pending_path)
        if self.abort_pending:
            extra = self._abort_quietly(exc.pending_path)
            self.warnings.append("aborted the open certificate transaction on %s (abort_pending) on %s%s"
                                 % (exc.pending_path, self.endpoint, extra))
        raise _Retry("another certificate transaction, on %s, is open (HAProxy answered: %s)"
                     % (exc.pending_path, _one_line(exc.reply)))

    def _abort_after_reconnect(self, request, pipelined=False):
        """The connection died mid-transaction: abort on a fresh connection so nothing stays open.

        When the commit went out in the same write as the set, HAProxy may have
        committed before the connection died: then say what it serves now.
        """
        path = request.path
        try:
            with api.RuntimeSession(self.session.endpoint, process=self.session.process,
                                    timeout=self.session.timeout, bufsize=self.session.bufsize) as fresh:
                fresh.abort_ssl_cert(path)
                if not pipelined:
                    return ""
                try:
                    detail = parse_cert_detail(fresh.show_ssl_cert(path))
                except api.NotFound:
                    detail = None
        except (api.ConnectError, api.ReplyTimeout) as exc:
            return (" (and a new connection fails: the HAProxy process at %s stopped or was killed, its open "
                    "transaction with it: %s)" % (self.endpoint, exc))
        except (api.RuntimeApiError, StatusParseError) as exc:
            return " (could not abort the transaction on %s afterwards: %s)" % (path, exc)
        if detail is not None and (detail.serial, detail.fingerprint) == (request.serial, request.fingerprint):
            return (" (the commit sent with the set went through before the connection was lost: HAProxy serves "
                    "the new certificate, serial %s; no transaction is left open)" % request.serial)
        return " (HAProxy still serves the previous certificate; no transaction is left open)"

    def _verify(self, request, result):
        try:
            return self._heal_if_foreign(request, result, self._detail(request.path))
        except _Foreign as exc:
            raise self._fail(request.path, "after commit HAProxy holds content other than the bundle (another client "
                             "wrote to the same process at the same time) and sending again within %gs did not "
                             "repair it: %s" % (self.wait, exc))

    def _verify_pending(self):
        """Verify every committed, not yet verified certificate: its show sent with the commit, else one batch.

        One that holds something else (a foreign ``set`` landed in our
        transaction) is pushed again until it holds the bundle; the failure
        names every certificate that still holds foreign content.
        """
        pending, self._unverified = self._unverified, []
        if not pending:
            return
        # Those whose show came back with their commit are not asked again.
        ask = [request.path for request, dummy_result in pending if request.path not in self._prefetched]
        try:
            asked = dict(zip(ask, self.session.show_ssl_certs(ask))) if ask else {}
        except api.RuntimeApiError as exc:
            self._unverified = pending
            self._settle_unverified()
            raise ConvergeError("%s on %s: committed, but `show ssl cert` could not verify the new certificate: %s"
                                % (describe_paths(request.path for request, dummy_result in pending),
                                   self.endpoint, exc), list(self.results))
        foreign = []
        for position, (request, result) in enumerate(pending):
            raw = self._prefetched.pop(request.path) if request.path in self._prefetched else asked[request.path]
            try:
                detail = None if raw is None else parse_cert_detail(raw)
                result["after"] = self._heal_if_foreign(request, result, detail).summary()
            except _Foreign as exc:
                result["after"] = exc.detail.summary() if exc.detail is not None else None
                foreign.append(exc)
            except (ConvergeError, StatusParseError) as exc:
                self._unverified = pending[position + 1:]
                self._settle_unverified()
                if isinstance(exc, ConvergeError):
                    raise
                raise self._fail(request.path, str(exc))
        if foreign:
            raise ConvergeError(
                "%s on %s: after commit HAProxy holds content other than the bundle (another client wrote to "
                "the same process at the same time) and sending again within %gs did not repair it: %s"
                % (describe_paths(exc.path for exc in foreign), self.endpoint, self.wait,
                   "; ".join(str(exc) for exc in foreign)), list(self.results))

    def _settle_unverified(self):
        """On failure: certificates committed but not verified report the bundle they were sent."""
        pending, self._unverified = self._unverified, []
        for request, result in pending:
            result["after"] = request.summary

    def _holds(self, request, detail):
        if detail is None:
            return False
        if detail.fingerprint is None:
            return detail.serial == request.serial
        return (detail.serial, detail.fingerprint) == (request.serial, request.fingerprint)

    def _heal_if_foreign(self, request, result, detail):
        """The detail when it is the bundle; else push again (bounded by ``wait``) until it is, or raise _Foreign."""
        deadline = time.monotonic() + self.wait
        delay = CONFLICT_POLL_SECONDS
        while not self._holds(request, detail):
            if detail is None:
                raise self._fail(request.path, "after commit HAProxy no longer lists the certificate")
            if time.monotonic() + delay > deadline:
                raise _Foreign(request.path, detail, result.get("retries", 0))
            # Let the other writer finish first: pushing at once would most likely collide again.
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            result["retries"] = result.get("retries", 0) + 1
            self._push(request, result)
            detail = self._detail(request.path)
        return detail

    # -- one certificate ---------------------------------------------------

    def _same(self, request, detail):
        """(same, why not) comparing what HAProxy holds with the bundle."""
        if detail.empty:
            return False, "the certificate store is empty"
        if detail.fingerprint is None:
            return False, (
                "HAProxy prints no SHA1 fingerprint for %s (key type %s: its output stops after 'Algorithm:'), "
                "so it cannot be compared and is sent on every run" % (request.path, detail.algorithm or "not RSA/EC/DSA")
            )
        if (detail.serial, detail.fingerprint) != (request.serial, request.fingerprint):
            return False, "serial or fingerprint differ"
        if detail.chain != request.chain_names:
            return False, "the chain differs"
        return True, None

    def _present(self, request, result):
        in_listing = request.path in self.listing
        detail = self._detail(request.path) if in_listing else None
        result["before"] = detail.summary() if detail is not None and not detail.empty else None
        replacing_leftover = self.listing.transaction == request.path
        if detail is None:
            if not request.crt_list:
                raise self._fail(
                    request.path,
                    "HAProxy does not hold this certificate and no crt_list is given to add it to; nothing was "
                    "changed (certificates HAProxy holds: `show ssl cert`)",
                )
            return self._create(request, result, new_store=True)
        if detail.empty:
            return self._create(request, result, new_store=False)
        same, why = self._same(request, detail)
        if same and not self.force and not replacing_leftover:
            result.update(action="unchanged", changed=False, after=result["before"])
            return
        if why and detail.fingerprint is None:
            self.warnings.append(why)
        # "after" is what HAProxy reports once committed; the bundle's own summary only in check mode
        # (building it for 1,000 certificates costs more than comparing them).
        result.update(action="updated", changed=True, after=None)
        if replacing_leftover:
            result["replaced_transaction"] = True
        self._clear_foreign_transaction(request.path)
        if self.check_mode:
            result["after"] = request.summary
            return
        self._push(request, result)
        # Verified with others in one pipelined batch (see run()).
        self._unverified.append((request, result))

    def _create(self, request, result, new_store):
        result.update(action="created", changed=True, after=request.summary)
        entries = None
        if request.crt_list is not None:
            result["crt_list"] = request.crt_list
            try:
                entries = self._entries(request.crt_list)
            except api.RuntimeApiError as exc:
                raise self._fail(request.path, "cannot add it to crt-list %s: %s; nothing was changed"
                                 % (request.crt_list, exc))
        self._clear_foreign_transaction(request.path)
        if self.check_mode:
            return
        if new_store:
            try:
                self.session.new_ssl_cert(request.path)
            except api.RuntimeApiError as exc:
                raise self._fail(request.path, str(exc))
            self.listing.add(request.path)
        try:
            self._push(request, result)
            result["after"] = self._verify(request, result).summary()
            if entries is not None and not any(entry.path == request.path for entry in entries):
                self.session.add_ssl_crt_list(request.crt_list, request.crt_list_line())
                self._crt_list_entries.pop(request.crt_list, None)
        except (ConvergeError, api.RuntimeApiError) as exc:
            message = exc.message if isinstance(exc, ConvergeError) else "certificate %s on %s: %s" % (
                request.path, self.endpoint, exc)
            if new_store:
                # Leave HAProxy as it was: without the empty store we created.
                try:
                    self.session.del_ssl_cert(request.path)
                    self.listing.discard(request.path)
                except api.RuntimeApiError as cleanup_error:
                    message += " (removing the new certificate store failed too: %s)" % cleanup_error
            raise ConvergeError(message, list(self.results))

    def _absent(self, request, result):
        detail = self._detail(request.path) if request.path in self.listing else None
        if detail is None:
            result.update(action="unchanged", changed=False, before=None, after=None)
            return
        result.update(action="removed", changed=True, before=detail.summary() if not detail.empty else None,
                      after=None)
        try:
            holders = [(name, entry) for name in self._crt_list_names() for entry in self._entries(name)
                       if entry.path == request.path]
        except api.RuntimeApiError as exc:
            raise self._fail(request.path, "cannot read the crt-lists to remove it from: %s" % exc)
        result["crt_lists"] = sorted({name for name, dummy_entry in holders})
        if self.check_mode:
            return
        try:
            if self.listing.transaction == request.path:
                # A leftover transaction on the certificate we remove is ours to drop.
                self.session.abort_ssl_cert(request.path)
                self.listing.transaction = None
            for name, entry in holders:
                self.session.del_ssl_crt_list(name, "%s:%d" % (entry.path, entry.line) if entry.line else entry.path)
                self._crt_list_entries.pop(name, None)
            self.session.del_ssl_cert(request.path)
        except api.RuntimeApiError as exc:
            raise self._fail(request.path, str(exc))
        self.listing.discard(request.path)

    # -- all ---------------------------------------------------------------

    def run(self, requests):
        """Converge every request, in input order; return the per-certificate results."""
        # Only the open transaction and the requested paths (see _read_state): never every certificate.
        self._read_state(requests)
        # A leftover transaction on one of our own certificates (an earlier run that died) is replaced
        # by ours: handle that certificate first so the others do not run into it.
        order = list(range(len(requests)))
        leftover = self.listing.transaction
        if leftover is not None:
            order.sort(key=lambda index: requests[index].path != leftover or requests[index].state != "present")
        results = [None] * len(requests)
        for index in order:
            request = requests[index]
            result = {"path": request.path, "state": request.state}
            try:
                if request.state == "absent":
                    self._absent(request, result)
                else:
                    self._present(request, result)
            except (api.RuntimeApiError, StatusParseError) as exc:
                self._settle_unverified()
                self.results = [item for item in results if item is not None]
                raise self._fail(request.path, str(exc))
            except ConvergeError as exc:
                self._settle_unverified()
                exc.results = [item for item in results if item is not None]
                raise
            results[index] = result
            self.results = [item for item in results if item is not None]
            if request.path == leftover and result.get("changed"):
                self.listing.transaction = None
            if len(self._unverified) >= VERIFY_BATCH:
                self._verify_batch(results)
        self._verify_batch(results)
        return results

    def _verify_batch(self, results):
        try:
            self._verify_pending()
        except ConvergeError as exc:
            exc.results = [item for item in results if item is not None]
            raise


def converge_endpoint(endpoint, requests, process=None, timeout=api.DEFAULT_TIMEOUT, bufsize=api.DEFAULT_BUFSIZE,
                      check_mode=False, force=False, abort_pending=False):
    """Converge ``requests`` (from ``prepare_requests``) on one endpoint over one session.

    A real run holds the lock of the process it reached (``ProcessLock``, keyed
    by ``show info``'s identity) while it converges, so runs on this machine
    that reach the same process by any endpoint take turns; it waits for the
    lock at most ``timeout`` seconds. Returns ``(results, error, warnings)``:
    the per-certificate results (input order, as far as it got), the error
    message or None, and the warnings. Never raises for a Runtime API,
    locking or convergence failure: that is the error.
    """
    results, warnings, error, converger = [], [], None, None
    try:
        with api.RuntimeSession(endpoint, process=process, timeout=timeout, bufsize=bufsize) as session:
            converger = Converger(session, check_mode=check_mode, force=force, abort_pending=abort_pending)
            if check_mode:
                results = converger.run(requests)
            else:
                with ProcessLock(session.admin_process_identity()).acquire(timeout):
                    results = converger.run(requests)
    except ConvergeError as exc:
        error, results = exc.message, exc.results
    except (api.RuntimeApiError, LockError) as exc:
        error = "%s on %s: %s" % (describe_paths(request.path for request in requests), endpoint, exc)
        if isinstance(exc, LockError):
            error += "; nothing was changed"
    if converger is not None:
        warnings = list(converger.warnings)
    return results, error, warnings


def diff_of(results):
    """Diff mode: serial, fingerprint, not_after and names before/after for each changed certificate."""
    before, after = {}, {}
    for result in results:
        if result.get("changed"):
            before[result["path"]] = result.get("before") or "absent"
            after[result["path"]] = result.get("after") or "absent"
    return {"before": before, "after": after}


def read_status(session, paths=None, now=None):
    """Everything ``haproxy_ssl_cert_info`` returns, read over one session."""
    if paths:
        # The paths are known: ask for those (a path HAProxy does not hold answers "Not found") and for the
        # open transaction, instead of listing every loaded certificate.
        wanted = list(paths)
        transaction, details = session.open_transaction_and_certs(wanted)
        details = dict(zip(wanted, details))
    else:
        listing = parse_cert_list(session.show_ssl_cert_list())
        wanted, transaction = listing.paths, listing.transaction
        # One pipelined batch of `show ssl cert PATH` instead of a round trip per certificate.
        details = dict(zip(wanted, session.show_ssl_certs(wanted))) if wanted else {}
    certificates, missing = [], []
    for path in wanted:
        raw = details.get(path)
        if raw is None:
            missing.append(path)
        else:
            certificates.append(parse_cert_detail(raw).as_dict(now))
    crt_lists, warnings = {}, []
    try:
        for name in parse_crt_list_names(session.show_ssl_crt_lists()):
            dummy_name, entries = parse_crt_list(session.show_ssl_crt_list(name))
            crt_lists[name] = [entry.as_dict() for entry in entries]
    except api.PermissionDenied as exc:
        crt_lists = None
        warnings.append("crt-lists not read: %s" % exc)
    return {
        "certificates": certificates,
        "crt_lists": crt_lists,
        "transaction": transaction,
        "missing": missing,
    }, warnings
