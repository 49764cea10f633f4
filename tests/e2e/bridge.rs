//! bridge, end to end in a fake host and container netns: ADD -> CHECK -> DEL -> DEL in every
//! spec version, traffic to the gateway and between two containers on one bridge, IPv6 and
//! dual stack, and the port and link keys (hairpin, isolation, promisc, MTU, MAC precedence,
//! spoof check, disabled container interface).

use crate::podnet::{
    Attachment, VERSIONS, addresses, check_del_del, check_del_del_in, host_veths, ipam,
    netfilter_leftovers, reservations, result_addresses, versioned, with_prev,
};
use crate::support::traffic::ping;
use crate::support::{Pair, TempDir, TestNs, require_root};
use serde_json::{Value, json};
use std::time::Duration;

/// A bridge config named `net` on bridge `br0` with host-local over `subnets`, plus `extra`.
fn conf(data: &TempDir, subnets: &[&str], extra: Value) -> Value {
    let mut c =
        json!({"name": "brnet", "type": "bridge", "bridge": "br0", "ipam": ipam(data, subnets)});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn ours(pair: &Pair, cid: &str) -> Attachment {
    Attachment::ours("bridge", cid, pair.container.path(), "eth0")
}

/// The brport flags of `dev` as `ip -d link` reports them.
fn brport(host: &TestNs, dev: &str) -> Value {
    host.link(dev).unwrap()["linkinfo"]["info_slave_data"].clone()
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let pair = Pair::new(&format!("br-v{version}"));
        let data = TempDir::new("br-versions");
        let c = versioned(
            &conf(&data, &["10.10.0.0/24"], json!({"isGateway": true})),
            version,
        );
        let at = ours(&pair, "ctr-1");
        let result = at.run(&pair.host, "ADD", &c).result().clone();
        assert_eq!(result["cniVersion"], version);
        assert_eq!(result_addresses(&result), ["10.10.0.2/24"], "{version}");
        assert_eq!(
            addresses(&pair.container, "eth0"),
            ["10.10.0.2/24"],
            "{version}"
        );
        assert_eq!(addresses(&pair.host, "br0"), ["10.10.0.1/24"], "{version}");
        let veths = host_veths(&pair.host);
        assert_eq!(veths.len(), 1, "{version}");
        assert_eq!(pair.host.link(&veths[0]).unwrap()["master"], "br0");
        if version >= "0.3.0" {
            check_result_layout(&result, &veths[0], &pair);
        }
        check_del_del_in(version, &at, &pair.host, &c, &result);
        assert!(host_veths(&pair.host).is_empty(), "{version}");
        assert!(pair.container.link("eth0").is_none(), "{version}");
        assert!(reservations(&data, "brnet").is_empty(), "{version}");
        assert!(
            pair.host.link("br0").is_some(),
            "the bridge stays, as in the reference"
        );
    }
}

/// `[bridge, host veth, container veth]`, every `ips` entry pointing at the container veth.
fn check_result_layout(result: &Value, host_veth: &str, pair: &Pair) {
    let ifs = result["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 3, "{result}");
    let br = pair.host.link("br0").unwrap();
    assert_eq!(
        (&ifs[0]["name"], &ifs[0]["mac"]),
        (&json!("br0"), &br["address"])
    );
    let hv = pair.host.link(host_veth).unwrap();
    assert_eq!(
        (&ifs[1]["name"], &ifs[1]["mac"]),
        (&json!(host_veth), &hv["address"])
    );
    let cv = pair.container.link("eth0").unwrap();
    assert_eq!(
        (&ifs[2]["name"], &ifs[2]["mac"]),
        (&json!("eth0"), &cv["address"])
    );
    assert_eq!(ifs[2]["sandbox"], pair.container.path().to_str().unwrap());
    assert!(ifs[0].get("sandbox").is_none() && ifs[1].get("sandbox").is_none());
    for ip in result["ips"].as_array().unwrap() {
        assert_eq!(ip["interface"], 2, "{result}");
    }
}

#[test]
fn two_containers_reach_the_gateway_and_each_other() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("br-ping");
    let second = TestNs::new("br-ping-ctr2");
    let data = TempDir::new("br-ping");
    let c = versioned(
        &conf(&data, &["10.11.0.0/24"], json!({"isDefaultGateway": true})),
        "1.1.0",
    );
    let r1 = ours(&pair, "c1")
        .run(&pair.host, "ADD", &c)
        .result()
        .clone();
    let at2 = Attachment::ours("bridge", "c2", second.path(), "eth0");
    let r2 = at2.run(&pair.host, "ADD", &c).result().clone();
    assert_eq!(result_addresses(&r1), ["10.11.0.2/24"]);
    assert_eq!(result_addresses(&r2), ["10.11.0.3/24"]);
    assert_eq!(
        r1["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.11.0.1"}])
    );
    let ipv4_forward = pair.host.run(["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(ipv4_forward.trim(), "1", "isGateway turns forwarding on");
    assert!(
        ping(&pair.container, "10.11.0.1", Duration::from_secs(10)),
        "container -> gateway"
    );
    assert!(
        ping(&pair.container, "10.11.0.3", Duration::from_secs(10)),
        "container -> container"
    );
    assert!(
        ping(&second, "10.11.0.2", Duration::from_secs(10)),
        "and back"
    );
    at2.run(&pair.host, "DEL", &with_prev(&c, &r2)).ok();
    ours(&pair, "c1")
        .run(&pair.host, "DEL", &with_prev(&c, &r1))
        .ok();
    assert!(host_veths(&pair.host).is_empty());
}

#[test]
fn ipv6_and_dual_stack() {
    if !require_root() {
        return;
    }
    for subnets in [&["fd10::/64"][..], &["10.12.0.0/24", "fd12::/64"][..]] {
        let pair = Pair::new("br-v6");
        let second = TestNs::new("br-v6-ctr2");
        let data = TempDir::new("br-v6");
        let c = versioned(
            &conf(&data, subnets, json!({"isDefaultGateway": true})),
            "1.0.0",
        );
        let r1 = ours(&pair, "c1")
            .run(&pair.host, "ADD", &c)
            .result()
            .clone();
        let at2 = Attachment::ours("bridge", "c2", second.path(), "eth0");
        at2.run(&pair.host, "ADD", &c).ok();
        let want_routes: Vec<Value> = subnets
            .iter()
            .map(|s| {
                let (dst, gw) = if s.contains(':') {
                    ("::/0", s.replace("::/64", "::1"))
                } else {
                    ("0.0.0.0/0", s.replace(".0/24", ".1"))
                };
                json!({"dst": dst, "gw": gw})
            })
            .collect();
        assert_eq!(
            r1["routes"],
            json!(want_routes),
            "one default route per family"
        );
        let v6 = subnets
            .iter()
            .find(|s| s.contains(':'))
            .unwrap()
            .replace("::/64", "");
        let dad = pair
            .container
            .run(["sysctl", "-n", "net.ipv6.conf.eth0.accept_dad"]);
        assert_eq!(
            dad.trim(),
            "0",
            "DAD is off in the container unless enabledad"
        );
        assert!(
            ping(&pair.container, &format!("{v6}::1"), Duration::from_secs(5)),
            "v6 gateway"
        );
        assert!(
            ping(&pair.container, &format!("{v6}::3"), Duration::from_secs(5)),
            "v6 neighbour"
        );
        if subnets.len() == 2 {
            assert!(ping(&pair.container, "10.12.0.3", Duration::from_secs(10)));
        }
        at2.run(&pair.host, "DEL", &c).ok();
        check_del_del(&ours(&pair, "c1"), &pair.host, &c, &r1);
        assert!(host_veths(&pair.host).is_empty() && reservations(&data, "brnet").is_empty());
    }
}

#[test]
fn hairpin_isolation_promisc_and_mtu() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("br-port");
    let data = TempDir::new("br-port");
    let extra = json!({"hairpinMode": true, "mtu": 1400});
    let c = versioned(&conf(&data, &["10.13.0.0/24"], extra), "1.1.0");
    let r = ours(&pair, "c1")
        .run(&pair.host, "ADD", &c)
        .result()
        .clone();
    let veth = host_veths(&pair.host).remove(0);
    let port = brport(&pair.host, &veth);
    assert_eq!(
        (port["hairpin"].clone(), port["isolated"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(pair.host.link(&veth).unwrap()["mtu"], 1400);
    assert_eq!(pair.container.link("eth0").unwrap()["mtu"], 1400);
    assert_eq!(
        pair.host.link("br0").unwrap()["mtu"],
        1400,
        "a new bridge gets the MTU"
    );
    assert_eq!(
        hairpinned(&pair.container),
        5,
        "hairpin sends frames back out of their port"
    );
    ours(&pair, "c1")
        .run(&pair.host, "CHECK", &with_prev(&c, &r))
        .ok();
    ours(&pair, "c1")
        .run(&pair.host, "DEL", &with_prev(&c, &r))
        .ok();

    let plain = versioned(
        &conf(
            &data,
            &["10.13.0.0/24"],
            json!({"promiscMode": true, "portIsolation": true}),
        ),
        "1.1.0",
    );
    let r = ours(&pair, "c2")
        .run(&pair.host, "ADD", &plain)
        .result()
        .clone();
    let veth = host_veths(&pair.host).remove(0);
    let port = brport(&pair.host, &veth);
    assert_eq!(
        (port["hairpin"].clone(), port["isolated"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(
        hairpinned(&pair.container),
        0,
        "without hairpin they are not"
    );
    let flags = pair.host.link("br0").unwrap()["flags"].clone();
    assert!(
        flags.as_array().unwrap().contains(&json!("PROMISC")),
        "{flags}"
    );
    let wrong = versioned(&conf(&data, &["10.13.0.0/24"], json!({})), "1.1.0");
    let e = ours(&pair, "c2").run(&pair.host, "CHECK", &with_prev(&wrong, &r));
    assert!(
        e.stdout
            .contains("Promisc Mode false doesn't match current state: true"),
        "{e}"
    );
    ours(&pair, "c2")
        .run(&pair.host, "DEL", &with_prev(&plain, &r))
        .ok();
    let both = versioned(
        &conf(
            &data,
            &["10.13.0.0/24"],
            json!({"promiscMode": true, "hairpinMode": true}),
        ),
        "1.1.0",
    );
    let e = ours(&pair, "c3").run(&pair.host, "ADD", &both);
    e.expect_error(7);
    assert!(host_veths(&pair.host).is_empty());
}

/// Sends 5 pings from the container to a made-up neighbour whose MAC is the container's own:
/// the bridge can only deliver them back out of the port they came in on. Returns how many
/// came back, counted by an nft rule at the container's prerouting (other frames, e.g. the
/// bridge's IPv6 multicast, do not count).
fn hairpinned(ctr: &TestNs) -> u64 {
    ctr.sh(
        "nft delete table ip hairpin 2>/dev/null; nft add table ip hairpin && \
         nft add chain ip hairpin pre '{ type filter hook prerouting priority -300; }' && \
         nft add rule ip hairpin pre ip daddr 10.13.0.200 counter",
    );
    let own = ctr.link("eth0").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    ctr.ip(&[
        "neigh",
        "replace",
        "10.13.0.200",
        "lladdr",
        &own,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let _ = ctr.exec(["ping", "-c", "5", "-i", "0.05", "-W", "1", "10.13.0.200"]);
    let rules = ctr.run(["nft", "list", "table", "ip", "hairpin"]);
    let packets = rules
        .split("counter packets ")
        .nth(1)
        .expect("counter rule");
    packets.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn mac_precedence_runtime_config_then_args_then_cni_args() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("br-mac");
    let data = TempDir::new("br-mac");
    let base = conf(&data, &["10.14.0.0/24"], json!({}));
    let cases = [
        (
            json!({"runtimeConfig": {"mac": "02:00:00:00:00:01"}, "args": {"cni": {"mac": "02:00:00:00:00:02"}}}),
            "02:00:00:00:00:01",
        ),
        (
            json!({"args": {"cni": {"mac": "02:00:00:00:00:02"}}}),
            "02:00:00:00:00:02",
        ),
        (json!({}), "02:00:00:00:00:03"),
    ];
    for (extra, want) in cases {
        let mut c = versioned(&base, "1.0.0");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let at = Attachment::ours("bridge", "cm", pair.container.path(), "eth0");
        let out = crate::support::Cni::new(crate::support::Farm::shared(), "bridge")
            .command("ADD")
            .container_id("cm")
            .netns(pair.container.path())
            .ifname("eth0")
            .args("IgnoreUnknown=1;MAC=02:00:00:00:00:03")
            .config(&c)
            .run_in(&pair.host);
        assert_eq!(out.result()["interfaces"][2]["mac"], want);
        assert_eq!(pair.container.link("eth0").unwrap()["address"], want);
        at.run(&pair.host, "DEL", &c).ok();
    }
}

#[test]
fn macspoofchk_drops_frames_with_another_source_mac() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("br-spoof");
    let data = TempDir::new("br-spoof");
    let c = versioned(
        &conf(
            &data,
            &["10.15.0.0/24"],
            json!({"isGateway": true, "macspoofchk": true}),
        ),
        "1.0.0",
    );
    let r = ours(&pair, "c1")
        .run(&pair.host, "ADD", &c)
        .result()
        .clone();
    let veth = host_veths(&pair.host).remove(0);
    let mac = r["interfaces"][2]["mac"].as_str().unwrap().to_string();
    let rules = pair.host.run(["nft", "list", "table", "bridge", "nat"]);
    assert!(
        rules.contains(&format!(
            "iifname \"{veth}\" jump cni-br-iface-c1-eth0 comment \"macspoofchk-c1-eth0\""
        )),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("ether saddr {mac} return")),
        "{rules}"
    );
    assert!(
        ping(&pair.container, "10.15.0.1", Duration::from_secs(10)),
        "own MAC passes"
    );
    pair.container
        .ip(&["link", "set", "eth0", "address", "02:66:66:66:66:66"]);
    pair.container.ip(&["neigh", "flush", "all"]);
    pair.host.ip(&["neigh", "flush", "all"]);
    assert!(
        !ping(&pair.container, "10.15.0.1", Duration::from_millis(1500)),
        "spoofed MAC is dropped"
    );
    ours(&pair, "c1")
        .run(&pair.host, "DEL", &with_prev(&c, &r))
        .ok();
    assert!(
        netfilter_leftovers(&pair.host).is_empty(),
        "{:?}",
        netfilter_leftovers(&pair.host)
    );
}

#[test]
fn layer2_only_and_disabled_container_interface() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("br-l2");
    let l2 = json!({"cniVersion": "1.1.0", "name": "l2", "type": "bridge", "bridge": "br0"});
    let r = ours(&pair, "c1")
        .run(&pair.host, "ADD", &l2)
        .result()
        .clone();
    assert!(r.get("ips").is_none(), "{r}");
    let flags = pair.container.link("eth0").unwrap()["flags"].clone();
    assert!(
        flags.as_array().unwrap().contains(&json!("UP")),
        "L2 container veth is up"
    );
    ours(&pair, "c1")
        .run(&pair.host, "CHECK", &with_prev(&l2, &r))
        .ok();
    ours(&pair, "c1").run(&pair.host, "DEL", &l2).ok();

    let mut off = l2.clone();
    off["disableContainerInterface"] = json!(true);
    ours(&pair, "c2").run(&pair.host, "ADD", &off).ok();
    let flags = pair.container.link("eth0").unwrap()["flags"].clone();
    assert!(
        !flags.as_array().unwrap().contains(&json!("UP")),
        "left down: {flags}"
    );
    ours(&pair, "c2").run(&pair.host, "DEL", &off).ok();
    assert!(host_veths(&pair.host).is_empty());
}

#[test]
fn enabledad_turns_duplicate_address_detection_on() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("br-dad");
    let data = TempDir::new("br-dad");
    let c = versioned(
        &conf(&data, &["10.16.0.0/24"], json!({"enabledad": true})),
        "1.0.0",
    );
    // A new interface takes these from `default`; off there, so only the plugin can turn them on.
    pair.container.sh(
        "sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.default.enhanced_dad=0 \
         net.ipv4.conf.default.arp_notify=0",
    );
    ours(&pair, "c1").run(&pair.host, "ADD", &c).ok();
    let knobs = [
        "net.ipv6.conf.eth0.accept_dad",
        "net.ipv6.conf.eth0.enhanced_dad",
        "net.ipv4.conf.eth0.arp_notify",
    ];
    let values = pair
        .container
        .run(["sysctl", "-n", knobs[0], knobs[1], knobs[2]]);
    assert_eq!(values, "1\n1\n1\n");
    ours(&pair, "c1").run(&pair.host, "DEL", &c).ok();
}
