//! ipvlan config checks (code 7), where its addresses come from, and the exact `RTM_NEWLINK`
//! it sends (this kernel lacks ipvlan, so the message is proven here and the link in the VM
//! rig).
#![cfg(target_endian = "little")]

use super::*;
use crate::skel::Command;
use crate::types::args::CniArgs;

fn cmd(json: &str) -> CmdArgs {
    CmdArgs {
        command: Command::Add,
        container_id: "c1".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: CniArgs::default(),
        path: vec![],
        stdin: json.as_bytes().to_vec(),
        version: "1.0.0".into(),
        env: Default::default(),
    }
}

fn load(json: &str) -> Result<Config> {
    Config::load(&cmd(json))
}

#[test]
fn modes_flags_and_bad_configs() {
    let c = load(r#"{"master":"eth9"}"#).unwrap();
    assert_eq!(
        (c.mode().unwrap(), c.flag().unwrap()),
        (IpvlanMode::L2, IpvlanFlag::Bridge)
    );
    let c = load(r#"{"mode":"l3s","flag":"vepa"}"#).unwrap();
    assert_eq!(
        (c.mode().unwrap(), c.flag().unwrap()),
        (IpvlanMode::L3s, IpvlanFlag::Vepa)
    );
    for (json, want) in [
        (r#"{"mode":"l4"}"#, "unknown ipvlan mode: \"l4\""),
        (r#"{"mode":"bridge"}"#, "unknown ipvlan mode: \"bridge\""),
        (
            r#"{"flag":"passthru"}"#,
            "unknown ipvlan flag: \"passthru\"",
        ),
    ] {
        let e = load(json).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7, "{json}");
        assert!(e.to_string().contains(want), "{json}: {e}");
    }
}

#[test]
fn addresses_from_ipam_else_from_prev_result() {
    let c = load(r#"{"ipam":{"type":"host-local"}}"#).unwrap();
    assert!(matches!(
        c.addressing(None).unwrap(),
        Addressing::Ipam("host-local")
    ));
    let c = load(r#"{"cniVersion":"1.0.0"}"#).unwrap();
    let e = c.addressing(None).err().unwrap();
    assert_eq!(crate::error::code_of(&e), 7);
    assert!(
        e.to_string().contains("or a prevResult that carries IPs"),
        "{e}"
    );
    let prev: CniResult = CniResult::decode(
        &serde_json::json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth9"}],
            "ips":[{"address":"10.9.0.5/24"}]}),
        "1.0.0",
    )
    .unwrap();
    let Addressing::Prev(p) = c.addressing(Some(prev.clone())).unwrap() else {
        panic!("want the prevResult's addresses");
    };
    assert_eq!(p.ips[0].address.to_string(), "10.9.0.5/24");
    let no_ips = CniResult {
        ips: vec![],
        ..prev
    };
    assert!(c.addressing(Some(no_ips)).is_err());
}

/// `RTM_NEWLINK`, sent by the container's socket: `CNI_IFNAME`, `IFLA_LINK` = master,
/// `IFLA_LINK_NETNSID` = the host's id in the container, kind ipvlan with `IFLA_IPVLAN_MODE`
/// and `IFLA_IPVLAN_FLAGS`; down, `CREATE|EXCL`.
#[test]
fn newlink_bytes_of_an_ipvlan_in_the_container() {
    let c = load(r#"{"master":"eth9","mode":"l3","flag":"private"}"#).unwrap();
    let master = Link {
        index: 5,
        name: "eth9".into(),
        kind: String::new(),
        mtu: 1500,
        mac: None,
        flags: 0,
        master: None,
        link: None,
        link_netnsid: None,
        txqlen: 0,
        alias: None,
        operstate: 0,
    };
    let spec = c.link_spec(&master, Some(0), &cmd("{}")).unwrap();
    let want = vec![
        96, 0, 0, 0, 16, 0, 0x05, 0x06, 2, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg
        9, 0, 3, 0, b'e', b't', b'h', b'0', 0, 0, 0, 0, // IFLA_IFNAME "eth0\0"
        8, 0, 5, 0, 5, 0, 0, 0, // IFLA_LINK 5
        8, 0, 37, 0, 0, 0, 0, 0, // IFLA_LINK_NETNSID 0
        36, 0, 18, 0, // IFLA_LINKINFO, 4 + 12 + 20
        11, 0, 1, 0, b'i', b'p', b'v', b'l', b'a', b'n', 0, 0, // IFLA_INFO_KIND "ipvlan\0"
        20, 0, 2, 0, // IFLA_INFO_DATA
        6, 0, 1, 0, 1, 0, 0, 0, // IFLA_IPVLAN_MODE u16 1 (l3)
        6, 0, 2, 0, 1, 0, 0, 0, // IFLA_IPVLAN_FLAGS u16 1 (private)
    ];
    assert_eq!(crate::netlink::newlink_message(&spec, 2).unwrap(), want);
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}
