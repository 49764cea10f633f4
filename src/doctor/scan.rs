//! The file-system side of doctor: what is installed in `CNI_PATH` (our symlinks, foreign
//! binaries, broken links), the state directories' permissions, and the dhcp daemon's socket.

use super::{Check, Status};
use crate::dispatch::SELF_NAME;
use serde::Serialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What an entry of `CNI_PATH` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstalledKind {
    /// `cni-multi` itself, or a link to it named after one of its applets.
    Ours,
    /// A link to `cni-multi` under a name it has no applet for.
    OursUnknown,
    /// Some other executable.
    Foreign,
    /// A symlink whose target does not exist.
    Broken,
    /// A file without an execute bit.
    NotExecutable,
}

/// One entry of a plugin directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// The file name (the plugin type it answers to).
    pub name: String,
    /// The directory.
    pub dir: String,
    /// What it is.
    pub kind: InstalledKind,
    /// Where a symlink points.
    pub target: Option<String>,
}

/// Every entry of the directories of `cni_path`, in order, each directory sorted.
pub fn plugins(cni_path: &[PathBuf]) -> Vec<Installed> {
    let mut out = Vec::new();
    for dir in cni_path {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        out.extend(names.iter().filter_map(|p| classify(p)));
    }
    out
}

/// What `path` is, or `None` for a directory.
pub fn classify(path: &Path) -> Option<Installed> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let name = path.file_name()?.to_string_lossy().into_owned();
    let target = meta
        .file_type()
        .is_symlink()
        .then(|| std::fs::read_link(path).ok())
        .flatten()
        .map(|t| t.display().to_string());
    let kind = match std::fs::metadata(path) {
        Err(_) if target.is_some() => InstalledKind::Broken,
        Err(_) => return None,
        Ok(m) if m.is_dir() => return None,
        Ok(m) if m.permissions().mode() & 0o111 == 0 => InstalledKind::NotExecutable,
        Ok(_) => ours_or_foreign(path, &name),
    };
    Some(Installed {
        name,
        dir: path.parent()?.display().to_string(),
        kind,
        target,
    })
}

/// A file that resolves to a binary called `cni-multi` is ours.
fn ours_or_foreign(path: &Path, name: &str) -> InstalledKind {
    let resolved = std::fs::canonicalize(path).ok();
    let is_ours = resolved
        .as_ref()
        .and_then(|r| r.file_name())
        .is_some_and(|f| f == SELF_NAME);
    match is_ours {
        false => InstalledKind::Foreign,
        true if name == SELF_NAME || crate::applets::find(name).is_some() => InstalledKind::Ours,
        true => InstalledKind::OursUnknown,
    }
}

/// A state directory: present and writable, or absent with a writable parent to make it in.
pub fn state_dir(dir: &Path) -> Check {
    let id = format!("state:{}", dir.display());
    let writable = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Check::new(id, Status::Error, "exists but is not a directory"),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o7777;
            let owner = format!("mode {mode:04o}, owner {}:{}", m.uid(), m.gid());
            if !writable(dir) {
                Check::new(id, Status::Warn, format!("not writable by us ({owner})"))
            } else if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                Check::new(id, Status::Warn, format!("world-writable ({owner})"))
            } else {
                Check::new(id, Status::Ok, owner)
            }
        }
        Err(_) => {
            let parent = dir.ancestors().skip(1).find(|a| a.exists());
            match parent {
                Some(p) if writable(p) => Check::new(id, Status::Ok, "absent; made on first use"),
                Some(p) => Check::new(
                    id,
                    Status::Warn,
                    format!("absent, and {} is not writable by us", p.display()),
                ),
                None => Check::new(id, Status::Warn, "absent"),
            }
        }
    }
}

/// The dhcp daemon's socket: does a daemon accept connections on it?
pub fn dhcp_socket(path: &Path) -> Check {
    let id = super::Probe::DhcpDaemon.id();
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Check::new(
            id,
            Status::Ok,
            format!("daemon answers on {}", path.display()),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::new(
            id,
            Status::Missing,
            format!("no {}: start `dhcp daemon`", path.display()),
        ),
        Err(e) => Check::new(
            id,
            Status::Missing,
            format!("{}: {e} (daemon not running?)", path.display()),
        ),
    }
}
