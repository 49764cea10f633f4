//! portmap end to end: the binary run in a throwaway "host" netns, with real traffic through
//! the forwarded ports. The container side is built here with `ip` (a veth pair to the fake
//! host, addresses, default routes, forwarding on the host) and a hand-written `prevResult`;
//! an "outside" netns hangs off the host on a second veth pair. Echo servers (TCP and UDP, in
//! this process, on sockets opened inside the container netns) answer with the peer address
//! they saw, so the tests also see who was masqueraded.
//!
//! Covered for both backends and cniVersion 0.3.1, 0.4.0, 1.0.0, 1.1.0: outside → host IP
//! (TCP and UDP, IPv4 and IPv6), host → 127.0.0.1 (route_localnet), container → its own host
//! port (hairpin), CHECK, DEL twice, nothing left. Plus bad input (nothing applied), interop
//! with the reference portmap both ways, and 200 containers added and deleted.

use crate::support::echo::{Ask, Servers, Topo, expect_answers, in_ns, tcp_ask, udp_once};
use crate::support::{Cni, Farm, TestNs, reference_plugin, require_root, skip, tests_of};
use serde_json::{Value, json};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const TCP_HOST: u16 = 18080;
const TCP_CTR: u16 = 8080;
const UDP_HOST: u16 = 15353;
const UDP_CTR: u16 = 5353;
/// A prevResult in `version`'s format for the container's two addresses.
fn prev_result(version: &str, netns: &str) -> Value {
    let ip = |addr: &str, v: &str| {
        let mut j = json!({"address": addr, "gateway": addr.replace("::2/64", "::1").replace(".2/24", ".1"), "interface": 1});
        if version.starts_with("0.") {
            j["version"] = v.into();
        }
        j
    };
    json!({
        "cniVersion": version,
        "interfaces": [{"name": "ctrh"}, {"name": "eth0", "sandbox": netns}],
        "ips": [ip("10.99.0.2/24", "4"), ip("fd99::2/64", "6")]
    })
}

fn config(version: &str, backend: &str, netns: &str, mappings: Value) -> Value {
    json!({
        "cniVersion": version, "name": "pmnet", "type": "portmap", "backend": backend,
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": prev_result(version, netns)
    })
}

fn both_mappings() -> Value {
    json!([
        {"hostPort": TCP_HOST, "containerPort": TCP_CTR, "protocol": "tcp"},
        {"hostPort": UDP_HOST, "containerPort": UDP_CTR, "protocol": "udp"}
    ])
}

fn call(
    verb: &str,
    applet: Cni,
    id: &str,
    topo_ctr: &TestNs,
    conf: &Value,
    host: &TestNs,
) -> crate::support::Outcome {
    applet
        .command(verb)
        .container_id(id)
        .netns(topo_ctr.path())
        .ifname("eth0")
        .config(conf)
        .run_in(host)
}

/// What of portmap is in the host's netfilter state: per-container chains and rules, and
/// any rule naming `id`.
fn residue(host: &TestNs, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let text = host.run([tool, "-t", "nat"]);
        out.extend(
            text.lines()
                .filter(|l| l.contains("CNI-DN-") || l.contains(id))
                .map(|l| format!("{tool}: {l}")),
        );
    }
    let nft = host.run(["nft", "list", "ruleset"]);
    out.extend(
        nft.lines()
            .filter(|l| l.contains(id))
            .map(|l| format!("nft: {l}")),
    );
    out
}

fn have_tools() -> bool {
    ["nft", "iptables-save", "ip6tables-save"].iter().all(|t| {
        std::process::Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Every kind of forwarded traffic gets through, and the server sees the expected peer:
/// outside clients as themselves, localhost and hairpin connections masqueraded.
fn expect_forwarding(topo: &Topo, what: &str) {
    let (out, host, ctr) = (&topo.out, &topo.host, &topo.ctr);
    expect_answers(
        what,
        &[
            Ask::tcp(out, "192.168.77.1:18080", "192.168.77.2"),
            Ask::tcp(out, "[fd77::1]:18080", "fd77::2"),
            Ask::udp(out, "192.168.77.1:15353", "192.168.77.2"),
            Ask::udp(out, "[fd77::1]:15353", "fd77::2"),
            Ask::tcp(host, "127.0.0.1:18080", "10.99.0.1"),
            Ask::tcp(ctr, "10.99.0.1:18080", "10.99.0.1"),
            Ask::tcp(ctr, "[fd99::1]:18080", "fd99::1"),
        ],
    );
}

/// ADD, traffic of every kind, CHECK, DEL twice and no residue, for each spec version.
fn traffic_for(backend: &str) {
    if !require_root() {
        return;
    }
    if !have_tools() {
        skip!("needs nft and iptables as oracles");
    }
    let farm = Farm::shared();
    let topo = Topo::new(&format!("pm-{backend}"));
    let _servers = Servers::start(&topo.ctr, TCP_CTR, UDP_CTR);
    let ns = topo.ctr.path().display().to_string();
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let id = format!("pm-{backend}-{}", version.replace('.', ""));
        let conf = config(version, backend, &ns, both_mappings());
        let run = |verb: &str| {
            call(
                verb,
                Cni::new(farm, "portmap"),
                &id,
                &topo.ctr,
                &conf,
                &topo.host,
            )
        };
        let added = run("ADD");
        let result = added.result();
        assert_eq!(result["cniVersion"], version, "{added}");
        assert_eq!(result["ips"].as_array().map(Vec::len), Some(2), "{added}");

        let what = format!("{backend} {version}");
        expect_forwarding(&topo, &what);
        let localnet = topo
            .host
            .run(["cat", "/proc/sys/net/ipv4/conf/ctrh/route_localnet"]);
        assert_eq!(localnet.trim(), "1");

        if version != "0.3.1" {
            run("CHECK").ok();
        }
        run("DEL").ok();
        assert!(
            tcp_ask(&topo.out, "192.168.77.1:18080").is_err(),
            "{what}: still forwarded after DEL"
        );
        run("DEL").ok();
        assert_eq!(residue(&topo.host, &id), Vec::<String>::new(), "{what}");
    }
}

tests_of!(traffic_for:
    traffic_iptables = "iptables",
    traffic_nftables = "nftables",
);

/// Bad input through the binary: a clear code-7 error and nothing applied.
#[test]
fn bad_input_applies_nothing() {
    if !require_root() {
        return;
    }
    if !have_tools() {
        skip!("needs nft and iptables as oracles");
    }
    let farm = Farm::shared();
    let host = TestNs::new("pm-bad-host");
    let ctr = TestNs::new("pm-bad-ctr");
    let ns = ctr.path().display().to_string();
    let before = (
        host.run(["nft", "list", "ruleset"]),
        host.run(["iptables-save", "-t", "nat"]),
    );
    let m = |h: i64, p: &str| json!([{"hostPort": h, "containerPort": 80, "protocol": p}]);
    let mut cases = vec![
        (config("1.0.0", "iptables", &ns, m(0, "tcp")), "port number"),
        (
            config("1.0.0", "nftables", &ns, m(65536, "tcp")),
            "port number",
        ),
        (
            config("1.0.0", "iptables", &ns, m(8080, "icmp")),
            "invalid protocol",
        ),
    ];
    let mut both = config("1.0.0", "iptables", &ns, m(8080, "tcp"));
    both["markMasqBit"] = 14.into();
    both["externalSetMarkChain"] = "KUBE-MARK-MASQ".into();
    cases.push((both, "externalSetMarkChain and markMasqBit"));
    let mut no_prev = config("1.0.0", "nftables", &ns, m(8080, "tcp"));
    no_prev.as_object_mut().unwrap().remove("prevResult");
    cases.push((no_prev, "prevResult"));
    for (conf, why) in cases {
        let out = call(
            "ADD",
            Cni::new(farm, "portmap"),
            "pm-bad",
            &ctr,
            &conf,
            &host,
        );
        let err = out.expect_error(7);
        assert!(
            err["msg"].as_str().unwrap_or_default().contains(why),
            "{out}"
        );
    }
    let after = (
        host.run(["nft", "list", "ruleset"]),
        host.run(["iptables-save", "-t", "nat"]),
    );
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(before.0, after.0);
    assert_eq!(strip(&before.1), strip(&after.1));
}

/// iptables-save without comments and counters, for comparing two netns.
fn nat_tables(host: &TestNs) -> String {
    ["iptables-save", "ip6tables-save"]
        .iter()
        .flat_map(|t| {
            host.run([*t, "-t", "nat"])
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The reference portmap (v1.1.1, iptables only, cniVersion 1.0.0) and ours make the same
/// rules, and each one's DEL leaves nothing of what the other's ADD made.
#[test]
fn interop_with_the_reference() {
    if !require_root() {
        return;
    }
    let Some(reference) = reference_plugin("portmap") else {
        skip!("reference portmap not installed");
    };
    if !have_tools() {
        skip!("needs iptables as an oracle");
    }
    let farm = Farm::shared();
    let ctr = TestNs::new("pm-interop-ctr");
    let ns = ctr.path().display().to_string();
    let conf = config("1.0.0", "iptables", &ns, both_mappings());
    let ours = || Cni::new(farm, "portmap");
    let theirs = || Cni::at(&reference).path("/usr/lib/cni");
    let (ref_host, our_host) = (
        TestNs::new("pm-interop-ref"),
        TestNs::new("pm-interop-ours"),
    );
    call("ADD", theirs(), "interop1", &ctr, &conf, &ref_host).ok();
    call("ADD", ours(), "interop1", &ctr, &conf, &our_host).ok();
    assert_eq!(
        nat_tables(&our_host),
        nat_tables(&ref_host),
        "same rules as the reference"
    );
    let after_ref_del = {
        call("DEL", theirs(), "interop1", &ctr, &conf, &ref_host).ok();
        nat_tables(&ref_host)
    };
    // Reference ADD, our DEL (with and without the mappings resent).
    let mut bare = conf.clone();
    bare.as_object_mut().unwrap().remove("runtimeConfig");
    for del_conf in [&conf, &bare] {
        call("ADD", theirs(), "interop2", &ctr, &conf, &ref_host).ok();
        call("CHECK", ours(), "interop2", &ctr, &conf, &ref_host).ok();
        call("DEL", ours(), "interop2", &ctr, del_conf, &ref_host).ok();
        assert_eq!(residue(&ref_host, "interop2"), Vec::<String>::new());
        assert_eq!(nat_tables(&ref_host), after_ref_del);
    }
    // Our ADD, reference DEL.
    call("DEL", theirs(), "interop1", &ctr, &conf, &our_host).ok();
    assert_eq!(residue(&our_host, "interop1"), Vec::<String>::new());
    assert_eq!(nat_tables(&our_host), after_ref_del);
}

fn many_for(backend: &str) {
    if !require_root() {
        return;
    }
    if !have_tools() {
        skip!("needs nft and iptables as oracles");
    }
    const N: u16 = 200;
    let farm = Farm::shared();
    let host = TestNs::new(&format!("pm-many-{backend}"));
    let ctr = TestNs::new(&format!("pm-many-{backend}-ctr"));
    let tc_before = host.run(["tc", "qdisc", "show"]);
    let ns = ctr.path().display().to_string();
    let conf = |i: u16| {
        let mut c = config(
            "1.0.0",
            backend,
            &ns,
            json!([{"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"}]),
        );
        c["prevResult"]["ips"] =
            json!([{"address": format!("10.50.{}.{}/16", i / 250, i % 250 + 2), "interface": 1}]);
        c
    };
    let start = Instant::now();
    for i in 0..N {
        call(
            "ADD",
            Cni::new(farm, "portmap"),
            &format!("many-{i}"),
            &ctr,
            &conf(i),
            &host,
        )
        .ok();
    }
    let added = start.elapsed();
    let rules = host.run(["nft", "list", "ruleset"]);
    let saved = nat_tables(&host);
    let count = rules.matches("comment \"many-").count() + saved.matches("-j DNAT").count();
    assert!(count >= N as usize, "{count} rules for {N} containers");
    let start = Instant::now();
    for i in 0..N {
        call(
            "DEL",
            Cni::new(farm, "portmap"),
            &format!("many-{i}"),
            &ctr,
            &conf(i),
            &host,
        )
        .ok();
    }
    let deleted = start.elapsed();
    eprintln!("portmap {backend}: {N} ADDs in {added:?}, {N} DELs in {deleted:?}");
    assert_eq!(residue(&host, "many-"), Vec::<String>::new());
    assert_eq!(host.run(["tc", "qdisc", "show"]), tc_before);
}

tests_of!(many_for:
    two_hundred_containers_nftables = "nftables",
    two_hundred_containers_iptables = "iptables",
);

/// Stale UDP conntrack entries (plugins#123, #1190): a client that keeps its source port is
/// forwarded as soon as the mapping is added, though its earlier datagrams made an un-NATed
/// entry (ADD flushes), and no longer once it is deleted, though its entry was NATed (DEL
/// flushes).
fn udp_flush_for(backend: &str) {
    if !require_root() {
        return;
    }
    if !have_tools() {
        skip!("needs nft and iptables as oracles");
    }
    let farm = Farm::shared();
    let topo = Topo::new(&format!("pm-ct-{backend}"));
    let _servers = Servers::start(&topo.ctr, TCP_CTR, UDP_CTR);
    let ns = topo.ctr.path().display().to_string();
    let udp = json!([{"hostPort": UDP_HOST, "containerPort": UDP_CTR, "protocol": "udp"}]);
    let conf = config("1.0.0", backend, &ns, udp);
    let other = config(
        "1.0.0",
        backend,
        &ns,
        json!([{"hostPort": 19999, "containerPort": 1, "protocol": "udp"}]),
    );
    let run = |verb: &str, id: &str, c: &Value| {
        call(
            verb,
            Cni::new(farm, "portmap"),
            id,
            &topo.ctr,
            c,
            &topo.host,
        )
    };
    // Another container's mapping keeps conntrack on in the host (with nftables, the NAT
    // expressions are what turn it on for the netns).
    run("ADD", "ct-other", &other).ok();
    let sock = in_ns(&topo.out, || UdpSocket::bind("0.0.0.0:0").expect("bind"));
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let to = "192.168.77.1:15353";
    assert_eq!(
        udp_once(&sock, to),
        None,
        "{backend}: nothing is mapped yet"
    );
    run("ADD", "ct", &conf).ok();
    assert_eq!(
        udp_once(&sock, to).as_deref(),
        Some("192.168.77.2 ping"),
        "{backend}: after ADD"
    );
    run("DEL", "ct", &conf).ok();
    assert_eq!(
        udp_once(&sock, to),
        None,
        "{backend}: still forwarded after DEL"
    );
}

tests_of!(udp_flush_for:
    udp_conntrack_flushed_iptables = "iptables",
    udp_conntrack_flushed_nftables = "nftables",
);

/// GC (1.1.0) removes the rules of the attachments to this network that are not in
/// `cni.dev/valid-attachments`, and nothing of another network's.
fn gc_for(backend: &str) {
    if !require_root() {
        return;
    }
    if !have_tools() {
        skip!("needs nft and iptables as oracles");
    }
    let farm = Farm::shared();
    let host = TestNs::new(&format!("pm-gc-{backend}"));
    let ctr = TestNs::new(&format!("pm-gc-{backend}-ctr"));
    let ns = ctr.path().display().to_string();
    let conf = |net: &str, port: u16| {
        let mut c = config(
            "1.1.0",
            backend,
            &ns,
            json!([{"hostPort": port, "containerPort": 80, "protocol": "udp"}]),
        );
        c["name"] = net.into();
        c
    };
    let add = |id: &str, c: &Value| {
        call("ADD", Cni::new(farm, "portmap"), id, &ctr, c, &host).ok();
    };
    add("gc-keep", &conf("gcnet", 21001));
    add("gc-stale", &conf("gcnet", 21002));
    add("gc-elsewhere", &conf("othernet", 21003));
    let mut gc = conf("gcnet", 0);
    gc.as_object_mut().unwrap().remove("runtimeConfig");
    gc.as_object_mut().unwrap().remove("prevResult");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "gc-keep", "ifname": "eth0"}]);
    Cni::new(farm, "portmap")
        .command("GC")
        .config(&gc)
        .run_in(&host)
        .ok();
    let state = format!(
        "{}\n{}",
        nat_tables(&host),
        host.run(["nft", "list", "ruleset"])
    );
    assert!(
        !state.contains("gc-stale") && !state.contains("21002"),
        "{backend}: {state}"
    );
    assert!(
        state.contains("21001") && state.contains("21003"),
        "{backend}: {state}"
    );
    let check = |id: &str, c: &Value| call("CHECK", Cni::new(farm, "portmap"), id, &ctr, c, &host);
    check("gc-keep", &conf("gcnet", 21001)).ok();
    check("gc-elsewhere", &conf("othernet", 21003)).ok();
    for (id, c) in [
        ("gc-keep", conf("gcnet", 21001)),
        ("gc-elsewhere", conf("othernet", 21003)),
    ] {
        call("DEL", Cni::new(farm, "portmap"), id, &ctr, &c, &host).ok();
    }
    assert_eq!(residue(&host, "gc-"), Vec::<String>::new(), "{backend}");
}

tests_of!(gc_for:
    gc_iptables = "iptables",
    gc_nftables = "nftables",
);
