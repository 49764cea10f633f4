//! Running a configuration list: ADD, CHECK, DEL, GC and STATUS over its plugins, with the
//! result cache. Mirrors libcni's `api.go` (FEATURES.md 1.5, 3.1): order (ADD and CHECK
//! forward, DEL reverse), `prevResult` handling, version gates, error wording
//! (`plugin type="x" failed (add): ...`, the plugin's code kept in the chain), and the
//! environment (all six `CNI_*` variables always set).
//!
//! Results travel between plugins as JSON, as in libcni; only a cached result in another
//! version than the list's goes through the result codec.
//!
//! One deliberate difference: when a plugin fails during ADD, libcni leaves the earlier
//! plugins' work in place for the caller to DEL. Here the plugins that succeeded get a DEL
//! right away (in reverse order, with the last successful result as `prevResult`), so a failed
//! ADD leaves nothing half-attached. The same happens when the cache cannot be written.

use super::cache::{CacheEntry, KIND_V1, ResultCache};
use super::config::{NetworkConfigList, PluginConf};
use super::inject::{attachment_config, gc_config, result_in_version, status_config};
use crate::error::{CniError, ErrorList, bad_config, code, code_of};
use crate::exec::{Invocation, invoke};
use crate::skel::{Command, Env, validate_ifname};
use crate::types::Attachment;
use crate::types::netconf::{is_valid_identifier, validate_network_name};
use crate::types::version::Version;
use anyhow::Context;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::PathBuf;

/// The parameters of one attachment (libcni's `RuntimeConf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
    /// Capability args; each plugin gets those its `capabilities` enable, as `runtimeConfig`.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// The parameters recorded in a cache entry (for GC's DEL of a stale attachment).
    pub fn from_cache(entry: &CacheEntry) -> RuntimeConf {
        RuntimeConf {
            container_id: entry.container_id.clone(),
            netns: entry.netns.clone(),
            ifname: entry.if_name.clone(),
            args: entry.cni_args.clone(),
            capability_args: entry.capability_args.clone(),
        }
    }
}

/// GC parameters (libcni's `GCArgs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcArgs {
    /// The attachments still in use.
    pub valid_attachments: Vec<Attachment>,
}

/// The runtime (libcni's `CNIConfig`): where plugins are, where the cache is, and what
/// environment plugins get besides the `CNI_*` variables.
#[derive(Debug, Clone, Default)]
pub struct CniConfig {
    /// Plugin search path (`CNI_PATH`).
    pub path: Vec<PathBuf>,
    /// The result cache.
    pub cache: ResultCache,
    /// The environment for every plugin (the tool passes its whole environment); the six
    /// `CNI_*` variables of each call are written over it.
    pub env: Env,
}

impl CniConfig {
    /// A runtime searching `path` and caching under `cache`.
    pub fn new(path: Vec<PathBuf>, cache: ResultCache) -> CniConfig {
        CniConfig {
            path,
            cache,
            env: Env::new(),
        }
    }

    /// The plugin's environment: [`CniConfig::env`] plus all six `CNI_*` variables.
    fn plugin_env(&self, command: Command, rt: &RuntimeConf) -> Env {
        let mut env = self.env.clone();
        // Plugins called by the runtime start a delegation chain of their own.
        env.remove(crate::exec::CHAIN_VAR);
        let args: Vec<String> = rt.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let path: Vec<String> = self.path.iter().map(|p| p.display().to_string()).collect();
        for (k, v) in [
            ("CNI_COMMAND", command.as_str().to_string()),
            ("CNI_CONTAINERID", rt.container_id.clone()),
            ("CNI_NETNS", rt.netns.clone()),
            ("CNI_ARGS", args.join(";")),
            ("CNI_IFNAME", rt.ifname.clone()),
            ("CNI_PATH", path.join(":")),
        ] {
            env.insert(k.to_string(), v);
        }
        env
    }

    /// Runs one plugin; its stdout on success.
    fn exec(
        &self,
        plugin: &PluginConf,
        command: Command,
        stdin: &[u8],
        rt: &RuntimeConf,
    ) -> anyhow::Result<Vec<u8>> {
        invoke(&Invocation {
            plugin_type: plugin.plugin_type(),
            path: &self.path,
            env: self.plugin_env(command, rt),
            stdin,
        })
    }

    /// ADD every plugin in order, each getting the previous one's result as `prevResult`;
    /// caches and returns the final result (in the version the last plugin answered in).
    pub fn add_network_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> anyhow::Result<Value> {
        validate_attachment(&list.name, rt)?;
        if list.plugins.is_empty() {
            return Err(bad_config(format!(
                "network {:?} has no plugins",
                list.name
            )));
        }
        let mut result: Option<Value> = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            match self.add_one(list, plugin, result.as_ref(), rt) {
                Ok(r) => result = Some(r),
                Err(e) => {
                    let e = e.context(format!("plugin {} failed (add)", plugin.describe()));
                    return Err(self.undo_add(list, i, result.as_ref(), rt, e));
                }
            }
        }
        let result = result.expect("a list with plugins has a result");
        if let Err(e) = self.cache.write(&cache_entry(list, rt, &result)) {
            let e = e.context(format!(
                "failed to set network {:?} cached result",
                list.name
            ));
            return Err(self.undo_add(list, list.plugins.len(), Some(&result), rt, e));
        }
        Ok(result)
    }

    fn add_one(
        &self,
        list: &NetworkConfigList,
        plugin: &PluginConf,
        prev: Option<&Value>,
        rt: &RuntimeConf,
    ) -> anyhow::Result<Value> {
        let stdin = attachment_config(list, plugin, prev, &rt.capability_args)?;
        let out = self.exec(plugin, Command::Add, &stdin, rt)?;
        parse_result(&out, &list.cni_version)
    }

    /// DEL on the first `done` plugins, last first, after a failed ADD; every one runs even if
    /// another fails. Returns `err`, extended with the failures of the undo if any.
    fn undo_add(
        &self,
        list: &NetworkConfigList,
        done: usize,
        last: Option<&Value>,
        rt: &RuntimeConf,
        err: anyhow::Error,
    ) -> anyhow::Error {
        let prev = if del_takes_prev_result(list) {
            last
        } else {
            None
        };
        let mut errs = ErrorList::new();
        for plugin in list.plugins[..done].iter().rev() {
            errs.note(
                self.del_one(list, plugin, prev, rt)
                    .with_context(|| format!("plugin {} failed (delete)", plugin.describe())),
            );
        }
        match errs.finish() {
            Ok(()) => err,
            Err(undo) => CniError::new(
                code_of(&err),
                format!("{err:#}; undoing the earlier plugins also failed: {undo:#}"),
            )
            .into(),
        }
    }

    fn del_one(
        &self,
        list: &NetworkConfigList,
        plugin: &PluginConf,
        prev: Option<&Value>,
        rt: &RuntimeConf,
    ) -> anyhow::Result<()> {
        let stdin = attachment_config(list, plugin, prev, &rt.capability_args)?;
        self.exec(plugin, Command::Del, &stdin, rt).map(drop)
    }

    /// The cached result converted to the list's version (`GetNetworkListCachedResult`);
    /// `None` when nothing is cached.
    pub fn cached_result(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> anyhow::Result<Option<Value>> {
        let Some(raw) = self
            .cache
            .read_result(&list.name, &rt.container_id, &rt.ifname)?
        else {
            return Ok(None);
        };
        result_in_version(&raw, &list.cni_version)
            .map(Some)
            .with_context(|| {
                format!(
                    "failed to convert cached result to config version {:?}",
                    list.cni_version
                )
            })
    }

    /// CHECK every plugin in order with the cached result; the first failure is returned as
    /// the plugin gave it. Needs version 0.4.0; `disableCheck` makes it a success.
    pub fn check_network_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> anyhow::Result<()> {
        if list.version()? < Version::V0_4_0 {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "configuration version {:?} does not support the CHECK command",
                    list.cni_version
                ),
            )
            .into());
        }
        if list.disable_check {
            return Ok(());
        }
        validate_attachment(&list.name, rt)?;
        let prev = self
            .cached_result(list, rt)
            .with_context(|| format!("failed to get network {:?} cached result", list.name))?;
        for plugin in &list.plugins {
            let stdin = attachment_config(list, plugin, prev.as_ref(), &rt.capability_args)?;
            self.exec(plugin, Command::Check, &stdin, rt)?;
        }
        Ok(())
    }

    /// DEL every plugin in reverse order, stopping at the first failure, which keeps the cache
    /// so the call can be retried; success removes it. From 0.4.0 on, plugins get the cached
    /// result; an empty or corrupt cache file is removed and DEL goes on without one.
    pub fn del_network_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> anyhow::Result<()> {
        validate_attachment(&list.name, rt)?;
        let prev = if del_takes_prev_result(list) {
            self.cached_result(list, rt).unwrap_or_else(|_| {
                let _ = self.cache.remove(&list.name, &rt.container_id, &rt.ifname);
                None
            })
        } else {
            None
        };
        for plugin in list.plugins.iter().rev() {
            self.del_one(list, plugin, prev.as_ref(), rt)
                .with_context(|| format!("plugin {} failed (delete)", plugin.describe()))?;
        }
        let _ = self.cache.remove(&list.name, &rt.container_id, &rt.ifname);
        Ok(())
    }

    /// GC: DEL every cached attachment of this network that is not valid (with its cached
    /// netns, args and capability args), then, from 1.1.0 on, GC every plugin with the valid
    /// attachments injected when `args` is given. Errors are gathered, never stopping early.
    /// `disableGC` makes it a success.
    pub fn gc_network_list(
        &self,
        list: &NetworkConfigList,
        args: Option<&GcArgs>,
    ) -> anyhow::Result<()> {
        if list.disable_gc {
            return Ok(());
        }
        let mut errs = ErrorList::new();
        let valid: HashSet<(&str, &str)> = args
            .map(|a| {
                a.valid_attachments
                    .iter()
                    .map(|v| (v.container_id.as_str(), v.ifname.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        // libcni gives up silently when the cache cannot be listed; here that is reported and
        // the plugins still get their GC.
        let cached = errs.note(
            self.cache
                .cached_attachments(&list.name)
                .context("listing the result cache"),
        );
        for entry in cached.unwrap_or_default() {
            if valid.contains(&(entry.container_id.as_str(), entry.if_name.as_str())) {
                continue;
            }
            let rt = RuntimeConf::from_cache(&entry);
            errs.note(self.del_network_list(list, &rt).with_context(|| {
                format!(
                    "failed to delete stale attachment {} {}",
                    rt.container_id, rt.ifname
                )
            }));
        }
        if list.version().is_ok_and(|v| v >= Version::V1_1_0) {
            let valid = args.map(|a| a.valid_attachments.as_slice());
            for plugin in &list.plugins {
                let run = gc_config(list, plugin, valid).and_then(|stdin| {
                    self.exec(plugin, Command::Gc, &stdin, &RuntimeConf::default())
                });
                errs.note(
                    run.with_context(|| format!("failed to GC plugin {}", plugin.plugin_type())),
                );
            }
        }
        errs.finish()
    }

    /// STATUS every plugin in order (1.1.0 and later; older lists succeed at once); the first
    /// failure is returned as the plugin gave it, code 50 or 51 included.
    pub fn status_network_list(&self, list: &NetworkConfigList) -> anyhow::Result<()> {
        if !list.version().is_ok_and(|v| v >= Version::V1_1_0) {
            return Ok(());
        }
        for plugin in &list.plugins {
            let stdin = status_config(list, plugin).with_context(|| {
                format!(
                    "failed to generate configuration to get plugin STATUS {}",
                    plugin.plugin_type()
                )
            })?;
            self.exec(plugin, Command::Status, &stdin, &RuntimeConf::default())?;
        }
        Ok(())
    }
}

/// DEL gets `prevResult` from spec 0.4.0 on.
fn del_takes_prev_result(list: &NetworkConfigList) -> bool {
    list.version().is_ok_and(|v| v >= Version::V0_4_0)
}

/// A plugin's ADD output as a result object; one without `cniVersion` is in the config's
/// version (cni#895), and `null` is an empty result.
fn parse_result(out: &[u8], config_version: &str) -> anyhow::Result<Value> {
    let v: Value = serde_json::from_slice(out).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            format!(
                "plugin output is not JSON: {e}: {:?}",
                String::from_utf8_lossy(out)
            ),
        )
    })?;
    let mut m = match v {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(CniError::new(
                code::DECODING_FAILURE,
                format!("plugin output is not a result object: {other}"),
            )
            .into());
        }
    };
    let version = if config_version.is_empty() {
        "0.1.0"
    } else {
        config_version
    };
    m.entry("cniVersion").or_insert_with(|| version.into());
    Ok(Value::Object(m))
}

/// The cache file for a successful ADD.
fn cache_entry(list: &NetworkConfigList, rt: &RuntimeConf, result: &Value) -> CacheEntry {
    CacheEntry {
        kind: KIND_V1.into(),
        container_id: rt.container_id.clone(),
        config: list.bytes.clone(),
        if_name: rt.ifname.clone(),
        network_name: list.name.clone(),
        netns: rt.netns.clone(),
        cni_args: rt.args.clone(),
        capability_args: rt.capability_args.clone(),
        result: result.as_object().cloned().unwrap_or_default(),
    }
}

/// The checks libcni makes before ADD (`utils.Validate*`), here before every attachment verb:
/// the names also become the cache file's name.
fn validate_attachment(network: &str, rt: &RuntimeConf) -> anyhow::Result<()> {
    if rt.container_id.is_empty() {
        return Err(CniError::new(code::UNKNOWN_CONTAINER, "missing containerID").into());
    }
    if !is_valid_identifier(&rt.container_id) {
        return Err(
            CniError::new(code::INVALID_ENV, "invalid characters in containerID")
                .with_details(rt.container_id.clone())
                .into(),
        );
    }
    crate::skel::validate_container_id(&rt.container_id)?;
    validate_network_name(network)?;
    validate_ifname(&rt.ifname)
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
