#!/bin/bash
# Stage 2 of the VM rig's guest: PID 1 on the overlay root (see tests/vm/init). Mounts the API
# filesystems, runs the e2e test binary on the job's tests (one test at a time) and writes
# its exit status next to its output in the job folder, then powers the VM off.
# /vm-job (shared with the host by tests/vm/run.sh) holds this script and job.env; it receives
# out.log (the tests' output, also echoed on the console) and rc.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
job=/vm-job
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
hostname cni-vm
ip link set lo up
# shellcheck source=/dev/null
. "$job/job.env"
echo "vm-guest: up after $(cut -d' ' -f1 /proc/uptime)s; running ${#VM_TESTS[@]} e2e tests"
cd "$VM_REPO" || exit 1
set -o pipefail
# CNI_E2E_VM tells the rig's self-test (tests/e2e/vm_rig.rs) that it runs in here.
env CI="$VM_CI" CNI_E2E_VM=1 RUST_BACKTRACE=1 \
    "$VM_E2E" --test-threads=1 --exact "${VM_TESTS[@]}" 2>&1 | tee "$job/out.log"
rc=$?
echo "$rc" >"$job/rc"
echo "vm-guest: e2e exited $rc at $(cut -d' ' -f1 /proc/uptime)s of uptime"
sync
# The reboot(2) call itself, from busybox (static, on the host's root): nothing is left to stop.
exec /bin/busybox poweroff -f
