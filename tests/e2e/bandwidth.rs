//! bandwidth end to end, for 0.3.1, 0.4.0, 1.0.0 and 1.1.0: the test wires a veth pair between
//! the fake host and the container itself (`ip`), hands bandwidth a prevResult naming both
//! ends, and reads the kernel back with `tc -j`. A TCP transfer through a 1 Mbit/s limit must
//! take about the time the limit implies (each direction), DEL twice and DEL after the netns
//! is gone succeed, CHECK notices a removed qdisc, GC removes a stale IFB (and nothing when
//! given no list), and the reference plugin's CHECK and DEL accept what we made (and ours what
//! it made).

use crate::support::tc::{root_qdisc, tc_json as tc};
use crate::support::{Cni, Farm, Pair, TestNs, reference_plugin, require_root, tests_of};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const HOST_IP: &str = "10.77.0.1";
const CONT_IP: &str = "10.77.0.2";

/// `hveth0` in the host <-> `eth0` in the container, addressed and up.
fn wire(pair: &Pair) {
    let pid = pair.container.pid().to_string();
    pair.host.ip(&[
        "link", "add", "hveth0", "type", "veth", "peer", "name", "eth0", "netns", &pid,
    ]);
    pair.host
        .ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "hveth0"]);
    pair.host.ip(&["link", "set", "hveth0", "up"]);
    pair.container
        .ip(&["addr", "add", &format!("{CONT_IP}/24"), "dev", "eth0"]);
    pair.container.ip(&["link", "set", "eth0", "up"]);
    pair.container.ip(&["link", "set", "lo", "up"]);
}

fn conf(version: &str, pair: &Pair, limits: Value) -> Value {
    let mut ip = json!({"address": format!("{CONT_IP}/24"), "interface": 1});
    if version.starts_with("0.") {
        ip["version"] = "4".into();
    }
    let mut c = json!({
        "cniVersion": version, "name": "bwtest", "type": "bandwidth",
        "prevResult": {
            "cniVersion": version,
            "interfaces": [{"name": "hveth0"},
                           {"name": "eth0", "sandbox": pair.container.path()}],
            "ips": [ip],
        },
    });
    for (k, v) in limits.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn call(verb: &str, pair: &Pair, conf: &Value) -> Cni {
    Cni::new(Farm::shared(), "bandwidth")
        .command(verb)
        .container_id("ctr-bw-1")
        .netns(pair.container.path())
        .ifname("eth0")
        .config(conf)
}

fn ifb_names(ns: &TestNs) -> Vec<String> {
    ns.link_names()
        .into_iter()
        .filter(|n| n.starts_with("bwp"))
        .collect()
}

fn lifecycle(version: &str) {
    if !require_root() {
        return;
    }
    let pair = Pair::new(&format!("bw-{version}"));
    wire(&pair);
    let limits = json!({"ingressRate": 1_000_000, "ingressBurst": 80_000,
                        "egressRate": 2_000_000, "egressBurst": 160_000});
    let c = conf(version, &pair, limits);
    let out = call("ADD", &pair, &c).run_in(&pair.host);
    let r = out.result();
    assert_eq!(r["cniVersion"], version);
    assert_eq!(
        r["ips"], c["prevResult"]["ips"],
        "prevResult passes through"
    );
    let ifs = r["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 3, "{r}");
    let ifb = ifs[2]["name"].as_str().unwrap().to_string();
    assert_eq!(ifb_names(&pair.host), std::slice::from_ref(&ifb));
    assert_eq!(ifb.len(), 15);

    let q = root_qdisc(&pair.host, "hveth0");
    assert_eq!(
        (q["kind"].as_str(), q["options"]["rate"].as_u64()),
        (Some("tbf"), Some(125_000))
    );
    assert_eq!(q["options"]["burst"], 10_000);
    let q = root_qdisc(&pair.host, &ifb);
    assert_eq!(
        (q["kind"].as_str(), q["options"]["rate"].as_u64()),
        (Some("tbf"), Some(250_000))
    );
    let filters = tc(
        &pair.host,
        &["filter", "show", "dev", "hveth0", "parent", "ffff:"],
    );
    let to_dev = filters.as_array().unwrap().iter().find_map(|f| {
        f["options"]["actions"][0]["to_dev"]
            .as_str()
            .map(String::from)
    });
    assert_eq!(to_dev.as_deref(), Some(ifb.as_str()));

    if version != "0.3.1" {
        call("CHECK", &pair, &c).run_in(&pair.host).ok();
        pair.host.run(["tc", "qdisc", "del", "dev", &ifb, "root"]);
        let out = call("CHECK", &pair, &c).run_in(&pair.host);
        assert_ne!(out.code, 0, "CHECK must notice the removed qdisc:\n{out}");
    }
    if version == "1.1.0" {
        // cnitool gc sends no list: nothing is stale.
        call("GC", &pair, &c).run_in(&pair.host).ok();
        assert_eq!(
            ifb_names(&pair.host).len(),
            1,
            "GC without a list keeps the IFB"
        );
        let mut gc = c.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": "other", "ifname": "eth0"}]);
        call("GC", &pair, &gc).run_in(&pair.host).ok();
        assert!(ifb_names(&pair.host).is_empty(), "GC removes the stale IFB");
    }
    call("DEL", &pair, &c).run_in(&pair.host).ok();
    assert!(ifb_names(&pair.host).is_empty());
    call("DEL", &pair, &c).run_in(&pair.host).ok();
}

tests_of!(lifecycle:
    lifecycle_0_3_1 = "0.3.1",
    lifecycle_0_4_0 = "0.4.0",
    lifecycle_1_0_0 = "1.0.0",
    lifecycle_1_1_0 = "1.1.0",
);

#[test]
fn del_after_the_netns_and_veth_are_gone() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("bw-gone");
    wire(&pair);
    let c = conf(
        "1.0.0",
        &pair,
        json!({"egressRate": 8000, "egressBurst": 8000}),
    );
    call("ADD", &pair, &c).run_in(&pair.host).ok();
    assert_eq!(ifb_names(&pair.host).len(), 1);
    let path = pair.container.path().to_path_buf();
    let Pair { host, container } = pair;
    drop(container);
    // The kernel tears a dead netns down asynchronously; the host end goes with it.
    let gone = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        !host.link_names().contains(&"hveth0".to_string())
    });
    assert!(gone, "hveth0 outlived the container netns");
    let del = Cni::new(Farm::shared(), "bandwidth")
        .command("DEL")
        .container_id("ctr-bw-1")
        .netns(&path)
        .ifname("eth0")
        .config(&c);
    del.run_in(&host).ok();
    assert!(ifb_names(&host).is_empty());
    del.run_in(&host).ok();
}

#[test]
fn versions_before_0_3_0_are_refused() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("bw-old");
    let c = json!({"cniVersion": "0.2.0", "name": "bwtest", "type": "bandwidth"});
    call("ADD", &pair, &c).run_in(&pair.host).expect_error(1);
}

/// Runs `f` on a thread that first enters the netns at `ns` (the thread ends there; sockets
/// made inside keep that netns wherever they are used afterwards).
fn inside<T: Send + 'static>(ns: PathBuf, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).expect("open netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

const PAYLOAD: usize = 200_000;

/// Sends PAYLOAD bytes over TCP from `from` to `to_ip` in `to`; returns how long the receiver
/// took from accepting to seeing the end of the stream.
fn transfer(from: &TestNs, to: &TestNs, to_ip: &str) -> Duration {
    let addr = format!("{to_ip}:5001");
    let bind = addr.clone();
    let listener = inside(to.path().to_path_buf(), move || {
        TcpListener::bind(bind).unwrap()
    });
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        (buf.len(), start.elapsed())
    });
    let mut sender = inside(from.path().to_path_buf(), move || {
        TcpStream::connect(addr).unwrap()
    });
    sender
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sender.write_all(&vec![7u8; PAYLOAD]).unwrap();
    sender.shutdown(std::net::Shutdown::Write).unwrap();
    let (got, took) = receiver.join().unwrap();
    assert_eq!(got, PAYLOAD);
    took
}

/// 200 kB through 1 Mbit/s (125 kB/s) with a 10 kB bucket needs ~1.5 s; unshaped it takes
/// milliseconds. Half the expected time is the bar, 30 s socket timeouts the hard limit.
fn shaped(direction: &str) {
    if !require_root() {
        return;
    }
    let pair = Pair::new(&format!("bw-rate-{direction}"));
    wire(&pair);
    let c = conf(
        "1.0.0",
        &pair,
        json!({format!("{direction}Rate"): 1_000_000, format!("{direction}Burst"): 80_000}),
    );
    call("ADD", &pair, &c).run_in(&pair.host).ok();
    let took = match direction {
        "ingress" => transfer(&pair.host, &pair.container, CONT_IP),
        _ => transfer(&pair.container, &pair.host, HOST_IP),
    };
    let expected = (PAYLOAD - 10_000) as f64 / 125_000.0;
    assert!(
        took.as_secs_f64() > expected * 0.5,
        "{direction}: {PAYLOAD} B took {took:?}, the limit implies ~{expected:.1} s"
    );
    call("DEL", &pair, &c).run_in(&pair.host).ok();
}

#[test]
fn ingress_limit_slows_traffic_to_the_container() {
    shaped("ingress");
}

#[test]
fn egress_limit_slows_traffic_from_the_container() {
    shaped("egress");
}

/// State is compatible: our CHECK and DEL accept what the reference made, and the other way.
#[test]
fn qdiscs_and_ifb_are_shared_with_the_reference() {
    if !require_root() {
        return;
    }
    let Some(reference) = reference_plugin("bandwidth") else {
        crate::support::skip!("reference bandwidth plugin not installed");
    };
    let pair = Pair::new("bw-ref");
    wire(&pair);
    let limits = json!({"ingressRate": 1_000_000, "ingressBurst": 80_000,
                        "egressRate": 2_000_000, "egressBurst": 160_000});
    // The installed reference (v1.1.1) rejects 1.1.0.
    let c = conf("1.0.0", &pair, limits);
    let theirs = |verb| {
        Cni::at(&reference)
            .command(verb)
            .container_id("ctr-bw-1")
            .netns(pair.container.path())
            .ifname("eth0")
            .path("/usr/lib/cni")
            .config(&c)
    };
    let ours = |verb| call(verb, &pair, &c);
    for (add, check, del) in [
        (theirs("ADD"), ours("CHECK"), ours("DEL")),
        (ours("ADD"), theirs("CHECK"), theirs("DEL")),
    ] {
        let r = add.run_in(&pair.host).result().clone();
        assert_eq!(
            ifb_names(&pair.host),
            [r["interfaces"][2]["name"].as_str().unwrap()]
        );
        check.run_in(&pair.host).ok();
        del.run_in(&pair.host).ok();
        assert!(ifb_names(&pair.host).is_empty());
        // The host veth's qdiscs stay until the veth goes (both implementations); clear them.
        pair.host
            .run(["tc", "qdisc", "del", "dev", "hveth0", "root"]);
        pair.host
            .run(["tc", "qdisc", "del", "dev", "hveth0", "ingress"]);
    }
}
