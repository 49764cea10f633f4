//! Interop with the reference v1.1.1 binaries in /usr/lib/cni (Debian's
//! containernetworking-plugins), for bridge and ptp: an attachment made by the reference
//! (with its own host-local) is removed by our DEL (with ours), and the other way round, and
//! either way no link, address, masquerade or spoof-check rule, or IPAM file is left. Our
//! CHECK also accepts what the reference made. The reference v1.1.1 has no nftables ipMasq,
//! so masquerading goes through iptables here; its spoof check runs the `nft` binary.

use crate::podnet::{
    Attachment, REF_VERSION, host_veths, ipam, netfilter_leftovers, reservations, with_prev,
};
use crate::support::{Pair, TempDir, announce_skip, reference_plugin, require_root};
use serde_json::{Value, json};

fn conf(plugin: &str, data: &TempDir) -> Value {
    let mut c = json!({"cniVersion": REF_VERSION, "name": "interop", "type": plugin,
        "ipMasq": true, "ipam": ipam(data, &["10.40.0.0/24", "fd40::/64"])});
    if plugin == "bridge" {
        c["bridge"] = json!("br0");
        c["isDefaultGateway"] = json!(true);
        c["macspoofchk"] = json!(true);
    }
    c
}

/// Nothing of the attachment is left in `pair` or `data`.
fn assert_clean(pair: &Pair, data: &TempDir, what: &str) {
    assert!(
        host_veths(&pair.host).is_empty(),
        "{what}: {:?}",
        host_veths(&pair.host)
    );
    assert!(pair.container.link("eth0").is_none(), "{what}");
    assert!(
        reservations(data, "interop").is_empty(),
        "{what}: {:?}",
        reservations(data, "interop")
    );
    let left = netfilter_leftovers(&pair.host);
    assert!(left.is_empty(), "{what}: {left:?}");
    // The bridge keeps its gateway addresses (and their subnet routes), as in the reference.
    let routes =
        pair.host.run(["ip", "route", "show"]) + &pair.host.run(["ip", "-6", "route", "show"]);
    let stale: Vec<&str> = routes
        .lines()
        .filter(|l| !l.contains("dev br0") && (l.contains("10.40.0.") || l.contains("fd40:")))
        .collect();
    assert!(stale.is_empty(), "{what}: {stale:?}");
}

fn interop(plugin: &str) {
    if reference_plugin(plugin).is_none() || reference_plugin("host-local").is_none() {
        announce_skip(&format!("reference {plugin} not installed in /usr/lib/cni"));
        return;
    }
    let at_ref =
        |pair: &Pair| Attachment::reference(plugin, "c1", pair.container.path(), "eth0").unwrap();
    let at_ours = |pair: &Pair| Attachment::ours(plugin, "c1", pair.container.path(), "eth0");

    let pair = Pair::new(&format!("interop-{plugin}-a"));
    let data = TempDir::new("interop-a");
    let c = conf(plugin, &data);
    let r = at_ref(&pair).run(&pair.host, "ADD", &c).result().clone();
    assert!(
        !netfilter_leftovers(&pair.host).is_empty(),
        "the reference made rules"
    );
    at_ours(&pair)
        .run(&pair.host, "CHECK", &with_prev(&c, &r))
        .ok();
    at_ours(&pair)
        .run(&pair.host, "DEL", &with_prev(&c, &r))
        .ok();
    assert_clean(&pair, &data, &format!("reference {plugin} ADD, our DEL"));

    let pair = Pair::new(&format!("interop-{plugin}-b"));
    let data = TempDir::new("interop-b");
    let mut c = conf(plugin, &data);
    c["ipMasqBackend"] = json!("iptables");
    let r = at_ours(&pair).run(&pair.host, "ADD", &c).result().clone();
    at_ref(&pair)
        .run(&pair.host, "CHECK", &with_prev(&c, &r))
        .ok();
    at_ref(&pair)
        .run(&pair.host, "DEL", &with_prev(&c, &r))
        .ok();
    assert_clean(&pair, &data, &format!("our {plugin} ADD, reference DEL"));
}

#[test]
fn bridge_interop_with_the_reference() {
    if require_root() {
        interop("bridge");
    }
}

#[test]
fn ptp_interop_with_the_reference() {
    if require_root() {
        interop("ptp");
    }
}
