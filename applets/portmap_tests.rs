//! portmap applet tests: configuration validation (each bad input a code-7 error before any
//! side effect), the choice of container addresses, and in a fresh netns ADD/CHECK/DEL with
//! both backends, DEL without mappings, and the rollback of a half-done dual-stack ADD.

use super::*;
use crate::error::code_of;
use crate::netfilter::oracle::{self, here, nat_state, run};
use crate::skel::{Command, Env};
use crate::testutil::fresh_netns;
use crate::types::args::CniArgs;
use serde_json::{Value, json};

fn conf(backend: &str, mappings: Value, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": "pmnet", "type": "portmap", "backend": backend,
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.0.0.2/24", "interface": 0},
                    {"address": "2001:db8::2/64", "interface": 0}]
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn cmd(command: Command, conf: &Value) -> CmdArgs {
    CmdArgs {
        command,
        container_id: "ctr1".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: CniArgs::parse("").unwrap(),
        path: Vec::new(),
        stdin: serde_json::to_vec(conf).unwrap(),
        version: "1.0.0".into(),
        env: Env::new(),
    }
}

fn one(host: i64, cont: i64, proto: &str) -> Value {
    json!([{"hostPort": host, "containerPort": cont, "protocol": proto}])
}

/// ADD's error for `c`, which must be a configuration error.
fn bad(c: &Value) -> String {
    let e = Portmap.add(&cmd(Command::Add, c)).unwrap_err();
    assert_eq!(code_of(&e), 7, "{e:#}");
    format!("{e:#}")
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}

#[test]
fn bad_ports_and_protocols_are_config_errors() {
    let nothing = json!({});
    for (h, c) in [(0, 80), (65536, 80), (8080, 0), (8080, 70000), (-1, 80)] {
        let e = bad(&conf("nftables", one(h, c, "tcp"), nothing.clone()));
        assert!(e.contains("port number") && e.contains("1-65535"), "{e}");
    }
    let e = bad(&conf("nftables", one(8080, 80, "icmp"), nothing.clone()));
    assert!(e.contains("invalid protocol \"icmp\""), "{e}");
    let e = bad(&conf("nftables", one(8080, 80, ""), nothing.clone()));
    assert!(e.contains("invalid protocol"), "{e}");
    let m = json!([{"hostPort": 1, "containerPort": 2, "protocol": "tcp", "hostIP": "nope"}]);
    assert!(bad(&conf("nftables", m, nothing)).contains("invalid hostIP"));
}

#[test]
fn conflicting_options_are_config_errors() {
    let m = one(8080, 80, "tcp");
    let both = json!({"markMasqBit": 14, "externalSetMarkChain": "KUBE-MARK-MASQ"});
    assert!(
        bad(&conf("iptables", m.clone(), both))
            .contains("both externalSetMarkChain and markMasqBit")
    );
    let e = bad(&conf("iptables", m.clone(), json!({"markMasqBit": 32})));
    assert!(e.contains("between 0 and 31"), "{e}");
    assert!(bad(&conf("ebtables", m.clone(), json!({}))).contains("unrecognized backend"));
    let e = bad(&conf(
        "nftables",
        m.clone(),
        json!({"externalSetMarkChain": "X"}),
    ));
    assert!(
        e.contains("iptables-specific options [\"externalSetMarkChain\"]"),
        "{e}"
    );
    let e = bad(&conf(
        "nftables",
        m.clone(),
        json!({"conditionsV4": ["-d", "1.2.3.4"]}),
    ));
    assert!(e.contains("[\"conditionsV4\"]"), "{e}");
    let e = bad(&conf(
        "iptables",
        m.clone(),
        json!({"conditionsV6": ["ip6", "saddr", "::1"]}),
    ));
    assert!(
        e.contains("nftables-specific options [\"conditionsV6\"]"),
        "{e}"
    );
    let e = bad(&conf(
        "nftables",
        m,
        json!({"conditionsV4": ["tcp", "sport", "1"]}),
    ));
    assert!(e.contains("`tcp` is not supported"), "{e}");
}

#[test]
fn mappings_need_a_prev_result_but_nothing_else_does() {
    let m = one(8080, 80, "tcp");
    let e = bad(&conf("nftables", m, json!({"prevResult": null})));
    assert!(e.contains("prevResult is missing"), "{e}");
    let none = conf("nftables", json!([]), json!({"prevResult": null}));
    assert_eq!(
        Portmap.add(&cmd(Command::Add, &none)).unwrap(),
        CniResult::default()
    );
    let passthrough = conf("nftables", json!([]), json!({}));
    let r = Portmap.add(&cmd(Command::Add, &passthrough)).unwrap();
    assert_eq!(r.ips.len(), 2);
}

#[test]
fn container_addresses_follow_the_reference_choice() {
    let prev: CniResult = CniResult::decode(
        &json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "veth0"}, {"name": "eth0", "sandbox": "/x"}, {"name": "eth0"}],
            "ips": [
                {"address": "192.168.1.1/24", "interface": 0},
                {"address": "192.168.2.1/24", "interface": 2},
                {"address": "fd00::9/64"},
                {"address": "10.0.0.2/24", "interface": 1},
                {"address": "10.0.0.3/24", "interface": 1},
                {"address": "fd00::2/64", "interface": 1}
            ]
        }),
        "1.0.0",
    )
    .unwrap();
    let got: Vec<String> = container_ips(&prev, "eth0")
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(got, ["10.0.0.2/24", "fd00::9/64"]);
}

fn lifecycle(backend: &str) {
    let m = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                   {"hostPort": 5353, "containerPort": 53, "protocol": "UDP"}]);
    let c = conf(backend, m, json!({}));
    assert!(Portmap.check(&cmd(Command::Check, &c)).is_err());
    let r = Portmap.add(&cmd(Command::Add, &c)).unwrap();
    assert_eq!(r.ips.len(), 2, "prevResult passed on");
    Portmap.check(&cmd(Command::Check, &c)).unwrap();
    // DEL without the mappings (a runtime that does not resend them) still removes all.
    let bare = json!({"cniVersion": "1.0.0", "name": "pmnet", "type": "portmap"});
    Portmap.del(&cmd(Command::Del, &bare)).unwrap();
    assert!(Portmap.check(&cmd(Command::Check, &c)).is_err());
    Portmap.del(&cmd(Command::Del, &bare)).unwrap();
    let rules = run(&here(), &["nft", "list", "ruleset"]);
    assert!(
        !rules.contains("ctr1") && !rules.contains("CNI-DN-"),
        "{rules}"
    );
}

#[test]
fn lifecycle_with_both_backends() {
    let Some(_ns) = fresh_netns("lifecycle_with_both_backends") else {
        return;
    };
    if !oracle::have("nft") || !oracle::have("iptables-restore") {
        println!("skipped: lifecycle_with_both_backends needs nft and iptables");
        return;
    }
    lifecycle("nftables");
    lifecycle("iptables");
}

/// The IPv6 forward fails (the external mark chain exists only for IPv4): the IPv4 rules
/// already made are rolled back.
#[test]
fn failed_second_family_rolls_back_the_first() {
    let Some(_ns) = fresh_netns("failed_second_family_rolls_back_the_first") else {
        return;
    };
    if !oracle::have("iptables-restore") {
        println!("skipped: failed_second_family_rolls_back_the_first needs iptables");
        return;
    }
    run(&here(), &["iptables", "-t", "nat", "-N", "KUBE-MARK-MASQ"]);
    let c = conf(
        "iptables",
        one(8080, 80, "tcp"),
        json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}),
    );
    let e = Portmap.add(&cmd(Command::Add, &c)).unwrap_err();
    assert!(format!("{e:#}").contains("ip6tables-restore"), "{e:#}");
    let v4 = nat_state("iptables-save");
    assert!(!v4.iter().any(|l| l.contains("CNI-DN-")), "{v4:?}");
}

#[test]
fn check_without_mappings_looks_for_nothing() {
    // ADD made no rules, so CHECK must not look for any (a chain's CHECK with portmap and no
    // portMappings capability arg failed before).
    for extra in [json!({}), json!({"runtimeConfig": null})] {
        let c = conf("iptables", json!([]), extra);
        Portmap.check(&cmd(Command::Check, &c)).unwrap();
    }
}
