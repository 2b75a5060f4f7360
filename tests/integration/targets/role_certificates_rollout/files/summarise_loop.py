#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Sum up a handshake_loop.py record (from --since on): per instance, every fingerprint seen with its first and
last time, the handshakes made and those that failed (with the instances --down left out of the failures)."""

from __future__ import annotations

import argparse
import json


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", required=True)
    parser.add_argument("--since", type=float, default=0.0)
    args = parser.parse_args()
    summary = {}
    with open(args.record, encoding="utf-8") as record:
        for line in record:
            entry = json.loads(line)
            if entry["t"] < args.since:
                continue
            instance = summary.setdefault(entry["instance"], {"handshakes": 0, "failed": 0, "errors": [], "seen": {}})
            instance["handshakes"] += 1
            if "error" in entry:
                instance["failed"] += 1
                instance["errors"] = (instance["errors"] + [entry["error"]])[-3:]
                continue
            seen = instance["seen"].setdefault(entry["fingerprint"], {"first": entry["t"], "last": entry["t"]})
            seen["last"] = entry["t"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
