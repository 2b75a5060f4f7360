#!/usr/bin/env bash
# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# make test-floor: install EXACTLY the declared minimum ansible-core
# (meta/runtime.yml) and collections (galaxy.yml dependencies) in a venv and a
# collections directory of their own, then run the role's pipeline target with
# them, so the floors we declare are floors that work.
#
# Galaxy is not reachable from CI; PyPI is. The `ansible` package on PyPI
# ships collections, so each floor version is taken out of the `ansible`
# release that ships exactly that version (FLOOR_SOURCES below), and the
# script fails if the declared floor and the shipped version differ.
#
# usage: floor.sh WORK_DIR COLLECTION_ROOT PYTHON INTEGRATION_TARGET
set -euo pipefail

work=$1 coll_root=$2 python=$3 target=$4
repo=$(cd "$(dirname "$0")/../.." && pwd)

# collection floor -> the ansible release on PyPI that ships exactly it
declare -A FLOOR_SOURCES=(
    [community.general:8.0.2]=9.0.1
    [community.crypto:2.3.2]=6.0.0
)

read_floors() {
    "$python" - "$repo" <<'EOF'
import sys, yaml
repo = sys.argv[1]
runtime = yaml.safe_load(open(repo + "/meta/runtime.yml"))
galaxy = yaml.safe_load(open(repo + "/galaxy.yml"))
print("ansible-core", runtime["requires_ansible"].replace(">=", "").strip())
for name, spec in galaxy["dependencies"].items():
    print(name, spec.replace(">=", "").strip())
EOF
}

venv=$work/venv downloads=$work/downloads
mkdir -p "$work" "$downloads"
if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv"
fi
# ansible-test hands its own ANSIBLE_COLLECTIONS_PATH to the tests: the floor
# collections go where ansible-core always looks, the venv's site-packages.
collections=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$collections/ansible_collections/community" && mkdir -p "$collections/ansible_collections"

core_floor=
while read -r name version; do
    if [[ $name == ansible-core ]]; then
        core_floor=$version
        continue
    fi
    release=${FLOOR_SOURCES[$name:$version]:-}
    if [[ -z $release ]]; then
        echo "floor: no ansible release known to ship $name $version exactly; add it to FLOOR_SOURCES in $0" >&2
        exit 1
    fi
    "$python" -m pip download -q --no-deps "ansible==$release" -d "$downloads/ansible-$release"
    namespace=${name%%.*} collection=${name#*.}
    mkdir -p "$collections/ansible_collections/$namespace"
    "$python" - "$downloads/ansible-$release" "ansible_collections/$namespace/$collection/" "$collections" <<'EOF'
import glob, sys, zipfile
wheel, = glob.glob(sys.argv[1] + "/ansible-*.whl")
with zipfile.ZipFile(wheel) as archive:
    archive.extractall(sys.argv[3], [name for name in archive.namelist() if name.startswith(sys.argv[2])])
EOF
    shipped=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["collection_info"]["version"])' \
        "$collections/ansible_collections/$namespace/$collection/MANIFEST.json")
    if [[ $shipped != "$version" ]]; then
        echo "floor: ansible $release ships $name $shipped, not the declared floor $version" >&2
        exit 1
    fi
    echo "floor: $name $shipped (from ansible $release)"
done < <(read_floors)

"$venv/bin/python" -m pip install -q "ansible-core==$core_floor" -r "$repo/requirements.txt"
echo "floor: $("$venv/bin/ansible" --version | head -1)"

# Only the floor collections and this one: nothing from ~/.ansible or the main venv.
cd "$coll_root/ansible_collections/ingress/haproxy"
export ANSIBLE_COLLECTIONS_PATH=$coll_root
export PATH=$venv/bin:$PATH
"$venv/bin/ansible-galaxy" collection list 2>/dev/null | grep -E '^(community|ingress)\.' || true
"$venv/bin/ansible-test" integration --local --python "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    --color no "$target"
