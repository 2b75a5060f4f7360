# Copyright (c) 2026, ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The silent endpoint: accepts TCP connections and never sends a byte.

Run as its own process (``python _silent.py --address A --ready-file F``) so a
client can be shown to time out instead of hanging. It binds port 0 itself
(no race) and writes the port to the ready file once it listens.
"""

from __future__ import annotations

import argparse
import os
import socket


def serve(address: str, ready_file: str) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((address, 0))
    listener.listen(128)
    temporary = ready_file + '.tmp'
    with open(temporary, 'w', encoding='ascii') as out:
        out.write(f'{listener.getsockname()[1]}\n')
    os.replace(temporary, ready_file)
    held = []
    while True:
        connection, _peer = listener.accept()
        # Keep it open, never read, never answer.
        held.append(connection)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--address', default='127.0.0.1')
    parser.add_argument('--ready-file', required=True)
    args = parser.parse_args()
    serve(args.address, args.ready_file)


if __name__ == '__main__':
    main()
