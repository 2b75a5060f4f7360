# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fail when the built collection tarball holds a generated file or a build machine's path.

usage: check_tarball.py TARBALL PATH...   (PATH: directories of the build machine, e.g. the checkout and WORK)
"""

import sys
import tarfile

GENERATED = ("tests/integration/integration_config.yml", "tests/output/")


def main(tarball, machine_paths):
    problems = []
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            # Galaxy tarballs hold the collection's files at their root.
            name = member.name[2:] if member.name.startswith("./") else member.name
            if any(name == entry or name.startswith(entry) for entry in GENERATED):
                problems.append("%s: a generated file" % member.name)
            if not member.isfile():
                continue
            text = archive.extractfile(member).read().decode("utf-8", "replace")
            problems.extend("%s: holds the build machine's path %s" % (member.name, path)
                            for path in machine_paths if path in text)
    for problem in problems:
        print("check_tarball: " + problem, file=sys.stderr)
    if problems:
        return 1
    print("check_tarball: %s holds no generated file and no path of this machine" % tarball)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], [path.rstrip("/") + "/" for path in sys.argv[2:]]))
