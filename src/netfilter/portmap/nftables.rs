//! Port forwarding with nftables, in the reference's layout (`portmap_nftables.go`), one
//! table per family:
//!
//! ```text
//! table ip|ip6 cni_hostport {                                   comment "CNI portmap plugin"
//!   chain hostports { [cond] [ip daddr <hostIP>] tcp dport 8080 dnat to 10.0.0.2:80 comment "<cid>" }
//!   chain hostip_hostports { }                          (legacy, kept; its rules are torn down)
//!   chain hostports_all { jump hostip_hostports; jump hostports }
//!   chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump hostports_all }
//!   chain output { type nat hook output priority dstnat; fib daddr type local jump hostports_all }
//!   chain masquerading { type nat hook postrouting priority srcnat;
//!     ip saddr <cip | 0.0.0.0/0 if masqAll> ip daddr <cip> masquerade comment "<cid>"
//!     ip saddr 127.0.0.1 ip daddr <cip> masquerade comment "<cid>"       (v4, not masqAll) }
//! }
//! ```
//!
//! Differences from the reference: `conditionsV4/V6` go into each container's DNAT rules, not
//! into the shared base chains (where the last ADD set them for everybody); and every rule
//! carries, next to its comment, a private userdata TLV naming its network and interface
//! (`nft` skips TLV types it does not know), which lets DEL spare the same container's rules
//! on another network and lets GC find a network's rules at all. Rules without that TLV
//! (made by the reference) are removed by container ID alone, as the reference does.
//!
//! ADD reads only the three small shared chains and applies one atomic batch, so its cost
//! does not depend on how many mappings exist; DEL and GC list the table once per family.

use super::conditions;
use super::{Forward, Owner, Proto, Removed, Snat};
use crate::netfilter::IpFamily;
use crate::netfilter::masq::nftables::{hash_for_instance, hash_for_network};
use crate::netfilter::nftables::batch::comment_udata;
use crate::netfilter::nftables::expr::{
    self, AddrField, BASE_TRANSPORT, CmpOp, DecodedExpr, Expr, REG_1, REG_2, Verdict,
};
use crate::netfilter::nftables::socket::udata_tlv;
use crate::netfilter::nftables::{BaseChain, Batch, Chain, Hook, NfFamily, Nft, RuleInfo, Table};
use crate::types::Attachment;
use anyhow::{Result, bail};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;

/// The table name (one per family).
pub const TABLE: &str = "cni_hostport";
/// The regular chain holding every DNAT rule.
pub const HOSTPORTS: &str = "hostports";
/// The legacy chain once used for rules with a host IP; kept and cleaned, never filled.
pub const HOSTIP_HOSTPORTS: &str = "hostip_hostports";
/// The chain the base chains jump to.
pub const HOSTPORTS_ALL: &str = "hostports_all";
/// The base chain holding the masquerade rules.
pub const MASQUERADING: &str = "masquerading";
const TABLE_COMMENT: &str = "CNI portmap plugin";
/// Our private userdata TLV type: `<network hash>-<instance hash>` of the rule's owner.
pub const OWNER_TLV: u8 = 0xc1;
/// `NFT_NAT_DNAT`.
const NAT_DNAT: u32 = 1;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`, which nft sets on `dnat to <ip>:<port>`.
const NAT_PROTO_SPECIFIED: u32 = 2;
/// `RTN_LOCAL`, the route type `fib daddr type local` compares with.
const RTN_LOCAL: u32 = 2;
const NFTA_META_KEY: u16 = 2;

/// The table of `family`.
pub fn table(family: IpFamily) -> Table {
    match family {
        IpFamily::V4 => Table::new(NfFamily::Ip, TABLE),
        IpFamily::V6 => Table::new(NfFamily::Ip6, TABLE),
    }
}

/// The userdata of every rule of one attachment: the container ID as comment, the owner TLV.
pub fn owner_udata(network: &str, ifname: &str, container_id: &str) -> Vec<u8> {
    let mut u = comment_udata(container_id);
    let owner = hash_for_instance(network, ifname, container_id);
    u.extend([OWNER_TLV, owner.len() as u8]);
    u.extend(owner.as_bytes());
    u
}

/// The owner TLV of a rule read back, if it has one.
fn owner_of(r: &RuleInfo) -> Option<String> {
    udata_tlv(&r.udata, OWNER_TLV).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// `meta l4proto <p> th dport <port>` as nft encodes `tcp dport <port>`.
fn dport_match(proto: Proto, port: u16) -> Vec<Expr> {
    vec![
        expr::meta(expr::META_L4PROTO, REG_1),
        expr::cmp(CmpOp::Eq, REG_1, &[proto.number()]),
        expr::payload(BASE_TRANSPORT, 2, 2, REG_1),
        expr::cmp(CmpOp::Eq, REG_1, &port.to_be_bytes()),
    ]
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `dnat to <ip>:<port>`.
fn dnat_to(ip: IpAddr, port: u16) -> Vec<Expr> {
    let family = match ip {
        IpAddr::V4(_) => expr::NFPROTO_IPV4,
        IpAddr::V6(_) => expr::NFPROTO_IPV6,
    };
    vec![
        expr::immediate(REG_1, &octets(ip)),
        expr::immediate(REG_2, &port.to_be_bytes()),
        expr::nat(NAT_DNAT, family, REG_1, Some(REG_2), NAT_PROTO_SPECIFIED),
    ]
}

/// The DNAT rules of `f` (conditions compiled once), one per mapping of its family.
pub fn dnat_rules(f: &Forward<'_>) -> Result<Vec<Vec<Expr>>> {
    let conds = conditions::compile(f.conditions, f.family())?;
    let mut out = Vec::new();
    for m in f.mappings {
        let Some(host_ip) = m.target_for(f.family()) else {
            continue;
        };
        let mut e = conds.clone();
        if let Some(ip) = host_ip {
            e.extend(expr::addr_match(
                AddrField::Daddr,
                CmpOp::Eq,
                &IpNet::from(ip),
            ));
        }
        e.extend(dport_match(m.proto, m.host_port));
        e.extend(dnat_to(f.container.addr(), m.container_port));
        out.push(e);
    }
    Ok(out)
}

/// The masquerade rules of `f` (none without snat): hairpin, and localhost for IPv4.
pub fn masq_rules(f: &Forward<'_>) -> Vec<Vec<Expr>> {
    if matches!(f.snat, Snat::Off) {
        return Vec::new();
    }
    let cip = IpNet::from(f.container.addr());
    let any: IpNet = match f.family() {
        IpFamily::V4 => "0.0.0.0/0".parse().expect("literal"),
        IpFamily::V6 => "::/0".parse().expect("literal"),
    };
    let rule = |src: &IpNet| {
        let mut e = expr::addr_match(AddrField::Saddr, CmpOp::Eq, src);
        e.extend(expr::addr_match(AddrField::Daddr, CmpOp::Eq, &cip));
        e.push(expr::masq());
        e
    };
    let mut out = vec![rule(if f.masq_all { &any } else { &cip })];
    if f.family() == IpFamily::V4 && !f.masq_all {
        out.push(rule(&"127.0.0.1/32".parse().expect("literal")));
    }
    out
}

fn nat_chain(name: &str, hook: Hook, priority: i32) -> Chain<'_> {
    Chain {
        name,
        base: Some(BaseChain {
            kind: "nat",
            hook,
            priority,
        }),
        comment: None,
    }
}

/// What of the shared skeleton is already in place, as [`skeleton`] writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace {
    /// The table, its chains and the jump rules of `prerouting`, `output`, `hostports_all`.
    pub jumps: bool,
    /// The `masquerading` base chain.
    pub masquerading: bool,
}

impl InPlace {
    /// Nothing is known to be there: write it all.
    pub const NOTHING: InPlace = InPlace {
        jumps: false,
        masquerading: false,
    };
}

/// The shared skeleton: table, chains and jump rules (flushed and written anew), unless
/// already in place. Existing objects are not re-added: re-adding a chain is an update
/// transaction, and any update or deletion makes the kernel wait for an RCU grace period
/// when the socket closes (about 10 ms here), the main cost of an nftables ADD otherwise.
fn skeleton(b: &mut Batch, t: &Table, snat: bool, in_place: InPlace) {
    let masquerading = snat && !in_place.masquerading;
    if in_place.jumps {
        if masquerading {
            b.add_chain(t, &nat_chain(MASQUERADING, Hook::Postrouting, 100));
        }
        return;
    }
    b.add_table(t, Some(TABLE_COMMENT));
    for name in [HOSTPORTS, HOSTIP_HOSTPORTS, HOSTPORTS_ALL] {
        let c = Chain {
            name,
            base: None,
            comment: None,
        };
        b.add_chain(t, &c);
    }
    for (name, hook) in [("prerouting", Hook::Prerouting), ("output", Hook::Output)] {
        b.add_chain(t, &nat_chain(name, hook, -100));
    }
    if masquerading {
        b.add_chain(t, &nat_chain(MASQUERADING, Hook::Postrouting, 100));
    }
    b.flush_chain(t, HOSTPORTS_ALL);
    for to in [HOSTIP_HOSTPORTS, HOSTPORTS] {
        b.add_rule(
            t,
            HOSTPORTS_ALL,
            &[expr::verdict(&Verdict::Jump(to.into()))],
            None,
        );
    }
    for name in ["prerouting", "output"] {
        b.flush_chain(t, name);
        let e = [
            expr::fib(expr::FIB_F_DADDR, expr::FIB_RESULT_ADDRTYPE, REG_1),
            expr::cmp(CmpOp::Eq, REG_1, &RTN_LOCAL.to_ne_bytes()),
            expr::verdict(&Verdict::Jump(HOSTPORTS_ALL.into())),
        ];
        b.add_rule(t, name, &e, None);
    }
}

/// What of the skeleton is in place: three one- or two-rule chains are read and one chain
/// looked up, whatever the number of mappings.
fn in_place(nft: &mut Nft, t: &Table) -> Result<InPlace> {
    Ok(InPlace {
        jumps: jumps_in_place(nft, t)?,
        masquerading: nft.chain_exists(t, MASQUERADING)?,
    })
}

/// True when the shared jump rules are exactly what [`skeleton`] writes.
fn jumps_in_place(nft: &mut Nft, t: &Table) -> Result<bool> {
    if !all_jumps_ok(&nft.list_rules(t, Some(HOSTPORTS_ALL))?) {
        return Ok(false);
    }
    for base in ["prerouting", "output"] {
        if !base_jump_ok(&nft.list_rules(t, Some(base))?) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn jump(to: &str) -> Option<Verdict> {
    Some(Verdict::Jump(to.into()))
}

/// True when the rules of `HOSTPORTS_ALL` are exactly its two one-verdict jumps. A rule the
/// kernel dumps without expressions is simply not one of them.
fn all_jumps_ok(rules: &[RuleInfo]) -> bool {
    let one_verdict = |r: &RuleInfo| match r.exprs.as_slice() {
        [e] => e.verdict(),
        _ => None,
    };
    let targets: Vec<Option<Verdict>> = rules.iter().map(one_verdict).collect();
    targets == [jump(HOSTIP_HOSTPORTS), jump(HOSTPORTS)]
}

/// True when a base chain holds just the `fib daddr type local` jump to `HOSTPORTS_ALL`.
fn base_jump_ok(rules: &[RuleInfo]) -> bool {
    matches!(rules, [r] if r.exprs.len() == 3
        && r.exprs[0].name == "fib"
        && r.exprs[2].verdict() == jump(HOSTPORTS_ALL))
}

/// The whole ADD transaction for `f`, on top of what is `in_place`.
pub fn forward_batch(f: &Forward<'_>, in_place: InPlace) -> Result<Batch> {
    if let Snat::ExternalChain(c) = f.snat {
        bail!("externalSetMarkChain ({c}) is for the iptables backend only");
    }
    let t = table(f.family());
    let mut b = Batch::new();
    let snat = !matches!(f.snat, Snat::Off);
    skeleton(&mut b, &t, snat, in_place);
    let udata = owner_udata(f.network, f.ifname, f.container_id);
    for e in dnat_rules(f)? {
        b.add_rule_udata(&t, HOSTPORTS, &e, &udata, Some(f.container_id));
    }
    for e in masq_rules(f) {
        b.add_rule_udata(&t, MASQUERADING, &e, &udata, Some(f.container_id));
    }
    Ok(b)
}

/// Installs the forwarding of `f` in one transaction.
pub fn forward(nft: &mut Nft, f: &Forward<'_>) -> Result<()> {
    let present = in_place(nft, &table(f.family()))?;
    nft.apply(&forward_batch(f, present)?)
}

/// Fails unless the chains hold at least as many rules of this container as `f` makes (the
/// reference's CHECK).
pub fn check(nft: &mut Nft, f: &Forward<'_>) -> Result<()> {
    let t = table(f.family());
    for (chain, want) in [
        (HOSTPORTS, dnat_rules(f)?.len()),
        (MASQUERADING, masq_rules(f).len()),
    ] {
        if want == 0 {
            continue;
        }
        let found = nft
            .list_rules(&t, Some(chain))?
            .iter()
            .filter(|r| r.comment.as_deref() == Some(f.container_id))
            .count();
        if found < want {
            bail!(
                "missing hostport rules in {TABLE} {chain}: {found} of {want} for this container"
            );
        }
    }
    Ok(())
}

/// The `(protocol, destination port)` a rule matches (`tcp dport 8080`), if any.
pub fn dport_of(exprs: &[DecodedExpr]) -> Option<(Proto, u16)> {
    let proto = exprs.windows(2).find_map(|w| {
        let is_l4 = w[0].name == "meta" && w[0].u32(NFTA_META_KEY) == Some(expr::META_L4PROTO);
        match (is_l4, w[1].name.as_str(), w[1].value(3)) {
            (true, "cmp", Some(v)) if v.len() == 1 => Proto::from_number(v[0]),
            _ => None,
        }
    })?;
    let port = exprs.windows(2).find_map(|w| {
        let dport = w[0].name == "payload"
            && w[0].u32(2) == Some(BASE_TRANSPORT)
            && w[0].u32(3) == Some(2)
            && w[0].u32(4) == Some(2);
        match (dport, w[1].name.as_str(), w[1].value(3)) {
            (true, "cmp", Some(v)) if v.len() == 2 => Some(u16::from_be_bytes([v[0], v[1]])),
            _ => None,
        }
    })?;
    Some((proto, port))
}

/// Deletes `rules` of `family` in one transaction and notes the UDP ports they forwarded.
fn delete_rules(
    nft: &mut Nft,
    family: IpFamily,
    rules: &[RuleInfo],
    removed: &mut Removed,
) -> Result<()> {
    let t = table(family);
    let mut b = Batch::new();
    for r in rules {
        if r.chain != MASQUERADING
            && let Some((Proto::Udp, port)) = dport_of(&r.exprs)
        {
            removed.add_udp(family, port);
        }
        b.delete_rule(&t, &r.chain, r.handle);
    }
    nft.apply(&b)
}

fn torn_down_chain(r: &RuleInfo) -> bool {
    [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING].contains(&r.chain.as_str())
}

/// Removes the rules of `owner` in both families: those with its container ID as comment,
/// except rules that name another network or interface as their owner.
pub fn teardown(nft: &mut Nft, owner: &Owner<'_>, removed: &mut Removed) -> Result<()> {
    let mine = hash_for_instance(owner.network, owner.ifname, owner.container_id);
    for family in [IpFamily::V4, IpFamily::V6] {
        let rules: Vec<RuleInfo> = nft
            .list_rules(&table(family), None)?
            .into_iter()
            .filter(|r| torn_down_chain(r) && r.comment.as_deref() == Some(owner.container_id))
            .filter(|r| owner_of(r).is_none_or(|o| o == mine))
            .collect();
        delete_rules(nft, family, &rules, removed)?;
    }
    Ok(())
}

/// Removes the rules of `network` (known by their owner TLV) whose attachment is not in
/// `valid`. Rules without an owner (made by the reference) are left alone: their network is
/// unknown.
pub fn gc(nft: &mut Nft, network: &str, valid: &[Attachment], removed: &mut Removed) -> Result<()> {
    let keep: HashSet<String> = valid
        .iter()
        .map(|a| hash_for_instance(network, &a.ifname, &a.container_id))
        .collect();
    let net_prefix = format!("{}-", hash_for_network(network));
    for family in [IpFamily::V4, IpFamily::V6] {
        let rules: Vec<RuleInfo> = nft
            .list_rules(&table(family), None)?
            .into_iter()
            .filter(|r| {
                torn_down_chain(r)
                    && owner_of(r).is_some_and(|o| o.starts_with(&net_prefix) && !keep.contains(&o))
            })
            .collect();
        delete_rules(nft, family, &rules, removed)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "nftables_tests.rs"]
mod tests;
