#!/usr/bin/env bash
# Runs baton on a simulated rack, with no hardware and no root:
#   1. builds batond, baton and baton-hwsim with `cargo build --release
#      --workspace` (the same packages and features as that command run by
#      hand, so neither rebuilds what the other built);
#   2. starts baton-hwsim with a rack of simulated BMCs (Redfish and IPMI)
#      and writes its inventory to demo/inventory.json, and a second one of
#      4 spare servers (spare-0000…) whose inventory demo/spare.json is left
#      for you to enroll (`baton node import demo/spare.json`);
#   3. starts batond on config/demo.toml (socket and SQLite file in demo/);
#   4. enrolls the rack with `baton node import demo/inventory.json`.
# Ctrl-C stops everything. Each run starts from an empty demo/ directory,
# since the simulated BMCs take new ports every run.
#
# Environment: DEMO_NODES (default 1000), DEMO_CONTROL_PORT (hw-sim control API,
# default 8700), DEMO_DRIVER (redfish|ipmi|mixed, default mixed), DEMO_BIN (a
# directory holding batond, baton and baton-hwsim already built: no build).
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"

nodes=${DEMO_NODES:-1000}
control_port=${DEMO_CONTROL_PORT:-8700}
driver=${DEMO_DRIVER:-mixed}
socket=demo/baton.sock

bin=target/release
if [[ -n ${DEMO_BIN:-} ]]; then
    bin=$DEMO_BIN
else
    echo "demo: building (cargo build --release --workspace) ..."
    cargo build --release --workspace --quiet
fi

rm -rf demo
mkdir -p demo
pids=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo: stopped"
}
trap cleanup INT TERM EXIT

"$bin/baton-hwsim" --nodes "$nodes" --control-port "$control_port" \
    --export-inventory demo/inventory.json --export-driver "$driver" \
    --latency 20ms >demo/hwsim.log 2>&1 &
pids+=($!)
"$bin/baton-hwsim" --nodes 4 --name-prefix spare \
    --export-inventory demo/spare.json --export-driver "$driver" \
    --latency 20ms >demo/hwsim-spare.log 2>&1 &
pids+=($!)

"$bin/batond" --config config/demo.toml 2>demo/batond.log &
pids+=($!)

wait_for() {  # wait_for DESCRIPTION COMMAND...
    local what=$1; shift
    for _ in $(seq 1 200); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { echo "demo: a process exited; see demo/*.log" >&2; tail -5 demo/*.log >&2; exit 1; }
        done
        sleep 0.1
    done
    echo "demo: timed out waiting for $what; see demo/*.log" >&2
    exit 1
}
wait_for "the simulated rack" test -s demo/inventory.json
wait_for "the spare servers" test -s demo/spare.json
wait_for "batond" "$bin/baton" --socket "$socket" conductor status

"$bin/baton" --socket "$socket" node import demo/inventory.json
bin_path=$(cd "$bin" && pwd)

cat <<MSG

baton is running on a simulated rack of $nodes servers.
  socket       $root/$socket
  database     $root/demo/baton.db
  logs         demo/batond.log, demo/hwsim.log, demo/hwsim-spare.log
  hw-sim       http://127.0.0.1:$control_port/nodes   (the simulated BMCs' view)
  spare        demo/spare.json: 4 more servers, not enrolled yet (baton node import)

Try, in another terminal (the README's CLI section has more):
  cd $root
  export PATH=$bin_path:\$PATH BATON_SOCKET=\$PWD/$socket
  baton batch stop --all --wait
  baton batch start --all --wait
  baton job list
  baton node list --power-domain rack-1
  baton node show node-0000
  baton node power node-0000 off --wait
  baton node power node-0000 on --wait
  baton node actions node-0000
  baton conductor status
  curl --unix-socket \$BATON_SOCKET http://localhost/v1/nodes/detail?limit=2
  curl --unix-socket \$BATON_SOCKET -X PUT http://localhost/v1/nodes/node-0000/states/power -d '{"target": "power off"}'
  curl --unix-socket \$BATON_SOCKET http://localhost/v1/nodes/node-0000/os-instance-actions
  curl --unix-socket \$BATON_SOCKET -X POST http://localhost/v1/nodes/node-0001/action -d '{"reboot": {"type": "HARD"}}'
  curl --unix-socket \$BATON_SOCKET -X POST http://localhost/v1/baremetalservers/action -d '{"os-stop": {"type": "HARD", "servers": [{"id": "node-0002"}, {"id": "node-0003"}]}}'
  curl --unix-socket \$BATON_SOCKET http://localhost/v1/jobs?limit=1

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
