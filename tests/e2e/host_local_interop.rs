//! host-local side by side with the reference binary (`/usr/lib/cni/host-local`, Debian's
//! containernetworking-plugins v1.1.1, which speaks up to 1.0.0): the same output for the same
//! call in every version it speaks, and one store shared both ways (each reads, checks and
//! releases what the other reserved, allocation goes on without collision, also under 64
//! concurrent calls mixing both). Skips loudly when the reference is not installed.

use crate::host_local::{NET, call, conf, first_address, ours, parallel, with_prev};
use crate::support::ipam::{files, snapshot};
use crate::support::{Cni, Pair, TempDir, reference_plugin, require_root, skip};
use cni_multi::types::version::ALL;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The reference host-local, or `None` (then the test skips).
fn theirs() -> Option<Cni> {
    reference_plugin("host-local").map(|p| Cni::at(p).path("/usr/lib/cni"))
}

/// The result as the newer reference `pkg/types` prints 1.x: without an empty `dns` (the
/// packaged v1.1.1 still prints `"dns": {}`).
fn without_empty_dns(mut v: Value) -> Value {
    if v["dns"] == json!({}) {
        v.as_object_mut().unwrap().remove("dns");
    }
    v
}

#[test]
fn prints_what_the_reference_prints_in_every_version() {
    if !require_root() {
        return;
    }
    let Some(reference) = theirs() else {
        skip!("reference host-local not installed");
    };
    let pair = Pair::new("hl-same");
    let tmp = TempDir::new("hl-same");
    let resolv = tmp.write(
        "resolv.conf",
        "# comment\nnameserver 10.0.0.53\nnameserver 2001:db8::53\ndomain example.com\n\
         search a.example b.example\noptions ndots:2 edns0\n",
    );
    for v in ALL.iter().filter(|v| **v != "1.1.0") {
        let (a, b) = (tmp.join(format!("ours-{v}")), tmp.join(format!("ref-{v}")));
        let ipam = json!({
            "ranges": [[{"subnet": "10.63.0.0/24", "rangeStart": "10.63.0.20",
                         "rangeEnd": "10.63.0.30", "gateway": "10.63.0.254"}],
                       [{"subnet": "2001:db8:63::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.63.0.1"},
                       {"dst": "2001:db8::/32", "gw": "2001:db8:63::1"}],
            "resolvConf": resolv.to_str().unwrap()});
        let (ca, cb) = (conf(v, &a, ipam.clone()), conf(v, &b, ipam));
        let mine = call(ours(), &pair, "ADD", "same", &ca);
        let refs = call(reference.clone(), &pair, "ADD", "same", &cb);
        if v.starts_with("1.") {
            assert_eq!(
                mine.result(),
                &without_empty_dns(refs.result().clone()),
                "{v}"
            );
        } else {
            assert_eq!(mine.ok().stdout, refs.ok().stdout, "ADD output in {v}");
        }
        assert_eq!(first_address(mine.result()), "10.63.0.20/24");
        assert_eq!(
            snapshot(&a.join(NET)),
            snapshot(&b.join(NET)),
            "store in {v}"
        );
        call(ours(), &pair, "DEL", "same", &ca).ok();
        call(reference.clone(), &pair, "DEL", "same", &cb).ok();
        assert_eq!(
            snapshot(&a.join(NET)),
            snapshot(&b.join(NET)),
            "after DEL {v}"
        );
    }
}

#[test]
fn shares_one_store_with_the_reference() {
    if !require_root() {
        return;
    }
    let Some(reference) = theirs() else {
        skip!("reference host-local not installed");
    };
    let pair = Pair::new("hl-share");
    let tmp = TempDir::new("hl-share");
    let c = conf(
        "1.0.0",
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.63.0.0/24"}], [{"subnet": "2001:db8:63::/64"}]]}),
    );
    let plugin = |who: &str| {
        if who.starts_with("go") {
            reference.clone()
        } else {
            ours()
        }
    };
    let mut results = Vec::new();
    for (host, id) in (2..).zip(["go1", "rs1", "go2", "rs2"]) {
        let out = call(plugin(id), &pair, "ADD", id, &c);
        assert_eq!(
            first_address(out.result()),
            format!("10.63.0.{host}/24"),
            "{id}: allocation continues after the other's reservation"
        );
        results.push((id, out.result().clone()));
    }
    let mut want = files(&[
        ("last_reserved_ip.0", "10.63.0.5"),
        ("last_reserved_ip.1", "2001:db8:63::5"),
        ("lock", ""),
    ]);
    for (host, id) in (2..).zip(["go1", "rs1", "go2", "rs2"]) {
        want.insert(format!("10.63.0.{host}"), format!("{id}\r\neth0"));
        want.insert(format!("2001:db8:63::{host}"), format!("{id}\r\neth0"));
    }
    let store = tmp.join(NET);
    assert_eq!(snapshot(&store), want, "both write the same format");

    // Each checks and releases what the other reserved.
    let other = |id: &str| plugin(if id.starts_with("go") { "rs" } else { "go" });
    for (id, result) in &results {
        call(other(id), &pair, "CHECK", id, &with_prev(&c, result)).ok();
    }
    for (id, _) in &results {
        assert_eq!(call(other(id), &pair, "DEL", id, &c).ok().stdout, "");
    }
    let keys: Vec<String> = snapshot(&store).into_keys().collect();
    assert_eq!(keys, ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
    for (host, id) in (6..).zip(["go3", "rs3"]) {
        let out = call(plugin(id), &pair, "ADD", id, &c);
        assert_eq!(first_address(out.result()), format!("10.63.0.{host}/24"));
        call(other(id), &pair, "DEL", id, &c).ok();
    }
}

#[test]
fn sixty_four_concurrent_calls_mixing_ours_and_the_reference() {
    if !require_root() {
        return;
    }
    let Some(reference) = theirs() else {
        skip!("reference host-local not installed");
    };
    let pair = Pair::new("hl-mixed");
    let tmp = TempDir::new("hl-mixed");
    let c = conf("1.0.0", tmp.path(), json!({"subnet": "10.66.0.0/24"}));
    let pick = |i: usize, add: bool| {
        if i.is_multiple_of(2) == add {
            ours()
        } else {
            reference.clone()
        }
    };
    let adds = parallel(64, |i| {
        call(pick(i, true), &pair, "ADD", &format!("mix{i}"), &c)
    });
    let seen: BTreeSet<String> = adds.iter().map(|o| first_address(o.result())).collect();
    let expected: BTreeSet<String> = (2..66).map(|h| format!("10.66.0.{h}/24")).collect();
    assert_eq!(seen, expected, "64 distinct addresses");
    // Each container is released by the other implementation.
    let dels = parallel(64, |i| {
        call(pick(i, false), &pair, "DEL", &format!("mix{i}"), &c)
    });
    dels.iter().for_each(|d| assert_eq!(d.ok().stdout, ""));
    let keys: Vec<String> = snapshot(&tmp.join(NET)).into_keys().collect();
    assert_eq!(keys, ["last_reserved_ip.0", "lock"]);
}
