#!/bin/sh
# Start HAProxy with its Runtime API bound to this task's address in the
# runtime network only (the one in RUNTIME_SUBNET_PREFIX), so the port is not
# open on any other network the task is attached to.
set -eu
RUNTIME_ADDRESS=""
for address in $(hostname -I); do
    case "$address" in
        "$RUNTIME_SUBNET_PREFIX"*) RUNTIME_ADDRESS=$address ;;
    esac
done
if [ -z "$RUNTIME_ADDRESS" ]; then
    echo "entrypoint: no address in ${RUNTIME_SUBNET_PREFIX}0/24 (is the task attached to the runtime network?)" >&2
    exit 1
fi
export RUNTIME_ADDRESS
# First start on an empty volume: HAProxy needs the crt-list file to exist.
crt_list=/usr/local/etc/haproxy/certs/crt-list.txt
[ -e "$crt_list" ] || : > "$crt_list"
exec haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg
