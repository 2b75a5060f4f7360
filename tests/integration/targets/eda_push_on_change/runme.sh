#!/usr/bin/env bash
# ansible-test runs ./runme.sh [-v...] from this directory inside its copy of the
# collection, with the integration config that `make integration` writes two
# levels up. The end-to-end test is a Python driver: it starts ansible-rulebook,
# writes certificate files and watches what runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config=$here/../../integration_config.yml
while [ $# -gt 0 ]; do
    if [ "$1" = "-e" ] && [ $# -gt 1 ] && [ "${2#@}" != "$2" ]; then
        config=${2#@}
        shift
    fi
    shift
done
if [ ! -f "$config" ]; then
    echo "runme.sh: $config not found (run this target through make integration)" >&2
    exit 1
fi
exec "${ANSIBLE_TEST_PYTHON_INTERPRETER:-python}" "$here/eda_e2e.py" --config "$config"
