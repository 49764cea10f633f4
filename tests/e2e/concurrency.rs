//! host-local under load (issue 15): 1000 ADDs from 32 concurrent callers on one network, then
//! 1000 DELs, twice: all ours, and half ours, half the reference's binary (interop under load,
//! both honouring the store's `lock`). Oracles: no two containers got one address, every
//! container got one, the store holds exactly one file per container with the reference's
//! bytes (`<id>\r\n<ifname>`, mode 0600), and after the DELs it holds nothing but `lock` and the
//! `last_reserved_ip.N` markers.

use crate::host_local::{NET, call, conf, first_address, ours, parallel};
use crate::support::ipam::snapshot;
use crate::support::{Cni, Pair, TempDir, reference_plugin, require_root, skip};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

const CALLS: usize = 1000;
const CALLERS: usize = 32;

/// Runs `f(i)` for i in 0..CALLS on CALLERS threads, each taking the next index.
fn spread<T: Send>(f: impl Fn(usize) -> T + Sync) -> Vec<(usize, T)> {
    let next = AtomicUsize::new(0);
    let per_thread = parallel(CALLERS, |_| {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= CALLS {
                return out;
            }
            out.push((i, f(i)));
        }
    });
    per_thread.into_iter().flatten().collect()
}

fn load(label: &str, reference: Option<Cni>) {
    let pair = Pair::new(label);
    let tmp = TempDir::new(label);
    let data = tmp.join("data");
    let c = conf(
        "1.0.0",
        &data,
        serde_json::json!({"subnet": "10.70.0.0/20"}),
    );
    let program = |i: usize| match (&reference, i % 2) {
        (Some(theirs), 1) => theirs.clone(),
        _ => ours(),
    };
    let adds = spread(|i| call(program(i), &pair, "ADD", &format!("load-{i}"), &c));
    let mut by_address: BTreeMap<String, usize> = BTreeMap::new();
    for (i, out) in &adds {
        let addr = first_address(out.result());
        if let Some(other) = by_address.insert(addr.clone(), *i) {
            panic!("{label}: {addr} handed to load-{other} and load-{i}");
        }
    }
    assert_eq!(by_address.len(), CALLS, "{label}: one address per ADD");

    let store = snapshot(&data.join(NET));
    let held: BTreeMap<&String, &String> = store
        .iter()
        .filter(|(name, _)| *name != "lock" && !name.starts_with("last_reserved_ip"))
        .collect();
    assert_eq!(held.len(), CALLS, "{label}: one reservation file per ADD");
    for (addr, i) in &by_address {
        let ip = addr.split('/').next().unwrap().to_string();
        let content = store.get(&ip).unwrap_or_else(|| panic!("no file for {ip}"));
        assert_eq!(content, &format!("load-{i}\r\neth0"), "{label}: {ip}");
    }

    let dels = spread(|i| call(program(i + 1), &pair, "DEL", &format!("load-{i}"), &c));
    for (i, out) in &dels {
        assert_eq!(out.code, 0, "{label}: DEL of load-{i}:\n{out}");
    }
    let left: BTreeSet<String> = snapshot(&data.join(NET))
        .into_keys()
        .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
        .collect();
    assert_eq!(
        left,
        BTreeSet::new(),
        "{label}: reservations left after the DELs"
    );
    eprintln!(
        "concurrency: {label}: {CALLS} ADDs from {CALLERS} callers, 0 duplicates, 0 lost; {CALLS} DELs, store empty"
    );
}

#[test]
fn thousand_concurrent_adds_ours() {
    if !require_root() {
        return;
    }
    load("load-ours", None);
}

#[test]
fn thousand_concurrent_adds_half_by_the_reference() {
    if !require_root() {
        return;
    }
    let Some(path) = reference_plugin("host-local") else {
        skip!("reference host-local not installed");
    };
    load("load-mixed", Some(Cni::at(path).path("/usr/lib/cni")));
}
