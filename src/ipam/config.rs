//! IPAM configuration keys (FEATURES.md 6.10, 1.11): host-local's `ranges`, the legacy
//! `subnet`/`rangeStart`/`rangeEnd`/`gateway`, `routes`, `resolvConf`, `dataDir`, the
//! `ipRanges` capability and the requested addresses (CNI_ARGS `IP`, `args.cni.ips`,
//! `runtimeConfig.ips`), merged in the reference's order (`LoadIPAMConfig`). Shared helpers
//! parse addresses, CIDRs, routes and resolv.conf. Every error is code 7 (code 4 for
//! CNI_ARGS) and names the field, e.g. `ipam.ranges[0][1].subnet: invalid CIDR "x"`.

use super::disk::DEFAULT_DATA_DIR;
use super::range::{Range, RangeSet};
use crate::error::{bad_config, bad_env};
use crate::types::args::CniArgs;
use crate::types::{Dns, NetConf, Route, Version};
use anyhow::Context;
use ipnet::IpNet;
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;

/// host-local's configuration, with every source merged and every range canonical.
#[derive(Debug, Clone)]
pub struct HostLocalConfig {
    /// Network name (the store directory).
    pub name: String,
    /// The configuration's `cniVersion`.
    pub cni_version: String,
    /// Range sets in allocation order: `runtimeConfig.ipRanges`, legacy `subnet`, `ranges`.
    /// The index is the `N` of `last_reserved_ip.N`.
    pub range_sets: Vec<RangeSet>,
    /// Where each range set came from (`ipam.ranges[1]`), for messages.
    pub set_labels: Vec<String>,
    /// `ipam.routes`, returned as they are.
    pub routes: Vec<Route>,
    /// `ipam.dataDir`, or the default.
    pub data_dir: PathBuf,
    /// `ipam.resolvConf`: a resolv.conf to report as the result's DNS.
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses, deduplicated, in the reference's order.
    pub requested: Vec<Requested>,
}

/// A requested address and the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// `CNI_ARGS IP`, `args.cni.ips[0]` or `runtimeConfig.ips[0]`.
    pub source: String,
    /// The address (any prefix given is ignored).
    pub ip: IpAddr,
}

impl HostLocalConfig {
    /// Reads host-local's keys from the full network configuration and `CNI_ARGS`.
    pub fn load(net: &NetConf, cni_args: &CniArgs) -> anyhow::Result<HostLocalConfig> {
        let ipam = ipam_section(net)?;
        let (range_sets, set_labels) = collect_range_sets(net, ipam)?;
        Ok(HostLocalConfig {
            name: net.name.clone(),
            cni_version: net.cni_version.clone(),
            range_sets,
            set_labels,
            routes: parse_routes(ipam.get("routes"), "ipam.routes")?,
            data_dir: data_dir(net)?,
            resolv_conf: get_str(ipam, "resolvConf", "ipam")?.map(PathBuf::from),
            requested: collect_requests(net, cni_args)?,
        })
    }

    /// Assigns each requested address to the first range set holding it, as the reference
    /// does; an address that fits no set, or a second request for one set, is an error.
    pub fn requests_per_set(&self) -> anyhow::Result<Vec<Option<IpAddr>>> {
        let mut per_set: Vec<Option<IpAddr>> = vec![None; self.range_sets.len()];
        for req in &self.requested {
            let Some(i) = self.range_sets.iter().position(|s| s.contains(req.ip)) else {
                let all: Vec<String> = self.range_sets.iter().map(|s| s.to_string()).collect();
                return Err(bad_config(format!(
                    "{}: requested IP address {} is not in any range set ({})",
                    req.source,
                    req.ip,
                    all.join("; ")
                )));
            };
            if let Some(other) = per_set[i] {
                return Err(bad_config(format!(
                    "{}: requested IP address {} falls in range set {} which already has requested address {other}",
                    req.source, req.ip, self.set_labels[i]
                )));
            }
            per_set[i] = Some(req.ip);
        }
        Ok(per_set)
    }
}

/// `ipam.dataDir`, or the default: with the network name, all that DEL needs. Ranges may come
/// only from capability args a runtime does not pass to DEL, so DEL must not read them.
pub fn data_dir(net: &NetConf) -> anyhow::Result<PathBuf> {
    let dir = get_str(ipam_section(net)?, "dataDir", "ipam")?.unwrap_or(DEFAULT_DATA_DIR);
    Ok(PathBuf::from(dir))
}

/// The `ipam` section's keys other than `type`.
pub fn ipam_section(net: &NetConf) -> anyhow::Result<&Map<String, Value>> {
    net.ipam
        .as_ref()
        .map(|i| &i.rest)
        .ok_or_else(|| bad_config("IPAM config missing 'ipam' key"))
}

/// Range sets from `runtimeConfig.ipRanges`, the legacy keys and `ipam.ranges`, checked for
/// overlaps and for the pre-0.3.0 limit of one set per family.
fn collect_range_sets(
    net: &NetConf,
    ipam: &Map<String, Value>,
) -> anyhow::Result<(Vec<RangeSet>, Vec<String>)> {
    let mut sets = Vec::new();
    if let Some(v) = net.runtime_config.get("ipRanges").filter(|v| !v.is_null()) {
        sets.extend(parse_range_sets(v, "runtimeConfig.ipRanges")?);
    }
    if get_str(ipam, "subnet", "ipam")?.is_some() {
        let range = parse_range(ipam, "ipam")?;
        sets.push((
            "ipam.subnet".to_string(),
            RangeSet::new(vec![range]).map_err(bad_config)?,
        ));
    }
    if let Some(v) = ipam.get("ranges").filter(|v| !v.is_null()) {
        sets.extend(parse_range_sets(v, "ipam.ranges")?);
    }
    if sets.is_empty() {
        return Err(bad_config(
            "ipam: no IP ranges specified (ipam.ranges, ipam.subnet or runtimeConfig.ipRanges)",
        ));
    }
    for (i, (la, a)) in sets.iter().enumerate() {
        if let Some((lb, b)) = sets[i + 1..].iter().find(|(_, b)| a.overlaps(b)) {
            return Err(bad_config(format!(
                "{lb}: range set {b} overlaps with {la} ({a})"
            )));
        }
    }
    let version = Version::parse(&net.cni_version)?;
    let v4 = sets.iter().filter(|(_, s)| s.is_ipv4()).count();
    if (v4 > 1 || sets.len() - v4 > 1) && version < Version(0, 3, 0) {
        return Err(bad_config(format!(
            "ipam.ranges: cniVersion {version} does not support more than one address per family"
        )));
    }
    Ok(sets.into_iter().map(|(l, s)| (s, l)).unzip())
}

/// `[[range, ...], ...]` at `path`.
fn parse_range_sets(v: &Value, path: &str) -> anyhow::Result<Vec<(String, RangeSet)>> {
    let sets = v
        .as_array()
        .ok_or_else(|| bad_config(format!("{path}: expected an array of range sets")))?;
    let mut out = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        let label = format!("{path}[{i}]");
        let ranges = set
            .as_array()
            .ok_or_else(|| bad_config(format!("{label}: expected an array of ranges")))?;
        let mut parsed = Vec::new();
        for (j, r) in ranges.iter().enumerate() {
            let rpath = format!("{label}[{j}]");
            let obj = r
                .as_object()
                .ok_or_else(|| bad_config(format!("{rpath}: expected an object")))?;
            parsed.push(parse_range(obj, &rpath)?);
        }
        let set = RangeSet::new(parsed).map_err(|e| bad_config(format!("{label}: {e}")))?;
        out.push((label, set));
    }
    Ok(out)
}

/// One range from `subnet`, `rangeStart`, `rangeEnd`, `gateway` of `obj`.
fn parse_range(obj: &Map<String, Value>, path: &str) -> anyhow::Result<Range> {
    let subnet = get_str(obj, "subnet", path)?
        .ok_or_else(|| bad_config(format!("{path}.subnet: missing")))?;
    let subnet = parse_cidr(subnet, &format!("{path}.subnet"))?;
    let ip = |key: &str| -> anyhow::Result<Option<IpAddr>> {
        get_str(obj, key, path)?
            .map(|s| parse_ip(s, &format!("{path}.{key}")))
            .transpose()
    };
    let (start, end, gw) = (ip("rangeStart")?, ip("rangeEnd")?, ip("gateway")?);
    Range::new(subnet, start, end, gw)
        .map_err(|e| bad_config(format!("{path}.{}: {}", e.field, e.msg)))
}

/// Requested addresses: CNI_ARGS `IP` first, then `args.cni.ips`, then `runtimeConfig.ips`;
/// each address once.
fn collect_requests(net: &NetConf, cni_args: &CniArgs) -> anyhow::Result<Vec<Requested>> {
    let mut out: Vec<Requested> = Vec::new();
    let mut push = |source: String, ip: IpAddr| {
        if !out.iter().any(|r| r.ip == ip) {
            out.push(Requested { source, ip });
        }
    };
    if let Some(s) = cni_args.get("IP").filter(|s| !s.is_empty()) {
        let ip = parse_ip_or_cidr(s, "CNI_ARGS IP").map_err(|e| bad_env(format!("{e}")))?;
        push("CNI_ARGS IP".into(), ip);
    }
    for (key, list) in [
        ("args.cni.ips", net.cni_arg::<Vec<String>>("ips")?),
        ("runtimeConfig.ips", net.runtime::<Vec<String>>("ips")?),
    ] {
        for (i, s) in list.unwrap_or_default().iter().enumerate() {
            let source = format!("{key}[{i}]");
            let ip = parse_ip_or_cidr(s, &source)?;
            push(source, ip);
        }
    }
    Ok(out)
}

/// A string key of `obj`; an empty string counts as absent (Go's `net.IP` does the same).
pub fn get_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> anyhow::Result<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad_config(format!(
            "{path}.{key}: expected a string, got {other}"
        ))),
    }
}

/// An address; IPv4-mapped IPv6 becomes IPv4.
pub fn parse_ip(s: &str, field: &str) -> anyhow::Result<IpAddr> {
    s.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| bad_config(format!("{field}: invalid IP address {s:?}")))
}

/// A CIDR, host bits kept (`10.1.2.3/24`).
pub fn parse_cidr(s: &str, field: &str) -> anyhow::Result<IpNet> {
    s.trim()
        .parse::<IpNet>()
        .map_err(|_| bad_config(format!("{field}: invalid CIDR {s:?}")))
}

/// `ip` or `ip/prefix`; the prefix is ignored (host-local's requested addresses).
pub fn parse_ip_or_cidr(s: &str, field: &str) -> anyhow::Result<IpAddr> {
    match s.trim().parse::<IpNet>() {
        Ok(n) => Ok(n.addr().to_canonical()),
        Err(_) => parse_ip(s, field),
    }
}

/// A `routes` array (`[{dst, gw?}]`); an empty `gw` string counts as absent.
pub fn parse_routes(v: Option<&Value>, field: &str) -> anyhow::Result<Vec<Route>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| bad_config(format!("{field}: expected an array of routes")))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut item = item.clone();
        if let Some(obj) = item.as_object_mut()
            && obj.get("gw").is_some_and(|g| g == "")
        {
            obj.remove("gw");
        }
        let route =
            serde_json::from_value(item).map_err(|e| bad_config(format!("{field}[{i}]: {e}")))?;
        out.push(route);
    }
    Ok(out)
}

/// Parses resolv.conf text as the reference's `parseResolvConf`: `nameserver`, `domain`,
/// `search` and `options` lines; `#` and `;` start comment lines.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let rest = fields[1..].iter().map(|s| s.to_string());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_string()),
            "domain" => dns.domain = fields[1].to_string(),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

/// Reads and parses the resolv.conf named by `ipam.resolvConf`.
pub fn read_resolv_conf(path: &std::path::Path) -> anyhow::Result<Dns> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("ipam.resolvConf: read {}", path.display()))?;
    Ok(parse_resolv_conf(&text))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
