//! The on-disk reservation store, byte-compatible with the reference's `backend/disk`
//! (FEATURES.md 6.10, 7.3): `<dataDir>/<network>/<ip>` holding `<containerID>\r\n<ifname>`,
//! `last_reserved_ip.<set>` holding the address text, and an empty `lock` file locked with
//! flock, so that this store and the Go plugin exclude each other.
//!
//! Differences that keep the same final content: an address file is written as an unnamed
//! `O_TMPFILE` inode and linked into place (atomic and exclusive, where the reference writes
//! after an `O_EXCL` create, and a writer killed at any instant leaves no file), and `last_reserved_ip.<set>` is overwritten in place (see
//! [`write_in_place`]). Only files named by a valid address are ever read as reservations. As
//! in the reference, nothing is fsynced: the containers holding the addresses do not outlive a
//! host crash either, and two fdatasyncs per ADD tripled its time. A torn
//! `last_reserved_ip.<set>` after a crash only moves where the next search starts.

use super::store::{Reservation, Store};
use crate::error::{CniError, code};
use crate::types::netconf::validate_network_name;
use anyhow::Context;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The reference's default `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

const LAST_IP_PREFIX: &str = "last_reserved_ip.";
const LOCK_FILE: &str = "lock";
const TEMP_PREFIX: &str = ".tmp.";

/// One network's directory of reservations.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    lock: Option<File>,
}

impl DiskStore {
    /// Opens the store of `network` under `data_dir`, creating the directory (mode 0755).
    /// The network name must pass [`validate_network_name`], so it cannot leave `data_dir`.
    pub fn open(data_dir: &Path, network: &str) -> anyhow::Result<DiskStore> {
        let dir = network_dir(data_dir, network)?;
        refuse_symlink(data_dir)?;
        refuse_symlink(&dir)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .with_context(|| format!("create {}", dir.display()))?;
        Ok(DiskStore { dir, lock: None })
    }

    /// Opens the store only if its directory exists: `None` means nothing was ever
    /// reserved (DEL, GC, CHECK and STATUS create nothing).
    pub fn open_existing(data_dir: &Path, network: &str) -> anyhow::Result<Option<DiskStore>> {
        let dir = network_dir(data_dir, network)?;
        refuse_symlink(data_dir)?;
        refuse_symlink(&dir)?;
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(Some(DiskStore { dir, lock: None })),
            Ok(_) => anyhow::bail!("{} is not a directory", dir.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("stat {}", dir.display())),
        }
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    fn last_path(&self, set: usize) -> PathBuf {
        self.dir.join(format!("{LAST_IP_PREFIX}{set}"))
    }

    /// Creates `target` holding `content`, atomically and only if it does not exist yet:
    /// `Ok(false)` when it does. The file is written as an unnamed `O_TMPFILE` inode and then
    /// linked into place, so a writer killed at any instant leaves nothing behind. Where the
    /// file system has no `O_TMPFILE` (or `/proc` is not mounted), a named temporary file
    /// `.tmp.<pid>.<n>` is linked instead; one left by a killed writer is swept by [`Store::list`].
    fn create_exclusive(&self, target: &Path, content: &str) -> anyhow::Result<bool> {
        let linked = match self.write_unnamed(content) {
            Ok(f) => link_unnamed(&f, target),
            Err(e) if tmpfile_unsupported(&e) => Err(e),
            Err(e) => return Err(e).with_context(|| format!("write into {}", self.dir.display())),
        };
        let linked = match linked {
            Err(e) if tmpfile_unsupported(&e) => {
                let tmp = self.write_temp(content)?;
                let r = fs::hard_link(&tmp, target);
                let _ = fs::remove_file(&tmp);
                r
            }
            other => other,
        };
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).with_context(|| format!("create {}", target.display())),
        }
    }

    /// An unnamed file in the directory (mode 0600) holding `content`.
    fn write_unnamed(&self, content: &str) -> std::io::Result<File> {
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(&self.dir)?;
        f.write_all(content.as_bytes())?;
        Ok(f)
    }

    /// Writes `content` to a new named temporary file in the directory (mode 0600).
    fn write_temp(&self, content: &str) -> anyhow::Result<PathBuf> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{TEMP_PREFIX}{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        if let Err(e) = f.write_all(content.as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(e).with_context(|| format!("write {}", path.display()));
        }
        Ok(path)
    }
}

/// Links an `O_TMPFILE` inode at `target` through its `/proc/self/fd` entry (the form of
/// linkat(2) that needs no CAP_DAC_READ_SEARCH); fails with `AlreadyExists` when `target` exists.
fn link_unnamed(f: &File, target: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    let to = std::ffi::CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    // Without /proc the fd path does not exist: take the named-file way.
    if e.kind() == ErrorKind::NotFound && fs::metadata("/proc/self/fd").is_err() {
        return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    Err(e)
}

/// The errors of a file system (or kernel) without `O_TMPFILE`: open(2) says EOPNOTSUPP, or
/// EISDIR on kernels that predate the flag.
fn tmpfile_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
    )
}

/// Overwrites `path` with `text` without truncating it first: ext4 starts writeback when a file
/// with data is truncated to zero or renamed over (`auto_da_alloc`), which cost 150-300 us per
/// ADD. Readers hold the store's lock, so they never see the file half written.
fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    f.write_all_at(text.as_bytes(), 0)?;
    f.set_len(text.len() as u64)
}

/// A `dataDir` or network directory that is itself a symbolic link would send reservations
/// somewhere the configuration does not name (and where another network's files may be):
/// refused with code 7. Links further up the path (say, `/var/lib` on another disk) are fine.
fn refuse_symlink(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "{} is a symbolic link; name the directory it points to instead",
                path.display()
            ),
        )
        .into()),
        _ => Ok(()),
    }
}

/// `<data_dir>/<network>` after checking the name.
fn network_dir(data_dir: &Path, network: &str) -> anyhow::Result<PathBuf> {
    validate_network_name(network)?;
    Ok(data_dir.join(network))
}

/// Container IDs and interface names are written into files and compared as text; refuse
/// values that would break the `<id>\r\n<ifname>` format or look like path components.
fn check_owner(id: &str, ifname: &str) -> anyhow::Result<()> {
    for (what, v) in [("container ID", id), ("interface name", ifname)] {
        if v.trim().is_empty() || v == "." || v == ".." || v.contains(['/', '\r', '\n', '\0']) {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("invalid {what} {v:?} for the IPAM store"),
            )
            .into());
        }
    }
    Ok(())
}

impl Store for DiskStore {
    fn lock(&mut self) -> anyhow::Result<()> {
        if self.lock.is_none() {
            let path = self.dir.join(LOCK_FILE);
            // As go-filemutex: O_CREAT|O_RDONLY, mode 0750; flock needs no write access.
            let f = OpenOptions::new()
                .read(true)
                .write(false)
                .create(false)
                .custom_flags(libc::O_CREAT)
                .mode(0o750)
                .open(&path)
                .with_context(|| format!("open {}", path.display()))?;
            self.lock = Some(f);
        }
        let f = self.lock.as_ref().expect("lock file opened above");
        f.lock()
            .with_context(|| format!("flock {}", self.dir.join(LOCK_FILE).display()))
    }

    fn unlock(&mut self) -> anyhow::Result<()> {
        match &self.lock {
            Some(f) => f.unlock().context("unlock the IPAM store"),
            None => Ok(()),
        }
    }

    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, set: usize) -> anyhow::Result<bool> {
        check_owner(id, ifname)?;
        let ip = ip.to_canonical();
        let target = self.ip_path(ip);
        if !self.create_exclusive(&target, &Reservation::content(id, ifname))? {
            return Ok(false);
        }
        crate::fault::step();
        let last = self.last_path(set);
        if let Err(e) = write_in_place(&last, &ip.to_string()) {
            let _ = fs::remove_file(&target);
            return Err(e).with_context(|| format!("write {}", last.display()));
        }
        Ok(true)
    }

    fn last_reserved_ip(&self, set: usize) -> Option<IpAddr> {
        let text = fs::read_to_string(self.last_path(set)).ok()?;
        text.trim()
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical())
    }

    fn release(&mut self, ip: IpAddr) -> anyhow::Result<bool> {
        let path = self.ip_path(ip.to_canonical());
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("remove {}", path.display())),
        }
    }

    fn list(&self) -> anyhow::Result<Vec<Reservation>> {
        let rd = fs::read_dir(&self.dir).with_context(|| format!("read {}", self.dir.display()))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.with_context(|| format!("read {}", self.dir.display()))?;
            // `lock`, `last_reserved_ip.*`, temporary and foreign files are not addresses; a
            // temporary file of a writer killed between write and link is removed.
            let name = entry.file_name();
            let name = name.to_str().unwrap_or_default();
            if crate::orphans::is_orphan(name, TEMP_PREFIX, '.') {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(ip) = name.parse::<IpAddr>().ok() else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match fs::read_to_string(entry.path()) {
                Ok(content) => out.push(Reservation::parse(ip, &content)),
                // Released by someone else between readdir and read.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("read {}", entry.path().display()));
                }
            }
        }
        out.sort_by_key(|r| r.ip);
        Ok(out)
    }
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
