# shellcheck shell=bash disable=SC2154 # $tmp, $farm, $ns, $ref come from run.sh
# bench/firewall.sh: the firewall section of bench/run.sh (sourced by it; uses its helpers
# `median_us`, `add_row`, `target`, `ratio`, `ms`, `have_applet`, `have_ref`, `note`, `die`).
#
# A network of bridge (host-local, no ipMasq) + firewall, driven by `net add` / `net del` in a
# throwaway host netns ($ns-fw) against a container netns ($ns-fwctr), as a runtime runs it:
#   - ours, bridge alone: the floor the firewall's cost is measured against;
#   - ours, bridge + firewall on nftables (in process, one nf_tables batch, no exec): target
#     ADD and DEL <= 1.3x of bridge alone;
#   - ours, bridge + firewall on iptables (one iptables-restore per family per change);
#   - the reference v1.1.1 pair, bridge + firewall (iptables, one `iptables` exec per rule),
#     run by the same `net`: target ours on iptables >= 3x faster, ADD and DEL.
# Each ADD is timed after an untimed DEL and the other way round; BENCH_FW_RUNS runs per
# median (default 30). Both namespaces are deleted at the end, and by run.sh's cleanup.

fw_runs=${BENCH_FW_RUNS:-30}

# fw_conf WHO BACKEND: the conflist of case WHO; BACKEND "" means no firewall.
fw_conf() {
  local d=$tmp/fw-$1 fw=""
  mkdir -p "$d/net.d"
  [ -z "$2" ] || fw=", {\"type\": \"firewall\", \"backend\": \"$2\", \"dataDir\": \"$d/state\"}"
  printf '%s\n' "{\"cniVersion\": \"1.0.0\", \"name\": \"benchfw\", \"plugins\": [" \
    " {\"type\": \"bridge\", \"bridge\": \"benchfw0\", \"isGateway\": true," \
    "  \"ipam\": {\"type\": \"host-local\", \"dataDir\": \"$d/ipam\"," \
    "  \"ranges\": [[{\"subnet\": \"10.97.0.0/24\"}]]}}$fw]}" >"$d/net.d/10-fw.conflist"
}

# fw_net WHO VERB CNI_PATH: one `net` call as the runtime on the host makes it.
fw_net() {
  printf "nsenter --net=/run/netns/%s env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin %s/net %s benchfw /run/netns/%s --container-id bench-fw --conf-dir %s --cache-dir %s --cni-path %s >/dev/null" \
    "$ns-fw" "$farm" "$2" "$ns-fwctr" "$tmp/fw-$1/net.d" "$tmp/fw-$1/cache" "$3"
}

# fw_case WHO BACKEND CNI_PATH: "ADD_US DEL_US".
fw_case() {
  local add del a d
  fw_conf "$1" "$2"
  add=$(fw_net "$1" add "$3")
  del=$(fw_net "$1" del "$3")
  a=$(MEDIAN_RUNS=$fw_runs MEDIAN_WARMUP=2 median_us "$add" "$del")
  sh -c "$del"
  d=$(MEDIAN_RUNS=$fw_runs MEDIAN_WARMUP=2 median_us "$del" "$add")
  echo "$a $d"
}

section_firewall() {
  local a
  for a in net bridge host-local firewall; do
    have_applet "$a" || { note "firewall: no $a applet in this build yet; skipped"; return 0; }
  done
  ip netns add "$ns-fw"
  ip netns add "$ns-fwctr"
  ip -n "$ns-fw" link set lo up
  local alone nft ipt theirs=""
  alone=($(fw_case ours-alone "" "$farm"))
  nft=($(fw_case ours-nft nftables "$farm"))
  ipt=($(fw_case ours-ipt iptables "$farm"))
  if have_ref bridge && have_ref host-local && have_ref firewall; then
    theirs=$(fw_case ref iptables "$ref")
  fi
  local r=($theirs)
  add_row "bridge ADD alone (net)" 1 "${alone[0]}"
  add_row "bridge + firewall ADD, nftables (net; reference: iptables)" 1 "${nft[0]}" "${r[0]:-}"
  add_row "bridge + firewall ADD, iptables (net)" 1 "${ipt[0]}" "${r[0]:-}"
  add_row "bridge DEL alone (net)" 1 "${alone[1]}"
  add_row "bridge + firewall DEL, nftables (net; reference: iptables)" 1 "${nft[1]}" "${r[1]:-}"
  add_row "bridge + firewall DEL, iptables (net)" 1 "${ipt[1]}" "${r[1]:-}"
  target "bridge + firewall ADD on nftables $(ratio "${nft[0]}" "${alone[0]}")x of bridge alone (<= 1.3x)" \
    "$((nft[0] * 10 <= alone[0] * 13))"
  target "bridge + firewall DEL on nftables $(ratio "${nft[1]}" "${alone[1]}")x of bridge alone (<= 1.3x)" \
    "$((nft[1] * 10 <= alone[1] * 13))"
  if [ -n "$theirs" ]; then
    target "bridge + firewall ADD on iptables $(ratio "${r[0]}" "${ipt[0]}")x faster than the reference pair (>= 3x)" \
      "$((ipt[0] * 3 <= r[0]))"
    target "bridge + firewall DEL on iptables $(ratio "${r[1]}" "${ipt[1]}")x faster than the reference pair (>= 3x)" \
      "$((ipt[1] * 3 <= r[1]))"
  fi
  local left
  left=$(ip netns exec "$ns-fw" sh -c 'ip -brief link show type veth; iptables-save -t filter | grep -e "-A CNI-FORWARD -[sd]"; nft list table inet cni_plugins_firewall 2>/dev/null | grep -e saddr -e daddr' || true)
  [ -z "$left" ] || die "firewall: left behind: $left"
  ip netns delete "$ns-fwctr"
  ip netns delete "$ns-fw"
}
