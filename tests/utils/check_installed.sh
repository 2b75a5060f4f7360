#!/usr/bin/env bash
# After `ansible-galaxy collection install` of the built tarball: every plugin
# of the installed copy must render with ansible-doc.
set -euo pipefail
: "${ANSIBLE_COLLECTIONS_PATH:?set it to the install path}"
found=0
while read -r kind name; do
    ansible-doc -t "$kind" "$name" >/dev/null
    echo "ansible-doc -t $kind $name: ok"
    found=$((found + 1))
done < <(ansible-doc --list --json -t module ingress.haproxy | python3 -c 'import json,sys; [print("module", n) for n in sorted(json.load(sys.stdin))]'
         ansible-doc --list --json -t lookup ingress.haproxy | python3 -c 'import json,sys; [print("lookup", n) for n in sorted(json.load(sys.stdin))]')
if [ "$found" -eq 0 ]; then
    echo "check_installed: no plugins found in the installed collection" >&2
    exit 1
fi
