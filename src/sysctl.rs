//! sysctl reads and writes under `/proc/sys`, per netns. Mirrors the reference's
//! `pkg/utils/sysctl`: a key is `net.ipv4.ip_forward` (dots) or `net/ipv4/conf/eth0.100/rp_filter`
//! (slashes, so interface names with dots survive), like sysctl(8).
//!
//! `/proc/sys/net` shows the netns of the thread that opens the file, so [`read`]/[`write`]
//! act on the calling thread's netns and [`read_in`]/[`write_in`] switch the thread in and
//! back around the access.

use crate::netns::Netns;
use anyhow::{Context, bail};
use std::io::Write;
use std::path::PathBuf;

/// `/proc/sys/...` for a key, refusing anything that could leave `/proc/sys`.
pub fn path_of(key: &str) -> anyhow::Result<PathBuf> {
    if key.is_empty() || key.starts_with('/') || key.starts_with('.') || key.contains('\0') {
        bail!("invalid sysctl key {key:?}");
    }
    let sep = if key.contains('/') { '/' } else { '.' };
    let mut path = PathBuf::from("/proc/sys");
    for part in key.split(sep) {
        if part.is_empty() || part == "." || part == ".." {
            bail!("invalid sysctl key {key:?}");
        }
        path.push(part);
    }
    Ok(path)
}

/// Reads a sysctl in the calling thread's netns, without the trailing newline.
pub fn read(key: &str) -> anyhow::Result<String> {
    let path = path_of(key)?;
    let s = std::fs::read_to_string(&path)
        .with_context(|| format!("read sysctl {key} ({})", path.display()))?;
    Ok(s.trim_end_matches('\n').to_string())
}

/// Writes a sysctl in the calling thread's netns.
pub fn write(key: &str, value: &str) -> anyhow::Result<()> {
    let path = path_of(key)?;
    // No O_CREAT/O_TRUNC: a missing key must fail as missing, and procfs ignores truncation.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("write sysctl {key}={value} ({})", path.display()))?;
    f.write_all(value.as_bytes())
        .with_context(|| format!("write sysctl {key}={value}"))
}

/// Reads a sysctl inside `ns`.
pub fn read_in(ns: &Netns, key: &str) -> anyhow::Result<String> {
    ns.run(|| read(key))?
        .with_context(|| format!("in netns {}", ns.path().display()))
}

/// Writes a sysctl inside `ns`.
pub fn write_in(ns: &Netns, key: &str, value: &str) -> anyhow::Result<()> {
    ns.run(|| write(key, value))?
        .with_context(|| format!("in netns {}", ns.path().display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{another_netns, fresh_netns};

    #[test]
    fn keys_map_under_proc_sys() {
        assert_eq!(
            path_of("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path_of("net/ipv4/ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path_of("net/ipv4/conf/eth0.100/rp_filter").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
    }

    #[test]
    fn keys_cannot_escape() {
        for key in [
            "",
            "/etc/passwd",
            "net/../../etc/passwd",
            "net..ipv4",
            "net//x",
            "net/./x",
            ".hidden",
            "net.",
            "a\0b",
            "../x",
        ] {
            assert!(path_of(key).is_err(), "{key:?}");
        }
    }

    #[test]
    fn read_global_and_missing_keys() {
        assert_eq!(read("kernel.ostype").unwrap(), "Linux");
        let e = read("net.ipv4.no_such_key").unwrap_err();
        assert!(crate::netlink::is_not_found(&e), "{e:#}");
        assert!(e.to_string().contains("net.ipv4.no_such_key"));
    }

    #[test]
    fn write_in_one_netns_leaves_the_other_alone() {
        let Some(home) = fresh_netns("write_in_one_netns_leaves_the_other_alone") else {
            return;
        };
        let other = another_netns();
        let key = "net.ipv4.ip_default_ttl";
        let before = read(key).unwrap();
        assert_eq!(read_in(&other, key).unwrap(), before);
        write_in(&other, key, "77").unwrap();
        assert_eq!(read_in(&other, key).unwrap(), "77");
        assert_eq!(
            read(key).unwrap(),
            before,
            "the test's own netns is untouched"
        );
        write(key, "66").unwrap();
        assert_eq!(read_in(&home, key).unwrap(), "66");
        assert_eq!(read_in(&other, key).unwrap(), "77");
        assert!(write_in(&other, "net/ipv4/no_such_key", "1").is_err());
    }
}
