//! Network namespaces: open one by path (checked to be a netns, with a missing path kept
//! apart as its own outcome so DEL can treat it as success), compare two, and run code inside
//! one through a guard that always switches back. Mirrors the reference's `pkg/ns`, minus its
//! goroutine/OS-thread hazards: a Rust thread stays the same OS thread.
//!
//! Only the calling thread switches (`setns(CLONE_NEWNET)` is per thread). Never spawn a thread
//! while switched: it would be born in the container's netns.

use nix::sched::{CloneFlags, setns};
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// `f_type` of nsfs, the filesystem behind `/proc/*/ns/*` and bind-mounted namespaces.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Why a netns could not be opened.
#[derive(Debug)]
pub enum NetnsError {
    /// Nothing at that path (the runtime already removed it): DEL treats this as success.
    Missing(PathBuf),
    /// The path exists but is not a network namespace.
    NotNetns(PathBuf),
    /// Any other failure (permissions, setns refused, ...).
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for NetnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetnsError::Missing(p) => write!(f, "netns {} does not exist", p.display()),
            NetnsError::NotNetns(p) => write!(f, "{} is not a network namespace", p.display()),
            NetnsError::Io(p, e) => write!(f, "netns {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for NetnsError {}

impl NetnsError {
    /// True when the namespace is simply gone.
    pub fn is_missing(&self) -> bool {
        matches!(self, NetnsError::Missing(_))
    }
}

/// An open network namespace. Holding the fd keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    path: PathBuf,
}

impl Netns {
    /// Opens the netns at `path` (`/run/netns/x`, `/proc/PID/ns/net`, ...).
    pub fn open(path: impl AsRef<Path>) -> Result<Netns, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NetnsError::Missing(path));
            }
            Err(e) => return Err(NetnsError::Io(path, e)),
        };
        let fs_type = nix::sys::statfs::fstatfs(&file)
            .map_err(|e| NetnsError::Io(path.clone(), e.into()))?
            .filesystem_type()
            .0 as i64;
        if fs_type != NSFS_MAGIC {
            return Err(NetnsError::NotNetns(path));
        }
        Ok(Netns {
            fd: file.into(),
            path,
        })
    }

    /// The netns of the calling thread (not of the process: after a switch they differ).
    pub fn current() -> Result<Netns, NetnsError> {
        Netns::open("/proc/thread-self/ns/net")
    }

    /// A brand-new, empty netns that no process lives in, held only by the returned fd (the
    /// reference's `ns.TempNetNS`, without the bind mount): the calling thread unshares into it
    /// and switches straight back, aborting if it cannot. When the fd is dropped the kernel
    /// destroys the namespace: physical devices still inside go back to the initial netns,
    /// virtual ones are deleted, so callers move what they put there out first.
    pub fn create_anonymous() -> Result<Netns, NetnsError> {
        let home = Netns::current()?;
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetnsError::Io(PathBuf::from("unshare(CLONE_NEWNET)"), e.into()))?;
        let _back = RestoreGuard(home);
        let fresh = Netns::current()?;
        Ok(Netns {
            path: PathBuf::from(format!("anonymous netns fd {}", fresh.fd.as_raw_fd())),
            ..fresh
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Identity of the namespace: (device, inode) of its nsfs file.
    pub fn id(&self) -> std::io::Result<(u64, u64)> {
        let st = nix::sys::stat::fstat(&self.fd)?;
        Ok((st.st_dev as u64, st.st_ino as u64))
    }

    /// True when `self` and `other` are the same namespace.
    pub fn same_as(&self, other: &Netns) -> bool {
        matches!((self.id(), other.id()), (Ok(a), Ok(b)) if a == b)
    }

    /// Runs `f` with the calling thread inside this netns, then switches back. If switching
    /// back fails the process aborts: it must never go on in the wrong namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let home = Netns::current()?;
        if home.same_as(self) {
            return Ok(f());
        }
        setns(&self.fd, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetnsError::Io(self.path.clone(), e.into()))?;
        let _back = RestoreGuard(home);
        Ok(f())
    }

    /// A new, empty netns that only this handle keeps alive: the calling thread unshares into
    /// it, opens it, and switches straight back (aborting if it cannot). Dropping the handle
    /// (and any netlink socket opened in it) destroys the netns and every link made there, so
    /// probes that create links never touch the caller's netns. Needs `CAP_SYS_ADMIN`.
    pub fn scratch() -> Result<Netns, NetnsError> {
        let home = Netns::current()?;
        let here = PathBuf::from("unshare(CLONE_NEWNET)");
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetnsError::Io(here.clone(), e.into()))?;
        let _back = RestoreGuard(home);
        let mut ns = Netns::current()?;
        ns.path = here;
        Ok(ns)
    }

    /// The raw fd, for `IFLA_NET_NS_FD` when moving a link here.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Switches the thread back to its home netns on drop, or aborts.
struct RestoreGuard(Netns);

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.0.fd, CloneFlags::CLONE_NEWNET) {
            eprintln!(
                "fatal: cannot return to netns {}: {e}",
                self.0.path.display()
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_its_own_outcome() {
        let e = Netns::open("/nonexistent/netns/x").unwrap_err();
        assert!(e.is_missing());
        assert!(e.to_string().contains("does not exist"));
    }

    #[test]
    fn regular_file_is_not_a_netns() {
        let e = Netns::open("/proc/self/status").unwrap_err();
        assert!(matches!(e, NetnsError::NotNetns(_)), "{e}");
    }

    #[test]
    fn anonymous_netns_is_new_and_the_thread_stays_home() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let before = Netns::current().unwrap();
        let temp = Netns::create_anonymous().unwrap();
        assert!(Netns::current().unwrap().same_as(&before));
        assert!(!temp.same_as(&before));
        let inside = temp.run(|| Netns::current().unwrap()).unwrap();
        assert!(inside.same_as(&temp));
    }

    #[test]
    fn current_is_same_as_itself_and_run_in_own_ns_is_direct() {
        let a = Netns::current().unwrap();
        let b = Netns::open("/proc/self/ns/net").unwrap();
        assert!(a.same_as(&b));
        assert_eq!(a.run(|| 5).unwrap(), 5);
    }

    #[test]
    fn scratch_is_a_new_netns_and_the_thread_stays_home() {
        if !nix::unistd::Uid::effective().is_root() {
            println!("skipped: scratch needs root");
            return;
        }
        let home = Netns::current().unwrap();
        let s = Netns::scratch().unwrap();
        assert!(!s.same_as(&home));
        assert!(Netns::current().unwrap().same_as(&home));
        assert!(s.run(|| Netns::current().unwrap().same_as(&s)).unwrap());
    }
}
