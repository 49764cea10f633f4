//! `flannel`: the meta plugin of flannel-io/cni-plugin. It reads the node's lease that flanneld
//! writes to `subnetFile` (`/run/flannel/subnet.env`), turns it into a delegate configuration
//! (bridge + host-local by default: `isGateway`, `ipMasq` = not `FLANNEL_IPMASQ`, the MTU,
//! one host-local range set per family, routes to the flannel networks), merges the user's
//! `delegate` object over it, saves it as `<dataDir>/<containerID>` (the reference's file:
//! the delegate's JSON, keys sorted; renamed into place, not fsynced) and delegates ADD (in process when the delegate is ours).
//! DEL runs the delegate with exactly that saved file, so it works when subnet.env is gone and
//! for containers the reference plugin ADDed.
//!
//! Beyond the reference (whose CHECK is a no-op and which has no GC or STATUS): CHECK runs the
//! delegate's CHECK on the saved config with our `prevResult`; GC and STATUS run the delegate
//! built from the current subnet.env (STATUS answers 50 while subnet.env is missing or
//! incomplete); a missing subnet.env on ADD is code 11 (flanneld not up yet: try again) and an
//! incomplete one code 7; a failed delegate ADD is undone with a delegate DEL and the file
//! removed.

use crate::error::{CniError, code};
use crate::exec;
use crate::keys::{Key, key};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Command, Plugin};
use crate::types::CniResult;
use anyhow::Context;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The flannel applet.
pub struct Flannel;

const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
const DEFAULT_DATA_DIR: &str = "/var/lib/cni/flannel";
/// The key under which runtimes pass the attachments GC must keep (spec 1.1.0).
const VALID_ATTACHMENTS: &str = "cni.dev/valid-attachments";

/// flannel's own keys; everything else of the network config is ignored, as upstream does.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Conf {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ipam: Option<Map<String, Value>>,
    #[serde(default = "default_subnet_file")]
    subnet_file: PathBuf,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    delegate: Option<Map<String, Value>>,
    #[serde(default)]
    runtime_config: Option<Value>,
    #[serde(default)]
    prev_result: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Value>,
}

fn default_subnet_file() -> PathBuf {
    DEFAULT_SUBNET_FILE.into()
}

fn default_data_dir() -> PathBuf {
    DEFAULT_DATA_DIR.into()
}

/// The node's lease as flanneld wrote it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`: the cluster's IPv4 networks (duplicates dropped).
    pub networks: Vec<IpNet>,
    /// `FLANNEL_SUBNET`: this node's IPv4 subnet, masked (as Go's `ParseCIDR` returns it).
    pub subnet: Option<IpNet>,
    /// `FLANNEL_IPV6_NETWORK`.
    pub ipv6_networks: Vec<IpNet>,
    /// `FLANNEL_IPV6_SUBNET`, masked.
    pub ipv6_subnet: Option<IpNet>,
    /// `FLANNEL_MTU`.
    pub mtu: Option<u32>,
    /// `FLANNEL_IPMASQ`: true when flanneld masquerades itself.
    pub ipmasq: Option<bool>,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("subnetFile", r#""/run/flannel/subnet.env""#, "the lease flanneld writes (FLANNEL_NETWORK, FLANNEL_SUBNET, ...)"),
    key("dataDir", r#""/var/lib/cni/flannel""#, "where each container's delegate config is saved for DEL"),
    key("delegate", r#"{"hairpinMode":true,"isDefaultGateway":true}"#, "merged over the generated bridge config (type defaults to bridge)"),
];

impl Plugin for Flannel {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let conf: Conf = args.config()?;
        let env = load_subnet_env(&conf.subnet_file)?;
        let delegate = build_delegate(&conf, &env)?;
        let bytes = serde_json::to_vec(&Value::Object(delegate.clone()))?;
        let kind = delegate_type(&delegate)?;
        let path = save(&conf.data_dir, &args.container_id, &bytes)?;
        let sub = with_stdin(args, bytes);
        let mut rollback = Rollback::new();
        // The file goes only once the delegate's DEL succeeded: otherwise the runtime's DEL
        // still finds it and retries the cleanup (upstream keeps it in every case).
        rollback.push(format!("saved delegate config {}", path.display()), || {
            exec::delegate(Command::Del, &kind, &sub)?;
            remove(&path)
        });
        let result = exec::delegate_add(&kind, &sub)?;
        rollback.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf: Conf = args.config()?;
        let path = conf.data_dir.join(&args.container_id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        // As upstream: a saved file that is not a config cannot be delegated; say nothing and
        // keep it (the interface goes away with the netns anyway).
        let Ok(Value::Object(saved)) = serde_json::from_slice::<Value>(&bytes) else {
            return Ok(());
        };
        let kind = delegate_type(&saved)?;
        exec::delegate(Command::Del, &kind, &with_stdin(args, bytes))?;
        remove(&path)
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf: Conf = args.config()?;
        let path = conf.data_dir.join(&args.container_id);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "flannel: no saved delegate config {} for this container",
                path.display()
            )
        })?;
        let mut saved: Map<String, Value> = serde_json::from_slice(&bytes)
            .with_context(|| format!("flannel: {} is not a JSON object", path.display()))?;
        if let Some(prev) = &conf.prev_result {
            saved.insert("prevResult".into(), prev.clone());
        }
        let kind = delegate_type(&saved)?;
        let bytes = serde_json::to_vec(&Value::Object(saved))?;
        exec::delegate(Command::Check, &kind, &with_stdin(args, bytes))
    }

    fn gc(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf: Conf = args.config()?;
        // Without a lease there is no delegate config to collect with: nothing to do.
        let Ok(env) = load_subnet_env(&conf.subnet_file) else {
            return Ok(());
        };
        let mut delegate = build_delegate(&conf, &env)?;
        if let Some(valid) = &conf.valid_attachments {
            delegate.insert(VALID_ATTACHMENTS.into(), valid.clone());
        }
        let kind = delegate_type(&delegate)?;
        let bytes = serde_json::to_vec(&Value::Object(delegate))?;
        exec::delegate(Command::Gc, &kind, &with_stdin(args, bytes))
    }

    fn status(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf: Conf = args.config()?;
        let env = load_subnet_env(&conf.subnet_file)
            .map_err(|e| CniError::new(code::PLUGIN_NOT_AVAILABLE, format!("{e:#}")))?;
        let delegate = build_delegate(&conf, &env)?;
        let kind = delegate_type(&delegate)?;
        let bytes = serde_json::to_vec(&Value::Object(delegate))?;
        exec::delegate(Command::Status, &kind, &with_stdin(args, bytes))
    }
}

/// The same call with another configuration on stdin.
fn with_stdin(args: &CmdArgs, stdin: Vec<u8>) -> CmdArgs {
    CmdArgs {
        stdin,
        ..args.clone()
    }
}

fn delegate_type(delegate: &Map<String, Value>) -> anyhow::Result<String> {
    match delegate.get("type") {
        Some(Value::String(t)) => Ok(t.clone()),
        _ => Err(CniError::new(
            code::INVALID_CONFIG,
            "'delegate' dictionary, if present, must have (string) 'type' field",
        )
        .into()),
    }
}

/// Reads subnet.env as upstream does: `KEY=VALUE` lines, unknown keys ignored, the last of a
/// repeated key wins; then names every variable still missing.
pub fn load_subnet_env(file: &Path) -> anyhow::Result<SubnetEnv> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "failed to load flannel 'subnet.env' file: {} does not exist. Is flanneld running on this node?",
                    file.display()
                ),
            )
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    parse_subnet_env(&text).map_err(|msg| {
        CniError::new(
            code::INVALID_CONFIG,
            format!(
                "failed to load flannel 'subnet.env' file: {}: {msg}. Check the flannel pod log for this node.",
                file.display()
            ),
        )
        .into()
    })
}

/// Parses subnet.env's text; the error names the bad or missing variables.
pub fn parse_subnet_env(text: &str) -> Result<SubnetEnv, String> {
    let mut se = SubnetEnv::default();
    for line in text.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let bad = |e: &dyn std::fmt::Display| format!("{key}={value:?}: {e}");
        match key {
            "FLANNEL_NETWORK" => se.networks = parse_networks(value).map_err(|e| bad(&e))?,
            "FLANNEL_IPV6_NETWORK" => {
                se.ipv6_networks = parse_networks(value).map_err(|e| bad(&e))?
            }
            "FLANNEL_SUBNET" => se.subnet = Some(parse_cidr(value).map_err(|e| bad(&e))?),
            "FLANNEL_IPV6_SUBNET" => se.ipv6_subnet = Some(parse_cidr(value).map_err(|e| bad(&e))?),
            "FLANNEL_MTU" => se.mtu = Some(value.parse().map_err(|e| bad(&e))?),
            "FLANNEL_IPMASQ" => se.ipmasq = Some(value == "true"),
            _ => {}
        }
    }
    let missing = se.missing();
    if missing.is_empty() {
        Ok(se)
    } else {
        Err(format!("missing {}", missing.join(", ")))
    }
}

impl SubnetEnv {
    /// The variables still missing, grouped as upstream reports them.
    fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.networks.is_empty() && self.ipv6_networks.is_empty() {
            m.extend(["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]);
        }
        if self.subnet.is_none() && self.ipv6_subnet.is_none() {
            m.extend(["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"]);
        }
        if self.mtu.is_none() {
            m.push("FLANNEL_MTU");
        }
        if self.ipmasq.is_none() {
            m.push("FLANNEL_IPMASQ");
        }
        m
    }
}

/// A CIDR as Go's `net.ParseCIDR` returns the network: host bits cleared.
fn parse_cidr(s: &str) -> Result<IpNet, ipnet::AddrParseError> {
    s.trim().parse::<IpNet>().map(|n| n.trunc())
}

fn parse_networks(s: &str) -> Result<Vec<IpNet>, ipnet::AddrParseError> {
    let mut out: Vec<IpNet> = Vec::new();
    for part in s.split(',') {
        let n = parse_cidr(part)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// The delegate config upstream builds: the user's `delegate` object, then `name`, `type`
/// (default `bridge`), `ipMasq`, `mtu` and, for a bridge, `isGateway` where the user set none,
/// `cniVersion` and `runtimeConfig` passed on, and the `ipam` section.
fn build_delegate(conf: &Conf, env: &SubnetEnv) -> anyhow::Result<Map<String, Value>> {
    let mut d = conf.delegate.clone().unwrap_or_default();
    let refuse = |msg: &str| -> anyhow::Error { CniError::new(code::INVALID_CONFIG, msg).into() };
    if d.get("type").is_some_and(|t| !t.is_string()) {
        return Err(refuse(
            "'delegate' dictionary, if present, must have (string) 'type' field",
        ));
    }
    if d.contains_key("name") {
        return Err(refuse(
            "'delegate' dictionary must not have 'name' field, it'll be set by flannel",
        ));
    }
    if d.contains_key("ipam") {
        return Err(refuse(
            "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel",
        ));
    }
    if let Some(rc) = &conf.runtime_config {
        d.insert("runtimeConfig".into(), rc.clone());
    }
    d.insert("name".into(), json!(conf.name));
    d.entry("type").or_insert_with(|| json!("bridge"));
    // flanneld masquerades itself when FLANNEL_IPMASQ=true; otherwise the bridge must.
    d.entry("ipMasq")
        .or_insert_with(|| json!(!env.ipmasq.unwrap_or(false)));
    d.entry("mtu").or_insert_with(|| json!(env.mtu));
    if d["type"] == "bridge" {
        d.entry("isGateway").or_insert(json!(true));
    }
    if !conf.cni_version.is_empty() {
        d.insert("cniVersion".into(), json!(conf.cni_version));
    }
    d.insert("ipam".into(), Value::Object(delegate_ipam(conf, env)?));
    Ok(d)
}

/// The user's `ipam` (type default `host-local`) with `ranges` replaced by one set per leased
/// subnet and the flannel networks appended to its `routes`.
fn delegate_ipam(conf: &Conf, env: &SubnetEnv) -> anyhow::Result<Map<String, Value>> {
    let mut ipam = conf.ipam.clone().unwrap_or_default();
    ipam.entry("type").or_insert_with(|| json!("host-local"));
    let ranges: Vec<Value> = [env.subnet, env.ipv6_subnet]
        .into_iter()
        .flatten()
        .map(|sn| json!([{ "subnet": sn.to_string() }]))
        .collect();
    ipam.insert("ranges".into(), json!(ranges));
    let mut routes = match ipam.get("routes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(r)) => r.clone(),
        Some(other) => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("failed to read IPAM routes: ipam.routes is not a list: {other}"),
            )
            .into());
        }
    };
    for nw in env.networks.iter().chain(&env.ipv6_networks) {
        routes.push(json!({ "dst": nw.to_string() }));
    }
    ipam.insert("routes".into(), json!(routes));
    Ok(ipam)
}

/// Writes `<dir>/<id>` (dir mode 0700, file 0600) as upstream's `saveScratchNetConf`, but
/// through a temporary name renamed into place and without upstream's fsync: a reader never
/// sees half a file, and, as for host-local's reservations (src/ipam/disk.rs), durability
/// across a host crash buys nothing (the pods do not survive it) while the fsync doubled the
/// ADD's time. A file lost or torn by a crash makes DEL a no-op, as upstream's DEL of an
/// unreadable file is.
fn save(dir: &Path, id: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_CONTAINERID {id:?} cannot name a file"),
        )
        .into());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(id);
    let tmp = dir.join(format!(".{id}.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(path)
}

fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "flannel_tests.rs"]
mod tests;
