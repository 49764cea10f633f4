#!/usr/bin/env bash
# bench/run.sh (`make bench`): cni-multi against the floor (exec of /bin/true) and against the
# reference plugins (/usr/lib/cni, Debian's containernetworking-plugins), in one run, on this
# machine, printed as a markdown table of medians and ratios, plus peak RSS and binary sizes.
# Uses hyperfine (installed with apt-get if missing; it subtracts the shell's own start-up) or,
# failing that, a loop timed with `date +%s%N`. Plugins run against a throwaway netns bench-<pid>;
# pod-network plugins (bridge) run inside a throwaway host netns benchhost-<pid> too, so their
# bridge, sysctls and masquerade rules never touch the machine. Both netns and the temp CNI_PATH
# farm are removed on exit. Not part of `make test`.
#
# Sections are functions (section_version, section_loopback, ...); add one per applet family and
# list it in SECTIONS below. Environment: BENCH_RUNS (default 200), BENCH_LOOP_RUNS (runs of
# the 100-call cases, default 10), BENCH_SECTIONS (a space-separated subset of SECTIONS, in
# order), BENCH_STATIC=0 (time the dynamic release build, not the `make static` binary that
# ships), REF_CNI_PATH
# (/usr/lib/cni), BENCH_TIMER=loop (no hyperfine).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
runs=${BENCH_RUNS:-200}
loop_runs=${BENCH_LOOP_RUNS:-10}
ref=${REF_CNI_PATH:-/usr/lib/cni}
ns=bench-$$
hostns=benchhost-$$
tmp=
SECTIONS=(section_version section_loopback section_host_local section_bridge section_macvlan section_portmap section_chain section_runtime section_firewall section_flannel section_etcd_ipam section_multi)
# The dhcp IPAM and its daemon against a local dnsmasq, ours vs the reference (bench/dhcp.sh).
SECTIONS+=(section_dhcp)
section_dhcp() {
  command -v dnsmasq >/dev/null || { NOTES+=("dhcp: skipped (no dnsmasq)"); return; }
  NOTES+=("$("$top/bench/dhcp.sh" "$farm/cni-multi")") || die "bench/dhcp.sh failed"
}
# shellcheck source=bench/runtime.sh
. "$top/bench/runtime.sh"
# shellcheck source=bench/multi.sh
. "$top/bench/multi.sh"
# shellcheck source=bench/l2.sh
. "$top/bench/l2.sh"
# shellcheck source=bench/firewall.sh
. "$top/bench/firewall.sh"
# shellcheck source=bench/cluster.sh
. "$top/bench/cluster.sh"

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

cleanup() {
  ip netns delete "$ns" 2>/dev/null || true
  ip netns delete "$hostns" 2>/dev/null || true
  ip netns delete "$ns-host" 2>/dev/null || true
  ip netns delete "$ns-chain" 2>/dev/null || true
  ip netns delete "$ns-chainctr" 2>/dev/null || true
  ip netns delete "$ns-mvhost" 2>/dev/null || true
  ip netns delete "$ns-mvctr" 2>/dev/null || true
  ip netns delete "$ns-fw" 2>/dev/null || true
  ip netns delete "$ns-fwctr" 2>/dev/null || true
  cluster_cleanup
  [ -z "$tmp" ] || rm -rf "$tmp"
}

ensure_tools() {
  local missing=()
  command -v hyperfine >/dev/null || missing+=(hyperfine)
  [ -x /usr/bin/time ] || missing+=(time)
  [ ${#missing[@]} -eq 0 ] && return 0
  note "installing ${missing[*]} with apt-get"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$tmp/apt.log" 2>&1; then
    return 0
  fi
  if apt-get update -qq >>"$tmp/apt.log" 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$tmp/apt.log" 2>&1; then
    return 0
  fi
  note "could not install ${missing[*]}; timing with a date loop instead. apt said:"
  tail -n 5 "$tmp/apt.log" >&2
}

use_hyperfine() { [ "${BENCH_TIMER:-}" != loop ] && command -v hyperfine >/dev/null; }
# bench/spawn_timer.py times single plugin calls without a shell; BENCH_TIMER picks another.
use_spawn() { [ -z "${BENCH_TIMER:-}" ] && command -v python3 >/dev/null; }
# A plugin call as `call` writes it: VAR=V... PROGRAM <FILE.
CALL_RE='^([A-Z_]+=[^ ]* )+[^ <]+ <[^ ]+$'

# Median wall time of shell command $1 in microseconds; $2, if given, runs untimed before each
# run (and warm-up). MEDIAN_RUNS and MEDIAN_WARMUP override the counts; MEDIAN_REPEAT=N times N
# calls in a row per run ($1 must then be one `call`; call i gets CNI_CONTAINERID=<id>-<i>).
median_us() {
  local n=${MEDIAN_RUNS:-$runs} warm=${MEDIAN_WARMUP:-10} prep=${2:-} rep=${MEDIAN_REPEAT:-1} cmd=$1
  if use_spawn && [[ $cmd =~ $CALL_RE ]]; then
    python3 "$top/bench/spawn_timer.py" "$n" "$warm" "$rep" "$prep" "$cmd" || die "benchmark failed: $cmd"
    return
  fi
  if [ "$rep" -gt 1 ]; then
    local one=${cmd/CNI_CONTAINERID=bench-$$/CNI_CONTAINERID=bench-$$-\$i}
    cmd="i=0; while [ \$i -lt $rep ]; do i=\$((i + 1)); $one >/dev/null || exit 1; done"
  fi
  if use_hyperfine; then
    local extra=()
    [ -z "$prep" ] || extra=(--prepare "$prep")
    # hyperfine discards the command's output; on failure, run it once more to show it.
    if ! hyperfine --style none --warmup "$warm" --runs "$n" "${extra[@]}" --export-json "$tmp/h.json" -- "$cmd" >/dev/null 2>&1; then
      [ -z "$prep" ] || sh -c "$prep" >&2 || true
      sh -c "$cmd" >&2 || true
      die "benchmark failed: $cmd"
    fi
    sed -n 's/^ *"median": *\([0-9.eE+-]*\),*$/\1/p' "$tmp/h.json" | head -n 1 | awk '{ printf "%d\n", $1 * 1e6 }'
  else
    local i t0 t1
    for ((i = 0; i < n; i++)); do
      [ -z "$prep" ] || eval "$prep" >/dev/null 2>&1 || die "benchmark preparation failed: $prep"
      t0=$(date +%s%N)
      eval "$cmd" >/dev/null 2>&1 || die "benchmark failed: $cmd"
      t1=$(date +%s%N)
      echo $(((t1 - t0) / 1000))
    done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
  fi
}

ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

ROWS=()
# row LABEL EXECS OURS_CMD [REF_CMD [OURS_PREP [REF_PREP]]]: EXECS is how many plugin execs one
# run makes (for the floor); a PREP command runs untimed before each run of its side.
row() {
  local label=$1 execs=$2 ours=$3 theirs=${4:-} o r="" rs="–" rr="–"
  o=$(median_us "$ours" "${5:-}")
  if [ -n "$theirs" ]; then
    r=$(median_us "$theirs" "${6:-}")
    rs=$(ms "$r")
    rr=$(ratio "$o" "$r")
  fi
  ROWS+=("| $label | $(ms "$o") | $rs | $(ratio "$o" $((floor * execs))) | $rr |")
  LAST_OURS=$o LAST_REF=$r
}

TARGETS=()
# target TEXT MET: one line of the targets list under the table.
target() { TARGETS+=("- $1: $([ "$2" = 1 ] && echo met || echo "**not met**")"); }

# add_row LABEL EXECS OURS_US [REF_US]: one table row from medians measured elsewhere.
add_row() {
  local rs="–" rr="–"
  if [ -n "${4:-}" ]; then
    rs=$(ms "$4")
    rr=$(ratio "$3" "$4")
  fi
  ROWS+=("| $1 | $(ms "$3") | $rs | $(ratio "$3" $((floor * $2))) | $rr |")
}

have_applet() { grep -qx "$1" "$tmp/applets"; }
have_ref() { [ -x "$ref/$1" ]; }

# A plugin call as a runtime makes it: the CNI_* variables, config on stdin. Set as the shell's
# prefix assignments, not with `env -i`, whose own exec would be timed too (main() clears any
# CNI_* variables of the caller's, the rest of the environment means nothing to a plugin).
call() { # call DIR PLUGIN VERB CONFIG
  printf 'CNI_COMMAND=%s CNI_CONTAINERID=bench-%s CNI_NETNS=/run/netns/%s CNI_IFNAME=lo CNI_PATH=%s %s/%s <%s' \
    "$3" "$$" "$ns" "$1" "$1" "$2" "$4"
}

section_version() {
  local a=loopback
  have_applet "$a" || a=$(head -n 1 "$tmp/applets")
  [ -n "$a" ] || { note "VERSION: this build has no applets yet; skipped"; return 0; }
  local theirs=""
  have_ref "$a" && theirs=$(call "$ref" "$a" VERSION "$tmp/version.json")
  row "$a VERSION (exec + dispatch + reply)" 1 "$(call "$farm" "$a" VERSION "$tmp/version.json")" "$theirs"
  rss "$a"
}

section_loopback() {
  have_applet loopback || { note "loopback: not in this build yet; skipped"; return 0; }
  local conf=$top/testdata/netconf/demo-loopback.conf theirs=""
  have_ref loopback && theirs="$(call "$ref" loopback ADD "$conf"); $(call "$ref" loopback DEL "$conf")"
  row "loopback ADD + DEL" 2 "$(call "$farm" loopback ADD "$conf"); $(call "$farm" loopback DEL "$conf")" "$theirs"
}

# host-local: ADD and DEL timed apart (the other verb prepares each run), and 100 ADDs of
# different containers in a row into a fresh dataDir. Ours and the reference each get their own
# dataDir; 1.0.0 because the packaged reference rejects 1.1.0.
section_host_local() {
  have_applet host-local || { note "host-local: not in this build yet; skipped"; return 0; }
  local side theirs="" theirs_del="" ref_loop_prep=""
  for side in ours ref; do
    printf '{"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "ipam": {"type": "host-local", "subnet": "10.200.0.0/16", "dataDir": "%s"}}\n' \
      "$tmp/hl-$side" >"$tmp/hl-$side.json"
  done
  if have_ref host-local; then
    theirs=$(call "$ref" host-local ADD "$tmp/hl-ref.json")
    theirs_del=$(call "$ref" host-local DEL "$tmp/hl-ref.json")
    ref_loop_prep="rm -rf $tmp/hl-ref"
  fi
  local ours ours_del
  ours=$(call "$farm" host-local ADD "$tmp/hl-ours.json")
  ours_del=$(call "$farm" host-local DEL "$tmp/hl-ours.json")
  row "host-local ADD" 1 "$ours" "$theirs" "$ours_del" "$theirs_del"
  target "host-local ADD median $(ms "$LAST_OURS") ms <= 1 ms" "$((LAST_OURS <= 1000))"
  # The ADD runs left an address reserved: free it, as the DEL runs' preparation re-adds it.
  eval "$ours_del" >/dev/null 2>&1
  [ -z "$theirs_del" ] || eval "$theirs_del" >/dev/null 2>&1
  row "host-local DEL" 1 "$ours_del" "$theirs_del" "$ours" "$theirs"
  target "host-local DEL median $(ms "$LAST_OURS") ms <= 1 ms" "$((LAST_OURS <= 1000))"
  MEDIAN_RUNS=$loop_runs MEDIAN_WARMUP=1 MEDIAN_REPEAT=100 row "host-local 100 sequential ADDs, fresh dataDir" 100 \
    "$ours" "$theirs" "rm -rf $tmp/hl-ours" "$ref_loop_prep"
  if [ -n "$theirs" ]; then
    target "host-local 100 ADDs $(ratio "$LAST_REF" "$LAST_OURS")x faster than the reference (>= 5x)" \
      "$((LAST_OURS * 5 <= LAST_REF))"
  fi
}

# A pod-network call as a runtime on the host makes it, here inside the throwaway host netns.
pod_call() { # pod_call DIR PLUGIN VERB CONFIG
  printf 'nsenter --net=/run/netns/%s env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=%s CNI_CONTAINERID=bench-%s CNI_NETNS=/run/netns/%s CNI_IFNAME=eth0 CNI_PATH=%s %s/%s <%s >/dev/null' \
    "$hostns" "$3" "$$" "$ns" "$1" "$1" "$2" "$4"
}

# bridge_conf FILE MASQ: a bridge + host-local config; MASQ is "", "iptables" or "nftables"
# (the reference v1.1.1 knows only iptables and ignores ipMasqBackend).
bridge_conf() {
  local masq=""
  [ -z "$2" ] || masq="\"ipMasq\": true, \"ipMasqBackend\": \"$2\","
  printf '%s\n' "{\"cniVersion\": \"1.0.0\", \"name\": \"benchnet\", \"type\": \"bridge\"," \
    " \"bridge\": \"benchbr0\", \"isGateway\": true, $masq" \
    " \"ipam\": {\"type\": \"host-local\", \"dataDir\": \"$tmp/ipam\"," \
    "  \"ranges\": [[{\"subnet\": \"10.99.0.0/24\"}]]}}" >"$1"
}

# ADD and DEL timed separately: each ADD after an untimed DEL, each DEL after an untimed ADD,
# and every case ends detached. One timed call is one exec of nsenter and one of the plugin
# (the reference also execs host-local, and iptables with ipMasq; ours runs host-local in
# process).
bridge_rows() { # bridge_rows LABEL OURS_CONF [REF_CONF]
  local label=$1 add del oa od ra="" rd=""
  add=$(pod_call "$farm" bridge ADD "$2")
  del=$(pod_call "$farm" bridge DEL "$2")
  oa=$(median_us "$add" "$del")
  sh -c "$del"
  od=$(median_us "$del" "$add")
  if have_ref bridge && have_ref host-local && [ -n "${3:-}" ]; then
    add=$(pod_call "$ref" bridge ADD "$3")
    del=$(pod_call "$ref" bridge DEL "$3")
    ra=$(median_us "$add" "$del")
    sh -c "$del"
    rd=$(median_us "$del" "$add")
  fi
  add_row "bridge + host-local ADD, $label" 2 "$oa" "$ra"
  add_row "bridge + host-local DEL, $label" 2 "$od" "$rd"
}

section_bridge() {
  { have_applet bridge && have_applet host-local; } || { note "bridge: not in this build yet; skipped"; return 0; }
  ip netns add "$hostns"
  bridge_conf "$tmp/br.json" ""
  bridge_conf "$tmp/br-nft.json" nftables
  bridge_conf "$tmp/br-ipt.json" iptables
  bridge_rows "no ipMasq" "$tmp/br.json" "$tmp/br.json"
  bridge_rows "ipMasq (ours: nftables; reference: iptables)" "$tmp/br-nft.json" "$tmp/br-ipt.json"
  bridge_rows "ipMasq, both iptables" "$tmp/br-ipt.json" "$tmp/br-ipt.json"
  local left
  left=$(ip netns exec "$hostns" sh -c 'ip -brief link show type veth; iptables-save -t nat | grep CNI-; nft list ruleset | grep " masquerade "; ls '"$tmp/ipam/benchnet"' | grep -v -e lock -e last_reserved' || true)
  [ -z "$left" ] || die "bridge: left behind: $left"
}

# --- portmap: plugins run inside the throwaway host netns $ns-host, never in the machine's.
NOTES=()
pm_runs=${BENCH_PORTMAP_RUNS:-30}

# pm_conf BACKEND I: a portmap config for container I (host port 20000+I, address 10.50.x.y).
pm_conf() {
  local f=$tmp/pm-$1-$2.json
  [ -f "$f" ] || printf '{"cniVersion":"1.0.0","name":"benchnet","type":"portmap","backend":"%s","runtimeConfig":{"portMappings":[{"hostPort":%d,"containerPort":80,"protocol":"tcp"}]},"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/%s"}],"ips":[{"address":"10.50.%d.%d/16","interface":0}]}}\n' \
    "$1" $((20000 + $2)) "$ns" $(($2 / 250)) $(($2 % 250 + 2)) >"$f"
  echo "$f"
}

# pm_call DIR VERB BACKEND I: one call for container I inside the host netns.
pm_call() {
  printf 'nsenter --net=/run/netns/%s-host env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=%s CNI_CONTAINERID=bench-pm-%s CNI_NETNS=/run/netns/%s CNI_IFNAME=eth0 CNI_PATH=%s %s/portmap <%s' \
    "$ns" "$2" "$4" "$ns" "$1" "$1" "$(pm_conf "$3" "$4")"
}

# pm_loop DIR VERB BACKEND FROM TO: the call for containers FROM..TO-1; prints seconds taken.
pm_loop() {
  local i t0 t1
  t0=$(date +%s%N)
  for ((i = $4; i < $5; i++)); do eval "$(pm_call "$1" "$2" "$3" "$i")" >/dev/null || die "portmap $2 $i failed"; done
  t1=$(date +%s%N)
  awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }'
}

# Median of ADD for container 999 (its DEL run untimed before each run).
pm_add_us() {
  local dir=$1 backend=$2 i t0 t1
  for ((i = 0; i < pm_runs; i++)); do
    eval "$(pm_call "$dir" DEL "$backend" 999)" >/dev/null 2>&1
    t0=$(date +%s%N)
    eval "$(pm_call "$dir" ADD "$backend" 999)" >/dev/null || die "portmap ADD failed"
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
  done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
  eval "$(pm_call "$dir" DEL "$backend" 999)" >/dev/null 2>&1
}

# pm_case DIR BACKEND LABEL: ADD cost with 1 and with 200 existing mappings, then the
# teardown of the 200; adds rows and notes.
pm_case() {
  local dir=$1 backend=$2 who=$3 one many down
  pm_loop "$dir" ADD "$backend" 0 1 >/dev/null
  one=$(pm_add_us "$dir" "$backend")
  pm_loop "$dir" ADD "$backend" 1 200 >/dev/null
  many=$(pm_add_us "$dir" "$backend")
  down=$(pm_loop "$dir" DEL "$backend" 0 200)
  PM+=("| $who, $backend | $(ms "$one") | $(ms "$many") | $(ratio "$many" "$one") | $down |")
}

section_portmap() {
  have_applet portmap || { note "portmap: not in this build yet; skipped"; return 0; }
  ip netns add "$ns-host"
  ip -n "$ns-host" link set lo up
  PM=()
  pm_case "$farm" nftables ours
  pm_case "$farm" iptables ours
  have_ref portmap && pm_case "$ref" iptables "reference v1.1.1"
  ip netns delete "$ns-host"
  NOTES+=("" "portmap ($pm_runs runs per ADD median; each container one TCP mapping; all in a throwaway host netns):" ""
    "| who, backend | ADD, 1 existing (ms) | ADD, 200 existing (ms) | 200 / 1 | DEL of 200 pods (s) |"
    "|---|---:|---:|---:|---:|" "${PM[@]}")
}

# --- the full chain (bridge with ipMasq + host-local, portmap, bandwidth, tuning; IPv4) as a
# runtime runs it: through our runtime tool `net` (libcni's steps: each plugin in order,
# prevResult chained, capability args injected, result cached), inside a throwaway host netns
# $ns-chain, for a container in $ns-chainctr. With --cni-path $farm, `net` runs our plugins in
# process; with a second copy of the binary ($tmp/bin2) it execs one plugin at a time, as
# containerd or CRI-O do; with /usr/lib/cni it execs the reference plugins.
chain_runs=${BENCH_CHAIN_RUNS:-30}
CHAIN_CAPS='{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":8000000,"ingressBurst":400000,"egressRate":16000000,"egressBurst":800000}}'

# chain_conf WHO BACKEND: the conflist in $tmp/chain-WHO/net.d (the reference v1.1.1 ignores
# both backend keys and uses iptables; its tuning predates txQLen, so none here).
chain_conf() {
  local d=$tmp/chain-$1
  mkdir -p "$d/net.d"
  printf '%s\n' "{\"cniVersion\": \"1.0.0\", \"name\": \"benchchain\", \"plugins\": [" \
    " {\"type\": \"bridge\", \"bridge\": \"benchchain0\", \"isGateway\": true, \"ipMasq\": true," \
    "  \"ipMasqBackend\": \"$2\", \"ipam\": {\"type\": \"host-local\", \"dataDir\": \"$d/ipam\"," \
    "  \"ranges\": [[{\"subnet\": \"10.98.0.0/24\"}]]}}," \
    " {\"type\": \"portmap\", \"backend\": \"$2\", \"capabilities\": {\"portMappings\": true}}," \
    " {\"type\": \"bandwidth\", \"capabilities\": {\"bandwidth\": true}}," \
    " {\"type\": \"tuning\", \"dataDir\": \"$d/tuning\", \"mtu\": 1400," \
    "  \"sysctl\": {\"net.ipv4.conf.IFNAME.log_martians\": \"1\"}}]}" >"$d/net.d/10-chain.conflist"
}

# chain_net WHO VERB CNI_PATH: one `net` call, as the runtime on the host makes it.
chain_net() {
  printf "nsenter --net=/run/netns/%s env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin %s/net %s benchchain /run/netns/%s --container-id bench-chain --conf-dir %s --cache-dir %s --cni-path %s --cap-args '%s' >/dev/null" \
    "$ns-chain" "$farm" "$2" "$ns-chainctr" "$tmp/chain-$1/net.d" "$tmp/chain-$1/cache" "$3" "$CHAIN_CAPS"
}

# chain_execs WHO VERB CNI_PATH: the programs one call execs besides nsenter, env and net.
chain_execs() {
  command -v strace >/dev/null || { echo "n/a (no strace)"; return 0; }
  local failed=""
  strace -f -qq -e trace=execve -o "$tmp/execs" sh -c "$(chain_net "$@") 2>/dev/null" || failed=" (the call fails)"
  grep 'execve("' "$tmp/execs" | grep -v ' = -1 ' | sed 's/^[0-9]* *execve("[^"]*\/\([^"/]*\)".*/\1/' |
    grep -v -x -e sh -e nsenter -e env -e net | sort | uniq -c |
    awk '{ printf "%s%s%s", sep, $2, ($1 > 1 ? " x" $1 : ""); sep = ", " } END { if (!NR) printf "none" }'
  printf '%s' "$failed"
}

# chain_case WHO BACKEND CNI_PATH: ADD and DEL medians (each after the other verb, untimed),
# as "ADD_US DEL_US".
chain_case() {
  local add del a d
  chain_conf "$1" "$2"
  add=$(chain_net "$1" add "$3")
  del=$(chain_net "$1" del "$3")
  a=$(MEDIAN_RUNS=$chain_runs MEDIAN_WARMUP=2 median_us "$add" "$del")
  sh -c "$del"
  d=$(MEDIAN_RUNS=$chain_runs MEDIAN_WARMUP=2 median_us "$del" "$add")
  echo "$a $d"
}

# chain_rows LABEL "ADD_US DEL_US" ["REF_ADD_US REF_DEL_US"]: two table rows.
chain_rows() {
  local o=($2) r=(${3:-})
  add_row "full chain ADD, $1" 1 "${o[0]}" "${r[0]:-}"
  add_row "full chain DEL, $1" 1 "${o[1]}" "${r[1]:-}"
}

# chain_targets "ADD_US DEL_US" "REF_ADD_US REF_DEL_US" LABEL
chain_targets() {
  local o=($1) r=($2)
  target "full chain ADD, $3: $(ratio "${r[0]}" "${o[0]}")x faster than the reference (>= 4x)" "$((o[0] * 4 <= r[0]))"
  target "full chain DEL, $3: $(ratio "${r[1]}" "${o[1]}")x faster than the reference (>= 10x)" "$((o[1] * 10 <= r[1]))"
}

# The kernel's share: median of `ip link del` of a veth pair and of an IFB (the `ip` exec
# included); the chain's DEL deletes one of each.
chain_floor_notes() {
  local n=/run/netns/$ns-chain veth ifb
  veth=$(MEDIAN_RUNS=$chain_runs median_us "nsenter --net=$n ip link del bfa" "nsenter --net=$n ip link add bfa type veth peer name bfb")
  ifb=$(MEDIAN_RUNS=$chain_runs median_us "nsenter --net=$n ip link del bfi" "nsenter --net=$n ip link add bfi type ifb")
  NOTES+=("" "Full chain, the kernel's share of DEL here: \`ip link del\` of a veth pair $(ms "$veth") ms, of an IFB $(ms "$ifb") ms (medians, the \`ip\` exec included; the chain deletes one of each, and each nf_tables or iptables-nft change that deletes rules waits for one more RCU grace period when its socket closes)")
}

section_chain() {
  local a
  for a in net bridge host-local portmap bandwidth tuning; do
    have_applet "$a" || { note "chain: no $a applet in this build yet; skipped"; return 0; }
  done
  ip netns add "$ns-chain"
  ip netns add "$ns-chainctr"
  ip -n "$ns-chain" link set lo up
  "$top/install.sh" --prefix "$tmp/bin2" --binary "$farm/cni-multi" >/dev/null
  local harness nft ipt xnft xipt theirs=""
  harness=$(MEDIAN_RUNS=$chain_runs median_us "nsenter --net=/run/netns/$ns-chain env -i /bin/true")
  harness=$((harness > floor ? harness - floor : 0))
  nft=$(chain_case ours-nft nftables "$farm")
  ipt=$(chain_case ours-ipt iptables "$farm")
  xnft=$(chain_case ours-xnft nftables "$tmp/bin2")
  xipt=$(chain_case ours-xipt iptables "$tmp/bin2")
  if have_ref bridge && have_ref host-local && have_ref portmap && have_ref bandwidth && have_ref tuning; then
    theirs=$(chain_case ref iptables "$ref")
  fi
  chain_rows "nftables, in process (reference: iptables)" "$nft" "$theirs"
  chain_rows "iptables, in process" "$ipt" "$theirs"
  chain_rows "nftables, one exec per plugin (reference: iptables)" "$xnft" "$theirs"
  chain_rows "iptables, one exec per plugin" "$xipt" "$theirs"
  if [ -n "$theirs" ]; then
    chain_targets "$ipt" "$theirs" "iptables, in process"
    chain_targets "$xipt" "$theirs" "iptables, one exec per plugin"
  fi
  local n=($nft)
  local n_add=$((n[0] - harness)) n_del=$((n[1] - harness))
  target "full chain ADD, nftables, in process: median $(ms "$n_add") ms (less $(ms "$harness") ms of nsenter + env) <= 7 ms" "$((n_add <= 7000))"
  target "full chain DEL, nftables, in process: median $(ms "$n_del") ms (less $(ms "$harness") ms of nsenter + env) <= 7 ms" "$((n_del <= 7000))"
  chain_exec_notes
  chain_floor_notes
  local left
  left=$(ip netns exec "$ns-chain" sh -c 'ip -brief link show type veth; ip -brief link show type ifb; iptables-save | grep CNI-DN-; nft list ruleset | grep -e dnat -e "masquerade comment"; tc qdisc show | grep -e tbf -e ingress' || true)
  [ -z "$left" ] || die "chain: left behind: $left"
  ip netns delete "$ns-chainctr"
  ip netns delete "$ns-chain"
}

# What each call execs: ours must run one iptables-restore per family per change and none when
# nothing changes (the second DEL).
chain_exec_notes() {
  local verbs=(add check del del) who path i
  local -A seen=()
  for who in ours-ipt ref; do
    path=$farm
    if [ "$who" = ref ]; then
      have_ref bridge || continue
      path=$ref
    fi
    for i in "${!verbs[@]}"; do
      seen[$who$i]=$(chain_execs "$who" "${verbs[$i]}" "$path")
    done
  done
  NOTES+=("" "Full chain: $chain_runs runs per median above. Programs each call execs besides nsenter, env and net (strace -f):" ""
    "| call | ours, iptables, in process | reference v1.1.1 |" "|---|---|---|")
  local labels=(ADD CHECK DEL "DEL again")
  for i in "${!labels[@]}"; do
    NOTES+=("| ${labels[$i]} | ${seen[ours-ipt$i]} | ${seen[ref$i]:-–} |")
  done
}

RSS=()
rss() { # peak RSS (KiB) of one VERSION call
  [ -x /usr/bin/time ] || { RSS+=("| $1 VERSION | n/a (no /usr/bin/time) | |"); return 0; }
  local ours theirs="–"
  ours=$(peak_kib "$farm/$1")
  have_ref "$1" && theirs=$(peak_kib "$ref/$1")
  RSS+=("| $1 VERSION | $ours | $theirs |")
}
peak_kib() {
  env -i CNI_COMMAND=VERSION /usr/bin/time -f %M -o "$tmp/rss" "$1" <"$tmp/version.json" >/dev/null 2>&1 || true
  tail -n 1 "$tmp/rss"
}

report() {
  local ref_total ref_count
  echo
  echo "## cni-multi benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  echo "Timer: $timer; $runs runs per case; medians. Floor: exec of /bin/true = $(ms "$floor") ms."
  echo
  echo "| case | ours (ms) | reference (ms) | ours / floor | ours / reference |"
  echo "|---|---:|---:|---:|---:|"
  [ ${#ROWS[@]} -eq 0 ] || printf '%s\n' "${ROWS[@]}"
  echo
  [ ${#TARGETS[@]} -eq 0 ] || { echo "Targets:"; printf '%s\n' "${TARGETS[@]}"; echo; }
  [ ${#NOTES[@]} -eq 0 ] || { printf '%s\n' "${NOTES[@]}"; echo; }
  echo "| peak RSS (KiB) | ours | reference |"
  echo "|---|---:|---:|"
  [ ${#RSS[@]} -eq 0 ] || printf '%s\n' "${RSS[@]}"
  echo
  ref_total=$(find "$ref" -maxdepth 1 -type f -perm -u+x -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
  ref_count=$(find "$ref" -maxdepth 1 -type f -perm -u+x 2>/dev/null | wc -l)
  echo "| binary size | bytes |"
  echo "|---|---:|"
  echo "| cni-multi ($build, $(wc -l <"$tmp/applets") applets) | $(stat -c %s "$farm/cni-multi") |"
  echo "| reference: $ref_count binaries in $ref | $ref_total |"
}

main() {
  [ "$(id -u)" = 0 ] || die "needs root (plugins run in a throwaway network namespace)"
  local v
  for v in $(env | sed -n 's/^\(CNI_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
  trap cleanup EXIT
  tmp=$(mktemp -d /tmp/cni-bench.XXXXXX)
  ensure_tools
  timer="date +%s%N loop"
  use_hyperfine && timer="hyperfine $(hyperfine --version | cut -d' ' -f2) (shell start-up subtracted)"
  use_spawn && timer="posix_spawn from python3 (bench/spawn_timer.py) for plugin calls, else $timer"
  local bin=$top/target/release/cni-multi
  build="release"
  if [ "${BENCH_STATIC:-1}" = 1 ]; then
    make -s -C "$top" static >/dev/null
    bin=$top/target/${STATIC_TARGET:-x86_64-unknown-linux-gnu}/release/cni-multi
    build="release, static"
  else
    (cd "$top" && cargo build --release --quiet)
  fi
  farm=$tmp/bin
  "$top/install.sh" --prefix "$farm" --binary "$bin" >/dev/null
  "$farm/cni-multi" --list >"$tmp/applets"
  # 1.0.0: the newest version Debian's reference plugins (v1.1.1) accept.
  echo '{"cniVersion": "1.0.0"}' >"$tmp/version.json"
  ip netns add "$ns"
  floor=$(median_us "CNI_COMMAND=VERSION /bin/true <$tmp/version.json")
  local s
  [ -z "${BENCH_SECTIONS:-}" ] || read -r -a SECTIONS <<<"$BENCH_SECTIONS"
  for s in "${SECTIONS[@]}"; do "$s"; done
  report
}

main "$@"
