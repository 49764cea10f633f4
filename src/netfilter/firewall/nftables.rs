//! The firewall with nftables, which the reference lacks (its PR #462 was abandoned): the
//! iptables layout in a table of our own, so that the iptables backend's chain names read
//! the same here.
//!
//! ```text
//! table inet cni_plugins_firewall {                          comment "CNI firewall plugin"
//!   chain forward { type filter hook forward priority filter; policy accept;
//!     jump CNI-ISOLATION-STAGE-1            (first ingressPolicy other than open)
//!     jump CNI-FORWARD }
//!   chain CNI-FORWARD {
//!     jump CNI-ADMIN                                         (one per admin chain name)
//!     meta nfproto ipv4 ip daddr <ip> ct state established,related accept  comment "<cid>"
//!     meta nfproto ipv4 ip saddr <ip> accept                                comment "<cid>" }
//!   chain CNI-ADMIN { }                     (the user's: created when missing, never flushed)
//!   chain CNI-ISOLATION-STAGE-1 {
//!     iifname <br> oifname != <br> jump CNI-ISOLATION-STAGE-2    comment "<br>: leaves"
//!     iifname <br> oifname <br> drop                             comment "<br>: isolated" }
//!   chain CNI-ISOLATION-STAGE-2 { oifname <br> drop              comment "<br>: enters" }
//! }
//! ```
//!
//! The per-address rules also carry the owner TLV portmap uses (network, interface and
//! container hashed), so DEL finds them without `prevResult` and GC finds a network's rules.
//! An `accept` here ends only this table's chain: unlike iptables' `CNI-FORWARD`, it cannot
//! overrule a `drop` in another table's forward chain (nftables evaluates every base chain).
//! Isolation rules stay after DEL, as in the reference (the bridge may be shared).
//!
//! ADD lists the table once and applies one batch; DEL and GC list `CNI-FORWARD` once and
//! apply one batch; CHECK only reads.

use super::iptables::{PRIV_CHAIN, STAGE1, STAGE2};
use super::{IngressPolicy, Owner, Rules};
use crate::netfilter::IpFamily;
use crate::netfilter::masq::nftables::{hash_for_instance, hash_for_network};
use crate::netfilter::nftables::expr::{
    self, AddrField, CT_STATE_ESTABLISHED, CT_STATE_RELATED, CmpOp, Expr, Verdict,
};
use crate::netfilter::nftables::socket::udata_tlv;
use crate::netfilter::nftables::{BaseChain, Batch, Chain, Hook, NfFamily, Nft, RuleInfo, Table};
use crate::netfilter::portmap::nftables::{OWNER_TLV, owner_udata};
use crate::types::Attachment;
use anyhow::{Result, bail};
use ipnet::IpNet;
use std::collections::HashSet;

/// The table name (family `inet`).
pub const TABLE: &str = "cni_plugins_firewall";
/// The base chain on the forward hook.
pub const FORWARD: &str = "forward";
const TABLE_COMMENT: &str = "CNI firewall plugin";

/// The table.
pub fn table() -> Table {
    Table::new(NfFamily::Inet, TABLE)
}

fn regular(name: &str) -> Chain<'_> {
    Chain {
        name,
        base: None,
        comment: None,
    }
}

fn jump(to: &str) -> Expr {
    expr::verdict(&Verdict::Jump(to.into()))
}

/// The two per-address rules of `ip` (a host prefix).
pub fn ip_rules(ip: &IpNet) -> [Vec<Expr>; 2] {
    let v6 = IpFamily::of(ip) == IpFamily::V6;
    let mut to = expr::nfproto(v6);
    to.extend(expr::addr_match(AddrField::Daddr, CmpOp::Eq, ip));
    to.extend(expr::ct_state_match(
        CT_STATE_ESTABLISHED | CT_STATE_RELATED,
    ));
    to.push(expr::verdict(&Verdict::Accept));
    let mut from = expr::nfproto(v6);
    from.extend(expr::addr_match(AddrField::Saddr, CmpOp::Eq, ip));
    from.push(expr::verdict(&Verdict::Accept));
    [to, from]
}

/// The isolation rules of `bridge` as `(chain, comment, expressions)`.
pub fn isolation_rules(bridge: &str, isolated: bool) -> Vec<(&'static str, String, Vec<Expr>)> {
    let mut leaves = expr::iifname_match(bridge);
    leaves.extend(expr::oifname_match(CmpOp::Neq, bridge));
    leaves.push(jump(STAGE2));
    let mut out = vec![(STAGE1, format!("{bridge}: leaves"), leaves)];
    if isolated {
        let mut within = expr::iifname_match(bridge);
        within.extend(expr::oifname_match(CmpOp::Eq, bridge));
        within.push(expr::verdict(&Verdict::Drop));
        out.push((STAGE1, format!("{bridge}: isolated"), within));
    }
    let mut enters = expr::oifname_match(CmpOp::Eq, bridge);
    enters.push(expr::verdict(&Verdict::Drop));
    out.push((STAGE2, format!("{bridge}: enters"), enters));
    out
}

/// What of the table is in place, from one listing.
struct Present {
    rules: Vec<RuleInfo>,
}

impl Present {
    fn jumps(&self, chain: &str, to: &str) -> bool {
        let target = Some(Verdict::Jump(to.into()));
        self.rules
            .iter()
            .any(|r| r.chain == chain && r.exprs.last().and_then(|e| e.verdict()) == target)
    }

    fn commented(&self, chain: &str, comment: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.chain == chain && r.comment.as_deref() == Some(comment))
    }

    fn owned_by<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a RuleInfo> + 'a {
        self.rules.iter().filter(move |r| {
            r.chain == PRIV_CHAIN && udata_tlv(&r.udata, OWNER_TLV) == Some(owner.as_bytes())
        })
    }
}

fn owner_hash(o: &Owner<'_>) -> String {
    hash_for_instance(o.network, o.ifname, o.container_id)
}

/// The ADD batch for `r` on top of what is `present`: the skeleton where missing, this
/// owner's old per-address rules replaced, isolation rules where missing.
fn add_batch(p: &Present, r: &Rules<'_>) -> Batch {
    let t = table();
    let mut b = Batch::new();
    if !p.jumps(FORWARD, PRIV_CHAIN) {
        b.add_table(&t, Some(TABLE_COMMENT));
        let base = BaseChain {
            kind: "filter",
            hook: Hook::Forward,
            priority: 0,
        };
        let forward = Chain {
            name: FORWARD,
            base: Some(base),
            comment: None,
        };
        b.add_chain(&t, &forward);
        b.add_chain(&t, &regular(PRIV_CHAIN));
        b.prepend_rule(&t, FORWARD, &[jump(PRIV_CHAIN)], None);
    }
    if !p.jumps(PRIV_CHAIN, r.admin_chain) {
        b.add_chain(&t, &regular(r.admin_chain));
        b.prepend_rule(&t, PRIV_CHAIN, &[jump(r.admin_chain)], None);
    }
    let owner = owner_hash(&r.owner);
    for old in p.owned_by(&owner) {
        b.delete_rule(&t, PRIV_CHAIN, old.handle);
    }
    let udata = owner_udata(r.owner.network, r.owner.ifname, r.owner.container_id);
    for ip in &r.ips {
        for e in ip_rules(ip) {
            b.add_rule_udata(&t, PRIV_CHAIN, &e, &udata, Some(r.owner.container_id));
        }
    }
    if let Some(bridge) = r.isolated_bridge() {
        if !p.jumps(FORWARD, STAGE1) {
            b.add_chain(&t, &regular(STAGE1));
            b.add_chain(&t, &regular(STAGE2));
            b.prepend_rule(&t, FORWARD, &[jump(STAGE1)], None);
        }
        for (chain, comment, e) in isolation_rules(bridge, r.policy == IngressPolicy::Isolated) {
            if !p.commented(chain, &comment) {
                b.add_rule(&t, chain, &e, Some(&comment));
            }
        }
    }
    b
}

fn list(nft: &mut Nft, chain: Option<&str>) -> Result<Present> {
    Ok(Present {
        rules: nft.list_rules(&table(), chain)?,
    })
}

/// Installs the rules of `r` with one listing and one batch.
pub fn add(r: &Rules<'_>) -> Result<()> {
    let mut nft = Nft::new()?;
    let p = list(&mut nft, None)?;
    nft.apply(&add_batch(&p, r))
}

/// Fails unless everything [`add`] makes for `r` is there; reads only.
pub fn check(r: &Rules<'_>) -> Result<()> {
    let p = list(&mut Nft::new()?, None)?;
    if !p.jumps(FORWARD, PRIV_CHAIN) {
        bail!("nftables: no jump to {PRIV_CHAIN} in table inet {TABLE} chain {FORWARD}");
    }
    if !p.jumps(PRIV_CHAIN, r.admin_chain) {
        bail!(
            "nftables: no jump to admin chain {} in {PRIV_CHAIN}",
            r.admin_chain
        );
    }
    let owner = owner_hash(&r.owner);
    let mine: Vec<&RuleInfo> = p.owned_by(&owner).collect();
    for ip in &r.ips {
        for field in [AddrField::Daddr, AddrField::Saddr] {
            let found = mine
                .iter()
                .any(|rule| expr::matched_addr(&rule.exprs, field) == Some(ip.addr()));
            if !found {
                bail!("nftables: rule for {ip} ({field:?}) of this container not found");
            }
        }
    }
    if let Some(bridge) = r.isolated_bridge() {
        for (chain, comment, _) in isolation_rules(bridge, r.policy == IngressPolicy::Isolated) {
            if !p.commented(chain, &comment) {
                bail!("nftables: isolation rule {comment:?} not found in {chain}");
            }
        }
    }
    Ok(())
}

/// Deletes the per-address rules of `owner`; a missing table is success.
pub fn teardown(owner: &Owner<'_>) -> Result<()> {
    let mut nft = Nft::new()?;
    let p = list(&mut nft, Some(PRIV_CHAIN))?;
    let mut b = Batch::new();
    for r in p.owned_by(&owner_hash(owner)) {
        b.delete_rule(&table(), PRIV_CHAIN, r.handle);
    }
    nft.apply(&b)
}

/// Deletes the per-address rules of attachments to `network` not in `valid`.
pub fn gc(network: &str, valid: &[Attachment]) -> Result<()> {
    let mut nft = Nft::new()?;
    let p = list(&mut nft, Some(PRIV_CHAIN))?;
    let prefix = format!("{}-", hash_for_network(network));
    let keep: HashSet<String> = valid
        .iter()
        .map(|a| hash_for_instance(network, &a.ifname, &a.container_id))
        .collect();
    let mut b = Batch::new();
    for r in &p.rules {
        let Some(owner) = udata_tlv(&r.udata, OWNER_TLV) else {
            continue;
        };
        let owner = String::from_utf8_lossy(owner);
        if owner.starts_with(&prefix) && !keep.contains(owner.as_ref()) {
            b.delete_rule(&table(), PRIV_CHAIN, r.handle);
        }
    }
    nft.apply(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules<'static> {
        Rules {
            owner: Owner {
                network: "n",
                container_id: "c",
                ifname: "eth0",
            },
            ips: vec![
                "10.0.0.2/32".parse().unwrap(),
                "fd00::2/128".parse().unwrap(),
            ],
            admin_chain: "CNI-ADMIN",
            policy: IngressPolicy::Isolated,
            bridge: Some("cni0"),
        }
    }

    fn described(b: &Batch) -> Vec<String> {
        (0..b.len())
            .map(|i| b.describe(i).unwrap().to_string())
            .collect()
    }

    #[test]
    fn first_add_builds_skeleton_rules_and_isolation() {
        let b = add_batch(&Present { rules: vec![] }, &rules());
        let t = "cni_plugins_firewall";
        let want = [
            format!("add table {t}"),
            format!("add chain {t} forward"),
            format!("add chain {t} CNI-FORWARD"),
            format!("insert rule {t} forward"),
            format!("add chain {t} CNI-ADMIN"),
            format!("insert rule {t} CNI-FORWARD"),
            format!("add rule {t} CNI-FORWARD (c)"),
            format!("add rule {t} CNI-FORWARD (c)"),
            format!("add rule {t} CNI-FORWARD (c)"),
            format!("add rule {t} CNI-FORWARD (c)"),
            format!("add chain {t} CNI-ISOLATION-STAGE-1"),
            format!("add chain {t} CNI-ISOLATION-STAGE-2"),
            format!("insert rule {t} forward"),
            format!("add rule {t} CNI-ISOLATION-STAGE-1 (cni0: leaves)"),
            format!("add rule {t} CNI-ISOLATION-STAGE-1 (cni0: isolated)"),
            format!("add rule {t} CNI-ISOLATION-STAGE-2 (cni0: enters)"),
        ];
        assert_eq!(described(&b), want);
    }

    #[test]
    fn isolation_rules_per_policy() {
        let names = |iso| {
            isolation_rules("br1", iso)
                .into_iter()
                .map(|(c, m, _)| format!("{c} {m}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(false),
            [
                "CNI-ISOLATION-STAGE-1 br1: leaves",
                "CNI-ISOLATION-STAGE-2 br1: enters"
            ]
        );
        assert_eq!(names(true).len(), 3);
    }
}
