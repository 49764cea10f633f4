//! macvlan config checks (code 7), the MAC's precedence, and CHECK's comparison of the
//! kernel's mode. The link itself is tested end to end (tests/e2e/macvlan.rs).

use super::*;
use crate::types::args::CniArgs;

fn cmd(json: &str, cni_args: &str) -> CmdArgs {
    CmdArgs {
        command: Command::Add,
        container_id: "c1".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: CniArgs::parse(cni_args).unwrap(),
        path: vec![],
        stdin: json.as_bytes().to_vec(),
        version: "1.0.0".into(),
        env: Default::default(),
    }
}

#[test]
fn modes_and_bad_configs_are_code_7() {
    let c = Config::load(&cmd(r#"{"master":"eth9","bcqueuelen":100,"mtu":1400}"#, "")).unwrap();
    assert_eq!(c.mode().unwrap(), MacvlanMode::Bridge);
    assert_eq!(
        (c.bcqueuelen, c.lower.mtu, c.lower.master.as_str()),
        (100, 1400, "eth9")
    );
    for m in ["bridge", "private", "vepa", "passthru"] {
        let c = Config::load(&cmd(&format!(r#"{{"mode":"{m}"}}"#), "")).unwrap();
        assert_eq!(c.mode().unwrap().name(), m);
    }
    for (json, want) in [
        (r#"{"mode":"source"}"#, "unknown macvlan mode: \"source\""),
        (r#"{"mode":"l2"}"#, "unknown macvlan mode: \"l2\""),
        (r#"{"mac":"zz"}"#, "invalid MAC address for macvlan"),
        (r#"{"mtu":-1}"#, "invalid network configuration"),
        (
            r#"{"runtimeConfig":{"mac":"nope"}}"#,
            "invalid MAC address \"nope\"",
        ),
    ] {
        let e = Config::load(&cmd(json, "")).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7, "{json}");
        assert!(format!("{e:#}").contains(want), "{json}: {e:#}");
    }
}

/// The reference's order: config `mac`, overridden by CNI_ARGS `MAC`, overridden by
/// `runtimeConfig.mac`.
#[test]
fn mac_precedence() {
    let conf = r#"{"mac":"02:00:00:00:00:01"}"#;
    let mac = |json: &str, a: &str| {
        let args = cmd(json, a);
        Config::load(&args).unwrap().mac(&args).unwrap()
    };
    assert_eq!(mac(conf, ""), Some([2, 0, 0, 0, 0, 1]));
    assert_eq!(
        mac(conf, "IgnoreUnknown=1;MAC=02:00:00:00:00:02"),
        Some([2, 0, 0, 0, 0, 2])
    );
    let with_rt = r#"{"mac":"02:00:00:00:00:01","runtimeConfig":{"mac":"02:00:00:00:00:03"}}"#;
    assert_eq!(
        mac(with_rt, "MAC=02:00:00:00:00:02"),
        Some([2, 0, 0, 0, 0, 3])
    );
    assert_eq!(mac("{}", ""), None);
}

#[test]
fn check_compares_mode_and_broadcast_queue() {
    let c = Config::load(&cmd(r#"{"mode":"vepa","bcqueuelen":50}"#, "")).unwrap();
    let vepa = MacvlanMode::Vepa as u32;
    c.check_kind_data(&KindData::Macvlan {
        mode: vepa,
        bc_queue_len: Some(50),
    })
    .unwrap();
    c.check_kind_data(&KindData::Macvlan {
        mode: vepa,
        bc_queue_len: None,
    })
    .unwrap();
    let e = c
        .check_kind_data(&KindData::Macvlan {
            mode: MacvlanMode::Bridge as u32,
            bc_queue_len: None,
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "container macvlan mode bridge does not match expected value: vepa"
    );
    let e = c
        .check_kind_data(&KindData::Macvlan {
            mode: vepa,
            bc_queue_len: Some(1000),
        })
        .unwrap_err();
    assert!(e.to_string().contains("bcqueuelen 1000"), "{e}");
    assert!(c.check_kind_data(&KindData::Other).is_err());
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}
