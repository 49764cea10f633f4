//! sbr, end to end: a container with two interfaces toward the fake host, each with its own
//! gateway. After sbr on the second one, traffic from its address leaves by it (the host's
//! counters on that link grow, the other link's do not) and replies come back the same way;
//! traffic from the first address still uses the main table. Rules and tables as `ip` shows
//! them, `table` and `gateways`, ADD -> CHECK -> DEL -> DEL in every version, DEL when the
//! netns is gone, bad config, a failed ADD undone.

use crate::podnet::{Attachment, VERSIONS, versioned, with_prev};
use crate::support::traffic::ping;
use crate::support::{Pair, TestNs, require_root};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// eth0 (10.71.1.2, fd71:1::2) and eth1 (10.71.2.2, fd71:2::2) in the container, h0 and h1
/// (.1) in the host, host addresses 192.0.2.1 and 2001:db8:99::1 on lo, container defaults
/// via eth0.
fn two_links(pair: &Pair) {
    let pid = pair.container.pid().to_string();
    for i in 0..2 {
        let (h, c) = (format!("h{i}"), format!("eth{i}"));
        let n = i + 1;
        pair.host
            .ip(&["link", "add", &h, "type", "veth", "peer", "name", &c]);
        pair.host.ip(&["link", "set", &c, "netns", &pid]);
        pair.host.sh(&format!(
            "ip addr add 10.71.{n}.1/24 dev {h} && ip addr add fd71:{n}::1/64 dev {h} nodad && ip link set {h} up"
        ));
        pair.container.sh(&format!(
            "ip addr add 10.71.{n}.2/24 dev {c} && ip addr add fd71:{n}::2/64 dev {c} nodad && ip link set {c} up"
        ));
    }
    pair.host.sh("ip link set lo up && ip addr add 192.0.2.1/32 dev lo && ip addr add 2001:db8:99::1/128 dev lo");
    pair.container.sh("ip link set lo up && ip route add default via 10.71.1.1 && ip -6 route add default via fd71:1::1");
}

fn prev(pair: &Pair) -> Value {
    json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth1", "sandbox": pair.container.path()}],
        "ips": [{"address": "10.71.2.2/24", "gateway": "10.71.2.1", "interface": 0},
                {"address": "fd71:2::2/64", "gateway": "fd71:2::1", "interface": 0}]})
}

fn conf(extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "sbrnet", "type": "sbr"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn rx_packets(ns: &TestNs, dev: &str) -> u64 {
    let j = ns.ip_json(&["-s", "link", "show", "dev", dev]);
    j[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

/// `ip [-6] rule` lines with a `from <addr>` other than `all`.
fn source_rules(ns: &TestNs) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        let text = ns.run(["ip", fam, "rule"]);
        out.extend(
            text.lines()
                .filter(|l| !l.contains("from all"))
                .map(|l| l.split_once(':').map_or(l, |(_, r)| r).trim().to_string()),
        );
    }
    out
}

fn routes(ns: &TestNs, fam: &str, table: &str) -> Vec<String> {
    let text = ns.run(["ip", fam, "route", "show", "table", table]);
    text.lines().map(|l| l.trim().to_string()).collect()
}

#[test]
fn traffic_leaves_by_the_source_interface() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("sbr-traffic");
    two_links(&pair);
    let at = Attachment::ours("sbr", "s1", pair.container.path(), "eth1");
    let c = with_prev(&conf(json!({})), &prev(&pair));
    at.run(&pair.host, "ADD", &c).ok();
    assert_eq!(
        source_rules(&pair.container),
        ["from 10.71.2.2 lookup 100", "from fd71:2::2 lookup 101"]
    );
    let t100 = routes(&pair.container, "-4", "100");
    assert!(
        t100.contains(&"default via 10.71.2.1 dev eth1".to_string()),
        "{t100:?}"
    );
    assert!(
        t100.iter().any(|r| r.starts_with("10.71.2.0/24 dev eth1")),
        "{t100:?}"
    );
    let t101 = routes(&pair.container, "-6", "101");
    assert!(
        t101.iter()
            .any(|r| r.starts_with("default via fd71:2::1 dev eth1")),
        "{t101:?}"
    );
    let main = pair.container.run(["ip", "route", "show", "table", "main"]);
    assert!(!main.contains("eth1"), "eth1's routes left main: {main}");
    for (src, dst) in [("10.71.2.2", "192.0.2.1"), ("fd71:2::2", "2001:db8:99::1")] {
        let (h0, h1) = (rx_packets(&pair.host, "h0"), rx_packets(&pair.host, "h1"));
        let c1 = rx_packets(&pair.container, "eth1");
        let ok = pair
            .container
            .exec(["ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", src, dst]);
        assert!(ok.status.success(), "{src} -> {dst}: {ok:?}");
        assert!(
            rx_packets(&pair.host, "h1") >= h1 + 3,
            "{src}: left by eth1"
        );
        assert!(rx_packets(&pair.host, "h0") < h0 + 3, "{src}: not by eth0");
        assert!(
            rx_packets(&pair.container, "eth1") >= c1 + 3,
            "{src}: replies by eth1"
        );
    }
    // The first interface still routes by main.
    let h0 = rx_packets(&pair.host, "h0");
    assert!(ping(&pair.container, "192.0.2.1", WAIT));
    assert!(rx_packets(&pair.host, "h0") > h0);

    at.run(&pair.host, "CHECK", &c).ok();
    at.run(&pair.host, "DEL", &c).ok();
    assert!(source_rules(&pair.container).is_empty());
    assert!(routes(&pair.container, "-4", "100").is_empty());
    assert!(routes(&pair.container, "-6", "101").is_empty());
    at.run(&pair.host, "DEL", &c).ok();
    at.run(&pair.host, "CHECK", &c).expect_error(999);
}

#[test]
fn table_key_adds_rules_only_and_gateways_override() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("sbr-table");
    two_links(&pair);
    let at = Attachment::ours("sbr", "s2", pair.container.path(), "eth1");
    let c = with_prev(&conf(json!({"table": 500})), &prev(&pair));
    let main_before = routes(&pair.container, "-4", "main");
    at.run(&pair.host, "ADD", &c).ok();
    assert_eq!(
        source_rules(&pair.container),
        ["from 10.71.2.2 lookup 500", "from fd71:2::2 lookup 500"]
    );
    assert_eq!(routes(&pair.container, "-4", "main"), main_before);
    at.run(&pair.host, "CHECK", &c).ok();
    at.run(&pair.host, "DEL", &c).ok();
    assert!(source_rules(&pair.container).is_empty());

    let g = with_prev(
        &conf(json!({"gateways": ["10.71.2.254", "fd71:2::fe"]})),
        &prev(&pair),
    );
    at.run(&pair.host, "ADD", &g).ok();
    let t = routes(&pair.container, "-4", "100");
    assert!(
        t.contains(&"default via 10.71.2.254 dev eth1".to_string()),
        "{t:?}"
    );
    let t6 = routes(&pair.container, "-6", "101");
    assert!(
        t6.iter()
            .any(|r| r.starts_with("default via fd71:2::fe dev eth1")),
        "{t6:?}"
    );
    at.run(&pair.host, "DEL", &g).ok();
    assert!(source_rules(&pair.container).is_empty());
}

#[test]
fn every_version_and_del_matrix() {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let pair = Pair::new(&format!("sbr-v{version}"));
        two_links(&pair);
        let at = Attachment::ours("sbr", "sv", pair.container.path(), "eth1");
        let c = versioned(&conf(json!({})), version);
        let r = at.run(&pair.host, "ADD", &with_prev(&c, &prev(&pair)));
        assert_eq!(r.result()["cniVersion"], version);
        assert_eq!(source_rules(&pair.container).len(), 2, "{version}");
        if version >= "0.4.0" {
            at.run(&pair.host, "CHECK", &with_prev(&c, &prev(&pair)))
                .ok();
        }
        at.run(&pair.host, "DEL", &c).ok();
        at.run(&pair.host, "DEL", &c).ok();
        assert!(source_rules(&pair.container).is_empty(), "{version}");
    }
    // The interface gone, the netns gone: DEL succeeds.
    let pair = Pair::new("sbr-gone");
    two_links(&pair);
    let at = Attachment::ours("sbr", "sg", pair.container.path(), "eth1");
    at.run(
        &pair.host,
        "ADD",
        &with_prev(&conf(json!({})), &prev(&pair)),
    )
    .ok();
    pair.container.ip(&["link", "del", "eth1"]);
    at.run(&pair.host, "DEL", &conf(json!({}))).ok();
    at.netns("/proc/0/ns/net")
        .run(&pair.host, "DEL", &conf(json!({})))
        .ok();
}

#[test]
fn bad_config() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("sbr-bad");
    two_links(&pair);
    let at = Attachment::ours("sbr", "sb", pair.container.path(), "eth1");
    at.run(&pair.host, "ADD", &conf(json!({}))).expect_error(7);
    let two_v4 = conf(json!({"gateways": ["10.71.2.1", "10.71.2.3"]}));
    at.run(&pair.host, "ADD", &with_prev(&two_v4, &prev(&pair)))
        .expect_error(7);
    // A gateway off every subnet: the kernel refuses the default route; ADD undoes itself.
    let main_before = routes(&pair.container, "-4", "main");
    let off = with_prev(&conf(json!({"gateways": ["192.0.2.77"]})), &prev(&pair));
    at.run(&pair.host, "ADD", &off).expect_error(999);
    assert!(source_rules(&pair.container).is_empty(), "rules undone");
    assert!(
        routes(&pair.container, "-4", "100").is_empty(),
        "table routes undone"
    );
    assert_eq!(
        routes(&pair.container, "-4", "main"),
        main_before,
        "main untouched"
    );
    let mut none = prev(&pair);
    none["ips"] = json!([]);
    at.run(&pair.host, "ADD", &with_prev(&conf(json!({})), &none))
        .expect_error(7);
    assert!(source_rules(&pair.container).is_empty());
}
