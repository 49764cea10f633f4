//! firewall, end to end in fake hosts, on the iptables and nftables backends: real traffic
//! through the host's forward path (a container on a bridge reaches an outside netns and gets
//! answers; under iptables the host's FORWARD policy is DROP, so only our rules let it pass),
//! the admin chain winning over ours and surviving later ADDs, `same-bridge` / `isolated`
//! between containers on one and two bridges, ADD -> CHECK -> DEL -> DEL in every spec
//! version (DEL before 0.4.0 without `prevResult`), read-only CHECK, GC, a backend switch,
//! bad input, and interop with the reference `/usr/lib/cni/firewall` (iptables) both ways.
//! The firewalld backend is tested in `firewall_firewalld`.

use crate::podnet::{Attachment, REF_VERSION, VERSIONS, ipam, versioned, with_prev};
use crate::support::traffic::{Listener, Outside, ping};
use crate::support::{Pair, TempDir, TestNs, require_root, skip, tests_of};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::Duration;

pub(crate) const WAIT: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(700);

pub(crate) fn fw_conf(backend: &str, policy: &str, state: &TempDir) -> Value {
    json!({"cniVersion": "1.1.0", "name": "fwnet", "type": "firewall", "backend": backend,
        "ingressPolicy": policy, "dataDir": state.path()})
}

/// A made-up bridge result for tests that need no traffic.
pub(crate) fn fake_prev(ips: &[&str]) -> Value {
    let ips: Vec<Value> = ips
        .iter()
        .map(|a| json!({"address": a, "interface": 1}))
        .collect();
    json!({"cniVersion": "1.1.0", "interfaces": [{"name": "fwbr0"},
        {"name": "eth0", "sandbox": "/x"}], "ips": ips})
}

/// Every per-address rule of ours in `host`: iptables and ip6tables `CNI-FORWARD` address
/// rules, nft rules with an address in `cni_plugins_firewall`.
pub(crate) fn per_ip_rules(host: &TestNs) -> Vec<String> {
    let mut out = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let text = host.run([tool, "-t", "filter"]);
        out.extend(
            text.lines()
                .filter(|l| {
                    l.starts_with("-A CNI-FORWARD -d") || l.starts_with("-A CNI-FORWARD -s")
                })
                .map(String::from),
        );
    }
    let nft = host.exec(["nft", "list", "table", "inet", "cni_plugins_firewall"]);
    let text = String::from_utf8_lossy(&nft.stdout);
    out.extend(
        text.lines()
            .map(str::trim)
            .filter(|l| l.contains("saddr") || l.contains("daddr"))
            .map(|l| format!("nft: {l}")),
    );
    out
}

/// One container on bridge `br` (host-local over `subnets`) with the firewall chained.
struct Ctr {
    bridge: Attachment,
    fw: Attachment,
    bconf: Value,
    result: Value,
}

impl Ctr {
    fn add(
        host: &TestNs,
        ns: &TestNs,
        cid: &str,
        br: &str,
        subnets: &[&str],
        data: &TempDir,
        fw: &Value,
    ) -> Ctr {
        let bconf = json!({"cniVersion": "1.1.0", "name": format!("net-{br}"), "type": "bridge",
            "bridge": br, "isDefaultGateway": true, "ipam": ipam(data, subnets)});
        let bridge = Attachment::ours("bridge", cid, ns.path(), "eth0");
        let result = bridge.run(host, "ADD", &bconf).result().clone();
        let fw_at = Attachment::ours("firewall", cid, ns.path(), "eth0");
        let out = fw_at.run(host, "ADD", &with_prev(fw, &result));
        assert_eq!(out.result(), &result, "firewall passes prevResult on");
        Ctr {
            bridge,
            fw: fw_at,
            bconf,
            result,
        }
    }

    fn ip(&self, i: usize) -> IpAddr {
        let a = self.result["ips"][i]["address"].as_str().unwrap();
        a.split('/').next().unwrap().parse().unwrap()
    }

    fn del(&self, host: &TestNs, fw: &Value) {
        self.fw.run(host, "DEL", fw).ok();
        self.bridge.run(host, "DEL", &self.bconf).ok();
    }
}

/// Sets the host's FORWARD policy (iptables backend) so that only accepted traffic passes.
fn forward_policy(host: &TestNs, policy: &str) {
    for tool in ["iptables", "ip6tables"] {
        host.run([tool, "-P", "FORWARD", policy]);
    }
}

fn admin_drop(host: &TestNs, backend: &str, ip: IpAddr, add: bool) {
    let (tool, fam) = match ip {
        IpAddr::V4(_) => ("iptables", "ip"),
        IpAddr::V6(_) => ("ip6tables", "ip6"),
    };
    if backend == "iptables" {
        let op = if add { "-A" } else { "-D" };
        host.run([tool, op, "CNI-ADMIN", "-s", &ip.to_string(), "-j", "DROP"]);
    } else if add {
        host.sh(&format!(
            "nft add rule inet cni_plugins_firewall CNI-ADMIN {fam} saddr {ip} drop"
        ));
    } else {
        host.sh("nft flush chain inet cni_plugins_firewall CNI-ADMIN");
    }
}

fn traffic(backend: &str) {
    if !require_root() {
        return;
    }
    let pair = Pair::new(&format!("fw-traffic-{backend}"));
    let outside = Outside::new(&pair.host, &format!("fw-{backend}"));
    outside.ns.sh("ip route add 10.61.0.0/16 via 198.51.100.1 && ip -6 route add fd61::/32 via 2001:db8:51::1");
    let listener = Listener::new(&outside.ns);
    // The bridge made by ADD inherits this: its IPv6 gateway is usable at once (no DAD wait).
    pair.host
        .sh("sysctl -qw net.ipv6.conf.default.accept_dad=0");
    if backend == "iptables" {
        forward_policy(&pair.host, "DROP");
    }
    let (data, state) = (TempDir::new("fw-ipam"), TempDir::new("fw-state"));
    let fw = fw_conf(backend, "open", &state);
    let c1 = Ctr::add(
        &pair.host,
        &pair.container,
        "c1",
        "fwbr0",
        &["10.61.1.0/24", "fd61:0:1::/64"],
        &data,
        &fw,
    );
    for (i, to) in [(0, outside.v4), (1, outside.v6)] {
        let seen = listener.source_seen(&pair.container, to, WAIT);
        assert_eq!(
            seen,
            Some(c1.ip(i)),
            "{backend}: container reaches {to}, answered"
        );
    }
    c1.fw
        .run(&pair.host, "CHECK", &with_prev(&fw, &c1.result))
        .ok();

    admin_drop(&pair.host, backend, c1.ip(0), true);
    let seen = listener.source_seen(&pair.container, outside.v4, SHORT);
    assert_eq!(
        seen, None,
        "{backend}: the admin chain's drop wins over our accept"
    );
    // Another ADD on the same host keeps the user's admin rule.
    let other = TestNs::new("fw-traffic-c2");
    let c2 = Ctr::add(
        &pair.host,
        &other,
        "c2",
        "fwbr0",
        &["10.61.1.0/24", "fd61:0:1::/64"],
        &data,
        &fw,
    );
    assert_eq!(
        listener.source_seen(&pair.container, outside.v4, SHORT),
        None,
        "{backend}: admin rule kept"
    );
    admin_drop(&pair.host, backend, c1.ip(0), false);
    assert_eq!(
        listener.source_seen(&pair.container, outside.v4, WAIT),
        Some(c1.ip(0))
    );

    // DEL without prevResult removes c1's rules and only those.
    c1.del(&pair.host, &fw);
    let left = per_ip_rules(&pair.host);
    assert!(
        left.iter().all(|l| !l.contains(&c1.ip(0).to_string())),
        "{backend}: {left:?}"
    );
    assert_eq!(left.len(), 4, "c2's rules stay: {left:?}");
    c2.fw.run(&pair.host, "DEL", &fw).ok();
    c2.fw.run(&pair.host, "DEL", &fw).ok();
    assert!(per_ip_rules(&pair.host).is_empty());
    if backend == "iptables" {
        let again = Ctr::add(
            &pair.host,
            &pair.container,
            "c3",
            "fwbr0",
            &["10.61.1.0/24"],
            &data,
            &json!({
            "cniVersion": "1.1.0", "name": "fwnet", "type": "firewall", "backend": "iptables",
            "dataDir": state.path()}),
        );
        again.fw.run(&pair.host, "DEL", &fw).ok();
        let seen = listener.source_seen(&pair.container, outside.v4, SHORT);
        assert_eq!(
            seen, None,
            "after DEL, the DROP policy stops the container again"
        );
    }
}

tests_of!(traffic: traffic_iptables = "iptables", traffic_nftables = "nftables");

/// c1 and c2 on bridge A, c3 on bridge B, every attachment with `policy`.
fn isolation(case: &str) {
    if !require_root() {
        return;
    }
    let (backend, policy) = case.split_once(':').unwrap();
    let host = TestNs::new(&format!("fw-iso-{backend}"));
    let nss: Vec<TestNs> = (1..=3)
        .map(|i| TestNs::new(&format!("fw-iso-c{i}")))
        .collect();
    let (data, state) = (TempDir::new("fw-iso"), TempDir::new("fw-iso-state"));
    host.sh("sysctl -qw net.ipv4.ip_forward=1");
    let fw = fw_conf(backend, policy, &state);
    let c1 = Ctr::add(&host, &nss[0], "c1", "fwa", &["10.62.1.0/24"], &data, &fw);
    let c2 = Ctr::add(&host, &nss[1], "c2", "fwa", &["10.62.1.0/24"], &data, &fw);
    let c3 = Ctr::add(&host, &nss[2], "c3", "fwb", &["10.62.2.0/24"], &data, &fw);
    // Each reaches its gateway: the links work.
    for (ns, gw) in [(&nss[0], "10.62.1.1"), (&nss[2], "10.62.2.1")] {
        assert!(ping(ns, gw, WAIT), "{case}: gateway {gw}");
    }
    let same = ping(
        &nss[0],
        &c2.ip(0).to_string(),
        if policy == "isolated" {
            Duration::ZERO
        } else {
            WAIT
        },
    );
    assert_eq!(
        same,
        policy == "same-bridge",
        "{case}: c1 -> c2 on the same bridge"
    );
    assert!(
        !ping(&nss[2], &c1.ip(0).to_string(), Duration::ZERO),
        "{case}: c3 -> c1 across bridges"
    );
    assert!(
        !ping(&nss[0], &c3.ip(0).to_string(), Duration::ZERO),
        "{case}: c1 -> c3 across bridges"
    );
    for c in [&c1, &c2, &c3] {
        c.fw.run(&host, "CHECK", &with_prev(&fw, &c.result)).ok();
        c.del(&host, &fw);
    }
    assert!(per_ip_rules(&host).is_empty());
}

tests_of!(isolation:
    isolation_iptables_same_bridge = "iptables:same-bridge",
    isolation_iptables_isolated = "iptables:isolated",
    isolation_nftables_same_bridge = "nftables:same-bridge",
    isolation_nftables_isolated = "nftables:isolated",
);

/// ADD -> CHECK -> DEL -> DEL in every version, the prevResult made by bridge in that version.
fn every_version(backend: &str) {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let pair = Pair::new(&format!("fw-v{version}"));
        let (data, state) = (TempDir::new("fw-v"), TempDir::new("fw-v-state"));
        let bconf = versioned(
            &json!({"name": "vnet", "type": "bridge", "bridge": "fwv0",
            "ipam": ipam(&data, &["10.63.0.0/24"])}),
            version,
        );
        let bridge = Attachment::ours("bridge", "cv", pair.container.path(), "eth0");
        let result = bridge.run(&pair.host, "ADD", &bconf).result().clone();
        let fw = versioned(&fw_conf(backend, "", &state), version);
        let at = Attachment::ours("firewall", "cv", pair.container.path(), "eth0");
        let out = at.run(&pair.host, "ADD", &with_prev(&fw, &result));
        assert_eq!(out.result()["cniVersion"], version);
        assert_eq!(per_ip_rules(&pair.host).len(), 2, "{backend} {version}");
        if version >= "0.4.0" {
            at.run(&pair.host, "CHECK", &with_prev(&fw, &result)).ok();
            at.run(&pair.host, "DEL", &with_prev(&fw, &result)).ok();
        } else {
            at.run(&pair.host, "DEL", &fw).ok();
        }
        at.run(&pair.host, "DEL", &fw).ok();
        assert!(per_ip_rules(&pair.host).is_empty(), "{backend} {version}");
        bridge.run(&pair.host, "DEL", &bconf).ok();
    }
}

tests_of!(every_version: every_version_iptables = "iptables", every_version_nftables = "nftables");

/// CHECK reads only: on a host without our chains it fails and creates nothing; after ADD it
/// fails once a rule is gone.
fn check_reads_only(backend: &str) {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fw-check");
    let state = TempDir::new("fw-check");
    let conf = with_prev(
        &fw_conf(backend, "isolated", &state),
        &fake_prev(&["10.64.0.2/24"]),
    );
    let at = Attachment::ours("firewall", "ck", pair.container.path(), "eth0");
    at.run(&pair.host, "CHECK", &conf).expect_error(999);
    let ipt = pair.host.run(["iptables-save", "-t", "filter"]);
    assert!(!ipt.contains("CNI-"), "{ipt}");
    let nft = pair
        .host
        .exec(["nft", "list", "table", "inet", "cni_plugins_firewall"]);
    assert!(!nft.status.success(), "CHECK made no table");
    at.run(&pair.host, "ADD", &conf).ok();
    at.run(&pair.host, "CHECK", &conf).ok();
    if backend == "iptables" {
        pair.host.run([
            "iptables",
            "-D",
            "CNI-FORWARD",
            "-s",
            "10.64.0.2/32",
            "-j",
            "ACCEPT",
        ]);
    } else {
        pair.host
            .sh("nft flush chain inet cni_plugins_firewall CNI-ISOLATION-STAGE-2");
    }
    at.run(&pair.host, "CHECK", &conf).expect_error(999);
    at.run(&pair.host, "DEL", &conf).ok();
}

tests_of!(check_reads_only: check_reads_only_iptables = "iptables", check_reads_only_nftables = "nftables");

/// GC keeps the valid attachment's rules and removes the others', in both backends.
#[test]
fn gc_removes_stale_attachments() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fw-gc");
    let state = TempDir::new("fw-gc");
    for (cid, backend, ip) in [
        ("g1", "iptables", "10.65.0.2/24"),
        ("g2", "nftables", "10.65.0.3/24"),
        ("g3", "iptables", "10.65.0.4/24"),
    ] {
        let conf = with_prev(&fw_conf(backend, "", &state), &fake_prev(&[ip]));
        Attachment::ours("firewall", cid, pair.container.path(), "eth0")
            .run(&pair.host, "ADD", &conf)
            .ok();
    }
    let mut gc = fw_conf("iptables", "", &state);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g3", "ifname": "eth0"}]);
    Attachment::ours("firewall", "", pair.container.path(), "eth0")
        .run(&pair.host, "GC", &gc)
        .ok();
    let left = per_ip_rules(&pair.host);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|l| l.contains("10.65.0.4")), "{left:?}");
}

/// A network switched from iptables to nftables: DEL under the new config removes the rules
/// the old one made.
#[test]
fn backend_switch_leaves_nothing() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fw-switch");
    let state = TempDir::new("fw-switch");
    let prev = fake_prev(&["10.66.0.2/24", "fd66::2/64"]);
    let at = Attachment::ours("firewall", "sw", pair.container.path(), "eth0");
    at.run(
        &pair.host,
        "ADD",
        &with_prev(&fw_conf("iptables", "", &state), &prev),
    )
    .ok();
    at.run(
        &pair.host,
        "ADD",
        &with_prev(&fw_conf("nftables", "", &state), &prev),
    )
    .ok();
    assert_eq!(per_ip_rules(&pair.host).len(), 8);
    at.run(&pair.host, "DEL", &fw_conf("nftables", "", &state))
        .ok();
    assert!(per_ip_rules(&pair.host).is_empty());
}

#[test]
fn bad_input_and_del_of_nothing() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fw-bad");
    let state = TempDir::new("fw-bad");
    let at = Attachment::ours("firewall", "b1", pair.container.path(), "eth0");
    let prev = fake_prev(&["10.67.0.2/24"]);
    at.run(
        &pair.host,
        "ADD",
        &with_prev(&fw_conf("iptables", "closed", &state), &prev),
    )
    .expect_error(7);
    at.run(&pair.host, "ADD", &fw_conf("iptables", "", &state))
        .expect_error(7);
    let mut no_if = prev.clone();
    no_if["interfaces"] = json!([]);
    at.run(
        &pair.host,
        "ADD",
        &with_prev(&fw_conf("nftables", "same-bridge", &state), &no_if),
    )
    .expect_error(7);
    assert!(
        per_ip_rules(&pair.host).is_empty(),
        "a refused ADD touches nothing"
    );
    // DEL of something never added, and with a netns that is gone.
    at.run(&pair.host, "DEL", &fw_conf("nftables", "", &state))
        .ok();
    at.netns("/proc/0/ns/net")
        .run(&pair.host, "DEL", &fw_conf("iptables", "", &state))
        .ok();
}

/// The reference firewall (iptables) and ours remove each other's rules.
#[test]
fn interop_with_reference_iptables() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fw-interop");
    let state = TempDir::new("fw-interop");
    let Some(theirs) = Attachment::reference("firewall", "ri", pair.container.path(), "eth0")
    else {
        skip!("reference firewall not installed");
    };
    let ours = Attachment::ours("firewall", "ri", pair.container.path(), "eth0");
    let prev = versioned(&fake_prev(&["10.68.0.2/24", "fd68::2/64"]), REF_VERSION);
    for policy in ["", "same-bridge"] {
        let conf = versioned(
            &with_prev(&fw_conf("iptables", policy, &state), &prev),
            REF_VERSION,
        );
        theirs.run(&pair.host, "ADD", &conf).ok();
        let made_by_them = pair.host.run(["iptables-save", "-t", "filter"]);
        ours.run(&pair.host, "CHECK", &conf).ok();
        ours.run(&pair.host, "DEL", &conf).ok();
        assert!(per_ip_rules(&pair.host).is_empty(), "ours removes theirs");
        ours.run(&pair.host, "ADD", &conf).ok();
        let made_by_us = pair.host.run(["iptables-save", "-t", "filter"]);
        assert_eq!(
            rule_lines(&made_by_us),
            rule_lines(&made_by_them),
            "{policy}: same rules"
        );
        theirs.run(&pair.host, "CHECK", &conf).ok();
        theirs.run(&pair.host, "DEL", &conf).ok();
        assert!(per_ip_rules(&pair.host).is_empty(), "theirs removes ours");
        ours.run(&pair.host, "DEL", &conf).ok();
    }
}

fn rule_lines(save: &str) -> Vec<String> {
    save.lines()
        .filter(|l| l.starts_with("-A") || l.starts_with(':'))
        .map(|l| l.split(" [").next().unwrap().to_string())
        .collect()
}
