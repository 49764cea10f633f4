//! Link operations against the live kernel, each test in its own fresh netns (root only;
//! skipped loudly otherwise), checked through our own dump and through `ip -j` as an oracle.

use super::*;
use crate::netlink::kinds::{BondMode, IpvlanFlag, IpvlanMode, MacvlanMode};
use crate::netlink::oracle::{flags, ip, ip_in};
use crate::netlink::{is_exists, is_not_found, is_unsupported};
use crate::testutil::{another_netns, fresh_netns};

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0x42, 0xac, 0x11, 0x00, last]
}

fn get(h: &Handle, name: &str) -> Link {
    h.link_by_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("link {name} missing"))
}

#[test]
fn parse_link_reads_the_attributes_we_expose() {
    // An RTM_NEWLINK body as the kernel would send it for a veth.
    let info = nest(Ifla::Linkinfo, vec![attr(IflaInfo::Kind, "veth").unwrap()]).unwrap();
    let m = IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::Unspecified)
        .ifi_index(7)
        .ifi_flags(Iff::UP | Iff::PROMISC)
        .rtattrs(
            [
                attr(Ifla::Ifname, "vh0").unwrap(),
                attr(Ifla::Mtu, 1400u32).unwrap(),
                attr(Ifla::Address, mac(9)).unwrap(),
                attr(Ifla::Master, 3u32).unwrap(),
                attr(Ifla::Link, 2u32).unwrap(),
                attr(Ifla::LinkNetnsid, 0i32).unwrap(),
                attr(Ifla::Txqlen, 1000u32).unwrap(),
                attr(Ifla::Ifalias, "hello").unwrap(),
                attr(Ifla::Operstate, 6u8).unwrap(),
                info,
            ]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let l = parse_link(&super::super::attr::to_bytes(&m).unwrap()).unwrap();
    let want = Link {
        index: 7,
        name: "vh0".into(),
        kind: "veth".into(),
        mtu: 1400,
        mac: Some(mac(9)),
        flags: (libc::IFF_UP | libc::IFF_PROMISC) as u32,
        master: Some(3),
        link: Some(2),
        link_netnsid: Some(0),
        txqlen: 1000,
        alias: Some("hello".into()),
        operstate: 6,
    };
    assert_eq!(l, want);
    assert!(l.is_up() && l.is_promisc());
    assert_eq!(l.mac_string(), "02:42:ac:11:00:09");
}

#[test]
fn lo_up_and_down() {
    let Some(_ns) = fresh_netns("lo_up_and_down") else {
        return;
    };
    let h = Handle::new().unwrap();
    let lo = get(&h, "lo");
    assert_eq!((lo.index, lo.kind.as_str(), lo.is_up()), (1, "", false));
    h.set_up(lo.index).unwrap();
    assert!(h.link_by_index(1).unwrap().unwrap().is_up());
    assert!(flags(&ip(&["link", "show", "lo"])[0]).contains(&"UP".to_string()));
    h.set_down(1).unwrap();
    assert!(!get(&h, "lo").is_up());
    assert!(!flags(&ip(&["link", "show", "lo"])[0]).contains(&"UP".to_string()));
}

#[test]
fn veth_with_peer_born_in_another_netns() {
    let Some(_ns) = fresh_netns("veth_with_peer_born_in_another_netns") else {
        return;
    };
    let ctr = another_netns();
    let h = Handle::new().unwrap();
    h.create_veth("vh0", "eth0", 1400, Some(mac(1)), Some(mac(2)), Some(&ctr))
        .unwrap();
    let host = get(&h, "vh0");
    assert_eq!(
        (host.kind.as_str(), host.mtu, host.mac),
        ("veth", 1400, Some(mac(1)))
    );
    assert!(
        h.link_by_name("eth0").unwrap().is_none(),
        "peer must not be in the host netns"
    );

    let hc = Handle::in_netns(&ctr).unwrap();
    let peer = get(&hc, "eth0");
    assert_eq!(
        (peer.kind.as_str(), peer.mtu, peer.mac),
        ("veth", 1400, Some(mac(2)))
    );
    assert_eq!(peer.link, Some(host.index));
    assert_eq!(host.link, Some(peer.index));
    assert!(host.link_netnsid.is_some() && peer.link_netnsid.is_some());
    let names: Vec<String> = hc.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lo", "eth0"]);

    let a = &ip(&["link", "show", "vh0"])[0];
    assert_eq!(a["address"], "02:42:ac:11:00:01");
    assert_eq!(a["mtu"], 1400);
    assert_eq!(a["link_index"], peer.index);
    let b = &ip_in(&ctr, &["link", "show", "eth0"])[0];
    assert_eq!(b["ifindex"], peer.index);
    assert_eq!(b["address"], "02:42:ac:11:00:02");
    assert_eq!(b["link_index"], host.index);
}

#[test]
fn bridge_master_port_options_and_link_attributes() {
    let Some(_ns) = fresh_netns("bridge_master_port_options_and_link_attributes") else {
        return;
    };
    let h = Handle::new().unwrap();
    let none = LinkKind::Bridge {
        vlan_filtering: None,
        vlan_default_pvid: None,
        mcast_snooping: None,
    };
    h.create_link(&LinkSpec {
        up: true,
        ..LinkSpec::new("br0", none)
    })
    .unwrap();
    let br = get(&h, "br0");
    assert_eq!(br.kind, "bridge");
    assert!(br.is_up());
    h.create_veth("vp0", "vp1", 0, None, None, None).unwrap();
    let vp = get(&h, "vp0");

    h.set_master(vp.index, br.index).unwrap();
    assert_eq!(get(&h, "vp0").master, Some(br.index));
    assert_eq!(ip(&["link", "show", "vp0"])[0]["master"], "br0");
    assert_eq!(
        h.bridge_port(vp.index).unwrap(),
        Some(BridgePortOpts {
            hairpin: Some(false),
            isolated: Some(false)
        })
    );
    h.set_bridge_port(
        vp.index,
        &BridgePortOpts {
            hairpin: Some(true),
            isolated: Some(true),
        },
    )
    .unwrap();
    assert_eq!(
        h.bridge_port(vp.index).unwrap(),
        Some(BridgePortOpts {
            hairpin: Some(true),
            isolated: Some(true)
        })
    );
    h.set_bridge_port(
        vp.index,
        &BridgePortOpts {
            hairpin: Some(false),
            isolated: None,
        },
    )
    .unwrap();
    let slave = &ip(&["-d", "link", "show", "vp0"])[0]["linkinfo"]["info_slave_data"];
    assert_eq!(
        (&slave["hairpin"], &slave["isolated"]),
        (&false.into(), &true.into())
    );

    h.set_nomaster(vp.index).unwrap();
    assert_eq!(get(&h, "vp0").master, None);
    assert_eq!(h.bridge_port(vp.index).unwrap(), None);
    let hairpin = BridgePortOpts {
        hairpin: Some(true),
        isolated: None,
    };
    let e = h.set_bridge_port(vp.index, &hairpin).unwrap_err();
    let want = format!("set bridge port hairpin on for ifindex {}: ", vp.index);
    assert!(e.to_string().starts_with(&want), "{e:#}");
    assert!(ip(&["link", "show", "vp0"])[0].get("master").is_none());
}

#[test]
fn one_attribute_at_a_time() {
    let Some(_ns) = fresh_netns("one_attribute_at_a_time") else {
        return;
    };
    let h = Handle::new().unwrap();
    h.create_veth("at0", "at1", 0, None, None, None).unwrap();
    let i = get(&h, "at0").index;
    h.set_mtu(i, 1300).unwrap();
    h.set_mac(i, mac(7)).unwrap();
    h.set_promisc(i, true).unwrap();
    h.set_allmulti(i, true).unwrap();
    h.set_txqlen(i, 77).unwrap();
    h.set_alias(i, "cni test").unwrap();
    h.set_name(i, "at9").unwrap();
    let l = h.link_by_index(i).unwrap().unwrap();
    assert_eq!(
        (l.name.as_str(), l.mtu, l.mac, l.txqlen),
        ("at9", 1300, Some(mac(7)), 77)
    );
    assert!(l.is_promisc() && l.flags & libc::IFF_ALLMULTI as u32 != 0);
    assert_eq!(l.alias.as_deref(), Some("cni test"));
    let j = &ip(&["link", "show", "at9"])[0];
    assert_eq!(
        (&j["mtu"], &j["address"], &j["txqlen"], &j["ifalias"]),
        (
            &1300.into(),
            &"02:42:ac:11:00:07".into(),
            &77.into(),
            &"cni test".into()
        )
    );
    assert!(flags(j).contains(&"PROMISC".into()) && flags(j).contains(&"ALLMULTI".into()));

    h.set_promisc(i, false).unwrap();
    h.set_allmulti(i, false).unwrap();
    h.set_alias(i, "").unwrap();
    let l = get(&h, "at9");
    assert!(!l.is_promisc() && l.flags & libc::IFF_ALLMULTI as u32 == 0);
    assert_eq!(l.alias, None);
    assert!(h.link_by_name("at0").unwrap().is_none());
}

#[test]
fn move_to_netns_then_delete() {
    let Some(_ns) = fresh_netns("move_to_netns_then_delete") else {
        return;
    };
    let other = another_netns();
    let h = Handle::new().unwrap();
    h.create_veth("mv0", "mv1", 0, None, None, None).unwrap();
    let mv1 = get(&h, "mv1");
    h.move_to_netns(mv1.index, &other).unwrap();
    assert!(h.link_by_name("mv1").unwrap().is_none());
    let ho = Handle::in_netns(&other).unwrap();
    let moved = get(&ho, "mv1");
    assert_eq!(
        ip_in(&other, &["link", "show", "mv1"])[0]["ifindex"],
        moved.index
    );
    ho.delete_link(moved.index).unwrap();
    assert!(ho.link_by_name("mv1").unwrap().is_none());
    assert!(
        h.link_by_name("mv0").unwrap().is_none(),
        "deleting one end of a veth removes both"
    );
    assert!(is_not_found(&ho.delete_link(moved.index).unwrap_err()));
}

#[test]
fn kernel_errors_are_typed_and_explained() {
    let Some(_ns) = fresh_netns("kernel_errors_are_typed_and_explained") else {
        return;
    };
    let h = Handle::new().unwrap();
    h.create_veth("er0", "er1", 0, None, None, None).unwrap();
    let i = get(&h, "er0").index;

    let e = h.set_mtu(i, 70000).unwrap_err();
    let nl = e.downcast_ref::<NlError>().expect("typed NlError");
    assert_eq!(nl.errno, libc::EINVAL);
    assert_eq!(
        nl.ext_ack.as_deref(),
        Some("mtu greater than device maximum")
    );
    assert_eq!(
        e.to_string(),
        format!(
            "set mtu 70000 on ifindex {i}: Invalid argument (os error 22) (mtu greater than device maximum)"
        )
    );

    let e = h
        .create_veth("er0", "er2", 0, None, None, None)
        .unwrap_err();
    assert!(is_exists(&e), "{e:#}");
    assert!(
        e.to_string()
            .starts_with("create veth er0 <-> er2: File exists"),
        "{e:#}"
    );

    let e = h.set_up(99999).unwrap_err();
    assert!(is_not_found(&e), "{e:#}");
    assert_eq!(e.downcast_ref::<NlError>().unwrap().errno, libc::ENODEV);
    assert!(h.link_by_index(99999).unwrap().is_none());
    assert!(h.link_by_name("nosuch0").unwrap().is_none());
    assert!(h.set_name(i, "bad/name").is_err());
    // The socket stays usable after errors.
    assert_eq!(get(&h, "er0").index, i);
}

#[test]
fn kinds_this_kernel_may_lack_create_or_skip_loudly() {
    let Some(_ns) = fresh_netns("kinds_this_kernel_may_lack_create_or_skip_loudly") else {
        return;
    };
    let h = Handle::new().unwrap();
    h.create_veth("kp0", "kp1", 0, None, None, None).unwrap();
    let parent = get(&h, "kp0").index;
    let cases = [
        ("dm0", LinkKind::Dummy, None),
        ("vl0", LinkKind::Vlan { id: 10 }, Some(parent)),
        (
            "iv0",
            LinkKind::Ipvlan {
                mode: IpvlanMode::L2,
                flags: IpvlanFlag::Bridge,
            },
            Some(parent),
        ),
        ("vrf0", LinkKind::Vrf { table: 10 }, None),
        (
            "bd0",
            LinkKind::Bond {
                mode: BondMode::ActiveBackup,
            },
            None,
        ),
    ];
    for (name, kind, parent) in cases {
        let kind_name = kind.name();
        match h.create_link(&LinkSpec {
            parent,
            ..LinkSpec::new(name, kind)
        }) {
            Ok(()) => {
                let l = get(&h, name);
                assert_eq!(l.kind, kind_name);
                assert_eq!(l.link.filter(|_| parent.is_some()), parent);
            }
            Err(e) => {
                assert!(is_unsupported(&e), "{kind_name}: {e:#}");
                assert!(
                    e.to_string().contains("(Unknown device type)"),
                    "{kind_name}: {e:#}"
                );
                println!("skipped: kernel lacks {kind_name} ({e:#})");
            }
        }
    }
}

#[test]
fn macvlan_straight_into_another_netns() {
    let Some(_ns) = fresh_netns("macvlan_straight_into_another_netns") else {
        return;
    };
    let ctr = another_netns();
    let h = Handle::new().unwrap();
    h.create_veth("mp0", "mp1", 0, None, None, None).unwrap();
    let parent = get(&h, "mp0").index;
    let spec = LinkSpec {
        parent: Some(parent),
        netns: Some(ctr.raw_fd()),
        mtu: Some(1400),
        ..LinkSpec::new(
            "net1",
            LinkKind::Macvlan {
                mode: MacvlanMode::Bridge,
                bc_queue_len: None,
            },
        )
    };
    h.create_link(&spec).unwrap();
    let mv = get(&Handle::in_netns(&ctr).unwrap(), "net1");
    assert_eq!((mv.kind.as_str(), mv.mtu), ("macvlan", 1400));
    let j = &ip_in(&ctr, &["-d", "link", "show", "net1"])[0]["linkinfo"];
    assert_eq!(j["info_data"]["mode"], "bridge");
}

#[test]
fn ifb_vxlan_and_bridge_options() {
    let Some(_ns) = fresh_netns("ifb_vxlan_and_bridge_options") else {
        return;
    };
    let h = Handle::new().unwrap();
    h.create_veth("xp0", "xp1", 0, None, None, None).unwrap();
    let parent = get(&h, "xp0").index;
    h.create_link(&LinkSpec::new("ifb0", LinkKind::Ifb))
        .unwrap();
    assert_eq!(get(&h, "ifb0").kind, "ifb");

    let vx = LinkKind::Vxlan {
        vni: 42,
        local: None,
        remote: None,
        port: Some(4789),
        dev: Some(parent),
        learning: Some(false),
    };
    h.create_link(&LinkSpec::new("vx0", vx)).unwrap();
    let j = &ip(&["-d", "link", "show", "vx0"])[0]["linkinfo"]["info_data"];
    assert_eq!(
        (&j["id"], &j["port"], &j["learning"]),
        (&42.into(), &4789.into(), &false.into())
    );

    let snoop = LinkKind::Bridge {
        vlan_filtering: None,
        vlan_default_pvid: None,
        mcast_snooping: Some(false),
    };
    h.create_link(&LinkSpec::new("br1", snoop)).unwrap();
    assert_eq!(
        ip(&["-d", "link", "show", "br1"])[0]["linkinfo"]["info_data"]["mcast_snooping"],
        0
    );
    let vf = LinkKind::Bridge {
        vlan_filtering: Some(true),
        vlan_default_pvid: None,
        mcast_snooping: None,
    };
    match h.create_link(&LinkSpec::new("br2", vf)) {
        Ok(()) => assert_eq!(
            ip(&["-d", "link", "show", "br2"])[0]["linkinfo"]["info_data"]["vlan_filtering"],
            1
        ),
        Err(e) => {
            assert!(is_unsupported(&e), "{e:#}");
            println!("skipped: kernel lacks bridge vlan filtering ({e:#})");
        }
    }
}
