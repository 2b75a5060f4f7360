#!/usr/bin/env bash
# ansible-test runs ./runme.sh from this directory inside its copy of the
# collection; `make integration` writes the integration config two levels up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "${ANSIBLE_TEST_PYTHON_INTERPRETER:-python}" "$here/examples_deploy.py" --config "$here/../../integration_config.yml"
