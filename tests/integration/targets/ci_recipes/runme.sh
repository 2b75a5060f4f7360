#!/usr/bin/env bash
# ansible-test runs ./runme.sh from a copy of this directory; `make integration`
# writes the integration config (which names the collection's copy) two levels up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "${ANSIBLE_TEST_PYTHON_INTERPRETER:-python}" "$here/ci_recipes.py" --config "$here/../../integration_config.yml"
