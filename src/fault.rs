//! Fault injection for the reliability tests (RELIABILITY.md): with `CNI_MULTI_FAULT_STEP=N` in
//! a plugin's environment, the process SIGKILLs itself at the N-th step of its work, counted
//! across every plugin that runs in this process (a whole chain under the runtime tool). A step
//! is a point between two side effects: each [`Rollback::push`](crate::rollback::Rollback::push)
//! and each IPAM reservation. That is exactly what a kubelet timeout, the OOM killer or a node
//! shutdown can do at any instant; the tests then run DEL and look for anything left.
//!
//! skel arms it (the only place that reads the environment); unset, a step costs one relaxed
//! atomic load. No runtime sets this variable.

use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that arms the fault: a step number from 1.
pub const VAR: &str = "CNI_MULTI_FAULT_STEP";

/// The step to die at; 0 = off.
static DIE_AT: AtomicU32 = AtomicU32::new(0);
/// Steps taken so far in this process.
static TAKEN: AtomicU32 = AtomicU32::new(0);

/// Arms the fault from the value of [`VAR`] (ignored when empty, 0 or not a number); the
/// first arming in a process wins, so nested in-process plugins keep one count.
pub fn arm(value: Option<&str>) {
    if let Some(n) = value.and_then(|v| v.trim().parse::<u32>().ok()) {
        let _ = DIE_AT.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// One step of work is done: dies here when it is the armed one.
pub fn step() {
    let at = DIE_AT.load(Ordering::Relaxed);
    if at == 0 {
        return;
    }
    if TAKEN.fetch_add(1, Ordering::Relaxed) + 1 == at {
        // SIGKILL, not exit(): no destructor, no rollback, no flush, as the real thing.
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}
