#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A TLS client that keeps making handshakes while certificates are swapped.

Round-robin over the given loopback frontends, one new TCP connection and one
full TLS handshake (with SNI) each time, paced, until the stop file appears,
the time is up or the count is reached. Writes a JSON summary: per frontend the
number of handshakes, the failures (with their errors) and the serials seen in
the order they appeared.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import ssl
import sys
import time

from cryptography import x509


def handshake(address: str, port: int, servername: str, timeout: float) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=servername) as tls:
            der = tls.getpeercert(binary_form=True)
    digits = format(x509.load_der_x509_certificate(der).serial_number, 'X')
    return digits if len(digits) % 2 == 0 else '0' + digits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--target', action='append', required=True, help='ADDRESS:PORT of a TLS frontend (loopback)')
    parser.add_argument('--servername', required=True)
    parser.add_argument('--stop-file', required=True, help='stop when this file exists')
    parser.add_argument('--out', required=True, help='write the JSON summary here')
    parser.add_argument('--seconds', type=float, default=180.0, help='stop after this long in any case')
    parser.add_argument('--max-handshakes', type=int, default=20000)
    parser.add_argument('--pace', type=float, default=0.01, help='pause between handshakes (seconds)')
    parser.add_argument('--timeout', type=float, default=5.0)
    args = parser.parse_args()

    targets = []
    for target in args.target:
        address, port = target.rsplit(':', 1)
        if not ipaddress.ip_address(address).is_loopback:
            parser.error(f'{address} is not a loopback address')
        targets.append((address, int(port)))

    stats = {f'{a}:{p}': {'handshakes': 0, 'failures': 0, 'errors': [], 'serials': []} for a, p in targets}
    started = time.monotonic()
    total = 0
    while total < args.max_handshakes and time.monotonic() - started < args.seconds and not os.path.exists(args.stop_file):
        for address, port in targets:
            entry = stats[f'{address}:{port}']
            entry['handshakes'] += 1
            total += 1
            try:
                serial = handshake(address, port, args.servername, args.timeout)
            except (OSError, ssl.SSLError, ValueError) as error:
                entry['failures'] += 1
                if len(entry['errors']) < 10:
                    entry['errors'].append(f'{time.monotonic() - started:.3f}s: {error}')
                continue
            if not entry['serials'] or entry['serials'][-1] != serial:
                entry['serials'].append(serial)
        time.sleep(args.pace)

    summary = {
        'seconds': round(time.monotonic() - started, 3),
        'handshakes': total,
        'failures': sum(entry['failures'] for entry in stats.values()),
        'stopped_by': 'stop file' if os.path.exists(args.stop_file) else 'limit',
        'targets': stats,
    }
    with open(args.out, 'w', encoding='utf-8') as out:
        json.dump(summary, out, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
