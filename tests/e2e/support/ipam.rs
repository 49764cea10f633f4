//! Helpers for the IPAM modules: a hand-written oracle of the result layout of every spec
//! version for what an IPAM plugin returns (addresses, routes, DNS; no interfaces), kept apart
//! from the product's codecs on purpose, and directory snapshots to compare store files byte
//! for byte (the reference's `<ip>` / `last_reserved_ip.N` / `lock` files).

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The result JSON an IPAM plugin prints in `version` for addresses `ips` (CIDR, gateway),
/// `routes` (dst, gw) and `dns` (`{}` for none), following the spec of that version:
/// 0.1.0/0.2.0 carry one `ip4` and one `ip6` object with their family's routes and always a
/// `dns`; 0.3.x/0.4.0 list `ips` with a `version` and always have `dns`; 1.x drops `version`
/// and an empty `dns`. Empty `routes` are left out everywhere.
pub fn expected_result(
    version: &str,
    ips: &[(&str, Option<&str>)],
    routes: &[(&str, Option<&str>)],
    dns: Value,
) -> Value {
    let v6 = |s: &str| s.contains(':');
    let route = |(dst, gw): &(&str, Option<&str>)| match gw {
        Some(gw) => json!({"dst": dst, "gw": gw}),
        None => json!({"dst": dst}),
    };
    let mut out = Map::new();
    out.insert("cniVersion".into(), version.into());
    if matches!(version, "0.1.0" | "0.2.0") {
        for (key, six) in [("ip4", false), ("ip6", true)] {
            let Some((cidr, gw)) = ips.iter().find(|(c, _)| v6(c) == six) else {
                continue;
            };
            let mut ip = json!({"ip": cidr});
            if let Some(gw) = gw {
                ip["gateway"] = (*gw).into();
            }
            let fam: Vec<Value> = routes
                .iter()
                .filter(|(dst, _)| v6(dst) == six)
                .map(route)
                .collect();
            if !fam.is_empty() {
                ip["routes"] = fam.into();
            }
            out.insert(key.into(), ip);
        }
        out.insert("dns".into(), dns);
        return Value::Object(out);
    }
    let legacy = version.starts_with("0.");
    let list: Vec<Value> = ips
        .iter()
        .map(|(cidr, gw)| {
            let mut ip = json!({"address": cidr});
            if legacy {
                ip["version"] = if v6(cidr) { "6" } else { "4" }.into();
            }
            if let Some(gw) = gw {
                ip["gateway"] = (*gw).into();
            }
            ip
        })
        .collect();
    out.insert("ips".into(), list.into());
    if !routes.is_empty() {
        out.insert("routes".into(), routes.iter().map(route).collect());
    }
    if legacy || dns.as_object().is_some_and(|o| !o.is_empty()) {
        out.insert("dns".into(), dns);
    }
    Value::Object(out)
}

/// Every regular file directly in `dir` with its content (empty when `dir` does not exist).
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| {
            let e = e.expect("read_dir entry");
            let name = e.file_name().into_string().expect("UTF-8 file name");
            let content = std::fs::read(e.path())
                .unwrap_or_else(|err| panic!("read {}: {err}", e.path().display()));
            (name, String::from_utf8(content).expect("UTF-8 store file"))
        })
        .collect()
}

/// A snapshot literal: `files(&[("10.1.0.2", "c1\r\neth0"), ("lock", "")])`.
pub fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every path under `dir`, relative, sorted (to show that nothing was written anywhere).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
