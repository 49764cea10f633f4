//! Allocator tests over `MemStore`, including the reference's own round-robin table.

use super::*;
use crate::ipam::store::MemStore;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(subnets: &[&str]) -> RangeSet {
    RangeSet::new(
        subnets
            .iter()
            .map(|s| Range::new(s.parse().unwrap(), None, None, None).unwrap())
            .collect(),
    )
    .unwrap()
}

fn custom(subnet: &str, start: &str, end: &str, gw: Option<&str>) -> RangeSet {
    let r = Range::new(
        subnet.parse().unwrap(),
        Some(ip(start)),
        Some(ip(end)),
        gw.map(ip),
    )
    .unwrap();
    RangeSet::new(vec![r]).unwrap()
}

fn one(store: &mut MemStore, s: &RangeSet, id: &str) -> anyhow::Result<IpConfig> {
    allocate(store, std::slice::from_ref(s), id, "eth0", &[]).map(|mut v| v.remove(0))
}

fn addr(c: &IpConfig) -> String {
    c.address.to_string()
}

fn walk(s: &RangeSet, last: Option<&str>) -> Vec<String> {
    candidates(s, last.map(ip))
        .map(|(_, a)| a.to_string())
        .collect()
}

#[test]
fn iterator_loops_like_the_reference() {
    let s = set(&["192.168.1.0/29"]);
    let all = [
        "192.168.1.2",
        "192.168.1.3",
        "192.168.1.4",
        "192.168.1.5",
        "192.168.1.6",
    ];
    assert_eq!(walk(&s, None), all);
    assert_eq!(walk(&s, Some("192.168.1.6")), all, "from the end");
    assert_eq!(
        walk(&s, Some("192.168.1.3")),
        [
            "192.168.1.4",
            "192.168.1.5",
            "192.168.1.6",
            "192.168.1.2",
            "192.168.1.3"
        ],
        "from the middle"
    );
    assert_eq!(walk(&s, Some("10.0.0.1")), all, "last outside the set");
}

/// The reference's "should allocate ips in round robin" table: subnets, taken, last, expected.
#[test]
fn reference_round_robin_table() {
    let cases: &[(&[&str], &[&str], &str, &str)] = &[
        (&["10.0.0.0/29"], &[], "", "10.0.0.2"),
        (&["2001:db8:1::0/64"], &[], "", "2001:db8:1::2"),
        (&["10.0.0.0/30"], &[], "", "10.0.0.2"),
        (&["10.0.0.0/29"], &["10.0.0.2"], "", "10.0.0.3"),
        (&["10.0.0.0/29"], &[], "10.0.0.5", "10.0.0.6"),
        (
            &["10.0.0.0/29"],
            &["10.0.0.4", "10.0.0.5"],
            "10.0.0.3",
            "10.0.0.6",
        ),
        (&["10.0.0.0/29"], &["10.0.0.6"], "10.0.0.5", "10.0.0.2"),
        (&["10.0.0.0/29"], &["10.0.0.2"], "10.0.0.128", "10.0.0.3"),
        (
            &["10.0.0.0/29"],
            &["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
            "10.0.0.3",
            "10.0.0.3",
        ),
        (&["10.0.0.0/30", "10.0.1.0/30"], &[], "", "10.0.0.2"),
        (&["10.0.0.0/30", "10.0.1.0/30"], &[], "10.0.0.2", "10.0.1.2"),
        (
            &["10.0.0.0/30", "10.0.1.0/30", "10.0.2.0/30"],
            &[],
            "10.0.2.2",
            "10.0.0.2",
        ),
    ];
    for (i, (subnets, taken, last, want)) in cases.iter().enumerate() {
        let s = set(subnets);
        let mut store = MemStore::new();
        for t in *taken {
            store.insert_legacy(ip(t), "id");
        }
        if !last.is_empty() {
            store.set_last_reserved(0, ip(last));
        }
        let got = one(&mut store, &s, "ID").unwrap();
        assert_eq!(got.address.addr(), ip(want), "case {i}");
    }
}

#[test]
fn round_robin_across_calls_and_after_release() {
    let s = set(&["192.168.1.0/29"]);
    let mut store = MemStore::new();
    let got: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|id| addr(&one(&mut store, &s, id).unwrap()))
        .collect();
    assert_eq!(got, ["192.168.1.2/29", "192.168.1.3/29", "192.168.1.4/29"]);
    assert_eq!(
        release(&mut store, "a", "eth0").unwrap(),
        vec![ip("192.168.1.2")]
    );
    assert_eq!(
        addr(&one(&mut store, &s, "d").unwrap()),
        "192.168.1.5/29",
        "no reuse of a freed address yet"
    );
    assert_eq!(addr(&one(&mut store, &s, "e").unwrap()), "192.168.1.6/29");
    assert_eq!(
        addr(&one(&mut store, &s, "f").unwrap()),
        "192.168.1.2/29",
        "wrapped to the freed one"
    );
    let e = one(&mut store, &s, "g").unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "failed to allocate for range 0: no IP addresses available in range set: 192.168.1.1-192.168.1.6"
    );
    assert_eq!(
        store.list().unwrap().len(),
        5,
        "never the broadcast .7 or the gateway .1"
    );
}

#[test]
fn gateway_in_the_middle_is_skipped() {
    let s = custom("10.0.0.0/29", "10.0.0.1", "10.0.0.6", Some("10.0.0.4"));
    let mut store = MemStore::new();
    let got: Vec<String> = (0..5)
        .map(|i| {
            one(&mut store, &s, &format!("c{i}"))
                .unwrap()
                .address
                .addr()
                .to_string()
        })
        .collect();
    assert_eq!(
        got,
        ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"]
    );
    assert!(one(&mut store, &s, "x").is_err());
    assert_eq!(one_gateway(&s), ip("10.0.0.4"));
}

fn one_gateway(s: &RangeSet) -> IpAddr {
    let mut store = MemStore::new();
    one(&mut store, s, "gw").unwrap().gateway.unwrap()
}

#[test]
fn network_and_broadcast_never_handed_out() {
    let s = custom("10.0.0.0/29", "10.0.0.0", "10.0.0.7", None);
    assert_eq!(
        walk(&s, None),
        ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    );
    let mut store = MemStore::new();
    for want in ["10.0.0.0", "10.0.0.7", "10.0.0.1"] {
        let e = allocate(
            &mut store,
            std::slice::from_ref(&s),
            "c",
            "eth0",
            &[Some(ip(want))],
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains(&format!("requested IP address {want} is the ")),
            "{e:#}"
        );
    }
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn slash_30_has_one_address_and_v6_126_two() {
    let s = set(&["10.0.0.0/30"]);
    let mut store = MemStore::new();
    assert_eq!(addr(&one(&mut store, &s, "a").unwrap()), "10.0.0.2/30");
    assert!(one(&mut store, &s, "b").is_err());
    let s6 = set(&["2001:db8::/126"]);
    assert_eq!(
        walk(&s6, None),
        ["2001:db8::2", "2001:db8::3"],
        "IPv6 has no broadcast address"
    );
}

#[test]
fn ipv6_and_dual_stack() {
    let sets = [set(&["10.1.0.0/24"]), set(&["2001:db8:1::/64"])];
    let mut store = MemStore::new();
    let got = allocate(&mut store, &sets, "c1", "eth0", &[]).unwrap();
    assert_eq!(
        got.iter().map(addr).collect::<Vec<_>>(),
        ["10.1.0.2/24", "2001:db8:1::2/64"]
    );
    assert_eq!(got[1].gateway, Some(ip("2001:db8:1::1")));
    assert_eq!(got[0].interface, None);
    let got = allocate(&mut store, &sets, "c2", "eth0", &[]).unwrap();
    assert_eq!(
        got.iter().map(addr).collect::<Vec<_>>(),
        ["10.1.0.3/24", "2001:db8:1::3/64"]
    );
    assert_eq!(store.last_reserved_ip(0), Some(ip("10.1.0.3")));
    assert_eq!(store.last_reserved_ip(1), Some(ip("2001:db8:1::3")));
}

#[test]
fn requested_addresses() {
    let s = custom("10.1.2.0/24", "10.1.2.10", "10.1.2.20", None);
    let sets = std::slice::from_ref(&s);
    let mut store = MemStore::new();
    let got = allocate(&mut store, sets, "c1", "eth0", &[Some(ip("10.1.2.15"))]).unwrap();
    assert_eq!(addr(&got[0]), "10.1.2.15/24");
    assert_eq!(
        got[0].gateway,
        Some(ip("10.1.2.1")),
        "gateway outside the range but inside the subnet"
    );
    let e = allocate(&mut store, sets, "c2", "eth0", &[Some(ip("10.1.2.15"))]).unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "failed to allocate for range 0: requested IP address 10.1.2.15 is not available in range set 10.1.2.10-10.1.2.20: already reserved"
    );
    let e = allocate(&mut store, sets, "c2", "eth0", &[Some(ip("10.1.2.3"))]).unwrap_err();
    assert!(
        format!("{e:#}")
            .contains("requested IP address 10.1.2.3 is not in range set 10.1.2.10-10.1.2.20"),
        "{e:#}"
    );
    let again = allocate(&mut store, sets, "c1", "eth0", &[Some(ip("10.1.2.15"))]).unwrap();
    assert_eq!(again, got, "same owner asking again gets it back");
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn repeated_add_is_idempotent_per_ifname() {
    let sets = [set(&["10.1.0.0/24"]), set(&["2001:db8:1::/64"])];
    let mut store = MemStore::new();
    let first = allocate(&mut store, &sets, "c1", "eth0", &[]).unwrap();
    let second = allocate(&mut store, &sets, "c1", "eth0", &[]).unwrap();
    assert_eq!(first, second);
    let other_if = allocate(&mut store, &sets, "c1", "eth1", &[]).unwrap();
    assert_ne!(first[0].address, other_if[0].address);
    assert_eq!(store.list().unwrap().len(), 4);
}

#[test]
fn legacy_entry_is_not_returned_as_held() {
    let s = set(&["10.1.0.0/24"]);
    let mut store = MemStore::new();
    store.insert_legacy(ip("10.1.0.2"), "c1");
    assert_eq!(addr(&one(&mut store, &s, "c1").unwrap()), "10.1.0.3/24");
}

#[test]
fn failure_releases_only_what_this_call_reserved() {
    let sets = [
        set(&["10.1.0.0/24"]),
        set(&["10.2.0.0/30"]),
        set(&["10.3.0.0/24"]),
    ];
    let mut store = MemStore::new();
    with_lock(&mut store, |s| {
        s.reserve("other", "eth0", ip("10.2.0.2"), 1).map(|_| ())
    })
    .unwrap();
    let e = allocate(&mut store, &sets, "c1", "eth0", &[]).unwrap_err();
    assert!(
        format!("{e:#}").starts_with("failed to allocate for range 1: no IP addresses available"),
        "{e:#}"
    );
    assert_eq!(
        store
            .list()
            .unwrap()
            .iter()
            .map(|r| r.ip)
            .collect::<Vec<_>>(),
        vec![ip("10.2.0.2")]
    );
    // An address held before the call survives a later failure.
    let held = allocate(&mut store, &sets[..1], "c1", "eth0", &[]).unwrap();
    assert!(allocate(&mut store, &sets, "c1", "eth0", &[]).is_err());
    assert_eq!(
        store.get_by_id("c1", "eth0").unwrap(),
        vec![held[0].address.addr()]
    );
}

#[test]
fn gc_keeps_only_valid_attachments() {
    let s = set(&["10.1.0.0/24"]);
    let mut store = MemStore::new();
    for (id, ifname) in [("a", "eth0"), ("a", "eth1"), ("b", "eth0")] {
        allocate(&mut store, std::slice::from_ref(&s), id, ifname, &[]).unwrap();
    }
    store.insert_legacy(ip("10.1.0.100"), "a");
    store.insert_legacy(ip("10.1.0.101"), "zz");
    let valid = [Attachment {
        container_id: "a".into(),
        ifname: "eth1".into(),
    }];
    let released = release_all_but(&mut store, &valid).unwrap();
    assert_eq!(
        released,
        vec![ip("10.1.0.2"), ip("10.1.0.4"), ip("10.1.0.101")]
    );
    let left: Vec<IpAddr> = store.list().unwrap().iter().map(|r| r.ip).collect();
    assert_eq!(
        left,
        vec![ip("10.1.0.3"), ip("10.1.0.100")],
        "legacy entry of a valid id stays"
    );
    assert_eq!(
        release_all_but(&mut store, &[]).unwrap().len(),
        2,
        "empty list releases everything"
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn free_address_count() {
    let s = set(&["10.0.0.0/29"]);
    let mut store = MemStore::new();
    assert_eq!(free_addresses(&s, &store.list().unwrap()), 5);
    one(&mut store, &s, "a").unwrap();
    store.insert_legacy(ip("10.0.0.1"), "gw-squatter");
    store.insert_legacy(ip("10.9.0.1"), "elsewhere");
    assert_eq!(free_addresses(&s, &store.list().unwrap()), 4);
}
