//! Network configuration on the runtime side: parsing a configuration list (`.conflist`),
//! wrapping a deprecated single-plugin file (`.conf`/`.json`) into a list, and finding a
//! network by name in a directory. Mirrors libcni's `conf.go` (FEATURES.md 1.2, 3.1, 3.2),
//! error wording included. Plugin objects stay raw JSON so unknown keys reach the plugin
//! unchanged.

use crate::error::bad_config;
use crate::types::version::{CURRENT, Version};
use anyhow::Context;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// One plugin object of a list, kept as the raw JSON object it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    raw: Map<String, Value>,
}

/// A parsed configuration list (libcni's `NetworkConfigList`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// Network name.
    pub name: String,
    /// The effective spec version (the highest of `cniVersion` ∪ `cniVersions` not above ours).
    pub cni_version: String,
    /// Never run CHECK.
    pub disable_check: bool,
    /// Never run GC.
    pub disable_gc: bool,
    /// Do not append plugins from `<dir>/<name>/*.conf`.
    pub load_only_inlined_plugins: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConf>,
    /// The bytes the list was parsed from; they go into the result cache.
    pub bytes: Vec<u8>,
}

/// "Nothing to load" outcomes of [`load_network`], with libcni's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// Configuration files exist but none is named so (`NotFoundError`).
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The network asked for.
        name: String,
    },
    /// The directory holds no configuration file at all (`NoConfigsFoundError`).
    NoConfigsFound {
        /// The directory searched.
        dir: PathBuf,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotFound { dir, name } => write!(
                f,
                "no net configuration with name \"{name}\" in {}",
                dir.display()
            ),
            LoadError::NoConfigsFound { dir } => {
                write!(f, "no net configurations found in {}", dir.display())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// A JSON value's kind, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl PluginConf {
    /// Parses one plugin object (`NetworkPluginConfFromBytes`): a JSON object with a non-empty
    /// string `type`; `name`, `cniVersion` and `capabilities` must have their spec types.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<PluginConf> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| bad_config(format!("error parsing configuration: {e}")))?;
        PluginConf::from_value(v)
    }

    /// As [`PluginConf::from_bytes`], from parsed JSON.
    pub fn from_value(v: Value) -> anyhow::Result<PluginConf> {
        let bad = |what: String| bad_config(format!("error parsing configuration: {what}"));
        let Value::Object(raw) = v else {
            return Err(bad(format!("expected an object, got {}", kind(&v))));
        };
        for key in ["type", "name", "cniVersion"] {
            if let Some(x) = raw.get(key).filter(|x| !x.is_string() && !x.is_null()) {
                return Err(bad(format!("'{key}' must be a string, not {}", kind(x))));
            }
        }
        if let Some(caps) = raw.get("capabilities").filter(|c| !c.is_null()) {
            let ok = caps
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_boolean));
            if !ok {
                return Err(bad("'capabilities' must map names to booleans".into()));
            }
        }
        let conf = PluginConf { raw };
        if conf.plugin_type().is_empty() {
            return Err(bad("missing 'type'".into()));
        }
        Ok(conf)
    }

    fn str_key(&self, key: &str) -> &str {
        self.raw.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// The plugin `type` (the executable's name).
    pub fn plugin_type(&self) -> &str {
        self.str_key("type")
    }

    /// The plugin object's own `name` (usually absent inside a list).
    pub fn name(&self) -> &str {
        self.str_key("name")
    }

    /// The plugin object's own `cniVersion`.
    pub fn cni_version(&self) -> &str {
        self.str_key("cniVersion")
    }

    /// The capabilities this plugin enables (`true` entries of `capabilities`).
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.raw
            .get("capabilities")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
    }

    /// The raw JSON object.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// `type="x" name="n"` as libcni's error messages name a plugin (`name` only when set).
    pub fn describe(&self) -> String {
        let mut s = format!("type={:?}", self.plugin_type());
        if !self.name().is_empty() {
            s.push_str(&format!(" name={:?}", self.name()));
        }
        s
    }
}

impl NetworkConfigList {
    /// Parses a configuration list (`NetworkConfFromBytes`). `plugins` may be absent unless
    /// `loadOnlyInlinedPlugins` is true; when present it must be a non-empty array.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<NetworkConfigList> {
        let bad = |what: String| bad_config(format!("error parsing configuration list: {what}"));
        let raw: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let name = match raw.get("name") {
            None => return Err(bad("no name".into())),
            Some(Value::String(s)) => s.clone(),
            Some(v) => return Err(bad(format!("invalid name type {}", kind(v)))),
        };
        let cni_version = effective_version(&raw).map_err(bad)?;
        let read_bool = |key: &str| read_bool(&raw, key).map_err(bad);
        let mut list = NetworkConfigList {
            name,
            cni_version,
            disable_check: read_bool("disableCheck")?,
            disable_gc: read_bool("disableGC")?,
            load_only_inlined_plugins: read_bool("loadOnlyInlinedPlugins")?,
            plugins: Vec::new(),
            bytes: bytes.to_vec(),
        };
        let plugins = match raw.get("plugins") {
            None if list.load_only_inlined_plugins => {
                return Err(bad(
                    "`loadOnlyInlinedPlugins` is true, and no 'plugins' key".into(),
                ));
            }
            None => return Ok(list),
            Some(Value::Array(p)) => p,
            Some(v) => return Err(bad(format!("invalid 'plugins' type {}", kind(v)))),
        };
        if plugins.is_empty() {
            return Err(bad("no plugins in list".into()));
        }
        for (i, p) in plugins.iter().enumerate() {
            let conf = PluginConf::from_value(p.clone())
                .with_context(|| format!("failed to parse plugin config {i}"))?;
            list.plugins.push(conf);
        }
        Ok(list)
    }

    /// Reads and parses a list file (`NetworkConfFromFile`); unless `loadOnlyInlinedPlugins`,
    /// appends the plugin objects of `<file's dir>/<name>/*.conf`. No plugin at all is an error.
    pub fn from_file(path: &Path) -> anyhow::Result<NetworkConfigList> {
        let bytes =
            std::fs::read(path).with_context(|| format!("error reading {}", path.display()))?;
        let mut list = NetworkConfigList::from_bytes(&bytes)?;
        if !list.load_only_inlined_plugins {
            let dir = path.parent().unwrap_or(Path::new("."));
            list.plugins.extend(plugins_from_dir(dir, &list.name)?);
        }
        if list.plugins.is_empty() {
            return Err(bad_config("no plugin configs found"));
        }
        Ok(list)
    }

    /// Wraps a single-plugin configuration into a one-plugin list (`ConfListFromConf`).
    pub fn from_plugin(plugin: &PluginConf) -> anyhow::Result<NetworkConfigList> {
        let wrapped = serde_json::json!({
            "name": plugin.name(),
            "cniVersion": plugin.cni_version(),
            "plugins": [plugin.raw()],
        });
        NetworkConfigList::from_bytes(&serde_json::to_vec(&wrapped)?)
    }

    /// The effective version, parsed (`""` is 0.1.0).
    pub fn version(&self) -> anyhow::Result<Version> {
        Ok(Version::parse(&self.cni_version)?)
    }
}

/// `cniVersion`, or the highest of `cniVersion` ∪ `cniVersions` that is not newer than the
/// version we implement; any unparsable entry is an error.
fn effective_version(raw: &Map<String, Value>) -> Result<String, String> {
    let cni_version = match raw.get("cniVersion") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => return Err(format!("invalid cniVersion type {}", kind(v))),
    };
    let Some(listed) = raw.get("cniVersions") else {
        return Ok(cni_version);
    };
    let Value::Array(listed) = listed else {
        return Err(format!("invalid type for cniVersions: {}", kind(listed)));
    };
    let current = Version::parse(CURRENT).expect("CURRENT parses");
    let mut best: Option<(Version, String)> = None;
    let mut consider = |v: Version, s: &str| {
        if v <= current && best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((v, s.to_string()));
        }
    };
    for (i, entry) in listed.iter().enumerate() {
        let Value::String(s) = entry else {
            return Err(format!(
                "invalid type for cniVersions index {i}: {}",
                kind(entry)
            ));
        };
        let v = Version::parse(s)
            .map_err(|e| format!("invalid cniVersions entry {s} at index {i}: {e}"))?;
        consider(v, s);
    }
    if !cni_version.is_empty() {
        let v = Version::parse(&cni_version)
            .map_err(|e| format!("invalid cniVersion {cni_version}: {e}"))?;
        consider(v, &cni_version);
    }
    Ok(best.map_or(cni_version, |(_, s)| s))
}

/// A boolean that may also be written as the string `"true"`/`"false"` in any letter case.
fn read_bool(raw: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match raw.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("invalid value {other:?} for {key}")),
        },
        Some(v) => Err(format!("invalid type {} for {key}", kind(v))),
    }
}

/// The files of `dir` (not recursive, directories skipped) whose extension is exactly one of
/// `exts` (with the dot), sorted. A missing directory is an empty list (`ConfFiles`).
pub fn conf_files(dir: &Path, exts: &[&str]) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.rfind('.').is_some_and(|i| exts.contains(&&name[i..])) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The plugin objects of `<dir>/<network>/*.conf`, in file-name order
/// (`NetworkPluginConfsFromFiles`).
pub fn plugins_from_dir(dir: &Path, network: &str) -> anyhow::Result<Vec<PluginConf>> {
    let side = dir.join(network);
    let files = conf_files(&side, &[".conf"])
        .with_context(|| format!("failed to read plugin config files in {}", side.display()))?;
    files
        .iter()
        .map(|f| {
            let bytes =
                std::fs::read(f).with_context(|| format!("error reading {}", f.display()))?;
            PluginConf::from_bytes(&bytes)
        })
        .collect()
}

/// The first single-plugin file (`*.conf`, `*.json`, sorted) whose `name` matches (`LoadConf`).
pub fn load_conf(dir: &Path, name: &str) -> anyhow::Result<PluginConf> {
    let files = conf_files(dir, &[".conf", ".json"])?;
    if files.is_empty() {
        return Err(LoadError::NoConfigsFound { dir: dir.into() }.into());
    }
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("error reading {}", f.display()))?;
        let conf = PluginConf::from_bytes(&bytes)?;
        if conf.name() == name {
            return Ok(conf);
        }
    }
    Err(LoadError::NotFound {
        dir: dir.into(),
        name: name.into(),
    }
    .into())
}

/// Finds network `name` in `dir` (`LoadNetworkConf`): the sorted `*.conflist` files first,
/// where a parse error in any of them aborts the search; then the single-plugin files, the
/// match wrapped into a list. Nothing found is a [`LoadError`].
pub fn load_network(dir: &Path, name: &str) -> anyhow::Result<NetworkConfigList> {
    let lists = conf_files(dir, &[".conflist"])?;
    for f in &lists {
        let list = NetworkConfigList::from_file(f)?;
        if list.name == name {
            return Ok(list);
        }
    }
    match load_conf(dir, name) {
        Ok(single) => NetworkConfigList::from_plugin(&single),
        Err(e)
            if !lists.is_empty()
                && matches!(
                    e.downcast_ref::<LoadError>(),
                    Some(LoadError::NoConfigsFound { .. })
                ) =>
        {
            Err(LoadError::NotFound {
                dir: dir.into(),
                name: name.into(),
            }
            .into())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
