#!/usr/bin/env bash
# Installs batond as a systemd service: the binaries, the units, the
# sysusers.d and tmpfiles.d snippets, shell completions, the README and
# /etc/baton/batond.toml (an edited one is never overwritten; the shipped
# defaults then go beside it as batond.toml.dist).
#
#   scripts/install.sh [--prefix /usr/local] [--sysconfdir /etc]
#                      [--destdir DIR] [--bindir-from DIR] [--no-build]
#
# --prefix      where bin/, lib/systemd/system/, lib/sysusers.d/,
#               lib/tmpfiles.d/ and share/ go (default /usr/local)
# --sysconfdir  where baton/batond.toml goes (default /etc)
# --destdir     stage everything under DIR, for packaging (also $DESTDIR);
#               nothing is run on the host then
# --bindir-from take batond and baton from DIR instead of target/release
# --no-build    do not run cargo build (use what --bindir-from or
#               target/release holds)
#
# Without a destdir and as root, it then creates the user, groups and
# directories (systemd-sysusers, systemd-tmpfiles) and reloads systemd.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

prefix=/usr/local
sysconfdir=/etc
destdir=${DESTDIR:-}
bins=""
build=yes
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --sysconfdir) sysconfdir=${2:?--sysconfdir needs a directory}; shift 2 ;;
        --sysconfdir=*) sysconfdir=${1#*=}; shift ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --bindir-from) bins=${2:?--bindir-from needs a directory}; shift 2 ;;
        --bindir-from=*) bins=${1#*=}; shift ;;
        --no-build) build=no; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute, got $prefix" >&2; exit 2 ;; esac
case "$sysconfdir" in /*) ;; *) echo "install.sh: --sysconfdir must be absolute, got $sysconfdir" >&2; exit 2 ;; esac

if [ -z "$bins" ]; then
    bins="$root/target/release"
    if [ "$build" = yes ]; then
        (cd "$root" && cargo build --release --locked -p batond --bins)
    fi
fi
for bin in batond baton; do
    [ -x "$bins/$bin" ] || { echo "install.sh: $bins/$bin is missing; build it (cargo build --release -p batond) or pass --bindir-from" >&2; exit 1; }
done

d="$destdir"
bindir="$prefix/bin"
unitdir="$prefix/lib/systemd/system"
install -d -m 0755 "$d$bindir" "$d$unitdir" "$d$prefix/lib/sysusers.d" "$d$prefix/lib/tmpfiles.d" \
    "$d$prefix/share/doc/baton" "$d$prefix/share/bash-completion/completions" \
    "$d$prefix/share/zsh/vendor-completions" "$d$prefix/share/fish/vendor_completions.d"
install -m 0755 "$bins/batond" "$bins/baton" "$d$bindir/"

# The units name the installed paths.
sed -e "s|/usr/bin/batond|$bindir/batond|" -e "s|/etc/baton/|$sysconfdir/baton/|" \
    -e "s|/usr/share/doc/baton/|$prefix/share/doc/baton/|" \
    "$root/systemd/batond.service" > "$d$unitdir/batond.service"
sed -e "s|/usr/share/doc/baton/|$prefix/share/doc/baton/|" \
    "$root/systemd/batond.socket" > "$d$unitdir/batond.socket"
chmod 0644 "$d$unitdir/batond.service" "$d$unitdir/batond.socket"
install -m 0644 "$root/systemd/sysusers.d/baton.conf" "$d$prefix/lib/sysusers.d/baton.conf"
sed -e "s|/etc/baton |$sysconfdir/baton |" "$root/systemd/tmpfiles.d/baton.conf" \
    > "$d$prefix/lib/tmpfiles.d/baton.conf"
chmod 0644 "$d$prefix/lib/tmpfiles.d/baton.conf"
install -m 0644 "$root/README.md" "$d$prefix/share/doc/baton/README.md"

"$bins/baton" completions bash > "$d$prefix/share/bash-completion/completions/baton"
"$bins/baton" completions zsh > "$d$prefix/share/zsh/vendor-completions/_baton"
"$bins/baton" completions fish > "$d$prefix/share/fish/vendor_completions.d/baton.fish"

# The config: root-owned, readable by group baton only once the group
# exists; an edited file stays.
install -d -m 0750 "$d$sysconfdir/baton"
conf="$d$sysconfdir/baton/batond.toml"
if [ -e "$conf" ] && ! cmp -s "$conf" "$root/config/batond.toml"; then
    install -m 0640 "$root/config/batond.toml" "$conf.dist"
    echo "install.sh: kept your $sysconfdir/baton/batond.toml; the shipped defaults are in batond.toml.dist"
else
    install -m 0640 "$root/config/batond.toml" "$conf"
fi

if [ -n "$destdir" ]; then
    echo "install.sh: staged under $destdir (prefix $prefix)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: not root, so the user, groups and directories were not created; run as root:"
    echo "  systemd-sysusers && systemd-tmpfiles --create $prefix/lib/tmpfiles.d/baton.conf && systemctl daemon-reload"
    exit 0
fi
systemd-sysusers "$prefix/lib/sysusers.d/baton.conf"
chgrp baton "$sysconfdir/baton" "$conf"
systemd-tmpfiles --create "$prefix/lib/tmpfiles.d/baton.conf"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "install.sh: installed; start it with: systemctl enable --now batond.socket"
