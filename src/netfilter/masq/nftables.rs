//! ipMasq with nftables, in the reference's layout (`pkg/ip/ipmasq_nftables_linux.go`):
//!
//! ```text
//! table inet cni_plugins_masquerade {              comment "Masquerading for plugins from …"
//!   chain masq_checks {                            comment "Masquerade traffic from certain IPs …"
//!     ip saddr <ip> ip daddr != <subnet> masquerade comment "<h16(net)>-<h16(if:cid)>, net: …"
//!   }
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!     ip daddr 224.0.0.0/4 return; ip6 daddr ff00::/8 return; goto masq_checks }
//! }
//! ```
//!
//! Every setup re-adds the table and chains, flushes and rewrites `postrouting` (unless all of
//! it is already intact: see [`setup`]), deletes the instance's earlier rules and adds one rule
//! per address, in one atomic batch. Teardown
//! deletes the rules whose comment starts with the instance hash; GC those of the network
//! hash whose comment belongs to no valid attachment.

use crate::netfilter::naming::hash_with_prefix;
use crate::netfilter::nftables::expr::{self, AddrField, CmpOp, Expr, Verdict};
use crate::netfilter::nftables::{BaseChain, Batch, Chain, Hook, NfFamily, Nft, RuleInfo, Table};
use crate::types::Attachment;
use anyhow::{Result, bail};
use ipnet::IpNet;
use std::collections::HashSet;

/// The table name.
pub const TABLE: &str = "cni_plugins_masquerade";
/// The regular chain holding the per-address rules.
pub const CHAIN: &str = "masq_checks";
/// The base chain hooked at postrouting.
pub const POSTROUTING: &str = "postrouting";
const TABLE_COMMENT: &str = "Masquerading for plugins from github.com/containernetworking/plugins";
const CHAIN_COMMENT: &str =
    "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet";
/// knftables' `CommentLengthMax`: the reference cuts rule comments here.
const COMMENT_MAX: usize = 128;

/// The masquerade table.
pub fn table() -> Table {
    Table::new(NfFamily::Inet, TABLE)
}

/// 16 hex digits of SHA-512(network) (`hashForNetwork`).
pub fn hash_for_network(network: &str) -> String {
    hash_with_prefix(16, "", network)
}

/// `<network hash>-<16 hex of SHA-512(ifname:containerID)>` (`hashForInstance`).
pub fn hash_for_instance(network: &str, ifname: &str, container_id: &str) -> String {
    format!(
        "{}-{}",
        hash_for_network(network),
        hash_with_prefix(16, "", &format!("{ifname}:{container_id}"))
    )
}

/// `<instance hash>, net: <net>, if: <ifname>, id: <cid>` without double quotes, cut to 128
/// bytes (`commentForInstance`).
pub fn comment_for_instance(network: &str, ifname: &str, container_id: &str) -> String {
    let strip = |s: &str| s.replace('"', "");
    let mut c = format!(
        "{}, net: {}, if: {}, id: {}",
        hash_for_instance(network, ifname, container_id),
        strip(network),
        strip(ifname),
        strip(container_id)
    );
    let mut end = c.len().min(COMMENT_MAX);
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    c.truncate(end);
    c
}

/// `ip[6] saddr == <ip> ip[6] daddr != <subnet> masquerade`.
pub fn masq_rule(net: &IpNet) -> Vec<Expr> {
    let mut e = expr::nfproto(matches!(net, IpNet::V6(_)));
    e.extend(expr::addr_match(
        AddrField::Saddr,
        CmpOp::Eq,
        &IpNet::from(net.addr()),
    ));
    e.extend(expr::addr_match(AddrField::Daddr, CmpOp::Neq, &net.trunc()));
    e.push(expr::masq());
    e
}

/// The setup transaction: table, chains, rewritten `postrouting`, `stale` rules deleted and
/// one rule per address of `ipns`.
pub fn setup_batch(stale: &[RuleInfo], ipns: &[IpNet], comment: &str) -> Batch {
    setup_batch_with(stale, ipns, comment, false)
}

/// [`setup_batch`]; with `intact` (the table, both chains and `postrouting`'s rules exist as
/// the setup makes them) only the per-address rules change.
pub fn setup_batch_with(stale: &[RuleInfo], ipns: &[IpNet], comment: &str, intact: bool) -> Batch {
    let t = table();
    let mut b = Batch::new();
    if !intact {
        declare_and_hook(&mut b);
    }
    for rule in stale {
        b.delete_rule(&t, CHAIN, rule.handle);
    }
    for net in ipns {
        b.add_rule(&t, CHAIN, &masq_rule(net), Some(comment));
    }
    b
}

/// Table, chains (an existing one is updated in place) and a rewritten `postrouting`.
fn declare_and_hook(b: &mut Batch) {
    let t = table();
    b.add_table(&t, Some(TABLE_COMMENT));
    b.add_chain(
        &t,
        &Chain {
            name: CHAIN,
            base: None,
            comment: Some(CHAIN_COMMENT),
        },
    );
    let hook = BaseChain {
        kind: "nat",
        hook: Hook::Postrouting,
        priority: 100,
    };
    b.add_chain(
        &t,
        &Chain {
            name: POSTROUTING,
            base: Some(hook),
            comment: None,
        },
    );
    b.flush_chain(&t, POSTROUTING);
    for multicast in ["224.0.0.0/4", "ff00::/8"] {
        let net: IpNet = multicast.parse().expect("literal prefix");
        let mut e = expr::nfproto(matches!(net, IpNet::V6(_)));
        e.extend(expr::addr_match(AddrField::Daddr, CmpOp::Eq, &net));
        e.push(expr::verdict(&Verdict::Return));
        b.add_rule(&t, POSTROUTING, &e, None);
    }
    b.add_rule(
        &t,
        POSTROUTING,
        &[expr::verdict(&Verdict::Goto(CHAIN.into()))],
        None,
    );
}

/// The rules of `masq_checks` whose comment starts with `prefix`.
fn find_rules(nft: &mut Nft, prefix: &str) -> Result<Vec<RuleInfo>> {
    let rules = nft.list_rules(&table(), Some(CHAIN))?;
    Ok(rules
        .into_iter()
        .filter(|r| r.comment.as_deref().is_some_and(|c| c.starts_with(prefix)))
        .collect())
}

/// Installs (or refreshes) the rules of one attachment.
pub fn setup(
    nft: &mut Nft,
    ipns: &[IpNet],
    network: &str,
    ifname: &str,
    container_id: &str,
) -> Result<()> {
    let stale = find_rules(nft, &hash_for_instance(network, ifname, container_id))?;
    // The reference re-declares the chains and rewrites `postrouting` on every ADD. Deleting
    // rules or updating an existing chain makes the kernel wait for an RCU grace period
    // (~10-20 ms) when this socket is closed, so an intact layout is left alone: same end
    // state, faster ADD.
    let intact = postrouting_intact(&nft.list_rules(&table(), Some(POSTROUTING))?);
    nft.apply(&setup_batch_with(
        &stale,
        ipns,
        &comment_for_instance(network, ifname, container_id),
        intact,
    ))
}

/// True when `rules` (of `postrouting`) are the three the setup writes: IPv4 multicast
/// return, IPv6 multicast return, goto `masq_checks`.
fn postrouting_intact(rules: &[RuleInfo]) -> bool {
    let proto = |r: &RuleInfo| {
        r.exprs
            .iter()
            .find(|e| e.name == "cmp")
            .and_then(|e| e.value(3))
    };
    let verdict = |r: &RuleInfo| r.exprs.iter().find_map(|e| e.verdict());
    let ret = Some(Verdict::Return);
    match rules {
        [v4, v6, goto] => {
            verdict(v4) == ret
                && proto(v4) == Some(vec![expr::NFPROTO_IPV4])
                && verdict(v6) == ret
                && proto(v6) == Some(vec![expr::NFPROTO_IPV6])
                && verdict(goto) == Some(Verdict::Goto(CHAIN.into()))
                && goto.exprs.len() == 1
        }
        _ => false,
    }
}

/// Deletes the rules of one attachment; nothing there is success.
pub fn teardown(nft: &mut Nft, network: &str, ifname: &str, container_id: &str) -> Result<()> {
    let rules = find_rules(nft, &hash_for_instance(network, ifname, container_id))?;
    delete_rules(nft, &rules)
}

fn delete_rules(nft: &mut Nft, rules: &[RuleInfo]) -> Result<()> {
    let t = table();
    let mut b = Batch::new();
    for r in rules {
        b.delete_rule(&t, &r.chain, r.handle);
    }
    nft.apply(&b)
}

/// Deletes the rules of `network` that belong to none of `valid`.
pub fn gc(nft: &mut Nft, network: &str, valid: &[Attachment]) -> Result<()> {
    let keep: HashSet<String> = valid
        .iter()
        .map(|a| comment_for_instance(network, &a.ifname, &a.container_id))
        .collect();
    let rules = find_rules(nft, &hash_for_network(network))?;
    let stale: Vec<RuleInfo> = rules
        .into_iter()
        .filter(|r| !r.comment.as_ref().is_some_and(|c| keep.contains(c)))
        .collect();
    delete_rules(nft, &stale)
}

/// Fails unless every address has its rule and `postrouting` leads to `masq_checks`.
pub fn check(
    nft: &mut Nft,
    ipns: &[IpNet],
    network: &str,
    ifname: &str,
    container_id: &str,
) -> Result<()> {
    let comment = comment_for_instance(network, ifname, container_id);
    let ours: Vec<RuleInfo> = find_rules(nft, &comment)?
        .into_iter()
        .filter(|r| r.comment.as_deref() == Some(&comment))
        .collect();
    for net in ipns {
        let found = ours
            .iter()
            .any(|r| expr::matched_addr(&r.exprs, AddrField::Saddr) == Some(net.addr()));
        if !found {
            bail!(
                "nftables: no masquerade rule for {} in {TABLE} {CHAIN}",
                net.addr()
            );
        }
    }
    let hooked = nft.list_rules(&table(), Some(POSTROUTING))?;
    let goto = Some(Verdict::Goto(CHAIN.into()));
    if !hooked
        .iter()
        .any(|r| r.exprs.iter().any(|e| e.verdict() == goto))
    {
        bail!("nftables: {TABLE} {POSTROUTING} does not lead to {CHAIN}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from the reference's `Test_setupIPMasqNFTables`.
    #[test]
    fn comments_match_reference() {
        assert_eq!(
            comment_for_instance("unit-test", "eth0", "one"),
            "6fd94d501e58f0aa-287fc69eff0574a2, net: unit-test, if: eth0, id: one"
        );
        assert_eq!(
            comment_for_instance("unit-test", "eth0", "two"),
            "6fd94d501e58f0aa-d750b2c8f0f25d5f, net: unit-test, if: eth0, id: two"
        );
        assert_eq!(
            comment_for_instance("alternate", "net1", "three"),
            "82783ef24bdc7036-acb19d111858e348, net: alternate, if: net1, id: three"
        );
        assert_eq!(
            hash_for_instance("unit-test", "eth0", "four"),
            "6fd94d501e58f0aa-e766de567ef6c543"
        );
    }

    #[test]
    fn comment_strips_quotes_and_is_cut() {
        let c = comment_for_instance("n\"et", "eth0", &"x".repeat(200));
        assert!(c.contains("net: net,"));
        assert_eq!(c.len(), COMMENT_MAX);
    }

    #[test]
    fn setup_batch_shape() {
        let stale = [RuleInfo {
            chain: CHAIN.into(),
            handle: 7,
            comment: None,
            udata: vec![],
            exprs: vec![],
        }];
        let nets: Vec<IpNet> = vec![
            "10.0.0.5/24".parse().unwrap(),
            "fd00::5/64".parse().unwrap(),
        ];
        let b = setup_batch(&stale, &nets, "c");
        let what: Vec<&str> = (0..b.len()).map(|i| b.describe(i).unwrap()).collect();
        assert_eq!(
            what,
            [
                "add table cni_plugins_masquerade",
                "add chain cni_plugins_masquerade masq_checks",
                "add chain cni_plugins_masquerade postrouting",
                "flush chain cni_plugins_masquerade postrouting",
                "add rule cni_plugins_masquerade postrouting",
                "add rule cni_plugins_masquerade postrouting",
                "add rule cni_plugins_masquerade postrouting",
                "delete rule cni_plugins_masquerade masq_checks handle 7",
                "add rule cni_plugins_masquerade masq_checks (c)",
                "add rule cni_plugins_masquerade masq_checks (c)",
            ]
        );
    }
}
