//! The daemon's lease files: one JSON file per client id under the lease directory
//! (`/var/lib/cni/dhcp` by default), written atomically (temp file, fsync, rename), read back
//! at start so a restarted daemon keeps renewing what it held. The reference keeps leases in
//! memory only (FEATURES.md 6.12, plugins#767); the file name is a hash of the client id,
//! which may hold `/` and run to 254 bytes.

use super::Target;
use super::client::Lease;
use super::v6::Lease6;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One persisted lease: who it is for, and what the server granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The request that created it (client id inputs, netns, options).
    pub target: Target,
    /// The DHCPv4 lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// The DHCPv6 lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease6: Option<Lease6>,
}

/// The lease directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Uses (and creates, mode 0700) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("create lease directory {}", dir.display()))?;
        Ok(Store { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        let h = Sha256::digest(key.as_bytes());
        let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }

    /// Writes `rec` atomically.
    pub fn save(&self, rec: &Record) -> Result<()> {
        let path = self.path(&rec.target.key());
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(rec)?;
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("write lease file {}", tmp.display()))?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("rename lease file to {}", path.display()))?;
        Ok(())
    }

    /// Removes the lease under `key` ([`Target::key`]); a missing file is fine.
    pub fn remove(&self, key: &str) -> Result<()> {
        match std::fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("remove lease file")
            }
            _ => Ok(()),
        }
    }

    /// Every readable record; unreadable files are reported and skipped.
    pub fn load_all(&self) -> Vec<Record> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                // A write cut short by a crash or a signal: the old file (if any) is intact.
                let _ = std::fs::remove_file(&p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<Record>(&b)?))
            {
                Ok(r) => out.push(r),
                Err(e) => eprintln!("dhcp daemon: skipping lease file {}: {e:#}", p.display()),
            }
        }
        out
    }
}
