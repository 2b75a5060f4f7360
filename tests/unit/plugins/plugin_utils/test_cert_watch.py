# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The cert_watch role's decisions (plugins/plugin_utils/_cert_watch.py); the role_cert_watch
# integration target runs what they produce (systemd-analyze, the command lines, the hook).

from __future__ import annotations

import shlex
import subprocess

import pytest

from ansible_collections.ingress.haproxy.plugins.filter._cert_watch_plan import FilterModule
from ansible_collections.ingress.haproxy.plugins.plugin_utils._cert_watch import plan_cert_watch, systemd_quote

BASE = {
    "state": "present",
    "paths": [],
    "items": [{"name": "www", "certbot_live": "/etc/letsencrypt/live/www.example.com"}, {"name": "api"}],
    "certbot_dir": "/etc/letsencrypt",
    "certbot_live_dir": "/etc/letsencrypt/live",
    "certbot_hook": "auto",
    "unit_name": "watch",
    "unit_dir": "/etc/systemd/system",
    "playbook": "ingress.haproxy.push",
    "renew_playbook": "ingress.haproxy.renew",
    "inventory": "/etc/inv",
    "extra_args": ["-e", "a=$HOME 100%"],
    "environment": {"ANSIBLE_CONFIG": "/etc/a b.cfg"},
    "lock_file": "/run/lock/push.lock",
    "ansible_playbook": "/usr/bin/ansible-playbook",
    "flock": "/usr/bin/flock",
    "settle_seconds": "5",
    "timeout_seconds": 1800,
    "renew_random_delay_seconds": "43200",
    "manage_service": "false",
    "enabled": "yes",
    "started": "no",
    "renew_timer": "true",
}


def plan(**changes):
    return plan_cert_watch({**BASE, **changes})


@pytest.mark.parametrize("text, meaning", [("false", False), ("true", True), ("no", False), ("yes", True), ("False", False),
                                           ("YES", True), ("n", False), ("t", True), (False, False), (True, True), (0, False), (1, True)])
def test_every_boolean_is_coerced(text, meaning):
    decided = plan(manage_service=text, enabled=text, started=text, renew_timer=text, certbot_hook=text)
    assert decided["errors"] == []
    assert [decided[name] for name in ("manage_service", "enabled", "started", "renew_timer", "certbot_hook")] == [meaning] * 5


def test_numbers_are_coerced_and_checked():
    decided = plan(settle_seconds="0", timeout_seconds="60", renew_random_delay_seconds=10)
    assert (decided["settle_seconds"], decided["timeout_seconds"], decided["renew_random_delay_seconds"]) == (0, 60, 10)
    assert plan(timeout_seconds="0")["errors"] == ["cert_watch_timeout_seconds: must be a whole number >= 1, got '0'"]
    assert plan(settle_seconds="-1")["errors"] == ["cert_watch_settle_seconds: must be a whole number >= 0, got '-1'"]
    assert plan(enabled="maybe")["errors"] == ["cert_watch_enabled: must be a boolean (true/false, yes/no), got 'maybe'"]


def test_certbot_hook_auto_follows_the_certbot_directory():
    assert plan_cert_watch(BASE, certbot_dir_exists=True)["certbot_hook"] is True
    assert plan_cert_watch(BASE, certbot_dir_exists=False)["certbot_hook"] is False
    assert plan_cert_watch({**BASE, "certbot_hook": "no"}, certbot_dir_exists=True)["certbot_hook"] is False


def test_paths_are_every_item_lineage_never_the_live_parent():
    assert plan()["paths"] == ["/etc/letsencrypt/live/api", "/etc/letsencrypt/live/www.example.com"]
    assert plan(paths=["/etc/letsencrypt/live/", "/srv/k8s/tls"])["paths"] == [
        "/etc/letsencrypt/live/api", "/etc/letsencrypt/live/www.example.com", "/srv/k8s/tls"]
    assert plan(paths=["/srv/certs"])["paths"] == ["/srv/certs"]
    (error,) = plan(items=[])["errors"]
    assert error.startswith("cert_watch_paths: /etc/letsencrypt/live is certbot's live directory")


def test_command_lines_are_quoted_for_systemd_and_the_shell():
    decided = plan()
    assert decided["exec_start"] == " ".join(systemd_quote(word) for word in [
        "/usr/bin/flock", "--exclusive", "/run/lock/push.lock", "/usr/bin/ansible-playbook", "--inventory", "/etc/inv",
        "-e", "a=$HOME 100%", "ingress.haproxy.push"])
    assert '"a=$$HOME 100%%"' in decided["exec_start"]
    assert decided["renew_exec_start"].endswith('"ingress.haproxy.renew"')
    assert decided["environment_lines"] == ['"ANSIBLE_CONFIG=/etc/a b.cfg"']
    assert shlex.split(decided["hook_command"])[-2:] == ["-e", "a=$HOME 100%"]
    assert decided["hook_lineages"] == [
        {"pattern": "/etc/letsencrypt/live/api", "extra_vars": shlex.quote('{"certificates_only": ["api"]}')},
        {"pattern": "/etc/letsencrypt/live/www.example.com", "extra_vars": shlex.quote('{"certificates_only": ["www"]}')},
    ]


def test_the_hook_pattern_matches_only_its_lineage():
    """The case pattern is shell-quoted: a lineage with glob characters matches only itself."""
    decided = plan(items=[{"name": "odd", "certbot_live": "/le/live/a*b [x]"}])
    (lineage,) = decided["hook_lineages"]
    script = f'case "$1" in {lineage["pattern"]}) echo hit ;; *) echo miss ;; esac'

    def run(value: str) -> str:
        return subprocess.run(["sh", "-c", script, "sh", value], capture_output=True, text=True, check=True).stdout.strip()

    assert run("/le/live/a*b [x]") == "hit"
    assert run("/le/live/aXXb x") == "miss"


def test_absent_removes_everything_present_removes_what_is_not_wanted():
    everything = ["/etc/systemd/system/watch.path", "/etc/systemd/system/watch.service",
                  "/etc/systemd/system/watch-renew.timer", "/etc/systemd/system/watch-renew.service",
                  "/etc/letsencrypt/renewal-hooks/deploy/watch.sh"]
    assert plan(state="absent")["remove_files"] == everything
    assert plan(state="absent")["stop_units"] == ["/etc/systemd/system/watch.path", "/etc/systemd/system/watch-renew.timer"]
    assert plan_cert_watch({**BASE, "renew_timer": True}, certbot_dir_exists=True)["remove_files"] == []
    assert plan(renew_timer="no")["remove_files"] == everything[2:]


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"unit_name": "bad name@"}, "cert_watch_unit_name: \"bad name@\" is not a plain systemd unit name"),
        ({"paths": ["relative/live"]}, "cert_watch_paths: systemd watches absolute paths only, got ['relative/live']"),
        ({"items": [{"domains": ["x"]}]}, "cert_watch_items: must be a list of certificates_items entries, each with a name"),
        ({"lock_file": "push.lock"}, "cert_watch_lock_file: must be an absolute path, got 'push.lock'"),
        ({"extra_args": ["a\nExecStartPost=/bin/false"]}, "a cert_watch_* value holds a line break"),
        ({"state": "gone"}, "cert_watch_state: must be present or absent, got 'gone'"),
    ],
)
def test_bad_settings_name_the_variable(changes, error):
    (message,) = plan(**changes)["errors"]
    assert message.startswith(error)


def test_the_filter_is_registered_and_refuses_a_non_dict():
    from ansible.errors import AnsibleFilterError  # pylint: disable=import-outside-toplevel

    cert_watch_plan = FilterModule().filters()["_cert_watch_plan"]
    assert cert_watch_plan(BASE)["errors"] == []
    with pytest.raises(AnsibleFilterError, match="expects a dict"):
        cert_watch_plan(["x"])
