#!/usr/bin/env bash
# Runs baton's whole test suite on a fresh machine: installs what the suite
# needs (Debian packages, a Python venv with the interop peers), builds the
# workspace, checks formatting and lints, and runs every test.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"

bash scripts/install-test-deps.sh
export BATON_VENV="${BATON_VENV:-$root/.venv}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
