# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CA files and CRL files of running HAProxy processes: validate, compare, converge.

Shared by ``haproxy_ssl_ca_file`` and ``haproxy_ssl_crl_file``. A file is
converged with ``show ssl KIND NAME`` (compare), then, when it differs,
``new ssl KIND NAME`` (when HAProxy does not hold it), ``set ssl KIND NAME``,
``commit ssl KIND NAME`` and ``show`` again to verify. Any failure after the
``set`` aborts the transaction before the error is raised.
"""

from __future__ import annotations

import datetime
import re
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported by the modules
    HAS_CRYPTOGRAPHY = False

CA_FILE = "ca-file"
CRL_FILE = "crl-file"

_BLOCK_RE = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n.*?-----END (?P=label)-----", re.DOTALL)
_SET_RE = {
    CA_FILE: re.compile(r"^transaction (?:created|updated) for CA (?P<path>.+)!$", re.MULTILINE),
    CRL_FILE: re.compile(r"^transaction (?:created|updated) for CRL (?P<path>.+)!$", re.MULTILINE),
}
_NEW_TEXT = {CA_FILE: "New CA file created '%s'!", CRL_FILE: "New CRL file created '%s'!"}
_NOT_FOUND = {CA_FILE: "Can't display the CA file : Not found!", CRL_FILE: "Can't display the CRL file : Not found!"}
_OTHER_TRANSACTION_RE = re.compile(r"The ongoing transaction is about '(?P<path>[^']*)'")
_LOCKED_TEXT = "Operations on certificates are currently locked!"
_DATE_FORMAT = "%b %d %H:%M:%S %Y GMT"


class CaCrlError(IngressError):
    """A CA file or CRL file could not be validated or converged."""


class ValidationError(CaCrlError):
    """A given PEM is not what the module can send: nothing was sent."""


# -- local validation ------------------------------------------------------------------------------

def haproxy_serial(number):
    """A serial as HAProxy prints it: uppercase hex of whole bytes."""
    digits = format(number, "X")
    return digits if len(digits) % 2 == 0 else "0" + digits


def haproxy_name(name):
    """A distinguished name as HAProxy prints it: ``/O=.../CN=...`` in certificate order."""
    parts = []
    for rdn in name.rdns:
        for attribute in rdn:
            parts.append("%s=%s" % (attribute.rfc4514_attribute_name, attribute.value))
    return "/" + "/".join(parts)


def _utc(value):
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _blocks(text, where, wanted):
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("%s is empty; nothing was sent" % where)
    blocks = list(_BLOCK_RE.finditer(text))
    if not blocks:
        raise ValidationError("%s holds no PEM block; nothing was sent" % where)
    for block in blocks:
        if block.group("label") != wanted:
            raise ValidationError("%s holds a %s block, not only %s blocks; nothing was sent"
                                  % (where, block.group("label"), wanted))
    leftover = _BLOCK_RE.sub("", text).strip()
    if leftover:
        raise ValidationError("%s holds text outside its PEM blocks; nothing was sent" % where)
    return [block.group(0) for block in blocks]


def parse_ca_pem(text, where):
    """The certificates of a CA file (at least one); each summarised as HAProxy's ``show`` reports it."""
    result = []
    for index, block in enumerate(_blocks(text, where, "CERTIFICATE")):
        try:
            cert = x509.load_pem_x509_certificate(block.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValidationError("%s: certificate #%d does not parse (%s); nothing was sent" % (where, index + 1, exc))
        result.append({
            "cert": cert,
            "serial": haproxy_serial(cert.serial_number),
            "fingerprint": cert.fingerprint(hashes.SHA1()).hex().upper(),  # nosec - HAProxy's own fingerprint
            "subject": haproxy_name(cert.subject),
            "not_after": _utc(cert.not_valid_after_utc if hasattr(cert, "not_valid_after_utc")
                              else cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)),
        })
    return result


def _crl_time(crl, name):
    aware = getattr(crl, name + "_utc", None)
    if aware is not None:
        return aware
    naive = getattr(crl, name)
    return naive.replace(tzinfo=datetime.timezone.utc) if naive is not None else None


def _verified_by(crl, cas):
    for ca in cas:
        if ca["cert"].subject != crl.issuer:
            continue
        try:
            if crl.is_signature_valid(ca["cert"].public_key()):
                return ca
        except (TypeError, ValueError, InvalidSignature):
            continue
    return None


def parse_crl_pem(text, where, cas=None, allow_expired=False, now=None):
    """The CRLs of a CRL file, checked: each parses, is signed by a CA of ``cas`` (when given), is current.

    ``cas`` is the result of ``parse_ca_pem`` or None (no signature check).
    A CRL past its nextUpdate is refused unless ``allow_expired``.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    result = []
    for index, block in enumerate(_blocks(text, where, "X509 CRL")):
        what = "%s: CRL #%d" % (where, index + 1)
        try:
            crl = x509.load_pem_x509_crl(block.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValidationError("%s does not parse (%s); nothing was sent" % (what, exc))
        issuer = haproxy_name(crl.issuer)
        if cas is not None and _verified_by(crl, cas) is None:
            raise ValidationError("%s (issuer %s) is not signed by any CA of the given CA file; nothing was sent"
                                  % (what, issuer))
        next_update = _crl_time(crl, "next_update")
        if next_update is not None and next_update < now and not allow_expired:
            raise ValidationError("%s (issuer %s) is past its nextUpdate %s: HAProxy would reject every client of "
                                  "that CA; set allow_expired to send it anyway; nothing was sent"
                                  % (what, issuer, _utc(next_update)))
        result.append({
            "issuer": issuer,
            "last_update": _utc(_crl_time(crl, "last_update")),
            "next_update": _utc(next_update),
            "revoked": sorted(haproxy_serial(entry.serial_number) for entry in crl),
        })
    return result


# -- what HAProxy reports --------------------------------------------------------------------------

def _show_date(text):
    try:
        value = datetime.datetime.strptime(" ".join(text.split()), _DATE_FORMAT)
    except ValueError:
        return text.strip()
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_show_ca_file(reply):
    """``show ssl ca-file NAME``: the certificates in order (serial, fingerprint, subject, not_after)."""
    certs, current = [], None
    for line in reply.splitlines():
        line = line.strip()
        if re.match(r"^Certificate #\d+:$", line):
            current = {"serial": None, "fingerprint": None, "subject": None, "not_after": None}
            certs.append(current)
            continue
        if current is None:
            continue
        name, separator, value = line.partition(":")
        if not separator:
            continue
        value = value.strip()
        if name == "Serial":
            current["serial"] = value.upper()
        elif name == "SHA1 FingerPrint":
            current["fingerprint"] = value.upper()
        elif name == "Subject":
            current["subject"] = value
        elif name == "notAfter":
            current["not_after"] = _show_date(value)
    return certs


def parse_show_crl_file(reply):
    """``show ssl crl-file NAME``: the CRLs in order (issuer, last/next update, revoked serials)."""
    crls, current = [], None
    for line in reply.splitlines():
        stripped = line.strip()
        if re.match(r"^Certificate Revocation List #\d+:$", stripped):
            current = {"issuer": None, "last_update": None, "next_update": None, "revoked": []}
            crls.append(current)
            continue
        if current is None:
            continue
        name, separator, value = stripped.partition(":")
        if not separator:
            continue
        value = value.strip()
        if name == "Issuer":
            current["issuer"] = value
        elif name == "Last Update":
            current["last_update"] = _show_date(value)
        elif name == "Next Update":
            current["next_update"] = _show_date(value)
        elif name == "Serial Number":
            current["revoked"].append(value.upper())
    for crl in crls:
        crl["revoked"].sort()
    return crls


def summary(kind, entries):
    """What results and diffs show (never the parsed objects): per certificate or per CRL."""
    if kind == CA_FILE:
        return [{"subject": e["subject"], "serial": e["serial"], "fingerprint": e["fingerprint"],
                 "not_after": e["not_after"]} for e in entries]
    return [{"issuer": e["issuer"], "last_update": e["last_update"], "next_update": e["next_update"],
             "revoked": len(e["revoked"])} for e in entries]


def same(kind, held, wanted):
    """True when HAProxy holds exactly the wanted certificates (by fingerprint) or CRLs, in order."""
    if held is None or len(held) != len(wanted):
        return False
    if kind == CA_FILE:
        return [e["fingerprint"] for e in held] == [e["fingerprint"] for e in wanted]
    keys = ("issuer", "last_update", "next_update", "revoked")
    return all(all(h[k] == w[k] for k in keys) for h, w in zip(held, wanted))


# -- converging one endpoint -----------------------------------------------------------------------

class FileItem:
    """One file to converge: its HAProxy name, the PEM to send, the parsed entries."""

    def __init__(self, path, pem, entries):
        self.path = path
        self.pem = pem
        self.entries = entries


def _one_line(reply):
    return " / ".join(line.strip() for line in reply.strip().splitlines() if line.strip()) or "(empty reply)"


class Converger:
    """Converge a list of ``FileItem`` of one ``kind`` on one Runtime API session."""

    def __init__(self, session, kind, check_mode=False):
        self.session = session
        self.kind = kind
        self.check_mode = check_mode
        self.commands = []

    def _run(self, command, payload=None):
        self.commands.append(command)
        reply = self.session.execute(command, payload)
        if reply.strip() == "Permission denied":
            raise CaCrlError("the Runtime API socket at %s needs level admin: HAProxy answered 'Permission denied' "
                             "to `%s`" % (self.session.endpoint, command))
        return reply

    def _refused(self, command, reply, expected):
        other = _OTHER_TRANSACTION_RE.search(reply)
        if other:
            return CaCrlError("HAProxy at %s refused `%s`: a %s transaction on %s is open (another client's, or "
                              "one left behind); %s"
                              % (self.session.endpoint, command, self.kind, other.group("path"), _one_line(reply)))
        if _LOCKED_TEXT in reply:
            return CaCrlError("HAProxy at %s answered `%s` with %r: another client is changing certificates; "
                              "try again" % (self.session.endpoint, command, _LOCKED_TEXT))
        return CaCrlError("HAProxy at %s refused `%s` (expected %s): %s"
                          % (self.session.endpoint, command, expected, _one_line(reply)))

    def show(self, path):
        """The entries HAProxy holds for ``path``, or None when it holds no such file."""
        command = "show ssl %s %s" % (self.kind, path)
        reply = self._run(command)
        if _NOT_FOUND[self.kind] in reply:
            return None
        if ("Filename: %s" % path) not in reply and ("Filename: *%s" % path) not in reply:
            raise self._refused(command, reply, "the file's details (Filename: %s)" % path)
        return parse_show_ca_file(reply) if self.kind == CA_FILE else parse_show_crl_file(reply)

    def converge(self, item):
        held = self.show(item.path)
        result = {"path": item.path, "before": summary(self.kind, held) if held is not None else None,
                  "after": summary(self.kind, item.entries)}
        if same(self.kind, held, item.entries):
            result.update(action="unchanged", changed=False)
            return result
        result.update(action="created" if held is None else "updated", changed=True)
        if self.check_mode:
            return result
        if held is None:
            command = "new ssl %s %s" % (self.kind, item.path)
            reply = self._run(command)
            if _NEW_TEXT[self.kind] % item.path not in reply:
                raise self._refused(command, reply, repr(_NEW_TEXT[self.kind] % item.path))
        command = "set ssl %s %s" % (self.kind, item.path)
        reply = self._run(command, item.pem)
        match = _SET_RE[self.kind].search(reply)
        if not match or match.group("path") != item.path:
            error = self._refused(command, reply, "a transaction for %s" % item.path)
            if match:  # a transaction on another file took our payload (HAProxy builds without the 2024 fix)
                self._abort(match.group("path"))
            raise error
        try:
            command = "commit ssl %s %s" % (self.kind, item.path)
            reply = self._run(command)
            if "Success!" not in reply:
                raise self._refused(command, reply, "Success!")
        except BaseException:
            self._abort(item.path)
            raise
        now = self.show(item.path)
        if not same(self.kind, now, item.entries):
            raise CaCrlError("HAProxy at %s committed %s but `show ssl %s` does not list what was sent: %r"
                             % (self.session.endpoint, item.path, self.kind,
                                summary(self.kind, now) if now is not None else None))
        result["after"] = summary(self.kind, now)
        return result

    def _abort(self, path):
        try:
            self._run("abort ssl %s %s" % (self.kind, path))
        except api.RuntimeApiError:  # the connection is gone: HAProxy drops the transaction with it
            pass


def converge_endpoint(target, kind, items, check_mode, timeout, bufsize):
    """Converge ``items`` on one ``Target``; return its result dict (never raises for the endpoint's own failure)."""
    result = {"endpoint": str(target.endpoint), "failed": False, "changed": False}
    converger = None
    try:
        with api.RuntimeSession(target.endpoint, process=target.process, timeout=timeout, bufsize=bufsize) as session:
            converger = Converger(session, kind, check_mode)
            files = []
            for item in items:
                files.append(converger.converge(item))
            result["files"] = files
            result["changed"] = any(entry["changed"] for entry in files)
    except (api.RuntimeApiError, CaCrlError) as exc:
        result.update(failed=True, msg=str(exc))
    if converger is not None:
        result["commands"] = len(converger.commands)
    return result


def converge_all(targets, kind, items, check_mode, timeout, bufsize, concurrency):
    """Every target in parallel (at most ``concurrency`` at a time); results in target order."""
    if len(targets) == 1:
        return [converge_endpoint(targets[0], kind, items, check_mode, timeout, bufsize)]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(targets))) as pool:
        futures = [pool.submit(converge_endpoint, target, kind, items, check_mode, timeout, bufsize)
                   for target in targets]
        return [future.result() for future in futures]


# -- the modules' entry point ----------------------------------------------------------------------

def _read(entry, where):
    from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
    if entry.get("src") is not None:
        try:
            data = _pem.read_file(entry["src"])
        except IngressError as exc:
            raise ValidationError("%s: %s; nothing was sent" % (where, exc))
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            raise ValidationError("%s: %s is not a PEM text file; nothing was sent" % (where, entry["src"]))
    if entry.get("content") is not None:
        return entry["content"]
    raise ValidationError("%s: give src or content; nothing was sent" % where)


def file_entries(params, list_key):
    """The files of a call: ``path`` with ``src``/``content``, or the list under ``list_key``."""
    if params.get(list_key) is not None:
        if not params[list_key]:
            raise ValidationError("%s is empty; nothing was sent" % list_key)
        return [(entry, "%s[%d] (%s)" % (list_key, index, entry.get("path")))
                for index, entry in enumerate(params[list_key])]
    return [({"path": params["path"], "src": params.get("src"), "content": params.get("content")},
             "path %s" % params["path"])]


def prepare_items(kind, params, list_key, cas=None, allow_expired=False, now=None, bufsize=api.DEFAULT_BUFSIZE):
    """Read and validate every file before any connection; refuse names HAProxy would split, duplicates, and
    payloads larger than HAProxy's buffer."""
    items, seen = [], set()
    for entry, where in file_entries(params, list_key):
        path = entry.get("path")
        try:
            api.check_name(path, "path")
        except api.RuntimeApiError as exc:
            raise ValidationError("%s: %s" % (where, exc) if "nothing was sent" in str(exc)
                                  else "%s: %s; nothing was sent" % (where, exc))
        if path in seen:
            raise ValidationError("%s is listed twice; nothing was sent" % where)
        seen.add(path)
        text = _read(entry, where)
        if kind == CA_FILE:
            entries = parse_ca_pem(text, where)
        else:
            entries = parse_crl_pem(text, where, cas=cas, allow_expired=allow_expired, now=now)
        pem = "".join(match.group(0) + "\n" for match in _BLOCK_RE.finditer(text))
        size = api.command_bytes("set ssl %s %s" % (kind, path), pem, params.get("process"))
        if size > bufsize - api.BUFSIZE_MARGIN:
            raise ValidationError("%s: `set ssl %s` with this payload is %d bytes, more than HAProxy's buffer takes "
                                  "(tune_bufsize %d, at most %d bytes per command); split it into several files or "
                                  "raise tune.bufsize; nothing was sent"
                                  % (where, kind, size, bufsize, bufsize - api.BUFSIZE_MARGIN))
        items.append(FileItem(path, pem, entries))
    return items


def diff_of(instances, many):
    """One diff per endpoint and changed file: summaries only."""
    entries = []
    for instance in instances:
        for entry in instance.get("files", []):
            if not entry["changed"]:
                continue
            header = "%s %s" % (instance["endpoint"], entry["path"]) if many else entry["path"]
            entries.append({"before_header": header, "after_header": header,
                            "before": {"entries": entry["before"]}, "after": {"entries": entry["after"]}})
    return entries


def run(module, kind, list_key):
    """Everything a module run does; returns the exit result or raises CaCrlError carrying the result keys."""
    from ansible_collections.ingress.haproxy.plugins.module_utils import _pem
    from ansible_collections.ingress.haproxy.plugins.module_utils import _ssl_cert_fanout as fanout
    params = module.params
    many = params["endpoints"] is not None
    empty = {"instances" if many else "files": [], "changed": False}
    try:
        _pem.require_cryptography()
    except IngressError as exc:
        raise CaCrlError(str(exc), **empty)
    if params["tune_bufsize"] < 1024:
        raise CaCrlError("tune_bufsize %d is too small (HAProxy's default is 16384); nothing was sent"
                         % params["tune_bufsize"], **empty)
    try:
        cas = None
        if kind == CRL_FILE and (params.get("ca_src") is not None or params.get("ca_content") is not None):
            cas = parse_ca_pem(_read({"src": params.get("ca_src"), "content": params.get("ca_content")},
                                     "ca_src/ca_content"), "the CA file given to verify the CRLs (ca_src/ca_content)")
        items = prepare_items(kind, params, list_key, cas=cas, allow_expired=params.get("allow_expired", False),
                              bufsize=params["tune_bufsize"])
        if many:
            targets = fanout.parse_endpoints(params["endpoints"], process=params["process"],
                                             concurrency=params["concurrency"])
            for target in targets:
                if target.cert_dir or target.crt_list:
                    raise CaCrlError("endpoints: cert_dir and crt_list do not apply to %s; nothing was sent" % kind)
        else:
            endpoint = api.parse_endpoint(params["endpoint"])
            targets = [fanout.Target(endpoint, api.check_process(params["process"], endpoint=params["endpoint"]))]
    except (api.RuntimeApiError, IngressError) as exc:
        raise CaCrlError(str(exc), **empty)
    instances = converge_all(targets, kind, items, module.check_mode, params["timeout"], params["tune_bufsize"],
                             params.get("concurrency") or 1)
    changed = any(instance["changed"] for instance in instances)
    failed = [instance for instance in instances if instance["failed"]]
    if many:
        output = {"changed": changed, "instances": instances}
    else:
        output = {"changed": changed, "files": instances[0].get("files", []),
                  "commands": instances[0].get("commands", 0)}
    if module._diff:
        output["diff"] = diff_of(instances, many)
    if failed:
        message = "; ".join("%s: %s" % (instance["endpoint"], instance["msg"]) for instance in failed)
        if many:
            message = "%d of %d endpoints failed: %s" % (len(failed), len(instances), message)
        raise CaCrlError(message, **output)
    return output
