//! The result cache: `<cacheDir>/results/<network>-<containerID>-<ifname>`, in libcni's
//! `cniCacheV1` format byte for byte (Go's field order, base64 `config`, sorted map keys, Go's
//! HTML escaping), so libcni and we read each other's files (FEATURES.md 3.3).
//!
//! Beyond libcni (USER-ASKS row 4): files are written atomically (temp file in the same
//! directory, fdatasync, rename) so a power loss leaves the old file, the new one or none, never
//! an empty one; and reading reports an empty or corrupt file as an error the
//! caller can tolerate (DEL removes it and goes on, cni#1055).

use super::base64;
use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The `kind` of a current cache file.
pub const KIND_V1: &str = "cniCacheV1";

/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// One cache file (libcni's `cachedInfo`). Field order is the file's key order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// [`KIND_V1`] for a current file.
    #[serde(default, deserialize_with = "null_default")]
    pub kind: String,
    /// `CNI_CONTAINERID` of the attachment.
    #[serde(rename = "containerId", default, deserialize_with = "null_default")]
    pub container_id: String,
    /// The bytes of the network configuration used for ADD.
    #[serde(default, with = "config_base64")]
    pub config: Vec<u8>,
    /// `CNI_IFNAME` of the attachment.
    #[serde(rename = "ifName", default, deserialize_with = "null_default")]
    pub if_name: String,
    /// The network (list) name.
    #[serde(rename = "networkName", default, deserialize_with = "null_default")]
    pub network_name: String,
    /// `CNI_NETNS` of the attachment.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub netns: String,
    /// `CNI_ARGS` pairs.
    #[serde(
        rename = "cniArgs",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cni_args: Vec<(String, String)>,
    /// The capability args given at ADD.
    #[serde(
        rename = "capabilityArgs",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    /// The final ADD result, in the version the last plugin answered in.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Map::is_empty"
    )]
    pub result: Map<String, Value>,
}

/// Go decodes `null` into a field as "leave it at its zero value".
fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Go marshals `[]byte` as padded standard base64.
mod config_base64 {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            Some(s) => base64::decode(&s)
                .ok_or_else(|| serde::de::Error::custom("illegal base64 data in config")),
        }
    }
}

/// Writes JSON as Go's `json.Marshal` does: compact, and `<`, `>`, `&`, U+2028, U+2029 escaped.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

impl CacheEntry {
    /// Parses a cache file (any `kind`; the caller checks it).
    pub fn from_bytes(data: &[u8]) -> serde_json::Result<CacheEntry> {
        serde_json::from_slice(data)
    }

    /// The file's bytes, exactly as libcni writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
        self.serialize(&mut ser)
            .expect("a cache entry always serializes");
        out
    }
}

/// The cache directory (`<dir>/results/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCache {
    dir: PathBuf,
}

impl Default for ResultCache {
    fn default() -> Self {
        ResultCache::new(DEFAULT_CACHE_DIR)
    }
}

/// A file-name part: non-empty and unable to leave the results directory.
fn part_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && s != "." && s != ".."
}

impl ResultCache {
    /// A cache rooted at `dir` (libcni's cacheDir, default [`DEFAULT_CACHE_DIR`]).
    pub fn new(dir: impl Into<PathBuf>) -> ResultCache {
        ResultCache { dir: dir.into() }
    }

    /// `<dir>/results`.
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// `<dir>/results/<network>-<container_id>-<ifname>`; every part must be non-empty (and,
    /// beyond libcni, free of `/`, so a file name read from the cache cannot point elsewhere).
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> anyhow::Result<PathBuf> {
        if !(part_ok(network) && part_ok(container_id) && part_ok(ifname)) {
            bail!(
                "cache file path requires network name ({network:?}), container ID ({container_id:?}), and interface name ({ifname:?})"
            );
        }
        Ok(self
            .results_dir()
            .join(format!("{network}-{container_id}-{ifname}")))
    }

    /// Writes `entry` atomically at the path its names give (directory 0700, file 0600).
    pub fn write(&self, entry: &CacheEntry) -> anyhow::Result<()> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name)?;
        write_atomic(&path, &entry.to_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The cached entry (`GetNetworkListCachedConfig`): `None` when there is no readable file;
    /// an error when it does not parse or is not [`KIND_V1`].
    pub fn read_entry(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> anyhow::Result<Option<CacheEntry>> {
        let path = self.path(network, container_id, ifname)?;
        let Ok(data) = std::fs::read(&path) else {
            return Ok(None);
        };
        let entry = CacheEntry::from_bytes(&data)
            .with_context(|| format!("failed to unmarshal cached network {network:?} config"))?;
        if entry.kind != KIND_V1 {
            bail!(
                "read cached network {network:?} config has wrong kind: {}",
                entry.kind
            );
        }
        Ok(Some(entry))
    }

    /// The cached result JSON, as stored: from a [`KIND_V1`] file, or a legacy file holding only
    /// the result. `None` when there is no readable file or it holds no result; an error when
    /// the file is empty or corrupt.
    pub fn read_result(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> anyhow::Result<Option<Value>> {
        let path = self.path(network, container_id, ifname)?;
        let Ok(data) = std::fs::read(&path) else {
            return Ok(None);
        };
        if data.iter().all(u8::is_ascii_whitespace) {
            bail!("cached result {} is empty", path.display());
        }
        if let Ok(entry) = CacheEntry::from_bytes(&data)
            && entry.kind == KIND_V1
        {
            return Ok((!entry.result.is_empty()).then_some(Value::Object(entry.result)));
        }
        match serde_json::from_slice::<Value>(&data) {
            Ok(v @ Value::Object(_)) => Ok(Some(v)),
            Ok(_) => bail!("cached result {} is not a JSON object", path.display()),
            Err(e) => bail!("cached result {} is corrupt: {e}", path.display()),
        }
    }

    /// Removes the file; a missing one is success.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> anyhow::Result<()> {
        let path = self.path(network, container_id, ifname)?;
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            crate::orphans::sweep(&self.results_dir(), &temp_prefix(name), '-');
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Every cached attachment, sorted by file name (`GetCachedAttachments`); with a non-empty
    /// `container_id`, only that container's. Unreadable, non-[`KIND_V1`] files and files
    /// without interface or network name are skipped, as are our own temp files.
    pub fn attachments(&self, container_id: &str) -> std::io::Result<Vec<CacheEntry>> {
        let dir = self.results_dir();
        let mut names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        names.sort();
        let part = format!("-{container_id}-");
        let mut out = Vec::new();
        for name in names.iter().filter(|n| !n.starts_with('.')) {
            if !container_id.is_empty()
                && !name
                    .find(&part)
                    .is_some_and(|p| p > 0 && p + part.len() < name.len())
            {
                continue;
            }
            let Ok(data) = std::fs::read(dir.join(name)) else {
                continue;
            };
            let Ok(entry) = CacheEntry::from_bytes(&data) else {
                continue;
            };
            let wrong_container = !container_id.is_empty() && entry.container_id != container_id;
            if entry.kind != KIND_V1
                || wrong_container
                || entry.if_name.is_empty()
                || entry.network_name.is_empty()
            {
                continue;
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// The cached attachments of one network.
    pub fn cached_attachments(&self, network: &str) -> std::io::Result<Vec<CacheEntry>> {
        let mut all = self.attachments("")?;
        all.retain(|e| e.network_name == network);
        Ok(all)
    }
}

/// The temporary name's prefix for cache file `name`: `.<name>.tmp-` (then `<pid>-<n>`).
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// Temp file beside `path`, written, fdatasynced, renamed over `path`. The directory is not
/// fsynced: a rename lost to a power loss leaves no file, which every reader takes as "nothing
/// cached" (as DEL takes an empty file), and that second flush cost as much as the rest of a
/// runtime call on the benchmark machine (bench/runtime.sh).
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = path.parent().expect("a cache path has a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path
        .file_name()
        .expect("a cache path has a file name")
        .to_string_lossy();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix = temp_prefix(&name);
    crate::orphans::sweep(dir, &prefix, '-');
    let tmp = dir.join(format!("{prefix}{}-{n}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
