# bench/cluster.sh, sourced by bench/run.sh: the cluster-scope applets.
# section_flannel: flannel + bridge + host-local ADD against the same bridge + host-local ADD
#   flannel would generate, both ours, in a throwaway host netns $ns-fl, timed interleaved by
#   bench/ab_timer.py (target: within 1.2x).
# section_etcd_ipam: cluster-ipam ADD against a single-member etcd in a throwaway netns
#   $ns-etcd, against one `etcdctl txn` exec doing the same compare-and-create on one key
#   (target: faster), and the etcd WAL fsync mean from its /metrics as the floor.

fl_call() { # fl_call PLUGIN VERB CONFIG
  printf 'nsenter --net=/run/netns/%s-fl env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=%s CNI_CONTAINERID=bench-%s CNI_NETNS=/run/netns/%s CNI_IFNAME=eth0 CNI_PATH=%s %s/%s <%s >/dev/null' \
    "$ns" "$2" "$$" "$ns" "$farm" "$farm" "$1" "$3"
}

section_flannel() {
  { have_applet flannel && have_applet bridge && have_applet host-local; } || { note "flannel: not in this build; skipped"; return 0; }
  local d=$tmp/fl add del f b
  mkdir -p "$d"
  printf 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n' >"$d/subnet.env"
  printf '{"cniVersion": "1.0.0", "name": "benchfl", "type": "flannel", "subnetFile": "%s", "dataDir": "%s", "ipam": {"dataDir": "%s"}, "delegate": {"bridge": "benchfl0"}}\n' \
    "$d/subnet.env" "$d/data" "$d/ipam" >"$d/flannel.json"
  # What flannel hands the bridge, as a plain bridge config.
  printf '{"cniVersion": "1.0.0", "name": "benchfl", "type": "bridge", "bridge": "benchfl0", "isGateway": true, "ipMasq": false, "mtu": 1450, "ipam": {"type": "host-local", "dataDir": "%s", "ranges": [[{"subnet": "10.244.7.0/24"}]], "routes": [{"dst": "10.244.0.0/16"}]}}\n' \
    "$d/ipam" >"$d/bridge.json"
  ip netns add "$ns-fl"
  # Interleaved (one flannel ADD, one bridge ADD, ...): on a shared machine the load moves
  # more between two blocks of runs than the difference being measured.
  read -r f b < <(python3 "$top/bench/ab_timer.py" "$runs" \
    "$(fl_call flannel ADD "$d/flannel.json")" "$(fl_call flannel DEL "$d/flannel.json")" \
    "$(fl_call bridge ADD "$d/bridge.json")" "$(fl_call bridge DEL "$d/bridge.json")")
  sh -c "$(fl_call flannel DEL "$d/flannel.json"); $(fl_call bridge DEL "$d/bridge.json")"
  add_row "flannel + bridge + host-local ADD (ours; reference column: our bridge + host-local)" 2 "$f" "$b"
  target "flannel ADD $(ratio "$f" "$b")x of bridge + host-local ADD (<= 1.2x)" "$((f * 10 <= b * 12))"
  local left
  left=$(ip netns exec "$ns-fl" ip -brief link show type veth; ls "$d/data" 2>/dev/null || true)
  [ -z "$left" ] || die "flannel: left behind: $left"
  ip netns delete "$ns-fl"
}

etcd_in() { printf 'nsenter --net=/run/netns/%s-etcd %s' "$ns" "$*"; }

# The WAL fsync mean of the running etcd, in microseconds, from its Prometheus metrics.
etcd_fsync_us() {
  nsenter --net="/run/netns/$ns-etcd" python3 -c '
import urllib.request
s = c = 0.0
for line in urllib.request.urlopen("http://127.0.0.1:23790/metrics").read().decode().splitlines():
    if line.startswith("etcd_disk_wal_fsync_duration_seconds_sum"): s = float(line.split()[1])
    if line.startswith("etcd_disk_wal_fsync_duration_seconds_count"): c = float(line.split()[1])
print(int(s / c * 1e6) if c else 0)'
}

section_etcd_ipam() {
  have_applet cluster-ipam || { note "cluster-ipam: not in this build; skipped"; return 0; }
  command -v etcd >/dev/null && command -v etcdctl >/dev/null || die "etcd-server and etcd-client are needed (.ci/packages)"
  local d=$tmp/etcd o e fsync i
  mkdir -p "$d"
  ip netns add "$ns-etcd"
  ip -n "$ns-etcd" link set lo up
  ip netns exec "$ns-etcd" etcd --data-dir "$d/data" --listen-client-urls http://127.0.0.1:23790 \
    --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 >"$d/log" 2>&1 &
  ETCD_PID=$!
  for ((i = 0; i < 100; i++)); do
    ETCDCTL_API=3 ip netns exec "$ns-etcd" etcdctl --endpoints=127.0.0.1:23790 get /probe >/dev/null 2>&1 && break
    sleep 0.1
  done
  printf '{"cniVersion": "1.0.0", "name": "benchpool", "type": "bridge", "ipam": {"type": "cluster-ipam", "etcdEndpoints": ["http://127.0.0.1:23790"], "nodeName": "bench", "ranges": [[{"subnet": "10.77.0.0/16"}]]}}\n' >"$d/ipam.json"
  local add del
  add="$(etcd_in env -i CNI_COMMAND=ADD CNI_CONTAINERID=bench-$$ CNI_NETNS=/run/netns/$ns CNI_IFNAME=eth0 CNI_PATH=$farm $farm/cluster-ipam) <$d/ipam.json >/dev/null"
  del="$(etcd_in env -i CNI_COMMAND=DEL CNI_CONTAINERID=bench-$$ CNI_IFNAME=eth0 CNI_PATH=$farm $farm/cluster-ipam) <$d/ipam.json >/dev/null"
  o=$(median_us "$add" "$del")
  sh -c "$del"
  printf 'create("/benchpool/ips/10.77.0.2") = "0"\n\nput /benchpool/ips/10.77.0.2 {"containerID":"bench","ifname":"eth0","node":"bench"}\n\nget /benchpool/ips/10.77.0.2\n\n' >"$d/txn"
  add="$(etcd_in env -i ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23790 txn) <$d/txn >/dev/null"
  del="$(etcd_in env -i ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23790 del /benchpool/ips/10.77.0.2) >/dev/null"
  e=$(median_us "$add" "$del")
  fsync=$(etcd_fsync_us)
  add_row "cluster-ipam ADD, 1-member etcd (range + txn; reference column: one etcdctl txn exec)" 1 "$o" "$e"
  target "cluster-ipam ADD $(ms "$o") ms faster than one etcdctl txn $(ms "$e") ms" "$((o < e))"
  NOTES+=("" "etcd (single member, data dir under $tmp): WAL fsync mean $(ms "$fsync") ms - the floor of any write, ours or etcdctl's.")
  cluster_cleanup
}

ETCD_PID=
# Called by run.sh's cleanup too: the etcd member and both netns go even when a section dies.
cluster_cleanup() {
  if [ -n "$ETCD_PID" ]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    ETCD_PID=
  fi
  ip netns delete "$ns-etcd" 2>/dev/null || true
  ip netns delete "$ns-fl" 2>/dev/null || true
}
