# shellcheck shell=bash disable=SC2154 # $tmp, $farm, $ns, $ref, $runs, $loop_runs come from run.sh
# bench/runtime.sh: the runtime section of bench/run.sh (sourced by it; uses its helpers
# `add_row`, `target`, `ms`, `have_applet`, `have_ref`, `note`, `die`, `call`).
#
# `net` drives two networks:
#   - "benchlite", loopback + host-local: `net add` + `net del` against the same plugins called
#     directly, one exec each (a runtime without the in-process path). The runtime's own cost
#     is what `net` takes beyond the plugin work, per verb:
#     [T(net add+del) - (T(direct) - (execs - 2) x T(one exec of ours))] / 2, with a VERSION
#     call for one exec of ours, and net with its cache on tmpfs to show the fdatasync's share.
#     No kernel objects come and go here, so the figure is not lost in the kernel's noise.
#   - "benchrt", loopback + bridge (host-local, ipMasq) + portmap, as podman's default network:
#     its ADD through net, ours against the reference plugins run by the same net, with the
#     default (iptables) backends and, ours only, with nftables; net add + del against the
#     direct calls; 100 pods (one netns each) attached and then detached, one at a time and
#     8 at a time.
# Timing: bash inside a throwaway host netns ($ns-rthost, as bridge and portmap change the host
# side) evals the commands in turn within every iteration, so the machine's changing load
# shifts them alike, and reads EPOCHREALTIME around each (no timer exec); figures are medians
# over the iterations. Every netns of the section is deleted when it ends, also on failure.
# RT_NO_PODS=1 skips the pod rows.

RT_PODS=100
RT_MAPS='[{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]'

rt_ipam() { printf '{"type": "host-local", "subnet": "%s", "dataDir": "%s"}' "$1" "$tmp/rt-ipam"; }

# rt_plugins NETWORK: its plugin objects, one per line, first to last.
rt_plugins() {
  echo '{"type": "loopback"}'
  case $1 in
  benchlite) printf '{"type": "host-local", "ipam": %s}\n' "$(rt_ipam 10.202.0.0/16)" ;;
  benchrt | benchnft)
    local masq="" pm="" subnet=10.201.0.0/16
    [ "$1" = benchrt ] || masq=', "ipMasqBackend": "nftables"' pm='"backend": "nftables", ' subnet=10.203.0.0/16
    printf '{"type": "bridge", "bridge": "bench-%s", "isGateway": true, "ipMasq": true%s, "ipam": %s}\n' \
      "$1" "$masq" "$(rt_ipam "$subnet")"
    printf '{"type": "portmap", %s"capabilities": {"portMappings": true}}\n' "$pm"
    ;;
  esac
}

# The first "type" of each plugin line (a bridge line also holds its IPAM's type).
rt_type() { sed 's/^{"type": "\([^"]*\)".*/\1/'; }

# rt_conflist NETWORK: in 1.0.0, so that the reference plugins can run it too.
rt_conflist() {
  mkdir -p "$tmp/rt-conf"
  {
    printf '{"cniVersion": "1.0.0", "name": "%s", "plugins": [\n' "$1"
    rt_plugins "$1" | paste -sd ',' -
    printf ']}\n'
  } >"$tmp/rt-conf/$1.conflist"
}

# rt_net CNI_PATH VERB NETWORK ID NETNS: a net command line; CAP_ARGS (the port mapping) is
# exported for the section, the cache is $rt_cache or $tmp/rt-cache.
rt_net() {
  printf 'NETCONFPATH=%s CNI_PATH=%s %s/net --cache-dir %s --container-id %s %s %s %s >/dev/null' \
    "$tmp/rt-conf" "$1" "$farm" "${rt_cache:-$tmp/rt-cache}" "$4" "$2" "$3" "$5"
}

# rt_call PLUGIN VERB CONFIG: a direct plugin call on eth0 of the container netns $ns.
rt_call() {
  printf 'CNI_COMMAND=%s CNI_CONTAINERID=bench-rt-direct CNI_NETNS=/run/netns/%s CNI_IFNAME=eth0 CNI_PATH=%s %s/%s <%s >/dev/null' \
    "$2" "$ns" "$farm" "$farm" "$1" "$3"
}

# rt_direct NETWORK: one command of all its plugins called directly, the ADDs in order, then
# the DELs in reverse; plugin i gets plugin i-1's ADD result (taken once, here) as prevResult,
# and portmap the port mapping as runtimeConfig, as a runtime passes them. Sets rt_execs.
rt_direct() {
  local i=0 prev="" conf inner type adds=() dels=() plugin
  while read -r plugin; do
    i=$((i + 1))
    type=$(printf '%s' "$plugin" | rt_type)
    inner=${plugin#\{}
    inner=${inner%\}}
    conf=$tmp/rt-direct-$1-$i.json
    {
      printf '{"cniVersion": "1.0.0", "name": "%s", %s' "$1" "$inner"
      [ "$type" != portmap ] || printf ', "runtimeConfig": {"portMappings": %s}' "$RT_MAPS"
      [ -z "$prev" ] || printf ', "prevResult": %s' "$prev"
      printf '}\n'
    } >"$conf"
    adds+=("$(rt_call "$type" ADD "$conf")")
    dels=("$(rt_call "$type" DEL "$conf")" "${dels[@]}")
    prev=$(rt_in_host "${adds[-1]% >/dev/null}") || die "runtime: direct $type ADD failed"
  done < <(rt_plugins "$1")
  rt_in_host "$(printf '%s && ' "${dels[@]}") true" || die "runtime: direct DELs failed"
  rt_execs=$((2 * i))
  rt_direct_cmd="$(printf '%s && ' "${adds[@]}" "${dels[@]}") true"
}

# rt_in_host CMD: runs CMD with bash inside the host netns.
rt_in_host() { nsenter --net="/run/netns/$rt_hostns" -- bash -c "$1"; }

# rt_times N CMD...: in the host netns, runs the commands in turn, N times (after 3 untimed
# rounds); one line per round with each command's wall time in microseconds. A command
# `A ;; B` times A and then runs B untimed (e.g. the DEL that resets an ADD).
rt_times() {
  local n=$1
  shift
  # shellcheck disable=SC2016 # expanded by the inner bash
  nsenter --net="/run/netns/$rt_hostns" -- bash -c '
    n=$1; shift
    for ((i = -3; i < n; i++)); do
      line=""
      for c in "$@"; do
        t0=${EPOCHREALTIME/[.,]/}
        eval "${c%%;;*}" || { echo "failed: $c" >&2; exit 1; }
        t1=${EPOCHREALTIME/[.,]/}
        [ "$c" = "${c%%;;*}" ] || eval "${c#*;;}" || { echo "failed: $c" >&2; exit 1; }
        line+="$((t1 - t0)) "
      done
      [ "$i" -lt 0 ] || echo "$line"
    done' rt "$n" "$@" || die "runtime: a timed command failed"
}

# rt_col N: the median of column N of stdin, an integer.
rt_col() { awk -v c="$1" '{ print $c }' | sort -n | awk '{ v[NR] = $1 } END { printf "%d\n", v[int((NR + 1) / 2)] }'; }

rt_cleanup() {
  local i
  for ((i = 1; i <= RT_PODS; i++)); do ip netns delete "$ns-p$i" 2>/dev/null || true; done
  ip netns delete "$rt_hostns" 2>/dev/null || true
  rm -rf "$rt_shm"
}

# The runtime's own cost, on benchlite.
rt_overhead() {
  local add del table over fsync
  rt_direct benchlite
  add=$(rt_net "$farm" add benchlite bench-rt "/run/netns/$ns")
  del=$(rt_net "$farm" del benchlite bench-rt "/run/netns/$ns")
  table=$(rt_times "$runs" "$(call "$farm" loopback VERSION "$tmp/version.json") >/dev/null" \
    "$add && $del" "$(rt_cache=$rt_shm rt_net "$farm" add benchlite bench-rt "/run/netns/$ns") && $(rt_cache=$rt_shm rt_net "$farm" del benchlite bench-rt "/run/netns/$ns")" \
    "$rt_direct_cmd" |
    awk -v e="$rt_execs" '{ print $0, ($2 - $4 + (e - 2) * $1) / 2, ($2 - $3) / 2 }')
  add_row "net add + del, loopback+host-local" 2 "$(rt_col 2 <<<"$table")"
  add_row "the same, result cache on tmpfs" 2 "$(rt_col 3 <<<"$table")"
  add_row "the same plugins called directly, ADD + DEL ($rt_execs execs)" "$rt_execs" "$(rt_col 4 <<<"$table")"
  over=$(rt_col 5 <<<"$table")
  fsync=$(rt_col 6 <<<"$table")
  target "net adds $(ms "$over") ms per verb over the plugin work it drives, $(ms "$fsync") ms of it the cache file's fdatasync in $tmp (<= 0.3 ms; [T(net add+del) - (T(direct) - $((rt_execs - 2)) x T(one exec of ours))] / 2)" \
    "$((over <= 300))"
}

# benchrt's ADD (ours, the reference, ours on nftables), then its ADD + DEL against the direct calls.
rt_full_chain() {
  local cmds=() table ours nft theirs=""
  cmds+=("$(rt_net "$farm" add benchrt bench-rt "/run/netns/$ns") ;; $(rt_net "$farm" del benchrt bench-rt "/run/netns/$ns")")
  cmds+=("$(rt_net "$farm" add benchnft bench-rt "/run/netns/$ns") ;; $(rt_net "$farm" del benchnft bench-rt "/run/netns/$ns")")
  if have_ref loopback && have_ref bridge && have_ref host-local && have_ref portmap; then
    cmds+=("$(rt_net "$ref" add benchrt bench-ref "/run/netns/$ns") ;; $(rt_net "$ref" del benchrt bench-ref "/run/netns/$ns")")
  fi
  table=$(rt_times "$runs" "${cmds[@]}")
  ours=$(rt_col 1 <<<"$table")
  nft=$(rt_col 2 <<<"$table")
  [ ${#cmds[@]} -lt 3 ] || theirs=$(rt_col 3 <<<"$table")
  add_row "net add, loopback+bridge+portmap, ipMasq (reference: the same net running $ref)" 1 "$ours" "$theirs"
  add_row "net add, the same on nftables (ipMasqBackend, backend: all in process)" 1 "$nft"
  target "full-chain ADD through net $(ms "$ours") ms median, iptables as the reference (<= 7 ms)" "$((ours <= 7000))"
  target "full-chain ADD through net $(ms "$nft") ms median, nftables (<= 7 ms)" "$((nft <= 7000))"

  rt_direct benchrt
  table=$(rt_times "$runs" \
    "$(rt_net "$farm" add benchrt bench-rt "/run/netns/$ns") && $(rt_net "$farm" del benchrt bench-rt "/run/netns/$ns")" \
    "$rt_direct_cmd")
  add_row "net add + del, loopback+bridge+portmap" 2 "$(rt_col 1 <<<"$table")"
  add_row "the same plugins called directly, ADD + DEL ($rt_execs execs)" "$rt_execs" "$(rt_col 2 <<<"$table")"
}

# 100 pods of benchrt, each its own netns, attached one after the other and then detached;
# then the same 8 at a time.
rt_pods() {
  local i env opts net_args one_by_one eight table
  for ((i = 1; i <= RT_PODS; i++)); do ip netns add "$ns-p$i"; done
  env="NETCONFPATH=$tmp/rt-conf CNI_PATH=$farm"
  opts="--cache-dir $tmp/rt-cache --container-id pod"
  net_args="benchrt /run/netns/$ns-p"
  one_by_one="for p in \$(seq $RT_PODS); do $env $farm/net ${opts}\$p add ${net_args}\$p >/dev/null || exit 1; done; \
for p in \$(seq $RT_PODS); do $env $farm/net ${opts}\$p del ${net_args}\$p >/dev/null || exit 1; done"
  eight="seq $RT_PODS | $env xargs -P 8 -I{} $farm/net ${opts}{} add ${net_args}{} >/dev/null && \
seq $RT_PODS | $env xargs -P 8 -I{} $farm/net ${opts}{} del ${net_args}{} >/dev/null"
  table=$(rt_times "$loop_runs" "($one_by_one)" "$eight")
  add_row "$RT_PODS pods of loopback+bridge+portmap attached, then detached, one at a time" \
    $((2 * RT_PODS)) "$(rt_col 1 <<<"$table")"
  add_row "the same, 8 at a time" $((2 * RT_PODS)) "$(rt_col 2 <<<"$table")"
}

section_runtime() {
  have_applet net || { note "runtime: no net applet in this build; skipped"; return 0; }
  { have_applet bridge && have_applet portmap; } || { note "runtime: no bridge or portmap in this build; skipped"; return 0; }
  rt_hostns=$ns-rthost
  rt_shm=/dev/shm/cni-bench-$$-cache
  export CAP_ARGS="{\"portMappings\": $RT_MAPS}"
  trap 'rt_cleanup; cleanup' EXIT
  ip netns add "$rt_hostns"
  ip -n "$rt_hostns" link set lo up
  local n
  for n in benchlite benchrt benchnft; do rt_conflist "$n"; done
  rt_overhead
  rt_full_chain
  [ -n "${RT_NO_PODS:-}" ] || rt_pods
  rt_cleanup
  trap cleanup EXIT
  unset CAP_ARGS
}
