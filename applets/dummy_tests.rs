//! dummy's config check and the exact `RTM_NEWLINK` it sends (this kernel lacks dummy, so the
//! message is proven here and the link in the VM rig).
#![cfg(target_endian = "little")]

use super::*;
use crate::types::args::CniArgs;

fn cmd(json: &str) -> CmdArgs {
    CmdArgs {
        command: Command::Add,
        container_id: "c1".into(),
        netns: String::new(),
        ifname: "net1".into(),
        args: CniArgs::default(),
        path: vec![],
        stdin: json.as_bytes().to_vec(),
        version: "1.0.0".into(),
        env: Default::default(),
    }
}

#[test]
fn ipam_is_required() {
    load(&cmd(
        r#"{"name":"d","type":"dummy","ipam":{"type":"static"}}"#,
    ))
    .unwrap();
    for json in [r#"{"name":"d"}"#, r#"{"name":"d","ipam":{}}"#] {
        let e = load(&cmd(json)).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7);
        assert_eq!(
            e.to_string(),
            "dummy interface requires an IPAM configuration"
        );
    }
}

/// Named `CNI_IFNAME` from the start, kind dummy, nothing else: the container's socket sends
/// it, so there is no `IFLA_NET_NS_FD` and no parent.
#[test]
fn newlink_bytes_of_the_dummy() {
    let msg = crate::netlink::newlink_message(&link_spec(&cmd("{}")), 3).unwrap();
    let want = [
        60, 0, 0, 0, 16, 0, 0x05, 0x06, 3, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg
        9, 0, 3, 0, b'n', b'e', b't', b'1', 0, 0, 0, 0, // IFLA_IFNAME "net1\0"
        16, 0, 18, 0, // IFLA_LINKINFO
        10, 0, 1, 0, b'd', b'u', b'm', b'm', b'y', 0, 0, 0, // IFLA_INFO_KIND "dummy\0"
    ];
    assert_eq!(msg, want);
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<NetConf>(KEYS);
}
