# shellcheck shell=bash disable=SC2154 # $tmp, $farm, $ns, $ref come from run.sh
# bench/firewall.sh: the firewall section of bench/run.sh (sourced by it; uses its helpers
# `rt_times`, `rt_col`, `add_row`, `target`, `ratio`, `ms`, `have_applet`, `have_ref`, `note`, `die`).
#
# A network of bridge (host-local, no ipMasq) + firewall, driven by `net add` / `net del` in a
# throwaway host netns ($ns-fw) against a container netns ($ns-fwctr), as a runtime runs it:
#   - ours, bridge alone: the floor the firewall's cost is measured against;
#   - ours, bridge + firewall on nftables (in process, one nf_tables batch, no exec): target
#     ADD and DEL <= 1.3x of bridge alone;
#   - ours, bridge + firewall on iptables (one iptables-restore per family per change);
#   - the reference v1.1.1 pair, bridge + firewall (iptables, one `iptables` exec per rule),
#     run by the same `net`: target ours on iptables >= 3x faster, ADD and DEL.
# Rounds (BENCH_FW_RUNS, default 30) run every case's `net add` then its `net del`, all cases
# in turn, timed with rt_times of bench/runtime.sh. Both namespaces are deleted at the end,
# and by run.sh's cleanup.

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

# fw_net WHO VERB CNI_PATH: one `net` call as the runtime on the host makes it (rt_times runs
# it inside the host netns).
fw_net() {
  printf "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin %s/net %s benchfw /run/netns/%s --container-id bench-fw --conf-dir %s --cache-dir %s --cni-path %s >/dev/null" \
    "$farm" "$2" "$ns-fwctr" "$tmp/fw-$1/net.d" "$tmp/fw-$1/cache" "$3"
}

section_firewall() {
  local a
  for a in net bridge host-local firewall; do
    have_applet "$a" || { note "firewall: no $a applet in this build yet; skipped"; return 0; }
  done
  ip netns add "$ns-fw"
  ip netns add "$ns-fwctr"
  ip -n "$ns-fw" link set lo up
  # Every round runs each case's ADD and then its DEL, all cases in turn, so a change of the
  # machine's load shifts them alike (rt_times of bench/runtime.sh, in our host netns).
  local cmds=() who backend path
  for who in ours-alone:"":"$farm" ours-nft:nftables:"$farm" ours-ipt:iptables:"$farm" ref:iptables:"$ref"; do
    IFS=: read -r who backend path <<<"$who"
    [ "$who" != ref ] || { have_ref bridge && have_ref host-local && have_ref firewall; } || continue
    fw_conf "$who" "$backend"
    cmds+=("$(fw_net "$who" add "$path")" "$(fw_net "$who" del "$path")")
  done
  local table rt_hostns=$ns-fw
  table=$(rt_times "$fw_runs" "${cmds[@]}")
  local c=() i
  for i in $(seq 1 ${#cmds[@]}); do c[i]=$(rt_col "$i" <<<"$table"); done
  local ra=${c[7]:-} rd=${c[8]:-}
  add_row "bridge ADD alone (net)" 1 "${c[1]}"
  add_row "bridge + firewall ADD, nftables (net; reference: iptables)" 1 "${c[3]}" "$ra"
  add_row "bridge + firewall ADD, iptables (net)" 1 "${c[5]}" "$ra"
  add_row "bridge DEL alone (net)" 1 "${c[2]}"
  add_row "bridge + firewall DEL, nftables (net; reference: iptables)" 1 "${c[4]}" "$rd"
  add_row "bridge + firewall DEL, iptables (net)" 1 "${c[6]}" "$rd"
  target "bridge + firewall ADD on nftables $(ratio "${c[3]}" "${c[1]}")x of bridge alone (<= 1.3x)" \
    "$((c[3] * 10 <= c[1] * 13))"
  target "bridge + firewall DEL on nftables $(ratio "${c[4]}" "${c[2]}")x of bridge alone (<= 1.3x)" \
    "$((c[4] * 10 <= c[2] * 13))"
  if [ -n "$ra" ]; then
    target "bridge + firewall ADD on iptables $(ratio "$ra" "${c[5]}")x faster than the reference pair (>= 3x)" \
      "$((c[5] * 3 <= ra))"
    target "bridge + firewall DEL on iptables $(ratio "$rd" "${c[6]}")x faster than the reference pair (>= 3x)" \
      "$((c[6] * 3 <= rd))"
  fi
  NOTES+=("" "Firewall: $fw_runs rounds, each running every case's net add and then its net del (medians; bridge without ipMasq, one container)")
  local left
  left=$(ip netns exec "$ns-fw" sh -c 'ip -brief link show type veth; iptables-save -t filter | grep -e "-A CNI-FORWARD -[sd]"; nft list table inet cni_plugins_firewall 2>/dev/null | grep -e saddr -e daddr' || true)
  [ -z "$left" ] || die "firewall: left behind: $left"
  ip netns delete "$ns-fwctr"
  ip netns delete "$ns-fw"
}
