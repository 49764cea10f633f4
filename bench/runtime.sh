# shellcheck shell=bash disable=SC2154 # $tmp, $farm, $ns, $ref, $loop_runs come from run.sh
# bench/runtime.sh: the runtime section of bench/run.sh (sourced by it; uses its helpers `row`,
# `target`, `median_us`, `ms`, `have_applet`, `have_ref`, `note`, `die`, `call` and its $farm,
# $tmp, $ns, $ref, $loop_runs).
#
# `net` drives one network, "benchrt": loopback + host-local, or loopback + bridge (with
# host-local) once this build has bridge, + portmap once it has portmap. Measured:
#   - `net add` + `net del` against the same plugins called directly, one exec each (a runtime
#     without the in-process path); the runtime's own cost is what `net` takes beyond the
#     plugin work: T(net) - [T(direct) - (execs(direct) - 2) x T(exec of ours)], halved per
#     verb, where T(exec of ours) is a loopback VERSION call (exec, start-up, dispatch, reply);
#   - a full-chain `net add` alone (its DEL untimed in between), ours and, through the same
#     `net` with CNI_PATH=$ref, the reference plugins;
#   - 100 pods (one netns each) attached and then detached, one after the other and 8 at a time.
# Everything runs inside a throwaway "host" netns ($ns-host, entered with nsenter, whose own
# cost is measured and subtracted where a row is a single call), because bridge and portmap
# change the host side. Every netns of the section is deleted when it ends, also on failure.

RT_PODS=100

rt_ipam() { printf '{"type": "host-local", "subnet": "10.201.0.0/16", "dataDir": "%s"}' "$tmp/rt-ipam"; }

# The plugin objects of benchrt, one per line, first to last.
rt_plugins() {
  echo '{"type": "loopback"}'
  if have_applet bridge; then
    printf '{"type": "bridge", "bridge": "bench-rt0", "isGateway": true, "ipam": %s}\n' "$(rt_ipam)"
  else
    printf '{"type": "host-local", "ipam": %s}\n' "$(rt_ipam)"
  fi
  if have_applet portmap; then
    echo '{"type": "portmap", "capabilities": {"portMappings": true}}'
  fi
}

rt_type() { sed 's/.*"type": "\([^"]*\)".*/\1/'; }

# The conflist, in 1.0.0 so that the reference plugins can run it too.
rt_conflist() {
  mkdir -p "$tmp/rt-conf"
  {
    printf '{"cniVersion": "1.0.0", "name": "benchrt", "plugins": [\n'
    rt_plugins | paste -sd ',' -
    printf ']}\n'
  } >"$tmp/rt-conf/benchrt.conflist"
}

# `net [opts] VERB benchrt NETNS` as a command line, with CNI_PATH $1 and container ID $3
# (CAP_ARGS, when portmap is in the chain, is exported for the section).
rt_net() { # rt_net CNI_PATH VERB ID NETNS
  printf 'NETCONFPATH=%s CNI_PATH=%s %s/net --cache-dir %s --container-id %s %s benchrt %s' \
    "$tmp/rt-conf" "$1" "$farm" "${rt_cache:-$tmp/rt-cache}" "$3" "$2" "$4"
}

# A direct plugin call, like `call`, on eth0.
rt_call() { # rt_call PLUGIN VERB CONFIG
  printf 'CNI_COMMAND=%s CNI_CONTAINERID=bench-rt-direct CNI_NETNS=/run/netns/%s CNI_IFNAME=eth0 CNI_PATH=%s %s/%s <%s' \
    "$2" "$ns" "$farm" "$farm" "$1" "$3"
}

# Inside the host netns: `VAR=V... nsenter --net=HOST -- PROGRAM ARGS...` for `VAR=V... PROGRAM ARGS...`.
rt_host() {
  local cmd=$1 vars=""
  while [[ $cmd =~ ^([A-Z_]+=[^ ]*\ )(.*)$ ]]; do
    vars+=${BASH_REMATCH[1]}
    cmd=${BASH_REMATCH[2]}
  done
  printf '%snsenter --net=/run/netns/%s -- %s' "$vars" "$rt_hostns" "$cmd"
}
rt_host_sh() { printf "nsenter --net=/run/netns/%s -- sh -c '%s'" "$rt_hostns" "$1"; }

# The direct calls, one per line: the ADDs in order, then the DELs in reverse. Plugin i gets
# plugin i-1's ADD result (taken once, here) as prevResult, and portmap its runtimeConfig, as
# a runtime passes them.
rt_direct_calls() {
  local i=0 prev="" conf inner type out adds=() dels=() plugin
  while read -r plugin; do
    i=$((i + 1))
    type=$(printf '%s' "$plugin" | rt_type)
    inner=${plugin#\{}
    inner=${inner%\}}
    conf=$tmp/rt-direct-$i.json
    {
      printf '{"cniVersion": "1.0.0", "name": "benchrt", %s' "$inner"
      [ "$type" != portmap ] || printf ', "runtimeConfig": {"portMappings": %s}' "$rt_maps"
      [ -z "$prev" ] || printf ', "prevResult": %s' "$prev"
      printf '}\n'
    } >"$conf"
    adds+=("$(rt_call "$type" ADD "$conf")")
    dels=("$(rt_call "$type" DEL "$conf")" "${dels[@]}")
    out=$(eval "$(rt_host "${adds[-1]}")") || die "runtime: direct $type ADD failed: $out"
    prev=$out
  done < <(rt_plugins)
  for ((i = 0; i < ${#dels[@]}; i++)); do
    eval "$(rt_host "${dels[$i]}")" >/dev/null || die "runtime: direct DEL failed: ${dels[$i]}"
  done
  printf '%s\n' "${adds[@]}" "${dels[@]}"
}

rt_cleanup() {
  local i
  for ((i = 1; i <= RT_PODS; i++)); do ip netns delete "$ns-p$i" 2>/dev/null || true; done
  ip netns delete "$rt_hostns" 2>/dev/null || true
  rm -rf "$rt_shm"
}

# net add + del against the direct calls, and the runtime's cost derived from both. Five
# commands, each in the host netns through `nsenter sh -c`, take turns within every iteration,
# so that the machine's changing load shifts them alike; each figure is the median over the
# iterations. `true` gives the cost of nsenter + sh, a VERSION call the cost of one exec of
# ours from that sh; net with its cache on tmpfs isolates the cache file's fdatasync.
rt_overhead() {
  local chain=$1 direct execs cmds table
  mapfile -t direct < <(rt_direct_calls)
  execs=${#direct[@]}
  cmds=(
    "$(rt_host_sh true)"
    "$(rt_host_sh "$(call "$farm" loopback VERSION "$tmp/version.json")")"
    "$(rt_host_sh "$(rt_net "$farm" add bench-rt "/run/netns/$ns") >/dev/null && $(rt_net "$farm" del bench-rt "/run/netns/$ns")")"
    "$(rt_host_sh "$(rt_cache=$rt_shm rt_net "$farm" add bench-rt "/run/netns/$ns") >/dev/null && $(rt_cache=$rt_shm rt_net "$farm" del bench-rt "/run/netns/$ns")")"
    "$(rt_host_sh "$(printf '%s >/dev/null && ' "${direct[@]}") true")"
  )
  rt_alternate 5 "${cmds[@]}" >/dev/null
  rt_alternate "$runs" "${cmds[@]}" >"$tmp/rt-times"
  # Columns: sh version net shm direct; then per verb, the runtime's own cost
  # [net - (direct - (execs - 2) x (version - sh))] / 2 and the fdatasync's (net - shm) / 2.
  table=$(awk -v e="$execs" '{ print $1, $2, $3, $4, $5, ($3 - $5 + (e - 2) * ($2 - $1)) / 2, ($3 - $4) / 2 }' "$tmp/rt-times")
  rt_row "net add + del, $chain (in nsenter + sh)" 2 "$(rt_col 3 <<<"$table")"
  rt_row "the same, result cache on tmpfs ($rt_shm)" 2 "$(rt_col 4 <<<"$table")"
  rt_row "the same plugins called directly, ADD + DEL: $execs execs (in nsenter + sh)" "$execs" \
    "$(rt_col 5 <<<"$table")"
  local over fsync
  over=$(rt_col 6 <<<"$table")
  fsync=$(rt_col 7 <<<"$table")
  target "net adds $(ms "$over") ms per verb over the plugin work it drives, $(ms "$fsync") ms of it the cache file's fdatasync in $tmp (<= 0.3 ms; [T(net add+del) - (T(direct) - $((execs - 2)) x T(one exec of ours))] / 2, medians over $runs alternating iterations)" \
    "$((over <= 300))"
}

# rt_alternate N CMD...: runs the commands in turn, N times; one line per turn with each
# command's wall time in microseconds (bash's EPOCHREALTIME: no exec of a timer).
rt_alternate() {
  local n=$1 i c t0 t1 line
  shift
  for ((i = 0; i < n; i++)); do
    line=""
    for c in "$@"; do
      t0=${EPOCHREALTIME/[.,]/}
      eval "$c" >/dev/null 2>&1 || die "runtime: failed: $c"
      t1=${EPOCHREALTIME/[.,]/}
      line+="$((t1 - t0)) "
    done
    echo "$line"
  done
}

# The median of column $1 of stdin, an integer.
rt_col() { awk -v c="$1" '{ print $c }' | sort -n | awk '{ v[NR] = $1 } END { printf "%d\n", v[int((NR + 1) / 2)] }'; }

# A row from a median already measured (ours only).
rt_row() { # rt_row LABEL EXECS US
  ROWS+=("| $1 | $(ms "$3") | – | $(ratio "$3" $((floor * $2))) | – |")
}

# The full chain's ADD, ours and the reference plugins through the same net.
rt_full_add() {
  local chain=$1 nsenter ours theirs="" theirs_del="" maybe_bridge=loopback
  nsenter=$(median_us "$(rt_host /bin/true)")
  have_applet bridge && maybe_bridge=bridge
  if have_ref loopback && have_ref host-local && have_ref "$maybe_bridge" && { ! have_applet portmap || have_ref portmap; }; then
    theirs=$(rt_host "$(rt_net "$ref" add bench-rt-ref "/run/netns/$ns")")
    theirs_del=$(rt_host "$(rt_net "$ref" del bench-rt-ref "/run/netns/$ns")")
  fi
  row "net add, $chain (reference: plugins from $ref; nsenter not subtracted)" 1 \
    "$(rt_host "$(rt_net "$farm" add bench-rt "/run/netns/$ns")")" "$theirs" \
    "$(rt_host "$(rt_net "$farm" del bench-rt "/run/netns/$ns")")" "$theirs_del"
  ours=$((LAST_OURS - nsenter))
  target "full-chain ADD through net $(ms "$ours") ms median, nsenter's $(ms "$nsenter") ms subtracted (<= 7 ms)" \
    "$((ours <= 7000))"
}

# 100 pods, each its own netns, attached one after the other, then detached; then 8 at a time.
rt_pods() {
  local chain=$1 i env opts net_args seq_cmd par_cmd
  for ((i = 1; i <= RT_PODS; i++)); do ip netns add "$ns-p$i"; done
  env="NETCONFPATH=$tmp/rt-conf CNI_PATH=$farm"
  opts="--cache-dir $tmp/rt-cache --container-id pod"
  net_args="benchrt /run/netns/$ns-p"
  seq_cmd="for i in \$(seq $RT_PODS); do $env $farm/net ${opts}\$i add ${net_args}\$i >/dev/null || exit 1; done; \
for i in \$(seq $RT_PODS); do $env $farm/net ${opts}\$i del ${net_args}\$i >/dev/null || exit 1; done"
  MEDIAN_RUNS=$loop_runs MEDIAN_WARMUP=1 row "$RT_PODS pods attached, then detached, one at a time ($chain)" \
    $((2 * RT_PODS)) "$(rt_host_sh "$seq_cmd")"
  par_cmd="seq $RT_PODS | $env xargs -P 8 -I{} $farm/net ${opts}{} add ${net_args}{} >/dev/null && \
seq $RT_PODS | $env xargs -P 8 -I{} $farm/net ${opts}{} del ${net_args}{} >/dev/null"
  MEDIAN_RUNS=$loop_runs MEDIAN_WARMUP=1 row "$RT_PODS pods attached, then detached, 8 at a time ($chain)" \
    $((2 * RT_PODS)) "$(rt_host_sh "$par_cmd")"
}

section_runtime() {
  have_applet net || { note "runtime: no net applet in this build; skipped"; return 0; }
  rt_hostns=$ns-rthost
  rt_shm=/dev/shm/cni-bench-$$-cache
  rt_maps='[{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]'
  ! have_applet portmap || export CAP_ARGS="{\"portMappings\": $rt_maps}"
  trap 'rt_cleanup; cleanup' EXIT
  ip netns add "$rt_hostns"
  ip -n "$rt_hostns" link set lo up
  rt_conflist
  local chain
  chain=$(rt_plugins | rt_type | paste -sd '+' -)
  rt_overhead "$chain"
  rt_full_add "$chain"
  [ -n "${RT_NO_PODS:-}" ] || rt_pods "$chain"
  rt_cleanup
  trap cleanup EXIT
  unset CAP_ARGS
}
