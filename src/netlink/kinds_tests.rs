//! Byte-level tests of `IFLA_LINKINFO` for every kind and of the `RTM_NEWLINK` framing,
//! hand-computed from include/uapi/linux/{netlink,rtnetlink,if_link,veth}.h. Attribute
//! headers are `[len lo, len hi, type lo, type hi]`, `len` excludes the padding to 4 bytes.
//! Integers are native-endian: these expectations are for little-endian machines.
#![cfg(target_endian = "little")]

use super::*;

/// `IFLA_INFO_KIND` (1) attribute for a kind name, padded.
fn kind_attr(name: &str) -> Vec<u8> {
    let len = 4 + name.len() + 1;
    let mut v = vec![len as u8, 0, 1, 0];
    v.extend(name.as_bytes());
    v.push(0);
    v.resize(len.div_ceil(4) * 4, 0);
    v
}

#[test]
fn kind_attr_helper_matches_a_literal() {
    // "vlan\0": len 9, type 1, padded with 3 zeros to 12.
    assert_eq!(
        kind_attr("vlan"),
        [9, 0, 1, 0, b'v', b'l', b'a', b'n', 0, 0, 0, 0]
    );
}

#[test]
fn dummy_is_kind_only() {
    let expected = [10, 0, 1, 0, b'd', b'u', b'm', b'm', b'y', 0, 0, 0]; // KIND "dummy\0" + 2 pad
    assert_eq!(LinkKind::Dummy.linkinfo_bytes().unwrap(), expected);
}

#[test]
fn ifb_is_kind_only() {
    let expected = [8, 0, 1, 0, b'i', b'f', b'b', 0]; // KIND "ifb\0", no padding needed
    assert_eq!(LinkKind::Ifb.linkinfo_bytes().unwrap(), expected);
}

#[test]
fn vlan_8021q_id() {
    let mut expected = kind_attr("vlan");
    expected.extend([
        12, 0, 2, 0, // IFLA_INFO_DATA, len 4 + 8
        6, 0, 1, 0, 100, 0, 0, 0, // IFLA_VLAN_ID u16 100, len 6 + 2 pad
    ]);
    assert_eq!(
        LinkKind::Vlan { id: 100 }.linkinfo_bytes().unwrap(),
        expected
    );
    // 0 (priority tagging) is valid, 4095 is reserved.
    assert_eq!(
        &LinkKind::Vlan { id: 0 }.linkinfo_bytes().unwrap()[16..],
        [6, 0, 1, 0, 0, 0, 0, 0]
    );
    assert!(LinkKind::Vlan { id: 4095 }.linkinfo_bytes().is_err());
}

#[test]
fn ipvlan_mode_and_flags() {
    let kind = LinkKind::Ipvlan {
        mode: IpvlanMode::L3,
        flags: IpvlanFlag::Private,
    };
    let mut expected = kind_attr("ipvlan"); // len 11, padded to 12
    expected.extend([
        20, 0, 2, 0, // IFLA_INFO_DATA, len 4 + 8 + 8
        6, 0, 1, 0, 1, 0, 0, 0, // IFLA_IPVLAN_MODE u16 1 (l3)
        6, 0, 2, 0, 1, 0, 0, 0, // IFLA_IPVLAN_FLAGS u16 1 (private)
    ]);
    assert_eq!(kind.linkinfo_bytes().unwrap(), expected);
    let l2 = LinkKind::Ipvlan {
        mode: IpvlanMode::L2,
        flags: IpvlanFlag::Bridge,
    };
    assert_eq!(
        &l2.linkinfo_bytes().unwrap()[16..],
        [6, 0, 1, 0, 0, 0, 0, 0, 6, 0, 2, 0, 0, 0, 0, 0]
    );
}

#[test]
fn vrf_table() {
    let expected = [
        8, 0, 1, 0, b'v', b'r', b'f', 0, // KIND "vrf\0"
        12, 0, 2, 0, // IFLA_INFO_DATA
        8, 0, 1, 0, 0xe8, 0x03, 0, 0, // IFLA_VRF_TABLE u32 1000
    ];
    assert_eq!(
        LinkKind::Vrf { table: 1000 }.linkinfo_bytes().unwrap(),
        expected
    );
}

#[test]
fn bond_mode() {
    let mut expected = kind_attr("bond");
    expected.extend([
        12, 0, 2, 0, // IFLA_INFO_DATA
        5, 0, 1, 0, 4, 0, 0, 0, // IFLA_BOND_MODE u8 4 (802.3ad), len 5 + 3 pad
    ]);
    assert_eq!(
        LinkKind::Bond {
            mode: BondMode::Lacp
        }
        .linkinfo_bytes()
        .unwrap(),
        expected
    );
    assert_eq!(
        BondMode::from_name("active-backup"),
        Some(BondMode::ActiveBackup)
    );
}

#[test]
fn macvlan_mode() {
    let expected = [
        12, 0, 1, 0, b'm', b'a', b'c', b'v', b'l', b'a', b'n', 0, // KIND "macvlan\0"
        12, 0, 2, 0, // IFLA_INFO_DATA
        8, 0, 1, 0, 4, 0, 0, 0, // IFLA_MACVLAN_MODE u32 4 (bridge)
    ];
    let kind = LinkKind::Macvlan {
        mode: MacvlanMode::from_name("bridge").unwrap(),
        bc_queue_len: None,
    };
    assert_eq!(kind.linkinfo_bytes().unwrap(), expected);
    assert_eq!(
        MacvlanMode::from_name("passthru"),
        Some(MacvlanMode::Passthru)
    );
    assert_eq!(MacvlanMode::from_name("nope"), None);
}

#[test]
fn macvlan_broadcast_queue_length() {
    let kind = LinkKind::Macvlan {
        mode: MacvlanMode::Private,
        bc_queue_len: Some(2000),
    };
    let mut expected = kind_attr("macvlan");
    expected.extend([
        20, 0, 2, 0, // IFLA_INFO_DATA, len 4 + 8 + 8
        8, 0, 1, 0, 1, 0, 0, 0, // IFLA_MACVLAN_MODE u32 1 (private)
        8, 0, 7, 0, 0xd0, 0x07, 0, 0, // IFLA_MACVLAN_BC_QUEUE_LEN u32 2000
    ]);
    assert_eq!(kind.linkinfo_bytes().unwrap(), expected);
}

#[test]
fn bridge_sends_only_what_was_asked() {
    let none = LinkKind::Bridge {
        vlan_filtering: None,
        vlan_default_pvid: None,
        mcast_snooping: None,
    };
    assert_eq!(none.linkinfo_bytes().unwrap(), kind_attr("bridge")); // no IFLA_INFO_DATA at all
    let some = LinkKind::Bridge {
        vlan_filtering: Some(true),
        vlan_default_pvid: Some(0),
        mcast_snooping: Some(false),
    };
    let mut expected = kind_attr("bridge");
    expected.extend([
        28, 0, 2, 0, // IFLA_INFO_DATA, len 4 + 3 * 8
        5, 0, 7, 0, 1, 0, 0, 0, // IFLA_BR_VLAN_FILTERING u8 1
        6, 0, 39, 0, 0, 0, 0, 0, // IFLA_BR_VLAN_DEFAULT_PVID u16 0
        5, 0, 23, 0, 0, 0, 0, 0, // IFLA_BR_MCAST_SNOOPING u8 0
    ]);
    assert_eq!(some.linkinfo_bytes().unwrap(), expected);
}

#[test]
fn vxlan_basic() {
    let kind = LinkKind::Vxlan {
        vni: 42,
        local: Some("10.0.0.1".parse().unwrap()),
        remote: Some("10.0.0.2".parse().unwrap()),
        port: Some(4789),
        dev: Some(3),
        learning: Some(false),
    };
    let mut expected = kind_attr("vxlan");
    expected.extend([
        52, 0, 2, 0, // IFLA_INFO_DATA, len 4 + 6 * 8
        8, 0, 1, 0, 42, 0, 0, 0, // IFLA_VXLAN_ID u32 42
        8, 0, 2, 0, 10, 0, 0, 2, // IFLA_VXLAN_GROUP 10.0.0.2
        8, 0, 4, 0, 10, 0, 0, 1, // IFLA_VXLAN_LOCAL 10.0.0.1
        8, 0, 3, 0, 3, 0, 0, 0, // IFLA_VXLAN_LINK u32 3
        6, 0, 15, 0, 0x12, 0xb5, 0, 0, // IFLA_VXLAN_PORT be16 4789
        5, 0, 7, 0, 0, 0, 0, 0, // IFLA_VXLAN_LEARNING u8 0
    ]);
    assert_eq!(kind.linkinfo_bytes().unwrap(), expected);
    let v6 = LinkKind::Vxlan {
        vni: 1,
        local: None,
        remote: Some("ff05::1".parse().unwrap()),
        port: None,
        dev: None,
        learning: None,
    };
    let b = v6.linkinfo_bytes().unwrap();
    assert_eq!(&b[12..16], [4 + 8 + 20, 0, 2, 0]); // DATA: ID + GROUP6 (4 + 16)
    assert_eq!(&b[24..28], [20, 0, 16, 0]); // IFLA_VXLAN_GROUP6
    assert_eq!(b[28], 0xff);
}

#[test]
fn veth_peer_is_a_nested_ifinfomsg() {
    let kind = LinkKind::Veth {
        peer_name: "eth0".into(),
        peer_mtu: Some(1400),
        peer_mac: Some([2, 0, 0, 0, 0, 1]),
        peer_ns_fd: Some(5),
    };
    let mut expected = kind_attr("veth");
    expected.extend([
        64, 0, 2, 0, // IFLA_INFO_DATA, len 4 + 60
        60, 0, 1, 0, // VETH_INFO_PEER, len 4 + 16 + 40
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg: all zero
        9, 0, 3, 0, b'e', b't', b'h', b'0', 0, 0, 0, 0, // IFLA_IFNAME "eth0\0"
        8, 0, 4, 0, 0x78, 0x05, 0, 0, // IFLA_MTU 1400
        10, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 0, // IFLA_ADDRESS 02:00:00:00:00:01 + 2 pad
        8, 0, 28, 0, 5, 0, 0, 0, // IFLA_NET_NS_FD 5
    ]);
    assert_eq!(kind.linkinfo_bytes().unwrap(), expected);
    let bad = LinkKind::Veth {
        peer_name: "a/b".into(),
        peer_mtu: None,
        peer_mac: None,
        peer_ns_fd: None,
    };
    assert!(bad.linkinfo_bytes().is_err());
}

#[test]
fn newlink_framing_for_dummy() {
    let msg = newlink_message(&LinkSpec::new("dummy0", LinkKind::Dummy), 7).unwrap();
    let expected = [
        60, 0, 0, 0, // nlmsg_len 16 + 16 + 12 + 16
        16, 0, // nlmsg_type RTM_NEWLINK
        0x05, 0x06, // REQUEST 0x1 | ACK 0x4 | EXCL 0x200 | CREATE 0x400
        7, 0, 0, 0, // nlmsg_seq
        0, 0, 0, 0, // nlmsg_pid: the kernel
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, // ifinfomsg: family 0, index 0, flags 0
        11, 0, 3, 0, b'd', b'u', b'm', b'm', b'y', b'0', 0, 0, // IFLA_IFNAME "dummy0\0"
        16, 0, 18, 0, // IFLA_LINKINFO, len 4 + 12
        10, 0, 1, 0, b'd', b'u', b'm', b'm', b'y', 0, 0, 0, // IFLA_INFO_KIND "dummy\0"
    ];
    assert_eq!(msg, expected);
}

#[test]
fn newlink_framing_for_vlan_with_parent_mtu_and_up() {
    let spec = LinkSpec {
        mtu: Some(1400),
        parent: Some(2),
        up: true,
        ..LinkSpec::new("v100", LinkKind::Vlan { id: 100 })
    };
    let msg = newlink_message(&spec, 1).unwrap();
    let mut expected = vec![
        88, 0, 0, 0, 16, 0, 0x05, 0x06, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr, len 88
        0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg: family, pad, type, index 0
        1, 0, 0, 0, 1, 0, 0, 0, // ifi_flags IFF_UP, ifi_change IFF_UP
        9, 0, 3, 0, b'v', b'1', b'0', b'0', 0, 0, 0, 0, // IFLA_IFNAME "v100\0"
        8, 0, 4, 0, 0x78, 0x05, 0, 0, // IFLA_MTU 1400
        8, 0, 5, 0, 2, 0, 0, 0, // IFLA_LINK 2
        28, 0, 18, 0, // IFLA_LINKINFO, len 4 + 24
    ];
    expected.extend(LinkKind::Vlan { id: 100 }.linkinfo_bytes().unwrap());
    assert_eq!(msg, expected);
}

#[test]
fn newlink_into_netns_with_master_mac_txqlen() {
    let spec = LinkSpec {
        mac: Some([2, 0xaa, 0, 0, 0, 9]),
        master: Some(4),
        netns: Some(9),
        txqlen: Some(0),
        ..LinkSpec::new(
            "mv0",
            LinkKind::Macvlan {
                mode: MacvlanMode::Private,
                bc_queue_len: None,
            },
        )
    };
    let msg = newlink_message(&spec, 3).unwrap();
    let tail = [
        8, 0, 3, 0, b'm', b'v', b'0', 0, // IFLA_IFNAME "mv0\0"
        10, 0, 1, 0, 2, 0xaa, 0, 0, 0, 9, 0, 0, // IFLA_ADDRESS
        8, 0, 13, 0, 0, 0, 0, 0, // IFLA_TXQLEN 0
        8, 0, 10, 0, 4, 0, 0, 0, // IFLA_MASTER 4
        8, 0, 28, 0, 9, 0, 0, 0, // IFLA_NET_NS_FD 9
        28, 0, 18, 0, // IFLA_LINKINFO
    ];
    assert_eq!(&msg[32..32 + tail.len()], tail);
    assert_eq!(msg[32 + tail.len() + 20], 1); // IFLA_MACVLAN_MODE = private (1)
    assert_eq!(msg.len(), 32 + tail.len() + 24);
    assert_eq!(
        u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize,
        msg.len()
    );
}

#[test]
fn every_kind_frames_its_linkinfo_last() {
    let kinds = [
        LinkKind::Dummy,
        LinkKind::Ifb,
        LinkKind::Vlan { id: 7 },
        LinkKind::Vrf { table: 10 },
        LinkKind::Bond {
            mode: BondMode::BalanceRr,
        },
        LinkKind::Ipvlan {
            mode: IpvlanMode::L2,
            flags: IpvlanFlag::Vepa,
        },
        LinkKind::Macvlan {
            mode: MacvlanMode::Vepa,
            bc_queue_len: None,
        },
        LinkKind::Bridge {
            vlan_filtering: None,
            vlan_default_pvid: None,
            mcast_snooping: Some(true),
        },
        LinkKind::Veth {
            peer_name: "p".into(),
            peer_mtu: None,
            peer_mac: None,
            peer_ns_fd: None,
        },
        LinkKind::Vxlan {
            vni: 9,
            local: None,
            remote: None,
            port: None,
            dev: None,
            learning: None,
        },
    ];
    for kind in kinds {
        let info = kind.linkinfo_bytes().unwrap();
        let msg = newlink_message(&LinkSpec::new("x", kind.clone()), 1).unwrap();
        assert_eq!(
            u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize,
            msg.len(),
            "{kind:?}"
        );
        let at = msg.len() - info.len();
        assert_eq!(&msg[at..], info, "{kind:?}");
        assert_eq!(
            &msg[at - 4..at],
            [(info.len() + 4) as u8, 0, 18, 0],
            "{kind:?}"
        );
        assert_eq!(&info[4..4 + kind.name().len()], kind.name().as_bytes());
    }
}

#[test]
fn bad_names_are_refused_before_the_kernel() {
    for name in ["", "a/b", "a:b", "a b", ".", "..", "sixteen-chars-xx"] {
        assert!(
            newlink_message(&LinkSpec::new(name, LinkKind::Dummy), 1).is_err(),
            "{name:?}"
        );
    }
    assert!(newlink_message(&LinkSpec::new("fifteen-chars-x", LinkKind::Dummy), 1).is_ok());
}
