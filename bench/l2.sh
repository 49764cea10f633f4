# shellcheck shell=bash
# bench/l2.sh, sourced by bench/run.sh: section_macvlan times macvlan + host-local ADD and DEL
# (ours in process, the reference exec'ing its host-local) against the same kernel work done
# by one `ip -batch` process (create the macvlan in the container on the host's master, add
# the address, set it up; DEL: delete it), each call run as a runtime on the host runs it
# (`nsenter` into the host netns, `env -i`, the program). Everything lives in the throwaway
# netns $ns-mvhost (the host, holding the master mvlan0, a veth) and $ns-mvctr (the container).

# mv_call DIR VERB CONFIG: one macvlan call from the throwaway host netns.
mv_call() {
  printf 'nsenter --net=/run/netns/%s-mvhost env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=%s CNI_CONTAINERID=bench-mv-%s CNI_NETNS=/run/netns/%s-mvctr CNI_IFNAME=eth0 CNI_PATH=%s %s/macvlan <%s >/dev/null' \
    "$ns" "$2" "$$" "$ns" "$1" "$1" "$3"
}

# mv_conf FILE DATADIR: macvlan on mvlan0, bridge mode, host-local in DATADIR (1.0.0: the
# newest version the packaged reference accepts).
mv_conf() {
  printf '{"cniVersion": "1.0.0", "name": "benchmv", "type": "macvlan", "master": "mvlan0", "mode": "bridge", "ipam": {"type": "host-local", "dataDir": "%s", "ranges": [[{"subnet": "10.97.0.0/24"}]]}}\n' \
    "$2" >"$1"
}

# mv_pair ADD DEL [UNDO]: "ADD_US DEL_US", each verb timed after an untimed run of the other
# (UNDO instead of DEL before each ADD, when DEL fails on nothing to delete).
mv_pair() {
  local a d
  a=$(median_us "$1" "${3:-$2}")
  sh -c "$2" >/dev/null 2>&1
  d=$(median_us "$2" "$1")
  echo "$a $d"
}

section_macvlan() {
  { have_applet macvlan && have_applet host-local; } || { note "macvlan: not in this build yet; skipped"; return 0; }
  local h=$ns-mvhost c=$ns-mvctr ipbin idx
  ipbin=$(command -v ip)
  ip netns add "$h"
  ip netns add "$c"
  ip -n "$h" link add mvlan0 type veth peer name mvlanp
  ip -n "$h" link set mvlan0 up
  ip -n "$h" link set mvlanp up
  idx=$(ip -n "$h" -o link show mvlan0 | cut -d: -f1)
  # The kernel work of our ADD (less the two sysctl writes and the netns id lookup): the
  # macvlan created from inside the container on the host's mvlan0 (by ifindex, in the
  # link-netns, as ours does), its address, up.
  printf 'link add link if%s link-netns %s name eth0 type macvlan mode bridge\naddr add 10.97.0.2/24 dev eth0\nlink set eth0 up\n' \
    "$idx" "$h" >"$tmp/mv-add.batch"
  printf 'link del eth0\n' >"$tmp/mv-del.batch"
  local batch="nsenter --net=/run/netns/$c env -i $ipbin -batch"
  local o b r=() ours theirs=""
  mv_conf "$tmp/mv-ours.json" "$tmp/mv-ours"
  o=($(mv_pair "$(mv_call "$farm" ADD "$tmp/mv-ours.json")" "$(mv_call "$farm" DEL "$tmp/mv-ours.json")"))
  b=($(mv_pair "$batch $tmp/mv-add.batch" "$batch $tmp/mv-del.batch" "$batch $tmp/mv-del.batch 2>/dev/null || true"))
  if have_ref macvlan && have_ref host-local; then
    mv_conf "$tmp/mv-ref.json" "$tmp/mv-ref"
    r=($(mv_pair "$(mv_call "$ref" ADD "$tmp/mv-ref.json")" "$(mv_call "$ref" DEL "$tmp/mv-ref.json")"))
  fi
  # What every call here pays before the program runs: nsenter + env (as in section_chain).
  local harness
  harness=$(median_us "nsenter --net=/run/netns/$h env -i /bin/true")
  harness=$((harness > floor ? harness - floor : 0))
  add_row "macvlan + host-local ADD" 2 "${o[0]}" "${r[0]:-}"
  add_row "macvlan + host-local DEL" 2 "${o[1]}" "${r[1]:-}"
  add_row "same kernel work, one \`ip -batch\`: ADD" 2 "${b[0]}"
  add_row "same kernel work, one \`ip -batch\`: DEL" 2 "${b[1]}"
  # Ratios with the common harness taken off both sides (one exec of the program remains).
  local oa=$((o[0] - harness)) od=$((o[1] - harness)) ba=$((b[0] - harness)) bd=$((b[1] - harness))
  target "macvlan + host-local ADD $(ratio "$oa" "$ba")x the \`ip -batch\` time, less the harness (<= 1.5x)" "$((oa * 2 <= ba * 3))"
  target "macvlan + host-local DEL $(ratio "$od" "$bd")x the \`ip -batch\` time, less the harness (<= 1.5x)" "$((od * 2 <= bd * 3))"
  if [ ${#r[@]} -gt 0 ]; then
    local ra=$((r[0] - harness))
    target "macvlan + host-local ADD $(ratio "$ra" "$oa")x faster than the reference, less the harness (>= 4x; $(ratio "${r[0]}" "${o[0]}")x with it)" "$((oa * 4 <= ra))"
    NOTES+=("" "macvlan + host-local DEL: $(ratio "$((r[1] - harness))" "$od")x faster than the reference, less the harness (no target).")
  fi
  NOTES+=("" "macvlan: each call is \`nsenter\` into the throwaway host netns, \`env -i\`, then the plugin or \`ip -batch\`; that harness (nsenter + env, $(ms "$harness") ms here) is paid by every side alike and taken off for the targets. The reference also execs its host-local; ours runs it in process. The \`ip -batch\` rows skip what only a plugin does: the netns id lookup, two sysctl writes, the reservation file.")
  local left
  left=$(ip -n "$c" -brief link show | grep -v '^lo ' || true)
  left+=$(ls "$tmp/mv-ours/benchmv" "$tmp/mv-ref/benchmv" 2>/dev/null | grep -v -e lock -e last_reserved -e '^/' -e '^$' || true)
  [ -z "$left" ] || die "macvlan: left behind: $left"
  ip netns delete "$c"
  ip netns delete "$h"
}
