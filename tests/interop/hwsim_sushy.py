#!/usr/bin/env python3
"""Drives one baton-hwsim node with OpenStack's python `sushy` Redfish client.

Run by tests/tests/hwsim_interop.rs with the node's Redfish URL, credentials
and the control API URL. Each step uses sushy only; the control API is read
after each step so the caller can compare what sushy saw with what the
simulator recorded. Prints one JSON object per step on stdout
({"step", "sushy", "control"}) and exits non-zero with a message on the first
failure.
"""

import argparse
import json
import sys
import time
import urllib.request

import sushy
from sushy.resources.system import constants as sys_cons

POLL_SECONDS = 0.05
STEP_TIMEOUT = 30.0


def control_node(control, name):
    with urllib.request.urlopen(f"{control}/nodes/{name}", timeout=10) as reply:
        return json.load(reply)


def wait_power(system, want):
    """Refreshes the system until sushy reports `want`; returns the states seen."""
    seen = []
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        system.refresh()
        state = system.power_state
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == want:
            return seen
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"power state never became {want}; saw {seen}")


def report(step, sushy_view, control):
    print(json.dumps({"step": step, "sushy": sushy_view, "control": control}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="Redfish base URL of the node")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--control", required=True, help="control API base URL")
    parser.add_argument("--node", required=True, help="node name in the control API")
    args = parser.parse_args()

    root = sushy.Sushy(
        args.url + "/redfish/v1",
        username=args.username,
        password=args.password,
        verify=False,
    )
    system = root.get_system()
    allowed = sorted(str(v.value) for v in system.get_allowed_reset_system_values())
    report(
        "read",
        {"power_state": str(system.power_state.value), "allowed_resets": allowed,
         "redfish_version": root.redfish_version},
        control_node(args.control, args.node),
    )

    steps = [
        ("force_off", sushy.ResetType.FORCE_OFF, sushy.PowerState.OFF),
        ("on", sushy.ResetType.ON, sushy.PowerState.ON),
        ("graceful_shutdown", sushy.ResetType.GRACEFUL_SHUTDOWN, sushy.PowerState.OFF),
        ("power_on_again", sushy.ResetType.ON, sushy.PowerState.ON),
    ]
    for name, reset, want in steps:
        system.reset_system(reset)
        seen = wait_power(system, want)
        report(name, {"states_seen": [str(s.value) for s in seen]},
               control_node(args.control, args.node))

    system.set_system_boot_options(
        sys_cons.BootSource.PXE,
        enabled=sys_cons.BootSourceOverrideEnabled.ONCE,
        mode=sys_cons.BootSourceOverrideMode.UEFI,
    )
    system.refresh()
    report(
        "boot_override",
        {"target": str(system.boot.target.value), "enabled": str(system.boot.enabled.value),
         "mode": str(system.boot.mode.value)},
        control_node(args.control, args.node),
    )

    system.reset_system(sushy.ResetType.FORCE_RESTART)
    # The restart passes through off; wait until the node is back on.
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        control = control_node(args.control, args.node)
        if control["counters"]["boots"] >= 3 and control["power_state"] == "on":
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"node did not come back on after ForceRestart: {control}")
        time.sleep(POLL_SECONDS)
    system.refresh()
    report(
        "after_restart",
        {"power_state": str(system.power_state.value),
         "boot_enabled": str(system.boot.enabled.value)},
        control,
    )
    root._conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
