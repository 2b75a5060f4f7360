# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The commands the CI recipes in examples/ci run, read out of the recipes themselves.

    python tests/examples/ci_commands.py examples/ci/github-actions.yml renew

prints, as JSON, the steps of that job in order: {"name", "run" (the shell text),
"env" (the environment the recipe gives it, values as written, unexpanded)}.
So a test (and an integration target that runs them against the lab) executes
what the recipe says, not a copy of it that can drift.

GitHub Actions: every step with `run:` (steps that `uses:` an action are left
out), with the workflow's, the job's and the step's `env:`. GitLab CI: the
`before_script` (the job's, else the default's), then `script`, one entry per
line, with the global and the job's `variables:` and what the lines before it
`export` (their values as written).
"""

from __future__ import annotations

import json
import os
import re
import sys

import yaml


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def recipe_kind(path: str) -> str:
    return "github" if "jobs" in _load(path) else "gitlab"


def github_steps(path: str, job: str) -> list[dict]:
    workflow = _load(path)
    definition = workflow["jobs"][job]
    base = {**(workflow.get("env") or {}), **(definition.get("env") or {})}
    return [{"name": step.get("name", step["run"]), "run": step["run"], "env": {**base, **(step.get("env") or {})}}
            for step in definition["steps"] if "run" in step]


def _lines(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def gitlab_steps(path: str, job: str) -> list[dict]:
    pipeline = _load(path)
    definition = pipeline[job]
    env = {**(pipeline.get("variables") or {}), **(definition.get("variables") or {})}
    before = definition["before_script"] if "before_script" in definition else (pipeline.get("default") or {}).get("before_script")
    lines = [(f"before_script[{index}]", line) for index, line in enumerate(_lines(before))]
    lines += [(f"script[{index}]", line) for index, line in enumerate(_lines(definition["script"]))]
    steps = []
    for name, line in lines:
        steps.append({"name": name, "run": line, "env": dict(env)})
        exported = re.fullmatch(r'export ([A-Za-z_][A-Za-z0-9_]*)="(.*)"', line.strip())
        if exported:
            env[exported.group(1)] = exported.group(2)
    return steps


def job_steps(path: str, job: str) -> list[dict]:
    return github_steps(path, job) if recipe_kind(path) == "github" else gitlab_steps(path, job)


def jobs(path: str) -> list[str]:
    recipe = _load(path)
    if recipe_kind(path) == "github":
        return list(recipe["jobs"])
    return [name for name, value in recipe.items() if isinstance(value, dict) and "script" in value and not name.startswith(".")]


def playbook_commands(path: str, job: str) -> list[str]:
    """The ansible-playbook command lines of JOB (each as the recipe writes it)."""
    found = []
    for step in job_steps(path, job):
        found += [line.strip() for line in step["run"].splitlines() if line.strip().startswith("ansible-playbook ")]
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {os.path.basename(argv[0])} RECIPE JOB", file=sys.stderr)
        return 2
    print(json.dumps(job_steps(argv[1], argv[2]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
