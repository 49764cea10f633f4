//! static tests: merging of the address sources, ADD/DEL/CHECK called directly, and the
//! good/bad configs under `testdata/config/static/`.

use super::*;
use crate::error::code_of;
use crate::skel::{Command, Env};
use crate::testutil::check_config_testdata;
use serde_json::{Value, json};

fn cmd(command: Command, conf: &Value, cni_args: &str) -> CmdArgs {
    CmdArgs {
        command,
        container_id: "c1".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: CniArgs::parse(cni_args).unwrap(),
        path: Vec::new(),
        stdin: serde_json::to_vec(conf).unwrap(),
        version: conf["cniVersion"].as_str().unwrap_or_default().into(),
        env: Env::new(),
    }
}

fn load_json(v: &Value, cni_args: &str) -> anyhow::Result<StaticConfig> {
    let c: Conf = serde_json::from_value(v.clone())?;
    StaticConfig::load(&c.net, &CniArgs::parse(cni_args).unwrap())
}

fn addrs(c: &StaticConfig) -> Vec<String> {
    c.addresses
        .iter()
        .map(|a| {
            format!(
                "{}{}",
                a.address,
                a.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
            )
        })
        .collect()
}

fn base() -> Value {
    json!({"cniVersion": "1.0.0", "name": "n", "type": "macvlan",
           "ipam": {"type": "static", "addresses": [{"address": "10.1.0.5/24"}],
                    "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.1.0.53"]}}})
}

#[test]
fn help_lists_every_ipam_key() {
    let sources = [
        include_str!("static_ipam.rs"),
        include_str!("../src/ipam/config.rs"),
    ];
    crate::keys::assert_ipam_keys(KEYS, &sources, |net| {
        StaticConfig::load(net, &CniArgs::default()).map(drop)
    });
}

#[test]
fn add_returns_addresses_routes_and_dns() {
    let mut c = base();
    c["ipam"]["addresses"] =
        json!([{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}, {"address": "2001:db8::5/64"}]);
    let r = Static.add(&cmd(Command::Add, &c, "")).unwrap();
    assert!(r.interfaces.is_empty());
    let got: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
    assert_eq!(got, ["10.1.0.5/24", "2001:db8::5/64"]);
    assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
    assert_eq!((r.ips[1].gateway, r.ips[0].interface), (None, None));
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.dns.nameservers, ["10.1.0.53"]);
    Static.del(&cmd(Command::Del, &c, "")).unwrap();
}

#[test]
fn cni_args_append_and_set_gateways() {
    let c = load_json(
        &base(),
        "IgnoreUnknown=1;IP=10.2.0.7/16, 2001:db8::7/64;GATEWAY=10.2.255.254,10.1.0.1",
    )
    .unwrap();
    assert_eq!(
        addrs(&c),
        [
            "10.1.0.5/24 via 10.1.0.1",
            "10.2.0.7/16 via 10.2.255.254",
            "2001:db8::7/64"
        ]
    );
    let e = load_json(&base(), "IP=10.2.0.7").unwrap_err();
    assert_eq!(code_of(&e), 4);
    assert!(
        format!("{e}").contains("CNI_ARGS IP: invalid CIDR \"10.2.0.7\""),
        "{e}"
    );
    let e = load_json(&base(), "GATEWAY=x").unwrap_err();
    assert!(
        format!("{e}").contains("CNI_ARGS GATEWAY: invalid IP address"),
        "{e}"
    );
}

#[test]
fn args_then_runtime_config_replace_everything() {
    let mut v = base();
    v["args"] = json!({"cni": {"ips": ["10.3.0.1/24"]}});
    assert_eq!(
        addrs(&load_json(&v, "IP=10.2.0.7/16").unwrap()),
        ["10.3.0.1/24"]
    );
    v["runtimeConfig"] = json!({"ips": ["10.4.0.1/24", "10.4.0.2/24"]});
    assert_eq!(
        addrs(&load_json(&v, "").unwrap()),
        ["10.4.0.1/24", "10.4.0.2/24"]
    );
    v["runtimeConfig"] = json!({"ips": []});
    assert_eq!(
        addrs(&load_json(&v, "").unwrap()),
        ["10.3.0.1/24"],
        "an empty list replaces nothing"
    );
}

#[test]
fn check_compares_prev_result() {
    let mut v = base();
    v["ipam"]["addresses"] =
        json!([{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}, {"address": "10.9.0.5/24"}]);
    let conf = load_json(&v, "").unwrap();
    let prev = |list: &[(&str, Option<&str>)]| CniResult {
        ips: list
            .iter()
            .map(|(a, g)| IpConfig {
                interface: Some(0),
                address: a.parse().unwrap(),
                gateway: g.map(|g| g.parse().unwrap()),
            })
            .collect(),
        ..Default::default()
    };
    check_prev(
        &conf,
        &prev(&[
            ("10.1.0.5/24", Some("10.1.0.1")),
            ("10.9.0.5/24", Some("10.9.0.1")),
        ]),
        "eth0",
    )
    .unwrap();
    let e = check_prev(
        &conf,
        &prev(&[("10.1.0.5/24", Some("10.1.0.2")), ("10.9.0.5/24", None)]),
        "eth0",
    )
    .unwrap_err();
    assert_eq!(
        format!("{e}"),
        "static: Failed to match addr 10.1.0.5 on interface eth0"
    );
    let e = check_prev(&conf, &prev(&[("10.1.0.5/24", Some("10.1.0.1"))]), "eth0").unwrap_err();
    assert!(format!("{e}").contains("address 10.9.0.5 is missing from prevResult"));
    let e = Static.check(&cmd(Command::Check, &v, "")).unwrap_err();
    assert!(format!("{e}").contains("Required prevResult missing"));
}

/// Every `ok-*` config parses; every `bad-*` fails with code 7 and its `_expect` text.
#[test]
fn testdata_configs() {
    check_config_testdata("static", (3, 8), |v| load_json(v, "").map(|_| ()));
}
