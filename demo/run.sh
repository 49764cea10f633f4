#!/usr/bin/env bash
# demo/run.sh (`make demo`): a throwaway container netns joins the bundled default network
# (testdata/netconf/demo: loopback + bridge + host-local, IPv4 and IPv6, ipMasq on nftables)
# through an installed cni-multi, the way a container runtime does it: the runtime tool `net`
# (`cni-multi applet net`) loads the conflist, runs each plugin, caches the result, and prints
# what happened (interfaces, addresses, routes, and the masquerade rules read back from the
# kernel). The container pings its gateway, then it leaves again.
#
# Nothing touches the machine: the plugins run inside a throwaway "host" netns, so the bridge,
# the forwarding sysctls and the masquerade rules live there; host-local's data dir and the
# result cache live in a temp dir. Each namespace is held by a `sleep` made with `unshare -n`
# (no `ip`, no mounts); both holders and the temp dir go on any exit, and the script checks
# that DEL left nothing behind. Tools used besides ours: bash, coreutils, util-linux, ping.
#
#   demo/run.sh [CONF_DIR]   (default testdata/netconf/demo; CNI_PATH defaults to /opt/cni/bin)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
conf_src=${1:-$here/../testdata/netconf/demo}
cni_path=${CNI_PATH:-/opt/cni/bin}
network=cni-demo
holders=()
tmp=

die() { echo "demo: $*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }
# A new netns held by a sleeping process; prints the holder's pid once it is in its own netns
# (never before: until unshare(2) has run, /proc/PID/ns/net is still ours).
new_netns() {
  unshare -n sleep infinity >/dev/null 2>&1 &
  local pid=$! i
  for i in $(seq 100); do
    [ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] && {
      echo "$pid"
      return
    }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  die "could not make a network namespace (unshare -n)"
}
in_ns() {
  local pid=$1
  shift
  nsenter --net="/proc/$pid/ns/net" -- "$@"
}

[ "$(id -u)" = 0 ] || die "needs root (it creates network namespaces)"
[ -d "$conf_src" ] || die "no such config dir: $conf_src"
[ -x "$cni_path/cni-multi" ] || die "cni-multi is not installed in $cni_path (run 'make install')"
for a in net loopback bridge host-local; do
  [ -x "$cni_path/$a" ] || die "$cni_path has no applet '$a' (run 'make install')"
done

cleanup() {
  local status=$?
  [ ${#holders[@]} -eq 0 ] || kill "${holders[@]}" 2>/dev/null || true
  [ -z "$tmp" ] || rm -rf "$tmp"
  ((status)) || echo "cleaned up: both namespaces (with the bridge) and $tmp are gone"
}
trap cleanup EXIT
tmp=$(mktemp -d /tmp/cni-demo.XXXXXX)

# The bundled conflist, with host-local's store moved into the temp dir.
mkdir -p "$tmp/net.d"
for f in "$conf_src"/*; do
  sed "s#\"dataDir\": *\"[^\"]*\"#\"dataDir\": \"$tmp/networks\"#" "$f" >"$tmp/net.d/$(basename "$f")"
done

host=$(new_netns)
holders+=("$host")
ctr=$(new_netns)
holders+=("$ctr")
ctr_ns=/proc/$ctr/ns/net

# A runtime gives the tool only what it needs; the plugins inherit PATH and CNI_PATH.
net() {
  in_ns "$host" env -i PATH="$PATH" "$cni_path/net" --conf-dir "$tmp/net.d" --cni-path "$cni_path" \
    --cache-dir "$tmp/cache" --ifname eth0 "$@"
}
# The interfaces of a netns, from /proc/PID/net/dev (no `ip` needed).
links_of() { awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' "/proc/$1/net/dev"; }

say "net add $network $ctr_ns (the plugins run in the throwaway host netns of pid $host)"
net add "$network" "$ctr_ns"
say "ping the gateway from the container"
in_ns "$ctr" ping -c 2 -W 1 10.88.77.1
in_ns "$ctr" ping -c 2 -W 2 fd88:77::1 || echo "(IPv6 gateway still in DAD; fine)"
say "net check $network"
net check "$network" "$ctr_ns"
say "net del $network"
del=$(net del "$network" "$ctr_ns")
echo "$del"

say "what DEL left behind (must be nothing)"
left=()
links_of "$ctr" | grep -qx eth0 && left+=("eth0 in the container")
links_of "$host" | grep -q '^veth' && left+=("a veth in the host")
grep -q '^rules left behind' <<<"$del" && left+=("netfilter rules")
[ -z "$(find "$tmp/networks" -type f ! -name lock ! -name 'last_reserved_ip.*')" ] || left+=("an IPAM reservation")
[ -z "$(ls -A "$tmp/cache/results" 2>/dev/null)" ] || left+=("a cached result")
if [ ${#left[@]} -ne 0 ]; then
  die "left behind: ${left[*]}"
fi
echo "nothing: no veth, no address, no masquerade rule, no reservation, no cached result"
echo "(the bridge cnidemo0 stays, as with the reference plugin; it goes with the host netns on exit)"
