#!/usr/bin/env bash
# bench/run.sh (`make bench`): cni-multi against the floor (exec of /bin/true) and against the
# reference plugins (/usr/lib/cni, Debian's containernetworking-plugins), in one run, on this
# machine, printed as a markdown table of medians and ratios, plus peak RSS and binary sizes.
# Uses hyperfine (installed with apt-get if missing; it subtracts the shell's own start-up) or,
# failing that, a loop timed with `date +%s%N`. Plugins run in a throwaway netns bench-<pid>,
# removed on exit with the temp CNI_PATH farm. Not part of `make test`.
#
# Sections are functions (section_version, section_loopback, ...); add one per applet family and
# list it in SECTIONS below. Environment: BENCH_RUNS (default 200), REF_CNI_PATH (/usr/lib/cni),
# BENCH_TIMER=loop (skip hyperfine).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
runs=${BENCH_RUNS:-200}
ref=${REF_CNI_PATH:-/usr/lib/cni}
ns=bench-$$
tmp=
SECTIONS=(section_version section_loopback section_portmap)

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

cleanup() {
  ip netns delete "$ns" 2>/dev/null || true
  ip netns delete "$ns-host" 2>/dev/null || true
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

# Median wall time of shell command $1 in microseconds.
median_us() {
  if use_hyperfine; then
    # hyperfine discards the command's output; on failure, run it once more to show it.
    if ! hyperfine --style none --warmup 10 --runs "$runs" --export-json "$tmp/h.json" -- "$1" >/dev/null 2>&1; then
      sh -c "$1" >&2 || true
      die "benchmark failed: $1"
    fi
    sed -n 's/^ *"median": *\([0-9.eE+-]*\),*$/\1/p' "$tmp/h.json" | head -n 1 | awk '{ printf "%d\n", $1 * 1e6 }'
  else
    local i t0 t1
    for ((i = 0; i < runs; i++)); do
      t0=$(date +%s%N)
      eval "$1" >/dev/null 2>&1 || die "benchmark failed: $1"
      t1=$(date +%s%N)
      echo $(((t1 - t0) / 1000))
    done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
  fi
}

ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

ROWS=()
# row LABEL EXECS OURS_CMD [REF_CMD]: EXECS is how many plugin execs one run makes (for the floor).
row() {
  local label=$1 execs=$2 ours=$3 theirs=${4:-} o r="" rs="–" rr="–"
  o=$(median_us "$ours")
  if [ -n "$theirs" ]; then
    r=$(median_us "$theirs")
    rs=$(ms "$r")
    rr=$(ratio "$o" "$r")
  fi
  ROWS+=("| $label | $(ms "$o") | $rs | $(ratio "$o" $((floor * execs))) | $rr |")
}

have_applet() { grep -qx "$1" "$tmp/applets"; }
have_ref() { [ -x "$ref/$1" ]; }

# A plugin call as a runtime makes it: clean environment, config on stdin.
call() { # call DIR PLUGIN VERB CONFIG
  printf 'env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=%s CNI_CONTAINERID=bench-%s CNI_NETNS=/run/netns/%s CNI_IFNAME=lo CNI_PATH=%s %s/%s <%s' \
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
  [ ${#NOTES[@]} -eq 0 ] || { printf '%s\n' "${NOTES[@]}"; echo; }
  echo "| peak RSS (KiB) | ours | reference |"
  echo "|---|---:|---:|"
  [ ${#RSS[@]} -eq 0 ] || printf '%s\n' "${RSS[@]}"
  echo
  ref_total=$(find "$ref" -maxdepth 1 -type f -perm -u+x -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
  ref_count=$(find "$ref" -maxdepth 1 -type f -perm -u+x 2>/dev/null | wc -l)
  echo "| binary size | bytes |"
  echo "|---|---:|"
  echo "| cni-multi (release, $(wc -l <"$tmp/applets") applets) | $(stat -c %s "$farm/cni-multi") |"
  echo "| reference: $ref_count binaries in $ref | $ref_total |"
}

main() {
  [ "$(id -u)" = 0 ] || die "needs root (plugins run in a throwaway network namespace)"
  trap cleanup EXIT
  tmp=$(mktemp -d /tmp/cni-bench.XXXXXX)
  ensure_tools
  timer="date +%s%N loop"
  use_hyperfine && timer="hyperfine $(hyperfine --version | cut -d' ' -f2) (shell start-up subtracted)"
  (cd "$top" && cargo build --release --quiet)
  farm=$tmp/bin
  "$top/install.sh" --prefix "$farm" --binary "$top/target/release/cni-multi" >/dev/null
  "$farm/cni-multi" --list >"$tmp/applets"
  # 1.0.0: the newest version Debian's reference plugins (v1.1.1) accept.
  echo '{"cniVersion": "1.0.0"}' >"$tmp/version.json"
  ip netns add "$ns"
  floor=$(median_us /bin/true)
  local s
  for s in "${SECTIONS[@]}"; do "$s"; done
  report
}

main "$@"
