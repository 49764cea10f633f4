//! Helpers for the library's own privileged unit tests. A test moves *its own thread* into a
//! brand-new network namespace (`unshare(CLONE_NEWNET)` is per thread, and every test runs on
//! its own thread), so it never touches the machine's namespace and needs no cleanup: the
//! namespace dies with the thread and the fds. Also: self-removing temp dirs and `testdata/` paths.

use crate::netns::Netns;
use nix::sched::{CloneFlags, unshare};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

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

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes `cni-multi-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("cni-multi-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` (relative) with `text`, creating parent directories.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `testdata/<rel>` of this package.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// Checks `testdata/config/<applet>/`: every `ok-*` file must `parse`, every `bad-*` must fail
/// with code 7 and a message holding its `_expect` text; at least `min` (ok, bad) files.
pub fn check_config_testdata(
    applet: &str,
    min: (usize, usize),
    parse: impl Fn(&serde_json::Value) -> anyhow::Result<()>,
) {
    let mut seen = (0, 0);
    for entry in std::fs::read_dir(testdata(&format!("config/{applet}"))).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let parsed = parse(&v);
        if name.starts_with("ok-") {
            parsed.unwrap_or_else(|e| panic!("{name}: {e:#}"));
            seen.0 += 1;
        } else if name.starts_with("bad-") {
            let e = parsed.err().unwrap_or_else(|| panic!("{name} parsed"));
            let want = v["_expect"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} lacks _expect"));
            assert_eq!(crate::error::code_of(&e), 7, "{name}: {e:#}");
            assert!(
                format!("{e:#}").contains(want),
                "{name}: want {want:?} in {e:#}"
            );
            seen.1 += 1;
        }
    }
    assert!(
        seen.0 >= min.0 && seen.1 >= min.1,
        "too few testdata files: {seen:?}"
    );
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
