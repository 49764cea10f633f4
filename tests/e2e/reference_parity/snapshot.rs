//! What a network attachment left in the kernel of one netns, as a flat map of facts
//! (`key -> value`) that two runs can be compared by: `ip -d -j link`, `ip -j addr`, every
//! route table (`ip -j route show table all`, both families), the interface and forwarding
//! sysctls, `iptables-save`/`ip6tables-save`, `nft list ruleset` and `tc` qdiscs and ingress
//! filters, plus the plugin's result as a runtime of its version reads it.
//!
//! Normalised for what differs between any two runs: random veth names become `VETH<n>`,
//! MAC addresses `MAC`, IPv6 link-local addresses `fe80::LL`, the container netns path
//! `NETNS`; interface indexes, peer netns ids, timers, statistics, lifetimes and the
//! `tentative` flag (DAD in progress) are left out.

use crate::support::TestNs;
use regex_lite::Regex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// `key -> value`; keys start with the side (`host`, `ctr`, `result`).
pub type Facts = BTreeMap<String, String>;

static MAC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([0-9a-f]{2}:){5}[0-9a-f]{2}\b").unwrap());
static LINK_LOCAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"fe80::[0-9a-f]+(:[0-9a-f]+)*").unwrap());
static COUNTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"counter packets [0-9]+ bytes [0-9]+").unwrap());
static VETH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bveth[0-9a-f]{8}\b").unwrap());

/// Link fields that differ between identical runs, or say nothing about what a plugin did.
const LINK_SKIP: &[&str] = &[
    "ifindex",
    "address",
    "broadcast",
    "link_index",
    "link_netnsid",
    "operstate",
    "stats",
    "stats64",
    "altnames",
    "perm_address",
    "parentbus",
    "parentdev",
    "bridge_id",
    "root_id",
    "id",
    "no",
    "designated_root",
    "designated_bridge",
    "designated_port",
    "designated_cost",
    "hash_elasticity",
];

/// Renames what is random in a run: veth names in order of first appearance.
#[derive(Debug, Default)]
pub struct Names(Vec<String>);

impl Names {
    /// `text` with veth names, MACs, link-local addresses and `netns` replaced.
    pub fn norm(&mut self, text: &str, netns: &str) -> String {
        let mut t = text.replace(netns, "NETNS");
        for m in VETH.find_iter(text) {
            if !self.0.iter().any(|n| n == m.as_str()) {
                self.0.push(m.as_str().to_string());
            }
        }
        for (i, n) in self.0.iter().enumerate() {
            t = t.replace(n, &format!("VETH{i}"));
        }
        let t = MAC.replace_all(&t, "MAC");
        LINK_LOCAL.replace_all(&t, "fe80::LL").into_owned()
    }
}

/// Everything in `ns` (called `side`), normalised with `names`.
pub fn kernel(ns: &TestNs, side: &str, names: &mut Names, netns: &str) -> Facts {
    let mut f = Facts::new();
    let links = ns.ip_json(&["-d", "link", "show"]);
    let mut ifnames = Vec::new();
    for l in links.as_array().into_iter().flatten() {
        let name = names.norm(l["ifname"].as_str().unwrap_or("?"), netns);
        ifnames.push(l["ifname"].as_str().unwrap_or("?").to_string());
        flatten(&format!("{side} link {name}"), l, &mut f, names, netns);
    }
    addresses(ns, side, names, netns, &mut f);
    for fam in ["-4", "-6"] {
        let routes = ns.ip_json(&[fam, "route", "show", "table", "all"]);
        for r in routes.as_array().into_iter().flatten() {
            route(side, fam, r, names, netns, &mut f);
        }
    }
    let script = "grep -r . /proc/sys/net/ipv4/conf /proc/sys/net/ipv6/conf \
        /proc/sys/net/ipv4/ip_forward 2>/dev/null; true";
    for line in ns.sh(script).lines() {
        if let Some((path, value)) = line.split_once(':') {
            let key = path.trim_start_matches("/proc/sys/net/");
            f.insert(
                format!("{side} sysctl {}", names.norm(key, netns)),
                value.to_string(),
            );
        }
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        let text = ns.sh(&format!("{tool} 2>/dev/null; true"));
        lines(
            &format!("{side} {tool}"),
            &text,
            &mut f,
            names,
            netns,
            |l| (!l.starts_with('#')).then(|| l.replace(" [0:0]", "")),
        );
    }
    nft(
        side,
        &ns.run(["nft", "list", "ruleset"]),
        &mut f,
        names,
        netns,
    );
    for dev in &ifnames {
        let text = ns.run(["tc", "qdisc", "show", "dev", dev])
            + &ns.run(["tc", "filter", "show", "dev", dev, "ingress"]);
        let d = names.norm(dev, netns);
        lines(
            &format!("{side} tc {d}"),
            &text,
            &mut f,
            names,
            netns,
            |l| Some(l.to_string()),
        );
    }
    f
}

/// True while `ns` is still settling: an address in DAD (`tentative`), or a link whose
/// carrier is up but whose operational state the kernel has not caught up with yet.
pub fn settling(ns: &TestNs) -> bool {
    let addrs = ns.ip_json(&["addr", "show"]);
    addrs.as_array().into_iter().flatten().any(|l| {
        let flags: Vec<&str> = l["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let stale_carrier = flags.contains(&"LOWER_UP") && flags.contains(&"NO-CARRIER");
        let dad = l["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a.get("tentative").is_some());
        stale_carrier || dad
    })
}

fn addresses(ns: &TestNs, side: &str, names: &mut Names, netns: &str, f: &mut Facts) {
    let addrs = ns.ip_json(&["addr", "show"]);
    for l in addrs.as_array().into_iter().flatten() {
        let dev = names.norm(l["ifname"].as_str().unwrap_or("?"), netns);
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let local = names.norm(
                &format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]),
                netns,
            );
            let mut attrs: Vec<String> = Vec::new();
            for (k, v) in a.as_object().into_iter().flatten() {
                let v = match (k.as_str(), v) {
                    ("local" | "prefixlen" | "tentative", _) => continue,
                    ("valid_life_time" | "preferred_life_time", Value::Number(n)) => {
                        if n.as_u64() == Some(4294967295) {
                            "forever".into()
                        } else {
                            "finite".into()
                        }
                    }
                    (_, v) => scalar(v),
                };
                attrs.push(format!("{k}={v}"));
            }
            f.insert(
                format!("{side} addr {dev} {local}"),
                names.norm(&attrs.join(" "), netns),
            );
        }
    }
}

fn route(side: &str, fam: &str, r: &Value, names: &mut Names, netns: &str, f: &mut Facts) {
    let get = |k: &str| r.get(k).map(scalar).unwrap_or_default();
    let key = format!(
        "{side} route{} table {} {} {} dev {}",
        &fam[1..],
        r.get("table").map(scalar).unwrap_or_else(|| "main".into()),
        get("type"),
        get("dst"),
        get("dev")
    );
    let mut attrs = Vec::new();
    for (k, v) in r.as_object().into_iter().flatten() {
        if !matches!(k.as_str(), "table" | "type" | "dst" | "dev" | "expires") {
            attrs.push(format!("{k}={}", scalar(v)));
        }
    }
    let mut key = names.norm(&key, netns);
    while f.contains_key(&key) {
        key.push('+');
    }
    f.insert(key, names.norm(&attrs.join(" "), netns));
}

/// `nft list ruleset`, one fact per line, keyed by its table and chain.
fn nft(side: &str, text: &str, f: &mut Facts, names: &mut Names, netns: &str) {
    let (mut table, mut chain) = (String::new(), String::new());
    let mut seen = Facts::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(t) = line.strip_prefix("table ") {
            table = t.trim_end_matches(" {").to_string();
            chain.clear();
        } else if let Some(c) = line.strip_prefix("chain ") {
            chain = c.trim_end_matches(" {").to_string();
        }
        if line == "}" {
            continue;
        }
        let line = COUNTER.replace_all(line, "counter");
        let key = names.norm(&format!("{side} nft {table} / {chain}: {line}"), netns);
        let n = seen.entry(key.clone()).or_default();
        n.push('+');
        f.insert(format!("{key}{}", &n[1..]), "present".into());
    }
}

/// Each kept line of `text` as a fact `<prefix> <line>` (repeats numbered).
fn lines(
    prefix: &str,
    text: &str,
    f: &mut Facts,
    names: &mut Names,
    netns: &str,
    keep: impl Fn(&str) -> Option<String>,
) {
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(l) = keep(line) {
            let mut key = names.norm(&format!("{prefix} {l}"), netns);
            while f.contains_key(&key) {
                key.push('+');
            }
            f.insert(key, "present".into());
        }
    }
}

/// A link object as `<prefix> <path> -> value` facts, minus [`LINK_SKIP`] and timers.
fn flatten(prefix: &str, v: &Value, f: &mut Facts, names: &mut Names, netns: &str) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if LINK_SKIP.contains(&k.as_str()) || k.ends_with("_timer") || k == "ifname" {
                    continue;
                }
                flatten(&format!("{prefix}.{k}"), v, f, names, netns);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object()) => {
            let mut items: Vec<String> = a.iter().map(scalar).collect();
            items.sort();
            f.insert(prefix.to_string(), names.norm(&items.join(","), netns));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, f, names, netns);
            }
        }
        other => {
            f.insert(prefix.to_string(), names.norm(&scalar(other), netns));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The result as a runtime of `version` reads it (0.1/0.2: ip4, ip6, dns; 0.3/0.4:
/// interfaces, ips, routes, dns; 1.x: everything), as `result <path>` facts.
pub fn result(r: &Value, version: &str, names: &mut Names, netns: &str) -> Facts {
    let keys: &[&str] = if version < "0.3.0" {
        &["cniVersion", "ip4", "ip6", "dns"]
    } else if version < "1.0.0" {
        &["cniVersion", "interfaces", "ips", "routes", "dns"]
    } else {
        &[]
    };
    let mut f = Facts::new();
    for (k, v) in r.as_object().into_iter().flatten() {
        if keys.is_empty() || keys.contains(&k.as_str()) {
            json_facts(&format!("result /{k}"), v, &mut f, names, netns);
        }
    }
    f
}

fn json_facts(prefix: &str, v: &Value, f: &mut Facts, names: &mut Names, netns: &str) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                json_facts(&format!("{prefix}/{k}"), v, f, names, netns);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                json_facts(&format!("{prefix}/{i}"), x, f, names, netns);
            }
        }
        other => {
            f.insert(prefix.to_string(), names.norm(&other.to_string(), netns));
        }
    }
}
