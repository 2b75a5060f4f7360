# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The execution environment installs the collection's true floors.

`ansible-builder create` builds the context into a temporary directory (no
container engine); the versions it will install are read from what it wrote
and compared with the floors the collection declares (meta/runtime.yml,
galaxy.yml), which `make test-floor` runs the role on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFINITION = os.path.join(ROOT, "examples", "swarm", "execution-environment.yml")
# The newest ansible-core minor the project's tests run on (requirements-dev.txt's ansible release).
NEWEST_TESTED_CORE = (2, 21)


def load(path: str):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def floors() -> dict[str, str]:
    found = {"ansible-core": load(os.path.join(ROOT, "meta", "runtime.yml"))["requires_ansible"].replace(">=", "").strip()}
    for name, spec in load(os.path.join(ROOT, "galaxy.yml"))["dependencies"].items():
        found[name] = spec.replace(">=", "").strip()
    return found


def test_the_floors_are_the_ones_of_issue_12():
    assert floors() == {"ansible-core": "2.16.0", "community.crypto": "2.3.2", "community.general": "8.0.2"}


def test_ansible_builder_create_installs_the_floors(tmp_path):
    shutil.copy(DEFINITION, tmp_path)
    (tmp_path / "ee-context").mkdir()
    (tmp_path / "ee-context" / "ingress-haproxy.tar.gz").write_bytes(b"")  # stands in for the built collection
    builder = os.path.join(os.path.dirname(sys.executable), "ansible-builder")
    result = subprocess.run([builder, "create", "-f", "execution-environment.yml", "--context", "context"], cwd=str(tmp_path),
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    wanted = floors()
    collections = {entry["name"]: entry.get("version") for entry in load(str(tmp_path / "context" / "_build" / "requirements.yml"))["collections"]}
    for name in ("community.crypto", "community.general"):
        assert collections[name] == ">=" + wanted[name], f"{name}: the image must install at least the floor {wanted[name]}"
    files = [name for name in os.listdir(tmp_path / "context") if name in ("Containerfile", "Dockerfile")]
    assert len(files) == 1
    with open(tmp_path / "context" / files[0], encoding="utf-8") as handle:
        (refs,) = re.findall(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"', handle.read(), re.MULTILINE)
    (core,) = [ref for ref in refs.split() if ref.startswith("ansible-core")]
    assert core == f"ansible-core>={wanted['ansible-core']},<{NEWEST_TESTED_CORE[0]}.{NEWEST_TESTED_CORE[1] + 1}"


def test_the_newest_tested_core_is_the_one_the_tests_run():
    from ansible.release import __version__

    assert tuple(int(part) for part in __version__.split(".")[:2]) == NEWEST_TESTED_CORE
