#!/usr/bin/env bash
# After `ansible-galaxy collection install` of the built tarball: every plugin
# and role of the installed copy renders with ansible-doc, and the playbooks
# and the EDA extension made it into the tarball.
set -euo pipefail
: "${ANSIBLE_COLLECTIONS_PATH:?set it to the install path}"
installed=$ANSIBLE_COLLECTIONS_PATH/ansible_collections/ingress/haproxy
found=0
while read -r kind name; do
    ansible-doc -t "$kind" "$name" >/dev/null
    echo "ansible-doc -t $kind $name: ok"
    found=$((found + 1))
done < <(for kind in module lookup role; do
             ansible-doc --list --json -t "$kind" ingress.haproxy |
                 python3 -c 'import json, sys; [print(sys.argv[1], n) for n in sorted(json.load(sys.stdin))]' "$kind"
         done)
if [ "$found" -eq 0 ]; then
    echo "check_installed: no plugins found in the installed collection" >&2
    exit 1
fi
for path in playbooks/site.yml playbooks/renew.yml playbooks/push.yml playbooks/status.yml \
            extensions/eda/plugins/event_source/cert_changes.py extensions/eda/rulebooks/push_on_change.yml \
            meta/runtime.yml; do
    [ -f "$installed/$path" ] || { echo "check_installed: $path is missing from the tarball" >&2; exit 1; }
done
for unwanted in .venv .venv-eda .ci tests/output; do
    [ ! -e "$installed/$unwanted" ] || { echo "check_installed: $unwanted must not be in the tarball" >&2; exit 1; }
done
echo "check_installed: $found plugins and roles render; playbooks and EDA extension present"
