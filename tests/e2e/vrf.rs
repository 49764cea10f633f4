//! vrf, end to end. Needs a kernel with VRF (this machine's has none): every test that makes
//! one starts with `kernel_supports("vrf")` and skips loudly otherwise; the VM rig runs this
//! module (`vrf::`) in a kernel that has it. Checked with `ip -d -j link` and `ip route show
//! vrf`, plus real traffic through the VRF: the VRF is created with an automatic or given
//! table, the interface enslaved with its IPv6 address kept and its routes moved, shared by
//! two interfaces and deleted with the last; ADD -> CHECK -> DEL -> DEL in every version; DEL
//! when the interface or netns is gone; bad config.

use crate::podnet::{Attachment, VERSIONS, versioned, with_prev};
use crate::support::traffic::ping;
use crate::support::{Pair, TestNs, kernel_supports, require_root, skip};
use serde_json::{Value, json};
use std::time::Duration;

/// `vethN` in the host (10.72.N.1, fd72:N::1) to `ethN` in the container (10.72.N.2,
/// fd72:N::2), with a route to 10.99.N.0/24 via the host in the container's main table.
fn link(pair: &Pair, n: u32) {
    let pid = pair.container.pid().to_string();
    let (h, c) = (format!("veth{n}"), format!("eth{n}"));
    pair.host
        .ip(&["link", "add", &h, "type", "veth", "peer", "name", &c]);
    pair.host.ip(&["link", "set", &c, "netns", &pid]);
    pair.host.sh(&format!(
        "ip addr add 10.72.{n}.1/24 dev {h} && ip addr add fd72:{n}::1/64 dev {h} nodad && ip link set {h} up"
    ));
    pair.container.sh(&format!(
        "ip link set lo up && ip addr add 10.72.{n}.2/24 dev {c} && ip addr add fd72:{n}::2/64 dev {c} nodad && \
         ip link set {c} up && ip route add 10.99.{n}.0/24 via 10.72.{n}.1"
    ));
}

fn prev(pair: &Pair, ifname: &str, n: u32) -> Value {
    json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": ifname, "sandbox": pair.container.path()}],
        "ips": [{"address": format!("10.72.{n}.2/24"), "interface": 0},
                {"address": format!("fd72:{n}::2/64"), "interface": 0}]})
}

fn conf(vrf: &str, table: Option<u32>) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "vrfnet", "type": "vrf", "vrfname": vrf});
    if let Some(t) = table {
        c["table"] = json!(t);
    }
    c
}

/// `(kind, table)` of a link as `ip -d -j link` shows it.
fn vrf_info(ns: &TestNs, name: &str) -> Option<(String, u64)> {
    let l = ns.link(name)?;
    let info = &l["linkinfo"];
    Some((
        info["info_kind"].as_str().unwrap_or("").to_string(),
        info["info_data"]["table"].as_u64().unwrap_or(0),
    ))
}

fn master_of(ns: &TestNs, dev: &str) -> Option<String> {
    ns.link(dev)?["master"].as_str().map(String::from)
}

fn vrf_routes(ns: &TestNs, vrf: &str) -> String {
    ns.run(["ip", "route", "show", "vrf", vrf])
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vrf") {
        skip!("kernel lacks vrf");
    }
    for version in VERSIONS {
        let pair = Pair::new(&format!("vrf-v{version}"));
        link(&pair, 0);
        let at = Attachment::ours("vrf", "v1", pair.container.path(), "eth0");
        let c = versioned(&conf("blue", None), version);
        let out = at.run(&pair.host, "ADD", &with_prev(&c, &prev(&pair, "eth0", 0)));
        assert_eq!(out.result()["cniVersion"], version);
        assert_eq!(
            vrf_info(&pair.container, "blue"),
            Some(("vrf".into(), 1)),
            "{version}"
        );
        assert_eq!(master_of(&pair.container, "eth0").as_deref(), Some("blue"));
        let addrs = pair
            .container
            .run(["ip", "-6", "addr", "show", "dev", "eth0"]);
        assert!(addrs.contains("fd72::2/64"), "IPv6 address kept: {addrs}");
        let routes = vrf_routes(&pair.container, "blue");
        assert!(
            routes.contains("10.99.0.0/24 via 10.72.0.1 dev eth0"),
            "{routes}"
        );
        let main = pair.container.run(["ip", "route", "show", "table", "main"]);
        assert!(
            !main.contains("10.99.0.0"),
            "route moved out of main: {main}"
        );
        if version >= "0.4.0" {
            at.run(&pair.host, "CHECK", &with_prev(&c, &prev(&pair, "eth0", 0)))
                .ok();
        }
        at.run(&pair.host, "DEL", &c).ok();
        assert_eq!(master_of(&pair.container, "eth0"), None);
        assert_eq!(
            vrf_info(&pair.container, "blue"),
            None,
            "the empty VRF is deleted"
        );
        at.run(&pair.host, "DEL", &c).ok();
    }
}

#[test]
fn traffic_through_the_vrf_and_ipv6_kept() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vrf") {
        skip!("kernel lacks vrf");
    }
    let pair = Pair::new("vrf-traffic");
    link(&pair, 0);
    let at = Attachment::ours("vrf", "vt", pair.container.path(), "eth0");
    let c = with_prev(&conf("red", Some(500)), &prev(&pair, "eth0", 0));
    at.run(&pair.host, "ADD", &c).ok();
    assert_eq!(vrf_info(&pair.container, "red"), Some(("vrf".into(), 500)));
    for to in ["10.72.0.1", "fd72::1"] {
        let out = pair
            .container
            .exec(["ping", "-c", "1", "-W", "2", "-I", "red", to]);
        assert!(out.status.success(), "ping {to} through the VRF: {out:?}");
    }
    // Without the VRF's table the host is unreachable from the main table.
    assert!(!ping(&pair.container, "10.72.0.1", Duration::ZERO));
    at.run(&pair.host, "DEL", &c).ok();
    assert!(ping(&pair.container, "10.72.0.1", Duration::from_secs(5)));
}

#[test]
fn shared_vrf_tables_and_conflicts() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vrf") {
        skip!("kernel lacks vrf");
    }
    let pair = Pair::new("vrf-shared");
    link(&pair, 0);
    link(&pair, 1);
    pair.container
        .ip(&["link", "add", "other", "type", "vrf", "table", "1"]);
    let a0 = Attachment::ours("vrf", "s0", pair.container.path(), "eth0");
    let a1 = Attachment::ours("vrf", "s1", pair.container.path(), "eth1");
    let c = conf("green", None);
    a0.run(&pair.host, "ADD", &with_prev(&c, &prev(&pair, "eth0", 0)))
        .ok();
    assert_eq!(
        vrf_info(&pair.container, "green"),
        Some(("vrf".into(), 2)),
        "lowest free table"
    );
    a1.run(&pair.host, "ADD", &with_prev(&c, &prev(&pair, "eth1", 1)))
        .ok();
    assert_eq!(master_of(&pair.container, "eth1").as_deref(), Some("green"));
    // Another table for an existing VRF, and an interface that already has a master.
    let clash = with_prev(&conf("green", Some(77)), &prev(&pair, "eth1", 1));
    a1.run(&pair.host, "ADD", &clash).expect_error(999);
    let again = with_prev(&conf("other", None), &prev(&pair, "eth1", 1));
    a1.run(&pair.host, "ADD", &again).expect_error(999);
    a0.run(&pair.host, "DEL", &c).ok();
    assert!(
        vrf_info(&pair.container, "green").is_some(),
        "eth1 still in it"
    );
    a1.run(&pair.host, "DEL", &c).ok();
    assert_eq!(vrf_info(&pair.container, "green"), None);
    assert!(
        vrf_info(&pair.container, "other").is_some(),
        "another VRF is left alone"
    );
}

#[test]
fn del_when_interface_or_netns_gone() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vrf") {
        skip!("kernel lacks vrf");
    }
    let pair = Pair::new("vrf-gone");
    link(&pair, 0);
    let at = Attachment::ours("vrf", "g0", pair.container.path(), "eth0");
    let c = conf("gone", None);
    at.run(&pair.host, "ADD", &with_prev(&c, &prev(&pair, "eth0", 0)))
        .ok();
    pair.container.ip(&["link", "del", "eth0"]);
    at.run(&pair.host, "DEL", &c).ok();
    assert_eq!(vrf_info(&pair.container, "gone"), None);
    at.netns("/proc/0/ns/net").run(&pair.host, "DEL", &c).ok();
}

/// Needs no VRF: bad config is code 7, DEL without any VRF succeeds.
#[test]
fn bad_config_and_del_without_vrf() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("vrf-bad");
    link(&pair, 0);
    let at = Attachment::ours("vrf", "b0", pair.container.path(), "eth0");
    let mut nameless = conf("x", None);
    nameless.as_object_mut().unwrap().remove("vrfname");
    at.run(
        &pair.host,
        "ADD",
        &with_prev(&nameless, &prev(&pair, "eth0", 0)),
    )
    .expect_error(7);
    at.run(&pair.host, "ADD", &conf("blue", None))
        .expect_error(7);
    at.run(&pair.host, "DEL", &conf("blue", None)).ok();
    assert_eq!(master_of(&pair.container, "eth0"), None);
}
