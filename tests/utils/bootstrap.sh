#!/usr/bin/env bash
# Set up everything `make test`, `make demo` and `make bench` need on a fresh
# Debian 12 machine: the lab's daemons from Debian, a Python 3.12 venv with the
# pinned tools, and the get-pip stand-in ansible-test's --venv bootstrap needs
# on a machine that only reaches the package registries.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$root/.venv}

debian_packages=(haproxy debootstrap bind9 bind9-utils bind9-dnsutils pebble socat systemd nghttp2-client rsync openssl git make shellcheck openjdk-17-jre-headless)
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

# A venv built from a requirements file, rebuilt only when that file changes.
ensure_venv() {
    local dir=$1 requirements=$2 stamp python
    stamp=$dir/.bootstrap-$(sha256sum "$requirements" | cut -c1-16)
    [ -e "$stamp" ] && return 0
    python=$(find_python312) || { echo "bootstrap: Python 3.12 not found" >&2; exit 1; }
    echo "bootstrap: creating $dir from $requirements with $python"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check --upgrade pip
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    rm -f "$dir"/.bootstrap-*
    touch "$stamp"
}

ensure_venv "$venv" "$root/requirements-dev.txt"
# ansible-rulebook pins its own dependencies: it gets a venv of its own.
ensure_venv "${EDA_VENV:-$root/.venv-eda}" "$root/tests/integration/targets/eda_push_on_change/requirements-eda.txt"

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
