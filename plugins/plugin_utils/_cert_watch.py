# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module of the ingress.haproxy collection; it may change at any time.
#
# The decisions of the cert_watch role: what its variables mean (coerced, checked), which
# directories the path unit watches, the units' command lines, the certbot deploy hook.

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any

BOOLEAN_VARIABLES = ("manage_service", "enabled", "started", "renew_timer")
NUMBER_VARIABLES = ("settle_seconds", "timeout_seconds", "renew_random_delay_seconds")
# The strings Ansible's own boolean conversion (and so the role's argument spec) accepts.
_TRUE = ("true", "yes", "on", "1", "y", "t")
_FALSE = ("false", "no", "off", "0", "n", "f")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.-]+$")


def coerce_boolean(value: Any, name: str, errors: list[str]) -> bool:
    """What -e gives ("false", "no") and what YAML gives (false) mean the same."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    errors.append(f"cert_watch_{name}: must be a boolean (true/false, yes/no), got {value!r}")
    return False


def coerce_number(value: Any, name: str, errors: list[str], minimum: int) -> int:
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < minimum:
        errors.append(f"cert_watch_{name}: must be a whole number >= {minimum}, got {value!r}")
        return minimum
    return number


def systemd_quote(value: str, command_line: bool = True) -> str:
    """One argument for systemd: in double quotes, backslash and quote escaped, % doubled (and $ on command lines)."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (escaped.replace("$", "$$") if command_line else escaped) + '"'


def item_lineages(items: list[dict], certbot_live_dir: str) -> dict[str, list[str]]:
    """certbot lineage directory -> names of the items read from it (item.certbot_live, else LIVE_DIR/NAME)."""
    lineages: dict[str, list[str]] = {}
    for item in items:
        lineage = os.path.normpath(item.get("certbot_live") or os.path.join(certbot_live_dir, item["name"]))
        lineages.setdefault(lineage, []).append(item["name"])
    return {lineage: sorted(names) for lineage, names in sorted(lineages.items())}


def plan_cert_watch(settings: dict[str, Any], certbot_dir_exists: bool = False) -> dict[str, Any]:
    """Everything the role writes, from its variables (without the cert_watch_ prefix); errors name the variable."""
    errors: list[str] = []
    flags = {name: coerce_boolean(settings.get(name, False), name, errors) for name in BOOLEAN_VARIABLES}
    numbers = {
        "settle_seconds": coerce_number(settings.get("settle_seconds", 5), "settle_seconds", errors, 0),
        "timeout_seconds": coerce_number(settings.get("timeout_seconds", 1800), "timeout_seconds", errors, 1),
        "renew_random_delay_seconds": coerce_number(
            settings.get("renew_random_delay_seconds", 43200), "renew_random_delay_seconds", errors, 0
        ),
    }
    hook_setting = settings.get("certbot_hook", "auto")
    if isinstance(hook_setting, str) and hook_setting.strip().lower() == "auto":
        certbot_hook = bool(certbot_dir_exists)
    else:
        certbot_hook = coerce_boolean(hook_setting, "certbot_hook", errors)

    items = settings.get("items") or []
    if not isinstance(items, list) or not all(isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] for item in items):
        errors.append("cert_watch_items: must be a list of certificates_items entries, each with a name")
        items = None
    certbot_live_dir = os.path.normpath(str(settings.get("certbot_live_dir") or "/etc/letsencrypt/live"))
    lineages = item_lineages(items or [], certbot_live_dir)

    unit_name = str(settings.get("unit_name", ""))
    if not _UNIT_NAME.match(unit_name):
        errors.append(f"cert_watch_unit_name: {json.dumps(unit_name)} is not a plain systemd unit name (letters, digits, ':', '_', '.', '-')")

    # Unusable items are reported once; what the paths would be without them is not a second error.
    paths = _watched_paths(settings.get("paths") or [], lineages, certbot_live_dir, errors if items is not None else [])
    if settings.get("state", "present") not in ("present", "absent"):
        errors.append(f"cert_watch_state: must be present or absent, got {settings.get('state')!r}")
    for name in ("ansible_playbook", "flock", "lock_file", "certbot_dir", "unit_dir"):
        if not str(settings.get(name, "")).startswith("/"):
            errors.append(f"cert_watch_{name}: must be an absolute path, got {settings.get(name)!r}")

    extra_args = [str(argument) for argument in settings.get("extra_args") or []]
    environment = {str(key): str(value) for key, value in (settings.get("environment") or {}).items()}
    values = paths + extra_args + list(environment) + list(environment.values()) + [
        str(settings.get(name) or "")
        for name in ("unit_description", "playbook", "renew_playbook", "renew_calendar", "inventory", "user", "group",
                     "working_directory", "lock_file", "ansible_playbook", "flock", "certbot_dir")
    ]
    if any("\n" in value or "\r" in value for value in values):
        errors.append("a cert_watch_* value holds a line break, which would end the unit file's line")

    def command(playbook: str) -> list[str]:
        inventory = ["--inventory", str(settings["inventory"])] if settings.get("inventory") else []
        return [str(settings.get("flock")), "--exclusive", str(settings.get("lock_file")), str(settings.get("ansible_playbook")),
                *inventory, *extra_args, playbook]

    unit_dir = str(settings.get("unit_dir", ""))
    certbot_dir = str(settings.get("certbot_dir", ""))
    push_command = command(str(settings.get("playbook", "")))
    renew_command = command(str(settings.get("renew_playbook", "")))
    hook_path = os.path.join(certbot_dir, "renewal-hooks", "deploy", f"{unit_name}.sh")
    unit_files = [os.path.join(unit_dir, f"{unit_name}.path"), os.path.join(unit_dir, f"{unit_name}.service")]
    renew_unit_files = [os.path.join(unit_dir, f"{unit_name}-renew.timer"), os.path.join(unit_dir, f"{unit_name}-renew.service")]
    absent = settings.get("state", "present") == "absent"
    # What an earlier run may have installed that this one does not want: stopped, then removed.
    stop_units = [path for path in unit_files[:1] if absent] + [path for path in renew_unit_files[:1] if absent or not flags["renew_timer"]]
    remove_files = (
        (unit_files if absent else [])
        + (renew_unit_files if absent or not flags["renew_timer"] else [])
        + ([hook_path] if absent or not certbot_hook else [])
    )
    return {
        "errors": errors,
        "state": settings.get("state", "present"),
        **flags,
        **numbers,
        "certbot_hook": certbot_hook,
        "paths": paths,
        "unit_name": unit_name,
        "unit_dir": unit_dir,
        "environment_lines": [systemd_quote(f"{key}={value}", command_line=False) for key, value in sorted(environment.items())],
        "exec_start": " ".join(systemd_quote(argument) for argument in push_command),
        "renew_exec_start": " ".join(systemd_quote(argument) for argument in renew_command),
        "hook_path": hook_path,
        "hook_environment": [f"export {key}={shlex.quote(value)}" for key, value in sorted(environment.items())],
        "hook_lineages": [
            {"pattern": shlex.quote(lineage), "extra_vars": shlex.quote(json.dumps({"certificates_only": names}))}
            for lineage, names in lineages.items()
        ],
        "hook_command": " ".join(shlex.quote(argument) for argument in push_command[:-1]),
        "hook_playbook": shlex.quote(push_command[-1]),
        "unit_files": unit_files,
        "renew_unit_files": renew_unit_files,
        "stop_units": stop_units,
        "remove_files": remove_files,
    }


def _watched_paths(paths: list, lineages: dict[str, list[str]], certbot_live_dir: str, errors: list[str]) -> list[str]:
    """The given paths, or every item's lineage; certbot's live/ itself becomes its lineages (path units do not recurse)."""
    if not isinstance(paths, list) or not all(isinstance(path, str) and path for path in paths):
        errors.append(f"cert_watch_paths: must be a list of absolute paths, got {paths!r}")
        return []
    relative = [path for path in paths if not path.startswith("/")]
    if relative:
        errors.append(f"cert_watch_paths: systemd watches absolute paths only, got {relative}")
        return []
    watched: list[str] = []
    for path in paths or [certbot_live_dir]:
        if os.path.normpath(path) != certbot_live_dir:
            watched.append(path)
        elif lineages:
            watched.extend(lineages)
        else:
            errors.append(
                f"cert_watch_paths: {path} is certbot's live directory, which a path unit does not watch recursively "
                "(a renewal swaps the symlinks in live/NAME); list each live/NAME, or set cert_watch_items"
                + ("" if paths else " (cert_watch_paths is empty)")
            )
    return list(dict.fromkeys(watched))
