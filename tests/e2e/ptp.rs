//! ptp, end to end in a fake host and container netns: ADD -> CHECK -> DEL -> DEL in every
//! spec version; the host end's /32 and /128 gateway addresses and host routes; the
//! container's routes through the gateway; traffic both ways, IPv6 and dual stack; MTU;
//! CHECK noticing a removed route; a failed ADD leaving nothing; DEL with the netns or the
//! veth gone; GC and STATUS.

use crate::podnet::{
    Attachment, VERSIONS, addresses, check_del_del, check_del_del_in, host_veths, ipam,
    netfilter_leftovers, reservations, result_addresses, versioned, with_prev,
};
use crate::support::traffic::ping;
use crate::support::{Cni, Farm, Pair, TempDir, TestNs, require_root};
use serde_json::{Value, json};
use std::time::Duration;

fn conf(data: &TempDir, subnets: &[&str], extra: Value) -> Value {
    let mut c = json!({"name": "ptpnet", "type": "ptp", "ipam": ipam(data, subnets)});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn ours(ctr: &TestNs, cid: &str) -> Attachment {
    Attachment::ours("ptp", cid, ctr.path(), "eth0")
}

fn routes(ns: &TestNs, family: &str) -> Vec<String> {
    ns.run(["ip", family, "route", "show"])
        .lines()
        .filter(|l| !l.starts_with("fe80") && !l.contains("proto kernel"))
        .map(|l| l.trim().replace(" pref medium", ""))
        .collect()
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let pair = Pair::new(&format!("ptp-v{version}"));
        let data = TempDir::new("ptp-versions");
        let c = versioned(&conf(&data, &["10.50.0.0/24"], json!({})), version);
        let at = ours(&pair.container, "c1");
        let r = at.run(&pair.host, "ADD", &c).result().clone();
        assert_eq!(result_addresses(&r), ["10.50.0.2/24"], "{version}");
        let veth = host_veths(&pair.host).remove(0);
        if version >= "0.3.0" {
            let ifs = r["interfaces"].as_array().unwrap();
            assert_eq!(ifs.len(), 2);
            assert_eq!(ifs[0]["name"], veth.as_str());
            assert_eq!(ifs[0]["mac"], pair.host.link(&veth).unwrap()["address"]);
            assert_eq!(ifs[1]["name"], "eth0");
            assert_eq!(
                ifs[1]["mac"],
                pair.container.link("eth0").unwrap()["address"]
            );
            assert_eq!(ifs[1]["sandbox"], pair.container.path().to_str().unwrap());
            assert_eq!(r["ips"][0]["interface"], 1);
        }
        check_del_del_in(version, &at, &pair.host, &c, &r);
        assert!(host_veths(&pair.host).is_empty() && reservations(&data, "ptpnet").is_empty());
    }
}

#[test]
fn host_and_container_routes_and_traffic_dual_stack() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("ptp-routes");
    let second = TestNs::new("ptp-routes-2");
    let data = TempDir::new("ptp-routes");
    let c = versioned(
        &conf(&data, &["10.51.0.0/24", "fd51::/64"], json!({"mtu": 1420})),
        "1.1.0",
    );
    let r = ours(&pair.container, "c1")
        .run(&pair.host, "ADD", &c)
        .result()
        .clone();
    ours(&second, "c2").run(&pair.host, "ADD", &c).ok();
    assert_eq!(result_addresses(&r), ["10.51.0.2/24", "fd51::2/64"]);
    let veth = pair.container.link("eth0").unwrap()["link_index"].clone();
    let host_veth = host_veths(&pair.host)
        .into_iter()
        .find(|v| pair.host.link(v).unwrap()["ifindex"] == veth)
        .unwrap();
    assert_eq!(
        addresses(&pair.host, &host_veth),
        ["10.51.0.1/32", "fd51::1/128"]
    );
    assert_eq!(pair.host.link(&host_veth).unwrap()["mtu"], 1420);
    assert_eq!(pair.container.link("eth0").unwrap()["mtu"], 1420);
    let host4 = routes(&pair.host, "-4");
    assert!(
        host4.contains(&format!("10.51.0.2 dev {host_veth} scope host")),
        "{host4:?}"
    );
    let host6 = routes(&pair.host, "-6");
    assert!(
        host6
            .iter()
            .any(|l| l.starts_with(&format!("fd51::2 dev {host_veth} "))),
        "{host6:?}"
    );
    assert_eq!(
        routes(&pair.container, "-4"),
        [
            "10.51.0.0/24 via 10.51.0.1 dev eth0 src 10.51.0.2",
            "10.51.0.1 dev eth0 scope link src 10.51.0.2"
        ]
    );
    assert_eq!(
        routes(&pair.container, "-6"),
        [
            "fd51::1 dev eth0 src fd51::2 metric 1024",
            "fd51::/64 via fd51::1 dev eth0 src fd51::2 metric 1024"
        ]
    );
    for (ns, to) in [
        (&pair.container, "10.51.0.1"),
        (&pair.container, "fd51::1"),
        (&pair.container, "10.51.0.3"),
        (&pair.container, "fd51::3"),
        (&second, "10.51.0.2"),
    ] {
        assert!(
            ping(ns, to, Duration::from_secs(10)),
            "{} -> {to}",
            ns.label()
        );
    }
    let forwarding = pair.host.run([
        "sysctl",
        "-n",
        "net.ipv4.ip_forward",
        "net.ipv6.conf.all.forwarding",
    ]);
    assert_eq!(forwarding, "1\n1\n");
    ours(&second, "c2").run(&pair.host, "DEL", &c).ok();
    check_del_del(&ours(&pair.container, "c1"), &pair.host, &c, &r);
    assert!(host_veths(&pair.host).is_empty());
    assert!(
        routes(&pair.host, "-4").is_empty(),
        "{:?}",
        routes(&pair.host, "-4")
    );
}

#[test]
fn check_notices_a_removed_route_and_address() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("ptp-check");
    let data = TempDir::new("ptp-check");
    let mut c = versioned(&conf(&data, &["10.52.0.0/24"], json!({})), "1.0.0");
    c["ipam"]["routes"] = json!([{"dst": "192.0.2.0/24"}]);
    let at = ours(&pair.container, "c1");
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    let with = with_prev(&c, &r);
    at.run(&pair.host, "CHECK", &with).ok();
    pair.container.ip(&["route", "del", "192.0.2.0/24"]);
    let out = at.run(&pair.host, "CHECK", &with);
    assert_eq!(
        out.json.as_ref().unwrap()["msg"],
        "Expected Route 192.0.2.0/24 not found in routing table 254",
        "{out}"
    );
    pair.container
        .ip(&["route", "add", "192.0.2.0/24", "via", "10.52.0.1"]);
    at.run(&pair.host, "CHECK", &with).ok();
    pair.container.ip(&["addr", "flush", "dev", "eth0"]);
    assert_ne!(at.run(&pair.host, "CHECK", &with).code, 0);
    at.run(&pair.host, "DEL", &with).ok();
}

#[test]
fn failed_add_leaves_nothing_and_del_is_total() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("ptp-fail");
    let data = TempDir::new("ptp-fail");
    let mut c = versioned(
        &conf(&data, &["10.53.0.0/24"], json!({"ipMasq": true})),
        "1.1.0",
    );
    c["ipam"]["ranges"] =
        json!([[{"subnet": "10.53.0.0/24", "rangeStart": "10.53.0.2", "rangeEnd": "10.53.0.2"}]]);
    let r = ours(&pair.container, "c1")
        .run(&pair.host, "ADD", &c)
        .result()
        .clone();
    let second = TestNs::new("ptp-fail-2");
    let out = ours(&second, "c2").run(&pair.host, "ADD", &c);
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(
        host_veths(&pair.host).len(),
        1,
        "the failed ADD's veth is gone"
    );
    let status = Cni::new(Farm::shared(), "ptp")
        .command("STATUS")
        .config(&c)
        .run_in(&pair.host);
    assert_eq!(status.error_code(), Some(50), "{status}");

    pair.container.ip(&["link", "del", "eth0"]);
    ours(&pair.container, "c1")
        .run(&pair.host, "DEL", &with_prev(&c, &r))
        .ok();
    assert!(
        netfilter_leftovers(&pair.host).is_empty(),
        "{:?}",
        netfilter_leftovers(&pair.host)
    );
    let r = ours(&second, "c2")
        .run(&pair.host, "ADD", &c)
        .result()
        .clone();
    let gone = second.path().to_str().unwrap().to_string();
    drop(second);
    let at = ours(&pair.container, "c2").netns(&gone);
    at.run(&pair.host, "DEL", &with_prev(&c, &r)).ok();
    at.run(&pair.host, "DEL", &c).ok();
    assert!(reservations(&data, "ptpnet").is_empty() && netfilter_leftovers(&pair.host).is_empty());

    let mut no_gw = c.clone();
    no_gw["ipam"] = json!({"type": "static", "addresses": [{"address": "10.53.0.9/24"}]});
    let third = TestNs::new("ptp-fail-3");
    let out = ours(&third, "c3").run(&pair.host, "ADD", &no_gw);
    out.expect_error(7);
    assert!(
        out.stdout.contains("ptp needs a gateway for 10.53.0.9/24"),
        "{out}"
    );
    assert!(third.link("eth0").is_none());
}

#[test]
fn gc_keeps_valid_attachments_only() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("ptp-gc");
    let other = TestNs::new("ptp-gc-2");
    let data = TempDir::new("ptp-gc");
    let c = versioned(
        &conf(
            &data,
            &["10.54.0.0/24"],
            json!({"ipMasq": true, "ipMasqBackend": "nftables"}),
        ),
        "1.1.0",
    );
    ours(&pair.container, "keep")
        .run(&pair.host, "ADD", &c)
        .ok();
    ours(&other, "stale").run(&pair.host, "ADD", &c).ok();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    Cni::new(Farm::shared(), "ptp")
        .command("GC")
        .config(&gc)
        .run_in(&pair.host)
        .ok();
    assert_eq!(reservations(&data, "ptpnet"), ["10.54.0.2"]);
    let left = netfilter_leftovers(&pair.host);
    assert!(left.len() == 1 && left[0].contains("id: keep"), "{left:?}");
    ours(&pair.container, "keep")
        .run(&pair.host, "DEL", &c)
        .ok();
    ours(&other, "stale").run(&pair.host, "DEL", &c).ok();
    assert!(netfilter_leftovers(&pair.host).is_empty() && host_veths(&pair.host).is_empty());
}
