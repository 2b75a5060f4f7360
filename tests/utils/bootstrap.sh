#!/usr/bin/env bash
# Set up everything `make test`, `make demo` and `make bench` need on a fresh
# Debian 12 machine: the lab's daemons from Debian, a Python 3.12 venv with the
# pinned tools, and the get-pip stand-in ansible-test's --venv bootstrap needs
# on a machine that only reaches the package registries.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$root/.venv}

debian_packages=(haproxy bind9 bind9-utils bind9-dnsutils pebble socat systemd nghttp2-client rsync openssl git make shellcheck openjdk-17-jre-headless)
missing=()
for pkg in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "bootstrap: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

find_python312() {
    local candidate
    for candidate in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            return 0
        fi
    done
    return 1
}

stamp=$venv/.bootstrap-$(sha256sum "$root/requirements-dev.txt" | cut -c1-16)
if [ ! -e "$stamp" ]; then
    python=$(find_python312) || { echo "bootstrap: Python 3.12 not found" >&2; exit 1; }
    echo "bootstrap: creating $venv with $python"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/requirements-dev.txt"
    rm -f "$venv"/.bootstrap-*
    touch "$stamp"
fi

# ansible-rulebook pins its own dependencies: it gets a venv of its own.
eda_venv=${EDA_VENV:-$root/.venv-eda}
eda_requirements=$root/tests/integration/targets/eda_push_on_change/requirements-eda.txt
eda_stamp=$eda_venv/.bootstrap-$(sha256sum "$eda_requirements" | cut -c1-16)
if [ ! -e "$eda_stamp" ]; then
    python=$(find_python312) || { echo "bootstrap: Python 3.12 not found" >&2; exit 1; }
    echo "bootstrap: creating $eda_venv (ansible-rulebook)"
    "$python" -m venv "$eda_venv"
    "$eda_venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
    "$eda_venv/bin/pip" install -q --disable-pip-version-check -r "$eda_requirements"
    rm -f "$eda_venv"/.bootstrap-*
    touch "$eda_stamp"
fi

# ansible-test --venv downloads get-pip from a host this machine cannot reach;
# the stand-in installs the same packages with the interpreter's own ensurepip.
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
pip_version=$("$venv/bin/python" - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
print(get_venv_packages(NativePythonConfig(version='3.12'))['pip'].replace('.', '_'))
PY
)
install -m 0644 "$root/tests/utils/get_pip_standin.py" "$cache/get_pip_${pip_version}.py"
