//! vlan config checks (code 7) and the exact `RTM_NEWLINK` the applet sends, byte for byte:
//! this kernel lacks 8021q, so the message is proven here and the link in the VM rig.
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

fn master(index: u32, mtu: u32) -> Link {
    Link {
        index,
        name: "eth9".into(),
        kind: String::new(),
        mtu,
        mac: None,
        flags: 0,
        master: None,
        link: None,
        link_netnsid: None,
        txqlen: 0,
        alias: None,
        operstate: 0,
    }
}

#[test]
fn keys_and_bad_configs_are_code_7() {
    let c = load(
        r#"{"name":"n","type":"vlan","master":"eth9","vlanId":42,"mtu":1400,
            "linkInContainer":true,"ipam":{"type":"static"}}"#,
    )
    .unwrap();
    assert_eq!((c.vlan_id, c.lower.mtu), (42, 1400));
    assert!(c.lower.link_in_container && c.lower.master == "eth9");
    load(r#"{"master":"eth9","vlanId":0,"ipam":{"type":"static"}}"#).unwrap();
    load(r#"{"master":"eth9","vlanId":4094,"ipam":{"type":"static"}}"#).unwrap();
    for (json, want) in [
        (
            r#"{"master":"eth9","vlanId":5000,"ipam":{"type":"static"}}"#,
            "invalid VLAN ID 5000 (must be between 0 and 4094 inclusive)",
        ),
        (
            r#"{"master":"eth9","vlanId":-1,"ipam":{"type":"static"}}"#,
            "invalid VLAN ID -1",
        ),
        (
            r#"{"master":"eth9","vlanId":4095,"ipam":{"type":"static"}}"#,
            "invalid VLAN ID 4095",
        ),
        (
            r#"{"master":"eth9","vlanId":7}"#,
            "vlan needs an \"ipam\" section",
        ),
        (
            r#"{"master":"eth9","vlanId":7,"mtu":-5,"ipam":{"type":"static"}}"#,
            "invalid network configuration",
        ),
    ] {
        let e = load(json).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7, "{json}");
        assert!(format!("{e:#}").contains(want), "{json}: {e:#}");
    }
    let e = stacked::check_mtu(9001, &master(3, 1500)).unwrap_err();
    assert_eq!(crate::error::code_of(&e), 7);
    assert_eq!(
        e.to_string(),
        "invalid MTU 9001, must be [0, master MTU(1500)]"
    );
    stacked::check_mtu(1500, &master(3, 1500)).unwrap();
}

/// `RTM_NEWLINK`, sent by the container's socket: `CNI_IFNAME`, MTU, `IFLA_LINK` = master,
/// `IFLA_LINK_NETNSID` = the host's id in the container, kind vlan with `IFLA_VLAN_ID`; down,
/// `CREATE|EXCL`.
#[test]
fn newlink_bytes_of_a_vlan_in_the_container() {
    let c = load(r#"{"master":"eth9","vlanId":42,"mtu":1400,"ipam":{"type":"static"}}"#).unwrap();
    let spec = c.link_spec(&master(3, 1500), Some(2), &cmd("{}")).unwrap();
    let want = vec![
        96, 0, 0, 0, 16, 0, 0x05, 0x06, 9, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg: nothing set, down
        9, 0, 3, 0, b'e', b't', b'h', b'0', 0, 0, 0, 0, // IFLA_IFNAME "eth0\0"
        8, 0, 4, 0, 0x78, 0x05, 0, 0, // IFLA_MTU 1400
        8, 0, 5, 0, 3, 0, 0, 0, // IFLA_LINK 3
        8, 0, 37, 0, 2, 0, 0, 0, // IFLA_LINK_NETNSID 2
        28, 0, 18, 0, // IFLA_LINKINFO
        9, 0, 1, 0, b'v', b'l', b'a', b'n', 0, 0, 0, 0, // IFLA_INFO_KIND "vlan\0"
        12, 0, 2, 0, // IFLA_INFO_DATA
        6, 0, 1, 0, 42, 0, 0, 0, // IFLA_VLAN_ID u16 42
    ];
    assert_eq!(crate::netlink::newlink_message(&spec, 9).unwrap(), want);

    // linkInContainer: the master is in the container itself, no IFLA_LINK_NETNSID.
    let inside =
        load(r#"{"master":"eth9","vlanId":42,"linkInContainer":true,"ipam":{"type":"static"}}"#)
            .unwrap();
    let spec = inside
        .link_spec(&master(3, 1500), None, &cmd("{}"))
        .unwrap();
    assert_eq!(
        (spec.parent_netnsid, spec.mtu, spec.netns),
        (None, None, None)
    );
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}
