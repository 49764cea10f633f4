//! vlan, end to end on a fake host with a "LAN" (support::lan) whose machine has a VLAN
//! sub-interface `eth0.<id>` holding the VLAN's gateway: a ping from the container is answered
//! only when its frames arrive on the master's peer tagged with the right id. This machine's
//! kernel lacks 8021q, so every test starts with the probe and runs in the VM rig: ADD ->
//! CHECK -> DEL -> DEL in every spec version; VLAN id and MTU read back; CHECK noticing
//! another id; chained master and the master inside the container; the DEL matrix with the
//! master gone (where the reference fails); config errors (vlanId 5000, no master, MTU above
//! the master's, no IPAM) leaving nothing; GC and STATUS.

use crate::macvlan::links_but_lo;
use crate::podnet::{
    Attachment, VERSIONS, addresses, check_del_del, check_del_del_in, reservations,
    result_addresses, versioned, with_prev,
};
use crate::support::lan::{Lan, link_info};
use crate::support::traffic::ping;
use crate::support::{Cni, Farm, TempDir, TestNs, kernel_supports, require_root, skip};
use serde_json::{Value, json};
use std::time::Duration;

const NET: &str = "vlannet";

/// A LAN whose machine also answers on VLAN `id` as `10.<third>.<id % 256>.1/24`.
fn tagged_lan(label: &str, third: u8, id: u16) -> Lan {
    let lan = Lan::new(label, &format!("192.168.{third}"));
    let sub = format!("eth0.{id}");
    lan.lan.ip(&[
        "link",
        "add",
        "link",
        "eth0",
        "name",
        &sub,
        "type",
        "vlan",
        "id",
        &id.to_string(),
    ]);
    lan.lan
        .ip(&["addr", "add", &vlan_addr(third, id, 1), "dev", &sub]);
    lan.lan.ip(&["link", "set", &sub, "up"]);
    lan
}

/// `10.<third>.<id % 256>.<last>/24`.
fn vlan_addr(third: u8, id: u16, last: u8) -> String {
    format!("10.{third}.{}.{last}/24", id % 256)
}

/// A vlan config on `lan0` with VLAN `id` and host-local on that VLAN's subnet, + `extra`.
fn conf(data: &TempDir, third: u8, id: u16, extra: Value) -> Value {
    let net = |last: u8| format!("10.{third}.{}.{last}", id % 256);
    let mut c = json!({
        "cniVersion": "1.1.0", "name": NET, "type": "vlan", "master": "lan0", "vlanId": id,
        "ipam": {"type": "host-local", "dataDir": data.path(), "ranges": [[{
            "subnet": format!("10.{third}.{}.0/24", id % 256),
            "rangeStart": net(100), "rangeEnd": net(199), "gateway": net(1)}]]}
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn ours(ctr: &TestNs, cid: &str) -> Attachment {
    Attachment::ours("vlan", cid, ctr.path(), "eth0")
}

#[test]
fn add_check_del_del_in_every_version_with_tagged_traffic() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vlan") {
        skip!("kernel lacks vlan");
    }
    for version in VERSIONS {
        let lan = tagged_lan(&format!("vl-v{version}"), 91, 100);
        let ctr = TestNs::new(&format!("vl-v{version}-ctr"));
        let data = TempDir::new("vl-versions");
        let c = versioned(&conf(&data, 91, 100, json!({})), version);
        let at = ours(&ctr, "c1");
        let r = at.run(&lan.host, "ADD", &c).result().clone();
        assert_eq!(result_addresses(&r), ["10.91.100.100/24"], "{version}");
        assert_eq!(addresses(&ctr, "eth0"), ["10.91.100.100/24"]);
        let (kind, d) = link_info(&ctr, "eth0");
        assert_eq!((kind.as_str(), &d["id"]), ("vlan", &json!(100)), "{d}");
        if version >= "0.3.0" {
            let ifs = r["interfaces"].as_array().unwrap();
            assert_eq!(ifs.len(), 1, "{r}");
            assert_eq!(ifs[0]["mac"], ctr.link("eth0").unwrap()["address"]);
            assert_eq!(ifs[0]["sandbox"], ctr.path().to_str().unwrap());
        }
        // Answered only on eth0.100 of the LAN machine: the frames carry tag 100.
        assert!(
            ping(&ctr, "10.91.100.1", Duration::from_secs(10)),
            "{version}"
        );
        assert!(ping(&lan.lan, "10.91.100.100", Duration::from_secs(10)));
        check_del_del_in(version, &at, &lan.host, &c, &r);
        assert!(links_but_lo(&ctr).is_empty());
        assert!(reservations(&data, NET).is_empty());
        assert_eq!(links_but_lo(&lan.host), ["lan0"]);
    }
}

/// Another VLAN id reaches nothing on VLAN 100's subnet; MTU read back; CHECK reports an id
/// that differs from the config.
#[test]
fn ids_isolate_and_check_reads_the_id_back() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vlan") {
        skip!("kernel lacks vlan");
    }
    let lan = tagged_lan("vl-ids", 92, 100);
    let (a, b) = (TestNs::new("vl-ids-a"), TestNs::new("vl-ids-b"));
    let data = TempDir::new("vl-ids");
    let c100 = conf(&data, 92, 100, json!({"mtu": 1400}));
    let ra = ours(&a, "a").run(&lan.host, "ADD", &c100).result().clone();
    assert_eq!(a.link("eth0").unwrap()["mtu"], 1400);
    assert!(ping(&a, "10.92.100.1", Duration::from_secs(10)));
    // VLAN 200 with an address in VLAN 100's subnet: untagged for 100, nobody answers.
    let mut c200 = conf(&data, 92, 100, json!({"vlanId": 200}));
    c200["ipam"] = json!({"type": "static", "addresses": [{"address": "10.92.100.150/24"}]});
    let rb = ours(&b, "b").run(&lan.host, "ADD", &c200).result().clone();
    assert_eq!(link_info(&b, "eth0").1["id"], 200);
    assert!(
        !ping(&b, "10.92.100.1", Duration::from_secs(2)),
        "VLAN 200 reached VLAN 100"
    );
    let mut wrong = with_prev(&c100, &ra);
    wrong["vlanId"] = json!(101);
    let out = ours(&a, "a").run(&lan.host, "CHECK", &wrong);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains("has VLAN id 100, the configuration says 101"),
        "{out}"
    );
    check_del_del(&ours(&a, "a"), &lan.host, &c100, &ra);
    check_del_del(&ours(&b, "b"), &lan.host, &c200, &rb);
    assert!(reservations(&data, NET).is_empty());
}

/// Chained (no `master`, `prevResult` names the host-side interface) and `linkInContainer`.
#[test]
fn chained_master_and_master_inside_the_container() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vlan") {
        skip!("kernel lacks vlan");
    }
    let lan = tagged_lan("vl-chain", 93, 300);
    let ctr = TestNs::new("vl-chain-ctr");
    let data = TempDir::new("vl-chain");
    let mut c = conf(&data, 93, 300, json!({}));
    c.as_object_mut().unwrap().remove("master");
    let out = ours(&ctr, "c1").run(&lan.host, "ADD", &c);
    let msg = out.expect_error(7)["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("\"master\" field is required"), "{out}");
    let prev = json!({"cniVersion": "1.1.0", "interfaces": [{"name": "lan0"}]});
    let at = ours(&ctr, "c1");
    let r = at
        .run(&lan.host, "ADD", &with_prev(&c, &prev))
        .result()
        .clone();
    assert_eq!(
        ctr.link("eth0").unwrap()["link_index"].as_u64(),
        Some(lan.host_ifindex("lan0"))
    );
    assert!(
        ping(&ctr, "10.93.44.1", Duration::from_secs(10)),
        "VLAN 300 = 44 mod 256"
    );
    check_del_del(&at, &lan.host, &c, &r);

    let pid = lan.lan.pid().to_string();
    ctr.ip(&[
        "link", "add", "uplink", "type", "veth", "peer", "name", "cpeer", "netns", &pid,
    ]);
    ctr.ip(&["link", "set", "uplink", "up"]);
    lan.lan.ip(&["link", "set", "cpeer", "up"]);
    lan.lan.ip(&[
        "link", "add", "link", "cpeer", "name", "cpeer.7", "type", "vlan", "id", "7",
    ]);
    lan.lan
        .ip(&["addr", "add", "10.93.7.1/24", "dev", "cpeer.7"]);
    lan.lan.ip(&["link", "set", "cpeer.7", "up"]);
    let inside = conf(
        &data,
        93,
        7,
        json!({"master": "uplink", "linkInContainer": true}),
    );
    let net1 = Attachment::ours("vlan", "c2", ctr.path(), "net1");
    let r = net1.run(&lan.host, "ADD", &inside).result().clone();
    assert_eq!(ctr.link("net1").unwrap()["link"], "uplink");
    assert!(ping(&ctr, "10.93.7.1", Duration::from_secs(10)));
    check_del_del(&net1, &lan.host, &inside, &r);
    assert_eq!(links_but_lo(&ctr), ["uplink"]);
    assert!(reservations(&data, NET).is_empty());
}

/// DEL succeeds, twice, and releases the address whatever is already gone (the master too).
#[test]
fn del_matrix_releases_the_address() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vlan") {
        skip!("kernel lacks vlan");
    }
    for what in [
        "netns gone",
        "link gone",
        "master gone",
        "prevResult missing",
        "IPAM store gone",
    ] {
        let lan = tagged_lan("vl-delm", 94, 100);
        let ctr = TestNs::new("vl-delm-ctr");
        let data = TempDir::new("vl-delm");
        let c = conf(&data, 94, 100, json!({}));
        let at = ours(&ctr, "c1");
        let r = at.run(&lan.host, "ADD", &c).result().clone();
        let mut del = with_prev(&c, &r);
        match what {
            "link gone" => {
                ctr.ip(&["link", "del", "eth0"]);
            }
            "master gone" => {
                lan.host.ip(&["link", "del", "lan0"]);
            }
            "prevResult missing" => del = c.clone(),
            "IPAM store gone" => std::fs::remove_dir_all(data.join(NET)).unwrap(),
            _ => {}
        }
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

/// vlanId 5000, a missing master, an MTU above the master's, no IPAM: code 7, nothing left;
/// GC and STATUS go to IPAM.
#[test]
fn config_errors_leave_nothing_gc_and_status() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vlan") {
        skip!("kernel lacks vlan");
    }
    let lan = tagged_lan("vl-bad", 95, 100);
    let ctr = TestNs::new("vl-bad-ctr");
    let data = TempDir::new("vl-bad");
    let mut no_ipam = conf(&data, 95, 100, json!({}));
    no_ipam.as_object_mut().unwrap().remove("ipam");
    for (c, want) in [
        (
            conf(&data, 95, 100, json!({"vlanId": 5000})),
            "invalid VLAN ID 5000",
        ),
        (
            conf(&data, 95, 100, json!({"master": "nosuch0"})),
            "failed to lookup master \"nosuch0\"",
        ),
        (
            conf(&data, 95, 100, json!({"mtu": 9000})),
            "invalid MTU 9000, must be [0, master MTU(1500)]",
        ),
        (no_ipam, "vlan needs an \"ipam\" section"),
    ] {
        let out = ours(&ctr, "c1").run(&lan.host, "ADD", &c);
        let msg = out.expect_error(7)["msg"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "want {want:?}: {out}");
        assert!(links_but_lo(&ctr).is_empty() && reservations(&data, NET).is_empty());
    }
    let c = conf(&data, 95, 100, json!({}));
    let r = ours(&ctr, "keep")
        .run(&lan.host, "ADD", &c)
        .result()
        .clone();
    let other = TestNs::new("vl-bad-other");
    let stale = Attachment::ours("vlan", "stale", other.path(), "eth0");
    stale.run(&lan.host, "ADD", &c).ok();
    let call = |verb: &str, c: &Value| {
        Cni::new(Farm::shared(), "vlan")
            .command(verb)
            .config(c)
            .run_in(&lan.host)
    };
    call("STATUS", &c).ok();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    call("GC", &gc).ok();
    assert_eq!(reservations(&data, NET), ["10.95.100.100"]);
    check_del_del(&ours(&ctr, "keep"), &lan.host, &c, &r);
    stale.run(&lan.host, "DEL", &c).ok();
    assert!(reservations(&data, NET).is_empty());
    assert!(links_but_lo(&ctr).is_empty() && links_but_lo(&other).is_empty());
}
