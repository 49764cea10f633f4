//! Route messages byte for byte, and routes against the live kernel in a fresh netns with
//! `ip -j route show table all` as the oracle.

use super::*;
use crate::netlink::attr::to_bytes;
use crate::netlink::oracle::ip;
use crate::netlink::{is_exists, is_not_found};
use crate::testutil::fresh_netns;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn message_for_table_above_255_with_metrics() {
    let r = RouteSpec {
        gw: Some(addr("10.1.0.1")),
        table: Some(1000),
        metric: Some(50),
        mtu: Some(1300),
        advmss: Some(1260),
        ..RouteSpec::new(net("10.2.0.0/16"))
    };
    let expected = [
        2, 16, 0, 0, // rtmsg: AF_INET, dst_len 16, src_len 0, tos 0
        0, 3, 0,
        1, // table unspec (1000 does not fit), proto boot, scope universe, type unicast
        0, 0, 0, 0, // rtm_flags
        8, 0, 15, 0, 0xe8, 0x03, 0, 0, // RTA_TABLE 1000
        8, 0, 1, 0, 10, 2, 0, 0, // RTA_DST 10.2.0.0
        8, 0, 5, 0, 10, 1, 0, 1, // RTA_GATEWAY 10.1.0.1
        8, 0, 6, 0, 50, 0, 0, 0, // RTA_PRIORITY 50
        20, 0, 8, 0, // RTA_METRICS, len 4 + 16
        8, 0, 2, 0, 0x14, 0x05, 0, 0, // RTAX_MTU 1300
        8, 0, 8, 0, 0xec, 0x04, 0, 0, // RTAX_ADVMSS 1260
    ];
    assert_eq!(
        to_bytes(&route_msg(&r, Purpose::Add).unwrap()).unwrap(),
        expected
    );
}

#[test]
fn defaults_for_add_and_delete() {
    let link = RouteSpec {
        oif: Some(3),
        onlink: true,
        ..RouteSpec::new(net("0.0.0.0/0"))
    };
    let b = to_bytes(&route_msg(&link, Purpose::Add).unwrap()).unwrap();
    // main table in the header, boot, link scope (no gateway), unicast, RTNH_F_ONLINK; no RTA_DST.
    assert_eq!(b[..12], [2, 0, 0, 0, 254, 3, 253, 1, 4, 0, 0, 0]);
    assert_eq!(b.len(), 12 + 8 + 8); // RTA_TABLE + RTA_OIF
    let del =
        to_bytes(&route_msg(&RouteSpec::new(net("fd00::/64")), Purpose::Delete).unwrap()).unwrap();
    assert_eq!(del[..8], [10, 64, 0, 0, 254, 0, 255, 1]); // AF_INET6, proto any, scope nowhere
    let mixed = RouteSpec {
        gw: Some(addr("10.0.0.1")),
        ..RouteSpec::new(net("fd00::/64"))
    };
    assert!(route_msg(&mixed, Purpose::Add).is_err());
    assert_eq!(mixed.describe(), "fd00::/64 via 10.0.0.1");
}

/// A veth with both ends up and an address on each family, so gateways resolve.
fn setup(h: &Handle) -> u32 {
    h.create_veth("rt0", "rt1", 0, None, None, None).unwrap();
    let i = h.link_by_name("rt0").unwrap().unwrap().index;
    h.set_up(i).unwrap();
    h.set_up(h.link_by_name("rt1").unwrap().unwrap().index)
        .unwrap();
    h.add_address(i, net("10.1.0.2/24"), false).unwrap();
    h.add_address(i, net("fd00:1::2/64"), true).unwrap();
    i
}

#[test]
fn routes_read_back_with_table_scope_metric_gateway_mtu_advmss() {
    let Some(_ns) = fresh_netns("routes_read_back_with_table_scope_metric_gateway_mtu_advmss")
    else {
        return;
    };
    let h = Handle::new().unwrap();
    let i = setup(&h);
    let r = table_1000_route();
    h.add_route(&r).unwrap();
    let scoped = RouteSpec {
        oif: Some(i),
        table: Some(1000),
        ..RouteSpec::new(net("10.3.0.0/24"))
    };
    h.add_route(&scoped).unwrap();
    let v6 = RouteSpec {
        gw: Some(addr("fd00:1::1")),
        table: Some(1000),
        ..RouteSpec::new(net("fd00:2::/64"))
    };
    h.add_route(&v6).unwrap();

    let got = h.routes(Family::V4, Some(1000)).unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    let want = RouteSpec {
        oif: Some(i),
        scope: Some(0),
        protocol: Some(libc::RTPROT_BOOT),
        ..r.clone()
    };
    assert!(got.contains(&want), "{got:?}");
    let want = RouteSpec {
        scope: Some(libc::RT_SCOPE_LINK),
        protocol: Some(libc::RTPROT_BOOT),
        ..scoped.clone()
    };
    assert!(got.contains(&want), "{got:?}");
    let got6 = h.routes(Family::V6, Some(1000)).unwrap();
    assert!(
        got6.iter()
            .any(|g| g.dst == v6.dst && g.gw == v6.gw && g.oif == Some(i)),
        "{got6:?}"
    );
    let all = h.routes(Family::V4, None).unwrap();
    assert!(all.iter().any(|g| g.table == Some(255)) && all.iter().any(|g| g.table == Some(1000)));

    let j = ip(&["route", "show", "table", "all"]);
    let j = j
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["dst"] == "10.2.0.0/16")
        .expect("ip sees the route");
    assert_eq!(
        (&j["gateway"], &j["table"], &j["metric"]),
        (&"10.1.0.1".into(), &"1000".into(), &50.into())
    );
    assert_eq!(
        (&j["metrics"][0]["mtu"], &j["metrics"][0]["advmss"]),
        (&1300.into(), &1260.into())
    );
}

/// 10.2.0.0/16 via 10.1.0.1 in table 1000, metric 50, mtu 1300, advmss 1260.
fn table_1000_route() -> RouteSpec {
    RouteSpec {
        gw: Some(addr("10.1.0.1")),
        table: Some(1000),
        metric: Some(50),
        mtu: Some(1300),
        advmss: Some(1260),
        ..RouteSpec::new(net("10.2.0.0/16"))
    }
}

#[test]
fn route_exists_replace_and_delete() {
    let Some(_ns) = fresh_netns("route_exists_replace_and_delete") else {
        return;
    };
    let h = Handle::new().unwrap();
    setup(&h);
    let r = table_1000_route();
    h.add_route(&r).unwrap();
    assert!(is_exists(&h.add_route(&r).unwrap_err()));
    h.replace_route(&RouteSpec {
        gw: Some(addr("10.1.0.3")),
        ..r.clone()
    })
    .unwrap();
    let now: Vec<_> = h
        .routes(Family::V4, Some(1000))
        .unwrap()
        .into_iter()
        .filter(|g| g.dst == r.dst)
        .collect();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].gw, Some(addr("10.1.0.3")));

    h.del_route(&RouteSpec {
        table: Some(1000),
        ..RouteSpec::new(r.dst)
    })
    .unwrap();
    assert!(
        h.routes(Family::V4, Some(1000))
            .unwrap()
            .iter()
            .all(|g| g.dst != r.dst)
    );
    let e = h
        .del_route(&RouteSpec {
            table: Some(1000),
            ..RouteSpec::new(r.dst)
        })
        .unwrap_err();
    assert!(is_not_found(&e), "{e:#}");
}

#[test]
fn default_and_onlink_routes_in_main() {
    let Some(_ns) = fresh_netns("default_and_onlink_routes_in_main") else {
        return;
    };
    let h = Handle::new().unwrap();
    let i = setup(&h);
    let default = RouteSpec {
        gw: Some(addr("10.1.0.1")),
        ..RouteSpec::new(net("0.0.0.0/0"))
    };
    h.add_route(&default).unwrap();
    let onlink = RouteSpec {
        gw: Some(addr("192.168.99.1")),
        oif: Some(i),
        onlink: true,
        ..RouteSpec::new(net("10.4.0.0/16"))
    };
    let e = h
        .add_route(&RouteSpec {
            onlink: false,
            ..onlink.clone()
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("(Nexthop has invalid gateway)"),
        "{e:#}"
    );
    h.add_route(&onlink).unwrap();
    let main = h.routes(Family::V4, Some(254)).unwrap();
    assert!(
        main.iter()
            .any(|g| g.dst == default.dst && g.gw == default.gw),
        "{main:?}"
    );
    assert!(
        main.iter().any(|g| g.dst == onlink.dst && g.onlink),
        "{main:?}"
    );
    assert!(main.iter().all(|g| g.table == Some(254)));
    let j = ip(&["route", "show"]);
    let j = j
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["dst"] == "10.4.0.0/16")
        .expect("ip sees onlink route");
    assert_eq!(j["flags"][0], "onlink");
    h.del_route(&default).unwrap();
    h.del_route(&onlink).unwrap();
    assert!(
        h.routes(Family::V4, Some(254))
            .unwrap()
            .iter()
            .all(|g| g.gw.is_none())
    );
}
