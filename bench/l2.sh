# shellcheck shell=bash
# bench/l2.sh, sourced by bench/run.sh: section_macvlan times macvlan + host-local ADD and DEL
# (ours with host-local in process, the reference exec'ing its host-local) against the same
# kernel work done by one `ip -batch` process (create the macvlan from inside the container on
# the host's master, add the address, set it up; DEL: delete it). Each call is started with
# posix_spawn by bench/spawn_timer.py running inside the netns the call belongs in (`ip netns
# exec`, untimed), so no nsenter, env or shell is timed: the plugins from the throwaway host
# netns $ns-mvhost (holding the master mvlan0, a veth), `ip` from the container $ns-mvctr.

# mv_call DIR VERB CONFIG: one macvlan call as spawn_timer.py takes it.
mv_call() {
  printf 'CNI_COMMAND=%s CNI_CONTAINERID=bench-mv-%s CNI_NETNS=/run/netns/%s-mvctr CNI_IFNAME=eth0 CNI_PATH=%s %s/macvlan <%s' \
    "$2" "$$" "$ns" "$1" "$1" "$3"
}

# mv_conf FILE DATADIR: macvlan on mvlan0, bridge mode, host-local in DATADIR (1.0.0: the
# newest version the packaged reference accepts).
mv_conf() {
  printf '{"cniVersion": "1.0.0", "name": "benchmv", "type": "macvlan", "master": "mvlan0", "mode": "bridge", "ipam": {"type": "host-local", "dataDir": "%s", "ranges": [[{"subnet": "10.97.0.0/24"}]]}}\n' \
    "$2" >"$1"
}

# mv_median NETNS CALL PREP: median microseconds of CALL spawned inside NETNS, PREP (a shell
# command, run there too) untimed before each run.
mv_median() {
  ip netns exec "$1" python3 "$top/bench/spawn_timer.py" "$runs" 10 1 "$3" "$2" ||
    die "benchmark failed in $1: $2"
}

# mv_pair NETNS ADD DEL [UNDO]: "ADD_US DEL_US", each verb timed after an untimed run of the
# other (UNDO instead of DEL before each ADD, when DEL fails on nothing to delete).
mv_pair() {
  local a d
  a=$(mv_median "$1" "$2" "${4:-$3} >/dev/null 2>&1")
  ip netns exec "$1" sh -c "$3" >/dev/null 2>&1
  d=$(mv_median "$1" "$3" "$2 >/dev/null")
  echo "$a $d"
}

section_macvlan() {
  { have_applet macvlan && have_applet host-local; } || { note "macvlan: not in this build yet; skipped"; return 0; }
  command -v python3 >/dev/null || { note "macvlan: needs python3 (bench/spawn_timer.py); skipped"; return 0; }
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
  local o b r=()
  mv_conf "$tmp/mv-ours.json" "$tmp/mv-ours"
  o=($(mv_pair "$h" "$(mv_call "$farm" ADD "$tmp/mv-ours.json")" "$(mv_call "$farm" DEL "$tmp/mv-ours.json")"))
  b=($(mv_pair "$c" "BENCH=1 $ipbin -batch - <$tmp/mv-add.batch" "BENCH=1 $ipbin -batch - <$tmp/mv-del.batch" \
    "$ipbin -batch $tmp/mv-del.batch 2>/dev/null || true"))
  if have_ref macvlan && have_ref host-local; then
    mv_conf "$tmp/mv-ref.json" "$tmp/mv-ref"
    r=($(mv_pair "$h" "$(mv_call "$ref" ADD "$tmp/mv-ref.json")" "$(mv_call "$ref" DEL "$tmp/mv-ref.json")"))
  fi
  add_row "macvlan + host-local ADD" 1 "${o[0]}" "${r[0]:-}"
  add_row "macvlan + host-local DEL" 1 "${o[1]}" "${r[1]:-}"
  add_row "same kernel work, one \`ip -batch\`: ADD" 1 "${b[0]}"
  add_row "same kernel work, one \`ip -batch\`: DEL" 1 "${b[1]}"
  target "macvlan + host-local ADD $(ratio "${o[0]}" "${b[0]}")x the \`ip -batch\` time (<= 1.5x)" "$((o[0] * 2 <= b[0] * 3))"
  target "macvlan + host-local DEL $(ratio "${o[1]}" "${b[1]}")x the \`ip -batch\` time (<= 1.5x)" "$((o[1] * 2 <= b[1] * 3))"
  if [ ${#r[@]} -gt 0 ]; then
    target "macvlan + host-local ADD $(ratio "${r[0]}" "${o[0]}")x faster than the reference (>= 4x)" "$((o[0] * 4 <= r[0]))"
    NOTES+=("" "macvlan + host-local DEL: $(ratio "${r[1]}" "${o[1]}")x faster than the reference (no target).")
  fi
  NOTES+=("" "macvlan: every call posix_spawn'ed inside its netns (no nsenter, env or shell timed). The reference also execs its host-local; ours runs it in process. The \`ip -batch\` rows skip what only a plugin does: the netns id lookup, two sysctl writes, the reservation file.")
  local left
  left=$(ip -n "$c" -brief link show | grep -v '^lo ' || true)
  left+=$(ls "$tmp/mv-ours/benchmv" "$tmp/mv-ref/benchmv" 2>/dev/null | grep -v -e lock -e last_reserved -e '^/' -e '^$' || true)
  [ -z "$left" ] || die "macvlan: left behind: $left"
  ip netns delete "$c"
  ip netns delete "$h"
}
