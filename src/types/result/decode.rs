//! Reading a result in any spec layout into the canonical model, walking the JSON by hand so
//! an error names the offending field (`ips[0].address: invalid IP network "x"`).
//!
//! Mirrors how the reference unmarshals `types020`/`types040`/`types100` results and then
//! converts them up (`convertFrom02x`, `convertFrom04x`): unknown keys are ignored, `null`
//! counts as absent, an empty `gateway`/`gw` string means none (`net.IP.UnmarshalText`).
//! Stricter than the reference where it would produce garbage: a missing `address`, `ip` or
//! `dst` is an error rather than a zero network.

use super::{CniResult, Dns, Interface, IpConfig, Route};
use crate::types::version::Family;
use anyhow::{Result, anyhow};
use ipnet::IpNet;
use serde_json::{Map, Value};
use std::net::IpAddr;

type Obj = Map<String, Value>;

/// Decodes the body of a result whose version has already been chosen.
pub(super) fn decode(m: &Obj, family: Family) -> Result<CniResult> {
    match family {
        Family::V02 => legacy(m),
        Family::V04 | Family::V1 => rich(m, family),
    }
}

/// 0.1.0/0.2.0: `ip4` and `ip6` become addresses without an interface index; their routes are
/// concatenated, ip4's first (`types040.convertFrom02x`).
fn legacy(m: &Obj) -> Result<CniResult> {
    let mut out = CniResult {
        dns: dns(m)?,
        ..CniResult::default()
    };
    for key in ["ip4", "ip6"] {
        let Some(block) = object(m, key, "")? else {
            continue;
        };
        out.ips.push(IpConfig {
            interface: None,
            address: net(block, "ip", key)?,
            gateway: ip(block, "gateway", key)?,
        });
        out.routes.extend(routes(block, key)?);
    }
    Ok(out)
}

/// 0.3.x/0.4.0 and 1.x: interfaces, ips, routes, dns. A 0.3.x/0.4.0 interface has no 1.1 fields
/// (the Go type lacks them, so they are ignored), and an ips entry's `version` must be a string
/// but is otherwise ignored: the family comes from the address, as every reference plugin sees
/// it after `NewResultFromResult` drops the field.
fn rich(m: &Obj, family: Family) -> Result<CniResult> {
    let mut interfaces = Vec::new();
    for (i, item) in list(m, "interfaces", "")?.iter().enumerate() {
        let path = format!("interfaces[{i}]");
        interfaces.push(interface(entry(item, &path)?, &path, family)?);
    }
    let mut ips = Vec::new();
    for (i, item) in list(m, "ips", "")?.iter().enumerate() {
        let path = format!("ips[{i}]");
        let o = entry(item, &path)?;
        if family == Family::V04 {
            string(o, "version", &path)?;
        }
        ips.push(IpConfig {
            interface: uint(o, "interface", &path)?,
            address: net(o, "address", &path)?,
            gateway: ip(o, "gateway", &path)?,
        });
    }
    Ok(CniResult {
        interfaces,
        ips,
        routes: routes(m, "")?,
        dns: dns(m)?,
    })
}

fn interface(o: &Obj, path: &str, family: Family) -> Result<Interface> {
    let text = |key| Ok::<_, anyhow::Error>(string(o, key, path)?.unwrap_or_default().to_owned());
    let mut out = Interface {
        name: text("name")?,
        mac: text("mac")?,
        sandbox: text("sandbox")?,
        ..Interface::default()
    };
    if family == Family::V1 {
        out.mtu = uint(o, "mtu", path)?.unwrap_or(0);
        out.socket_path = text("socketPath")?;
        out.pci_id = text("pciID")?;
    }
    Ok(out)
}

/// The `routes` list of `m`, whose own path is `parent`.
fn routes(m: &Obj, parent: &str) -> Result<Vec<Route>> {
    let mut out = Vec::new();
    for (i, item) in list(m, "routes", parent)?.iter().enumerate() {
        let path = format!("{}[{i}]", at(parent, "routes"));
        let o = entry(item, &path)?;
        out.push(Route {
            dst: net(o, "dst", &path)?,
            gw: ip(o, "gw", &path)?,
            mtu: uint(o, "mtu", &path)?.unwrap_or(0),
            advmss: uint(o, "advmss", &path)?.unwrap_or(0),
            priority: uint(o, "priority", &path)?.unwrap_or(0),
            table: uint(o, "table", &path)?,
            scope: uint(o, "scope", &path)?,
        });
    }
    Ok(out)
}

fn dns(m: &Obj) -> Result<Dns> {
    let Some(d) = object(m, "dns", "")? else {
        return Ok(Dns::default());
    };
    Ok(Dns {
        nameservers: strings(d, "nameservers", "dns")?,
        domain: string(d, "domain", "dns")?.unwrap_or_default().to_owned(),
        search: strings(d, "search", "dns")?,
        options: strings(d, "options", "dns")?,
    })
}

/// `parent.key`, or `key` at the top level.
fn at(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn wrong(parent: &str, key: &str, what: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}: {what}", at(parent, key))
}

/// A present, non-null value.
fn get<'a>(m: &'a Obj, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

/// A list element that must be an object.
fn entry<'a>(v: &'a Value, path: &str) -> Result<&'a Obj> {
    v.as_object()
        .ok_or_else(|| anyhow!("{path}: expected an object"))
}

fn object<'a>(m: &'a Obj, key: &str, parent: &str) -> Result<Option<&'a Obj>> {
    get(m, key)
        .map(|v| {
            v.as_object()
                .ok_or_else(|| wrong(parent, key, "expected an object"))
        })
        .transpose()
}

fn list<'a>(m: &'a Obj, key: &str, parent: &str) -> Result<&'a [Value]> {
    match get(m, key) {
        None => Ok(&[]),
        Some(v) => v
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| wrong(parent, key, "expected an array")),
    }
}

fn string<'a>(m: &'a Obj, key: &str, parent: &str) -> Result<Option<&'a str>> {
    get(m, key)
        .map(|v| {
            v.as_str()
                .ok_or_else(|| wrong(parent, key, "expected a string"))
        })
        .transpose()
}

fn strings(m: &Obj, key: &str, parent: &str) -> Result<Vec<String>> {
    let items = list(m, key, parent)?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{}[{i}]: expected a string", at(parent, key)))
        })
        .collect()
}

/// A required CIDR that keeps its host bits.
fn net(m: &Obj, key: &str, parent: &str) -> Result<IpNet> {
    let s = string(m, key, parent)?.ok_or_else(|| wrong(parent, key, "missing"))?;
    s.parse()
        .map_err(|_| wrong(parent, key, format_args!("invalid IP network {s:?}")))
}

/// An optional address; `""` counts as none, as in Go.
fn ip(m: &Obj, key: &str, parent: &str) -> Result<Option<IpAddr>> {
    match string(m, key, parent)? {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| wrong(parent, key, format_args!("invalid IP address {s:?}"))),
    }
}

/// An optional non-negative integer that must fit `T`.
fn uint<T: TryFrom<u64>>(m: &Obj, key: &str, parent: &str) -> Result<Option<T>> {
    let Some(v) = get(m, key) else {
        return Ok(None);
    };
    let n = v
        .as_u64()
        .ok_or_else(|| wrong(parent, key, "expected a non-negative integer"))?;
    T::try_from(n)
        .map(Some)
        .map_err(|_| wrong(parent, key, format_args!("{n} is out of range")))
}
