#!/bin/bash
# The VM rig: runs e2e tests that need kernel features this machine's kernel may lack (dummy,
# 802.1Q, ipvlan, vrf, bonding, bridge VLAN filtering, a PCI NIC to hand over) inside a QEMU VM
# booting Debian's linux-image-amd64 kernel, and fails when they fail there.
#
#   tests/vm/run.sh [PREFIX...]     (default: the lines of tests/vm/suites)
#
# Each PREFIX selects the e2e tests whose names start with it (`vrf::` is the module vrf, not
# also `ipvrf::`); they run with --exact. `lib:PREFIX` selects the library's unit tests.
#
# How: cargo builds the test binaries as usual; QEMU (TCG: no nested KVM here) boots the
# kernel with a tiny initramfs (busybox + the modules of tests/vm/modules, built once per input
# into target/vm/ by initramfs.sh); the guest mounts this machine's root read-only over 9p
# under a tmpfs overlay, so the test binary, the tools it runs (ip, unshare, nsenter, bash, ...)
# and the repository are all at the same paths as here; it runs `e2e --test-threads=1 --exact
# TEST...` (tests/vm/guest.sh) and writes the output and exit status into a job folder shared
# over 9p (no parsing of a serial console that kernel messages may interleave). The VM has two e1000 PCI NICs on a QEMU hub of their own: frames never leave QEMU.
#
# A skip ("skipped: ...", exit 0) only where the VM cannot start (no QEMU, no kernel); under CI
# (CI set and not "false") that is a failure. A prefix that names no test is reported, not an
# error (the modules it names may not be merged yet). A test that skips inside the VM because
# the kernel lacks something is a failure: the VM is there so that nothing needs to.
#
# Environment: VM_KERNEL (a vmlinuz; default the newest /boot/vmlinuz-* with its modules),
# VM_TIMEOUT (seconds, default 1800), VM_MEM (MiB, default 1024), VM_SMP (default 1: TCG on a
# busy machine runs one vCPU best), VM_KEEP=1 (keep the job folder), CARGO, CARGO_TARGET_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cache=$target/vm
qemu=qemu-system-x86_64

say() { echo "vm: $*"; }
in_ci() { [[ -n ${CI:-} && $CI != false ]]; }
skip() {
    echo "skipped: $* (the VM suite, tests/vm)"
    if in_ci; then
        echo "vm: CI: the VM suite must run; install qemu-system-x86 and linux-image-amd64" >&2
        exit 1
    fi
    exit 0
}

# The kernel to boot: VM_KERNEL, or the newest /boot/vmlinuz-* whose modules are installed.
find_kernel() {
    local k
    if [[ -n ${VM_KERNEL:-} ]]; then
        echo "$VM_KERNEL"
        return
    fi
    for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -rV); do
        if [[ -f /lib/modules/${k#/boot/vmlinuz-}/modules.dep ]]; then
            echo "$k"
            return
        fi
    done
}

# The test binaries, built by cargo: the e2e one (with the cni-multi binary it runs) and the
# library's unit tests; prints "e2e PATH" and "lib PATH".
build_tests() {
    local json
    json=$("${CARGO:-cargo}" test --manifest-path "$repo/Cargo.toml" --lib --test e2e --no-run \
        --message-format=json-render-diagnostics)
    grep '"kind":\["test"\]' <<<"$json" | grep '"name":"e2e"' |
        sed -n 's/.*"executable":"\([^"]*\)".*/e2e \1/p' | tail -1
    grep '"kind":\["lib"\]' <<<"$json" | grep '"test":true' |
        sed -n 's/.*"executable":"\([^"]*\)".*/lib \1/p' | tail -1
}

# The prefixes: the arguments, or the lines of tests/vm/suites (comments and blanks skipped).
read_filters() {
    if (($# > 0)); then
        printf '%s\n' "$@"
    else
        sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$here/suites"
    fi
}

# The kernel as an uncompressed ELF, booted through its PVH entry point (CONFIG_PVH), so that
# TCG does not decompress it at every boot (seconds); the bzImage itself when that is not
# possible (no PVH, no xz, another compression).
boot_image() {
    local vmlinuz=$1 kver=$2 key out off
    key=$(sha256sum "$vmlinuz" | cut -c1-16)
    out=$cache/vmlinux-$key
    if [[ ! -s $out ]] && grep -qx 'CONFIG_PVH=y' "/boot/config-$kver" 2>/dev/null &&
        off=$(grep -abo $'\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1) && [[ -n $off ]]; then
        tail -c +$((off + 1)) "$vmlinuz" | xz -dc --single-stream >"$out.$$.tmp" 2>/dev/null || true
        [[ $(head -c 4 "$out.$$.tmp") == $'\x7fELF' ]] && mv "$out.$$.tmp" "$out"
        rm -f "$out.$$.tmp"
    fi
    if [[ -s $out ]]; then echo "$out"; else echo "$vmlinuz"; fi
}

# The initramfs for kernel version $1, rebuilt only when one of its inputs changed.
initramfs() {
    local kver=$1 key out
    key=$({
        echo "$kver"
        cat "$here/init" "$here/initramfs.sh" "$here/modules"
        sha256sum /bin/busybox "/lib/modules/$kver/modules.dep"
    } | sha256sum | cut -c1-16)
    out=$cache/initramfs-$kver-$key.cpio
    [[ -s $out ]] || "$here/initramfs.sh" "$kver" "$out"
    echo "$out"
}

# Adds a run to the job: binary $2 on the tests named by the prefixes $3... (those of a
# suites line `lib:PREFIX` for the library's unit tests, which also get --nocapture so their
# "skipped: ..." lines show); guest.sh runs each job/run-N.* in turn.
add_run() {
    local job=$1 bin=$2 kind=$3 filter t n all=() tests=() runs
    shift 3
    mapfile -t all < <("$bin" --list 2>/dev/null | sed -n 's/: test$//p')
    for filter in "$@"; do
        n=0
        for t in "${all[@]}"; do
            [[ $t == "$filter"* ]] && tests+=("$t") && n=$((n + 1))
        done
        if ((n == 0)); then
            say "WARNING: $kind '$filter' names no test (not merged yet?); nothing of it runs"
        else
            say "$kind '$filter': $n tests"
        fi
    done
    ((${#tests[@]} > 0)) || return 0
    runs=$(find "$job" -name 'run-*.bin' | wc -l)
    echo "$bin" >"$job/run-$runs.bin"
    printf '%s\n' "${tests[@]}" >"$job/run-$runs.tests"
    [[ $kind == e2e ]] || echo --nocapture >"$job/run-$runs.args"
}

# Writes job.env (what guest.sh needs besides the runs) and guest.sh itself.
write_job() {
    local job=$1
    printf 'VM_REPO=%q\nVM_CI=%q\n' "$repo" "${CI:-}" >"$job/job.env"
    cp "$here/guest.sh" "$job/guest.sh"
}

# Boots the VM; console lines are shown prefixed `vm| `; records when the tests started.
boot() {
    local image=$1 initrd=$2 job=$3 t0 line
    t0=$(date +%s.%N)
    timeout -k 10 "${VM_TIMEOUT:-1800}" "$qemu" -accel tcg -cpu max -m "${VM_MEM:-1024}" \
        -smp "${VM_SMP:-1}" -nodefaults -no-user-config -display none -no-reboot \
        -serial stdio -kernel "$image" -initrd "$initrd" \
        -append "console=ttyS0 quiet panic=-1" \
        -fsdev local,id=hostfs,path=/,security_model=none,readonly=on,multidevs=remap \
        -device virtio-9p-pci,fsdev=hostfs,mount_tag=host \
        -fsdev "local,id=jobfs,path=$job,security_model=none" \
        -device virtio-9p-pci,fsdev=jobfs,mount_tag=job \
        -netdev hubport,id=n0,hubid=0 -device e1000,netdev=n0,mac=52:54:00:c0:ff:01,addr=04 \
        -netdev hubport,id=n1,hubid=0 -device e1000,netdev=n1,mac=52:54:00:c0:ff:02,addr=05 \
        </dev/null 2>&1 |
        while IFS= read -r line; do
            line=${line%$'\r'}
            [[ $line == *"is not connected to host network"* ]] && continue # by design
            if [[ $line == "vm-guest: up after"* && ! -e $job/booted ]]; then
                date +%s.%N >"$job/booted"
            fi
            echo "vm| $line"
        done
    echo "$t0" >"$job/started"
    date +%s.%N >"$job/ended"
}

# Prints the outcome; returns non-zero when the VM's tests failed or did not run.
report() {
    local job=$1 started booted ended rc ok=0
    started=$(cat "$job/started")
    ended=$(cat "$job/ended")
    booted=$(cat "$job/booted" 2>/dev/null || echo "$ended")
    awk -v s="$started" -v b="$booted" -v e="$ended" 'BEGIN {
        printf "vm: boot %.1f s (QEMU start to the tests), tests %.1f s (to power-off)\n", b - s, e - b }'
    if [[ ! -s $job/rc ]]; then
        say "FAILED: the VM ended without a test result (see the vm| lines above)"
        return 1
    fi
    rc=$(cat "$job/rc")
    grep -E '^test result:' "$job/out.log" | sed 's/^/vm: /' || true
    if grep -q 'skipped: kernel lacks' "$job/out.log"; then
        say "FAILED: inside the VM these skipped (add their modules to tests/vm/modules):"
        grep -o 'skipped: kernel lacks.*' "$job/out.log" | sed 's/^/vm:   /'
        ok=1
    fi
    if [[ $rc != 0 ]]; then
        say "FAILED: the tests exited $rc inside the VM; failures:"
        # Each run's second "failures:" block lists the names, one per line.
        awk '/^failures:$/ { inside = 1; next }
             inside && /^    [^ ]+$/ { print "vm: " $0; next }
             { inside = 0 }' "$job/out.log" | sort -u
        ok=1
    fi
    return $ok
}

main() {
    command -v "$qemu" >/dev/null || skip "no $qemu (Debian: qemu-system-x86)"
    local vmlinuz kver filter kind path image initrd filters
    vmlinuz=$(find_kernel)
    [[ -n $vmlinuz && -r $vmlinuz ]] || skip "no kernel with modules in /boot (Debian: linux-image-amd64)"
    kver=${vmlinuz##*/vmlinuz-}
    [[ -f /lib/modules/$kver/modules.dep ]] || skip "no /lib/modules/$kver for $vmlinuz"
    [[ -x /bin/busybox ]] || skip "no /bin/busybox for the initramfs (Debian: busybox-static)"
    mkdir -p "$cache"
    local -A bin=()
    while read -r kind path; do bin[$kind]=$path; done < <(build_tests)
    [[ -x ${bin[e2e]:-} && -x ${bin[lib]:-} ]] || { say "cargo built no test binaries" >&2; exit 1; }
    mapfile -t filters < <(read_filters "$@")
    local e2e_filters=() lib_filters=()
    for filter in "${filters[@]}"; do
        if [[ $filter == lib:* ]]; then lib_filters+=("${filter#lib:}"); else e2e_filters+=("$filter"); fi
    done
    job=$(mktemp -d "${TMPDIR:-/tmp}/cni-vm-XXXXXX") # global: the EXIT trap reads it
    [[ -n ${VM_KEEP:-} ]] || trap 'rm -rf "$job"' EXIT
    add_run "$job" "${bin[e2e]}" e2e "${e2e_filters[@]}"
    add_run "$job" "${bin[lib]}" lib "${lib_filters[@]}"
    [[ -e $job/run-0.bin ]] || { say "no test to run in the VM" >&2; exit 1; }
    write_job "$job"
    image=$(boot_image "$vmlinuz" "$kver")
    initrd=$(initramfs "$kver")
    say "booting $kver ($image) under TCG; job folder $job"
    boot "$image" "$initrd" "$job"
    report "$job"
}

main "$@"
