#!/usr/bin/env bash
# bench/dhcp.sh [CNI-MULTI]: the dhcp IPAM against a local dnsmasq, ours (plugin + `dhcp daemon`)
# and the reference v1.1.1 (/usr/lib/cni/dhcp, plugin + daemon) in the same run: median wall time
# of one ADD (a full DISCOVER/OFFER/REQUEST/ACK through the daemon) and of one DEL (RELEASE),
# then each daemon's RSS holding 100 leases. Our first ADD of the network also waits for a Router
# Advertisement (-v6probe, 2 s: dnsmasq here offers no IPv6), reported on its own line. Everything runs in throwaway netns dhcpb-<pid>-*
# (a host with a bridge and dnsmasq, containers on veths), removed on exit. Prints a markdown
# table. Environment: DHCP_BENCH_RUNS (ADD/DEL pairs per side, default 40), DHCP_BENCH_LEASES
# (default 100), REF_CNI_PATH (/usr/lib/cni).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$top/target/release/cni-multi}")
ref=${REF_CNI_PATH:-/usr/lib/cni}/dhcp
runs=${DHCP_BENCH_RUNS:-40}
nleases=${DHCP_BENCH_LEASES:-100}
p=dhcpb-$$
tmp=$(mktemp -d /tmp/dhcp-bench.XXXXXX)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in $(ip netns list | awk '{print $1}' | grep "^$p-" || true); do ip netns delete "$n"; done
  rm -rf "$tmp"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "dhcp bench: needs root" >&2; exit 1; }
[ -x "$bin" ] || { echo "dhcp bench: no binary $bin (cargo build --release)" >&2; exit 1; }
H="ip netns exec $p-host"

setup() {
  ip netns add "$p-host"
  $H ip link set lo up
  $H ip link add br0 type bridge
  $H ip addr add 10.201.0.1/16 dev br0
  $H ip link set br0 up
  $H dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=br0 --bind-interfaces \
    --no-ping --dhcp-leasefile="$tmp/dnsmasq.leases" --log-facility="$tmp/dnsmasq.log" \
    --dhcp-range=10.201.1.1,10.201.9.250,255.255.0.0,1h --dhcp-lease-max=5000 2>"$tmp/dnsmasq.err" &
  pids+=($!)
  mkdir -p "$tmp/bin"
  ln -s "$bin" "$tmp/bin/dhcp"
}

container() { # container N: netns $p-cN with eth0 on br0
  ip netns add "$p-c$1"
  $H ip link add "v$1" type veth peer name eth0 netns "$p-c$1"
  $H ip link set "v$1" master br0 up
}

conf() { # conf SOCKET
  printf '{"cniVersion":"1.0.0","name":"lan","type":"dhcp","ipam":{"type":"dhcp","daemonSocketPath":"%s"}}' "$1"
}

call() { # call PLUGIN VERB N SOCKET
  conf "$4" | $H env CNI_COMMAND="$2" CNI_CONTAINERID="b$3" CNI_NETNS="/run/netns/$p-c$3" \
    CNI_IFNAME=eth0 CNI_PATH="$tmp/bin" "$1" >/dev/null
}

start_daemon() { # start_daemon ours|ref SOCKET
  rm -f "$2"
  if [ "$1" = ours ]; then
    $H "$bin" dhcp daemon -socketpath "$2" -leasedir "$tmp/leases" 2>>"$tmp/ours.log" &
  else
    $H "$ref" daemon -socketpath "$2" >>"$tmp/ref.log" 2>&1 &
  fi
  daemon_pid=$!
  pids+=("$daemon_pid")
  for _ in $(seq 100); do [ -S "$2" ] && return; sleep 0.05; done
  echo "dhcp bench: $1 daemon did not start" >&2
  exit 1
}

median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] / 1000 }'; }

time_pairs() { # time_pairs PLUGIN SOCKET: ADD then DEL of container 0, $runs times
  local i t0 t1 t2
  : >"$tmp/add" && : >"$tmp/del"
  for ((i = 0; i < runs; i++)); do
    t0=$(date +%s%N)
    call "$1" ADD 0 "$2"
    t1=$(date +%s%N)
    call "$1" DEL 0 "$2"
    t2=$(date +%s%N)
    echo $(((t1 - t0) / 1000)) >>"$tmp/add"
    echo $(((t2 - t1) / 1000)) >>"$tmp/del"
  done
  add_ms=$(median <"$tmp/add")
  first_add_ms=$(awk 'NR == 1 { printf "%.1f", $1 / 1000 }' "$tmp/add")
  del_ms=$(median <"$tmp/del")
}

rss_with_leases() { # rss_with_leases PLUGIN SOCKET: VmRSS (KiB) of the daemon holding $nleases
  local i
  for ((i = 1; i <= nleases; i++)); do call "$1" ADD "$i" "$2"; done
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$daemon_pid/status")
  for ((i = 1; i <= nleases; i++)); do call "$1" DEL "$i" "$2"; done
}

setup
for ((i = 0; i <= nleases; i++)); do container "$i"; done

start_daemon ours "$tmp/ours.sock"
idle_ours=$(awk '/VmRSS/ { print $2 }' "/proc/$daemon_pid/status")
time_pairs "$tmp/bin/dhcp" "$tmp/ours.sock"
ours_add=$add_ms ours_del=$del_ms ours_first=$first_add_ms
# The floor under both: `ip netns exec` + plugin exec + one daemon round trip, no DHCP.
for ((i = 0; i < runs; i++)); do
  t0=$(date +%s%N)
  printf '{"cniVersion":"1.1.0","name":"lan","type":"dhcp","ipam":{"type":"dhcp","daemonSocketPath":"%s"}}' "$tmp/ours.sock" |
    $H env CNI_COMMAND=STATUS CNI_PATH="$tmp/bin" "$tmp/bin/dhcp" >/dev/null
  echo $((($(date +%s%N) - t0) / 1000))
done >"$tmp/status"
ours_status=$(median <"$tmp/status")
rss_with_leases "$tmp/bin/dhcp" "$tmp/ours.sock"
ours_rss=$rss
kill "$daemon_pid"

if [ -x "$ref" ]; then
  start_daemon ref "$tmp/ref.sock"
  idle_ref=$(awk '/VmRSS/ { print $2 }' "/proc/$daemon_pid/status")
  time_pairs "$ref" "$tmp/ref.sock"
  ref_add=$add_ms ref_del=$del_ms ref_first=$first_add_ms
  rss_with_leases "$ref" "$tmp/ref.sock"
  ref_rss=$rss
  kill "$daemon_pid"
else
  ref_add=– ref_del=– ref_rss=– idle_ref=– ref_first=–
fi

echo "| dhcp (dnsmasq on a bridge, median of $runs) | ours | reference v1.1.1 |"
echo "|---|---|---|"
echo "| ADD (plugin exec + DORA through the daemon), ms | $ours_add | $ref_add |"
echo "| first ADD of the network (ours: + the Router Solicitation probe, no RA here), ms | $ours_first | $ref_first |"
echo "| DEL (plugin exec + RELEASE), ms | $ours_del | $ref_del |"
echo "| STATUS (ip netns exec + plugin exec + daemon round trip, no DHCP), ms | $ours_status | – |"
echo "| daemon RSS idle, KiB | $idle_ours | $idle_ref |"
echo "| daemon RSS with $nleases leases, KiB | $ours_rss | $ref_rss |"
echo
met() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "–" || a + 0 <= b + 0) ? "met" : "**not met**" }'; }
echo "Targets: dhcp ADD <= reference: $(met "$ours_add" "$ref_add"); DEL <= reference: $(met "$ours_del" "$ref_del");" \
  "daemon RSS with $nleases leases <= 4096 KiB: $(met "$ours_rss" 4096), <= reference: $(met "$ours_rss" "$ref_rss")"
