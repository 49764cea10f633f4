//! The kind-data parser against the encoder's own bytes (so vlan and ipvlan, which this
//! kernel may lack, are covered), and both lookups against a real kernel in a fresh netns.

use super::*;
use crate::netlink::{LinkKind, LinkSpec, RouteSpec};
use crate::testutil::fresh_netns;

#[test]
fn kind_data_round_trips_through_the_encoder() {
    let cases = [
        (
            LinkKind::Macvlan {
                mode: MacvlanMode::Vepa,
                bc_queue_len: Some(2000),
            },
            KindData::Macvlan {
                mode: 2,
                bc_queue_len: Some(2000),
            },
        ),
        (
            LinkKind::Ipvlan {
                mode: IpvlanMode::L3s,
                flags: IpvlanFlag::Private,
            },
            KindData::Ipvlan { mode: 2, flags: 1 },
        ),
        (LinkKind::Vlan { id: 4094 }, KindData::Vlan { id: 4094 }),
        (LinkKind::Dummy, KindData::Other),
    ];
    for (kind, want) in cases {
        let bytes = kind.linkinfo_bytes().unwrap();
        assert_eq!(parse_kind_data(&bytes).unwrap(), want, "{kind:?}");
    }
}

#[test]
fn raw_values_and_names() {
    for m in ["private", "vepa", "bridge", "passthru", "source"] {
        let mode = MacvlanMode::from_name(m).unwrap();
        assert_eq!(MacvlanMode::from_raw(mode as u32).unwrap().name(), m);
    }
    assert_eq!(MacvlanMode::from_raw(3), None);
    for m in ["l2", "l3", "l3s"] {
        let mode = IpvlanMode::from_name(m).unwrap();
        assert_eq!(IpvlanMode::from_raw(mode as u16).unwrap().name(), m);
    }
    for f in ["bridge", "private", "vepa"] {
        let flag = IpvlanFlag::from_name(f).unwrap();
        assert_eq!(IpvlanFlag::from_raw(flag as u16).unwrap().name(), f);
    }
    assert_eq!(IpvlanFlag::from_raw(3), None);
}

#[test]
fn macvlan_details_read_back() {
    let Some(_ns) = fresh_netns("macvlan_details_read_back") else {
        return;
    };
    let h = Handle::new().unwrap();
    h.create_veth("sk0", "sk1", 0, None, None, None).unwrap();
    let parent = h.link_by_name("sk0").unwrap().unwrap().index;
    let kind = LinkKind::Macvlan {
        mode: MacvlanMode::Private,
        bc_queue_len: Some(1234),
    };
    h.create_link(&LinkSpec {
        parent: Some(parent),
        ..LinkSpec::new("mv0", kind)
    })
    .unwrap();
    let d = h.link_details("mv0").unwrap().unwrap();
    assert_eq!(d.link.kind, "macvlan");
    assert_eq!(d.link.link, Some(parent));
    assert_eq!(
        d.data,
        KindData::Macvlan {
            mode: MacvlanMode::Private as u32,
            bc_queue_len: Some(1234),
        }
    );
    assert_eq!(
        h.link_details("sk0").unwrap().unwrap().data,
        KindData::Other
    );
    assert!(h.link_details("nosuch0").unwrap().is_none());
}

#[test]
fn default_route_link_ipv4_then_ipv6() {
    let Some(_ns) = fresh_netns("default_route_link_ipv4_then_ipv6") else {
        return;
    };
    let h = Handle::new().unwrap();
    assert_eq!(h.default_route_link().unwrap(), None);
    h.create_veth("dr0", "dr1", 0, None, None, None).unwrap();
    h.create_veth("dr2", "dr3", 0, None, None, None).unwrap();
    let index = |n: &str| h.link_by_name(n).unwrap().unwrap().index;
    let (a, b) = (index("dr0"), index("dr2"));
    for i in [a, b, index("dr1"), index("dr3")] {
        h.set_up(i).unwrap();
    }
    h.add_address(a, "10.77.0.2/24".parse().unwrap(), true)
        .unwrap();
    h.add_address(b, "fd77::2/64".parse().unwrap(), true)
        .unwrap();
    let v6 = RouteSpec {
        gw: Some("fd77::1".parse().unwrap()),
        oif: Some(b),
        ..RouteSpec::new("::/0".parse().unwrap())
    };
    h.add_route(&v6).unwrap();
    assert_eq!(h.default_route_link().unwrap(), Some(b));
    // A default route in another table does not count; one in main over IPv4 wins.
    let other_table = RouteSpec {
        gw: Some("10.77.0.1".parse().unwrap()),
        oif: Some(a),
        table: Some(100),
        ..RouteSpec::new("0.0.0.0/0".parse().unwrap())
    };
    h.add_route(&other_table).unwrap();
    assert_eq!(h.default_route_link().unwrap(), Some(b));
    let v4 = RouteSpec {
        table: None,
        ..other_table
    };
    h.add_route(&v4).unwrap();
    assert_eq!(h.default_route_link().unwrap(), Some(a));
}
