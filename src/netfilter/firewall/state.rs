//! What an attachment's firewall ADD gave it, kept so that DEL and GC work without
//! `prevResult`: one JSON file per attachment, `<dataDir>/<network>/<containerID>_<ifname>.json`,
//! holding the container ID, interface, host addresses and the backends that made rules for
//! it (each ADD adds to both lists, so a network switched from one backend to another is torn
//! down in both). Written (temp file + rename) before any rule is made, removed by DEL. The reference keeps nothing: its DEL without
//! `prevResult` removes nothing.

use super::Owner;
use crate::types::Attachment;
use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Where the files live unless `dataDir` says otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/cni/firewall";

/// One attachment's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The host prefixes the rules were made for.
    pub ips: Vec<IpNet>,
    /// The backends used (`iptables`, `nftables`, `firewalld`).
    #[serde(default)]
    pub backends: Vec<String>,
}

fn net_dir(dir: &Path, network: &str) -> PathBuf {
    dir.join(network)
}

fn file(dir: &Path, o: &Owner<'_>) -> PathBuf {
    net_dir(dir, o.network).join(format!("{}_{}.json", o.container_id, o.ifname))
}

/// Records that `backend` made rules of `o` for `ips`, on top of what was recorded before.
pub fn save(dir: &Path, o: &Owner<'_>, ips: &[IpNet], backend: &str) -> Result<()> {
    let path = file(dir, o);
    let parent = net_dir(dir, o.network);
    std::fs::create_dir_all(&parent).with_context(|| format!("create {}", parent.display()))?;
    let mut rec = load(dir, o).unwrap_or(Record {
        container_id: o.container_id.into(),
        ifname: o.ifname.into(),
        ips: Vec::new(),
        backends: Vec::new(),
    });
    rec.ips.extend(ips);
    rec.ips.sort();
    rec.ips.dedup();
    if !rec.backends.iter().any(|b| b == backend) {
        rec.backends.push(backend.into());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&rec)?)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))
}

/// The record of `o`; `None` when there is no (readable) record.
pub fn load(dir: &Path, o: &Owner<'_>) -> Option<Record> {
    std::fs::read(file(dir, o))
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
}

/// Forgets `o`; no record is success.
pub fn remove(dir: &Path, o: &Owner<'_>) -> Result<()> {
    let path = file(dir, o);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The records of `network` whose attachment is not in `valid` (unreadable files skipped).
pub fn stale(dir: &Path, network: &str, valid: &[Attachment]) -> Result<Vec<Record>> {
    let entries = match std::fs::read_dir(net_dir(dir, network)) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.with_context(|| format!("list {}", net_dir(dir, network).display()))?,
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(rec) = std::fs::read(entry.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        else {
            continue;
        };
        let live = valid
            .iter()
            .any(|a| a.container_id == rec.container_id && a.ifname == rec.ifname);
        if !live {
            out.push(rec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn save_load_stale_remove() {
        let dir = TempDir::new("fw-state");
        let o = Owner {
            network: "net",
            container_id: "c1",
            ifname: "eth0",
        };
        let ips: Vec<IpNet> = vec!["10.0.0.2/32".parse().unwrap()];
        assert!(load(dir.path(), &o).is_none());
        save(dir.path(), &o, &ips, "iptables").unwrap();
        let more: IpNet = "10.0.0.3/32".parse().unwrap();
        save(dir.path(), &o, &[more], "nftables").unwrap();
        save(dir.path(), &o, &[more], "nftables").unwrap();
        let rec = load(dir.path(), &o).unwrap();
        assert_eq!(rec.ips, [ips[0], more], "each ADD adds");
        assert_eq!(rec.backends, ["iptables", "nftables"]);
        let valid = [Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }];
        assert!(stale(dir.path(), "net", &valid).unwrap().is_empty());
        let gone = stale(dir.path(), "net", &[]).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].ips, [ips[0], more]);
        assert!(stale(dir.path(), "other", &[]).unwrap().is_empty());
        remove(dir.path(), &o).unwrap();
        remove(dir.path(), &o).unwrap();
        assert!(load(dir.path(), &o).is_none());
    }
}
