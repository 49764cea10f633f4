# shellcheck shell=bash disable=SC2154 # $tmp, $farm, $ns, $ref, $runs come from run.sh
# bench/multi.sh: the `multi` section of bench/run.sh (sourced by it; uses run.sh's `add_row`,
# `target`, `ms`, `ratio`, `have_applet`, `have_ref`, `note`, `die` and runtime.sh's `rt_times`,
# `rt_col`).
#
# The two-interface pod: eth0 = bridge (host-local, ipMasq) + portmap, net1 = a bridge-mode
# macvlan (host-local) on a veth standing in for the LAN NIC. Three ways to attach it, each ADD timed with the DEL
# that resets it untimed, in turn within each iteration (see rt_times):
#   1. one `net add` of a list holding the single `multi` plugin (as kubelet would call it);
#   2. `net add` of the two attachments as two networks, one after the other (ours);
#   3. the same two networks through the reference plugins, run by the same `net`.
# Targets (issue 16): 1 within 1.1x of 2; 3 at least 3x slower than 1.

MULTI_MAPS='[{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]'

# The two attachments' plugin lists, as JSON arrays.
multi_eth0() {
  printf '[{"type": "bridge", "bridge": "bench-mul0", "isGateway": true, "isDefaultGateway": true, "ipMasq": true, "ipam": {"type": "host-local", "subnet": "10.206.0.0/16", "dataDir": "%s"}}, {"type": "portmap", "capabilities": {"portMappings": true}}]' "$tmp/mu-ipam"
}
multi_net1() {
  printf '[{"type": "macvlan", "master": "bench-lan0", "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.207.0.0/16", "dataDir": "%s"}}]' "$tmp/mu-ipam"
}

multi_confs() {
  mkdir -p "$tmp/mu-conf"
  printf '{"cniVersion": "1.0.0", "name": "benchmulti", "plugins": [{"type": "multi", "cacheDir": "%s", "capabilities": {"portMappings": true}, "attachments": [{"ifname": "eth0", "plugins": %s}, {"ifname": "net1", "plugins": %s}]}]}\n' \
    "$tmp/mu-cache-multi" "$(multi_eth0)" "$(multi_net1)" >"$tmp/mu-conf/benchmulti.conflist"
  printf '{"cniVersion": "1.0.0", "name": "benchmulti-eth0", "plugins": %s}\n' "$(multi_eth0)" >"$tmp/mu-conf/eth0.conflist"
  printf '{"cniVersion": "1.0.0", "name": "benchmulti-net1", "plugins": %s}\n' "$(multi_net1)" >"$tmp/mu-conf/net1.conflist"
}

# multi_net CNI_PATH VERB NETWORK ID IFNAME: a `net` command line against the container netns.
multi_net() {
  printf 'NETCONFPATH=%s CNI_PATH=%s %s/net --cache-dir %s --container-id %s --ifname %s %s %s /run/netns/%s >/dev/null' \
    "$tmp/mu-conf" "$1" "$farm" "$tmp/mu-cache" "$4" "$5" "$2" "$3" "$ns"
}

section_multi() {
  { have_applet multi && have_applet macvlan; } || { note "multi: no multi or macvlan applet in this build; skipped"; return 0; }
  rt_hostns=$ns-muhost
  ip netns add "$rt_hostns"
  ip -n "$rt_hostns" link set lo up
  ip -n "$rt_hostns" link add bench-lan0 type veth peer name bench-lan1
  ip -n "$rt_hostns" link set bench-lan0 up
  trap 'ip netns delete "$rt_hostns" 2>/dev/null || true; cleanup' EXIT
  export CAP_ARGS="{\"portMappings\": $MULTI_MAPS}"
  multi_confs
  local one two theirs="" cmds=() table
  one="$(multi_net "$farm" add benchmulti bench-mu eth0) ;; $(multi_net "$farm" del benchmulti bench-mu eth0)"
  two="$(multi_net "$farm" add benchmulti-eth0 bench-mu eth0) && $(multi_net "$farm" add benchmulti-net1 bench-mu net1)"
  two+=" ;; $(multi_net "$farm" del benchmulti-net1 bench-mu net1) && $(multi_net "$farm" del benchmulti-eth0 bench-mu eth0)"
  cmds=("$one" "$two")
  if have_ref bridge && have_ref host-local && have_ref portmap && have_ref macvlan; then
    theirs="$(multi_net "$ref" add benchmulti-eth0 bench-mr eth0) && $(multi_net "$ref" add benchmulti-net1 bench-mr net1)"
    theirs+=" ;; $(multi_net "$ref" del benchmulti-net1 bench-mr net1) && $(multi_net "$ref" del benchmulti-eth0 bench-mr eth0)"
    cmds+=("$theirs")
  fi
  table=$(rt_times "${BENCH_MULTI_RUNS:-30}" "${cmds[@]}")
  local m s r=""
  m=$(rt_col 1 <<<"$table")
  s=$(rt_col 2 <<<"$table")
  [ -z "$theirs" ] || r=$(rt_col 3 <<<"$table")
  add_row "multi ADD, 2 attachments (bridge+portmap, macvlan) via net (reference: 2 networks via net)" 1 "$m" "$r"
  add_row "the same 2 attachments as 2 networks via net, ours" 2 "$s"
  target "multi ADD $(ratio "$m" "$s")x the two networks' ADDs through net (<= 1.1x)" "$((m * 10 <= s * 11))"
  [ -z "$r" ] || target "multi ADD $(ratio "$r" "$m")x faster than the two networks through the reference (>= 3x)" "$((m * 3 <= r))"
  unset CAP_ARGS
  ip netns delete "$rt_hostns" 2>/dev/null || true
  trap cleanup EXIT
}
