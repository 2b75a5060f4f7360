#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a unit's ExecStart= command line the way systemd would, several times at once.

Prints one JSON document: the command (as systemd would pass it), and for each
run when it was launched, when it ended and its exit code. The runs are
launched 0.5 s apart, so every later run is launched while the first holds the
lock.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time


def exec_start(unit_path: str) -> list[str]:
    with open(unit_path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.startswith("ExecStart=")]
    if len(lines) != 1:
        raise SystemExit(f"{unit_path}: expected one ExecStart= line, found {len(lines)}")
    # The role quotes every argument in double quotes with \\ and \" escaped (shell rules) and
    # doubles % and $; undo exactly that.
    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(lines[0][len("ExecStart="):])]


def main() -> None:
    unit_path, runs = sys.argv[1], int(sys.argv[2])
    command = exec_start(unit_path)
    processes = []
    for _run in range(runs):
        processes.append((time.time(), subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        time.sleep(0.5)
    results = []
    for launched, process in processes:
        output = process.communicate(timeout=300)[0].decode(errors="replace")
        results.append({"launched": launched, "ended": time.time(), "rc": process.returncode, "output": output[-2000:]})
    print(json.dumps({"command": command, "runs": results}))


if __name__ == "__main__":
    main()
