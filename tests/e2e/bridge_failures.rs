//! bridge when things go wrong: CHECK notices a removed address or route; a failed ADD
//! (exhausted pool, a clashing bridge address, a kernel without VLAN filtering) leaves no veth
//! and no reservation; DEL succeeds with the netns, the veth or the bridge gone, and still
//! removes the masquerade rules; GC and STATUS reach IPAM and the masquerade rules.

use crate::podnet::{
    Attachment, addresses, host_veths, ipam, netfilter_leftovers, reservations, versioned,
    with_prev,
};
use crate::support::{Pair, TempDir, TestNs, require_root};
use serde_json::{Value, json};

fn conf(data: &TempDir, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "brfail", "type": "bridge", "bridge": "br0",
        "isGateway": true, "ipam": ipam(data, &["10.20.0.0/24"])});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn ours(ctr: &TestNs, cid: &str) -> Attachment {
    Attachment::ours("bridge", cid, ctr.path(), "eth0")
}

fn error_msg(out: &crate::support::Outcome) -> String {
    out.json.as_ref().map_or(String::new(), |j| {
        j["msg"].as_str().unwrap_or("").to_string()
    })
}

#[test]
fn check_notices_a_removed_address_or_route() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("brf-check");
    let data = TempDir::new("brf-check");
    let c = conf(&data, json!({"isDefaultGateway": true}));
    let at = ours(&pair.container, "c1");
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    let with = with_prev(&c, &r);
    at.run(&pair.host, "CHECK", &with).ok();

    pair.container.ip(&["route", "del", "default"]);
    let out = at.run(&pair.host, "CHECK", &with);
    assert_ne!(out.code, 0);
    assert_eq!(
        error_msg(&out),
        "Expected Route 0.0.0.0/0 via 10.20.0.1 not found in routing table 254"
    );
    pair.container
        .ip(&["route", "add", "default", "via", "10.20.0.1"]);
    at.run(&pair.host, "CHECK", &with).ok();

    pair.container
        .ip(&["addr", "del", "10.20.0.2/24", "dev", "eth0"]);
    let out = at.run(&pair.host, "CHECK", &with);
    assert_eq!(
        error_msg(&out),
        "Failed to match addr 10.20.0.2/24 on interface eth0"
    );

    let mut no_prev = c.clone();
    no_prev.as_object_mut().unwrap().remove("prevResult");
    at.run(&pair.host, "CHECK", &no_prev).expect_error(7);
    at.run(&pair.host, "DEL", &with).ok();
    let out = at.run(&pair.host, "CHECK", &with);
    assert_ne!(out.code, 0, "CHECK after DEL fails: {out}");
}

#[test]
fn exhausted_pool_leaves_no_veth_behind() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("brf-pool");
    let second = TestNs::new("brf-pool-2");
    let data = TempDir::new("brf-pool");
    let mut c = conf(&data, json!({}));
    c["ipam"]["ranges"] =
        json!([[{"subnet": "10.21.0.0/24", "rangeStart": "10.21.0.2", "rangeEnd": "10.21.0.2"}]]);
    ours(&pair.container, "c1").run(&pair.host, "ADD", &c).ok();
    let before = host_veths(&pair.host);
    let out = ours(&second, "c2").run(&pair.host, "ADD", &c);
    assert_ne!(out.code, 0);
    assert!(
        error_msg(&out).contains("no IP addresses available"),
        "{out}"
    );
    assert_eq!(
        host_veths(&pair.host),
        before,
        "the new veth was removed again"
    );
    assert!(second.link("eth0").is_none());
    assert_eq!(reservations(&data, "brfail"), ["10.21.0.2"]);
    let status = ours(&second, "").run(&pair.host, "STATUS", &c);
    assert_eq!(
        status.error_code(),
        Some(50),
        "STATUS forwards to IPAM: {status}"
    );
}

#[test]
fn failure_after_ipam_releases_the_address_and_removes_the_veth() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("brf-late");
    let data = TempDir::new("brf-late");
    pair.host.ip(&["link", "add", "br0", "type", "bridge"]);
    pair.host.ip(&["addr", "add", "192.0.2.1/24", "dev", "br0"]);
    let c = conf(&data, json!({"ipMasq": true, "macspoofchk": true}));
    let out = ours(&pair.container, "c1").run(&pair.host, "ADD", &c);
    assert_eq!(
        error_msg(&out),
        "\"br0\" already has an IP address different from 10.20.0.1/24"
    );
    assert!(host_veths(&pair.host).is_empty());
    assert!(pair.container.link("eth0").is_none());
    assert!(
        reservations(&data, "brfail").is_empty(),
        "the address was released"
    );
    assert!(
        netfilter_leftovers(&pair.host).is_empty(),
        "{:?}",
        netfilter_leftovers(&pair.host)
    );

    let forced = conf(&data, json!({"forceAddress": true}));
    ours(&pair.container, "c1")
        .run(&pair.host, "ADD", &forced)
        .ok();
    assert_eq!(
        addresses(&pair.host, "br0"),
        ["10.20.0.1/24"],
        "forceAddress replaced it"
    );
}

/// This kernel lacks bridge VLAN filtering: `vlan` fails with a message saying so, whether
/// the bridge is new or already there, and nothing is left. With filtering, the port gets
/// the VLAN as PVID.
#[test]
fn vlan_needs_bridge_vlan_filtering() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("brf-vlan");
    let data = TempDir::new("brf-vlan");
    let c = conf(&data, json!({"vlan": 10, "isGateway": false}));
    let at = ours(&pair.container, "c1");
    let out = at.run(&pair.host, "ADD", &c);
    if out.code == 0 {
        let veth = host_veths(&pair.host).remove(0);
        let vlans = pair
            .host
            .run(["bridge", "-j", "vlan", "show", "dev", &veth]);
        assert!(
            vlans.contains("\"vlan\":10") && vlans.contains("PVID"),
            "{vlans}"
        );
        at.run(&pair.host, "DEL", &c).ok();
        return;
    }
    assert_eq!(
        error_msg(&out),
        "failed to create bridge \"br0\": vlan and vlanTrunk need bridge VLAN filtering, which this \
         kernel lacks (CONFIG_BRIDGE_VLAN_FILTERING): create bridge link br0: Operation not \
         supported (os error 95)"
    );
    assert!(pair.host.link("br0").is_none() && host_veths(&pair.host).is_empty());

    pair.host.ip(&["link", "add", "br0", "type", "bridge"]);
    let trunk = conf(&data, json!({"vlanTrunk": [{"id": 20}]}));
    let out = at.run(&pair.host, "ADD", &trunk);
    let msg = error_msg(&out);
    assert!(
        msg.starts_with("failed to setup vlan tag on interface \"veth")
            && msg.contains(": vlan and vlanTrunk need bridge VLAN filtering, which this kernel lacks (CONFIG_BRIDGE_VLAN_FILTERING): add bridge vlan vid 20 on ifindex ")
            && msg.ends_with(": Operation not supported (os error 95)"),
        "{msg}"
    );
    assert!(host_veths(&pair.host).is_empty() && reservations(&data, "brfail").is_empty());
    crate::support::announce_skip(
        "kernel lacks bridge VLAN filtering: only the refusal was tested",
    );
}

#[test]
fn del_is_total_and_never_leaks_masquerade_rules() {
    if !require_root() {
        return;
    }
    for backend in ["iptables", "nftables"] {
        let host = TestNs::new("brf-del-host");
        let data = TempDir::new("brf-del");
        let c = conf(
            &data,
            json!({"ipMasq": true, "ipMasqBackend": backend, "macspoofchk": true}),
        );
        for what in ["netns gone", "veth gone", "bridge gone", "empty CNI_NETNS"] {
            let ctr = TestNs::new("brf-del-ctr");
            let path = ctr.path().to_str().unwrap().to_string();
            let at = ours(&ctr, "c1");
            let r = at.run(&host, "ADD", &c).result().clone();
            assert!(!netfilter_leftovers(&host).is_empty());
            let at = match what {
                "netns gone" => {
                    drop(ctr);
                    at
                }
                "veth gone" => {
                    ctr.ip(&["link", "del", "eth0"]);
                    at
                }
                "bridge gone" => {
                    host.ip(&["link", "del", "br0"]);
                    at
                }
                _ => at.netns(""),
            };
            at.run(&host, "DEL", &with_prev(&c, &r)).ok();
            at.run(&host, "DEL", &c).ok();
            assert!(
                reservations(&data, "brfail").is_empty(),
                "{backend}, {what}"
            );
            let left = netfilter_leftovers(&host);
            assert!(left.is_empty(), "{backend}, {what}: {left:?}");
            // A removed netns takes its veth pair along, asynchronously.
            if what != "empty CNI_NETNS" {
                assert!(
                    wait_for(|| host_veths(&host).is_empty()),
                    "{backend}, {what} ({path})"
                );
            } else {
                host.ip(&["link", "del", &host_veths(&host)[0]]);
            }
        }
    }
}

fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

#[test]
fn gc_releases_and_unmasquerades_stale_attachments_only() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("brf-gc");
    let other = TestNs::new("brf-gc-2");
    let data = TempDir::new("brf-gc");
    let c = conf(&data, json!({"ipMasq": true, "ipMasqBackend": "nftables"}));
    ours(&pair.container, "keep")
        .run(&pair.host, "ADD", &c)
        .ok();
    ours(&other, "stale").run(&pair.host, "ADD", &c).ok();
    assert_eq!(reservations(&data, "brfail"), ["10.20.0.2", "10.20.0.3"]);
    let mut gc = versioned(&c, "1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let out = crate::support::Cni::new(crate::support::Farm::shared(), "bridge")
        .command("GC")
        .config(&gc)
        .run_in(&pair.host);
    out.ok();
    assert_eq!(reservations(&data, "brfail"), ["10.20.0.2"]);
    let left = netfilter_leftovers(&pair.host);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].contains("ip saddr 10.20.0.2 ") && left[0].contains("id: keep"),
        "{left:?}"
    );
    ours(&pair.container, "keep")
        .run(&pair.host, "DEL", &c)
        .ok();
    ours(&other, "stale").run(&pair.host, "DEL", &c).ok();
    assert!(netfilter_leftovers(&pair.host).is_empty());
}
