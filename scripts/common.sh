# Shared by the project's scripts: find Python >= 3.11 and prepare .venv.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "idnode needs Python >= 3.11 (with venv); none found on PATH" >&2
    return 1
}

# ensure_venv EXTRAS: create .venv if needed and install idnode with those extras.
ensure_venv() {
    local extras=$1 python stamp
    if [ ! -x "$VENV/bin/python" ]; then
        python=$(find_python)
        echo "==> creating virtualenv $VENV with $python"
        "$python" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
    stamp="$VENV/.idnode-installed-$extras"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "==> installing idnode${extras:+[$extras]} and its dependencies"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            -e "$ROOT${extras:+[$extras]}"
        touch "$stamp"
    fi
}
