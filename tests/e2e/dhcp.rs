//! dhcp, end to end against real servers in a fake host netns: dnsmasq and busybox udhcpd on
//! a bridge, our `dhcp daemon` beside them, containers on veths. ADD through the bridge plugin
//! (address and routes in the container, option 121 and option 33 + router), every spec
//! version; DEL releasing (the server's lease file); renewal (udhcpd's log); a daemon restart
//! mid-lease resuming and renewing the same address; DEL with the daemon stopped; STATUS 50;
//! several containers on one daemon; a silent server timing out and leaving nothing; DHCPv6
//! alongside DHCPv4 exactly when a Router Advertisement has the M flag (or `ipv6: true`).

pub(crate) mod rig;

use crate::podnet::VERSIONS;
use crate::support::require_root;
use nix::sys::signal::Signal;
use rig::{Lan, client_id_hex, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

fn addrs(ns: &crate::support::TestNs) -> Vec<String> {
    ns.ip_json(&["-4", "addr", "show", "dev", "eth0"])[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn routes(ns: &crate::support::TestNs) -> Vec<String> {
    ns.run(["ip", "-4", "route", "show"])
        .lines()
        .filter(|l| !l.contains("proto kernel"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Lines of udhcpd's log that say `what` (e.g. "sending ACK").
fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// OFFERs udhcpd sent after its first ACK: a renewal needs none (a first DISCOVER lost while
/// the link settles may be answered twice before that).
fn offers_after_first_ack(log: &str) -> usize {
    log.split_once("sending ACK")
        .map_or(0, |(_, rest)| count(rest, "sending OFFER"))
}

#[test]
fn bridge_add_check_del_del_with_dnsmasq_option_121_in_every_version() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-121", 81, false);
    let _srv = lan.dnsmasq(&["--dhcp-option=121,10.99.0.0/16,10.81.0.254,0.0.0.0/0,10.81.0.1"]);
    let _d = lan.daemon(&[]);
    for version in VERSIONS {
        let ctr = lan.empty_container(&format!("dhcp-121-{version}"));
        let cid = format!("c-{}", version.replace('.', ""));
        let conf = lan.bridge_conf(version);
        let r = lan
            .call("bridge", "ADD", &cid, &ctr, &conf)
            .result()
            .clone();
        // 0.1.0 and 0.2.0 results carry `ip4.ip`, later ones `ips[].address`
        let ip = r["ips"][0]["address"]
            .as_str()
            .or(r["ip4"]["ip"].as_str())
            .unwrap()
            .to_string();
        assert!(
            ip.starts_with("10.81.0.") && ip.ends_with("/24"),
            "{version}: {r}"
        );
        assert_eq!(addrs(&ctr), std::slice::from_ref(&ip), "{version}");
        let rt = routes(&ctr);
        assert!(
            rt.contains(&"10.99.0.0/16 via 10.81.0.254 dev eth0".to_string()),
            "{rt:?}"
        );
        assert!(
            rt.contains(&"default via 10.81.0.1 dev eth0".to_string()),
            "{rt:?}"
        );
        // the server's view: this address, leased to our client id
        let leases = lan.log("dnsmasq.leases");
        let host_ip = ip.split('/').next().unwrap();
        let line = leases
            .lines()
            .find(|l| l.contains(host_ip))
            .unwrap_or_else(|| panic!("{version}: {host_ip} not in dnsmasq's leases:\n{leases}"));
        assert!(
            line.ends_with(&client_id_hex(&format!("{cid}/lan/eth0"))),
            "{line}"
        );
        let mut with = conf.clone();
        if version >= "0.4.0" {
            with["prevResult"] = r.clone();
            lan.call("bridge", "CHECK", &cid, &ctr, &with).ok();
        }
        lan.call("bridge", "DEL", &cid, &ctr, &with).ok();
        lan.call("bridge", "DEL", &cid, &ctr, &with).ok();
        assert!(
            wait_for(Duration::from_secs(5), || !lan
                .log("dnsmasq.leases")
                .contains(host_ip)),
            "{version}: DEL must release {host_ip}:\n{}",
            lan.log("dnsmasq.log")
        );
        assert!(
            lan.log("dnsmasq.log")
                .contains(&format!("DHCPRELEASE(br0) {host_ip}"))
        );
        assert!(lan.lease_files().is_empty(), "{:?}", lan.lease_files());
    }
}

#[test]
fn option_33_and_router_without_121_and_priority_as_metric() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-33", 82, false);
    let _srv = lan.dnsmasq(&["--dhcp-option=33,192.168.7.7,10.82.0.254"]);
    let _d = lan.daemon(&[]);
    let ctr = lan.container("dhcp-33-ctr");
    let conf = lan.ipam_conf("1.1.0", json!({"priority": 300}));
    let r = lan.call("dhcp", "ADD", "c33", &ctr, &conf).result().clone();
    assert_eq!(r["ips"][0]["gateway"], "10.82.0.1");
    assert_eq!(
        r["routes"],
        json!([
            {"dst": "192.168.7.7/32", "gw": "10.82.0.254", "priority": 300},
            {"dst": "0.0.0.0/0", "gw": "10.82.0.1", "priority": 300}
        ])
    );
    lan.call("dhcp", "DEL", "c33", &ctr, &conf).ok();
}

#[test]
fn lease_renews_at_t1_with_udhcpd() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-renew", 83, false);
    let _srv = lan.udhcpd(8, true);
    let _d = lan.daemon(&[]);
    let ctr = lan.container("dhcp-renew-ctr");
    let conf = lan.ipam_conf("1.0.0", json!({}));
    let r = lan.call("dhcp", "ADD", "cr", &ctr, &conf).result().clone();
    assert_eq!(
        r["routes"],
        json!([{"dst": "10.99.0.0/16", "gw": "10.83.0.254"}])
    );
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // T1 = 4 s: two renewals within 15 s, each an ACK for the same address, no new OFFER
    let renewed = wait_for(Duration::from_secs(20), || {
        count(&lan.log("udhcpd.log"), &format!("sending ACK to {ip}")) >= 3
    });
    let log = lan.log("udhcpd.log");
    assert!(renewed, "no renewals:\n{log}\n{}", lan.log("daemon.log"));
    assert_eq!(
        offers_after_first_ack(&log),
        0,
        "renewed, not rediscovered:\n{log}"
    );
    lan.call("dhcp", "DEL", "cr", &ctr, &conf).ok();
}

#[test]
fn daemon_restart_mid_lease_keeps_the_address_and_renews_it() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-restart", 84, false);
    let _srv = lan.udhcpd(10, false);
    let pidfile = lan.path("daemon.pid");
    let pidflag = pidfile.display().to_string();
    let mut d = lan.daemon(&["-pidfile", &pidflag]);
    assert_eq!(lan.log("daemon.pid").trim(), d.pid().to_string());
    let ctr = lan.container("dhcp-restart-ctr");
    let conf = lan.ipam_conf("1.0.0", json!({}));
    let r = lan.call("dhcp", "ADD", "cx", &ctr, &conf).result().clone();
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // the lease is written just after the answer
    assert!(wait_for(Duration::from_secs(5), || lan.lease_files().len() == 1));
    // SIGTERM: clean exit, socket and pidfile removed, the lease file kept
    assert_eq!(d.stop(Signal::SIGTERM), 0);
    assert!(!lan.socket().exists() && !pidfile.exists());
    assert_eq!(lan.lease_files().len(), 1);
    let _d2 = lan.daemon(&[]);
    // the new daemon knows the lease without asking anyone (CHECK reads only)
    let mut with = conf.clone();
    with["prevResult"] = r.clone();
    lan.call("dhcp", "CHECK", "cx", &ctr, &with).ok();
    let acks = || count(&lan.log("udhcpd.log"), &format!("sending ACK to {ip}"));
    assert!(
        wait_for(Duration::from_secs(20), || acks() >= 2),
        "the restarted daemon did not renew:\n{}\n{}",
        lan.log("udhcpd.log"),
        lan.log("daemon.log")
    );
    let log = lan.log("udhcpd.log");
    assert_eq!(
        offers_after_first_ack(&log),
        0,
        "renewed, not rediscovered:\n{log}"
    );
    // ADD again returns the same lease
    let again = lan.call("dhcp", "ADD", "cx", &ctr, &conf).result().clone();
    assert_eq!(again["ips"], r["ips"]);
    lan.call("dhcp", "DEL", "cx", &ctr, &conf).ok();
}

#[test]
fn del_succeeds_and_status_is_50_with_the_daemon_stopped() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-down", 85, false);
    let _srv = lan.dnsmasq(&[]);
    let mut d = lan.daemon(&[]);
    let ctr = lan.container("dhcp-down-ctr");
    let conf = lan.ipam_conf("1.1.0", json!({}));
    lan.call("dhcp", "STATUS", "", &ctr, &conf).ok();
    let r = lan.call("dhcp", "ADD", "cd", &ctr, &conf).result().clone();
    assert!(wait_for(Duration::from_secs(5), || lan.lease_files().len() == 1));
    assert_eq!(d.stop(Signal::SIGINT), 0);
    lan.call("dhcp", "DEL", "cd", &ctr, &conf).ok();
    lan.call("dhcp", "DEL", "cd", &ctr, &conf).ok();
    let e = lan
        .call("dhcp", "STATUS", "", &ctr, &conf)
        .expect_error(50)
        .clone();
    assert!(e["msg"].as_str().unwrap().contains("unreachable"), "{e}");
    let mut with = conf.clone();
    with["prevResult"] = r;
    // No daemon: try again later (it may be starting).
    lan.call("dhcp", "CHECK", "cd", &ctr, &with)
        .expect_error(11);
    // a lease file left by the stopped daemon whose netns is gone is dropped at the next start
    assert_eq!(lan.lease_files().len(), 1);
    drop(ctr);
    let _d2 = lan.daemon(&[]);
    assert!(wait_for(Duration::from_secs(5), || lan
        .lease_files()
        .is_empty()));
}

#[test]
fn several_containers_on_one_daemon_each_with_its_own_client_id() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-many", 86, false);
    let _srv = lan.dnsmasq(&[]);
    let _d = lan.daemon(&[]);
    let conf = lan.ipam_conf("1.0.0", json!({}));
    let ctrs: Vec<_> = (0..4)
        .map(|i| lan.container(&format!("dhcp-many-{i}")))
        .collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let lan = &lan;
                let conf = &conf;
                s.spawn(move || {
                    lan.call("dhcp", "ADD", &format!("m{i}"), c, conf)
                        .result()
                        .clone()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "{results:?}");
    let leases = lan.log("dnsmasq.leases");
    for i in 0..4 {
        assert!(
            leases.contains(&client_id_hex(&format!("m{i}/lan/eth0"))),
            "{leases}"
        );
    }
    assert!(wait_for(Duration::from_secs(5), || lan.lease_files().len() == 4));
    for (i, c) in ctrs.iter().enumerate() {
        lan.call("dhcp", "DEL", &format!("m{i}"), c, &conf).ok();
    }
    assert!(lan.lease_files().is_empty());
}

#[test]
fn a_silent_server_times_out_clearly_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-silent", 87, false);
    let _d = lan.daemon(&["-timeout", "500ms", "-resendtimeout", "3s"]);
    let ctr = lan.empty_container("dhcp-silent-ctr");
    let conf = lan.bridge_conf("1.0.0");
    let out = lan.call("bridge", "ADD", "cs", &ctr, &conf);
    // 11, "try again later": a server may come back, and a runtime retries.
    let e = out.expect_error(11);
    let msg = format!("{e}");
    assert!(
        msg.contains("no DHCPOFFER") && msg.contains("no more tries"),
        "{msg}"
    );
    // the bridge plugin rolled back its veth; the daemon keeps no lease
    assert_eq!(ctr.link_names(), ["lo"]);
    assert!(lan.lease_files().is_empty());
    let conf = lan.ipam_conf("1.1.0", json!({}));
    lan.call("dhcp", "STATUS", "", &ctr, &conf).ok();
    // the same for DHCPv6 asked for by name
    let ctr = lan.container("dhcp-silent6-ctr");
    let v6 = lan.ipam_conf("1.1.0", json!({"ipv4": false, "ipv6": true}));
    let out = lan.call("dhcp", "ADD", "cs6", &ctr, &v6);
    let e = out.expect_error(11);
    assert!(format!("{e}").contains("no DHCPv6 Advertise"), "{e}");
    assert!(lan.lease_files().is_empty());
}

#[test]
fn broadcast_flag_is_set_only_with_dash_broadcast() {
    if !require_root() {
        return;
    }
    for (flags, want) in [
        (&["-broadcast"][..], "Flags [Broadcast]"),
        (&[][..], "Flags [none]"),
    ] {
        let lan = Lan::new("dhcp-bcast", 88, false);
        let _srv = lan.dnsmasq(&[]);
        let _d = lan.daemon(flags);
        let pcap = lan.path("dhcp.pcap").display().to_string();
        let argv: Vec<String> = [
            "tcpdump",
            "-i",
            "br0",
            "-n",
            "-U",
            "-w",
            &pcap,
            "udp port 67",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut dump = rig::Proc::spawn(&lan.host, &argv, &lan.path("tcpdump.log"));
        assert!(wait_for(Duration::from_secs(10), || lan
            .log("tcpdump.log")
            .contains("listening on")));
        let ctr = lan.container("dhcp-bcast-ctr");
        let conf = lan.ipam_conf("1.0.0", json!({}));
        lan.call("dhcp", "ADD", "cb", &ctr, &conf).ok();
        // DISCOVER, OFFER, REQUEST, ACK written (a pcap record is at least 16 + 42 bytes)
        wait_for(Duration::from_secs(5), || {
            std::fs::metadata(&pcap).is_ok_and(|m| m.len() > 24 + 4 * 58)
        });
        dump.stop(Signal::SIGINT);
        let text = lan.host.run(["tcpdump", "-n", "-v", "-r", &pcap]);
        let discover = text.split("BOOTP/DHCP, Request").nth(1).unwrap_or_else(|| {
            panic!(
                "no DISCOVER captured:\n{text}\n{}\n{:?}",
                lan.log("tcpdump.log"),
                std::fs::metadata(&pcap)
            )
        });
        assert!(discover.contains(want), "{flags:?}: want {want}:\n{text}");
        lan.call("dhcp", "DEL", "cb", &ctr, &conf).ok();
    }
}

#[test]
fn socket_activation_serves_on_the_inherited_listener() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-sockact", 89, false);
    let _srv = lan.dnsmasq(&[]);
    std::fs::create_dir_all(lan.path("run")).unwrap();
    let sock = lan.socket().display().to_string();
    let bin = crate::support::Farm::shared()
        .binary()
        .display()
        .to_string();
    let leases = lan.path("leases").display().to_string();
    let argv: Vec<String> = [
        "systemd-socket-activate",
        "-l",
        &sock,
        "--",
        &bin,
        "dhcp",
        "daemon",
        "-leasedir",
        &leases,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _act = rig::Proc::spawn(&lan.host, &argv, &lan.path("daemon.log"));
    assert!(wait_for(Duration::from_secs(10), || lan.socket().exists()));
    let ctr = lan.container("dhcp-sockact-ctr");
    let conf = lan.ipam_conf("1.1.0", json!({}));
    let r = lan.call("dhcp", "ADD", "ca", &ctr, &conf).result().clone();
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.89.0.")
    );
    lan.call("dhcp", "STATUS", "", &ctr, &conf).ok();
    lan.call("dhcp", "DEL", "ca", &ctr, &conf).ok();
    assert!(lan.lease_files().is_empty());
}

#[test]
fn dhcpv6_address_alongside_dhcpv4_on_a_dual_stack_link() {
    if !require_root() {
        return;
    }
    // No `ipv6` key: the daemon solicits a Router Advertisement, and dnsmasq's (a stateful
    // DHCPv6 range, so the M flag) makes it acquire a DHCPv6 lease too.
    let lan = Lan::new("dhcp-v6", 90, true);
    let _srv = lan.dnsmasq(&["--enable-ra", "--dhcp-range=fd90::10,fd90::ff,64,2m"]);
    let _d = lan.daemon(&[]);
    let ctr = lan.container("dhcp-v6-ctr");
    let conf = lan.ipam_conf("1.1.0", json!({}));
    let r = lan.call("dhcp", "ADD", "c6", &ctr, &conf).result().clone();
    let ips: Vec<&str> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        ips.len(),
        2,
        "{r}\n{}\n{}",
        lan.log("daemon.log"),
        lan.log("dnsmasq.log")
    );
    assert!(
        ips[0].starts_with("10.90.0.") && ips[0].ends_with("/24"),
        "{r}"
    );
    assert!(
        ips[1].starts_with("fd90::") && ips[1].ends_with("/64"),
        "{r}"
    );
    let v6 = ips[1].split('/').next().unwrap().to_string();
    // the server's view: a DHCPv6 lease for that address
    assert!(
        lan.log("dnsmasq.leases").contains(&v6),
        "{}",
        lan.log("dnsmasq.leases")
    );
    assert!(
        lan.log("dnsmasq.log")
            .contains(&format!("DHCPREPLY(br0) {v6}"))
    );
    assert_eq!(lan.lease_files().len(), 2, "one file per family");
    assert!(
        lan.log("daemon.log").contains("advertises DHCPv6 (M flag)"),
        "{}",
        lan.log("daemon.log")
    );
    let mut with = conf.clone();
    with["prevResult"] = r.clone();
    lan.call("dhcp", "CHECK", "c6", &ctr, &with).ok();
    lan.call("dhcp", "DEL", "c6", &ctr, &with).ok();
    assert!(
        wait_for(Duration::from_secs(5), || !lan
            .log("dnsmasq.leases")
            .contains(&v6)),
        "DEL must release {v6}:\n{}",
        lan.log("dnsmasq.log")
    );
    assert!(lan.lease_files().is_empty());
    lan.call("dhcp", "DEL", "c6", &ctr, &with).ok();
}

#[test]
fn dhcpv6_lease_renews_at_t1() {
    if !require_root() {
        return;
    }
    // dnsmasq's shortest lease is 2 min: T1 comes after 1 min, so this test takes that long.
    let lan = Lan::new("dhcp-v6renew", 91, true);
    let _srv = lan.dnsmasq(&["--dhcp-range=fd91::10,fd91::ff,64,2m"]);
    let _d = lan.daemon(&[]);
    let ctr = lan.container("dhcp-v6renew-ctr");
    let conf = lan.ipam_conf("1.1.0", json!({"ipv4": false, "ipv6": true}));
    let r = lan.call("dhcp", "ADD", "c6r", &ctr, &conf).result().clone();
    assert_eq!(r["ips"].as_array().unwrap().len(), 1, "{r}");
    let v6 = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        wait_for(Duration::from_secs(100), || {
            let log = lan.log("dnsmasq.log");
            log.contains("DHCPRENEW(br0)") && count(&log, &format!("DHCPREPLY(br0) {v6}")) >= 2
        }),
        "no DHCPv6 RENEW:\n{}\n{}",
        lan.log("dnsmasq.log"),
        lan.log("daemon.log")
    );
    lan.call("dhcp", "DEL", "c6r", &ctr, &conf).ok();
}

/// The addresses of an ADD result.
fn result_ips(r: &Value) -> Vec<String> {
    r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn no_dhcpv6_when_the_router_advertises_addresses_without_the_m_flag() {
    if !require_root() {
        return;
    }
    // dnsmasq advertises fd92::/64 for SLAAC only (no M flag) and serves DHCPv4.
    let lan = Lan::new("dhcp-ra", 92, true);
    let _srv = lan.dnsmasq(&["--enable-ra", "--dhcp-range=fd92::,ra-only"]);
    let _d = lan.daemon(&[]);
    let conf = lan.ipam_conf("1.1.0", json!({}));
    for cid in ["ra1", "ra2"] {
        let ctr = lan.container(&format!("dhcp-{cid}-ctr"));
        let r = lan.call("dhcp", "ADD", cid, &ctr, &conf).result().clone();
        let ips = result_ips(&r);
        assert!(
            ips.len() == 1 && ips[0].starts_with("10.92.0."),
            "{r}\n{}",
            lan.log("daemon.log")
        );
        let mut with = conf.clone();
        with["prevResult"] = r;
        lan.call("dhcp", "CHECK", cid, &ctr, &with).ok();
        lan.call("dhcp", "DEL", cid, &ctr, &with).ok();
    }
    let log = lan.log("daemon.log");
    assert_eq!(
        count(&log, "advertises no DHCPv6 (no M flag)"),
        1,
        "one probe, then the network's verdict is reused:\n{log}"
    );
    assert!(!lan.log("dnsmasq.log").contains("DHCPSOLICIT"));
    assert!(lan.lease_files().is_empty());
}

#[test]
fn no_dhcpv6_without_a_router_and_none_looked_for_with_ipv6_false() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("dhcp-nora", 93, false);
    let _srv = lan.dnsmasq(&[]);
    let _d = lan.daemon(&["-v6probe", "4s", "-v6recheck", "1s"]);
    let ctr = lan.container("dhcp-nora-ctr");
    let conf = lan.ipam_conf("1.1.0", json!({}));
    let probes = || count(&lan.log("daemon.log"), "no router advertisement: IPv4 only");
    let r = lan
        .call("dhcp", "ADD", "nora", &ctr, &conf)
        .result()
        .clone();
    assert_eq!(result_ips(&r).len(), 1, "{r}");
    assert_eq!(probes(), 1, "{}", lan.log("daemon.log"));
    lan.call("dhcp", "DEL", "nora", &ctr, &conf).ok();
    // Past -v6recheck the old verdict answers at once while a probe (4 s) renews it behind.
    std::thread::sleep(Duration::from_millis(1200));
    let r = lan
        .call("dhcp", "ADD", "nora3", &ctr, &conf)
        .result()
        .clone();
    assert_eq!(result_ips(&r).len(), 1, "{r}");
    assert_eq!(probes(), 1, "the ADD must not wait for the renewing probe");
    assert!(wait_for(Duration::from_secs(15), || probes() == 2));
    lan.call("dhcp", "DEL", "nora3", &ctr, &conf).ok();
    // `ipv6: false` on another network: no probe at all.
    let mut off = lan.ipam_conf("1.1.0", json!({"ipv6": false}));
    off["name"] = json!("lan-v4");
    let r = lan
        .call("dhcp", "ADD", "nora2", &ctr, &off)
        .result()
        .clone();
    assert_eq!(result_ips(&r).len(), 1, "{r}");
    assert!(!lan.log("daemon.log").contains("\"lan-v4\""));
    lan.call("dhcp", "DEL", "nora2", &ctr, &off).ok();
    assert!(lan.lease_files().is_empty());
}

#[test]
fn dhcpv6_found_and_leased_with_dad_on_the_container_link() {
    if !require_root() {
        return;
    }
    // As on a real host: the container's link-local address stays tentative for up to 2 s,
    // and dnsmasq answers solicitations by unicast, so the probe must wait for DAD.
    let lan = Lan::new("dhcp-dad", 94, true);
    let _srv = lan.dnsmasq(&["--enable-ra", "--dhcp-range=fd94::10,fd94::ff,64,2m"]);
    let _d = lan.daemon(&[]);
    let ctr = lan.container("dhcp-dad-ctr");
    ctr.sh("sysctl -qw net.ipv6.conf.eth0.accept_dad=1");
    let conf = lan.ipam_conf("1.1.0", json!({}));
    let r = lan.call("dhcp", "ADD", "dad", &ctr, &conf).result().clone();
    let ips = result_ips(&r);
    assert!(
        ips.len() == 2 && ips[1].starts_with("fd94::"),
        "{r}\n{}",
        lan.log("daemon.log")
    );
    lan.call("dhcp", "DEL", "dad", &ctr, &conf).ok();
    assert!(lan.lease_files().is_empty());
}
