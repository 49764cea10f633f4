#!/bin/bash
# Builds the VM rig's initramfs for kernel version KVER into OUT (an uncompressed newc cpio):
# busybox (static) as the shell of stage 1 (tests/vm/init); the modules that stage needs to reach
# the host's files (virtio PCI, 9p over virtio, overlayfs) and those listed in tests/vm/modules,
# each after its dependencies from modules.dep, in load order (/modules.order: NAME [PARAMS]).
# Everything else (tools, libraries, other modules) the guest reads from the host's root over
# 9p, so this image stays small (a few MB) and holds nothing that could go stale.
# Usage: initramfs.sh KVER OUT
set -euo pipefail
kver=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
mods=/lib/modules/$kver
busybox=${VM_BUSYBOX:-/bin/busybox}
wanted=(virtio_pci 9pnet_virtio 9p overlay)
declare -A params=()
while read -r name rest; do
    [[ -z $name || $name == \#* ]] && continue
    wanted+=("$name")
    params[${name//-/_}]=$rest
done <"$here/modules"

declare -A path_of=() seen=()
order=()
while IFS=: read -r ko _; do
    name=${ko##*/}
    name=${name%.ko*}
    path_of[${name//-/_}]=$ko
done <"$mods/modules.dep"

# Appends NAME's dependencies (deepest first), then NAME, to `order`.
resolve() {
    local name=${1//-/_} deps dep i
    [[ -n ${seen[$name]:-} ]] && return
    seen[$name]=1
    local ko=${path_of[$name]:-}
    if [[ -z $ko ]]; then
        grep -q "/$1.ko" "$mods/modules.builtin" && return # built into this kernel
        echo "initramfs.sh: no module $1 for kernel $kver" >&2
        exit 1
    fi
    read -r -a deps <<<"$(grep "^$ko:" "$mods/modules.dep" | cut -d: -f2)"
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
        dep=${deps[i]##*/}
        resolve "${dep%.ko*}"
    done
    order+=("$name")
}
for m in "${wanted[@]}"; do resolve "$m"; done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod 0755 "$root/init"
# Stored uncompressed: busybox's insmod may not read .ko.xz/.ko.zst (newer Debian kernels).
for m in "${order[@]}"; do
    src=$mods/${path_of[$m]}
    case $src in
    *.ko.xz) xz -dc "$src" ;;
    *.ko.zst) zstd -qdc "$src" ;;
    *.ko.gz) gzip -dc "$src" ;;
    *) cat "$src" ;;
    esac >"$root/modules/$m.ko"
done
for m in "${order[@]}"; do echo "$m ${params[$m]:-}"; done >"$root/modules.order"
(cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) >"$out.$$.tmp"
mv "$out.$$.tmp" "$out"
