#!/usr/bin/env bash
# demo/run.sh: one network configuration through an installed cni-multi, the way a runtime runs
# a plugin: a throwaway named netns (cni-demo-<pid>), ADD through the applet's symlink in
# CNI_PATH with the config on stdin, the result printed, then DEL. The netns is deleted on any
# exit, so nothing is left behind.
#
#   demo/run.sh [CONFIG]     (default: testdata/netconf/demo-loopback.conf; `make demo` installs first)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
conf=${1:-$here/../testdata/netconf/demo-loopback.conf}
cni_path=${CNI_PATH:-/opt/cni/bin}
ns=cni-demo-$$
ifname=${CNI_IFNAME:-lo}

die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (it creates a network namespace)"
[ -r "$conf" ] || die "no such config: $conf"
plugin=$(sed -n 's/^[[:space:]]*"type"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$conf" | head -n 1)
[ -n "$plugin" ] || die "no \"type\" in $conf"
[ -x "$cni_path/cni-multi" ] || die "cni-multi is not installed in $cni_path (run 'make install')"
"$cni_path/cni-multi" --list | grep -qx "$plugin" ||
  die "this cni-multi has no applet '$plugin' yet (applets: $("$cni_path/cni-multi" --list | tr '\n' ' '))"

cleanup() { ip netns delete "$ns" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$ns"

# A runtime gives plugins a clean environment: only PATH and the CNI_* variables.
call() {
  env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="demo-$$" CNI_NETNS="/run/netns/$ns" \
    CNI_IFNAME="$ifname" CNI_PATH="$cni_path" "$cni_path/$plugin" <"$conf"
}

echo "== netns $ns before ADD:"
ip -n "$ns" -brief address
echo "== $plugin ADD ($conf):"
call ADD
echo
echo "== netns $ns after ADD:"
ip -n "$ns" -brief address
echo "== $plugin DEL:"
call DEL
echo "== done; netns $ns is removed on exit"
