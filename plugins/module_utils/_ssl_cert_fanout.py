# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is private, not for use outside this collection.
# Its interface may change without notice.

"""Converge the same certificates on many HAProxy processes in one call.

The bundles are validated once (``prepare_requests``) before any connection;
then every endpoint gets its own Runtime API session in its own thread (at
most ``concurrency`` at a time) and runs the same ``Converger`` a single
endpoint does. One endpoint that fails fails for itself: the others are
converged all the same, and each outcome says what happened there.

No Ansible import: the module hands in its parameters and gets plain data back.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_converge import (
    ConvergeError,
    Converger,
    describe_paths,
    diff_of,
)

DEFAULT_CONCURRENCY = 16


class FanoutError(Exception):
    """The list of endpoints (or how to reach them) is unusable; nothing was sent anywhere."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


def describe_endpoints(endpoints, limit=5):
    """``127.0.0.11:9999`` or ``3 endpoints (a, b, c)``, for messages about a whole call."""
    endpoints = [str(endpoint) for endpoint in endpoints]
    if len(endpoints) == 1:
        return endpoints[0]
    text = ", ".join(endpoints[:limit])
    if len(endpoints) > limit:
        text += " and %d more" % (len(endpoints) - limit)
    return "%d endpoints (%s)" % (len(endpoints), text)


def parse_endpoints(texts, process=None, concurrency=DEFAULT_CONCURRENCY):
    """Parse every endpoint before anything is sent; refuse an empty list, duplicates, a bad process prefix.

    Returns ``(endpoints, process)``: the parsed endpoints in input order and the checked process prefix.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise FanoutError("concurrency must be a whole number of at least 1, not %r; nothing was sent" % (concurrency,))
    if not texts:
        raise FanoutError("endpoints is empty: give at least one Runtime API endpoint; nothing was sent")
    endpoints, seen = [], {}
    for index, text in enumerate(texts):
        where = "endpoints[%d]" % index
        if not isinstance(text, str) or not text.strip():
            raise FanoutError("%s is empty; nothing was sent" % where)
        try:
            endpoint = api.parse_endpoint(text)
        except api.RuntimeApiError as exc:
            raise FanoutError("%s (%s): %s; nothing was sent" % (where, text, exc))
        if endpoint in seen:
            # Two sessions on one process would race each other's certificate transactions.
            raise FanoutError("%s (%s) is the same endpoint as endpoints[%d]; nothing was sent"
                              % (where, text, seen[endpoint]))
        seen[endpoint] = index
        endpoints.append(endpoint)
    try:
        process = api.check_process(process, endpoint=describe_endpoints(texts))
    except api.RuntimeApiError as exc:
        raise FanoutError("%s; nothing was sent" % exc)
    return endpoints, process


def converge_endpoint(endpoint, requests, process=None, timeout=api.DEFAULT_TIMEOUT, bufsize=api.DEFAULT_BUFSIZE,
                      check_mode=False, force=False, abort_pending=False):
    """Converge ``requests`` (from ``prepare_requests``) on one endpoint over one session.

    Returns ``(results, error, warnings)``: the per-certificate results (input
    order, as far as it got), the error message or None, and the warnings.
    Never raises for a Runtime API or convergence failure: that is the error.
    """
    results, warnings, error, converger = [], [], None, None
    try:
        with api.RuntimeSession(endpoint, process=process, timeout=timeout, bufsize=bufsize) as session:
            if not check_mode:
                session.require_admin()
            converger = Converger(session, check_mode=check_mode, force=force, abort_pending=abort_pending)
            results = converger.run(requests)
    except ConvergeError as exc:
        error, results = exc.message, exc.results
    except api.RuntimeApiError as exc:
        error = "%s on %s: %s" % (describe_paths(request.path for request in requests), endpoint, exc)
    if converger is not None:
        warnings = list(converger.warnings)
    return results, error, warnings


def converge_endpoints(endpoints, requests, process=None, timeout=api.DEFAULT_TIMEOUT, bufsize=api.DEFAULT_BUFSIZE,
                       check_mode=False, force=False, abort_pending=False, concurrency=DEFAULT_CONCURRENCY):
    """Converge the same ``requests`` on every endpoint (parsed by ``parse_endpoints``), in parallel.

    Returns ``(instances, warnings)``: one dict per endpoint in input order,
    ``{endpoint, failed, msg (on failure), changed, certificates}``, and the
    warnings of all endpoints, each naming its endpoint.
    """

    def one(endpoint):
        return converge_endpoint(endpoint, requests, process=process, timeout=timeout, bufsize=bufsize,
                                 check_mode=check_mode, force=force, abort_pending=abort_pending)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(endpoints)))) as pool:
        outcomes = list(pool.map(one, endpoints))
    instances, warnings = [], []
    for endpoint, (results, error, endpoint_warnings) in zip(endpoints, outcomes):
        instance = {
            "endpoint": str(endpoint),
            "failed": error is not None,
            "changed": any(result.get("changed") for result in results),
            "certificates": results,
        }
        if error is not None:
            instance["msg"] = error
        instances.append(instance)
        for warning in endpoint_warnings:
            text = warning if str(endpoint) in warning else "%s: %s" % (endpoint, warning)
            if text not in warnings:
                warnings.append(text)
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
