//! Helpers shared by the pod-network e2e tests (bridge, ptp): configs with a host-local IPAM
//! in a per-test data dir, one attachment's calls (ours or the reference's), and the oracles
//! that list what a test must find gone: reservations, veths, masquerade and spoof-check
//! rules in a host namespace.

use crate::support::{Cni, Farm, Outcome, TempDir, TestNs, reference_plugin};
use serde_json::{Value, json};
use std::path::Path;

/// Every spec version; CHECK from 0.4.0, GC and STATUS from 1.1.0.
pub const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest version the reference v1.1.1 binaries accept.
pub const REF_VERSION: &str = "1.0.0";

/// A host-local `ipam` section with one range set per subnet, its store in `data`.
pub fn ipam(data: &TempDir, subnets: &[&str]) -> Value {
    let ranges: Vec<Value> = subnets.iter().map(|s| json!([{ "subnet": s }])).collect();
    json!({ "type": "host-local", "dataDir": data.path(), "ranges": ranges })
}

/// `conf` with `cniVersion` set.
pub fn versioned(conf: &Value, version: &str) -> Value {
    let mut c = conf.clone();
    c["cniVersion"] = json!(version);
    c
}

/// `conf` with `prevResult` set.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// One attachment: which program, which container, which netns, which interface.
#[derive(Debug, Clone)]
pub struct Attachment {
    cni: Cni,
}

impl Attachment {
    /// Our applet, through the shared farm.
    pub fn ours(applet: &str, cid: &str, netns: &Path, ifname: &str) -> Attachment {
        let cni = Cni::new(Farm::shared(), applet)
            .container_id(cid)
            .netns(netns)
            .ifname(ifname);
        Attachment { cni }
    }

    /// The reference plugin from /usr/lib/cni with its own IPAM (`CNI_PATH=/usr/lib/cni`),
    /// `None` when it is not installed.
    pub fn reference(plugin: &str, cid: &str, netns: &Path, ifname: &str) -> Option<Attachment> {
        let program = reference_plugin(plugin)?;
        let cni = Cni::at(&program)
            .path(program.parent().unwrap())
            .container_id(cid)
            .netns(netns)
            .ifname(ifname);
        Some(Attachment { cni })
    }

    /// Runs `verb` with `conf` inside `host`.
    pub fn run(&self, host: &TestNs, verb: &str, conf: &Value) -> Outcome {
        self.cni.clone().command(verb).config(conf).run_in(host)
    }

    /// The same attachment with another `CNI_NETNS` (e.g. one that no longer exists).
    pub fn netns(&self, netns: &str) -> Attachment {
        Attachment {
            cni: self.cni.clone().env("CNI_NETNS", netns),
        }
    }
}

/// The addresses host-local holds for network `net` in `data` (its files but the lock and
/// the last-reserved markers).
pub fn reservations(data: &TempDir, net: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(data.join(net)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
        .collect();
    v.sort();
    v
}

/// Host-side veths (`veth*`) in `host`.
pub fn host_veths(host: &TestNs) -> Vec<String> {
    host.link_names()
        .into_iter()
        .filter(|n| n.starts_with("veth"))
        .collect()
}

/// Every masquerade or spoof-check rule or chain in `host`: iptables and ip6tables `nat`
/// lines mentioning `CNI-`, nft rules of `cni_plugins_masquerade`'s `masq_checks` and
/// `cni-br-iface` chains and jumps. Empty means nothing of ours is left.
pub fn netfilter_leftovers(host: &TestNs) -> Vec<String> {
    let mut left: Vec<String> = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let out = host.run([tool, "-t", "nat"]);
        left.extend(out.lines().filter(|l| l.contains("CNI-")).map(String::from));
    }
    let nft = host.run(["nft", "list", "ruleset"]);
    let mut in_masq_checks = false;
    for line in nft.lines().map(str::trim) {
        if line.starts_with("chain ") {
            in_masq_checks = line.starts_with("chain masq_checks");
        }
        let masq_rule = in_masq_checks && line.contains("masquerade");
        if masq_rule || line.contains("cni-br-iface") {
            left.push(format!("nft: {line}"));
        }
    }
    left
}

/// The `ips[].address` of a result (any version from 0.3.0; 0.1.0/0.2.0 `ip4`/`ip6`).
pub fn result_addresses(result: &Value) -> Vec<String> {
    if let Some(ips) = result["ips"].as_array() {
        return ips
            .iter()
            .filter_map(|i| i["address"].as_str().map(String::from))
            .collect();
    }
    ["ip4", "ip6"]
        .iter()
        .filter_map(|k| result[k]["ip"].as_str().map(String::from))
        .collect()
}

/// Addresses (`a.b.c.d/len`) of `dev` in `ns`, link-local ones left out.
pub fn addresses(ns: &TestNs, dev: &str) -> Vec<String> {
    let j = ns.ip_json(&["addr", "show", "dev", dev]);
    j[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// CHECK, DEL, DEL of one attachment with `result` as `prevResult`; each must succeed.
pub fn check_del_del(at: &Attachment, host: &TestNs, conf: &Value, result: &Value) {
    let with = with_prev(conf, result);
    at.run(host, "CHECK", &with).ok();
    at.run(host, "DEL", &with).ok();
    at.run(host, "DEL", &with).ok();
}

/// [`check_del_del`] from 0.4.0 on (CHECK and `prevResult` in DEL are 0.4.0's); before that
/// DEL, DEL with `conf` as it is.
pub fn check_del_del_in(
    version: &str,
    at: &Attachment,
    host: &TestNs,
    conf: &Value,
    result: &Value,
) {
    if version >= "0.4.0" {
        check_del_del(at, host, conf, result);
    } else {
        at.run(host, "DEL", conf).ok();
        at.run(host, "DEL", conf).ok();
    }
}
