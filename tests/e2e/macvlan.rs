//! macvlan, end to end on a fake host with a "LAN" (support::lan): ADD -> CHECK -> DEL -> DEL
//! in every spec version with and without IPAM; the link's mode, MTU, MAC and broadcast queue
//! read back with `ip -d -j link`; real traffic between two containers on one master and to a
//! LAN machine; the master taken from the default route, from inside the container, or from a
//! chained `prevResult`; a fixed IP per pod (static, CNI_ARGS `IP=`, `runtimeConfig.ips`);
//! the DEL matrix; config errors and failed ADDs leaving nothing; GC and STATUS forwarded to
//! IPAM; ADD by the reference and DEL by us, and the other way round.

use crate::podnet::{
    Attachment, REF_VERSION, VERSIONS, addresses, check_del_del, check_del_del_in, reservations,
    result_addresses, versioned, with_prev,
};
use crate::support::lan::{Lan, link_info};
use crate::support::traffic::ping;
use crate::support::{Cni, Farm, TempDir, TestNs, require_root, skip};
use serde_json::{Value, json};
use std::time::Duration;

const NET: &str = "lannet";

/// host-local on the LAN's .100-.199 with the LAN router as gateway.
pub fn lan_ipam(data: &TempDir, lan: &Lan) -> Value {
    json!({
        "type": "host-local",
        "dataDir": data.path(),
        "ranges": [[{
            "subnet": lan.subnet(),
            "rangeStart": lan.addr(100),
            "rangeEnd": lan.addr(199),
            "gateway": lan.addr(1)
        }]]
    })
}

/// A macvlan config on `lan0` (1.1.0), with host-local when `data` is given, plus `extra`.
fn conf(lan: &Lan, data: Option<&TempDir>, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": NET, "type": "macvlan", "master": "lan0"});
    if let Some(d) = data {
        c["ipam"] = lan_ipam(d, lan);
    }
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn ours(ctr: &TestNs, cid: &str) -> Attachment {
    Attachment::ours("macvlan", cid, ctr.path(), "eth0")
}

/// One call of our macvlan with CNI_ARGS.
fn with_args(ctr: &TestNs, cid: &str, cni_args: &str) -> Cni {
    Cni::new(Farm::shared(), "macvlan")
        .container_id(cid)
        .netns(ctr.path())
        .ifname("eth0")
        .args(cni_args)
}

/// Links in `ns` other than `lo`.
pub fn links_but_lo(ns: &TestNs) -> Vec<String> {
    ns.link_names().into_iter().filter(|n| n != "lo").collect()
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let lan = Lan::new(&format!("mv-v{version}"), "192.168.61");
        let ctr = TestNs::new(&format!("mv-v{version}-ctr"));
        let data = TempDir::new("mv-versions");
        let c = versioned(&conf(&lan, Some(&data), json!({})), version);
        let at = ours(&ctr, "c1");
        let r = at.run(&lan.host, "ADD", &c).result().clone();
        assert_eq!(result_addresses(&r), ["192.168.61.100/24"], "{version}");
        assert_eq!(addresses(&ctr, "eth0"), ["192.168.61.100/24"]);
        let (kind, data_) = link_info(&ctr, "eth0");
        assert_eq!(
            (kind.as_str(), &data_["mode"]),
            ("macvlan", &json!("bridge"))
        );
        if version >= "0.3.0" {
            let ifs = r["interfaces"].as_array().unwrap();
            assert_eq!(ifs.len(), 1, "{r}");
            assert_eq!(ifs[0]["name"], "eth0");
            assert_eq!(ifs[0]["mac"], ctr.link("eth0").unwrap()["address"]);
            assert_eq!(ifs[0]["sandbox"], ctr.path().to_str().unwrap());
            assert_eq!(r["ips"][0]["interface"], 0);
            assert_eq!(r["ips"][0]["gateway"], "192.168.61.1");
        }
        let sysctl = |k: &str| ctr.run(["sysctl", "-n", k]).trim().to_string();
        assert_eq!(sysctl("net.ipv4.conf.eth0.arp_notify"), "1");
        assert_eq!(sysctl("net.ipv6.conf.eth0.ndisc_notify"), "1");
        check_del_del_in(version, &at, &lan.host, &c, &r);
        assert!(links_but_lo(&ctr).is_empty(), "{:?}", links_but_lo(&ctr));
        assert!(reservations(&data, NET).is_empty());
        assert_eq!(links_but_lo(&lan.host), ["lan0"], "the master stays");
    }
}

#[test]
fn l2_only_without_ipam_in_every_version() {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let lan = Lan::new(&format!("mvl2-v{version}"), "192.168.62");
        let ctr = TestNs::new(&format!("mvl2-v{version}-ctr"));
        let c = versioned(&conf(&lan, None, json!({"mode": "private"})), version);
        let at = ours(&ctr, "c1");
        if version < "0.3.0" {
            // Those results have no interfaces: refused before anything is created.
            let out = at.run(&lan.host, "ADD", &c);
            let msg = out.expect_error(7)["msg"].as_str().unwrap().to_string();
            assert!(msg.contains("needs cniVersion 0.3.0 or later"), "{out}");
            assert!(links_but_lo(&ctr).is_empty());
            at.run(&lan.host, "DEL", &c).ok();
            continue;
        }
        let r = at.run(&lan.host, "ADD", &c).result().clone();
        assert!(result_addresses(&r).is_empty(), "{r}");
        let link = ctr.link("eth0").expect("eth0");
        assert!(
            link["flags"].as_array().unwrap().contains(&json!("UP")),
            "{link}"
        );
        assert!(addresses(&ctr, "eth0").is_empty());
        assert_eq!(link_info(&ctr, "eth0").1["mode"], "private");
        assert_eq!(r["interfaces"][0]["mac"], link["address"]);
        check_del_del_in(version, &at, &lan.host, &c, &r);
        assert!(links_but_lo(&ctr).is_empty());
    }
}

/// Two containers on one master in bridge mode reach each other and the LAN machine; MTU,
/// MAC (runtimeConfig.mac, CNI_ARGS MAC) and broadcast queue as configured.
#[test]
fn bridge_mode_traffic_and_link_settings() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mv-traffic", "192.168.63");
    let (a, b) = (TestNs::new("mv-traffic-a"), TestNs::new("mv-traffic-b"));
    let data = TempDir::new("mv-traffic");
    let c = conf(
        &lan,
        Some(&data),
        json!({"mtu": 1400, "bcqueuelen": 2000, "mac": "02:63:00:00:00:09"}),
    );
    let mut ca = c.clone();
    ca["runtimeConfig"] = json!({"mac": "02:63:00:00:00:0a"});
    let ra = ours(&a, "a").run(&lan.host, "ADD", &ca).result().clone();
    let rb = with_args(&b, "b", "IgnoreUnknown=1;MAC=02:63:00:00:00:0b")
        .command("ADD")
        .config(&c)
        .run_in(&lan.host)
        .result()
        .clone();
    for (ns, mac) in [(&a, "02:63:00:00:00:0a"), (&b, "02:63:00:00:00:0b")] {
        let l = ns.link("eth0").unwrap();
        assert_eq!(
            (l["mtu"].as_u64(), l["address"].as_str()),
            (Some(1400), Some(mac))
        );
        let (_, d) = link_info(ns, "eth0");
        assert_eq!(
            (&d["mode"], &d["bcqueuelen"]),
            (&json!("bridge"), &json!(2000))
        );
    }
    assert_eq!(ra["interfaces"][0]["mac"], "02:63:00:00:00:0a");
    let (ip_a, ip_b) = ("192.168.63.100", "192.168.63.101");
    assert_eq!(result_addresses(&rb), [format!("{ip_b}/24")]);
    let within = Duration::from_secs(10);
    for (ns, to) in [
        (&a, ip_b),
        (&b, ip_a),
        (&a, "192.168.63.1"),
        (&lan.lan, ip_b),
    ] {
        assert!(ping(ns, to, within), "{} -> {to}", ns.label());
    }
    check_del_del(&ours(&a, "a"), &lan.host, &ca, &ra);
    check_del_del(&ours(&b, "b"), &lan.host, &c, &rb);
    assert!(links_but_lo(&a).is_empty() && links_but_lo(&b).is_empty());
    assert!(reservations(&data, NET).is_empty());
}

/// No `master`: the host's default route interface; `linkInContainer`: a link inside the
/// container (named, or the container's default route interface).
#[test]
fn default_master_and_master_inside_the_container() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mv-default", "192.168.64").with_default_route();
    let ctr = TestNs::new("mv-default-ctr");
    let data = TempDir::new("mv-default");
    let mut c = conf(&lan, Some(&data), json!({}));
    c.as_object_mut().unwrap().remove("master");
    let at = ours(&ctr, "c1");
    let r = at.run(&lan.host, "ADD", &c).result().clone();
    let eth0 = ctr.link("eth0").unwrap();
    assert_eq!(eth0["link_index"].as_u64(), Some(lan.host_ifindex("lan0")));
    assert!(ping(&ctr, &lan.addr(1), Duration::from_secs(10)));
    check_del_del(&at, &lan.host, &c, &r);

    let pid = lan.lan.pid().to_string();
    ctr.ip(&[
        "link", "add", "uplink", "type", "veth", "peer", "name", "cpeer", "netns", &pid,
    ]);
    ctr.ip(&["link", "set", "uplink", "up"]);
    let inside = conf(
        &lan,
        None,
        json!({"master": "uplink", "linkInContainer": true}),
    );
    let net1 = Attachment::ours("macvlan", "c2", ctr.path(), "net1");
    let r = net1.run(&lan.host, "ADD", &inside).result().clone();
    let l = ctr.link("net1").unwrap();
    // A parent in the same netns is shown by name.
    assert_eq!(l["link"], "uplink", "{l}");
    check_del_del(&net1, &lan.host, &inside, &r);
    // No master and linkInContainer: the container's default route interface.
    ctr.ip(&["addr", "add", "10.64.9.2/24", "dev", "uplink"]);
    ctr.ip(&["route", "add", "default", "via", "10.64.9.1"]);
    let mut by_route = inside.clone();
    by_route.as_object_mut().unwrap().remove("master");
    let r = net1.run(&lan.host, "ADD", &by_route).result().clone();
    assert_eq!(ctr.link("net1").unwrap()["link"], "uplink");
    check_del_del(&net1, &lan.host, &by_route, &r);
    assert_eq!(links_but_lo(&ctr), ["uplink"]);
}

/// Chained: no `master`, a `prevResult` naming one host-side interface: that one, even when
/// the default route leaves through another.
#[test]
fn chained_master_from_prev_result() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mv-chain", "192.168.65");
    let ctr = TestNs::new("mv-chain-ctr");
    lan.host.ip(&[
        "link", "add", "other0", "type", "veth", "peer", "name", "other1",
    ]);
    lan.host.ip(&["link", "set", "other0", "up"]);
    lan.host
        .ip(&["addr", "add", "10.65.0.2/24", "dev", "other0"]);
    lan.host
        .ip(&["route", "add", "default", "via", "10.65.0.1"]);
    let data = TempDir::new("mv-chain");
    let mut c = conf(&lan, Some(&data), json!({}));
    c.as_object_mut().unwrap().remove("master");
    let prev = json!({"cniVersion": "1.1.0", "interfaces": [
        {"name": "lan0"}, {"name": "eth9", "sandbox": "/var/run/netns/elsewhere"}]});
    let chained = with_prev(&c, &prev);
    let at = ours(&ctr, "c1");
    let r = at.run(&lan.host, "ADD", &chained).result().clone();
    assert_eq!(
        ctr.link("eth0").unwrap()["link_index"].as_u64(),
        Some(lan.host_ifindex("lan0"))
    );
    assert_eq!(r["interfaces"].as_array().unwrap().len(), 1, "{r}");
    assert!(ping(&ctr, &lan.addr(1), Duration::from_secs(10)));
    check_del_del(&at, &lan.host, &c, &r);
    // Without prevResult: the default route's interface.
    let r = at.run(&lan.host, "ADD", &c).result().clone();
    assert_eq!(
        ctr.link("eth0").unwrap()["link_index"].as_u64(),
        Some(lan.host_ifindex("other0"))
    );
    check_del_del(&at, &lan.host, &c, &r);
    // Two host-side interfaces: ambiguous, a config error.
    let two = json!({"cniVersion": "1.1.0", "interfaces": [{"name": "lan0"}, {"name": "other0"}]});
    let out = at.run(&lan.host, "ADD", &with_prev(&c, &two));
    out.expect_error(7);
    assert!(out.stdout.contains("chained master failure"), "{out}");
    assert!(links_but_lo(&ctr).is_empty() && reservations(&data, NET).is_empty());
}

/// DEL succeeds, twice, and releases the address whatever is already gone.
#[test]
fn del_matrix_releases_the_address() {
    if !require_root() {
        return;
    }
    type Break = fn(&Lan, &TestNs, &TempDir, &mut Value) -> Option<String>;
    let cases: [(&str, Break); 6] = [
        ("netns gone", |_, ctr, _, _| {
            Some(ctr.path().to_str().unwrap().to_string())
        }),
        ("empty netns", |_, _, _, _| Some(String::new())),
        ("link gone", |_, ctr, _, _| {
            ctr.ip(&["link", "del", "eth0"]);
            None
        }),
        ("master gone", |lan, _, _, _| {
            lan.host.ip(&["link", "del", "lan0"]);
            None
        }),
        ("no prevResult, unknown master", |_, _, _, c| {
            c["master"] = json!("gone0");
            c.as_object_mut().unwrap().remove("prevResult");
            None
        }),
        ("IPAM store gone", |_, _, data, _| {
            std::fs::remove_dir_all(data.join(NET)).unwrap();
            None
        }),
    ];
    for (what, break_it) in cases {
        let lan = Lan::new("mv-delm", "192.168.66");
        let ctr = TestNs::new("mv-delm-ctr");
        let data = TempDir::new("mv-delm");
        let c = conf(&lan, Some(&data), json!({}));
        let at = ours(&ctr, "c1");
        let r = at.run(&lan.host, "ADD", &c).result().clone();
        assert_eq!(reservations(&data, NET).len(), 1);
        let mut del = with_prev(&c, &r);
        let at = match break_it(&lan, &ctr, &data, &mut del) {
            Some(netns) => at.netns(&netns),
            None => at,
        };
        if what == "netns gone" {
            drop(ctr);
            for _ in 0..2 {
                let out = at.run(&lan.host, "DEL", &del);
                assert_eq!(out.code, 0, "{what}: {out}");
            }
        } else {
            for _ in 0..2 {
                let out = at.run(&lan.host, "DEL", &del);
                assert_eq!(out.code, 0, "{what}: {out}");
            }
            if what != "empty netns" {
                assert!(links_but_lo(&ctr).is_empty(), "{what}");
            }
        }
        assert!(
            reservations(&data, NET).is_empty(),
            "{what}: address not released"
        );
    }
}

/// A fixed address per pod: static IPAM, host-local with CNI_ARGS `IP=` and with
/// `runtimeConfig.ips`; the LAN machine reaches each.
#[test]
fn fixed_ip_per_pod() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mv-fixed", "192.168.67");
    let data = TempDir::new("mv-fixed");
    let static_ipam = json!({"type": "static", "addresses": [
        {"address": "192.168.67.50/24", "gateway": "192.168.67.1"}]});
    let cases = [
        ("static", json!({"ipam": static_ipam}), "", "192.168.67.50"),
        (
            "CNI_ARGS IP",
            json!({}),
            "IgnoreUnknown=1;IP=192.168.67.150",
            "192.168.67.150",
        ),
        (
            "runtimeConfig.ips",
            json!({"capabilities": {"ips": true}, "runtimeConfig": {"ips": ["192.168.67.160/24"]}}),
            "",
            "192.168.67.160",
        ),
    ];
    for (what, extra, cni_args, want) in cases {
        let ctr = TestNs::new("mv-fixed-ctr");
        let c = conf(&lan, Some(&data), extra);
        let call = with_args(&ctr, "pod", cni_args).config(&c);
        let r = call
            .clone()
            .command("ADD")
            .run_in(&lan.host)
            .result()
            .clone();
        assert_eq!(result_addresses(&r), [format!("{want}/24")], "{what}");
        assert_eq!(addresses(&ctr, "eth0"), [format!("{want}/24")], "{what}");
        assert!(ping(&lan.lan, want, Duration::from_secs(10)), "{what}");
        let with = with_prev(&c, &r);
        for verb in ["CHECK", "DEL", "DEL"] {
            call.clone()
                .command(verb)
                .config(&with)
                .run_in(&lan.host)
                .ok();
        }
        assert!(reservations(&data, NET).is_empty(), "{what}");
        assert!(links_but_lo(&ctr).is_empty(), "{what}");
    }
}

/// Bad mode, a missing master, an MTU above the master's, no master and no default route,
/// a bad MAC: code 7 and nothing created or reserved. A failure after IPAM (a route through
/// an unreachable gateway) and a rename clash: the link and the address are gone too.
#[test]
fn config_errors_and_failed_adds_leave_nothing() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mv-bad", "192.168.68");
    let ctr = TestNs::new("mv-bad-ctr");
    let data = TempDir::new("mv-bad");
    let no_master = {
        let mut c = conf(&lan, Some(&data), json!({}));
        c.as_object_mut().unwrap().remove("master");
        c
    };
    let cases = [
        (
            conf(&lan, Some(&data), json!({"mode": "bogus"})),
            "unknown macvlan mode",
        ),
        (
            conf(&lan, Some(&data), json!({"master": "nosuch0"})),
            "failed to lookup master \"nosuch0\"",
        ),
        (
            conf(&lan, Some(&data), json!({"mtu": 9000})),
            "invalid MTU 9000, must be [0, master MTU(1500)]",
        ),
        (no_master, "no default route"),
        (
            conf(&lan, Some(&data), json!({"mac": "not-a-mac"})),
            "invalid MAC address",
        ),
    ];
    for (c, want) in cases {
        let out = ours(&ctr, "c1").run(&lan.host, "ADD", &c);
        let msg = out.expect_error(7)["msg"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "want {want:?}: {out}");
        assert!(links_but_lo(&ctr).is_empty() && reservations(&data, NET).is_empty());
    }
    let mut unreachable = conf(&lan, Some(&data), json!({}));
    unreachable["ipam"]["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "172.31.255.1"}]);
    let out = ours(&ctr, "c1").run(&lan.host, "ADD", &unreachable);
    assert_ne!(out.code, 0, "{out}");
    assert!(links_but_lo(&ctr).is_empty(), "{:?}", links_but_lo(&ctr));
    assert!(
        reservations(&data, NET).is_empty(),
        "the address was released"
    );
    ctr.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let out = ours(&ctr, "c1").run(&lan.host, "ADD", &conf(&lan, Some(&data), json!({})));
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains("failed to rename macvlan to \\\"eth0\\\""),
        "{out}"
    );
    let mut left = links_but_lo(&ctr);
    left.sort();
    assert_eq!(left, ["eth0", "eth0p"], "only what was there before");
    assert!(reservations(&data, NET).is_empty());
}

#[test]
fn gc_and_status_go_to_ipam() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mv-gc", "192.168.69");
    let (keep, stale) = (TestNs::new("mv-gc-keep"), TestNs::new("mv-gc-stale"));
    let data = TempDir::new("mv-gc");
    let mut c = conf(&lan, Some(&data), json!({}));
    c["ipam"]["ranges"][0][0]["rangeEnd"] = json!("192.168.69.101");
    let status = |c: &Value| {
        Cni::new(Farm::shared(), "macvlan")
            .command("STATUS")
            .config(c)
            .run_in(&lan.host)
    };
    status(&c).ok();
    ours(&keep, "keep").run(&lan.host, "ADD", &c).ok();
    ours(&stale, "stale").run(&lan.host, "ADD", &c).ok();
    assert_eq!(status(&c).error_code(), Some(50), "range exhausted");
    status(&conf(&lan, None, json!({}))).ok();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    Cni::new(Farm::shared(), "macvlan")
        .command("GC")
        .config(&gc)
        .run_in(&lan.host)
        .ok();
    assert_eq!(reservations(&data, NET), ["192.168.69.100"]);
    ours(&keep, "keep").run(&lan.host, "DEL", &c).ok();
    ours(&stale, "stale").run(&lan.host, "DEL", &c).ok();
    assert!(reservations(&data, NET).is_empty());
}

/// The reference's ADD undone by our DEL and ours by the reference's: no link, no address.
#[test]
fn interop_with_the_reference() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mv-interop", "192.168.70");
    let ctr = TestNs::new("mv-interop-ctr");
    let data = TempDir::new("mv-interop");
    let c = versioned(&conf(&lan, Some(&data), json!({"mtu": 1450})), REF_VERSION);
    let Some(theirs) = Attachment::reference("macvlan", "c1", ctr.path(), "eth0") else {
        skip!("reference macvlan not installed (/usr/lib/cni/macvlan)");
    };
    let ours_ = ours(&ctr, "c1");
    for (adder, deleter) in [(&theirs, &ours_), (&ours_, &theirs)] {
        let r = adder.run(&lan.host, "ADD", &c).result().clone();
        let got = result_addresses(&r);
        assert_eq!(addresses(&ctr, "eth0"), got);
        assert_eq!(reservations(&data, NET).len(), 1);
        assert_eq!(ctr.link("eth0").unwrap()["mtu"], 1450);
        deleter.run(&lan.host, "CHECK", &with_prev(&c, &r)).ok();
        deleter.run(&lan.host, "DEL", &with_prev(&c, &r)).ok();
        deleter.run(&lan.host, "DEL", &c).ok();
        assert!(links_but_lo(&ctr).is_empty());
        assert!(reservations(&data, NET).is_empty());
    }
}
