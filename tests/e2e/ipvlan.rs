//! ipvlan, end to end on a fake host with a "LAN" (support::lan). This machine's kernel lacks
//! ipvlan, so every test starts with the probe and runs in the VM rig: ADD -> CHECK -> DEL ->
//! DEL in every spec version (the container shares the master's MAC); l2 traffic between two
//! containers and to the LAN machine, l3 traffic between two containers; mode and flag read
//! back; the master inside the container; chained mode (master and addresses from
//! `prevResult`, no IPAM); the DEL matrix, including no master, no default route and no
//! `prevResult` (where the reference fails); config errors leaving nothing; GC and STATUS.

use crate::macvlan::{lan_ipam, links_but_lo};
use crate::podnet::{
    Attachment, VERSIONS, addresses, check_del_del, check_del_del_in, reservations,
    result_addresses, versioned, with_prev,
};
use crate::support::lan::{Lan, link_info};
use crate::support::traffic::ping;
use crate::support::{Cni, Farm, TempDir, TestNs, kernel_supports, require_root, skip};
use serde_json::{Value, json};
use std::time::Duration;

const NET: &str = "ipvnet";

/// An ipvlan config on `lan0` (1.1.0), host-local on the LAN when `data` is given, + `extra`.
fn conf(lan: &Lan, data: Option<&TempDir>, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": NET, "type": "ipvlan", "master": "lan0"});
    if let Some(d) = data {
        c["ipam"] = lan_ipam(d, lan);
    }
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn ours(ctr: &TestNs, cid: &str) -> Attachment {
    Attachment::ours("ipvlan", cid, ctr.path(), "eth0")
}

/// `ip -d link show dev` text (for the flag, which the JSON spells per flag).
fn details(ns: &TestNs, dev: &str) -> String {
    ns.run(["ip", "-d", "link", "show", "dev", dev])
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    if !kernel_supports("ipvlan") {
        skip!("kernel lacks ipvlan");
    }
    for version in VERSIONS {
        let lan = Lan::new(&format!("ipv-v{version}"), "192.168.81");
        let ctr = TestNs::new(&format!("ipv-v{version}-ctr"));
        let data = TempDir::new("ipv-versions");
        let c = versioned(&conf(&lan, Some(&data), json!({})), version);
        let at = ours(&ctr, "c1");
        let r = at.run(&lan.host, "ADD", &c).result().clone();
        assert_eq!(result_addresses(&r), ["192.168.81.100/24"], "{version}");
        assert_eq!(addresses(&ctr, "eth0"), ["192.168.81.100/24"]);
        let (kind, d) = link_info(&ctr, "eth0");
        assert_eq!((kind.as_str(), &d["mode"]), ("ipvlan", &json!("l2")));
        let master_mac = lan.host.link("lan0").unwrap()["address"].clone();
        assert_eq!(ctr.link("eth0").unwrap()["address"], master_mac);
        if version >= "0.3.0" {
            let ifs = r["interfaces"].as_array().unwrap();
            assert_eq!(ifs.len(), 1, "{r}");
            assert_eq!(ifs[0]["name"], "eth0");
            assert_eq!(ifs[0]["mac"], master_mac);
            assert_eq!(ifs[0]["sandbox"], ctr.path().to_str().unwrap());
            assert_eq!(r["ips"][0]["interface"], 0);
        }
        check_del_del_in(version, &at, &lan.host, &c, &r);
        assert!(links_but_lo(&ctr).is_empty());
        assert!(reservations(&data, NET).is_empty());
        assert_eq!(links_but_lo(&lan.host), ["lan0"]);
    }
}

/// l2: two containers and the LAN machine reach each other; l3 (private flag read back): two
/// containers on one master reach each other without ARP.
#[test]
fn l2_and_l3_traffic_between_two_containers() {
    if !require_root() {
        return;
    }
    if !kernel_supports("ipvlan") {
        skip!("kernel lacks ipvlan");
    }
    let within = Duration::from_secs(10);
    let lan = Lan::new("ipv-l2", "192.168.82");
    let (a, b) = (TestNs::new("ipv-l2-a"), TestNs::new("ipv-l2-b"));
    let data = TempDir::new("ipv-l2");
    let c = conf(&lan, Some(&data), json!({"mode": "l2", "mtu": 1400}));
    let ra = ours(&a, "a").run(&lan.host, "ADD", &c).result().clone();
    let rb = ours(&b, "b").run(&lan.host, "ADD", &c).result().clone();
    assert_eq!(a.link("eth0").unwrap()["mtu"], 1400);
    for (ns, to) in [
        (&a, "192.168.82.101"),
        (&b, "192.168.82.100"),
        (&a, "192.168.82.1"),
        (&lan.lan, "192.168.82.101"),
    ] {
        assert!(ping(ns, to, within), "l2: {} -> {to}", ns.label());
    }
    check_del_del(&ours(&a, "a"), &lan.host, &c, &ra);
    check_del_del(&ours(&b, "b"), &lan.host, &c, &rb);

    let (x, y) = (TestNs::new("ipv-l3-x"), TestNs::new("ipv-l3-y"));
    let data3 = TempDir::new("ipv-l3");
    let mut c3 = conf(&lan, None, json!({"mode": "l3", "flag": "bridge"}));
    c3["ipam"] = json!({"type": "host-local", "dataDir": data3.path(),
        "ranges": [[{"subnet": "10.82.3.0/24"}]]});
    let rx = ours(&x, "x").run(&lan.host, "ADD", &c3).result().clone();
    let ry = ours(&y, "y").run(&lan.host, "ADD", &c3).result().clone();
    assert_eq!(link_info(&x, "eth0").1["mode"], "l3");
    assert!(
        details(&x, "eth0").contains("bridge"),
        "{}",
        details(&x, "eth0")
    );
    assert!(ping(&x, "10.82.3.3", within), "l3: x -> y");
    assert!(ping(&y, "10.82.3.2", within), "l3: y -> x");
    // CHECK reads mode and flag back: another flag in the config is reported.
    let mut private = with_prev(&c3, &rx);
    private["flag"] = json!("private");
    let out = ours(&x, "x").run(&lan.host, "CHECK", &private);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains("flag bridge does not match expected value: private"),
        "{out}"
    );
    check_del_del(&ours(&x, "x"), &lan.host, &c3, &rx);
    check_del_del(&ours(&y, "y"), &lan.host, &c3, &ry);
    assert!(reservations(&data, NET).is_empty() && reservations(&data3, NET).is_empty());

    let z = TestNs::new("ipv-l3s-z");
    let cp = conf(&lan, Some(&data), json!({"mode": "l3s", "flag": "private"}));
    let rz = ours(&z, "z").run(&lan.host, "ADD", &cp).result().clone();
    assert_eq!(link_info(&z, "eth0").1["mode"], "l3s");
    assert!(
        details(&z, "eth0").contains("private"),
        "{}",
        details(&z, "eth0")
    );
    check_del_del(&ours(&z, "z"), &lan.host, &cp, &rz);
}

/// Chained: no `master`, no IPAM; the master is `prevResult`'s interface and its addresses
/// go on the ipvlan; the result's interfaces are replaced. DEL then needs nothing of that.
#[test]
fn chained_master_and_addresses_from_prev_result() {
    if !require_root() {
        return;
    }
    if !kernel_supports("ipvlan") {
        skip!("kernel lacks ipvlan");
    }
    let lan = Lan::new("ipv-chain", "192.168.83");
    let ctr = TestNs::new("ipv-chain-ctr");
    let mut c = conf(&lan, None, json!({}));
    c.as_object_mut().unwrap().remove("master");
    let prev = json!({"cniVersion": "1.1.0", "interfaces": [{"name": "lan0"}],
        "ips": [{"address": "192.168.83.40/24", "gateway": "192.168.83.1", "interface": 0}],
        "routes": [{"dst": "10.83.0.0/16"}]});
    let at = ours(&ctr, "c1");
    let r = at
        .run(&lan.host, "ADD", &with_prev(&c, &prev))
        .result()
        .clone();
    assert_eq!(addresses(&ctr, "eth0"), ["192.168.83.40/24"]);
    assert_eq!(r["interfaces"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["ips"][0]["interface"], 0);
    let routes = ctr.run(["ip", "-4", "route"]);
    assert!(
        routes.contains("10.83.0.0/16 via 192.168.83.1 dev eth0"),
        "{routes}"
    );
    assert!(ping(&ctr, "192.168.83.1", Duration::from_secs(10)));
    at.run(&lan.host, "CHECK", &with_prev(&c, &r)).ok();
    // DEL: no master, no prevResult, no default route in the host.
    at.run(&lan.host, "DEL", &c).ok();
    at.run(&lan.host, "DEL", &c).ok();
    assert!(links_but_lo(&ctr).is_empty());
    // No IPAM and a prevResult without addresses: a config error, nothing created.
    let bare = json!({"cniVersion": "1.1.0", "interfaces": [{"name": "lan0"}]});
    at.run(&lan.host, "ADD", &with_prev(&c, &bare))
        .expect_error(7);
    assert!(links_but_lo(&ctr).is_empty());
}

/// The master inside the container (`linkInContainer`), and the default route's interface.
#[test]
fn master_inside_the_container_and_default_master() {
    if !require_root() {
        return;
    }
    if !kernel_supports("ipvlan") {
        skip!("kernel lacks ipvlan");
    }
    let lan = Lan::new("ipv-inside", "192.168.84").with_default_route();
    let ctr = TestNs::new("ipv-inside-ctr");
    let data = TempDir::new("ipv-inside");
    let mut c = conf(&lan, Some(&data), json!({}));
    c.as_object_mut().unwrap().remove("master");
    let at = ours(&ctr, "c1");
    let r = at.run(&lan.host, "ADD", &c).result().clone();
    let eth0 = ctr.link("eth0").unwrap();
    assert_eq!(eth0["link_index"].as_u64(), Some(lan.host_ifindex("lan0")));
    check_del_del(&at, &lan.host, &c, &r);

    let pid = lan.lan.pid().to_string();
    ctr.ip(&[
        "link", "add", "uplink", "type", "veth", "peer", "name", "cpeer", "netns", &pid,
    ]);
    ctr.ip(&["link", "set", "uplink", "up"]);
    let inside = conf(
        &lan,
        Some(&data),
        json!({"master": "uplink", "linkInContainer": true}),
    );
    let net1 = Attachment::ours("ipvlan", "c2", ctr.path(), "net1");
    let r = net1.run(&lan.host, "ADD", &inside).result().clone();
    assert_eq!(ctr.link("net1").unwrap()["link"], "uplink");
    check_del_del(&net1, &lan.host, &inside, &r);
    assert_eq!(links_but_lo(&ctr), ["uplink"]);
    assert!(reservations(&data, NET).is_empty());
}

/// DEL succeeds, twice, and releases the address whatever is already gone.
#[test]
fn del_matrix_releases_the_address() {
    if !require_root() {
        return;
    }
    if !kernel_supports("ipvlan") {
        skip!("kernel lacks ipvlan");
    }
    for what in [
        "netns gone",
        "link gone",
        "master gone",
        "no master, no default route, no prevResult",
        "IPAM store gone",
    ] {
        let lan = Lan::new("ipv-delm", "192.168.85");
        let ctr = TestNs::new("ipv-delm-ctr");
        let data = TempDir::new("ipv-delm");
        let c = conf(&lan, Some(&data), json!({}));
        let at = ours(&ctr, "c1");
        let r = at.run(&lan.host, "ADD", &c).result().clone();
        let mut del = with_prev(&c, &r);
        match what {
            "netns gone" => {}
            "link gone" => {
                ctr.ip(&["link", "del", "eth0"]);
            }
            "master gone" => {
                lan.host.ip(&["link", "del", "lan0"]);
            }
            "IPAM store gone" => std::fs::remove_dir_all(data.join(NET)).unwrap(),
            _ => {
                del = c.clone();
                del.as_object_mut().unwrap().remove("master");
            }
        }
        // The netns path stays in CNI_NETNS; the namespace behind it goes.
        let ctr = (what != "netns gone").then_some(ctr);
        for _ in 0..2 {
            let out = at.run(&lan.host, "DEL", &del);
            assert_eq!(out.code, 0, "{what}: {out}");
        }
        if let Some(ctr) = ctr {
            assert!(links_but_lo(&ctr).is_empty(), "{what}");
        }
        assert!(reservations(&data, NET).is_empty(), "{what}: address kept");
    }
}

/// Bad mode or flag, a missing master, an MTU above the master's: code 7, nothing left;
/// GC and STATUS go to IPAM.
#[test]
fn config_errors_leave_nothing_gc_and_status() {
    if !require_root() {
        return;
    }
    if !kernel_supports("ipvlan") {
        skip!("kernel lacks ipvlan");
    }
    let lan = Lan::new("ipv-bad", "192.168.86");
    let ctr = TestNs::new("ipv-bad-ctr");
    let data = TempDir::new("ipv-bad");
    for (extra, want) in [
        (json!({"mode": "l4"}), "unknown ipvlan mode"),
        (json!({"flag": "passthru"}), "unknown ipvlan flag"),
        (
            json!({"master": "nosuch0"}),
            "failed to lookup master \"nosuch0\"",
        ),
        (
            json!({"mtu": 9000}),
            "invalid MTU 9000, must be [0, master MTU(1500)]",
        ),
    ] {
        let out = ours(&ctr, "c1").run(&lan.host, "ADD", &conf(&lan, Some(&data), extra));
        let msg = out.expect_error(7)["msg"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "want {want:?}: {out}");
        assert!(links_but_lo(&ctr).is_empty() && reservations(&data, NET).is_empty());
    }
    let out = ours(&ctr, "c1").run(&lan.host, "ADD", &conf(&lan, None, json!({})));
    out.expect_error(7);
    let c = conf(&lan, Some(&data), json!({}));
    ours(&ctr, "keep").run(&lan.host, "ADD", &c).ok();
    let other = TestNs::new("ipv-bad-other");
    Attachment::ours("ipvlan", "stale", other.path(), "eth0")
        .run(&lan.host, "ADD", &c)
        .ok();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let call = |verb: &str, c: &Value| {
        Cni::new(Farm::shared(), "ipvlan")
            .command(verb)
            .config(c)
            .run_in(&lan.host)
    };
    call("GC", &gc).ok();
    assert_eq!(reservations(&data, NET), ["192.168.86.100"]);
    call("STATUS", &c).ok();
    ours(&ctr, "keep").run(&lan.host, "DEL", &c).ok();
    Attachment::ours("ipvlan", "stale", other.path(), "eth0")
        .run(&lan.host, "DEL", &c)
        .ok();
    assert!(reservations(&data, NET).is_empty());
    assert!(links_but_lo(&ctr).is_empty() && links_but_lo(&other).is_empty());
}
