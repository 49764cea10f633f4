//! The lock that serialises our own iptables portmap changes on this machine. Each change
//! reads the `nat` table with `iptables-save`, plans on that snapshot and writes with one
//! `iptables-restore --noflush`; two of them interleaved act on stale snapshots, and a restore
//! that declares a shared chain its snapshot lacked flushes the rules the other just wrote.
//! The reference never snapshots (go-iptables runs `iptables -w` per rule and `EnsureChain`
//! only creates a missing chain), so it needs no lock. `-w` takes `/run/xtables.lock` per
//! restore only, hence a file of our own held across save, plan and restore.

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The lock file, shared by every portmap run on the machine whatever its netns.
pub const PATH: &str = "/run/cni/portmap-iptables.lock";

/// An exclusive hold on [`PATH`], released when dropped.
pub struct Held {
    _lock: Flock<File>,
}

/// Waits for and takes the exclusive lock, creating its directory (0700) and file (0600).
pub fn exclusive() -> Result<Held> {
    exclusive_at(Path::new(PATH))
}

/// [`exclusive`] on another file (tests).
pub fn exclusive_at(path: &Path) -> Result<Held> {
    if let Some(dir) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(Held { _lock: lock }),
            Err((back, Errno::EINTR)) => file = back,
            Err((_, e)) => return Err(e).with_context(|| format!("lock {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use nix::fcntl::FlockArg;

    #[test]
    fn second_holder_waits_for_the_first() {
        let dir = TempDir::new("portmap-lock");
        let path = dir.path().join("sub/lock");
        let held = exclusive_at(&path).unwrap();
        let other = File::open(&path).unwrap();
        let busy = Flock::lock(other, FlockArg::LockExclusiveNonblock);
        let other = match busy {
            Err((f, Errno::EWOULDBLOCK)) => f,
            r => panic!("lock taken twice: {:?}", r.map(|_| ()).map_err(|e| e.1)),
        };
        drop(held);
        assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_ok());
        let mode = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
            0
        );
    }
}
