#!/usr/bin/env python
# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""README's "Tested with" table, from the passes of `make test-matrix`.

  tested_with.py record --results R --version 3.2 --status passed --seconds 95 --log LOG
  tested_with.py readme --results R --targets 'a b' --readme README.md

``record`` adds one version's pass to the results file; the exact HAProxy
version is read from the pass's log (setup_lab prints the lab's
``haproxy_version``). ``readme`` replaces what stands between the table's
markers in README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys

START = '<!-- tested-with:start (make test-matrix writes this table) -->'
END = '<!-- tested-with:end -->'
# setup_lab's "Show where the lab runs" task prints: "haproxy": "3.2.26-1"
_VERSION = re.compile(r'"haproxy": "(\d+\.\d+\.\d+)[^"]*"')


def _load(path: str) -> dict:
    try:
        with open(path, encoding='utf-8') as results:
            return json.load(results)
    except FileNotFoundError:
        return {'passes': []}


def record(args: argparse.Namespace) -> None:
    with open(args.log, encoding='utf-8', errors='replace') as log:
        seen = sorted(set(_VERSION.findall(log.read())))
    results = _load(args.results)
    results['passes'].append({
        'version': args.version,
        'haproxy': ', '.join(seen) or 'unknown (no lab started)',
        'status': args.status,
        'seconds': args.seconds,
        'date': datetime.date.today().isoformat(),
    })
    with open(args.results, 'w', encoding='utf-8') as out:
        json.dump(results, out, indent=2)
        out.write('\n')


def table(results: dict, targets: list[str]) -> str:
    lines = [START, '',
             f'Integration targets {", ".join(f"`{t}`" for t in targets)}, '
             f'last `make test-matrix` run:', '',
             '| HAProxy | Debian build | result | pass took |',
             '|---|---|---|---|']
    for entry in results['passes']:
        lines.append(f'| {entry["version"]} | {entry["haproxy"]} | {entry["status"]} ({entry["date"]}) '
                     f'| {entry["seconds"]} s |')
    lines += ['', END]
    return '\n'.join(lines)


def readme(args: argparse.Namespace) -> None:
    with open(args.readme, encoding='utf-8') as readme_in:
        text = readme_in.read()
    if START not in text or END not in text:
        sys.exit(f'{args.readme}: the markers {START!r} and {END!r} are missing')
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new_text = head + table(_load(args.results), args.targets.split()) + tail
    temporary = args.readme + '.tmp'
    with open(temporary, 'w', encoding='utf-8') as out:
        out.write(new_text)
    os.replace(temporary, args.readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    add = commands.add_parser('record')
    add.add_argument('--results', required=True)
    add.add_argument('--version', required=True)
    add.add_argument('--status', required=True, choices=['passed', 'failed'])
    add.add_argument('--seconds', required=True, type=int)
    add.add_argument('--log', required=True)
    add.set_defaults(func=record)
    write = commands.add_parser('readme')
    write.add_argument('--results', required=True)
    write.add_argument('--targets', required=True)
    write.add_argument('--readme', required=True)
    write.set_defaults(func=readme)
    args = parser.parse_args()
    args.func(args)


if __name__ == '__main__':
    main()
