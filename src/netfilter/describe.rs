//! Reads back, for people, the netfilter rules one attachment owns in the calling thread's
//! netns: its ipMasq rules in both backends (the nftables `masq_checks` rules whose comment
//! names the instance; the iptables `CNI-<hash>` chain and the `POSTROUTING` jumps into it).
//! The runtime tool's readable ADD summary lists them, and its DEL says whether any are left.
//!
//! Nothing here runs the `nft` binary: nftables rules come from our own netlink dump and are
//! rendered in `nft`'s words; iptables rules come from `iptables-save` (the tool that backend
//! writes with), without their comment, and only when the `nat` table may hold the chain (asked
//! over netlink: no exec otherwise). The reference has no such view.

use super::IpFamily;
use super::iptables::{Iptables, Saved};
use super::masq::{iptables as masq_ipt, nftables as masq_nft};
use super::naming::chain_name;
use super::nftables::{AddrField, DecodedExpr, Nft, Verdict, expr};
use super::portmap::iptables::may_hold;
use std::net::IpAddr;

/// One line per rule the attachment (`network`, `ifname`, `container_id`) owns here, each
/// prefixed with where it lives; empty when it owns none or no backend is usable.
pub fn attachment_rules(network: &str, ifname: &str, container_id: &str) -> Vec<String> {
    let mut lines = nft_masq(network, ifname, container_id);
    lines.extend(iptables_masq(network, container_id));
    lines
}

fn nft_masq(network: &str, ifname: &str, container_id: &str) -> Vec<String> {
    let prefix = masq_nft::hash_for_instance(network, ifname, container_id);
    let Ok(mut nft) = Nft::new() else {
        return Vec::new();
    };
    let rules = nft
        .list_rules(&masq_nft::table(), Some(masq_nft::CHAIN))
        .unwrap_or_default();
    rules
        .iter()
        .filter(|r| r.comment.as_deref().is_some_and(|c| c.starts_with(&prefix)))
        .map(|r| {
            format!(
                "nftables inet {} {}: {}",
                masq_nft::TABLE,
                masq_nft::CHAIN,
                render_nft(&r.exprs)
            )
        })
        .collect()
}

/// `ip saddr 10.88.0.5 ip daddr != 10.88.0.0/16 masquerade`, as `nft` prints such a rule.
pub fn render_nft(exprs: &[DecodedExpr]) -> String {
    let mut words = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        match e.name.as_str() {
            "payload" => {
                if let Some(m) = addr_match(&exprs[i..]) {
                    words.push(m);
                }
            }
            "masq" => words.push("masquerade".to_string()),
            "immediate" => {
                if let Some(v) = e.verdict() {
                    words.push(verdict_words(&v));
                }
            }
            _ => {}
        }
    }
    words.join(" ")
}

fn verdict_words(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
    }
}

/// A network-header address match starting at `exprs[0]` (payload [, bitwise], cmp).
fn addr_match(exprs: &[DecodedExpr]) -> Option<String> {
    let p = &exprs[0];
    if p.u32(2)? != expr::BASE_NETWORK {
        return None;
    }
    let (offset, len) = (p.u32(3)?, p.u32(4)?);
    let (family, field, full) = match offset {
        12 => ("ip", AddrField::Saddr, 4),
        16 => ("ip", AddrField::Daddr, 4),
        8 => ("ip6", AddrField::Saddr, 16),
        24 => ("ip6", AddrField::Daddr, 16),
        _ => return None,
    };
    let (mask, cmp) = match exprs.get(1)? {
        b if b.name == "bitwise" => (b.value(4), exprs.get(2)?),
        c => (None, c),
    };
    if cmp.name != "cmp" {
        return None;
    }
    let mut bytes = cmp.value(3)?;
    let prefix = match mask {
        Some(m) => m.iter().map(|b| b.count_ones()).sum::<u32>(),
        None => len * 8,
    };
    bytes.resize(full, 0);
    let addr = match full {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?),
        _ => IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?),
    };
    let op = if cmp.u32(2)? == expr::CmpOp::Neq as u32 {
        "!= "
    } else {
        ""
    };
    let name = if field == AddrField::Saddr {
        "saddr"
    } else {
        "daddr"
    };
    let shown = if prefix == full as u32 * 8 {
        addr.to_string()
    } else {
        format!("{addr}/{prefix}")
    };
    Some(format!("{family} {name} {op}{shown}"))
}

fn iptables_masq(network: &str, container_id: &str) -> Vec<String> {
    let chain = chain_name(network, container_id);
    let mut lines = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        // Asked over netlink first, so an attachment without iptables rules costs no exec.
        if !may_hold(family, std::slice::from_ref(&chain)) {
            continue;
        }
        let Ok(saved) = Iptables::new(family).save(masq_ipt::TABLE) else {
            continue;
        };
        let tool = match family {
            IpFamily::V4 => "iptables",
            IpFamily::V6 => "ip6tables",
        };
        lines.extend(
            chain_rules(&saved, &chain)
                .into_iter()
                .map(|r| format!("{tool} nat {r}")),
        );
    }
    lines
}

/// The rules of `chain` and the rules jumping to it, as `-A CHAIN args` without comments.
pub fn chain_rules(saved: &Saved, chain: &str) -> Vec<String> {
    saved
        .rules
        .iter()
        .filter(|r| r.chain == chain || r.target() == Some(chain))
        .map(|r| {
            let mut args = Vec::new();
            let mut it = r.args.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "-m" if it.as_slice().first().is_some_and(|n| n == "comment") => {
                        it.next();
                    }
                    "--comment" => {
                        it.next();
                    }
                    _ => args.push(a.as_str()),
                }
            }
            format!("-A {} {}", r.chain, args.join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::nftables::expr::{CmpOp, encode_list, masq};
    use crate::netfilter::nftables::wire::Attrs;
    use ipnet::IpNet;

    fn decoded(exprs: &[crate::netfilter::nftables::Expr]) -> Vec<DecodedExpr> {
        let mut a = Attrs::new();
        encode_list(exprs, &mut a);
        expr::decode_list(a.as_bytes()).unwrap()
    }

    #[test]
    fn masq_rules_render_as_nft_prints_them() {
        let net: IpNet = "10.88.0.5/16".parse().unwrap();
        let rule = decoded(&masq_nft::masq_rule(&net));
        assert_eq!(
            render_nft(&rule),
            "ip saddr 10.88.0.5 ip daddr != 10.88.0.0/16 masquerade"
        );
        let v6: IpNet = "fd00:1::5/60".parse().unwrap();
        let mut e = expr::addr_match(AddrField::Saddr, CmpOp::Eq, &v6.addr().into());
        e.extend(expr::addr_match(AddrField::Daddr, CmpOp::Neq, &v6.trunc()));
        e.push(masq());
        assert_eq!(
            render_nft(&decoded(&e)),
            "ip6 saddr fd00:1::5 ip6 daddr != fd00:1::/60 masquerade"
        );
    }

    #[test]
    fn iptables_chain_rules_without_comments() {
        let text = "*nat\n:POSTROUTING ACCEPT [0:0]\n:CNI-abc - [0:0]\n\
            -A POSTROUTING -s 10.0.0.2/32 -m comment --comment \"name: n id: c\" -j CNI-abc\n\
            -A CNI-abc -d 10.0.0.0/24 -m comment --comment \"x\" -j ACCEPT\n\
            -A CNI-other -j MASQUERADE\nCOMMIT\n";
        let saved = Saved::parse(text, "nat").unwrap();
        assert_eq!(
            chain_rules(&saved, "CNI-abc"),
            [
                "-A POSTROUTING -s 10.0.0.2/32 -j CNI-abc",
                "-A CNI-abc -d 10.0.0.0/24 -j ACCEPT"
            ]
        );
    }
}
