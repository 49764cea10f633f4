//! Port forwarding with iptables, in the reference's layout (`portmap_iptables.go`,
//! `chain.go`), table `nat` of the container address's family:
//!
//! ```text
//! -A PREROUTING  -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT          (appended once)
//! -A OUTPUT      -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT          (appended once)
//! -A CNI-HOSTPORT-DNAT [cond] -p tcp -m comment --comment "dnat name: \"<net>\" id: \"<cid>\""
//!      -m multiport --dports 8080,8081 [cond] -j CNI-DN-<21 hex>    (per protocol, ≤ 15 ports)
//! -A CNI-DN-… -s <container subnet> -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK (hairpin)
//! -A CNI-DN-… -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK  (v4 localhost)
//! -A CNI-DN-… -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80
//! -A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark"
//!      -j MARK --set-xmark 0x2000/0x2000
//! -I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
//! -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
//! ```
//!
//! Rules are written in the form `iptables-save` prints them, so what is there compares
//! equal to what is wanted. Every forward is one `iptables-restore` run: the per-container
//! chain is rewritten whole (declaring an existing chain flushes it) and its entry rules
//! replaced, so a repeated ADD leaves no duplicates (the reference appends missing rules).
//! Forward, teardown and GC hold [`lock::exclusive`] from save to restore, so concurrent runs
//! never plan on each other's stale snapshots (see `lock.rs`).
//! Teardown removes the chain and every rule jumping to it, wherever it is, plus the legacy
//! `CNI-SN-…` chain; the top-level chains stay, as in the reference.

use super::{Forward, Mapping, Owner, Proto, Removed, Snat, lock};
use crate::netfilter::IpFamily;
use crate::netfilter::iptables::{Change, Iptables, Rule, Saved};
use crate::netfilter::naming::chain_name_with_prefix;
use crate::netfilter::nftables::{NfFamily, Nft, Table};
use crate::types::Attachment;
use anyhow::{Result, bail};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;

/// The table everything lives in.
pub const TABLE: &str = "nat";
/// The shared chain the entry rules of every container live in.
pub const TOP_DNAT: &str = "CNI-HOSTPORT-DNAT";
/// The shared chain that marks a connection for masquerading.
pub const SETMARK: &str = "CNI-HOSTPORT-SETMARK";
/// The shared chain that masquerades marked connections.
pub const MASQ: &str = "CNI-HOSTPORT-MASQ";
/// The entry chain of the legacy per-container SNAT chains (torn down only).
pub const OLD_TOP_SNAT: &str = "CNI-HOSTPORT-SNAT";
const ENTRY_CHAINS: [&str; 2] = ["PREROUTING", "OUTPUT"];
/// multiport takes at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;
/// The longest iptables comment.
const COMMENT_MAX: usize = 255;

/// The per-container DNAT chain, `CNI-DN-` + hash of network and container ID.
pub fn dnat_chain(network: &str, container_id: &str) -> String {
    chain_name_with_prefix(network, container_id, "DN-")
}

/// The legacy per-container SNAT chain, `CNI-SN-` + hash.
pub fn old_snat_chain(network: &str, container_id: &str) -> String {
    chain_name_with_prefix(network, container_id, "SN-")
}

/// `dnat name: "<net>" id: "<cid>"` (plain `%s`, not Go-quoted), cut to 255 bytes with
/// `...` as the reference's `trimComment`.
pub fn dnat_comment(network: &str, container_id: &str) -> String {
    let c = format!("dnat name: \"{network}\" id: \"{container_id}\"");
    if c.len() <= COMMENT_MAX {
        return c;
    }
    let mut end = COMMENT_MAX - 3;
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &c[..end])
}

fn rule(chain: &str, args: &[&str]) -> Rule {
    Rule::new(chain, args.iter().copied())
}

/// `0x2000/0x2000` for bit 13 (Go's `%#x/%#x`).
pub fn mark_of(bit: u8) -> String {
    let v = 1u32 << bit;
    format!("{v:#x}/{v:#x}")
}

/// The entry rule of the shared DNAT chain in PREROUTING or OUTPUT.
pub fn top_entry(chain: &str) -> Rule {
    rule(
        chain,
        &["-m", "addrtype", "--dst-type", "LOCAL", "-j", TOP_DNAT],
    )
}

/// The one rule of `CNI-HOSTPORT-SETMARK`.
pub fn setmark_rule(bit: u8) -> Rule {
    let mark = mark_of(bit);
    rule(
        SETMARK,
        &[
            "-m",
            "comment",
            "--comment",
            "CNI portfwd masquerade mark",
            "-j",
            "MARK",
            "--set-xmark",
            &mark,
        ],
    )
}

/// The one rule of `CNI-HOSTPORT-MASQ`.
pub fn masq_rule(bit: u8) -> Rule {
    let mark = mark_of(bit);
    rule(MASQ, &["-m", "mark", "--mark", &mark, "-j", "MASQUERADE"])
}

/// The POSTROUTING rule leading to `CNI-HOSTPORT-MASQ` (inserted first).
pub fn masq_entry() -> Rule {
    rule(
        "POSTROUTING",
        &[
            "-m",
            "comment",
            "--comment",
            "CNI portfwd requiring masquerade",
            "-j",
            MASQ,
        ],
    )
}

/// A bare address as iptables-save prints it (`/32`, `/128`), a prefix truncated.
fn save_net(net: &IpNet) -> String {
    net.trunc().to_string()
}

/// The rules of the per-container chain for `f`, in order: per mapping, the hairpin and
/// localhost marks (when masquerading) and the DNAT.
pub fn chain_rules(f: &Forward<'_>, chain: &str) -> Vec<Rule> {
    let family = f.family();
    let mark_chain = match f.snat {
        Snat::Off => None,
        Snat::MarkBit(_) => Some(SETMARK),
        Snat::ExternalChain(c) => Some(c.as_str()),
    };
    let mut out = Vec::new();
    for m in f.mappings {
        let Some(host_ip) = m.target_for(family) else {
            continue;
        };
        let base = |src: Option<String>, target: &[&str]| {
            let mut a: Vec<String> = Vec::new();
            if let Some(s) = src {
                a.extend(["-s".into(), s]);
            }
            if let Some(ip) = host_ip {
                a.extend(["-d".into(), save_net(&IpNet::from(ip))]);
            }
            let p = m.proto.name();
            a.extend(["-p", p, "-m", p, "--dport"].map(String::from));
            a.push(m.host_port.to_string());
            a.push("-j".into());
            a.extend(target.iter().map(|t| t.to_string()));
            Rule::new(chain, a)
        };
        if let Some(mark) = mark_chain {
            // `-s 0.0.0.0/0` (masqAll) is no match at all: iptables-save omits it.
            let hairpin = (!f.masq_all).then(|| save_net(&f.container));
            out.push(base(hairpin, &[mark]));
            if family == IpFamily::V4 && !f.masq_all {
                out.push(base(Some("127.0.0.1/32".into()), &[mark]));
            }
        }
        let to = to_destination(f.container.addr(), m.container_port);
        out.push(base(None, &["DNAT", "--to-destination", &to]));
    }
    out
}

/// `10.0.0.2:80` or `[2001:db8::2]:80`.
pub fn to_destination(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The ports of `mappings` per protocol, protocols sorted, in mapping order, each list cut
/// into multiport-sized pieces. Every mapping counts, whatever its host IP family, as in
/// the reference.
pub fn port_groups(mappings: &[Mapping]) -> Vec<(Proto, String)> {
    let mut protos: Vec<Proto> = mappings.iter().map(|m| m.proto).collect();
    protos.sort_by_key(|p| p.name());
    protos.dedup();
    let mut out = Vec::new();
    for p in protos {
        let ports: Vec<String> = mappings
            .iter()
            .filter(|m| m.proto == p)
            .map(|m| m.host_port.to_string())
            .collect();
        for chunk in ports.chunks(MULTIPORT_MAX) {
            out.push((p, chunk.join(",")));
        }
    }
    out
}

/// The entry rules in `CNI-HOSTPORT-DNAT` for `f`, one per protocol and port group.
pub fn entry_rules(f: &Forward<'_>, chain: &str) -> Vec<Rule> {
    let comment = dnat_comment(f.network, f.container_id);
    let (basic, rest) = hoist_basic(f.conditions);
    port_groups(f.mappings)
        .into_iter()
        .map(|(p, ports)| {
            let mut a = basic.clone();
            a.extend(["-p", p.name(), "-m", "comment", "--comment"].map(String::from));
            a.push(comment.clone());
            a.extend(["-m", "multiport", "--dports"].map(String::from));
            a.push(ports);
            a.extend(rest.iter().cloned());
            a.extend(["-j".to_string(), chain.to_string()]);
            Rule::new(TOP_DNAT, a)
        })
        .collect()
}

/// Splits iptables conditions into the options iptables-save prints first (`[!] -s`, `-d`,
/// `-i`, `-o`, in that order, addresses normalized) and the rest, kept in order.
fn hoist_basic(conditions: &[String]) -> (Vec<String>, Vec<String>) {
    const ORDER: [(&str, &str); 4] = [
        ("-s", "--source"),
        ("-d", "--destination"),
        ("-i", "--in-interface"),
        ("-o", "--out-interface"),
    ];
    let mut found: Vec<(usize, bool, String)> = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < conditions.len() {
        let neg = conditions[i] == "!";
        let at = if neg { i + 1 } else { i };
        let slot = conditions
            .get(at)
            .and_then(|t| ORDER.iter().position(|(s, l)| t == s || t == l));
        match (slot, conditions.get(at + 1)) {
            (Some(slot), Some(value)) => {
                let value = if slot < 2 {
                    value
                        .parse::<IpNet>()
                        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
                        .map(|n| save_net(&n))
                        .unwrap_or_else(|_| value.clone())
                } else {
                    value.clone()
                };
                found.push((slot, neg, value));
                i = at + 2;
            }
            _ => {
                rest.push(conditions[i].clone());
                i += 1;
            }
        }
    }
    found.sort_by_key(|(slot, _, _)| *slot);
    let mut basic = Vec::new();
    for (slot, neg, value) in found {
        if neg {
            basic.push("!".to_string());
        }
        basic.extend([ORDER[slot].0.to_string(), value]);
    }
    (basic, rest)
}

/// The shared chains and rules `f` needs, added to `change` where `saved` lacks them.
fn plan_shared(saved: &Saved, f: &Forward<'_>, change: &mut Change) {
    let ensure_chain = |c: &str, change: &mut Change| {
        if !saved.has_chain(c) {
            change.declare_chain(c);
        }
    };
    if let Snat::MarkBit(bit) = f.snat {
        ensure_chain(SETMARK, change);
        ensure_chain(MASQ, change);
        for r in [setmark_rule(*bit), masq_rule(*bit)] {
            if !saved.contains(&r) {
                change.append(r);
            }
        }
        if !saved.contains(&masq_entry()) {
            change.insert(masq_entry(), 1);
        }
    }
    ensure_chain(TOP_DNAT, change);
    for c in ENTRY_CHAINS {
        if !saved.contains(&top_entry(c)) {
            change.append(top_entry(c));
        }
    }
}

/// The whole change for forwarding `f` on top of `saved`.
pub fn plan_forward(saved: &Saved, f: &Forward<'_>) -> Change {
    let chain = dnat_chain(f.network, f.container_id);
    let mut change = Change::new(TABLE);
    plan_shared(saved, f, &mut change);
    // Declaring the chain creates it or flushes it; its rules are then written anew.
    change.declare_chain(&chain);
    for r in chain_rules(f, &chain) {
        change.append(r);
    }
    let wanted = entry_rules(f, &chain);
    for old in saved.rules_in(TOP_DNAT) {
        if old.target() == Some(chain.as_str()) && !wanted.contains(old) {
            change.delete(old.clone());
        }
    }
    for r in wanted {
        if !saved.contains(&r) {
            change.append(r);
        }
    }
    change
}

/// Installs the forwarding of `f` with one restore.
pub fn forward(ipt: &Iptables, f: &Forward<'_>) -> Result<()> {
    let _held = lock::exclusive()?;
    let saved = ipt.save(TABLE)?;
    ipt.restore(&plan_forward(&saved, f))
}

/// What CHECK finds missing for `f` in `saved`.
pub fn missing(saved: &Saved, f: &Forward<'_>) -> Vec<String> {
    let chain = dnat_chain(f.network, f.container_id);
    if !saved.has_chain(&chain) {
        return vec![format!("chain {chain}")];
    }
    let mut wanted = chain_rules(f, &chain);
    wanted.extend(entry_rules(f, &chain));
    wanted.extend(ENTRY_CHAINS.map(top_entry));
    if let Snat::MarkBit(bit) = f.snat {
        wanted.extend([setmark_rule(*bit), masq_rule(*bit), masq_entry()]);
    }
    wanted
        .into_iter()
        .filter(|r| !saved.contains(r))
        .map(|r| format!("-A {} {}", r.chain, r.spec()))
        .collect()
}

/// Fails unless every rule of `f` is in place.
pub fn check(ipt: &Iptables, f: &Forward<'_>) -> Result<()> {
    let gaps = missing(&ipt.save(TABLE)?, f);
    if !gaps.is_empty() {
        bail!("iptables nat lacks {}", gaps.join("; "));
    }
    Ok(())
}

/// The UDP host ports the DNAT rules of `chain` forward.
fn udp_ports_of(saved: &Saved, chain: &str) -> Vec<u16> {
    saved
        .rules_in(chain)
        .filter(|r| r.target() == Some("DNAT") && r.value_of("-p") == Some("udp"))
        .filter_map(|r| r.value_of("--dport")?.parse().ok())
        .collect()
}

/// Removes `chains` and every rule elsewhere that jumps to one of them. Empty when none of
/// it exists.
pub fn plan_teardown(saved: &Saved, chains: &[String]) -> Change {
    let mut change = Change::new(TABLE);
    for r in &saved.rules {
        let to_ours = r.target().is_some_and(|t| chains.iter().any(|c| c == t));
        if to_ours && !chains.contains(&r.chain) {
            change.delete(r.clone());
        }
    }
    for c in chains.iter().filter(|c| saved.has_chain(c)) {
        change.declare_chain(c);
        change.delete_chain(c);
    }
    change
}

/// Whether the `nat` table of `family` may hold one of `chains`, asked without running
/// `iptables-save`: the iptables-nft tables (`ip nat`, `ip6 nat`) are asked over netlink, and
/// a legacy `nat` table counts as "maybe" whenever it exists in this netns. Errors count as
/// "maybe" too. Keeps DEL with the nftables backend from paying two iptables runs.
pub fn may_hold(family: IpFamily, chains: &[String]) -> bool {
    let names = match family {
        IpFamily::V4 => "/proc/thread-self/net/ip_tables_names",
        IpFamily::V6 => "/proc/thread-self/net/ip6_tables_names",
    };
    let legacy = std::fs::read_to_string(names).is_ok_and(|t| t.lines().any(|l| l == TABLE));
    if legacy {
        return true;
    }
    let nf_family = match family {
        IpFamily::V4 => NfFamily::Ip,
        IpFamily::V6 => NfFamily::Ip6,
    };
    let table = Table::new(nf_family, TABLE);
    let Ok(mut nft) = Nft::new() else {
        return true;
    };
    chains
        .iter()
        .any(|c| nft.chain_exists(&table, c).unwrap_or(true))
}

/// Removes the forwarding of `owner` in this family; notes the UDP ports it forwarded.
pub fn teardown(ipt: &Iptables, owner: &Owner<'_>, removed: &mut Removed) -> Result<()> {
    let chains = [
        dnat_chain(owner.network, owner.container_id),
        old_snat_chain(owner.network, owner.container_id),
    ];
    if !may_hold(ipt.family(), &chains) {
        return Ok(());
    }
    let _held = lock::exclusive()?;
    let saved = ipt.save(TABLE)?;
    for port in udp_ports_of(&saved, &chains[0]) {
        removed.add_udp(ipt.family(), port);
    }
    ipt.restore(&plan_teardown(&saved, &chains))
}

/// The DNAT chains of `network` in `saved` (found through their entry rules' comment) that
/// belong to none of `valid`.
pub fn stale_chains(saved: &Saved, network: &str, valid: &[Attachment]) -> Vec<String> {
    let keep: HashSet<String> = valid
        .iter()
        .map(|a| dnat_chain(network, &a.container_id))
        .collect();
    let prefix = format!("dnat name: \"{network}\" id: \"");
    let mut out: Vec<String> = Vec::new();
    for r in saved.rules_in(TOP_DNAT) {
        let ours = r
            .value_of("--comment")
            .is_some_and(|c| c.starts_with(&prefix));
        if let (true, Some(t)) = (ours, r.target())
            && t.starts_with("CNI-DN-")
            && !keep.contains(t)
            && !out.iter().any(|c| c == t)
        {
            out.push(t.to_string());
        }
    }
    out
}

/// Removes the forwarding of every attachment to `network` not in `valid`.
pub fn gc(
    ipt: &Iptables,
    network: &str,
    valid: &[Attachment],
    removed: &mut Removed,
) -> Result<()> {
    let _held = lock::exclusive()?;
    let saved = ipt.save(TABLE)?;
    let stale = stale_chains(&saved, network, valid);
    for c in &stale {
        for port in udp_ports_of(&saved, c) {
            removed.add_udp(ipt.family(), port);
        }
    }
    ipt.restore(&plan_teardown(&saved, &stale))
}

#[cfg(test)]
#[path = "iptables_tests.rs"]
mod tests;
