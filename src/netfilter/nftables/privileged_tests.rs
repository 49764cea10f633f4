//! Privileged tests of the nf_tables transport, each in a fresh netns of its own thread, with
//! `nft` as the oracle: atomicity, errors, dumps, and that our expressions print as `nft`
//! prints its own.

use super::expr::{self, AddrField, CmpOp, Verdict};
use super::*;
use crate::netfilter::oracle::{self, here, run};
use crate::testutil::fresh_netns;

fn have_nft(test: &str) -> bool {
    let ok = oracle::have("nft");
    if !ok {
        println!("skipped: {test} needs nft as its oracle");
    }
    ok
}

#[test]
fn failed_batch_leaves_nothing() {
    let Some(_ns) = fresh_netns("failed_batch_leaves_nothing") else {
        return;
    };
    if !have_nft("failed_batch_leaves_nothing") {
        return;
    }
    let t = Table::new(NfFamily::Inet, "cni_test_atomic");
    let mut b = Batch::new();
    b.add_table(&t, None);
    b.add_chain(
        &t,
        &Chain {
            name: "c",
            base: None,
            comment: None,
        },
    );
    b.add_rule(&t, "missing", &[expr::counter()], Some("x"));
    let err = Nft::new().unwrap().apply(&b).unwrap_err();
    assert!(is_errno(&err, libc::ENOENT), "{err:#}");
    let text = format!("{err:#}");
    assert!(
        text.contains("add rule cni_test_atomic missing (x)"),
        "{text}"
    );
    assert_eq!(run(&here(), &["nft", "list", "tables"]), "");
}

#[test]
fn dump_gives_chain_handle_comment_and_deletes_work() {
    let Some(_ns) = fresh_netns("dump_gives_chain_handle_comment_and_deletes_work") else {
        return;
    };
    if !have_nft("dump_gives_chain_handle_comment_and_deletes_work") {
        return;
    }
    let t = Table::new(NfFamily::Ip, "cni_test_dump");
    let mut nft = Nft::new().unwrap();
    assert!(
        nft.list_rules(&t, None).unwrap().is_empty(),
        "missing table lists as empty"
    );
    let mut b = Batch::new();
    b.add_table(&t, Some("table note"));
    b.add_chain(
        &t,
        &Chain {
            name: "a",
            base: None,
            comment: Some("chain note"),
        },
    );
    b.add_rule(&t, "a", &[expr::counter()], Some("first"));
    b.add_rule(&t, "a", &[expr::verdict(&Verdict::Accept)], None);
    nft.apply(&b).unwrap();

    let rules = nft.list_rules(&t, Some("a")).unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].chain, "a");
    assert_eq!(rules[0].comment.as_deref(), Some("first"));
    assert_eq!(rules[1].comment, None);
    assert_eq!(rules[1].exprs[0].verdict(), Some(Verdict::Accept));
    let listed = run(
        &here(),
        &["nft", "-a", "list", "table", "ip", "cni_test_dump"],
    );
    assert!(listed.contains("comment \"table note\""), "{listed}");
    assert!(listed.contains("comment \"chain note\""), "{listed}");
    let first = format!(
        "counter packets 0 bytes 0 comment \"first\" # handle {}",
        rules[0].handle
    );
    assert!(listed.contains(&first), "{listed}");

    let mut del = Batch::new();
    del.delete_rule(&t, "a", rules[0].handle);
    nft.apply(&del).unwrap();
    assert_eq!(nft.list_rules(&t, None).unwrap().len(), 1);
    let err = nft.apply(&del).unwrap_err();
    assert!(is_errno(&err, libc::ENOENT), "{err:#}");

    let mut drop_all = Batch::new();
    drop_all.flush_chain(&t, "a");
    drop_all.delete_chain(&t, "a");
    drop_all.delete_table(&t);
    nft.apply(&drop_all).unwrap();
    assert_eq!(run(&here(), &["nft", "list", "ruleset"]), "");
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

/// Rules built with each expression helper, and how `nft list` prints them.
fn expr_cases() -> Vec<(Vec<Expr>, &'static str)> {
    use AddrField::{Daddr, Saddr};
    let v4 = || expr::nfproto(false);
    let tcp_dport = |port: u16| {
        vec![
            expr::meta(expr::META_L4PROTO, expr::REG_1),
            expr::cmp(CmpOp::Eq, expr::REG_1, &[6]),
            expr::payload(expr::BASE_TRANSPORT, 2, 2, expr::REG_1),
            expr::cmp(CmpOp::Eq, expr::REG_1, &port.to_be_bytes()),
        ]
    };
    let dnat = vec![
        expr::immediate(expr::REG_1, &[10, 22, 0, 5]),
        expr::immediate(expr::REG_2, &80u16.to_be_bytes()),
        expr::nat(1, expr::NFPROTO_IPV4, expr::REG_1, Some(expr::REG_2), 0),
    ];
    let accept = vec![expr::counter(), expr::verdict(&Verdict::Accept)];
    let subnet = expr::addr_match(Daddr, CmpOp::Eq, &net("10.1.0.0/20"));
    let v6net = expr::addr_match(Saddr, CmpOp::Neq, &net("2001:db8::/63"));
    let host = expr::addr_match(Saddr, CmpOp::Eq, &net("10.0.0.7/32"));
    vec![
        (
            [v4(), subnet, accept].concat(),
            "ip daddr 10.1.0.0/20 counter packets 0 bytes 0 accept",
        ),
        (
            [
                expr::nfproto(true),
                v6net,
                vec![expr::verdict(&Verdict::Drop)],
            ]
            .concat(),
            "ip6 saddr != 2001:db8::/63 drop",
        ),
        (
            [v4(), host, vec![expr::verdict(&Verdict::Jump("b".into()))]].concat(),
            "ip saddr 10.0.0.7 jump b",
        ),
        (
            [v4(), tcp_dport(8080), dnat].concat(),
            "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.22.0.5:80",
        ),
    ]
}

/// Each expression helper, as `nft list` prints it.
#[test]
fn expressions_print_like_nft() {
    let Some(_ns) = fresh_netns("expressions_print_like_nft") else {
        return;
    };
    if !have_nft("expressions_print_like_nft") {
        return;
    }
    let t = Table::new(NfFamily::Inet, "cni_test_expr");
    let cases = expr_cases();
    let mut b = Batch::new();
    b.add_table(&t, None);
    b.add_chain(
        &t,
        &Chain {
            name: "b",
            base: None,
            comment: None,
        },
    );
    let hook = BaseChain {
        kind: "nat",
        hook: Hook::Prerouting,
        priority: -100,
    };
    b.add_chain(
        &t,
        &Chain {
            name: "a",
            base: Some(hook),
            comment: None,
        },
    );
    for (e, _) in &cases {
        b.add_rule(&t, "a", e, None);
    }
    Nft::new().unwrap().apply(&b).unwrap();
    let listed = run(
        &here(),
        &["nft", "list", "chain", "inet", "cni_test_expr", "a"],
    );
    assert!(
        listed.contains("type nat hook prerouting priority dstnat; policy accept;"),
        "{listed}"
    );
    let lines: Vec<&str> = listed.lines().map(str::trim).collect();
    for (_, want) in &cases {
        assert!(lines.contains(want), "missing {want:?} in\n{listed}");
    }
}
