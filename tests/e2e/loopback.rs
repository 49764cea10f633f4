//! loopback through its symlink, in a fake host against a fake container netns, for every spec
//! version: ADD -> CHECK -> DEL -> DEL, checked with `ip -j` inside the container; DEL after the
//! netns is gone; VERSION through every symlink; and the protocol's bad-input paths, each with
//! the right code and a message naming the problem.

use crate::support::{Cni, Farm, Pair, farm, require_root};
use serde_json::{Value, json};

const VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "lo-net", "type": "loopback"})
}

fn call(pair: &Pair, verb: &str, version: &str) -> Cni {
    Cni::new(Farm::shared(), "loopback")
        .command(verb)
        .container_id("ctr-loopback")
        .netns(pair.container.path())
        .ifname("lo")
        .config(conf(version))
}

fn lo_state(pair: &Pair) -> (bool, Vec<String>) {
    let link = pair.container.link("lo").expect("lo exists");
    let up = link["flags"].as_array().unwrap().iter().any(|f| f == "UP");
    let addrs = pair.container.ip_json(&["addr", "show", "dev", "lo"]);
    let list = addrs[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default();
    (up, list)
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    for v in VERSIONS {
        let pair = Pair::new("lo");
        assert!(!lo_state(&pair).0, "lo starts down in a fresh netns");
        let out = call(&pair, "ADD", v).run_in(&pair.host);
        let r = out.result();
        assert_eq!(r["cniVersion"], *v, "{out}");
        let (up, addrs) = lo_state(&pair);
        assert!(up, "{v}: lo is up after ADD");
        assert!(addrs.contains(&"127.0.0.1/8".to_string()), "{v}: {addrs:?}");
        if v.starts_with("0.1") || v.starts_with("0.2") {
            // What a runtime of that version reads from the reference's result.
            assert_eq!(r, &json!({"cniVersion": v, "dns": {}}), "{v}: {out}");
        } else {
            assert_eq!(r["interfaces"][0]["name"], "lo", "{v}");
            assert_eq!(r["interfaces"][0]["mac"], "00:00:00:00:00:00", "{v}");
            assert_eq!(
                r["interfaces"][0]["sandbox"],
                pair.container.path().to_str().unwrap(),
                "{v}"
            );
            let ips: Vec<&str> = r["ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["address"].as_str().unwrap())
                .collect();
            assert!(ips.contains(&"127.0.0.1/8"), "{v}: {ips:?}");
            assert!(
                ips.contains(&"::1/128") || !addrs.contains(&"::1/128".to_string()),
                "{v}: {ips:?}"
            );
            assert_eq!(r["ips"][0]["interface"], 0, "{v}");
        }
        if *v >= "0.4.0" {
            call(&pair, "CHECK", v).run_in(&pair.host).ok();
        }
        let del = call(&pair, "DEL", v);
        let out = del.run_in(&pair.host);
        assert!(out.ok().stdout.is_empty(), "{v}: DEL prints nothing");
        assert!(!lo_state(&pair).0, "{v}: lo is down after DEL");
        del.run_in(&pair.host).ok();
        if *v >= "0.4.0" {
            let out = call(&pair, "CHECK", v).run_in(&pair.host);
            assert!(
                out.expect_error(999)["msg"]
                    .as_str()
                    .unwrap()
                    .contains("down"),
                "{out}"
            );
        }
    }
}

#[test]
fn prev_result_is_passed_through() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("lo-prev");
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"interface": 0, "address": "10.9.0.5/24", "gateway": "10.9.0.1"}]});
    let mut c = conf("1.0.0");
    c["prevResult"] = prev.clone();
    let out = call(&pair, "ADD", "1.0.0").config(c).run_in(&pair.host);
    assert_eq!(out.result(), &prev, "{out}");
    assert!(lo_state(&pair).0);
}

#[test]
fn del_succeeds_when_the_netns_is_gone_or_empty() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("lo-gone");
    let gone = format!("/proc/{}/ns/net", u32::MAX - 7);
    for v in ["0.3.1", "1.0.0", "1.1.0"] {
        let out = call(&pair, "DEL", v)
            .env("CNI_NETNS", &gone)
            .run_in(&pair.host);
        assert!(out.ok().stdout.is_empty());
        call(&pair, "DEL", v)
            .unset("CNI_NETNS")
            .run_in(&pair.host)
            .ok();
    }
}

#[test]
fn version_through_every_symlink() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("version");
    // The runtime tool's two names and doctor are tools, not plugins: they take arguments.
    let tools = ["cnitool", "doctor", "net"];
    let names = farm::applet_names();
    let plugins: Vec<&String> = names
        .iter()
        .filter(|n| !tools.contains(&n.as_str()))
        .collect();
    assert!(plugins.len() >= 3, "{names:?}");
    for name in plugins {
        let out = Cni::new(Farm::shared(), name)
            .command("VERSION")
            .run_in(&pair.host);
        let r = out.result();
        assert_eq!(r["cniVersion"], "1.1.0", "{name}: {out}");
        assert!(
            r["supportedVersions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "1.0.0"),
            "{name}: {out}"
        );
    }
}

/// Every bad-input path of the protocol, through the real binary: the code, and a message that
/// names the problem.
#[test]
fn bad_input_gets_the_right_code_and_message() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("bad");
    let base = || call(&pair, "ADD", "1.0.0");
    let cases: Vec<(&str, Cni, u64, &str)> = vec![
        ("missing env", base().unset("CNI_NETNS"), 4, "CNI_NETNS"),
        ("unknown command", base().command("ATTACH"), 4, "unknown CNI_COMMAND: ATTACH"),
        ("bad container id", base().container_id("a/b"), 4, "containerID"),
        ("ifname too long", base().ifname("abcdefghijklmnop"), 4, "interface name"),
        ("ifname with slash", base().ifname("a/b"), 4, "interface name"),
        ("stdin not JSON", base().stdin("{not json"), 6, "not JSON"),
        ("unsupported version", base().config(conf("2.0.0")), 1, "incompatible CNI versions"),
        ("CHECK with 0.3.1", call(&pair, "CHECK", "0.3.1"), 1, "does not allow CHECK"),
        ("GC with 1.0.0", call(&pair, "GC", "1.0.0"), 1, "does not allow GC"),
        (
            "prevResult of the wrong shape",
            base().config(json!({"cniVersion": "1.0.0", "name": "n", "type": "loopback", "prevResult": {"ips": 5}})),
            7,
            "prevResult",
        ),
        ("missing name", base().config(json!({"cniVersion": "1.0.0", "type": "loopback"})), 7, "network name"),
    ];
    for (what, c, code, fragment) in cases {
        let out = c.run_in(&pair.host);
        let err = out.expect_error(code);
        let text = format!(
            "{} {}",
            err["msg"].as_str().unwrap_or(""),
            err["details"].as_str().unwrap_or("")
        );
        assert!(
            text.contains(fragment),
            "{what}: {text:?} lacks {fragment:?}\n{out}"
        );
        assert!(!out.stdout.contains("panicked at"), "{what}: {out}");
        assert!(
            !out.stderr.contains("RUST_BACKTRACE"),
            "{what}: no Rust panic\n{out}"
        );
    }
    assert!(!lo_state(&pair).0, "no failed call touched lo");
}
