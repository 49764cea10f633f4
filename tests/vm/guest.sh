#!/bin/bash
# Stage 2 of the VM rig's guest: PID 1 on the overlay root (see tests/vm/init). Mounts the API
# filesystems, runs the job's test binaries on their tests (one test at a time) and writes the
# first failing exit status (or 0) next to their output in the job folder, then powers off.
# /vm-job (shared with the host by tests/vm/run.sh) holds this script, job.env and the runs;
# it receives out.log (the tests' output, also echoed on the console) and rc.
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
echo "vm-guest: up after $(cut -d' ' -f1 /proc/uptime)s; running the tests"
cd "$VM_REPO" || exit 1
rc=0
# Each run: a test binary (run-N.bin), the exact names of its tests (run-N.tests) and extra
# libtest flags (run-N.args). CNI_E2E_VM tells the rig's self-test (tests/e2e/vm_rig.rs)
# that it runs in here.
for bin in "$job"/run-*.bin; do
    run=${bin%.bin}
    mapfile -t tests <"$run.tests"
    extra=()
    [[ -e $run.args ]] && read -r -a extra <"$run.args"
    env CI="$VM_CI" CNI_E2E_VM=1 RUST_BACKTRACE=1 "$(cat "$bin")" --test-threads=1 --exact \
        "${extra[@]}" "${tests[@]}" 2>&1 | tee -a "$job/out.log"
    status=${PIPESTATUS[0]}
    ((rc == 0)) && rc=$status
done
echo "$rc" >"$job/rc"
echo "vm-guest: the tests exited $rc at $(cut -d' ' -f1 /proc/uptime)s of uptime"
sync
# The reboot(2) call itself, from busybox (static, on the host's root): nothing is left to stop.
exec /bin/busybox poweroff -f
