//! Helpers for the library's own privileged unit tests. A test moves *its own thread* into a
//! brand-new network namespace (`unshare(CLONE_NEWNET)` is per thread, and every test runs on
//! its own thread), so it never touches the machine's namespace and needs no cleanup: the
//! namespace dies with the thread and the fds.

use crate::netns::Netns;
use nix::sched::{CloneFlags, unshare};

/// Moves the calling test thread into a fresh, empty netns and returns it, or prints
/// `skipped: <why>` and returns `None` when that is not possible (not root).
pub fn fresh_netns(test: &str) -> Option<Netns> {
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: {test} needs root");
        return None;
    }
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    Some(Netns::current().expect("open the fresh netns"))
}

/// A second fresh netns (e.g. a "container") while the thread stays in the current one.
pub fn another_netns() -> Netns {
    let home = Netns::current().expect("current netns");
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let other = Netns::current().expect("open the new netns");
    nix::sched::setns(&home, CloneFlags::CLONE_NEWNET).expect("back to the test's netns");
    other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_netns_is_not_the_process_netns() {
        let Some(ns) = fresh_netns("fresh_netns_is_not_the_process_netns") else {
            return;
        };
        let process = Netns::open("/proc/self/ns/net").unwrap();
        assert!(!ns.same_as(&process));
        let other = another_netns();
        assert!(!other.same_as(&ns));
        assert!(Netns::current().unwrap().same_as(&ns));
    }
}
