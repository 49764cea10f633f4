#!/usr/bin/env bash
# demo/run.sh (`make demo`): a throwaway container netns joins the bundled default network
# (testdata/netconf/demo: loopback + bridge + host-local, IPv4 and IPv6, ipMasq on nftables)
# through an installed cni-multi, the way a container runtime does it: the runtime tool `net`
# (`cni-multi applet net`) loads the conflist, runs each plugin, caches the result. The
# container pings its gateway, the result is printed, then it leaves again.
#
# Nothing touches the machine: the plugins run inside a throwaway "host" netns
# (cni-demo-host-<pid>), so the bridge, the forwarding sysctls and the masquerade rules live
# there; host-local's data dir and the result cache live in a temp dir. Both namespaces and
# the temp dir are removed on any exit, and the script checks DEL left nothing behind.
#
#   demo/run.sh [CONF_DIR]   (default testdata/netconf/demo; CNI_PATH defaults to /opt/cni/bin)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
conf_src=${1:-$here/../testdata/netconf/demo}
cni_path=${CNI_PATH:-/opt/cni/bin}
network=cni-demo
host_ns=cni-demo-host-$$
ctr_ns=cni-demo-ctr-$$
tmp=

die() { echo "demo: $*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }
in_host() { ip netns exec "$host_ns" "$@"; }

[ "$(id -u)" = 0 ] || die "needs root (it creates network namespaces)"
[ -d "$conf_src" ] || die "no such config dir: $conf_src"
[ -x "$cni_path/cni-multi" ] || die "cni-multi is not installed in $cni_path (run 'make install')"
for a in net loopback bridge host-local; do
  [ -x "$cni_path/$a" ] || die "$cni_path has no applet '$a' (run 'make install')"
done

cleanup() {
  ip netns delete "$ctr_ns" 2>/dev/null || true
  ip netns delete "$host_ns" 2>/dev/null || true
  [ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
tmp=$(mktemp -d /tmp/cni-demo.XXXXXX)

# The bundled conflist, with host-local's store moved into the temp dir.
mkdir -p "$tmp/net.d"
for f in "$conf_src"/*; do
  sed "s#\"dataDir\": *\"[^\"]*\"#\"dataDir\": \"$tmp/networks\"#" "$f" >"$tmp/net.d/$(basename "$f")"
done

ip netns add "$host_ns"
ip netns add "$ctr_ns"
in_host ip link set lo up

# A runtime gives the tool only what it needs; the plugins inherit PATH and CNI_PATH.
net() {
  in_host env -i PATH="$PATH" "$cni_path/net" --conf-dir "$tmp/net.d" --cni-path "$cni_path" \
    --cache-dir "$tmp/cache" --ifname eth0 "$@"
}

say "net add $network /run/netns/$ctr_ns (plugins run in netns $host_ns); the result:"
net add --json "$network" "/run/netns/$ctr_ns"
say "container $ctr_ns"
ip -n "$ctr_ns" -brief address
ip -n "$ctr_ns" route
ip -n "$ctr_ns" -6 route | grep -v '^fe80'
say "host $host_ns: the bridge and the masquerade rules"
in_host ip -brief address show dev cnidemo0
in_host nft list table inet cni_plugins_masquerade | grep -E 'masquerade|goto'
say "ping the gateway from the container"
ip netns exec "$ctr_ns" ping -c 2 -W 1 10.88.77.1
ip netns exec "$ctr_ns" ping -c 2 -W 2 fd88:77::1 || echo "(IPv6 gateway still in DAD; fine)"
say "net check $network"
net check "$network" "/run/netns/$ctr_ns"
say "net del $network"
net del "$network" "/run/netns/$ctr_ns"

say "what DEL left behind (must be nothing)"
left=()
[ -z "$(ip -n "$ctr_ns" -brief link show dev eth0 2>/dev/null)" ] || left+=("eth0 in the container")
[ -z "$(in_host ip -brief link show type veth)" ] || left+=("a veth in the host")
in_host nft list table inet cni_plugins_masquerade | grep -q ' masquerade ' && left+=("masquerade rules")
[ -z "$(find "$tmp/networks" -type f ! -name lock ! -name 'last_reserved_ip.*')" ] || left+=("an IPAM reservation")
[ -z "$(ls -A "$tmp/cache/results" 2>/dev/null)" ] || left+=("a cached result")
if [ ${#left[@]} -ne 0 ]; then
  die "left behind: ${left[*]}"
fi
echo "nothing: no veth, no address, no masquerade rule, no reservation, no cached result"
echo "(the bridge cnidemo0 stays, as with the reference plugin; it goes with netns $host_ns on exit)"
