# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin util is private, not for use outside this collection.
# It can change or disappear in any release.

"""Every decision the certificates role makes, as plain functions over plain data.

The role's task files run modules and hand their results here; these
functions say what is due, what each instance loads, what to persist where,
and what the push, verify and status outcomes are. Results are keyed by
certificate name and instance name, never by position, so the steps that
build on them (rollout waves, rollback, CA files) read them by name.

Endpoint parsing, the crt-list line and the cert_dir mapping are those of
the modules (module_utils), so the role and the modules never disagree.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import posixpath
import re
import typing as t

from ansible.module_utils.parsing.convert_bool import BOOLEANS_FALSE, BOOLEANS_TRUE

from ansible_collections.ingress.haproxy.plugins.module_utils import _runtime_api as api
from ansible_collections.ingress.haproxy.plugins.module_utils import _ssl_ca_crl
from ansible_collections.ingress.haproxy.plugins.module_utils._errors import IngressError
from ansible_collections.ingress.haproxy.plugins.module_utils._pem import format_serial
from ansible_collections.ingress.haproxy.plugins.module_utils._ssl_cert_converge import Request


class CertificatesRoleError(Exception):
    """A role variable or a step's input is unusable; the message names the variable and what is wrong."""


# Every boolean and number variable of the role, coerced once: CI passes `-e NAME=false` as a string.
BOOLEAN_VARIABLES = (
    "certificates_allow_expired",
    "certificates_acme_terms_agreed",
    "certificates_validate_certs",
    "certificates_force_renew",
    "certificates_preflight",
    "certificates_abort_pending",
    "certificates_allow_no_instances",
    "certificates_rollback",
    "certificates_crl_allow_expired",
    "certificates_acme_ari",
)
# name -> smallest value allowed
INTEGER_VARIABLES = {
    "certificates_acme_timeout": 1,
    "certificates_key_size": 1024,
    "certificates_rfc2136_port": 1,
    "certificates_rfc2136_ttl": 0,
    "certificates_rfc2136_timeout": 1,
    "certificates_rfc2136_propagation_seconds": 0,
    "certificates_dns_port": 1,
    "certificates_runtime_port": 1,
    "certificates_runtime_timeout": 1,
    "certificates_runtime_bufsize": 1024,
    "certificates_push_concurrency": 1,
    "certificates_verify_port": 1,
    "certificates_verify_timeout": 1,
    "certificates_verify_concurrency": 1,
    "certificates_status_fail_days": 0,
    "certificates_rollout_canary": 0,
    "certificates_rollout_wave_size": 0,
    "certificates_rollout_pause": 0,
}
# community.general.nsupdate's default for its timeout option.
NSUPDATE_DEFAULT_TIMEOUT = 10
SOURCES = ("acme", "certbot", "tls_secret", "files")
FILE_SOURCE_KEYS = ("certificate", "chain", "fullchain", "privatekey", "privatekey_passphrase")
ITEM_KEYS = (
    "name", "domains", "haproxy_path", "crt_list", "crt_list_options", "sni_filters", "state",
    "verify_servername", "certbot_live", "tls_secret_dir", "challenge_zone", "key_types", "haproxy_paths",
) + FILE_SOURCE_KEYS
# certificates_items[].key_types: name -> (certificates_key_type, curve, size, served key type, path suffix)
KEY_TYPE_SPECS = {
    "ec256": ("ECC", "secp256r1", None, "EC", ".ecdsa"),
    "ec384": ("ECC", "secp384r1", None, "EC", ".ecdsa"),
    "rsa2048": ("RSA", "", 2048, "RSA", ".rsa"),
    "rsa3072": ("RSA", "", 3072, "RSA", ".rsa"),
    "rsa4096": ("RSA", "", 4096, "RSA", ".rsa"),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def to_bool(value: t.Any, name: str) -> bool:
    """A boolean variable as Ansible users write it: true/false, yes/no, on/off, 1/0, in any case."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else value
    if text in BOOLEANS_TRUE:
        return True
    if text in BOOLEANS_FALSE or text is None:
        return False
    raise CertificatesRoleError(f"{name} is {value!r}, which is not a boolean (true/false, yes/no).")


def to_int(value: t.Any, name: str, minimum: int = 0) -> int:
    """A whole-number variable, given as a number or as its text (`-e NAME=30`)."""
    if isinstance(value, bool):
        raise CertificatesRoleError(f"{name} is {value!r}, which is not a whole number.")
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise CertificatesRoleError(f"{name} is {value!r}, which is not a whole number.") from None
    if isinstance(value, float) and number != value:
        raise CertificatesRoleError(f"{name} is {value!r}, which is not a whole number.")
    if number < minimum:
        raise CertificatesRoleError(f"{name} is {number}, less than the smallest allowed value {minimum}.")
    return number


# name -> smallest value allowed; empty means unset (None)
OPTIONAL_INTEGER_VARIABLES = {
    "certificates_renew_days": 0,
}
DEFAULT_RENEW_BEFORE_RATIO = 0.33


def to_ratio(value: t.Any, name: str) -> float:
    """A part of a whole, more than 0 and less than 1, given as a number or as its text (`-e NAME=0.5`)."""
    if isinstance(value, bool):
        raise CertificatesRoleError(f"{name} is {value!r}, which is not a number between 0 and 1.")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise CertificatesRoleError(f"{name} is {value!r}, which is not a number between 0 and 1.") from None
    if not 0 < number < 1:
        raise CertificatesRoleError(f"{name} is {value!r}: it must be more than 0 and less than 1 "
                                    "(the part of a certificate's lifetime left when it is renewed).")
    return number


def settings(variables: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The role's boolean and number variables, coerced and checked, keyed without the `certificates_` prefix.

    `variables` holds the role's variables (the ones it has); a variable that is
    missing keeps no entry. Every bad value is named in one error.
    """
    coerced: dict[str, t.Any] = {}
    problems = []
    for name in BOOLEAN_VARIABLES:
        if name in variables:
            try:
                coerced[name[len("certificates_"):]] = to_bool(variables[name], name)
            except CertificatesRoleError as exc:
                problems.append(str(exc))
    for name, minimum in INTEGER_VARIABLES.items():
        if name in variables:
            try:
                coerced[name[len("certificates_"):]] = to_int(variables[name], name, minimum)
            except CertificatesRoleError as exc:
                problems.append(str(exc))
    for name, minimum in OPTIONAL_INTEGER_VARIABLES.items():
        if name in variables:
            value = variables[name]
            try:
                coerced[name[len("certificates_"):]] = (
                    None if value is None or (isinstance(value, str) and not value.strip())
                    else to_int(value, name, minimum))
            except CertificatesRoleError as exc:
                problems.append(str(exc))
    if "certificates_renew_before_ratio" in variables:
        try:
            coerced["renew_before_ratio"] = to_ratio(variables["certificates_renew_before_ratio"],
                                                     "certificates_renew_before_ratio")
        except CertificatesRoleError as exc:
            problems.append(str(exc))
    if problems:
        raise CertificatesRoleError(" ".join(problems) + " Nothing was changed.")
    if "rfc2136_timeout" in coerced:
        # nsupdate's timeout option needs community.general 13 (ansible-core 2.18): pass it only when it differs
        # from nsupdate's own default, so the declared floor (community.general 8) holds for everyone else.
        timeout = coerced["rfc2136_timeout"]
        coerced["rfc2136_timeout_option"] = None if timeout == NSUPDATE_DEFAULT_TIMEOUT else timeout
    return coerced


def acme_contact(value: t.Any) -> list[str]:
    """`certificates_acme_contact` as the ACME account's contact URIs.

    Accepts `a@b`, `mailto:a@b`, or a list of either; an empty value means no contact.
    """
    if value is None or value == "":
        return []
    entries = value if isinstance(value, (list, tuple)) else [value]
    contacts = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise CertificatesRoleError(
                f"certificates_acme_contact holds {entry!r}: give an e-mail address (a@b or mailto:a@b) or a list of them."
            )
        address = entry.strip()
        address = address[len("mailto:"):] if address.lower().startswith("mailto:") else address
        if address.count("@") != 1 or address.startswith("@") or address.endswith("@") or any(c.isspace() for c in address):
            raise CertificatesRoleError(f"certificates_acme_contact holds {entry!r}, which is not an e-mail address.")
        contacts.append("mailto:" + address)
    return contacts


def acme_terms_problem(directory: t.Any, terms_agreed: bool, directory_url: str) -> str:
    """Why ordering would fail on the CA's terms of service, or '' when it would not."""
    meta = directory.get("meta") if isinstance(directory, dict) else None
    terms = meta.get("termsOfService") if isinstance(meta, dict) else None
    if terms and not terms_agreed:
        return (f"The ACME CA at {directory_url} asks to agree to its terms of service ({terms}): read them and set "
                "certificates_acme_terms_agreed to true. Nothing was ordered.")
    return ""


def acme_profile_problem(directory: t.Any, profile: str, directory_url: str) -> str:
    """Why ordering with certificates_acme_profile would fail (the CA does not offer it), or '' when it would not."""
    if not profile:
        return ""
    meta = directory.get("meta") if isinstance(directory, dict) else None
    profiles = meta.get("profiles") if isinstance(meta, dict) else None
    if not isinstance(profiles, dict) or not profiles:
        return (f"certificates_acme_profile is {profile!r}, but the ACME CA at {directory_url} offers no profiles: "
                "leave certificates_acme_profile empty. Nothing was ordered.")
    if profile not in profiles:
        return (f"certificates_acme_profile is {profile!r}, which the ACME CA at {directory_url} does not offer "
                f"(it offers {', '.join(sorted(profiles))}). Nothing was ordered.")
    return ""


def acme_eab_problem(directory: t.Any, kid: str, hmac_key: str, directory_url: str) -> str:
    """Why registering the account would fail for want of External Account Binding, or ''.

    Never echoes the MAC key: only whether it is set.
    """
    if bool(kid) != bool(hmac_key):
        given, missing = ("certificates_acme_eab_kid", "certificates_acme_eab_hmac_key") if kid else (
            "certificates_acme_eab_hmac_key", "certificates_acme_eab_kid")
        return (f"{given} is set but {missing} is empty: External Account Binding needs both (the key ID and the "
                "MAC key your CA account shows). Nothing was ordered.")
    meta = directory.get("meta") if isinstance(directory, dict) else None
    if not kid and isinstance(meta, dict) and meta.get("externalAccountRequired") is True:
        return (f"the ACME CA at {directory_url} requires External Account Binding: set certificates_acme_eab_kid "
                "and certificates_acme_eab_hmac_key (the key ID and MAC key your CA account shows). "
                "Nothing was ordered.")
    return ""


def _item_error(index: int, item: t.Any, message: str) -> CertificatesRoleError:
    name = item.get("name") if isinstance(item, dict) else None
    where = f"certificates_items[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")
    return CertificatesRoleError(f"{where}: {message}. Nothing was changed.")


def select(items: t.Any, only: t.Any, source: str) -> list[dict[str, t.Any]]:
    """Check certificates_items and pick this run's certificates (all, or those named in certificates_only).

    Returns normalised items: every key present (empty when not given), state
    `present` or `absent`, domains lowercased.
    """
    if source not in SOURCES:
        raise CertificatesRoleError(f"certificates_source is {source!r}; use one of {', '.join(SOURCES)}.")
    if not isinstance(items, list) or not items:
        raise CertificatesRoleError("certificates_items is empty: list at least one certificate.")
    selected, seen = [], {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _item_error(index, item, "is not a dict")
        unknown = sorted(set(item) - set(ITEM_KEYS))
        if unknown:
            raise _item_error(index, item, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(ITEM_KEYS)})")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _item_error(index, item, "name must be letters, digits, '.', '_' and '-', starting with a letter or digit")
        if name in seen:
            raise _item_error(index, item, f"name {name} is already used by certificates_items[{seen[name]}]")
        seen[name] = index
        path = item.get("haproxy_path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise _item_error(index, item, f"haproxy_path must be an absolute path, not {path!r}")
        state = item.get("state") or "present"
        if state not in ("present", "absent"):
            raise _item_error(index, item, f"state must be present or absent, not {state!r}")
        domains = item.get("domains") or []
        if isinstance(domains, str):
            domains = [domains]
        if not isinstance(domains, list) or not all(isinstance(domain, str) and domain for domain in domains):
            raise _item_error(index, item, "domains must be a list of DNS names")
        if source == "acme" and state == "present" and not domains:
            raise _item_error(index, item, "needs a non-empty domains list (certificates_source is acme)")
        sni_filters = item.get("sni_filters") or []
        if isinstance(sni_filters, str):
            sni_filters = sni_filters.split()
        challenge_zone = item.get("challenge_zone") or ""
        if not isinstance(challenge_zone, str):
            raise _item_error(index, item, f"challenge_zone must be a DNS zone name, not {challenge_zone!r}")
        normalised = {key: item.get(key) or "" for key in ITEM_KEYS}
        normalised.update(name=name, haproxy_path=path, state=state, sni_filters=list(sni_filters),
                          domains=[domain.lower() for domain in domains],
                          challenge_zone=challenge_zone.strip().strip(".").lower(),
                          crt_list_options=_bare_options(item.get("crt_list_options")),
                          key_types=[], haproxy_paths={}, group=name, key_type="", key_curve="", key_size=None,
                          served_key_type="")
        selected.extend(_per_key_type(index, item, normalised, source))
    only = [] if only in (None, "") else ([only] if isinstance(only, str) else list(only))
    known = set(seen) | {entry["name"] for entry in selected}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise CertificatesRoleError(
            f"certificates_only names {', '.join(map(str, unknown))}, which certificates_items does not hold "
            f"(known: {', '.join(seen)})."
        )
    return [item for item in selected if not only or item["name"] in only or item["group"] in only]


def _per_key_type(index: int, item: dict, normalised: dict, source: str) -> list[dict]:
    """An item with key_types as one certificate per type (`NAME.TYPE`, its own HAProxy path, same names and SNI).

    Every later step (renew, bundle, persist, push, verify, report) handles
    them as separate certificates; `group` keeps the item's name for
    certificates_only, `served_key_type` makes verify ask as a client that can
    use only that kind of key.
    """
    key_types = item.get("key_types") or []
    paths = item.get("haproxy_paths") or {}
    if isinstance(key_types, str):
        key_types = [key_types]
    if not isinstance(key_types, list) or not all(isinstance(kind, str) for kind in key_types):
        raise _item_error(index, item, "key_types must be a list like [ec256, rsa2048]")
    if not isinstance(paths, dict):
        raise _item_error(index, item, "haproxy_paths must map key types to paths, like {rsa2048: /etc/haproxy/certs/x.rsa.pem}")
    if not key_types:
        if paths:
            raise _item_error(index, item, "haproxy_paths is set but key_types is empty")
        return [normalised]
    unknown = [kind for kind in key_types if kind not in KEY_TYPE_SPECS]
    if unknown:
        raise _item_error(index, item, f"key_types: unknown {', '.join(unknown)} (known: {', '.join(KEY_TYPE_SPECS)})")
    if len(set(key_types)) != len(key_types):
        raise _item_error(index, item, "key_types lists a type twice")
    if source != "acme":
        raise _item_error(index, item, "key_types needs certificates_source acme (the role orders one certificate per type)")
    stray = sorted(set(paths) - set(key_types))
    if stray:
        raise _item_error(index, item, f"haproxy_paths names {', '.join(map(str, stray))}, not in key_types")
    expanded, used = [], {}
    for kind in key_types:
        key_type, curve, size, served, suffix = KEY_TYPE_SPECS[kind]
        path = paths.get(kind) or normalised["haproxy_path"] + suffix
        if not isinstance(path, str) or not path.startswith("/"):
            raise _item_error(index, item, f"haproxy_paths.{kind} must be an absolute path, not {path!r}")
        if path in used:
            raise _item_error(index, item, f"key types {used[path]} and {kind} would both be {path}: "
                                           "name one of them in haproxy_paths")
        used[path] = kind
        expanded.append(dict(normalised, name=f"{normalised['name']}.{kind}", haproxy_path=path, key_types=[kind],
                             key_type=key_type, key_curve=curve, key_size=size, served_key_type=served))
    return expanded


def _bare_options(options: t.Any) -> str:
    """crt-list SSL options without their brackets (the modules add them)."""
    text = (options or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1].strip()
    return text


def _in_zone(name: str, zone: str) -> bool:
    name = name.rstrip(".")
    return name == zone or name.endswith("." + zone)


def challenge_plan(selected: list[dict], due_names: t.Iterable[str], server: str, port: int, zone: str,
                   timeout: float, dns_client: t.Any = None) -> dict[str, t.Any]:
    """Where each due domain's DNS-01 TXT record is written: `{records: {RECORD: {target, zone}}, problem}`.

    `_acme-challenge.DOMAIN` is followed through its CNAMEs (see _challenge_dns);
    the TXT goes to the last name, in the item's `challenge_zone` when set,
    else in `certificates_rfc2136_zone` when it lies there, else in the zone the
    RFC 2136 server holds for it. `problem` names every domain whose record has
    no such place ('' when all have one); then nothing is ordered.
    """
    from ansible_collections.ingress.haproxy.plugins.plugin_utils._challenge_dns import (
        ChallengeDns, ChallengeDnsError)

    zone = zone.strip().rstrip(".").lower()
    due = set(due_names)
    records: dict[str, dict] = {}
    problems = []
    client = None
    for item in selected:
        if item["state"] != "present" or item["name"] not in due:
            continue
        for domain in item["domains"]:
            bare = domain.rstrip(".")
            record = "_acme-challenge." + (bare[2:] if bare.startswith("*.") else bare) + "."
            if record in records:
                continue
            try:
                client = client or dns_client or ChallengeDns(server, port, timeout)
                # The system resolver is asked only for names outside the RFC 2136 zone: inside it the server must answer.
                chain = client.target(record, ask_system=not _in_zone(record, zone))
                target = chain[-1]
                if item["challenge_zone"]:
                    target_zone = item["challenge_zone"]
                    if not _in_zone(target, target_zone):
                        raise ChallengeDnsError(
                            f"{' -> '.join(chain)} does not end in zone {target_zone} "
                            f"(certificates_items entry {item['name']}, challenge_zone)")
                elif _in_zone(target, zone):
                    target_zone = zone
                elif len(chain) == 1:
                    raise ChallengeDnsError(
                        f"{domain} not in zone {zone} (certificates_rfc2136_zone) and {record} is no CNAME into "
                        "another zone: its _acme-challenge record cannot be written there")
                else:
                    target_zone = client.zone_of(target) or ""
                    if not target_zone:
                        raise ChallengeDnsError(
                            f"{' -> '.join(chain)}: the RFC 2136 server {server}:{port} holds no zone for {target}; "
                            f"set challenge_zone in certificates_items entry {item['name']}")
            except ChallengeDnsError as exc:
                problems.append(str(exc))
                continue
            records[record] = {"target": target, "zone": target_zone, "chain": chain}
    problem = ("; ".join(problems) + ("" if problems[-1].endswith(".") else ".") + " Nothing was ordered."
               if problems else "")
    return {"records": records, "problem": problem}


# --- renew -------------------------------------------------------------------------------------------------


def _read_certificate(path: str):
    from cryptography import x509  # the collection's declared requirement, only needed to renew

    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def _key_description(certificate) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECC:" + key.curve.name
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    return type(key).__name__


def _days(seconds: float) -> str:
    """Seconds as days for a sentence: `6`, `0.5`, `89.9`."""
    text = f"{seconds / 86400:.1f}"
    return text[:-2] if text.endswith(".0") else text


# RFC 9773 asks clients to wait as long as the CA's Retry-After says; a CA that sends none is asked again after this.
ARI_DEFAULT_RETRY_SECONDS = 6 * 3600
_RFC3339_RE = re.compile(r"^(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:?\d\d)$")


def _parse_time(text: t.Any) -> datetime.datetime:
    """An RFC 3339 timestamp (as ARI answers carry them, with any number of fraction digits) as an aware datetime."""
    match = _RFC3339_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp")
    day, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else (zone if ":" in zone else zone[:3] + ":" + zone[3:])
    fraction = "." + (fraction + "000000")[:6] if fraction else ""
    return datetime.datetime.fromisoformat(f"{day}T{clock}{fraction}{zone}").astimezone(datetime.timezone.utc)


def _format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


ARI_MODULE = "community.crypto.acme_ari_info"


def ari_unavailable(directory: t.Any) -> str:
    """Why the CA's renewal information cannot be asked ('' when it can): the CA or the installed community.crypto.

    `directory` is the ACME directory fetch's result (ansible.builtin.uri).
    """
    body = directory.get("json") if isinstance(directory, dict) else None
    if not isinstance(body, dict) or "newOrder" not in body:
        status = directory.get("status", "none") if isinstance(directory, dict) else "none"
        return ("the CA was not asked for renewal information (ARI): its directory did not answer "
                f"(HTTP status {status})")
    if "renewalInfo" not in body:
        return "the CA offers no renewal information (ARI)"
    from ansible.plugins.loader import module_loader  # only on the controller, inside a run

    if not module_loader.find_plugin_with_context(ARI_MODULE).resolved:
        return (f"the CA offers renewal information (ARI) but the installed community.crypto has no {ARI_MODULE} "
                "(2.20.0 or later asks it; certificates_acme_ari false silences this)")
    return ""


def ari_path(store_dir: str, name: str) -> str:
    """Where the CA's last renewal information for a certificate is kept (not in live/NAME, which watchers follow)."""
    return os.path.join(store_dir, "ari", name + ".json")


def _stored_ari(path: str) -> dict | None:
    """The kept renewal information, or None when there is none or it is unreadable (then it is asked again)."""
    try:
        with open(path, encoding="utf-8") as handle:
            answer = json.load(handle)
        for key in ("window_start", "window_end", "next_ask"):
            _parse_time(answer[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return answer if isinstance(answer.get("serial"), str) else None


def ari_answers(results: list[dict], now: datetime.datetime | None = None) -> dict[str, dict]:
    """community.crypto.acme_ari_info's results (looped over the decisions that asked) as the answers to keep.

    An answer names the serial it is for, the window, the CA's explanation
    URL, when it was asked and when the CA may be asked again (its
    Retry-After, or 6 hours when it sends none). A failed or malformed answer
    becomes `{"serial", "problem"}`: the decision says so and the next run asks
    again.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    answers = {}
    for result in results:
        decision = result.get("decision") or {}
        name, serial = decision.get("name"), decision.get("serial")
        if not name:
            continue
        if result.get("failed") or result.get("skipped"):
            answers[name] = {"serial": serial, "problem": str(result.get("msg") or "no answer")}
            continue
        info = result.get("renewal_info") or {}
        window = info.get("suggestedWindow") or {}
        try:
            start, end = _parse_time(window["start"]), _parse_time(window["end"])
            if end <= start:
                raise ValueError("the window ends before it starts")
            next_ask = (_parse_time(info["retryAfter"]) if info.get("retryAfter")
                        else now + datetime.timedelta(seconds=ARI_DEFAULT_RETRY_SECONDS))
        except (KeyError, TypeError, ValueError) as exc:
            answers[name] = {"serial": serial, "problem": f"unusable renewal information ({exc})"}
            continue
        answers[name] = {
            "serial": serial, "window_start": _iso(start), "window_end": _iso(end),
            "explanation_url": str(info.get("explanationURL") or ""), "asked": _iso(now), "next_ask": _iso(next_ask),
        }
    return answers


def ari_store_entries(answers: t.Mapping[str, dict], store_dir: str) -> list[dict]:
    """The answers worth keeping (not the failed ones), as files to write: `{name, path, content}`."""
    return [{"name": name, "path": ari_path(store_dir, name), "content": json.dumps(answer, indent=2, sort_keys=True)}
            for name, answer in sorted(answers.items()) if "problem" not in answer]


def _ari_moment(serial: str, start: datetime.datetime, end: datetime.datetime) -> datetime.datetime:
    """The point of the CA's window at which this certificate is renewed.

    RFC 9773 has each client pick a random time in the window so that renewals
    spread over it; a point drawn from the serial's hash spreads them the same
    way and stays put from one run to the next.
    """
    share = int.from_bytes(hashlib.sha256(serial.encode()).digest()[:8], "big") / 2.0 ** 64
    return start + (end - start) * share


def _ari_decision(decision: dict, answer: dict | None, now: datetime.datetime, asked_now: bool,
                  unasked_because: str) -> None:
    """Add the CA's renewal information to a decision that is not otherwise due."""
    if answer is None:
        if unasked_because:
            decision["note"] += f"; {unasked_because}"
        return
    if "problem" in answer:
        decision["note"] += f"; the CA's renewal information (ARI) could not be read: {answer['problem']}"
        return
    start, end = _parse_time(answer["window_start"]), _parse_time(answer["window_end"])
    moment = _ari_moment(decision["serial"], start, end)
    explained = f" (the CA explains: {answer['explanation_url']})" if answer.get("explanation_url") else ""
    if now >= moment:
        decision["reason"] = (f"inside the CA's renewal window (ARI) {_format_time(start)} to {_format_time(end)}"
                              f"{explained}")
        return
    asked = ("asked now" if asked_now
             else f"asked {_format_time(_parse_time(answer['asked']))}, asked again after "
                  f"{_format_time(_parse_time(answer['next_ask']))} (the CA's Retry-After)")
    decision["note"] += (f"; ARI window opens {_format_time(start)}, renewing at {_format_time(moment)}"
                         f"{explained} ({asked})")


def renewal_decisions(selected: list[dict], store_dir: str, key_type: str, key_curve: str, renew_days: t.Any,
                      force: bool, renew_before_ratio: float = DEFAULT_RENEW_BEFORE_RATIO,
                      now: datetime.datetime | None = None, ari: bool = False,
                      ari_answers_now: t.Mapping[str, dict] | None = None, ari_unasked: str = "") -> dict[str, dict]:
    """For every present certificate: whether it is due and why, keyed by name.

    Due when its files are missing, its names or key type changed, or `force`;
    then, when `renew_days` is set (not None), when fewer days are left;
    otherwise when less than `renew_before_ratio` of its lifetime (notBefore
    to notAfter) is left, so a 6-day certificate is renewed with 2 days left
    and a 90-day one with 29.7. `reason` says why it is due (empty when not);
    `note` says when a current one will be.

    With `ari`, a certificate not due by those rules is due once its point in
    the CA's renewal window (RFC 9773) has come. The window is the one kept in
    the store (`ari/NAME.json`) for this serial, or the one just asked
    (`ari_answers_now`, the second pass). `ari_ask` marks the decisions whose
    kept answer is missing, for another serial, or past the CA's Retry-After:
    the role asks the CA for those, then decides again. `ari_unasked` says why
    nothing was asked (a CA without renewal information). `replaces` marks a
    due certificate the CA gave renewal information for, so the order names it
    as the one it replaces.
    """
    from cryptography import x509

    now = now or datetime.datetime.now(datetime.timezone.utc)
    decisions = {}
    for item in selected:
        if item["state"] != "present":
            continue
        live = os.path.join(store_dir, "live", item["name"])
        wanted = sorted(set(item["domains"]))
        item_key_type = item.get("key_type") or key_type
        item_curve = item.get("key_curve") or key_curve
        wanted_key = "ECC:" + item_curve if item_key_type == "ECC" else item_key_type
        decision = {"name": item["name"], "domains": wanted, "reason": "", "note": "", "days_left": None,
                    "due": True, "serial": "", "ari_ask": False, "replaces": False,
                    "key_type": item_key_type, "key_curve": item_curve, "key_size": item.get("key_size")}
        answer = None
        if not os.path.exists(os.path.join(live, "cert.pem")):
            decision["reason"] = "no certificate yet"
        elif not os.path.exists(os.path.join(live, "privkey.pem")):
            decision["reason"] = "private key missing"
        else:
            try:
                certificate = _read_certificate(os.path.join(live, "cert.pem"))
            except (OSError, ValueError) as exc:
                decision["reason"] = f"cert.pem unreadable ({exc})"
            else:
                decision["serial"] = format_serial(certificate.serial_number)
                not_after = certificate.not_valid_after_utc if hasattr(certificate, "not_valid_after_utc") else (
                    certificate.not_valid_after.replace(tzinfo=datetime.timezone.utc))
                not_before = certificate.not_valid_before_utc if hasattr(certificate, "not_valid_before_utc") else (
                    certificate.not_valid_before.replace(tzinfo=datetime.timezone.utc))
                seconds_left = (not_after - now).total_seconds()
                lifetime = max((not_after - not_before).total_seconds(), 1.0)
                share_left = f"{max(seconds_left, 0) / lifetime:.0%} of {_days(lifetime)} days left"
                decision["days_left"] = int(seconds_left // 8640) / 10.0
                try:
                    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    names = sorted({name.lower() for name in sans.get_values_for_type(x509.DNSName)})
                except x509.ExtensionNotFound:
                    names = []
                key_now = _key_description(certificate)
                if ari:
                    answer = (ari_answers_now or {}).get(item["name"]) or _stored_ari(ari_path(store_dir, item["name"]))
                    if answer is not None and answer.get("serial") != decision["serial"]:
                        answer = None
                if force:
                    decision["reason"] = "forced (certificates_force_renew)"
                elif names != wanted:
                    decision["reason"] = f"names changed: {','.join(names)} -> {','.join(wanted)}"
                elif key_now != wanted_key:
                    decision["reason"] = f"key type changed: {key_now} -> {wanted_key}"
                elif renew_days is not None:
                    if seconds_left < renew_days * 86400:
                        decision["reason"] = (f"{decision['days_left']} days left, fewer than "
                                              f"certificates_renew_days ({renew_days})")
                    else:
                        decision["note"] = f"renewed with fewer than {renew_days} days left (certificates_renew_days)"
                elif seconds_left < renew_before_ratio * lifetime:
                    decision["reason"] = (f"{share_left}, less than certificates_renew_before_ratio "
                                          f"({renew_before_ratio:g})")
                else:
                    decision["note"] = (f"{share_left}; renewed with fewer than "
                                        f"{_days(renew_before_ratio * lifetime)} days left "
                                        f"(certificates_renew_before_ratio {renew_before_ratio:g})")
                if ari and not decision["reason"]:
                    fresh = answer is not None and ("problem" in answer or now < _parse_time(answer["next_ask"]))
                    if ari_answers_now is None and not fresh:
                        decision["ari_ask"] = True
                    else:
                        _ari_decision(decision, answer if fresh else None, now,
                                      item["name"] in (ari_answers_now or {}), ari_unasked)
        decision["due"] = bool(decision["reason"])
        decision["replaces"] = decision["due"] and answer is not None and "problem" not in answer
        decisions[item["name"]] = decision
    return decisions


def challenge_records(orders: list[dict], plan: t.Mapping[str, t.Any] | None = None, zone: str = "") -> list[dict]:
    """The TXT records every order's DNS-01 challenges need: `{record, zone, values}`, one per name written.

    A record delegated by CNAME (in `plan`, from challenge_plan) is written at
    its target, in the target's zone; records sharing a target merge their values.
    """
    delegated = (plan or {}).get("records") or {}
    records: dict[str, dict] = {}
    for order in orders:
        for record, values in (order.get("challenge_data_dns") or {}).items():
            record = record.rstrip(".").lower() + "."
            place = delegated.get(record) or {"target": record, "zone": zone.strip().rstrip(".")}
            entry = records.setdefault(place["target"], {"record": place["target"], "zone": place["zone"], "values": []})
            entry["values"].extend(value for value in values if value not in entry["values"])
    return list(records.values())


# --- bundle ------------------------------------------------------------------------------------------------


def bundle_path(bundle_dir: str, name: str) -> str:
    return posixpath.join(bundle_dir, name + ".pem")


def bundle_entries(selected: list[dict], source: str, bundle_dir: str, store_dir: str, certbot_live_dir: str,
                   tls_secret_dir: str) -> list[dict]:
    """The haproxy_cert_bundle `bundles` entries that build every present certificate's bundle from its source."""
    entries = []
    for item in selected:
        if item["state"] != "present":
            continue
        entry = {"dest": bundle_path(bundle_dir, item["name"])}
        if source == "acme":
            live = posixpath.join(store_dir, "live", item["name"])
            entry.update(fullchain=posixpath.join(live, "fullchain.pem"), privatekey=posixpath.join(live, "privkey.pem"))
        elif source == "certbot":
            entry["certbot_live"] = item["certbot_live"] or posixpath.join(certbot_live_dir, item["name"])
        elif source == "tls_secret":
            entry["tls_secret_dir"] = item["tls_secret_dir"] or posixpath.join(tls_secret_dir, item["name"])
        else:
            entry.update((key, item[key]) for key in FILE_SOURCE_KEYS if item[key])
        entries.append(entry)
    return entries


def bundle_read_entries(selected: list[dict], bundle_dir: str, skip: t.Iterable[str] = ()) -> list[dict]:
    """Entries that read (in check mode) the bundles built earlier, without writing anything."""
    return [{"certificate": bundle_path(bundle_dir, item["name"]), "dest": bundle_path(bundle_dir, item["name"])}
            for item in selected if item["state"] == "present" and item["name"] not in set(skip)]


_BUNDLE_KEYS = ("dest", "serial", "fingerprint", "not_after", "days_left", "names", "changed")


def bundles(selected: list[dict], bundle_dir: str, result: dict, entries: list[dict] | None = None,
            earlier: t.Mapping[str, dict] | None = None) -> dict[str, dict]:
    """What every bundle holds, keyed by certificate name, from a haproxy_cert_bundle result.

    The module answers per `dest`; a certificate whose entry was refused (or
    whose call failed as a whole) gets `error` instead; when other entries
    were refused, one the module did not get to is left out (to be read
    again). `earlier` (an earlier read) is kept for certificates this result
    does not mention.
    """
    by_dest = {entry.get("dest"): entry for entry in (result.get("bundles") or [])}
    errors = {}
    entries = entries or []
    for error in result.get("errors") or []:
        index = error.get("index")
        if isinstance(index, int) and 0 <= index < len(entries):
            errors[entries[index]["dest"]] = error.get("msg") or "invalid"
    outcome = dict(earlier or {})
    for item in selected:
        if item["state"] != "present":
            continue
        dest = bundle_path(bundle_dir, item["name"])
        if dest in by_dest:
            found = by_dest[dest]
            outcome[item["name"]] = {key: found.get(key) for key in _BUNDLE_KEYS}
            outcome[item["name"]]["changed"] = bool(found.get("changed"))
        elif dest in errors:
            outcome[item["name"]] = {"dest": dest, "error": errors[dest]}
        elif item["name"] not in outcome and not errors:
            # With per-entry errors the others were not read: they are left out, to be read again.
            outcome[item["name"]] = {"dest": dest, "error": result.get("msg") or "not read"}
    return outcome


def bundle_failure(selected: list[dict], result: dict, entries: list[dict], source: str) -> str:
    """The message for a bundle step that failed, naming every certificate concerned ('' when it did not fail)."""
    if not result.get("failed"):
        return ""
    by_dest = {entry["dest"]: posixpath.basename(entry["dest"])[:-len(".pem")] for entry in entries}
    problems = []
    for error in result.get("errors") or []:
        index = error.get("index")
        if isinstance(index, int) and 0 <= index < len(entries):
            problems.append(f"{by_dest[entries[index]['dest']]}: {error.get('msg')}")
    if not problems:
        names = ", ".join(item["name"] for item in selected if item["state"] == "present")
        problems.append(f"{names}: {result.get('msg') or 'no message'}")
    return f"No bundle was written (source {source}): " + "; ".join(problems)


# --- instances -----------------------------------------------------------------------------------------------


def _host_settings(host_vars: t.Mapping[str, t.Any], host: str) -> dict[str, t.Any]:
    return {
        "address": str(host_vars.get("ansible_host") or host),
        "cert_dir": host_vars.get("certificates_host_cert_dir") or "",
        "crt_list": host_vars.get("certificates_host_crt_list") or "",
        "runtime_port": host_vars.get("certificates_host_runtime_port"),
        "verify_port": host_vars.get("certificates_host_verify_port"),
        "canary": to_bool(host_vars.get("certificates_host_canary", False), f"certificates_host_canary of {host}"),
    }


def persist_hosts(group: list[str] | None, hostvars: t.Mapping[str, t.Mapping[str, t.Any]]) -> dict[str, dict]:
    """The HAProxy hosts of the inventory and their certificates_host_* settings, keyed by host name."""
    return {host: _host_settings(hostvars[host], host) for host in (group or [])}


def instances(endpoints: list, addresses: list, hosts: t.Mapping[str, dict], runtime_port: int,
              verify_port: int) -> dict[str, dict]:
    """Every running instance, keyed by its name, in the order given.

    From `endpoints` (strings or dicts with endpoint, name, process, cert_dir,
    crt_list, verify_host, verify_port) or, when it is empty, from the service's
    `addresses`. An instance at the address of a host in `hosts` takes its
    name and its certificates_host_* settings. Endpoints are parsed by the
    Runtime API client, so a bad one fails here, before anything is sent.
    """
    by_address = {settings["address"]: host for host, settings in hosts.items()}
    given = list(endpoints or [])
    if not given:
        for address in addresses or []:
            host = by_address.get(str(address))
            port = to_int((hosts[host]["runtime_port"] if host else None) or runtime_port,
                          "certificates_host_runtime_port of " + host if host else "certificates_runtime_port", 1)
            given.append({"endpoint": (f"[{address}]" if ":" in str(address) else str(address)) + f":{port}"})
    found: dict[str, dict] = {}
    for index, entry in enumerate(given):
        spec = dict(entry) if isinstance(entry, dict) else {"endpoint": str(entry)}
        try:
            endpoint = api.parse_endpoint(spec.get("endpoint"))
            process = api.check_process(spec.get("process") or None, spec.get("endpoint"))
        except api.RuntimeApiError as exc:
            raise CertificatesRoleError(f"certificates_endpoints[{index}]: {exc}. Nothing was sent.") from None
        address = "" if endpoint.is_unix else endpoint.address
        host = by_address.get(address, "")
        host_settings = hosts.get(host, {}) if host else {}
        name = str(spec.get("name") or host or spec["endpoint"])
        if name in found:
            raise CertificatesRoleError(f"certificates_endpoints[{index}]: instance name {name} is used twice. "
                                        "Nothing was sent.")
        found[name] = {
            "name": name,
            "endpoint": spec["endpoint"],
            "process": process or "",
            "host": host,
            "verify_host": str(spec.get("verify_host") or address or "127.0.0.1"),
            "verify_port": to_int(spec.get("verify_port") or host_settings.get("verify_port") or verify_port,
                                  f"the verify port of instance {name}", 1),
            "cert_dir": spec.get("cert_dir") or host_settings.get("cert_dir") or "",
            "crt_list": spec.get("crt_list") or host_settings.get("crt_list") or "",
            "canary": to_bool(spec.get("canary", host_settings.get("canary", False)),
                              f"the canary flag of instance {name}"),
        }
    return found


def instance_path(item: dict, cert_dir: str) -> str:
    """Where an instance (or host) with `cert_dir` keeps a certificate: the modules' cert_dir mapping."""
    return posixpath.join(cert_dir, posixpath.basename(item["haproxy_path"])) if cert_dir else item["haproxy_path"]


def crt_list_line(item: dict, path: str) -> str:
    """The crt-list line of a certificate, as the haproxy_ssl_cert module writes it into HAProxy."""
    return Request(path, crt_list_options=item["crt_list_options"] or None, sni_filters=item["sni_filters"]).crt_list_line()


# --- push ----------------------------------------------------------------------------------------------------


def push_endpoints(found: t.Mapping[str, dict], skip: t.Iterable[str] = ()) -> list[dict]:
    """The haproxy_ssl_cert `endpoints` list: every instance with its process, cert_dir and crt-list."""
    skip = set(skip)
    return [dict({"endpoint": instance["endpoint"]},
                 **{key: instance[key] for key in ("process", "cert_dir", "crt_list") if instance[key]})
            for name, instance in found.items() if name not in skip]


def push_certificates(selected: list[dict], bundle_dir: str) -> list[dict]:
    """The haproxy_ssl_cert `certificates` list: present ones from their bundles, absent ones to remove."""
    certificates = []
    for item in selected:
        entry: dict[str, t.Any] = {"path": item["haproxy_path"], "state": item["state"]}
        if item["state"] == "present":
            entry["src"] = bundle_path(bundle_dir, item["name"])
        entry.update((key, item[key]) for key in ("crt_list", "crt_list_options", "sni_filters") if item[key])
        certificates.append(entry)
    return certificates


def _endpoint_results(result: t.Mapping[str, t.Any]) -> t.Callable[[str], tuple[dict, bool, str]]:
    """Read a module's per-endpoint result (`instances`): endpoint -> (its entry, failed, msg).

    An endpoint the result does not mention failed with the call as a whole
    (a bad input: nothing was sent), with the call's message.
    """
    by_endpoint = {entry.get("endpoint"): entry for entry in (result.get("instances") or [])}

    def lookup(endpoint: str) -> tuple[dict, bool, str]:
        entry = by_endpoint.get(endpoint)
        failed = bool(entry.get("failed")) if entry else True
        message = ((entry.get("msg") if entry else result.get("msg")) or "failed") if failed else ""
        return entry or {}, failed, message
    return lookup


def _summary_serial(summary: t.Any) -> str:
    return (summary or {}).get("serial") or ""


def push_outcome(found: t.Mapping[str, dict], selected: list[dict], result: dict) -> dict[str, dict]:
    """What the push did on every instance, keyed by instance name; per certificate (by name) before → after.

    The module answers per endpoint; an instance it does not mention failed
    with the call as a whole (a bad bundle or endpoint: nothing was sent).
    """
    lookup = _endpoint_results(result)
    outcome = {}
    for name, instance in found.items():
        entry, failed, message = lookup(instance["endpoint"])
        certificates = {}
        if entry:
            by_path = {posixpath.basename(cert.get("path") or ""): cert for cert in entry.get("certificates") or []}
            for item in selected:
                cert = by_path.get(posixpath.basename(item["haproxy_path"]))
                if cert is None:
                    continue
                certificates[item["name"]] = {
                    "path": cert.get("path"), "action": cert.get("action") or "",
                    "before": cert.get("before") or {}, "after": cert.get("after") or {},
                    "serial_before": _summary_serial(cert.get("before")),
                    "serial_after": _summary_serial(cert.get("after")),
                }
        outcome[name] = {
            "endpoint": instance["endpoint"], "failed": failed, "msg": message,
            "changed": any(cert["action"] not in ("unchanged", "") for cert in certificates.values()),
            "certificates": certificates,
        }
    return outcome


# --- CA files and CRL files (mutual TLS) ---------------------------------------------------------------------

# role variable -> (HAProxy kind, the module's list option, the module's result key)
TRUST_KINDS = {
    "ca_files": (_ssl_ca_crl.CA_FILE, "ca_files"),
    "crl_files": (_ssl_ca_crl.CRL_FILE, "crl_files"),
}
TRUST_FILE_KEYS = ("path", "src")


def trust_files(value: t.Any, kind: str, crl_ca_src: str = "", allow_expired: t.Any = False,
                bufsize: t.Any = api.DEFAULT_BUFSIZE) -> list[dict]:
    """`certificates_ca_files` or `certificates_crl_files` (`kind`: ca_files or crl_files), checked before any push.

    Each entry is `{path, src}`: `path` the name HAProxy knows the file by, `src`
    a PEM file on the controller. Every file is read and validated here, the
    way the modules validate it (PEM blocks that parse; for CRLs, signed by a CA
    of `crl_ca_src` when given, and not past nextUpdate unless `allow_expired`;
    the payload fits HAProxy's buffer), so a bad one fails the run before
    anything is sent to any instance. Returns the entries as the modules take them.
    """
    variable = "certificates_" + kind
    if value is None or value == "":
        return []
    if not isinstance(value, (list, tuple)):
        raise CertificatesRoleError(f"{variable} is {value!r}: give a list of {{path, src}}. Nothing was sent.")
    entries = []
    for index, entry in enumerate(value):
        where = f"{variable}[{index}]"
        if not isinstance(entry, dict):
            raise CertificatesRoleError(f"{where} is {entry!r}: give a dictionary with path and src. Nothing was sent.")
        unknown = sorted(set(entry) - set(TRUST_FILE_KEYS))
        if unknown:
            raise CertificatesRoleError(f"{where} has unknown keys {', '.join(map(str, unknown))} "
                                        f"(known: {', '.join(TRUST_FILE_KEYS)}). Nothing was sent.")
        for key in TRUST_FILE_KEYS:
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise CertificatesRoleError(f"{where} needs {key} (a non-empty string). Nothing was sent.")
        entries.append({"path": entry["path"], "src": entry["src"]})
    if not entries:
        return []
    haproxy_kind, list_key = TRUST_KINDS[kind]
    try:
        cas = None
        if haproxy_kind == _ssl_ca_crl.CRL_FILE and crl_ca_src:
            cas = _ssl_ca_crl.parse_ca_pem(_ssl_ca_crl._read({"src": crl_ca_src}, "certificates_crl_ca_src"),
                                           f"certificates_crl_ca_src ({crl_ca_src})")
        _ssl_ca_crl.prepare_items(haproxy_kind, {variable: entries, "process": None}, variable, cas=cas,
                                  allow_expired=to_bool(allow_expired, "certificates_crl_allow_expired"),
                                  bufsize=to_int(bufsize, "certificates_runtime_bufsize", 1024))
    except IngressError as exc:
        # The module_utils messages already end in "nothing was sent"; name the role's variables, not the module's.
        message = str(exc).replace("set allow_expired", "set certificates_crl_allow_expired").replace(
            "any CA of the given CA file", "any CA of certificates_crl_ca_src")
        raise CertificatesRoleError(f"{message} (on the controller; no instance was asked).") from None
    return entries


def trust_endpoints(found: t.Mapping[str, dict]) -> list[dict]:
    """The `endpoints` of haproxy_ssl_ca_file / haproxy_ssl_crl_file: every instance with its master CLI process."""
    return [dict({"endpoint": instance["endpoint"]}, **({"process": instance["process"]} if instance["process"] else {}))
            for instance in found.values()]


def trust_outcome(found: t.Mapping[str, dict], results: t.Mapping[str, t.Any]) -> dict[str, dict]:
    """What the CA file and CRL file calls did on every instance, keyed by instance then kind.

    `results` maps a kind (ca_files, crl_files) to the module's registered
    result; a kind whose call was skipped (no files configured) is left out.
    Per kind: `state` (changed, unchanged, failed), the `changed` paths and
    the `msg` when it failed. An instance the module does not mention failed
    with the call as a whole (a bad file: nothing was sent).
    """
    outcome: dict[str, dict] = {name: {} for name in found}
    for kind, result in (results or {}).items():
        if not result or result.get("skipped"):
            continue
        lookup = _endpoint_results(result)
        for name, instance in found.items():
            entry, failed, message = lookup(instance["endpoint"])
            changed = [item.get("path") for item in (entry.get("files") or []) if item.get("changed")]
            outcome[name][kind] = {"state": "failed" if failed else "changed" if changed else "unchanged",
                                   "changed": changed, "msg": message}
    return outcome


def merge_trust(earlier: t.Mapping[str, dict], later: t.Mapping[str, dict]) -> dict[str, dict]:
    """The CA/CRL outcome over several waves (each instance is in one wave)."""
    merged = {name: dict(kinds) for name, kinds in (earlier or {}).items()}
    for name, kinds in (later or {}).items():
        merged.setdefault(name, {}).update(kinds)
    return merged


# --- persist ----------------------------------------------------------------------------------------------------


BUNDLE_MODE = "0600"
TRUST_FILE_MODE = "0644"


def persist_plan(hosts: t.Mapping[str, dict], selected: list[dict], bundle_dir: str,
                 play_hosts: t.Iterable[str] = (), this_host: str = "",
                 only_hosts: t.Iterable[str] | None = None, trust: t.Mapping[str, list] | None = None,
                 with_bundles: t.Any = True) -> list[dict]:
    """One entry per host and file: the bundle to write (or remove) and its crt-list line, then the CA/CRL files.

    In a play on the controller the plan covers every HAProxy host. In a play
    over the HAProxy hosts (some play host is one of them) each play host
    writes only its own files, so no file is written twice. `only_hosts`
    (a rollout wave's hosts) limits the plan to those hosts.

    `trust` maps ca_files / crl_files to their checked entries (trust_files):
    each is written at its `path` on every host, as it is the name HAProxy
    loads the file by at start (no cert_dir mapping: one name for every
    instance), mode 0644 (no secret in it). `with_bundles` false leaves the
    bundles out: a wave whose check failed still writes the CA/CRL files its
    instances now hold, since a rollback does not take those back.
    """
    over_hosts = any(host in hosts for host in play_hosts)
    only = None if only_hosts is None else set(only_hosts)
    plan = []
    for host, host_settings in hosts.items():
        if over_hosts and host != this_host:
            continue
        if only is not None and host not in only:
            continue
        for item in selected if to_bool(with_bundles, "with_bundles") else ():
            path = instance_path(item, host_settings["cert_dir"])
            plan.append({
                "host": host, "kind": "certificate", "name": item["name"], "state": item["state"], "path": path,
                "crt_list": host_settings["crt_list"] or item["crt_list"],
                "line": crt_list_line(item, path), "line_regexp": r"^\s*" + re.escape(path) + r"(\s|$)",
                "src": bundle_path(bundle_dir, item["name"]), "mode": BUNDLE_MODE,
            })
        for kind in TRUST_KINDS:
            for entry in (trust or {}).get(kind) or ():
                plan.append({
                    "host": host, "kind": kind, "name": entry["path"], "state": "present", "path": entry["path"],
                    "crt_list": "", "line": "", "line_regexp": "", "src": entry["src"], "mode": TRUST_FILE_MODE,
                })
    return plan


def persisted(file_results: list[dict], list_results: list[dict]) -> dict[str, dict]:
    """What the persist step wrote on every host, keyed by host: changed files/lists and failures."""
    hosts: dict[str, dict] = {}
    for kind, results in (("path", file_results), ("crt_list", list_results)):
        for result in results or []:
            target = result.get("target") or {}
            entry = hosts.setdefault(target.get("host"), {"changed": [], "failed": []})
            if result.get("failed") or result.get("unreachable"):
                entry["failed"].append(f"{target.get(kind)}: {result.get('msg') or 'failed'}")
            elif result.get("changed"):
                entry["changed"].append(target.get(kind))
    return hosts


def persisted_on_play_hosts(play_hosts: t.Iterable[str], hostvars: t.Mapping[str, t.Mapping[str, t.Any]]) -> dict:
    """What every play host's persist step recorded, merged (each host wrote its own files, or one wrote them all)."""
    merged: dict[str, dict] = {}
    for host in play_hosts:
        merged.update(hostvars[host].get("certificates_persisted") or {})
    return merged


# --- verify and status --------------------------------------------------------------------------------------------


def handshake_targets(found: t.Mapping[str, dict], selected: list[dict], known_bundles: t.Mapping[str, dict],
                      servername: str = "", skip: t.Iterable[str] = ()) -> list[dict]:
    """The served_cert_info targets: one TLS handshake per instance and present certificate, named INSTANCE/CERT."""
    skip = set(skip)
    targets = []
    for name, instance in found.items():
        if name in skip:
            continue
        for item in selected:
            if item["state"] != "present":
                continue
            bundle = known_bundles.get(item["name"]) or {}
            names = item["domains"] or bundle.get("names") or []
            sni = item["verify_servername"] or servername or (
                re.sub(r"^\*\.", "ingress-haproxy-verify.", names[0]) if names else "")
            target = {"name": f"{name}/{item['name']}", "address": instance["verify_host"],
                      "port": instance["verify_port"], "servername": sni}
            if item.get("served_key_type"):
                # One of a pair: ask as a client that can use only this kind of key, so HAProxy presents this one.
                target["key_type"] = item["served_key_type"]
            if bundle.get("fingerprint"):
                target["expected_fingerprint"] = bundle["fingerprint"]
            targets.append(target)
    return targets


def _served_by_target(served: list[dict]) -> dict[tuple[str, str], dict]:
    found = {}
    for entry in served or []:
        instance, _sep, cert = (entry.get("name") or "").rpartition("/")
        found[(instance, cert)] = entry
    return found


def verify_outcome(targets: list[dict], served: list[dict], known_bundles: t.Mapping[str, dict]) -> dict[str, dict]:
    """What every instance serves for every certificate, keyed by instance then certificate name."""
    seen = _served_by_target(served)
    outcome: dict[str, dict] = {}
    for target in targets:
        instance, _sep, cert = target["name"].rpartition("/")
        entry = seen.get((instance, cert)) or {}
        expected = known_bundles.get(cert) or {}
        check = {"servername": target["servername"], "serial": entry.get("serial") or "",
                 "fingerprint": entry.get("fingerprint") or "", "not_after": entry.get("not_after") or "",
                 "days_left": entry.get("days_left"), "verified": entry.get("verified"),
                 "ok": entry.get("matches") is True and entry.get("verified") is not False, "msg": ""}
        if not check["fingerprint"]:
            check["msg"] = (f"no TLS handshake with {target['address']}:{target['port']}: "
                            f"{entry.get('error') or 'failed'}")
        elif entry.get("matches") is not True:
            check["msg"] = f"serves serial {check['serial']}, the bundle holds serial {expected.get('serial') or '?'}"
        elif check["verified"] is False:
            check["msg"] = (f"serves serial {check['serial']}, which does not validate against certificates_verify_ca_file "
                            f"for {target['servername'] or target['address']}: {entry.get('error') or 'not trusted'}")
        outcome.setdefault(instance, {})[cert] = check
    return outcome


# --- rollout and rollback ------------------------------------------------------------------------------------


def previous_bundle_path(bundle_dir: str, name: str) -> str:
    """Where the store keeps the bundle a certificate had before the current one."""
    return posixpath.join(bundle_dir, name + ".previous.pem")


def keep_previous_entries(selected: list[dict], bundle_dir: str, entries: list[dict] | None = None) -> list[dict]:
    """haproxy_cert_bundle entries that copy (and validate) a certificate's bundle to NAME.previous.pem.

    Only bundles that exist (a certificate new to the store has no previous one),
    and, given this run's `bundle_entries`, only where the source holds another
    leaf than the bundle: NAME.previous.pem is the bundle before the last change,
    so a rerun (or a CI job that pulled the store) leaves it alone.
    """
    sources = {entry["dest"]: entry for entry in entries or []}
    keep = []
    for item in selected:
        current = bundle_path(bundle_dir, item["name"])
        if item["state"] != "present" or not os.path.isfile(current):
            continue
        source = sources.get(current)
        if source is not None:
            leaf = _first_certificate(_source_leaf_file(source))
            if leaf is not None and leaf == _first_certificate(current):
                continue
        keep.append({"certificate": current, "dest": previous_bundle_path(bundle_dir, item["name"])})
    return keep


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)


def _source_leaf_file(entry: dict) -> str:
    """The file whose first certificate is the leaf a haproxy_cert_bundle entry builds from."""
    if entry.get("certificate") or entry.get("fullchain"):
        return entry.get("certificate") or entry["fullchain"]
    if entry.get("certbot_live"):
        return posixpath.join(entry["certbot_live"], "cert.pem")
    return posixpath.join(entry.get("tls_secret_dir", ""), "tls.crt")


def _first_certificate(path: str) -> bytes | None:
    """The DER of the first PEM certificate in `path`; None when it cannot be read or holds none."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            match = _PEM_CERTIFICATE.search(handle.read())
        return base64.b64decode("".join(match.group(1).split())) if match else None
    except (OSError, ValueError):
        return None


def rollout_plan(found: t.Mapping[str, dict], canary: int, wave_size: int,
                 hosts: t.Mapping[str, dict] | None = None) -> list[dict]:
    """The waves of a push: the canary first, then waves of `wave_size` (0: all the rest).

    The canary is the instances flagged `canary` (certificates_host_canary, or
    `canary` in a certificates_endpoints entry); with none flagged, the first
    `canary` instances by name (a stable order). `canary` 0 means one wave
    with every instance. Each wave names the HAProxy hosts whose files follow
    it: the hosts of its instances; hosts without any running instance follow
    the last wave.
    """
    names = sorted(found)
    if not names:
        # No running instance (certificates_allow_no_instances): the files are still written.
        return [{"index": 0, "kind": "all", "instances": [], "hosts": list(hosts or {})}]
    if canary <= 0:
        groups = [("all", names)]
    else:
        flagged = [name for name in names if found[name].get("canary")]
        first = flagged or names[:canary]
        rest = [name for name in names if name not in first]
        size = wave_size if wave_size > 0 else max(len(rest), 1)
        groups = [("canary", first)] + [("wave", rest[start:start + size]) for start in range(0, len(rest), size)]
    waves = []
    placed: set[str] = set()
    for index, (kind, members) in enumerate(groups):
        wave_hosts = []
        for name in members:
            host = found[name].get("host") or ""
            if host and host not in placed:
                placed.add(host)
                wave_hosts.append(host)
        waves.append({"index": index, "kind": kind, "instances": members, "hosts": wave_hosts})
    waves[-1]["hosts"].extend(host for host in (hosts or {}) if host not in placed)
    return waves


def wave_instances(found: t.Mapping[str, dict], names: t.Iterable[str]) -> dict[str, dict]:
    """The instances of one wave, keyed by name, in the order of `found`."""
    names = set(names)
    return {name: instance for name, instance in found.items() if name in names}


def rollout_plan_lines(waves: list[dict]) -> list[str]:
    """The plan as lines (check mode shows it)."""
    lines = []
    for wave in waves:
        label = "canary" if wave["kind"] == "canary" else "all at once" if wave["kind"] == "all" else f"wave {wave['index']}"
        lines.append(f"{label}: {', '.join(wave['instances'])}"
                     + (f" (files on {', '.join(wave['hosts'])})" if wave["hosts"] else ""))
    return lines


def wave_verdict(wave: dict, pushed: t.Mapping[str, dict], verified: t.Mapping[str, dict],
                 trust: t.Mapping[str, dict] | None = None) -> dict[str, t.Any]:
    """Whether a wave passed: `stop` (go no further), `rollback` (a check failed), and why.

    A check fails when an instance presented a leaf that is not the bundle's
    or that does not validate against certificates_verify_ca_file. An instance
    that cannot be reached fails alone; but when every canary instance failed
    its push, nothing else is pushed. `trust` (trust_outcome) counts too: a
    canary instance whose CA file or CRL file push failed failed its push.
    """
    trust = trust or {}
    for name, kinds in trust.items():
        failures = [f"{kind.replace('_', ' ')}: {entry['msg']}" for kind, entry in sorted(kinds.items())
                    if entry["state"] == "failed"]
        if failures and name in wave["instances"]:
            own = dict(pushed.get(name) or {"failed": True, "msg": ""})
            own["msg"] = "; ".join(([own["msg"]] if own.get("failed") and own.get("msg") else []) + failures)
            own["failed"] = True
            pushed = dict(pushed, **{name: own})
    problems = []
    for name in wave["instances"]:
        for cert, check in sorted((verified.get(name) or {}).items()):
            if check.get("fingerprint") and not check.get("ok"):
                problems.append(f"certificate {cert} on instance {name}: {check.get('msg')}")
    if problems:
        return {"stop": True, "rollback": True, "msg": "The check failed: " + "; ".join(problems) + "."}
    if wave["kind"] == "canary" and wave["instances"] and all(
            (pushed.get(name) or {}).get("failed", True) for name in wave["instances"]):
        return {"stop": True, "rollback": False,
                "msg": (f"The canary ({', '.join(wave['instances'])}) could not be pushed to: nothing else was pushed. "
                        + " ".join(f"{name}: {(pushed.get(name) or {}).get('msg') or 'failed'}."
                                   for name in wave["instances"]))}
    return {"stop": False, "rollback": False, "msg": ""}


def rollback_plan(pushed: t.Mapping[str, dict], selected: list[dict], bundle_dir: str,
                  found: t.Mapping[str, dict]) -> list[dict]:
    """The haproxy_ssl_cert calls that put the previous bundles back where this run changed a certificate.

    One entry per set of certificates (usually one): `instances`, their
    `endpoints` and the `certificates` to push from NAME.previous.pem.
    Certificates without a previous bundle (new to the store) are named in
    `missing` and left as they are.
    """
    items = {item["name"]: item for item in selected if item["state"] == "present"}
    groups: dict[tuple[str, ...], list[str]] = {}
    missing: set[str] = set()
    for name in sorted(pushed):
        changed = tuple(sorted(cert for cert, outcome in (pushed[name].get("certificates") or {}).items()
                               if cert in items and outcome.get("action") not in ("unchanged", "")))
        have = tuple(cert for cert in changed if os.path.isfile(previous_bundle_path(bundle_dir, cert)))
        missing.update(set(changed) - set(have))
        if have:
            groups.setdefault(have, []).append(name)
    plan = []
    for certs, names in groups.items():
        certificates = []
        for cert in certs:
            item = items[cert]
            entry: dict[str, t.Any] = {"path": item["haproxy_path"], "state": "present",
                                       "src": previous_bundle_path(bundle_dir, cert)}
            entry.update((key, item[key]) for key in ("crt_list", "crt_list_options", "sni_filters") if item[key])
            certificates.append(entry)
        plan.append({"instances": names, "certificates": certificates, "names": list(certs),
                     "endpoints": push_endpoints({name: found[name] for name in names})})
    return [dict(entry, missing=sorted(missing)) for entry in plan] or (
        [{"instances": [], "certificates": [], "names": [], "endpoints": [], "missing": sorted(missing)}] if missing else [])


def rolled_back(plan: list[dict], results: list[dict]) -> dict[str, dict]:
    """Per instance: the certificates put back (`names`) or why not (`msg`), from the rollback calls' results."""
    outcome: dict[str, dict] = {}
    for index, group in enumerate(plan):
        result = results[index] if index < len(results) else {}
        lookup = _endpoint_results(result)
        for name, endpoint in zip(group["instances"], group["endpoints"]):
            _entry, failed, message = lookup(endpoint["endpoint"])
            outcome[name] = {"names": group["names"], "failed": failed, "msg": message}
    return outcome


def rollback_persist_plan(persist_plan_entries: list[dict], persisted_hosts: t.Mapping[str, dict],
                          plan: list[dict], bundle_dir: str) -> list[dict]:
    """The files to put back on the HAProxy hosts this run wrote to: NAME.previous.pem where NAME.pem went."""
    names = {name for group in plan for name in group["names"]}
    return [dict(entry, src=previous_bundle_path(bundle_dir, entry["name"]))
            for entry in persist_plan_entries
            if entry["state"] == "present" and entry.get("kind", "certificate") == "certificate" and entry["name"] in names
            and entry["path"] in ((persisted_hosts.get(entry["host"]) or {}).get("changed") or [])]


def restore_store_entries(plan: list[dict], bundle_dir: str, selected: list[dict] | None = None,
                          known_bundles: t.Mapping[str, dict] | None = None) -> list[dict]:
    """haproxy_cert_bundle entries that put NAME.previous.pem back as the store's NAME.pem when a rollout stopped.

    For every certificate rolled back (`plan`) and every one whose bundle this
    run wrote (`known_bundles[NAME].changed`) and that has a previous bundle:
    the store then holds what the instances serve, the previous bundle stays
    the last one that passed, and a rerun with the same bad source builds it
    again, so it ends the same way.
    """
    names = {name for group in plan for name in group["names"]}
    names.update(item["name"] for item in selected or []
                 if item["state"] == "present" and ((known_bundles or {}).get(item["name"]) or {}).get("changed"))
    return [{"certificate": previous_bundle_path(bundle_dir, name), "dest": bundle_path(bundle_dir, name)}
            for name in sorted(names) if os.path.isfile(previous_bundle_path(bundle_dir, name))]


def merge_persisted(earlier: t.Mapping[str, dict], later: t.Mapping[str, dict]) -> dict[str, dict]:
    """What the persist step wrote, over several waves (each host's changed and failed lists joined)."""
    merged = {host: {"changed": list(entry["changed"]), "failed": list(entry["failed"])}
              for host, entry in (earlier or {}).items()}
    for host, entry in (later or {}).items():
        target = merged.setdefault(host, {"changed": [], "failed": []})
        target["changed"].extend(path for path in entry["changed"] if path not in target["changed"])
        target["failed"].extend(entry["failed"])
    return merged


def no_instances_note(looked_up: str) -> str:
    """What a run says when `looked_up` (a DNS name, or certificates_endpoints) gave no running instance."""
    return (f"No HAProxy instance is running: {looked_up} has no address (certificates_allow_no_instances "
            "is true; a misspelt service name looks the same).")


def report(found: t.Mapping[str, dict], selected: list[dict], pushed: t.Mapping[str, dict],
           verified: t.Mapping[str, dict], persisted_hosts: t.Mapping[str, dict],
           looked_up: str = "", rollout: t.Mapping[str, t.Any] | None = None,
           trust: t.Mapping[str, dict] | None = None,
           trust_files_given: t.Mapping[str, list] | None = None) -> dict[str, t.Any]:
    """The run's outcome: one row per instance (with one per certificate), the hosts that failed, and `failed`.

    `looked_up` names where this run looked for instances ("" when it did not):
    with no instance found there, `note` says so. `rollout` (`msg`: why the
    rollout stopped, `rolled_back`: per instance what was put back) marks
    the rows of instances that got their previous certificate back.
    `trust` (trust_outcome) gives each row, per kind that has files in
    `trust_files_given` (ca_files, crl_files: the checked role variables),
    its state (changed, unchanged, failed, or not run) and the paths
    changed; a failed one fails the row.
    """
    rollout = rollout or {}
    trust = trust or {}
    trust_kinds = [kind for kind in TRUST_KINDS if (trust_files_given or {}).get(kind)]
    back = rollout.get("rolled_back") or {}
    rows = []
    for name, instance in found.items():
        push = pushed.get(name)
        undone = back.get(name)
        checks = verified.get(name) or {}
        certificates = []
        for item in selected:
            pushed_cert = ((push or {}).get("certificates") or {}).get(item["name"]) or {}
            check = checks.get(item["name"]) or {}
            action = pushed_cert.get("action", "")
            if undone and item["name"] in undone["names"]:
                action = "rollback failed" if undone["failed"] else "rolled back"
            certificates.append({
                "name": item["name"], "action": action,
                "serial_before": pushed_cert.get("serial_before", ""),
                "serial_after": pushed_cert.get("serial_after", ""),
                "served_serial": check.get("serial", ""), "served_ok": check.get("ok"),
                "problem": check.get("msg", "") if check and not check.get("ok") else "",
            })
        kinds = {kind: (trust.get(name) or {}).get(kind) or {"state": "not run", "changed": [], "msg": ""}
                 for kind in trust_kinds}
        problems = [f"{kind.replace('_', ' ')}: {entry['msg']}" for kind, entry in kinds.items()
                    if entry["state"] == "failed"]
        problems += ([push["msg"]] if push and push["failed"] else []) + [
            cert["problem"] for cert in certificates if cert["problem"]]
        state = ("failed" if push["failed"] else "changed" if push["changed"] else "unchanged") if push else "not run"
        if undone:
            state = "rolled back" if not undone["failed"] else "rollback failed"
            if undone["failed"]:
                problems.append("the previous certificate could not be put back: " + undone["msg"])
        rows.append({
            "name": name, "endpoint": instance["endpoint"],
            "push": state,
            "verify": ("failed" if any(not check.get("ok") for check in checks.values()) else "ok") if checks else "not run",
            "failed": bool(problems), "problems": problems, "certificates": certificates,
            "ca_files": kinds["ca_files"]["state"] if "ca_files" in kinds else "",
            "crl_files": kinds["crl_files"]["state"] if "crl_files" in kinds else "",
            "trust_changed": [path for entry in kinds.values() for path in entry["changed"]],
        })
    failed_hosts = [{"host": host, "problems": entry["failed"]}
                    for host, entry in persisted_hosts.items() if entry["failed"]]
    failed = any(row["failed"] for row in rows) or bool(failed_hosts) or bool(rollout.get("msg"))
    summary = rollout.get("msg") or ""
    if back:
        summary += " Rolled back: " + ", ".join(
            f"{name} ({', '.join(entry['names'])}{'' if not entry['failed'] else ', FAILED'})"
            for name, entry in sorted(back.items())) + "."
    if rollout.get("missing"):
        summary += (" No previous bundle of " + ", ".join(rollout["missing"])
                    + " (new to the store): left as pushed.")
    if any(row["failed"] for row in rows) or failed_hosts:
        summary += " " if summary else ""
        names = [row["name"] for row in rows if row["failed"]]
        summary += f"{len(names)} of {len(rows)} instances failed ({', '.join(names)})"
        if failed_hosts:
            summary += ", and HAProxy hosts " + ", ".join(entry["host"] for entry in failed_hosts) + " could not get the files"
        summary += ": " + " ".join(f"{row['name']}: {'; '.join(row['problems'])}." for row in rows if row["failed"])
        summary += "".join(f" {entry['host']}: {'; '.join(entry['problems'])}." for entry in failed_hosts)
    note = no_instances_note(looked_up) + " Nothing was pushed or verified." if looked_up and not found else ""
    changed = any(row["push"] in ("changed", "rolled back") or row["trust_changed"] for row in rows)
    return {"instances": rows, "failed_hosts": failed_hosts, "failed": failed, "changed": changed, "msg": summary,
            "note": note}


def report_lines(outcome: dict, persisted_hosts: t.Mapping[str, dict]) -> list[str]:
    """The report as lines for the run's output."""
    lines = [outcome["note"]] if outcome.get("note") else []
    for row in outcome["instances"]:
        trust = "".join(f", {kind.replace('_', ' ')} {row[kind]}" for kind in TRUST_KINDS if row.get(kind))
        lines.append(f"{'FAILED ' if row['failed'] else 'ok     '}{row['name']} ({row['endpoint']}): push {row['push']}, "
                     f"verify {row['verify']}{trust}")
        if row.get("trust_changed"):
            lines.append("         CA/CRL files changed: " + ", ".join(row["trust_changed"]))
        for cert in row["certificates"]:
            text = f"         {cert['name']}: {cert['action'] or 'not pushed'}"
            if cert["serial_before"] or cert["serial_after"]:
                text += f", serial {cert['serial_before'] or '-'} -> {cert['serial_after'] or '-'}"
            if cert["served_serial"]:
                text += f", TLS handshake sees {cert['served_serial']}"
            lines.append(text)
        lines.extend("         problem: " + problem for problem in row["problems"])
    for host, entry in persisted_hosts.items():
        if entry["failed"]:
            text = "files not written: " + "; ".join(entry["failed"])
        elif entry["changed"]:
            text = "wrote " + ", ".join(entry["changed"])
        else:
            text = "files unchanged"
        lines.append(f"{'FAILED ' if entry['failed'] else 'ok     '}host {host}: {text}")
    return lines


def status_rows(found: t.Mapping[str, dict], selected: list[dict], targets: list[dict], served: list[dict],
                known_bundles: t.Mapping[str, dict], fail_days: int = 0) -> dict[str, t.Any]:
    """What every instance serves for every certificate, one row each; with `fail_days`, which rows fail the run.

    A row fails when the instance cannot be reached, serves a leaf other than
    the bundle's, or (with fail_days > 0) serves one with fewer days left.
    """
    seen = _served_by_target(served)
    by_name = {item["name"]: item for item in selected}
    rows, failures = [], []
    for target in targets:
        instance_name, _sep, cert = target["name"].rpartition("/")
        instance = found[instance_name]
        entry = seen.get((instance_name, cert)) or {}
        bundle = known_bundles.get(cert) or {}
        if not entry.get("fingerprint"):
            state = "unreachable: " + (entry.get("error") or "no reply")
        elif not bundle.get("fingerprint"):
            state = "no bundle: " + (bundle.get("error") or "")
        elif entry.get("matches"):
            state = "matches bundle"
        else:
            state = f"differs from bundle (serial {bundle.get('serial')})"
        row = {
            "instance": instance_name, "endpoint": instance["endpoint"], "certificate": cert,
            "path": instance_path(by_name[cert], instance["cert_dir"]),
            "servername": target["servername"], "address": f"{target['address']}:{target['port']}",
            "serial": entry.get("serial") or "", "not_after": entry.get("not_after") or "",
            "days_left": entry.get("days_left"), "fingerprint": entry.get("fingerprint") or "",
            "bundle_serial": bundle.get("serial") or "", "matches_bundle": entry.get("matches") is True,
            "state": state,
        }
        rows.append(row)
        if fail_days > 0:
            if state != "matches bundle":
                failures.append(f"{instance_name}/{cert}: {state}")
            elif row["days_left"] is not None and row["days_left"] < fail_days:
                failures.append(f"{instance_name}/{cert}: {row['days_left']} days left, fewer than "
                                f"certificates_status_fail_days ({fail_days})")
    return {"rows": rows, "failures": failures}


def status_lines(rows: list[dict], looked_up: str = "", instance_count: int | None = None) -> list[str]:
    """The status table; with `instance_count` 0, a line naming where no instance was found (`looked_up`)."""
    line = "%-16s %-16s %-40s %-24s %9s  %s"
    lines = [line % ("INSTANCE", "CERTIFICATE", "SERVED SERIAL", "NOT AFTER", "DAYS LEFT", "STATE")]
    if instance_count == 0:
        lines.append(no_instances_note(looked_up))
    for row in rows:
        lines.append(line % (row["instance"], row["certificate"], row["serial"] or "-", row["not_after"] or "-",
                             "-" if row["days_left"] is None else row["days_left"], row["state"]))
    return lines


def rfc2136_hint(result: t.Mapping[str, t.Any], key_name: str, zone: str) -> str:
    """What to change when the RFC 2136 server refused the preflight's probe update, from its reply."""
    reply = f"{result.get('msg') or ''} {result.get('dns_rc_str') or ''}"
    hints = (
        ("PeerBadKey", f"The server does not know key {key_name}: check certificates_rfc2136_key_name."),
        ("PeerBadSignature", "The server rejected the TSIG signature: check certificates_rfc2136_key_secret and "
                             "certificates_rfc2136_key_algorithm."),
        ("BadSig", "The server rejected the TSIG signature: check certificates_rfc2136_key_secret and "
                   "certificates_rfc2136_key_algorithm."),
        ("PeerBadTime", "The server rejected the TSIG time: check the clocks."),
        ("NOTAUTH", f"The server is not authoritative for zone {zone}: check certificates_rfc2136_zone."),
        ("REFUSED", f"The zone's update-policy does not let key {key_name} write TXT records there."),
        ("NOTZONE", f"The record is not inside zone {zone}."),
    )
    for marker, hint in hints:
        if marker in reply:
            return hint
    return "Check certificates_rfc2136_server and certificates_rfc2136_port."
