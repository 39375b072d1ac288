#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine:
# the Debian packages in scripts/test-deps/apt.txt and the Python packages in
# scripts/test-deps/requirements.txt (into ./.venv). Safe to run again: it only
# installs what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

want_apt=$(grep -v '^\s*#' scripts/test-deps/apt.txt | awk 'NF' || true)
missing=()
for pkg in $want_apt; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-test-deps: apt-get install ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

venv="${BATON_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "install-test-deps: creating Python venv $venv"
    python3 -m venv "$venv"
fi
req="scripts/test-deps/requirements.txt"
stamp="$venv/.requirements.sha256"
if [ "$(sha256sum "$req" | cut -d' ' -f1)" != "$(cat "$stamp" 2>/dev/null)" ]; then
    echo "install-test-deps: pip install -r $req"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    sha256sum "$req" | cut -d' ' -f1 > "$stamp"
fi

# Extra steps (each script in scripts/test-deps/*.sh, run in name order).
for step in scripts/test-deps/*.sh; do
    [ -e "$step" ] || continue
    echo "install-test-deps: $step"
    bash "$step"
done
