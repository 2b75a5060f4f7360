#!/usr/bin/env python
# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Command line of the loopback lab (test infrastructure, see tests/lab/README.md).

  lab.py start --root ROOT [--instances 3] [--dns] [--acme] [--master-worker] [--preload N]
               [--haproxy {2.6,3.0,3.2,3.4}]
               [--pebble {2.4,2.10}] [--acme-eab]
  lab.py stop --state-dir DIR            lab.py stop-all --root ROOT
  lab.py served --address A --port P --servername NAME [--ca FILE]
  lab.py runtime --endpoint E [--payload-file F] COMMAND...
  lab.py client --address A --port P --cert C --key K   (mTLS: accepted or not)
  lab.py instance --state-dir DIR --name h2 {stop,start,restart}
  lab.py list --root ROOT
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable-next=wrong-import-position
from ingress_lab import (DEFAULT_ROOT, Lab, LabError, client_request, find_labs, load_state,  # noqa: E402
                         runtime_command, served, stop_all, stop_lab)
# pylint: disable-next=wrong-import-position
from ingress_lab._roots import VERSION_ENV, known_versions  # noqa: E402
# pylint: disable-next=wrong-import-position
from ingress_lab._pebbles import known_pebbles  # noqa: E402


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must not be negative: {text}')
    return value


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write('\n')


def _start(args: argparse.Namespace) -> None:
    lab = Lab(args.root, instances=args.instances, dns=args.dns, acme=args.acme,
              master_worker=args.master_worker, preload=args.preload, bufsize=args.bufsize,
              nbthread=args.nbthread, timeout=args.timeout, haproxy=args.haproxy,
              pebble=args.pebble, acme_eab=args.acme_eab)
    _print_json(lab.start())


def _stop(args: argparse.Namespace) -> None:
    for line in stop_lab(args.state_dir, keep=args.keep):
        print(line, file=sys.stderr)


def _stop_all(args: argparse.Namespace) -> None:
    for state_dir, lines in stop_all(args.root, keep=args.keep).items():
        print(f'{state_dir}:', file=sys.stderr)
        for line in lines:
            print(f'  {line}', file=sys.stderr)


def _served(args: argparse.Namespace) -> None:
    _print_json(served(args.address, args.port, args.servername, ca_file=args.ca, timeout=args.timeout))


def _client(args: argparse.Namespace) -> None:
    _print_json(client_request(args.address, args.port, args.cert, args.key, timeout=args.timeout))


def _runtime(args: argparse.Namespace) -> None:
    if not args.command:
        raise LabError('no command given')
    payload = None
    if args.payload_file:
        with open(args.payload_file, encoding='utf-8') as payload_in:
            payload = payload_in.read()
    sys.stdout.write(runtime_command(args.endpoint, ' '.join(args.command), payload=payload,
                                     timeout=args.timeout))


def _instance(args: argparse.Namespace) -> None:
    lab = Lab.attach(args.state_dir, keep=True)
    if args.action in ('stop', 'restart'):
        for line in lab.stop_instance(args.name):
            print(line, file=sys.stderr)
    if args.action in ('start', 'restart'):
        _print_json(lab.start_instance(args.name))


def _list(args: argparse.Namespace) -> None:
    labs = []
    for state_dir in find_labs(args.root):
        state = load_state(state_dir)
        labs.append({'state_dir': state_dir, 'status': state.get('status'),
                     'pids': [entry['pid'] for entry in state.get('processes', [])]})
    _print_json(labs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='The ingress.haproxy loopback lab.')
    commands = parser.add_subparsers(dest='command', required=True)

    start = commands.add_parser('start', help='start a lab, print its state as JSON')
    start.add_argument('--root', default=DEFAULT_ROOT, help=f'parent of the state dir (default {DEFAULT_ROOT})')
    start.add_argument('--instances', type=int, default=3, help='HAProxy processes (default 3)')
    start.add_argument('--dns', action='store_true', help='start bind9')
    start.add_argument('--acme', action='store_true', help='start pebble (implies --dns)')
    start.add_argument('--master-worker', action='store_true',
                       help='run every instance in master-worker mode (instance 1 always is)')
    start.add_argument('--preload', type=_positive, default=0,
                       help='load N extra certificates in every crt-list at start')
    start.add_argument('--bufsize', type=int, help='HAProxy tune.bufsize (default: HAProxy\'s 16384)')
    start.add_argument('--nbthread', type=int, help='HAProxy nbthread (default: HAProxy\'s choice)')
    start.add_argument('--timeout', type=float, default=30.0, help='start-up timeout in seconds')
    start.add_argument('--haproxy', choices=known_versions(),
                       help=f'HAProxy version: 2.6 the host\'s, 3.0/3.2/3.4 Debian\'s in a cached root '
                            f'(default ${VERSION_ENV}, else 2.6)')
    start.add_argument('--pebble', choices=known_pebbles(),
                       help='pebble version: 2.4 the host\'s (default), 2.10 Debian sid\'s (profiles, ARI), '
                            'fetched once next to the HAProxy roots')
    start.add_argument('--acme-eab', action='store_true',
                       help='pebble requires External Account Binding (key id and MAC key in the state)')
    start.set_defaults(func=_start)

    stop = commands.add_parser('stop', help='stop the lab recorded in a state dir')
    stop.add_argument('--state-dir', required=True)
    stop.add_argument('--keep', action='store_true', help='keep the state dir (logs) after stopping')
    stop.set_defaults(func=_stop)

    stop_every = commands.add_parser('stop-all', help='stop every lab recorded under ROOT')
    stop_every.add_argument('--root', default=DEFAULT_ROOT)
    stop_every.add_argument('--keep', action='store_true')
    stop_every.set_defaults(func=_stop_all)

    serve = commands.add_parser('served', help='TLS handshake with SNI; print the leaf presented')
    serve.add_argument('--address', required=True)
    serve.add_argument('--port', required=True, type=int)
    serve.add_argument('--servername', required=True)
    serve.add_argument('--ca', help='verify the chain and name against this CA file')
    serve.add_argument('--timeout', type=float, default=5.0)
    serve.set_defaults(func=_served)

    client = commands.add_parser('client', help='HTTPS GET with a client certificate (mTLS); print accepted or not')
    client.add_argument('--address', required=True)
    client.add_argument('--port', type=int, required=True)
    client.add_argument('--cert', required=True, help='client certificate (PEM)')
    client.add_argument('--key', required=True, help='its private key (PEM)')
    client.add_argument('--timeout', type=float, default=5.0)
    client.set_defaults(func=_client)

    runtime = commands.add_parser('runtime', help='send one Runtime API command, print the reply')
    runtime.add_argument('--endpoint', required=True, help='unix socket path, HOST:PORT or tcp:HOST:PORT')
    runtime.add_argument('--payload-file', help='send this file as the command\'s "<<" payload')
    runtime.add_argument('--timeout', type=float, default=5.0)
    runtime.add_argument('command', nargs=argparse.REMAINDER, help='the command, e.g. show ssl crt-list -n LIST')
    runtime.set_defaults(func=_runtime)

    instance = commands.add_parser('instance', help='stop or start one HAProxy instance of a lab')
    instance.add_argument('--state-dir', required=True)
    instance.add_argument('--name', required=True, help='instance name, e.g. h2')
    instance.add_argument('action', choices=['stop', 'start', 'restart'])
    instance.set_defaults(func=_instance)

    listing = commands.add_parser('list', help='labs recorded under ROOT')
    listing.add_argument('--root', default=DEFAULT_ROOT)
    listing.set_defaults(func=_list)
    return parser


def main() -> int:
    args = build_parser().parse_args()
    try:
        args.func(args)
    except LabError as exc:
        print(f'lab {args.command}: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
