//! Tests of the iptables layout: the rendered restore input against golden files, and in a
//! fresh netns the real iptables-save output against what CHECK expects (which proves the
//! rules are written in iptables-save's canonical form), repeat ADD, teardown and GC.

use super::*;
use crate::netfilter::oracle::{self, nat_state};
use crate::netfilter::portmap::reference_mappings as mappings;
use crate::testutil::fresh_netns;

fn golden(name: &str) -> String {
    let path = format!("{}/testdata/netfilter/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn forward<'a>(ms: &'a [Mapping], ip: &str, snat: &'a Snat, conds: &'a [String]) -> Forward<'a> {
    Forward {
        network: "test",
        container_id: "icee6giejonei6so",
        ifname: "eth0",
        container: ip.parse().unwrap(),
        mappings: ms,
        snat,
        masq_all: false,
        conditions: conds,
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn forward_v4_golden() {
    let ms = mappings();
    let conds = strings(&["!", "-d", "192.168.0.3"]);
    let f = forward(&ms, "10.0.0.2/24", &Snat::MarkBit(13), &conds);
    let got = plan_forward(&Saved::default(), &f).render();
    assert_eq!(got, golden("portmap-forward-v4.restore"));
}

#[test]
fn forward_v6_external_mark_chain_golden() {
    let ms = mappings();
    let snat = Snat::ExternalChain("KUBE-MARK-MASQ".into());
    let f = forward(&ms, "2001:db8::2/64", &snat, &[]);
    let got = plan_forward(&Saved::default(), &f).render();
    assert_eq!(got, golden("portmap-forward-v6.restore"));
}

/// Chain names of the reference's unit test (portmap_iptables_test.go).
#[test]
fn chain_names_match_reference() {
    let id = "icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3vuf0ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y";
    assert_eq!(
        dnat_chain("testNetName", id),
        "CNI-DN-bfd599665540dd91d5d28"
    );
    assert_eq!(dnat_chain("test", id), "CNI-DN-67e92b96e692a494b6b85");
    assert!(old_snat_chain("test", id).starts_with("CNI-SN-"));
}

#[test]
fn comment_is_cut_like_trim_comment() {
    assert_eq!(dnat_comment("n", "c"), r#"dnat name: "n" id: "c""#);
    let long = dnat_comment("n", &"x".repeat(300));
    assert_eq!(long.len(), 255);
    assert!(long.ends_with("..."));
}

#[test]
fn ports_grouped_by_protocol_in_fifteens() {
    let mut ms: Vec<Mapping> = (1..=16)
        .map(|p| Mapping {
            host_port: 1000 + p,
            container_port: 80,
            proto: Proto::Udp,
            host_ip: None,
        })
        .collect();
    ms.push(Mapping {
        proto: Proto::Sctp,
        ..ms[0]
    });
    let g = port_groups(&ms);
    assert_eq!(g.len(), 3);
    assert_eq!(g[0], (Proto::Sctp, "1001".into()));
    assert_eq!(g[1].1.split(',').count(), 15);
    assert_eq!(g[2], (Proto::Udp, "1016".into()));
}

#[test]
fn conditions_are_hoisted_like_iptables_save() {
    let (basic, rest) = hoist_basic(&strings(&[
        "-m",
        "mark",
        "!",
        "--mark",
        "0x1",
        "-i",
        "eth0",
        "!",
        "-d",
        "10.1.2.3",
        "-s",
        "192.0.2.7/24",
    ]));
    assert_eq!(
        basic,
        ["-s", "192.0.2.0/24", "!", "-d", "10.1.2.3/32", "-i", "eth0"]
    );
    assert_eq!(rest, ["-m", "mark", "!", "--mark", "0x1"]);
}

#[test]
fn mark_values_use_go_hex() {
    assert_eq!(mark_of(13), "0x2000/0x2000");
    assert_eq!(mark_of(0), "0x1/0x1");
    assert_eq!(mark_of(31), "0x80000000/0x80000000");
}

#[test]
fn gc_picks_only_this_networks_invalid_chains() {
    let text = golden("portmap-two-networks.save");
    let saved = Saved::parse(&text, "nat").unwrap();
    let valid = [Attachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    }];
    assert_eq!(
        stale_chains(&saved, "netA", &valid),
        [dnat_chain("netA", "gone")]
    );
    assert!(stale_chains(&saved, "netC", &[]).is_empty());
}

fn have_iptables(test: &str) -> bool {
    let ok = oracle::have("iptables-restore") && oracle::have("ip6tables-restore");
    if !ok {
        println!("skipped: {test} needs iptables");
    }
    ok
}

/// What is left once everything is torn down: the shared chains and their rules.
fn shared_only(lines: &[String]) -> bool {
    lines
        .iter()
        .all(|l| !l.contains("CNI-DN-") && !l.contains("icee6"))
}

#[test]
fn iptables_lifecycle_in_both_families() {
    let Some(_ns) = fresh_netns("iptables_lifecycle_in_both_families") else {
        return;
    };
    if !have_iptables("iptables_lifecycle_in_both_families") {
        return;
    }
    let ms = mappings();
    let v4 = strings(&[
        "!",
        "-d",
        "192.0.2.0/24",
        "-m",
        "mark",
        "!",
        "--mark",
        "0x4",
    ]);
    let v6 = strings(&["-s", "fd00::/8"]);
    let mark = Snat::MarkBit(13);
    for (ip, save, conds) in [
        ("10.0.0.2/24", "iptables-save", &v4),
        ("2001:db8::2/64", "ip6tables-save", &v6),
    ] {
        let f = forward(&ms, ip, &mark, conds);
        let ipt = Iptables::new(f.family());
        assert!(check(&ipt, &f).is_err());
        super::forward(&ipt, &f).unwrap();
        // CHECK compares with what iptables-save prints: all of it is in canonical form.
        check(&ipt, &f).unwrap();
        let once = nat_state(save);
        super::forward(&ipt, &f).unwrap();
        assert_eq!(nat_state(save), once, "a second ADD changes nothing");
        let mut removed = Removed::default();
        let owner = Owner {
            network: "test",
            container_id: "icee6giejonei6so",
            ifname: "eth0",
        };
        teardown(&ipt, &owner, &mut removed).unwrap();
        assert_eq!(removed.udp_ports, [(f.family(), 8080), (f.family(), 8082)]);
        let left = nat_state(save);
        assert!(shared_only(&left), "{left:?}");
        teardown(&ipt, &owner, &mut Removed::default()).unwrap();
        assert_eq!(nat_state(save), left);
    }
}

/// masqAll drops the localhost rule and the source match; an external mark chain replaces
/// the shared SETMARK/MASQ chains; a re-ADD with fewer mappings leaves only those.
#[test]
fn iptables_masq_all_external_chain_and_shrinking_readd() {
    let Some(_ns) = fresh_netns("iptables_masq_all_external_chain_and_shrinking_readd") else {
        return;
    };
    if !have_iptables("iptables_masq_all_external_chain_and_shrinking_readd") {
        return;
    }
    oracle::run(
        &oracle::here(),
        &["iptables", "-t", "nat", "-N", "KUBE-MARK-MASQ"],
    );
    let ms = mappings();
    let snat = Snat::ExternalChain("KUBE-MARK-MASQ".into());
    let mut f = forward(&ms, "10.0.0.2/24", &snat, &[]);
    f.masq_all = true;
    let ipt = Iptables::new(IpFamily::V4);
    super::forward(&ipt, &f).unwrap();
    check(&ipt, &f).unwrap();
    let state = nat_state("iptables-save");
    assert!(
        !state.iter().any(|l| l.contains("CNI-HOSTPORT-SETMARK")),
        "{state:?}"
    );
    assert!(state.contains(&format!(
        "-A {} -p tcp -m tcp --dport 8080 -j KUBE-MARK-MASQ",
        dnat_chain("test", "icee6giejonei6so")
    )));
    let fewer = &ms[..1];
    let g = Forward {
        mappings: fewer,
        ..f
    };
    super::forward(&ipt, &g).unwrap();
    check(&ipt, &g).unwrap();
    let chain = dnat_chain("test", "icee6giejonei6so");
    let state = nat_state("iptables-save");
    let ours = state.iter().filter(|l| l.contains(&chain)).count();
    assert_eq!(
        ours, 4,
        "declaration, entry rule, hairpin and DNAT: {state:?}"
    );
    let mut removed = Removed::default();
    gc(&ipt, "test", &[], &mut removed).unwrap();
    assert!(shared_only(&nat_state("iptables-save")));
}

/// Two first ADDs for different containers at once (the shared chains missing from both
/// snapshots) both keep their entry rules: without a lock across save and restore, the
/// second restore re-declares `CNI-HOSTPORT-DNAT` and so flushes the first one's rule.
#[test]
fn concurrent_first_adds_keep_both_entry_rules() {
    let test = "concurrent_first_adds_keep_both_entry_rules";
    let Some(ns) = fresh_netns(test) else {
        return;
    };
    if !have_iptables(test) {
        return;
    }
    let ms = mappings();
    let mark = Snat::MarkBit(13);
    let ids = ["racer-one", "racer-two"];
    let ipt = Iptables::new(IpFamily::V4);
    for round in 0..25 {
        for flag in ["-F", "-X"] {
            oracle::run(&oracle::here(), &["iptables", "-t", "nat", flag]);
        }
        let barrier = std::sync::Barrier::new(ids.len());
        std::thread::scope(|s| {
            for (i, id) in ids.iter().enumerate() {
                let (ns, barrier, ms, mark) = (&ns, &barrier, &ms, &mark);
                s.spawn(move || {
                    ns.run(|| {
                        let f = Forward {
                            container_id: id,
                            ..forward(ms, &format!("10.0.0.{}/24", i + 2), mark, &[])
                        };
                        barrier.wait();
                        super::forward(&ipt, &f).unwrap();
                    })
                    .unwrap();
                });
            }
        });
        let state = nat_state("iptables-save");
        for (i, id) in ids.iter().enumerate() {
            let f = Forward {
                container_id: id,
                ..forward(&ms, &format!("10.0.0.{}/24", i + 2), &mark, &[])
            };
            let gaps = missing(&ipt.save(TABLE).unwrap(), &f);
            assert!(
                gaps.is_empty(),
                "round {round}: {id} lost {gaps:?}\n{state:#?}"
            );
        }
    }
}
