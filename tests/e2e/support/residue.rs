//! What pod-network plugins (bridge, ptp, portmap, bandwidth, ipMasq) can leave in a fake
//! host after DEL, read back with the system tools: veths and IFBs, iptables lines, nft rules
//! and tables, qdiscs.
//!
//! Allowed is only the shared skeleton that no attachment owns and that the reference keeps
//! as well once the last attachment is gone: portmap's `CNI-HOSTPORT-DNAT`, `-SETMARK` and
//! `-MASQ` chains with their fixed rules and jumps (iptables), the `cni_hostport` tables with
//! their empty chains and fixed jumps, and ipMasq's `cni_plugins_masquerade` table with its
//! fixed multicast returns (nftables). Each allowed line is listed here; anything else that
//! mentions `CNI-`, any other rule in a `cni_` table and any `masquerade` outside the skeleton
//! counts.

use super::TestNs;
use super::tc::qdiscs;

/// The iptables/ip6tables lines of portmap's shared skeleton.
const IPTABLES_SKELETON: [&str; 8] = [
    ":CNI-HOSTPORT-DNAT - [0:0]",
    ":CNI-HOSTPORT-MASQ - [0:0]",
    ":CNI-HOSTPORT-SETMARK - [0:0]",
    "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
    "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
    "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ",
    "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
    "-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000",
];

/// The `cni_` tables that may stay, and the only rules allowed in them.
const NFT_TABLES: [&str; 3] = [
    "table inet cni_plugins_masquerade {",
    "table ip cni_hostport {",
    "table ip6 cni_hostport {",
];
const NFT_SKELETON_RULES: [&str; 6] = [
    "ip daddr 224.0.0.0/4 return",
    "ip6 daddr ff00::/8 return",
    "goto masq_checks",
    "jump hostip_hostports",
    "jump hostports",
    "fib daddr type local jump hostports_all",
];

/// Everything in `host` that is not the shared skeleton: veth and IFB links (except those in
/// `keep`), `CNI-` iptables lines, nft residue (see [`nft_residue`]), qdiscs other than
/// `noqueue`. Empty means DEL left nothing.
pub fn host_residue(host: &TestNs, keep: &[&str]) -> Vec<String> {
    let mut left: Vec<String> = Vec::new();
    for kind in ["veth", "ifb"] {
        let links = host.ip_json(&["link", "show", "type", kind]);
        let names = links.as_array().unwrap().iter();
        let names = names.filter_map(|l| l["ifname"].as_str());
        let extra = names.filter(|n| !keep.contains(n));
        left.extend(extra.map(|n| format!("{kind} {n}")));
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        let text = host.run([tool]);
        let bad = text
            .lines()
            .filter(|l| l.contains("CNI-") && !IPTABLES_SKELETON.contains(l));
        left.extend(bad.map(|l| format!("{tool}: {l}")));
    }
    left.extend(nft_residue(&host.run(["nft", "list", "ruleset"])));
    let queued = qdiscs(host)
        .into_iter()
        .filter(|q| !q.ends_with(" noqueue"));
    left.extend(queued.map(|q| format!("qdisc {q}")));
    left
}

/// In `nft list ruleset` text: `cni_` tables other than the skeleton's, rules in them other
/// than the skeleton's, and `masquerade` anywhere but iptables-nft's `CNI-HOSTPORT-MASQ`.
pub fn nft_residue(ruleset: &str) -> Vec<String> {
    let mut left = Vec::new();
    let (mut table, mut chain) = (String::new(), String::new());
    for line in ruleset.lines().map(str::trim) {
        if line.starts_with("table ") {
            table = line.to_string();
            if line.contains(" cni_") && !NFT_TABLES.contains(&line) {
                left.push(format!("nft: {line}"));
            }
            continue;
        }
        if let Some(name) = line.strip_prefix("chain ") {
            chain = name.trim_end_matches(" {").to_string();
            continue;
        }
        let declaration = line.is_empty()
            || line == "}"
            || line.starts_with("comment \"")
            || line.starts_with("type ");
        if declaration {
            continue;
        }
        let in_cni_table = table.contains(" cni_");
        let skeleton = NFT_SKELETON_RULES.contains(&line);
        let masq = line.contains("masquerade") && chain != "CNI-HOSTPORT-MASQ";
        if (in_cni_table && !skeleton) || masq {
            left.push(format!("nft: {table} {chain}: {line}"));
        }
    }
    left
}
