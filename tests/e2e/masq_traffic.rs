//! ipMasq with real traffic, for bridge and ptp on both backends: a container opens a TCP
//! connection to a third, "outside" namespace that has no route back to the container
//! subnets. It only completes when masqueraded, and the listener sees the host's address on
//! the outside link. Without ipMasq the connection fails; after DEL the rules are gone (and
//! the connection fails again from a re-added container without ipMasq).
//!
//! The listener is a socket made by a test thread inside the outside namespace (see
//! support/traffic.rs): no tcpdump or nc needed, the peer address comes from `accept`.

use crate::podnet::{Attachment, ipam, netfilter_leftovers, with_prev};
use crate::support::traffic::{Listener, Outside};
use crate::support::{Pair, TempDir, require_root};
use serde_json::{Value, json};
use std::time::Duration;

/// Generous: a positive wait ends as soon as traffic passes; only a broken setup waits it out.
const POSITIVE_WAIT: Duration = Duration::from_secs(10);

fn conf(plugin: &str, data: &TempDir, masq: Option<&str>) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "masqnet", "type": plugin,
        "ipam": ipam(data, &["10.30.0.0/24", "fd30::/64"])});
    if plugin == "bridge" {
        c["bridge"] = json!("br0");
        c["isDefaultGateway"] = json!(true);
    } else {
        c["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]);
    }
    if let Some(backend) = masq {
        c["ipMasq"] = json!(true);
        c["ipMasqBackend"] = json!(backend);
    }
    c
}

fn masquerades(plugin: &str) {
    for backend in ["iptables", "nftables"] {
        let pair = Pair::new(&format!("masq-{plugin}"));
        let outside = Outside::new(&pair.host, &format!("masq-{plugin}"));
        let listener = Listener::new(&outside.ns);
        let data = TempDir::new("masq");
        let c = conf(plugin, &data, Some(backend));
        let at = Attachment::ours(plugin, "c1", pair.container.path(), "eth0");
        let r = at.run(&pair.host, "ADD", &c).result().clone();
        let seen4 = listener.source_seen(&pair.container, outside.v4, POSITIVE_WAIT);
        assert_eq!(seen4, Some(outside.host_v4), "{plugin} {backend} IPv4");
        let seen6 = listener.source_seen(&pair.container, outside.v6, POSITIVE_WAIT);
        assert_eq!(seen6, Some(outside.host_v6), "{plugin} {backend} IPv6");
        at.run(&pair.host, "CHECK", &with_prev(&c, &r)).ok();
        at.run(&pair.host, "DEL", &with_prev(&c, &r)).ok();
        let left = netfilter_leftovers(&pair.host);
        assert!(left.is_empty(), "{plugin} {backend}: {left:?}");

        let plain = conf(plugin, &data, None);
        at.run(&pair.host, "ADD", &plain).ok();
        let seen = listener.source_seen(&pair.container, outside.v4, Duration::from_millis(700));
        assert_eq!(seen, None, "{plugin} {backend}: no masquerade, no way back");
        at.run(&pair.host, "DEL", &plain).ok();
    }
}

#[test]
fn bridge_masquerades_on_both_backends() {
    if require_root() {
        masquerades("bridge");
    }
}

#[test]
fn ptp_masquerades_on_both_backends() {
    if require_root() {
        masquerades("ptp");
    }
}
