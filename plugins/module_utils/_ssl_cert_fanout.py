# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""Converge the same certificates on many HAProxy processes in one call.

The bundles are validated (``prepare_requests``) for every endpoint before
any connection, once for all endpoints that keep the certificates under the
same paths; then every endpoint gets its own Runtime API session in its own
thread (at most ``concurrency`` at a time) and runs the same ``Converger`` a
single endpoint does. One endpoint that fails fails for itself: the others are
converged all the same, and each outcome says what happened there.

No Ansible import: the module hands in its parameters and gets plain data back.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_converge import (
    ConvergeError,
    converge_endpoint,
    describe_paths,
    diff_of,
    prepare_requests,
)

DEFAULT_CONCURRENCY = 16


class FanoutError(ConvergeError):
    """The list of endpoints (or how to reach them) is unusable; nothing was sent anywhere."""


def describe_endpoints(endpoints, limit=5):
    """``127.0.0.11:9999`` or ``3 endpoints (a, b, c)``, for messages about a whole call."""
    endpoints = [str(endpoint) for endpoint in endpoints]
    if len(endpoints) == 1:
        return endpoints[0]
    text = ", ".join(endpoints[:limit])
    if len(endpoints) > limit:
        text += " and %d more" % (len(endpoints) - limit)
    return "%d endpoints (%s)" % (len(endpoints), text)


class Target:
    """One endpoint of the call and where that process keeps the certificates."""

    def __init__(self, endpoint, process=None, cert_dir=None, crt_list=None):
        self.endpoint = endpoint
        self.process = process
        self.cert_dir = cert_dir
        self.crt_list = crt_list

    def __str__(self):
        return str(self.endpoint)

    @property
    def variant(self):
        """What changes the certificates' paths, crt-lists or command sizes at this endpoint."""
        return (self.process, self.cert_dir, self.crt_list)


ENDPOINT_KEYS = ("endpoint", "process", "cert_dir", "crt_list")


def _optional_word(entry, key, where):
    value = entry.get(key)
    if value is None or value == "":
        return None
    try:
        return api.check_name(value, key)
    except api.UnsafeName as exc:
        raise FanoutError("%s: %s" % (where, exc))


def parse_endpoints(entries, process=None, concurrency=DEFAULT_CONCURRENCY):
    """Parse every endpoint before anything is sent; refuse an empty list, duplicates, a bad process prefix.

    An entry is an endpoint string, or a dict with ``endpoint`` and optionally
    ``process`` (instead of the call's), ``cert_dir`` (the directory this
    process loads every certificate from: it replaces the directory of each
    certificate's path) and ``crt_list`` (the crt-list new certificates go to
    there). Returns the ``Target`` list in input order.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise FanoutError("concurrency must be a whole number of at least 1, not %r; nothing was sent" % (concurrency,))
    if not entries:
        raise FanoutError("endpoints is empty: give at least one Runtime API endpoint; nothing was sent")
    try:
        default_process = api.check_process(process)
    except api.RuntimeApiError as exc:
        raise FanoutError("%s; nothing was sent" % exc)
    targets, seen = [], {}
    for index, entry in enumerate(entries):
        where = "endpoints[%d]" % index
        if not isinstance(entry, dict):
            entry = {"endpoint": entry}
        unknown = sorted(set(entry) - set(ENDPOINT_KEYS))
        if unknown:
            raise FanoutError("%s: unknown key(s) %s (known: %s); nothing was sent"
                              % (where, ", ".join(unknown), ", ".join(ENDPOINT_KEYS)))
        text = entry.get("endpoint")
        if not isinstance(text, str) or not text.strip():
            raise FanoutError("%s is empty; nothing was sent" % where)
        try:
            endpoint = api.parse_endpoint(text)
            target_process = default_process
            if entry.get("process") not in (None, ""):
                target_process = api.check_process(entry["process"], endpoint=text)
        except api.RuntimeApiError as exc:
            raise FanoutError("%s (%s): %s; nothing was sent" % (where, text, exc))
        target = Target(endpoint, target_process, _optional_word(entry, "cert_dir", where),
                        _optional_word(entry, "crt_list", where))
        key = (endpoint, target_process)
        if key in seen:
            # Two sessions on one process would race each other's certificate transactions.
            raise FanoutError("%s (%s) is the same endpoint as endpoints[%d]; nothing was sent"
                              % (where, text, seen[key]))
        seen[key] = index
        targets.append(target)
    return targets


def prepare_variants(targets, items, bufsize=api.DEFAULT_BUFSIZE, allow_expired=False, read_file=_pem.read_file):
    """Validate the certificates for every endpoint before anything is sent anywhere.

    Endpoints sharing process, cert_dir and crt_list (all of them, for the
    tasks of one service) share one validated list; each file is read once.
    Returns a dict: ``Target.variant`` -> the requests for those endpoints.
    Raises ConvergeError naming the certificate, the endpoints and the reason.
    """
    cache = {}

    def read_once(path):
        if path not in cache:
            cache[path] = read_file(path)
        return cache[path]

    variants = {}
    for target in targets:
        if target.variant in variants:
            continue
        variant_items = []
        for item in items:
            item = dict(item)
            if target.cert_dir and isinstance(item.get("path"), str):
                item["path"] = posixpath.join(target.cert_dir, posixpath.basename(item["path"]))
            if target.crt_list:
                item["crt_list"] = target.crt_list
            variant_items.append(item)
        alike = [other for other in targets if other.variant == target.variant]
        variants[target.variant] = prepare_requests(variant_items, describe_endpoints(alike), process=target.process,
                                                    bufsize=bufsize, allow_expired=allow_expired, read_file=read_once)
    return variants


def identify(target, timeout=api.DEFAULT_TIMEOUT, bufsize=api.DEFAULT_BUFSIZE):
    """``(identity, None)`` of the process a target reaches (``RuntimeSession.process_identity``), or
    ``(None, error)`` when it cannot be reached: that error is then the target's outcome (no second wait)."""
    try:
        with api.RuntimeSession(target.endpoint, process=target.process, timeout=timeout, bufsize=bufsize) as session:
            return session.process_identity(), None
    except api.RuntimeApiError as exc:
        return None, exc


def group_aliases(targets, identities):
    """``{index: index of the first target reaching the same process}`` for every target that is an alias."""
    first, aliases = {}, {}
    for index, identity in enumerate(identities):
        if identity is None:
            continue
        if identity in first:
            aliases[index] = first[identity]
        else:
            first[identity] = index
    return aliases


def _alias_instance(target, primary_target, primary):
    instance = dict(primary, endpoint=str(target), alias_of=str(primary_target))
    instance.pop("aliases", None)
    if (target.cert_dir, target.crt_list) != (primary_target.cert_dir, primary_target.crt_list):
        instance.update(failed=True, changed=False, certificates=[], msg=(
            "%s reaches the same HAProxy process as %s, which was converged, but names another cert_dir or "
            "crt_list (%s, %s instead of %s, %s); nothing was sent through it"
            % (target, primary_target, target.cert_dir, target.crt_list, primary_target.cert_dir,
               primary_target.crt_list)))
    elif primary["failed"]:
        instance["msg"] = "the same HAProxy process as %s, which failed: %s" % (primary_target, primary["msg"])
    return instance


def converge_endpoints(targets, variants, timeout=api.DEFAULT_TIMEOUT, bufsize=api.DEFAULT_BUFSIZE,
                       check_mode=False, force=False, abort_pending=False, concurrency=DEFAULT_CONCURRENCY):
    """Converge every target (from ``parse_endpoints``) with its requests (from ``prepare_variants``), in parallel.

    Targets that reach the same process (same ``show info`` identity: its unix
    and TCP sockets, the master CLI, IPv4 and IPv6) are converged once, through
    the first of them: two sessions on one process would race each other's
    transactions. Returns ``(instances, warnings)``: one dict per target in
    input order, ``{endpoint, failed, msg (on failure), changed, certificates,
    aliases (the other endpoints of the same process) or alias_of}``, and the
    warnings of all endpoints, each naming its endpoint.
    """
    workers = max(1, min(concurrency, len(targets)))

    def identity(target):
        return identify(target, timeout=timeout, bufsize=bufsize)

    unreachable = {}

    def one(target):
        if id(target) in unreachable:
            requests = variants[target.variant]
            return [], "%s on %s: %s" % (describe_paths(request.path for request in requests), target,
                                         unreachable[id(target)]), []
        return converge_endpoint(target.endpoint, variants[target.variant], process=target.process, timeout=timeout,
                                 bufsize=bufsize, check_mode=check_mode, force=force, abort_pending=abort_pending)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        aliases = {}
        if len(targets) > 1:
            identities = list(pool.map(identity, targets))
            unreachable = {id(target): error for target, (dummy, error) in zip(targets, identities) if error}
            aliases = group_aliases(targets, [known for known, dummy in identities])
        primaries = [target for index, target in enumerate(targets) if index not in aliases]
        outcomes = dict(zip(map(id, primaries), pool.map(one, primaries)))
    instances, warnings = [None] * len(targets), []
    for index, target in enumerate(targets):
        if index in aliases:
            continue
        results, error, target_warnings = outcomes[id(target)]
        instance = {
            "endpoint": str(target),
            "failed": error is not None,
            "changed": any(result.get("changed") for result in results),
            "certificates": results,
        }
        if error is not None:
            instance["msg"] = error
        names = [str(targets[alias]) for alias, primary in sorted(aliases.items()) if primary == index]
        if names:
            instance["aliases"] = names
        instances[index] = instance
        for warning in target_warnings:
            text = warning if str(target) in warning else "%s: %s" % (target, warning)
            if text not in warnings:
                warnings.append(text)
    for index, primary in aliases.items():
        instances[index] = _alias_instance(targets[index], targets[primary], instances[primary])
    return instances, warnings


def failure_message(instances):
    """One message naming every endpoint that failed and why, or None when none did."""
    failed = [instance for instance in instances if instance["failed"]]
    if not failed:
        return None
    return "%d of %d endpoints failed (%s), every other endpoint was handled all the same: %s" % (
        len(failed), len(instances), ", ".join(instance["endpoint"] for instance in failed),
        "; ".join("%s: %s" % (instance["endpoint"], instance["msg"]) for instance in failed),
    )


def diff_of_instances(instances):
    """Diff mode: one entry per endpoint and changed certificate; summaries only, never key material."""
    entries = []
    for instance in instances:
        diff = diff_of(instance["certificates"])
        for path, before in diff["before"].items():
            header = "%s %s" % (instance["endpoint"], path)
            entries.append({"before_header": header, "after_header": header,
                            "before": before, "after": diff["after"][path]})
    return entries
