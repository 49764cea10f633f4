//! tuning end to end, for 0.3.1, 0.4.0, 1.0.0 and 1.1.0 (and a pass-through for 0.2.0): the
//! test wires a veth pair itself and hands tuning a prevResult; values are read back with
//! `ip -j` and from `/proc/sys` inside the container, then must be back as they were after DEL.
//! The backup files are exchanged with the reference plugin both ways.

use crate::support::{Cni, Farm, Pair, TempDir, reference_plugin, require_root, tests_of};
use serde_json::{Value, json};
use std::path::Path;

/// `hveth0` in the host <-> `eth0` in the container, both up.
fn wire(pair: &Pair) {
    let pid = pair.container.pid().to_string();
    pair.host.ip(&[
        "link", "add", "hveth0", "type", "veth", "peer", "name", "eth0", "netns", &pid,
    ]);
    pair.host.ip(&["link", "set", "hveth0", "up"]);
    pair.container.ip(&["link", "set", "eth0", "up"]);
}

fn conf(version: &str, pair: &Pair, dir: &TempDir, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": version, "name": "tunetest", "type": "tuning",
        "dataDir": dir.join("state"),
        "prevResult": {
            "cniVersion": version,
            "interfaces": [{"name": "hveth0"},
                           {"name": "eth0", "sandbox": pair.container.path()}],
        },
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn call(program: Cni, verb: &str, pair: &Pair, conf: &Value) -> Cni {
    program
        .command(verb)
        .container_id("ctr-tune-1")
        .netns(pair.container.path())
        .ifname("eth0")
        .path("/usr/lib/cni")
        .config(conf)
}

fn ours(verb: &str, pair: &Pair, conf: &Value) -> Cni {
    call(Cni::new(Farm::shared(), "tuning"), verb, pair, conf)
}

/// What the test looks at: MAC, MTU, txqlen, PROMISC, ALLMULTI, arp_ignore.
fn observe(pair: &Pair) -> (String, u64, u64, bool, bool, String) {
    let l = pair.container.link("eth0").expect("eth0");
    let flags: Vec<&str> = l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let arp = pair
        .container
        .run(["cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"]);
    (
        l["address"].as_str().unwrap().to_string(),
        l["mtu"].as_u64().unwrap(),
        l["txqlen"].as_u64().unwrap(),
        flags.contains(&"PROMISC"),
        flags.contains(&"ALLMULTI"),
        arp.trim().to_string(),
    )
}

fn settings() -> Value {
    json!({"mac": "02:42:0a:0b:0c:0d", "mtu": 1280, "promisc": true, "allmulti": true,
           "txQLen": 77, "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "2"}})
}

fn lifecycle(version: &str) {
    if !require_root() {
        return;
    }
    let pair = Pair::new(&format!("tune-{version}"));
    wire(&pair);
    let dir = TempDir::new("tuning");
    let before = observe(&pair);
    let c = conf(version, &pair, &dir, settings());
    let r = ours("ADD", &pair, &c).run_in(&pair.host).result().clone();
    assert_eq!(r["cniVersion"], version);
    assert_eq!(r["interfaces"][1]["mac"], "02:42:0a:0b:0c:0d", "{r}");
    assert_eq!(r["interfaces"][0]["name"], "hveth0");
    let now = observe(&pair);
    assert_eq!(
        now,
        ("02:42:0a:0b:0c:0d".into(), 1280, 77, true, true, "2".into())
    );
    let backup = dir.join("state/ctr-tune-1_eth0.json");
    assert!(backup.exists());
    if version != "0.3.1" {
        ours("CHECK", &pair, &c).run_in(&pair.host).ok();
        pair.container.ip(&["link", "set", "eth0", "mtu", "1300"]);
        let out = ours("CHECK", &pair, &c).run_in(&pair.host);
        assert_ne!(out.code, 0, "CHECK must notice the MTU change:\n{out}");
        pair.container.ip(&["link", "set", "eth0", "mtu", "1280"]);
    }
    ours("DEL", &pair, &c).run_in(&pair.host).ok();
    let after = observe(&pair);
    // Sysctls are not restored (as the reference); the link attributes are.
    assert_eq!(
        (&after.0, after.1, after.2, after.3, after.4),
        (&before.0, before.1, before.2, before.3, before.4)
    );
    assert!(!backup.exists());
    ours("DEL", &pair, &c).run_in(&pair.host).ok();
}

tests_of!(lifecycle:
    lifecycle_0_3_1 = "0.3.1",
    lifecycle_0_4_0 = "0.4.0",
    lifecycle_1_0_0 = "1.0.0",
    lifecycle_1_1_0 = "1.1.0",
);

#[test]
fn old_versions_pass_the_result_through() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("tune-0.2.0");
    wire(&pair);
    let dir = TempDir::new("tuning-old");
    let mut c = conf("0.2.0", &pair, &dir, json!({"mtu": 1400}));
    c["prevResult"] = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/24"}});
    let r = ours("ADD", &pair, &c).run_in(&pair.host).result().clone();
    assert_eq!(r["ip4"]["ip"], "10.1.2.3/24", "{r}");
    assert_eq!(pair.container.link("eth0").unwrap()["mtu"], 1400);
    ours("DEL", &pair, &c).run_in(&pair.host).ok();
    assert_eq!(pair.container.link("eth0").unwrap()["mtu"], 1500);
}

#[test]
fn sysctls_outside_net_are_refused() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("tune-escape");
    wire(&pair);
    let dir = TempDir::new("tuning-escape");
    for key in [
        "kernel.hostname",
        "net/../kernel/hostname",
        "net.ipv4.conf.IFNAME/../../../x",
    ] {
        let c = conf("1.0.0", &pair, &dir, json!({"sysctl": {key: "x"}}));
        ours("ADD", &pair, &c).run_in(&pair.host).expect_error(7);
    }
}

/// State is compatible: the reference restores what we saved, and we restore what it saved.
#[test]
fn backup_files_are_shared_with_the_reference() {
    if !require_root() {
        return;
    }
    let Some(reference) = reference_plugin("tuning") else {
        crate::support::skip!("reference tuning plugin not installed");
    };
    let pair = Pair::new("tune-ref");
    wire(&pair);
    let dir = TempDir::new("tuning-ref");
    let before = observe(&pair);
    // The installed reference (v1.1.1) rejects 1.1.0 and predates txQLen.
    let mut tuned = settings();
    tuned.as_object_mut().unwrap().remove("txQLen");
    let c = conf("1.0.0", &pair, &dir, tuned);
    let theirs = |verb| call(Cni::at(&reference), verb, &pair, &c);
    for (add, del) in [
        (ours("ADD", &pair, &c), theirs("DEL")),
        (theirs("ADD"), ours("DEL", &pair, &c)),
    ] {
        add.run_in(&pair.host).ok();
        assert_eq!(observe(&pair).1, 1280);
        assert!(Path::new(&dir.join("state/ctr-tune-1_eth0.json")).exists());
        del.run_in(&pair.host).ok();
        let after = observe(&pair);
        assert_eq!(
            (&after.0, after.1, after.2, after.3, after.4),
            (&before.0, before.1, before.2, before.3, before.4)
        );
        assert!(!dir.join("state/ctr-tune-1_eth0.json").exists());
    }
}
