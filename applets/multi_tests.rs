//! multi tests: ifname and network-name resolution, config errors, result merging, and ADD/DEL
//! through a CNI_PATH without the plugins (the failure path). Real interfaces: tests/e2e/multi.rs.

use super::*;
use crate::error::{code, code_of};
use crate::skel::{Command, Env};
use crate::types::args::CniArgs;
use crate::types::{Interface, IpConfig, Route};
use serde_json::json;

fn cmd(conf: &Value, cni_args: &str) -> CmdArgs {
    CmdArgs {
        command: Command::Add,
        container_id: "c1".into(),
        netns: "/proc/self/ns/net".into(),
        ifname: "eth0".into(),
        args: CniArgs::parse(cni_args).unwrap(),
        path: vec!["/nonexistent-cni-path".into()],
        stdin: serde_json::to_vec(conf).unwrap(),
        version: conf["cniVersion"].as_str().unwrap_or_default().into(),
        env: Env::new(),
    }
}

fn village() -> Value {
    json!({"cniVersion": "1.1.0", "name": "village", "type": "multi",
        "attachments": [
            {"plugins": [{"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": true}}]},
            {"ifname": "net1", "plugins": [{"type": "macvlan", "master": "eno1"}]},
            {"name": "storage", "plugins": [{"type": "ptp"}]}]})
}

fn resolved(conf: &Value, cni_args: &str) -> anyhow::Result<Vec<(String, String)>> {
    let args = cmd(conf, cni_args);
    let (c, _) = setup(&args)?;
    Ok(resolve_all(&c, &args)?
        .into_iter()
        .map(|r| (r.rt.ifname, r.list.name))
        .collect())
}

#[test]
fn ifnames_and_network_names() {
    let err = resolved(&village(), "").unwrap_err();
    assert_eq!(code_of(&err), code::INVALID_CONFIG);
    assert!(
        format!("{err:#}").contains("attachment 2 has no ifname"),
        "{err:#}"
    );
    let got = resolved(&village(), "K8S_POD_NAME=x;MULTI_IFNAME_2=st0").unwrap();
    assert_eq!(
        got,
        [
            ("eth0".into(), "village-eth0".into()),
            ("net1".into(), "village-net1".into()),
            ("st0".into(), "storage".into()),
        ]
    );
}

#[test]
fn runtime_ifnames_win_over_args_and_config() {
    let mut conf = village();
    conf["runtimeConfig"] = json!({"multiIfnames": [null, "lan0", "st9"], "portMappings": []});
    let got = resolved(&conf, "MULTI_IFNAME_1=net7").unwrap();
    assert_eq!(got[1], ("lan0".into(), "village-lan0".into()));
    assert_eq!(got[2], ("st9".into(), "storage".into()));
    assert_eq!(got[0].0, "eth0");
}

#[test]
fn capability_args_reach_the_lists_without_the_ifnames() {
    let mut conf = village();
    conf["runtimeConfig"] =
        json!({"multiIfnames": [null, null, "st0"], "portMappings": [{"hostPort": 8080}]});
    let args = cmd(&conf, "");
    let (c, _) = setup(&args).unwrap();
    let all = resolve_all(&c, &args).unwrap();
    assert_eq!(
        Value::Object(all[0].rt.capability_args.clone()),
        json!({"portMappings": [{"hostPort": 8080}]})
    );
    assert_eq!(all[0].list.cni_version, "1.1.0");
    assert_eq!(all[0].list.plugins.len(), 2);
}

#[test]
fn config_errors_are_code_7() {
    let cases = [
        json!({"cniVersion": "1.0.0", "name": "n", "type": "multi"}),
        json!({"cniVersion": "1.0.0", "name": "n", "type": "multi", "attachments": [{"plugins": []}]}),
        json!({"cniVersion": "1.0.0", "name": "n", "type": "multi",
            "attachments": [{"plugins": [{"type": "multi"}]}]}),
        json!({"cniVersion": "1.0.0", "name": "n", "type": "multi",
            "attachments": [{"plugins": [{"type": "bridge"}]}, {"ifname": "eth0", "plugins": [{"type": "ptp"}]}]}),
        json!({"cniVersion": "1.0.0", "name": "n", "type": "multi",
            "attachments": [{"name": "x", "plugins": [{"type": "bridge"}]}, {"name": "x", "ifname": "net1", "plugins": [{"type": "ptp"}]}]}),
        json!({"cniVersion": "1.0.0", "name": "n", "type": "multi",
            "attachments": [{"name": "../etc", "plugins": [{"type": "bridge"}]}]}),
        json!({"cniVersion": "1.0.0", "name": "n", "type": "multi", "attachments": {"x": 1}}),
    ];
    for conf in cases {
        let err = resolved(&conf, "").unwrap_err();
        assert_eq!(code_of(&err), code::INVALID_CONFIG, "{conf}: {err:#}");
    }
}

#[test]
fn merged_result_keeps_addresses_on_their_interfaces() {
    let first = CniResult {
        interfaces: vec![
            Interface {
                name: "cni0".into(),
                ..Default::default()
            },
            Interface {
                name: "eth0".into(),
                sandbox: "/ns".into(),
                ..Default::default()
            },
        ],
        ips: vec![IpConfig {
            interface: Some(1),
            address: "10.1.0.5/24".parse().unwrap(),
            gateway: None,
        }],
        routes: vec![Route::new(
            "0.0.0.0/0".parse().unwrap(),
            Some("10.1.0.1".parse().unwrap()),
        )],
        dns: Default::default(),
    };
    let mut second = first.clone();
    second.interfaces = vec![Interface {
        name: "net1".into(),
        ..Default::default()
    }];
    second.ips = vec![
        IpConfig {
            interface: Some(0),
            address: "192.168.1.7/24".parse().unwrap(),
            gateway: None,
        },
        IpConfig {
            interface: None,
            address: "192.168.1.8/24".parse().unwrap(),
            gateway: None,
        },
    ];
    second.dns.nameservers = vec!["192.168.1.1".into()];
    let mut third = CniResult::default();
    third.dns.nameservers = vec!["9.9.9.9".into()];
    let mut merged = CniResult::default();
    for r in [first, second, third] {
        merge_into(&mut merged, r);
    }
    let names: Vec<_> = merged.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["cni0", "eth0", "net1"]);
    let idx: Vec<_> = merged.ips.iter().map(|i| i.interface).collect();
    assert_eq!(idx, [Some(1), Some(2), None]);
    assert_eq!(merged.routes.len(), 2);
    assert_eq!(merged.dns.nameservers, ["192.168.1.1"]);
}

#[test]
fn add_fails_cleanly_when_a_plugin_is_missing() {
    let args = cmd(&village(), "MULTI_IFNAME_2=st0");
    let cache = crate::testutil::TempDir::new("multi-cache");
    let mut conf = village();
    conf["cacheDir"] = cache.path().display().to_string().into();
    let args = CmdArgs {
        stdin: serde_json::to_vec(&conf).unwrap(),
        ..args
    };
    let err = Multi.add(&args).unwrap_err();
    assert!(
        format!("{err:#}").contains("attachment \"eth0\""),
        "{err:#}"
    );
    assert!(
        format!("{err:#}").contains("failed to find plugin"),
        "{err:#}"
    );
    // Nothing was cached for any attachment.
    let results = cache.path().join("results");
    assert!(!results.exists() || std::fs::read_dir(&results).unwrap().next().is_none());
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}
