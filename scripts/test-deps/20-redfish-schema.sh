#!/usr/bin/env bash
# Makes the DMTF Redfish CSDL schema files available offline for the Redfish
# Service Validator run by hw-sim's interop tests. They ship inside the
# crates.io package `nv-redfish-schema` (folder redfish-csdl/csdl/): a throwaway
# cargo project depending on it is fetched with cargo, and the folder is linked
# to .cache/redfish-csdl. Fast when already done.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
link="$root/.cache/redfish-csdl"
if [ -f "$link/ServiceRoot_v1.xml" ]; then
    exit 0
fi
proj="$root/.cache/redfish-schema-fetch"
mkdir -p "$proj/src"
cat > "$proj/Cargo.toml" <<'TOML'
[package]
name = "redfish-schema-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
nv-redfish-schema = "=0.22.1"

[workspace]
TOML
echo 'fn main() {}' > "$proj/src/main.rs"
(cd "$proj" && cargo fetch --quiet)
version=$(cd "$proj" && cargo metadata --format-version 1 --quiet \
    | python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="nv-redfish-schema"))')
csdl="$(dirname "$version")/redfish-csdl/csdl"
if [ ! -f "$csdl/ServiceRoot_v1.xml" ]; then
    echo "20-redfish-schema: no CSDL files in $csdl" >&2
    exit 1
fi
mkdir -p "$root/.cache"
ln -sfn "$csdl" "$link"
echo "20-redfish-schema: $link -> $csdl"
