#!/usr/bin/env python
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A TLS client that keeps making handshakes with every instance until a stop file appears.

Each handshake (SNI --servername, nothing validated: it records what is served)
appends one JSON line to --out: time, instance, fingerprint (SHA1 of the leaf,
as HAProxy prints it) or error. The rollout tests read it afterwards: how many
handshakes failed, which instances ever served a leaf, and when each first did.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import ssl
import time


def handshake(address, port, servername, timeout):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=servername) as tls:
            return hashlib.sha1(tls.getpeercert(binary_form=True)).hexdigest().upper()  # nosec - a fingerprint


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop", required=True, help="stop when this file exists")
    parser.add_argument("--servername", required=True)
    parser.add_argument("--target", action="append", required=True, help="NAME=ADDRESS:PORT")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--limit", type=float, default=600, help="stop after this many seconds in any case")
    args = parser.parse_args()
    targets = []
    for spec in args.target:
        name, _sep, where = spec.partition("=")
        address, _sep, port = where.rpartition(":")
        targets.append((name, address, int(port)))
    started = time.monotonic()
    with open(args.out, "a", encoding="utf-8") as out:
        while not os.path.exists(args.stop) and time.monotonic() - started < args.limit:
            for name, address, port in targets:
                record = {"t": time.time(), "instance": name}
                try:
                    record["fingerprint"] = handshake(address, port, args.servername, 2.0)
                except (OSError, ssl.SSLError) as exc:
                    record["error"] = str(exc)
                out.write(json.dumps(record) + "\n")
                out.flush()
            time.sleep(args.interval)


if __name__ == "__main__":
    main()
