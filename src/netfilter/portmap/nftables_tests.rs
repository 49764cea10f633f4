//! Tests of the nftables layout: the batch shape, and in fresh netns what `nft` prints for
//! our rules against what it prints for the reference's own rules (loaded with `nft -f`),
//! teardown of reference-made rules, per-network DEL, GC and per-container conditions.

use super::*;
use crate::netfilter::oracle::{self, here, run};
use crate::netfilter::portmap::Mapping;
use crate::netfilter::portmap::reference_mappings as mappings;
use crate::testutil::fresh_netns;

const CID: &str = "icee6giejonei6so";

fn golden(name: &str) -> String {
    format!("{}/testdata/netfilter/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn forward<'a>(network: &'a str, ms: &'a [Mapping], ip: &str, snat: &'a Snat) -> Forward<'a> {
    Forward {
        network,
        container_id: CID,
        ifname: "eth0",
        container: ip.parse().unwrap(),
        mappings: ms,
        snat,
        masq_all: false,
        conditions: &[],
    }
}

fn owner(network: &str) -> Owner<'_> {
    Owner {
        network,
        container_id: CID,
        ifname: "eth0",
    }
}

#[test]
fn batch_shape() {
    let ms = mappings();
    let b = forward_batch(
        &forward("n", &ms, "10.0.0.2/24", &Snat::MarkBit(13)),
        InPlace::NOTHING,
    )
    .unwrap();
    let what: Vec<&str> = (0..b.len()).map(|i| b.describe(i).unwrap()).collect();
    assert_eq!(
        what.iter().filter(|w| w.contains(" hostports (")).count(),
        6
    );
    assert_eq!(
        what.iter()
            .filter(|w| w.contains(" masquerading ("))
            .count(),
        2
    );
    assert!(what.contains(&"flush chain cni_hostport prerouting"));
    let done = InPlace {
        jumps: true,
        masquerading: false,
    };
    let b = forward_batch(&forward("n", &ms, "2001:db8::2/64", &Snat::Off), done).unwrap();
    let what: Vec<&str> = (0..b.len()).map(|i| b.describe(i).unwrap()).collect();
    assert!(!what.iter().any(|w| w.contains("masquerading")), "{what:?}");
    assert!(what.iter().all(|w| w.starts_with("add rule")), "{what:?}");
    let ext = Snat::ExternalChain("X".into());
    assert!(forward_batch(&forward("n", &ms, "10.0.0.2/24", &ext), InPlace::NOTHING).is_err());
}

#[test]
fn owner_udata_holds_comment_then_owner() {
    let u = owner_udata("net", "eth0", "cid");
    assert_eq!(&u[..6], &[0, 4, b'c', b'i', b'd', 0]);
    assert_eq!(u[6], OWNER_TLV);
    let owner = udata_tlv(&u, OWNER_TLV).unwrap();
    assert_eq!(owner, hash_for_instance("net", "eth0", "cid").as_bytes());
}

fn have_nft(test: &str) -> bool {
    let ok = oracle::have("nft");
    if !ok {
        println!("skipped: {test} needs nft as its oracle");
    }
    ok
}

/// `nft list ruleset` of the netns at `ns`.
fn ruleset(ns: &str) -> String {
    run(ns, &["nft", "list", "ruleset"])
}

#[test]
fn same_ruleset_as_the_reference() {
    let Some(_ns) = fresh_netns("same_ruleset_as_the_reference") else {
        return;
    };
    if !have_nft("same_ruleset_as_the_reference") {
        return;
    }
    let reference = crate::testutil::another_netns();
    let ref_path = oracle::path_of(&reference);
    run(&ref_path, &["nft", "-f", &golden("portmap-reference.nft")]);
    let ms = mappings();
    let mut nft = Nft::new().unwrap();
    for ip in ["10.0.0.2/24", "2001:db8::2/64"] {
        super::forward(&mut nft, &forward("n", &ms, ip, &Snat::MarkBit(13))).unwrap();
    }
    assert_eq!(ruleset(&here()), ruleset(&ref_path));
    // A further ADD leaves the shared jump rules alone (same handles), and rewrites them
    // when they are not ours (the reference puts its global conditions there).
    let handles = |nft: &mut Nft| -> Vec<u64> {
        let t = table(IpFamily::V4);
        ["prerouting", "output", HOSTPORTS_ALL]
            .iter()
            .flat_map(|c| nft.list_rules(&t, Some(c)).unwrap())
            .map(|r| r.handle)
            .collect()
    };
    let before = handles(&mut nft);
    super::forward(
        &mut nft,
        &forward("m", &ms[..1], "10.0.0.3/24", &Snat::MarkBit(13)),
    )
    .unwrap();
    assert_eq!(handles(&mut nft), before);
    run(
        &here(),
        &[
            "nft",
            "flush chain ip cni_hostport output; add rule ip cni_hostport output meta mark 1 fib daddr type local jump hostports_all",
        ],
    );
    super::forward(
        &mut nft,
        &forward("m", &ms[..1], "10.0.0.3/24", &Snat::MarkBit(13)),
    )
    .unwrap();
    let out = nft
        .list_rules(&table(IpFamily::V4), Some("output"))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].exprs[0].name, "fib");
    for ip in ["10.0.0.2/24", "2001:db8::2/64"] {
        check(&mut nft, &forward("n", &ms, ip, &Snat::MarkBit(13))).unwrap();
    }
}

#[test]
fn teardown_removes_reference_rules_and_reports_udp_ports() {
    let Some(_ns) = fresh_netns("teardown_removes_reference_rules_and_reports_udp_ports") else {
        return;
    };
    if !have_nft("teardown_removes_reference_rules_and_reports_udp_ports") {
        return;
    }
    run(&here(), &["nft", "-f", &golden("portmap-reference.nft")]);
    let ms = mappings();
    let mut nft = Nft::new().unwrap();
    check(
        &mut nft,
        &forward("n", &ms, "10.0.0.2/24", &Snat::MarkBit(13)),
    )
    .unwrap();
    let mut removed = Removed::default();
    teardown(&mut nft, &owner("any-network"), &mut removed).unwrap();
    assert_eq!(
        removed.udp_ports,
        [
            (IpFamily::V4, 8080),
            (IpFamily::V4, 8082),
            (IpFamily::V6, 8080),
            (IpFamily::V6, 8082)
        ]
    );
    let left = ruleset(&here());
    assert!(!left.contains(CID), "{left}");
    assert!(
        check(
            &mut nft,
            &forward("n", &ms, "10.0.0.2/24", &Snat::MarkBit(13))
        )
        .is_err()
    );
    teardown(&mut nft, &owner("any-network"), &mut Removed::default()).unwrap();
}

/// One container on two networks: DEL of one keeps the other's rules; GC of a network
/// removes only that network's stale attachments.
#[test]
fn per_network_teardown_and_gc() {
    let Some(_ns) = fresh_netns("per_network_teardown_and_gc") else {
        return;
    };
    if !have_nft("per_network_teardown_and_gc") {
        return;
    }
    let ms = mappings();
    let mut nft = Nft::new().unwrap();
    let snat = Snat::MarkBit(13);
    super::forward(&mut nft, &forward("a", &ms[..1], "10.0.0.2/24", &snat)).unwrap();
    super::forward(&mut nft, &forward("b", &ms[1..2], "10.1.0.2/24", &snat)).unwrap();
    teardown(&mut nft, &owner("a"), &mut Removed::default()).unwrap();
    let left = ruleset(&here());
    assert!(!left.contains("dport 8080"), "{left}");
    assert!(
        left.contains("tcp dport 8081 dnat to 10.1.0.2:80"),
        "{left}"
    );
    check(&mut nft, &forward("b", &ms[1..2], "10.1.0.2/24", &snat)).unwrap();

    let valid = [Attachment {
        container_id: CID.into(),
        ifname: "eth0".into(),
    }];
    gc(&mut nft, "b", &valid, &mut Removed::default()).unwrap();
    gc(&mut nft, "a", &[], &mut Removed::default()).unwrap();
    check(&mut nft, &forward("b", &ms[1..2], "10.1.0.2/24", &snat)).unwrap();
    gc(&mut nft, "b", &[], &mut Removed::default()).unwrap();
    assert!(!ruleset(&here()).contains(CID));
}

/// Conditions land in the container's own DNAT rules and print as nft prints them; the
/// shared base chains stay unconditional.
#[test]
fn conditions_are_per_container() {
    let Some(_ns) = fresh_netns("conditions_are_per_container") else {
        return;
    };
    if !have_nft("conditions_are_per_container") {
        return;
    }
    let ms = mappings();
    let snat = Snat::Off;
    let conds: Vec<String> = [
        "ip saddr != 10.0.0.0/8",
        "iifname \"eth0\"",
        "oifname != eth*",
        "meta mark 0x10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let f = Forward {
        conditions: &conds,
        ..forward("n", &ms[..1], "10.0.0.2/24", &snat)
    };
    let mut nft = Nft::new().unwrap();
    super::forward(&mut nft, &f).unwrap();
    let text = ruleset(&here());
    assert!(
        text.contains(
            "ip saddr != 10.0.0.0/8 iifname \"eth0\" oifname != \"eth*\" meta mark 0x00000010 \
             tcp dport 8080 dnat to 10.0.0.2:80 comment \"icee6giejonei6so\""
        ),
        "{text}"
    );
    assert!(
        text.contains("\t\tfib daddr type local jump hostports_all\n"),
        "{text}"
    );
}

fn rule_info(exprs: Vec<crate::netfilter::nftables::DecodedExpr>) -> RuleInfo {
    RuleInfo {
        chain: HOSTPORTS_ALL.into(),
        handle: 1,
        comment: None,
        udata: Vec::new(),
        exprs,
    }
}

fn decoded(
    exprs: &[crate::netfilter::nftables::Expr],
) -> Vec<crate::netfilter::nftables::DecodedExpr> {
    use crate::netfilter::nftables::{expr, wire::Attrs};
    let mut a = Attrs::new();
    expr::encode_list(exprs, &mut a);
    expr::decode_list(a.as_bytes()).unwrap()
}

/// A rule dumped without NFTA_RULE_EXPRESSIONS is not a jump in place, and no panic.
#[test]
fn rule_without_expressions_is_not_in_place() {
    let jumps = [HOSTIP_HOSTPORTS, HOSTPORTS]
        .map(|to| rule_info(decoded(&[expr::verdict(&Verdict::Jump(to.into()))])));
    assert!(all_jumps_ok(&jumps));
    assert!(!all_jumps_ok(&[rule_info(Vec::new()), jumps[1].clone()]));
    assert!(!all_jumps_ok(&[jumps[0].clone(), rule_info(Vec::new())]));
    assert!(!all_jumps_ok(&[]));
    assert!(!base_jump_ok(&[rule_info(Vec::new())]));
}
