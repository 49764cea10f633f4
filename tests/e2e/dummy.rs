//! dummy, end to end in a fake host and container netns. This machine's kernel lacks dummy,
//! so every test starts with the probe and runs in the VM rig: ADD -> CHECK -> DEL -> DEL in
//! every spec version with host-local; the v1.9.1 case of a host link named like
//! `CNI_IFNAME`; CHECK noticing a downed link and a missing address; the DEL matrix; no IPAM
//! as code 7 with nothing created; a failed ADD leaving nothing; GC and STATUS.

use crate::macvlan::links_but_lo;
use crate::podnet::{
    Attachment, VERSIONS, addresses, check_del_del_in, ipam, reservations, result_addresses,
    versioned, with_prev,
};
use crate::support::{Cni, Farm, Pair, TempDir, TestNs, kernel_supports, require_root, skip};
use serde_json::{Value, json};

const NET: &str = "dummynet";

fn conf(data: &TempDir) -> Value {
    json!({"cniVersion": "1.1.0", "name": NET, "type": "dummy",
           "ipam": ipam(data, &["10.97.0.0/24"])})
}

fn ours(ctr: &TestNs, cid: &str, ifname: &str) -> Attachment {
    Attachment::ours("dummy", cid, ctr.path(), ifname)
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    if !kernel_supports("dummy") {
        skip!("kernel lacks dummy");
    }
    for version in VERSIONS {
        let pair = Pair::new(&format!("dm-v{version}"));
        let data = TempDir::new("dm-versions");
        let c = versioned(&conf(&data), version);
        let at = ours(&pair.container, "c1", "dummy0");
        let r = at.run(&pair.host, "ADD", &c).result().clone();
        assert_eq!(result_addresses(&r), ["10.97.0.2/24"], "{version}");
        assert_eq!(addresses(&pair.container, "dummy0"), ["10.97.0.2/24"]);
        let link = pair.container.link("dummy0").unwrap();
        assert_eq!(link["linkinfo"]["info_kind"], "dummy");
        assert!(link["flags"].as_array().unwrap().contains(&json!("UP")));
        if version >= "0.3.0" {
            let ifs = r["interfaces"].as_array().unwrap();
            assert_eq!(ifs.len(), 1, "{r}");
            assert_eq!(ifs[0]["name"], "dummy0");
            assert_eq!(ifs[0]["mac"], link["address"]);
            assert_eq!(ifs[0]["sandbox"], pair.container.path().to_str().unwrap());
            assert_eq!(r["ips"][0]["interface"], 0);
        }
        check_del_del_in(version, &at, &pair.host, &c, &r);
        assert!(links_but_lo(&pair.container).is_empty());
        assert!(reservations(&data, NET).is_empty());
        assert!(links_but_lo(&pair.host).is_empty(), "nothing on the host");
    }
}

/// The host already has a link called like `CNI_IFNAME` (plugins v1.9.1): no clash, and the
/// host's link is untouched by ADD and DEL.
#[test]
fn host_link_with_the_same_name() {
    if !require_root() {
        return;
    }
    if !kernel_supports("dummy") {
        skip!("kernel lacks dummy");
    }
    let pair = Pair::new("dm-clash");
    pair.host.ip(&["link", "add", "eth0", "type", "dummy"]);
    let data = TempDir::new("dm-clash");
    let c = conf(&data);
    let at = ours(&pair.container, "c1", "eth0");
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    assert_eq!(addresses(&pair.container, "eth0"), ["10.97.0.2/24"]);
    assert!(addresses(&pair.host, "eth0").is_empty());
    let with = with_prev(&c, &r);
    at.run(&pair.host, "CHECK", &with).ok();
    at.run(&pair.host, "DEL", &with).ok();
    assert_eq!(links_but_lo(&pair.host), ["eth0"]);
    assert!(links_but_lo(&pair.container).is_empty());
}

/// CHECK fails on a downed link or a missing address; DEL succeeds, twice, and releases the
/// address whatever is gone.
#[test]
fn check_notices_and_del_matrix() {
    if !require_root() {
        return;
    }
    if !kernel_supports("dummy") {
        skip!("kernel lacks dummy");
    }
    let pair = Pair::new("dm-check");
    let data = TempDir::new("dm-check");
    let c = conf(&data);
    let at = ours(&pair.container, "c1", "net1");
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    let with = with_prev(&c, &r);
    at.run(&pair.host, "CHECK", &with).ok();
    pair.container.ip(&["link", "set", "net1", "down"]);
    let out = at.run(&pair.host, "CHECK", &with);
    assert!(out.stdout.contains("Interface net1 is down"), "{out}");
    pair.container.ip(&["link", "set", "net1", "up"]);
    pair.container
        .ip(&["addr", "del", "10.97.0.2/24", "dev", "net1"]);
    assert_ne!(at.run(&pair.host, "CHECK", &with).code, 0);
    at.run(&pair.host, "DEL", &with).ok();

    for what in [
        "netns gone",
        "link gone",
        "prevResult missing",
        "IPAM store gone",
    ] {
        let pair = Pair::new("dm-delm");
        let data = TempDir::new("dm-delm");
        let c = conf(&data);
        let at = ours(&pair.container, "c1", "net1");
        let r = at.run(&pair.host, "ADD", &c).result().clone();
        let mut del = with_prev(&c, &r);
        match what {
            "link gone" => {
                pair.container.ip(&["link", "del", "net1"]);
            }
            "prevResult missing" => del = c.clone(),
            "IPAM store gone" => std::fs::remove_dir_all(data.join(NET)).unwrap(),
            _ => {}
        }
        let Pair { host, container } = pair;
        let container = (what != "netns gone").then_some(container);
        for _ in 0..2 {
            let out = at.run(&host, "DEL", &del);
            assert_eq!(out.code, 0, "{what}: {out}");
        }
        if let Some(ctr) = container {
            assert!(links_but_lo(&ctr).is_empty(), "{what}");
        }
        assert!(reservations(&data, NET).is_empty(), "{what}: address kept");
    }
}

/// No IPAM: code 7, nothing created. A failure after the link exists (an unreachable route
/// gateway): link and address gone. GC and STATUS go to IPAM.
#[test]
fn errors_leave_nothing_gc_and_status() {
    if !require_root() {
        return;
    }
    if !kernel_supports("dummy") {
        skip!("kernel lacks dummy");
    }
    let pair = Pair::new("dm-bad");
    let data = TempDir::new("dm-bad");
    let mut no_ipam = conf(&data);
    no_ipam.as_object_mut().unwrap().remove("ipam");
    let at = ours(&pair.container, "c1", "eth0");
    let out = at.run(&pair.host, "ADD", &no_ipam);
    let msg = out.expect_error(7)["msg"].as_str().unwrap().to_string();
    assert_eq!(msg, "dummy interface requires an IPAM configuration");
    assert!(links_but_lo(&pair.container).is_empty());
    let mut unreachable = conf(&data);
    unreachable["ipam"]["routes"] = json!([{"dst": "10.98.0.0/16", "gw": "172.31.255.1"}]);
    assert_ne!(at.run(&pair.host, "ADD", &unreachable).code, 0);
    assert!(links_but_lo(&pair.container).is_empty());
    assert!(reservations(&data, NET).is_empty());

    let c = conf(&data);
    at.run(&pair.host, "ADD", &c).ok();
    let other = TestNs::new("dm-bad-other");
    let stale = ours(&other, "stale", "eth0");
    stale.run(&pair.host, "ADD", &c).ok();
    let call = |verb: &str, c: &Value| {
        Cni::new(Farm::shared(), "dummy")
            .command(verb)
            .config(c)
            .run_in(&pair.host)
    };
    call("STATUS", &c).ok();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    call("GC", &gc).ok();
    assert_eq!(reservations(&data, NET).len(), 1);
    at.run(&pair.host, "DEL", &c).ok();
    stale.run(&pair.host, "DEL", &c).ok();
    assert!(reservations(&data, NET).is_empty());
}
