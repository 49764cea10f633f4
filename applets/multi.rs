//! `multi`: several interfaces per pod from one network configuration. Kubelet, containerd and
//! CRI-O call exactly one network with `CNI_IFNAME=eth0`; a plugin list cannot add a second
//! interface, because every plugin in a list gets the same ifname. `multi` holds several
//! attachments, each an ifname and a plugin list, and runs each list as the runtime tool does
//! (src/runtime: capability injection, `prevResult` chaining, a result cache, in process when
//! the plugin is ours). No reference plugin does this; Multus does it with a daemon and CRDs.
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "village", "type": "multi",
//!  "capabilities": {"portMappings": true},
//!  "attachments": [
//!    {"ifname": "eth0", "plugins": [{"type": "bridge", "isDefaultGateway": true, "ipam": {..}},
//!                                    {"type": "portmap", "capabilities": {"portMappings": true}}]},
//!    {"ifname": "net1", "plugins": [{"type": "macvlan", "master": "eno1", "ipam": {..}}]}]}
//! ```
//!
//! - Attachment `i` takes its ifname from `runtimeConfig.multiIfnames[i]`, else CNI_ARGS
//!   `MULTI_IFNAME_<i>`, else its `ifname` key, else (the first attachment only) `CNI_IFNAME`.
//! - Its network name is its `name` key, else `<name>-<ifname>`, so IPAM stores, chain names
//!   and cache files of two attachments never collide.
//! - The capability args `multi` receives (`runtimeConfig`) reach the attachment plugins that
//!   declare those capabilities, as a runtime would hand them.
//! - ADD runs the attachments in order; a failure undoes the earlier ones (last first). The
//!   merged result lists every interface, each address pointing at its own interface, every
//!   route, and the DNS of the first attachment that has any.
//! - Each attachment's result is cached under `cacheDir` (default `/var/lib/cni/multi`, libcni's
//!   layout), so DEL and CHECK need no `prevResult`. DEL runs the attachments in reverse and
//!   goes on past a failing one; CHECK checks each; STATUS asks each; GC forwards the valid
//!   attachments: for attachment `i`, the valid containers with their cached ifnames.

use crate::error::{ErrorList, bad_config};
use crate::keys::{Key, key};
use crate::runtime::{CniConfig, GcArgs, NetworkConfigList, ResultCache, RuntimeConf};
use crate::skel::{CmdArgs, Plugin};
use crate::types::netconf::validate_network_name;
use crate::types::{Attachment, CniResult, NetConf};
use anyhow::Context;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};

/// The applet.
pub struct Multi;

const DEFAULT_CACHE_DIR: &str = "/var/lib/cni/multi";
/// The capability through which a runtime may name the attachments' interfaces.
const IFNAMES_CAPABILITY: &str = "multiIfnames";
/// `CNI_ARGS` key prefix naming attachment `i`'s interface: `MULTI_IFNAME_1=net1`.
const IFNAME_ARG_PREFIX: &str = "MULTI_IFNAME_";

/// The config as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    attachments: Vec<AttachmentConf>,
    #[serde(default)]
    cache_dir: Option<String>,
}

/// One attachment: an interface and the plugin list that makes it.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct AttachmentConf {
    #[serde(default)]
    ifname: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    plugins: Vec<Value>,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("attachments", r#"[{"ifname":"net1","plugins":[{"type":"macvlan","master":"eno1"}]}]"#,
        "the interfaces: each an ifname (or from CNI_IFNAME / MULTI_IFNAME_<i>), an optional network name and a plugin list"),
    key("cacheDir", r#""/var/lib/cni/multi""#, "where each attachment's result is cached (default /var/lib/cni/multi)"),
];

/// One attachment resolved for this call: its plugin list and its runtime parameters.
struct Resolved {
    list: NetworkConfigList,
    rt: RuntimeConf,
}

impl Plugin for Multi {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let (conf, runtime) = setup(args)?;
        let attachments = resolve_all(&conf, args)?;
        let mut done: Vec<&Resolved> = Vec::new();
        let mut merged = CniResult::default();
        for a in &attachments {
            let what = || format!("attachment {:?} ({})", a.rt.ifname, a.list.name);
            let added = match runtime.add_network_list(&a.list, &a.rt) {
                Ok(v) => v,
                Err(e) => return Err(undo(&runtime, &done, e.context(what()))),
            };
            // Attached from here on: a result that does not decode is undone with the rest.
            done.push(a);
            match CniResult::decode(&added, &a.list.cni_version) {
                Ok(result) => merge_into(&mut merged, result),
                Err(e) => return Err(undo(&runtime, &done, e.context(what()))),
            }
        }
        Ok(merged)
    }

    fn del(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (conf, runtime) = setup(args)?;
        let attachments = resolve_all(&conf, args)?;
        let mut errs = ErrorList::new();
        for a in attachments.iter().rev() {
            errs.note(
                runtime
                    .del_network_list(&a.list, &a.rt)
                    .with_context(|| format!("attachment {:?} ({})", a.rt.ifname, a.list.name)),
            );
        }
        errs.finish()
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (conf, runtime) = setup(args)?;
        for a in resolve_all(&conf, args)? {
            let cached = runtime.cached_result(&a.list, &a.rt)?;
            if cached.is_none() {
                return Err(anyhow::anyhow!(
                    "attachment {:?} ({}) has no cached result: was it added?",
                    a.rt.ifname,
                    a.list.name
                ));
            }
            runtime
                .check_network_list(&a.list, &a.rt)
                .with_context(|| format!("attachment {:?} ({})", a.rt.ifname, a.list.name))?;
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (conf, runtime) = setup(args)?;
        let valid = conf.net.valid_attachments.as_deref();
        let mut errs = ErrorList::new();
        for (i, a) in conf.attachments.iter().enumerate() {
            for (list, valid) in gc_lists(&conf, &runtime, i, a, valid)? {
                let gc_args = valid.map(|v| GcArgs {
                    valid_attachments: v,
                });
                errs.note(
                    runtime
                        .gc_network_list(&list, gc_args.as_ref())
                        .with_context(|| format!("GC of attachment {i} ({})", list.name)),
                );
            }
        }
        errs.finish()
    }

    fn status(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (conf, runtime) = setup(args)?;
        for (i, a) in conf.attachments.iter().enumerate() {
            // STATUS has no ifname; a name derived from one is only a label here.
            let ifname = a.ifname.clone().unwrap_or_else(|| format!("if{i}"));
            let list = attachment_list(&conf, a, &ifname)?;
            runtime
                .status_network_list(&list)
                .with_context(|| format!("attachment {i} ({})", list.name))?;
        }
        Ok(())
    }
}

/// Parses and validates the config and builds the runtime that runs the attachments.
fn setup(args: &CmdArgs) -> anyhow::Result<(Config, CniConfig)> {
    let conf: Config = args.config()?;
    if conf.attachments.is_empty() {
        return Err(bad_config(
            "multi: \"attachments\" must list at least one attachment",
        ));
    }
    for (i, a) in conf.attachments.iter().enumerate() {
        if a.plugins.is_empty() {
            return Err(bad_config(format!("multi: attachment {i} has no plugins")));
        }
        for p in &a.plugins {
            if p.get("type").and_then(Value::as_str) == Some("multi") {
                return Err(bad_config(format!(
                    "multi: attachment {i} nests a multi plugin, which could recurse without end"
                )));
            }
        }
    }
    let cache = ResultCache::new(conf.cache_dir.as_deref().unwrap_or(DEFAULT_CACHE_DIR));
    let mut runtime = CniConfig::new(args.path.clone(), cache);
    runtime.env = args.env.clone();
    Ok((conf, runtime))
}

/// Every attachment with its ifname, network name and runtime parameters; duplicate ifnames or
/// network names are a config error.
fn resolve_all(conf: &Config, args: &CmdArgs) -> anyhow::Result<Vec<Resolved>> {
    let runtime_ifnames: Vec<Option<String>> = conf
        .net
        .runtime::<Vec<Option<String>>>(IFNAMES_CAPABILITY)?
        .unwrap_or_default();
    let mut capability_args = conf.net.runtime_config.clone();
    capability_args.remove(IFNAMES_CAPABILITY);
    let mut seen_if = HashSet::new();
    let mut seen_net = HashSet::new();
    let mut out = Vec::new();
    for (i, a) in conf.attachments.iter().enumerate() {
        let ifname = runtime_ifnames
            .get(i)
            .cloned()
            .flatten()
            .or_else(|| args.args.get(&format!("{IFNAME_ARG_PREFIX}{i}")).map(str::to_string))
            .or_else(|| a.ifname.clone())
            .or_else(|| (i == 0).then(|| args.ifname.clone()))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                bad_config(format!(
                    "multi: attachment {i} has no ifname (set \"ifname\", CNI_ARGS {IFNAME_ARG_PREFIX}{i}, or runtimeConfig.{IFNAMES_CAPABILITY})"
                ))
            })?;
        let list = attachment_list(conf, a, &ifname)?;
        if !seen_if.insert(ifname.clone()) {
            return Err(bad_config(format!(
                "multi: ifname {ifname:?} is used twice"
            )));
        }
        if !seen_net.insert(list.name.clone()) {
            return Err(bad_config(format!(
                "multi: network name {:?} is used twice",
                list.name
            )));
        }
        let rt = RuntimeConf {
            container_id: args.container_id.clone(),
            netns: args.netns.clone(),
            ifname,
            args: args.args.0.clone(),
            capability_args: capability_args.clone(),
        };
        out.push(Resolved { list, rt });
    }
    Ok(out)
}

/// The plugin list of attachment `a` as a network configuration list in the parent's version.
fn attachment_list(
    conf: &Config,
    a: &AttachmentConf,
    ifname: &str,
) -> anyhow::Result<NetworkConfigList> {
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{ifname}", conf.net.name));
    validate_network_name(&name)?;
    let mut list = Map::new();
    list.insert("cniVersion".into(), conf.net.cni_version.clone().into());
    list.insert("name".into(), name.into());
    list.insert("plugins".into(), Value::Array(a.plugins.clone()));
    NetworkConfigList::from_bytes(&serde_json::to_vec(&list)?)
        .context("multi: attachment plugin list")
}

/// The lists (and valid attachments) GC runs for attachment `i`. An attachment whose ifname
/// is fixed in the config has one network; for the first attachment without one, the names
/// follow the valid attachments' ifnames (a stale name of another ifname cannot be known).
/// A container is valid for an attachment when it is valid for `multi`.
fn gc_lists(
    conf: &Config,
    runtime: &CniConfig,
    i: usize,
    a: &AttachmentConf,
    valid: Option<&[Attachment]>,
) -> anyhow::Result<Vec<(NetworkConfigList, Option<Vec<Attachment>>)>> {
    let ifnames: BTreeSet<String> = match (&a.name, &a.ifname) {
        (_, Some(ifname)) => [ifname.clone()].into(),
        (Some(_), None) => ["gc".to_string()].into(),
        (None, None) => valid
            .unwrap_or_default()
            .iter()
            .map(|v| v.ifname.clone())
            .collect(),
    };
    let valid_ids: Option<HashSet<&str>> =
        valid.map(|v| v.iter().map(|a| a.container_id.as_str()).collect());
    let mut out = Vec::new();
    for ifname in ifnames {
        let list = attachment_list(conf, a, &ifname)?;
        let mapped = match &valid_ids {
            None => None,
            Some(ids) => {
                let cached = runtime
                    .cache
                    .cached_attachments(&list.name)
                    .unwrap_or_default();
                let mut keep: BTreeSet<Attachment> = cached
                    .into_iter()
                    .filter(|e| ids.contains(e.container_id.as_str()))
                    .map(|e| Attachment {
                        container_id: e.container_id,
                        ifname: e.if_name,
                    })
                    .collect();
                if i == 0 {
                    keep.extend(valid.unwrap_or_default().iter().cloned());
                }
                Some(keep.into_iter().collect())
            }
        };
        out.push((list, mapped));
    }
    Ok(out)
}

/// Appends `next` to `merged`: its addresses keep pointing at its own interfaces.
fn merge_into(merged: &mut CniResult, next: CniResult) {
    let offset = merged.interfaces.len();
    merged.interfaces.extend(next.interfaces);
    merged.ips.extend(next.ips.into_iter().map(|mut ip| {
        ip.interface = ip.interface.map(|i| i + offset);
        ip
    }));
    merged.routes.extend(next.routes);
    if merged.dns.is_empty() {
        merged.dns = next.dns;
    }
}

/// DEL of the attachments already added, last first, after `err`; their failures are added.
fn undo(runtime: &CniConfig, done: &[&Resolved], err: anyhow::Error) -> anyhow::Error {
    let mut errs = ErrorList::new();
    for a in done.iter().rev() {
        errs.note(runtime.del_network_list(&a.list, &a.rt));
    }
    match errs.finish() {
        Ok(()) => err,
        Err(undo) => err.context(format!(
            "undoing the earlier attachments also failed: {undo:#}"
        )),
    }
}

#[cfg(test)]
#[path = "multi_tests.rs"]
mod tests;
