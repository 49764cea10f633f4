//! bridge and ptp on hosts and inputs that are only partly right: ip6tables missing (DEL
//! still succeeds and removes the IPv4 rules; a dual-stack ADD that fails half-way leaves
//! nothing), a container link that lost its IPv6 address (DEL still removes the IPv6 rules), a
//! config ADD refuses (DEL still releases IPAM), nf_tables out of reach (the spoof-check
//! teardown does not fail DEL) and an IPAM plugin whose ADD result cannot be read (it gets
//! its DEL).

use crate::podnet::{Attachment, host_veths, ipam, netfilter_leftovers, reservations, with_prev};
use crate::support::{Cni, Farm, Pair, TempDir, TestNs, require_root};
use serde_json::{Value, json};

fn conf(data: &TempDir, applet: &str, subnets: &[&str], extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "podfail", "type": applet,
        "bridge": "br0", "isGateway": true, "ipMasq": true, "ipam": ipam(data, subnets)});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// A `PATH` directory with the iptables tools but `ip6tables-save`, so IPv6 iptables is
/// unusable while IPv4 works (and `nsenter`, which the rig execs through that `PATH`).
fn path_without_ip6tables_save(dir: &TempDir) -> String {
    for tool in [
        "/usr/sbin/iptables",
        "/usr/sbin/iptables-save",
        "/usr/sbin/iptables-restore",
        "/usr/sbin/ip6tables",
        "/usr/sbin/ip6tables-restore",
        "/usr/bin/nsenter",
    ] {
        let target = std::path::Path::new(tool);
        let name = target.file_name().unwrap();
        std::os::unix::fs::symlink(target, dir.join(name)).expect("symlink a tool");
    }
    dir.path().to_str().unwrap().to_string()
}

fn call(applet: &str, ctr: &TestNs, cid: &str) -> Cni {
    Cni::new(Farm::shared(), applet)
        .container_id(cid)
        .netns(ctr.path())
        .ifname("eth0")
}

/// Without ip6tables-save, DEL with neither a link nor a `prevResult` sweeps both families:
/// the IPv4 rules go and the IPv6 side, unusable here, is skipped.
#[test]
fn del_without_ip6tables_removes_ipv4_masq_and_succeeds() {
    if !require_root() {
        return;
    }
    for applet in ["bridge", "ptp"] {
        let pair = Pair::new("pf-noip6");
        let data = TempDir::new("pf-noip6");
        let bin = TempDir::new("pf-noip6-bin");
        let path = path_without_ip6tables_save(&bin);
        let c = conf(&data, applet, &["10.30.0.0/24"], json!({}));
        let at = call(applet, &pair.container, "c1").env("PATH", &path);
        at.clone().command("ADD").config(&c).run_in(&pair.host).ok();
        assert!(!netfilter_leftovers(&pair.host).is_empty());
        pair.container.ip(&["link", "del", "eth0"]);
        let out = at.clone().command("DEL").config(&c).run_in(&pair.host);
        out.ok();
        assert!(
            netfilter_leftovers(&pair.host).is_empty(),
            "{applet}: {:?}",
            netfilter_leftovers(&pair.host)
        );
        at.command("DEL").config(&c).run_in(&pair.host).ok();
    }
}

/// A dual-stack ADD whose IPv6 masquerade fails (no ip6tables-save) leaves no IPv4 rule, no
/// veth and no reservation behind.
#[test]
fn add_failing_on_ipv6_masq_leaves_no_ipv4_rules() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("pf-half");
    let data = TempDir::new("pf-half");
    let bin = TempDir::new("pf-half-bin");
    let path = path_without_ip6tables_save(&bin);
    let c = conf(
        &data,
        "bridge",
        &["10.31.0.0/24", "fd31::/64"],
        json!({"ipMasqBackend": "iptables"}),
    );
    let at = call("bridge", &pair.container, "c1").env("PATH", &path);
    let out = at.command("ADD").config(&c).run_in(&pair.host);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        netfilter_leftovers(&pair.host).is_empty(),
        "{:?}",
        netfilter_leftovers(&pair.host)
    );
    assert!(host_veths(&pair.host).is_empty());
    assert!(reservations(&data, "podfail").is_empty());
}

/// The link kept only its IPv4 address: DEL still removes the IPv6 rules `prevResult` names.
#[test]
fn del_removes_masq_of_prev_result_families_the_link_lost() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("pf-lost6");
    let data = TempDir::new("pf-lost6");
    let c = conf(
        &data,
        "bridge",
        &["10.32.0.0/24", "fd32::/64"],
        json!({"ipMasqBackend": "iptables"}),
    );
    let at = Attachment::ours("bridge", "c1", pair.container.path(), "eth0");
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    let v6 = pair
        .container
        .ip_json(&["-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    let addr = v6[0]["addr_info"][0]["local"].as_str().unwrap().to_string();
    pair.container
        .ip(&["-6", "addr", "del", &format!("{addr}/64"), "dev", "eth0"]);
    at.run(&pair.host, "DEL", &with_prev(&c, &r)).ok();
    assert!(
        netfilter_leftovers(&pair.host).is_empty(),
        "{:?}",
        netfilter_leftovers(&pair.host)
    );
}

/// DEL needs none of the keys only ADD uses: a bridge name ADD refuses does not stop it
/// releasing IPAM.
#[test]
fn bridge_del_with_a_config_add_refuses_releases_ipam() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("pf-badname");
    let data = TempDir::new("pf-badname");
    let c = conf(&data, "bridge", &["10.33.0.0/24"], json!({}));
    let at = Attachment::ours("bridge", "c1", pair.container.path(), "eth0");
    at.run(&pair.host, "ADD", &c).ok();
    assert_eq!(reservations(&data, "podfail"), ["10.33.0.2"]);
    let mut bad = c.clone();
    bad["bridge"] = json!("averylongbridgename0");
    at.run(&pair.host, "ADD", &bad).expect_error(7);
    at.run(&pair.host, "DEL", &bad).ok();
    assert!(reservations(&data, "podfail").is_empty());
    assert!(pair.container.link("eth0").is_none());
    assert!(netfilter_leftovers(&pair.host).is_empty());
}

/// With nf_tables out of reach (no CAP_NET_ADMIN over the host netns: a new user namespace),
/// the spoof-check teardown cannot run and there is nothing it could have made: DEL succeeds.
#[test]
fn bridge_del_succeeds_when_nftables_is_unusable() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("pf-nonft");
    let c = json!({"cniVersion": "1.1.0", "name": "podfail", "type": "bridge",
        "bridge": "br0", "macspoofchk": true});
    let out = call("bridge", &pair.container, "c1")
        .netns("/var/run/netns/pf-nonft-gone")
        .under(["unshare", "--user"])
        .command("DEL")
        .config(&c)
        .run_in(&pair.host);
    out.ok();
}

/// An IPAM plugin whose ADD result does not decode still allocated: the failed ADD sends it
/// a DEL.
#[test]
fn unreadable_ipam_result_still_gets_ipam_del() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("pf-badipam");
    let dir = TempDir::new("pf-badipam");
    let marker = dir.join("released");
    let script = format!(
        "#!/bin/sh\ncat >/dev/null\ncase \"$CNI_COMMAND\" in\n\
         ADD) echo '{{\"cniVersion\":\"1.1.0\",\"ips\":\"not a list\"}}' ;;\n\
         DEL) touch {} ;;\nesac\n",
        marker.display()
    );
    let ipam_bin = dir.write("bad-ipam", script);
    std::fs::set_permissions(
        &ipam_bin,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for applet in ["bridge", "ptp"] {
        let _ = std::fs::remove_file(&marker);
        let c = json!({"cniVersion": "1.1.0", "name": "podfail", "type": applet,
            "bridge": "br0", "ipam": {"type": "bad-ipam"}});
        let out = call(applet, &pair.container, "c1")
            .path(dir.path())
            .command("ADD")
            .config(&c)
            .run_in(&pair.host);
        assert_ne!(out.code, 0, "{out}");
        assert!(marker.exists(), "{applet}: no IPAM DEL after {out}");
        assert!(host_veths(&pair.host).is_empty());
    }
}

/// `isGateway` with a gateway of the other family than its address (static IPAM passes it
/// through) is a config error, not a crash, and leaves no veth behind.
#[test]
fn bridge_gateway_of_the_other_family_is_a_config_error() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("pf-gwfam");
    let c = json!({"cniVersion": "1.1.0", "name": "podfail", "type": "bridge",
        "bridge": "br0", "isGateway": true, "ipam": {"type": "static",
        "addresses": [{"address": "2001:db8::5/64", "gateway": "10.0.0.1"}]}});
    let at = Attachment::ours("bridge", "c1", pair.container.path(), "eth0");
    let err = at.run(&pair.host, "ADD", &c).expect_error(7).clone();
    assert!(err["msg"].as_str().unwrap().contains("10.0.0.1"), "{err}");
    assert!(host_veths(&pair.host).is_empty());
    assert!(pair.container.link("eth0").is_none());
}
