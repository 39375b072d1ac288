#!/bin/sh
# Chassis-control program for OpenIPMI's ipmi_sim (see lan.conf.in).
#
#   chassis-control.sh <state-dir> get <parm>...
#   chassis-control.sh <state-dir> set <parm> <value>...
#
# It keeps the simulated server in <state-dir>: `power` (1 on, 0 off) and
# `boot` (none, pxe, default, cdrom, bios), and appends every command to
# `log` (`power=0`, `power=1`, `reset`, `shutdown`, `boot=…`), so tests can
# see what a Chassis Control really did: a hard off or a soft (ACPI) one, a
# restart or nothing.
# `get` prints "<parm>:<value>" per parameter; errors go to stdout with a
# non-zero exit, as ipmi_sim expects.
set -eu
dir=$1
op=$2
shift 2

read_value() {
    if [ -f "$dir/$1" ]; then cat "$dir/$1"; else echo "$2"; fi
}

store() {
    echo "$1" > "$dir/$2.tmp" && mv "$dir/$2.tmp" "$dir/$2"
}

record() {
    store "$1" "$2"
    echo "$2=$1" >> "$dir/log"
}

case $op in
get)
    for parm in "$@"; do
        case $parm in
        power) echo "power:$(read_value power 0)" ;;
        boot) echo "boot:$(read_value boot none)" ;;
        *) echo "Invalid parameter: $parm"; exit 1 ;;
        esac
    done
    ;;
set)
    while [ $# -gt 0 ]; do
        parm=$1
        val=${2:-}
        shift 2 || { echo "No value for $parm"; exit 1; }
        case $parm in
        power) record "$val" power ;;
        # A reset pulse: the server restarts and stays on.
        reset) [ "$val" = 1 ] && echo "reset" >> "$dir/log" ;;
        # Soft shutdown: the simulated OS shuts down at once.
        shutdown) [ "$val" = 1 ] && echo "shutdown" >> "$dir/log" && store 0 power ;;
        boot) record "$val" boot ;;
        identify) shift 1 || true ;;
        *) echo "Invalid parameter: $parm"; exit 1 ;;
        esac
    done
    ;;
check) exit 1 ;;
*) echo "Unknown operation: $op"; exit 1 ;;
esac
