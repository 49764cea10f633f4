//! host-local end to end (FEATURES.md 6.10): the installed applet run as a runtime runs it, in
//! every spec version (ADD -> CHECK -> DEL -> DEL, store files checked byte for byte), GC and
//! STATUS at 1.1.0, 64 concurrent ADDs and DELs, names that try to leave `dataDir`, and bad
//! input (the spec code, and the field or address in the message). Side by side with the
//! reference binary: `host_local_interop.rs`.

use crate::support::ipam::{expected_result, files, snapshot, tree};
use crate::support::{Cni, Farm, Outcome, Pair, TempDir, require_root};
use cni_multi::types::Version;
use cni_multi::types::version::ALL;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The network name, hence the store directory under `dataDir`.
pub const NET: &str = "hlnet";

/// A network configuration in `version` whose host-local section is `ipam` plus `dataDir`.
pub fn conf(version: &str, data: &Path, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = "host-local".into();
    ipam["dataDir"] = data.to_str().expect("UTF-8 temp path").into();
    json!({"cniVersion": version, "name": NET, "type": "bridge", "ipam": ipam})
}

/// `conf` with `prevResult` set, as a runtime passes it to CHECK.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// Our host-local, through its symlink in the shared farm.
pub fn ours() -> Cni {
    Cni::new(Farm::shared(), "host-local")
}

/// One call of `program` for container `id` on interface `ifname`.
pub fn run(program: Cni, pair: &Pair, verb: &str, id: &str, ifname: &str, c: &Value) -> Outcome {
    program
        .command(verb)
        .container_id(id)
        .netns(pair.container.path())
        .ifname(ifname)
        .config(c)
        .run_in(&pair.host)
}

/// [`run`] on `eth0`.
pub fn call(program: Cni, pair: &Pair, verb: &str, id: &str, c: &Value) -> Outcome {
    run(program, pair, verb, id, "eth0", c)
}

/// The first address of a result in any version's layout (`ip4.ip` or `ips[0].address`).
pub fn first_address(result: &Value) -> String {
    let v = result
        .get("ip4")
        .map(|ip4| &ip4["ip"])
        .unwrap_or(&result["ips"][0]["address"]);
    v.as_str()
        .unwrap_or_else(|| panic!("no address in {result}"))
        .to_string()
}

/// The error message of a failed call.
pub fn msg(out: &Outcome) -> String {
    out.json.as_ref().map_or(String::new(), |j| {
        j["msg"].as_str().unwrap_or_default().to_string()
    })
}

/// The store after `id` took `ips` (set order), with `last` the last reserved per set.
fn store_with(id: &str, ips: &[&str], last: &[&str]) -> BTreeMap<String, String> {
    let mut want = files(&[("lock", "")]);
    for (i, ip) in last.iter().enumerate() {
        want.insert(format!("last_reserved_ip.{i}"), ip.to_string());
    }
    for ip in ips {
        want.insert(ip.to_string(), format!("{id}\r\neth0"));
    }
    want
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("hl-versions");
    for (n, v) in (1..).zip(ALL) {
        let tmp = TempDir::new(&format!("hl-{v}"));
        let c = conf(
            v,
            tmp.path(),
            json!({"ranges": [[{"subnet": format!("10.60.{n}.0/24")}],
                              [{"subnet": format!("2001:db8:60:{n}::/64")}]],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "2001:db8::/32"}]}),
        );
        let (ip4, ip6) = (format!("10.60.{n}.2"), format!("2001:db8:60:{n}::2"));
        let (gw4, gw6) = (format!("10.60.{n}.1"), format!("2001:db8:60:{n}::1"));
        let id = format!("ctr-{v}");
        let add = call(ours(), &pair, "ADD", &id, &c);
        let want = expected_result(
            v,
            &[
                (&format!("{ip4}/24"), Some(&gw4)),
                (&format!("{ip6}/64"), Some(&gw6)),
            ],
            &[("0.0.0.0/0", None), ("2001:db8::/32", None)],
            json!({}),
        );
        assert_eq!(add.result(), &want, "ADD in {v}");
        let store = tmp.join(NET);
        let held = store_with(&id, &[&ip4, &ip6], &[&ip4, &ip6]);
        assert_eq!(snapshot(&store), held, "store after ADD in {v}");

        let check = call(ours(), &pair, "CHECK", &id, &with_prev(&c, add.result()));
        if Version::parse(v).unwrap() >= Version::V0_4_0 {
            assert_eq!(check.ok().stdout, "", "CHECK in {v}");
            let mut partial = add.result().clone();
            partial["ips"].as_array_mut().unwrap().pop();
            let bad = call(ours(), &pair, "CHECK", &id, &with_prev(&c, &partial));
            assert_ne!(bad.code, 0, "CHECK with a prevResult lacking {ip6}: {bad}");
            assert!(msg(&bad).contains(&format!("address {ip6} reserved for this container")));
        } else {
            check.expect_error(1);
        }

        let released = store_with(&id, &[], &[&ip4, &ip6]);
        for round in ["DEL", "second DEL"] {
            let del = call(ours(), &pair, "DEL", &id, &c);
            assert_eq!(del.ok().stdout, "", "{round} in {v}");
            assert_eq!(snapshot(&store), released, "store after {round} in {v}");
        }
        let next = call(ours(), &pair, "ADD", "ctr-next", &c);
        assert_eq!(
            first_address(next.result()),
            format!("10.60.{n}.3/24"),
            "allocation goes on after the last reserved address in {v}"
        );
    }
}

#[test]
fn status_reports_an_exhausted_range_set_with_code_50() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("hl-status");
    let tmp = TempDir::new("hl-status");
    let c = conf(
        "1.1.0",
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.61.0.0/24"}], [{"subnet": "10.62.0.0/30"}]]}),
    );
    assert_eq!(call(ours(), &pair, "STATUS", "", &c).ok().stdout, "");
    assert!(tree(tmp.path()).is_empty(), "STATUS wrote something");
    call(ours(), &pair, "ADD", "a", &c).ok();
    let status = call(ours(), &pair, "STATUS", "", &c);
    status.expect_error(50);
    assert_eq!(
        msg(&status),
        "no IP addresses available in range set ipam.ranges[1] (10.62.0.1-10.62.0.2)"
    );
    let b = call(ours(), &pair, "ADD", "b", &c);
    b.expect_error(999);
    assert_eq!(
        msg(&b),
        "failed to allocate for range 1: no IP addresses available in range set: 10.62.0.1-10.62.0.2"
    );
    // b's 10.61.0.3 was given back; as in the reference, last_reserved_ip.0 stays on it.
    let only_a = store_with(
        "a",
        &["10.61.0.2", "10.62.0.2"],
        &["10.61.0.3", "10.62.0.2"],
    );
    assert_eq!(snapshot(&tmp.join(NET)), only_a);
    call(ours(), &pair, "DEL", "a", &c).ok();
    assert_eq!(call(ours(), &pair, "STATUS", "", &c).ok().stdout, "");
}

#[test]
fn gc_frees_exactly_the_attachments_not_listed() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("hl-gc");
    let tmp = TempDir::new("hl-gc");
    let mut c = conf("1.1.0", tmp.path(), json!({"subnet": "10.61.0.0/24"}));
    for (id, ifname) in [("keep", "eth0"), ("gone", "eth0"), ("keep", "eth1")] {
        run(ours(), &pair, "ADD", id, ifname, &c).ok();
    }
    let store = tmp.join(NET);
    // Entries of old reference versions hold the container ID alone.
    std::fs::write(store.join("10.61.0.200"), "gone").unwrap();
    std::fs::write(store.join("10.61.0.201"), "keep").unwrap();
    assert_eq!(call(ours(), &pair, "GC", "", &c).ok().stdout, "");
    assert_eq!(
        snapshot(&store).len(),
        7,
        "GC without the list freed something"
    );

    c["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    assert_eq!(call(ours(), &pair, "GC", "", &c).ok().stdout, "");
    let mut want = store_with("keep", &["10.61.0.2"], &["10.61.0.4"]);
    want.insert("10.61.0.201".into(), "keep".into());
    assert_eq!(snapshot(&store), want);

    c["cni.dev/valid-attachments"] = json!([]);
    call(ours(), &pair, "GC", "", &c).ok();
    assert_eq!(snapshot(&store), store_with("", &[], &["10.61.0.4"]));
}

#[test]
fn sixty_four_concurrent_adds_then_dels() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("hl-par");
    let tmp = TempDir::new("hl-par");
    let c = conf("1.1.0", tmp.path(), json!({"subnet": "10.64.0.0/24"}));
    let adds = parallel(64, |i| call(ours(), &pair, "ADD", &format!("par{i}"), &c));
    let mut want = files(&[("lock", "")]);
    let mut seen = BTreeSet::new();
    for (i, out) in adds.iter().enumerate() {
        let addr = first_address(out.result());
        let ip = addr.strip_suffix("/24").expect("a /24 address").to_string();
        want.insert(ip.clone(), format!("par{i}\r\neth0"));
        seen.insert(ip);
    }
    let expected: BTreeSet<String> = (2..66).map(|h| format!("10.64.0.{h}")).collect();
    assert_eq!(seen, expected, "64 distinct addresses, none skipped");
    let mut store = snapshot(&tmp.join(NET));
    let last = store
        .remove("last_reserved_ip.0")
        .expect("last_reserved_ip.0");
    assert!(expected.contains(&last), "last reserved {last}");
    assert_eq!(store, want);

    let dels = parallel(64, |i| call(ours(), &pair, "DEL", &format!("par{i}"), &c));
    dels.iter().for_each(|d| assert_eq!(d.ok().stdout, ""));
    let left: Vec<String> = snapshot(&tmp.join(NET)).into_keys().collect();
    assert_eq!(left, ["last_reserved_ip.0", "lock"]);
}

/// Runs `f(0..n)` on `n` threads at once; the outcomes in index order.
pub fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn names_cannot_leave_the_data_dir() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("hl-escape");
    let tmp = TempDir::new("hl-escape");
    let data = tmp.join("data/nested");
    let outside = format!("/tmp/cni-e2e-escape-{}", std::process::id());
    let good = conf("1.1.0", &data, json!({"subnet": "10.67.0.0/24"}));
    let verbs = ["ADD", "CHECK", "DEL", "GC", "STATUS"];
    for name in [
        "..",
        "../escape",
        "../../escape",
        &outside,
        "a/../../escape",
        "sub/dir",
        ".",
    ] {
        let mut c = good.clone();
        c["name"] = name.into();
        c["cni.dev/valid-attachments"] = json!([]);
        for verb in verbs {
            let out = call(ours(), &pair, verb, "ctr", &c);
            out.expect_error(7);
            assert!(
                msg(&out).contains("invalid network name"),
                "{verb} {name}: {out}"
            );
        }
    }
    for id in ["..", "../escape", "../../escape", &outside, "a/b"] {
        for verb in &verbs[..3] {
            let out = call(ours(), &pair, verb, id, &good);
            out.expect_error(4);
            assert!(
                msg(&out).contains("invalid characters in containerID"),
                "{out}"
            );
        }
    }
    for ifname in ["..", "../escape", "a/b"] {
        let out = run(ours(), &pair, "ADD", "ctr", ifname, &good);
        out.expect_error(4);
        assert!(msg(&out).contains("invalid interface name"), "{out}");
    }
    assert!(
        tree(tmp.path()).is_empty(),
        "written: {:?}",
        tree(tmp.path())
    );
    assert!(!Path::new(&outside).exists(), "{outside} was created");
    assert!(!Path::new("/tmp/escape").exists() && !Path::new("/escape").exists());
}

/// Every `testdata/config/host-local/bad-*.json` fails through the binary with code 7 and
/// its `_expect` text, for ADD and (unless only the requested address is wrong) DEL, and
/// writes nothing.
#[test]
fn bad_configs_fail_with_code_7_naming_the_field() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("hl-bad");
    let tmp = TempDir::new("hl-bad");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/config/host-local");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.starts_with("bad-") {
            continue;
        }
        let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let want = c["_expect"].as_str().expect("_expect").to_string();
        if c["ipam"].is_object() {
            c["ipam"]["dataDir"] = tmp.join("data").to_str().unwrap().into();
        }
        let add = call(ours(), &pair, "ADD", "bad", &c);
        add.expect_error(7);
        assert!(msg(&add).contains(&want), "{name}: want {want:?}:\n{add}");
        let del = call(ours(), &pair, "DEL", "bad", &c);
        if name == "bad-missing-ipam.json" {
            del.expect_error(7);
            assert!(msg(&del).contains(&want), "{name} DEL: {del}");
        } else {
            // DEL reads only where the store is; ranges and requests do not matter to it.
            assert_eq!(del.ok().stdout, "", "{name}");
        }
        count += 1;
    }
    assert!(count >= 15, "only {count} bad configs");
    assert!(
        tree(tmp.path()).is_empty(),
        "written: {:?}",
        tree(tmp.path())
    );
}

#[test]
fn allocation_failures_name_the_address_and_the_range() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("hl-alloc-fail");
    let tmp = TempDir::new("hl-alloc-fail");
    let mut c = conf("1.0.0", tmp.path(), json!({"subnet": "10.68.0.0/24"}));
    c["runtimeConfig"] = json!({"ips": ["10.68.0.9/24"]});
    assert_eq!(
        first_address(call(ours(), &pair, "ADD", "a", &c).result()),
        "10.68.0.9/24"
    );
    let taken = call(ours(), &pair, "ADD", "b", &c);
    taken.expect_error(999);
    assert!(
        msg(&taken).contains("requested IP address 10.68.0.9 is not available in range set 10.68.0.1-10.68.0.254: already reserved"),
        "{taken}"
    );
    let outside = ours()
        .args("IP=10.69.0.9")
        .command("ADD")
        .container_id("c")
        .netns(pair.container.path())
        .ifname("eth0")
        .config(conf("1.0.0", tmp.path(), json!({"subnet": "10.68.0.0/24"})))
        .run_in(&pair.host);
    outside.expect_error(7);
    assert!(
        msg(&outside)
            .starts_with("CNI_ARGS IP: requested IP address 10.69.0.9 is not in any range set"),
        "{outside}"
    );

    let tiny = conf(
        "1.0.0",
        &tmp.join("tiny"),
        json!({"subnet": "10.70.0.0/30"}),
    );
    call(ours(), &pair, "ADD", "a", &tiny).ok();
    let full = call(ours(), &pair, "ADD", "b", &tiny);
    full.expect_error(999);
    assert_eq!(
        msg(&full),
        "failed to allocate for range 0: no IP addresses available in range set: 10.70.0.1-10.70.0.2"
    );
}

#[test]
fn del_without_the_ranges_of_add_releases() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("hl-del-ranges");
    let tmp = TempDir::new("hl-del-ranges");
    // The ranges come only from the ipRanges capability, which the runtime may not pass to DEL.
    let mut add_conf = conf("1.1.0", tmp.path(), json!({}));
    add_conf["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.61.0.0/24"}]]});
    let add = call(ours(), &pair, "ADD", "ctr-ranges", &add_conf);
    assert_eq!(first_address(add.result()), "10.61.0.2/24");
    let store = tmp.join(NET);
    assert!(snapshot(&store).contains_key("10.61.0.2"), "reserved");
    let del_conf = conf("1.1.0", tmp.path(), json!({}));
    for round in ["DEL", "second DEL"] {
        let del = call(ours(), &pair, "DEL", "ctr-ranges", &del_conf);
        assert_eq!(del.ok().stdout, "", "{round}");
        assert_eq!(
            snapshot(&store),
            store_with("ctr-ranges", &[], &["10.61.0.2"]),
            "store after {round}"
        );
    }
}
