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
# list it in SECTIONS below. Environment: BENCH_RUNS (default 200), REF_CNI_PATH (/usr/lib/cni),
# BENCH_TIMER=loop (skip hyperfine).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
runs=${BENCH_RUNS:-200}
ref=${REF_CNI_PATH:-/usr/lib/cni}
ns=bench-$$
hostns=benchhost-$$
tmp=
SECTIONS=(section_version section_loopback section_bridge)

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

cleanup() {
  ip netns delete "$ns" 2>/dev/null || true
  ip netns delete "$hostns" 2>/dev/null || true
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

# Median wall time of shell command $1 in microseconds; $2, if given, runs (untimed) before
# each run, e.g. a DEL before each timed ADD.
median_us() {
  local prepare=${2:-true}
  if use_hyperfine; then
    # hyperfine discards the command's output; on failure, run it once more to show it.
    if ! hyperfine --style none --warmup 10 --runs "$runs" --prepare "$prepare" \
      --export-json "$tmp/h.json" -- "$1" >/dev/null 2>&1; then
      sh -c "$prepare; $1" >&2 || true
      die "benchmark failed: $1"
    fi
    sed -n 's/^ *"median": *\([0-9.eE+-]*\),*$/\1/p' "$tmp/h.json" | head -n 1 | awk '{ printf "%d\n", $1 * 1e6 }'
  else
    local i t0 t1
    for ((i = 0; i < runs; i++)); do
      eval "$prepare" >/dev/null 2>&1 || die "benchmark preparation failed: $prepare"
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
# row LABEL EXECS OURS_CMD [REF_CMD]: EXECS is how many execs one run makes (for the floor).
row() {
  local o r=""
  o=$(median_us "$3")
  [ -z "${4:-}" ] || r=$(median_us "$4")
  add_row "$1" "$2" "$o" "$r"
}

# add_row LABEL EXECS OURS_US [REF_US]: one table row from measured medians.
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
