//! MAC spoof check for bridge ports (`macspoofchk`), in the reference's nftables layout
//! (`pkg/link/spoofcheck.go`), programmed in process instead of through the `nft` binary:
//!
//! ```text
//! table bridge nat {
//!   chain PREROUTING { type filter hook prerouting priority -300; policy accept;
//!     iifname "<host veth>" jump cni-br-iface-<cid>-<if>      comment "macspoofchk-<cid>-<if>"
//!   }
//!   chain cni-br-iface-<cid>-<if> { jump cni-br-iface-<cid>-<if>-mac   comment "…" }
//!   chain cni-br-iface-<cid>-<if>-mac {
//!     ether saddr <container mac> return                      comment "…"
//!     drop                                                     comment "…"
//!   }
//! }
//! ```
//!
//! Setup is one atomic batch (the reference needs two): declare the table and chains not
//! there yet, flush the per-attachment chains that are, drop this attachment's earlier
//! PREROUTING rule (the reference would add a second one on a repeated ADD), add the rules. Teardown deletes the
//! PREROUTING rule and both chains; whatever is already gone is success.

use super::nftables::expr::{self, Verdict};
use super::nftables::{BaseChain, Batch, Chain, Hook, NfFamily, Nft, RuleInfo, Table, is_errno};
use anyhow::{Context, Result};

/// The table (family `bridge`).
pub const TABLE: &str = "nat";
/// The base chain the per-port jump rules live in.
pub const PREROUTING: &str = "PREROUTING";
/// `dstnat` in the bridge family: before anything else sees the frame.
const PRIORITY: i32 = -300;

/// One bridge port's spoof check.
#[derive(Debug, Clone, Copy)]
pub struct SpoofCheck<'a> {
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
}

impl SpoofCheck<'_> {
    /// `<containerID>-<ifname>` (the reference's `uniqueID`).
    pub fn ref_id(&self) -> String {
        format!("{}-{}", self.container_id, self.ifname)
    }

    /// `cni-br-iface-<ref id>`.
    pub fn iface_chain(&self) -> String {
        format!("cni-br-iface-{}", self.ref_id())
    }

    /// `cni-br-iface-<ref id>-mac`.
    pub fn mac_chain(&self) -> String {
        format!("{}-mac", self.iface_chain())
    }

    /// `macspoofchk-<ref id>`, on every rule.
    pub fn comment(&self) -> String {
        format!("macspoofchk-{}", self.ref_id())
    }

    /// True for this port's jump rule in PREROUTING.
    fn is_jump_rule(&self, r: &RuleInfo) -> bool {
        let to = Some(Verdict::Jump(self.iface_chain()));
        r.chain == PREROUTING
            && r.comment.as_deref() == Some(self.comment().as_str())
            && r.exprs.iter().any(|e| e.verdict() == to)
    }
}

/// The `bridge nat` table.
pub fn table() -> Table {
    Table::new(NfFamily::Bridge, TABLE)
}

/// What of the layout is there already: chains seen holding rules, and this port's earlier
/// PREROUTING jump.
#[derive(Debug, Default)]
pub struct Existing {
    /// Chains of `bridge nat` that hold at least one rule (so they exist).
    pub chains: Vec<String>,
    /// This port's PREROUTING jump rules from an earlier setup.
    pub stale: Vec<RuleInfo>,
}

impl Existing {
    /// Reads it from the rules of the whole table.
    fn of(sc: &SpoofCheck<'_>, rules: Vec<RuleInfo>) -> Existing {
        let mut chains: Vec<String> = rules.iter().map(|r| r.chain.clone()).collect();
        chains.dedup();
        let stale = rules.into_iter().filter(|r| sc.is_jump_rule(r)).collect();
        Existing { chains, stale }
    }

    fn has(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c == chain)
    }
}

/// The setup batch: only frames from `host_iface` with source `mac` pass. Chains are declared
/// only when not known to exist (updating an existing chain, like deleting a rule, makes the
/// kernel wait an RCU grace period when the socket closes); `existing.stale` rules are
/// deleted first.
pub fn setup_batch(
    sc: &SpoofCheck<'_>,
    host_iface: &str,
    mac: &[u8; 6],
    existing: &Existing,
) -> Batch {
    let t = table();
    let (iface, mac_chain, comment) = (sc.iface_chain(), sc.mac_chain(), sc.comment());
    let mut b = Batch::new();
    if !existing.has(PREROUTING) {
        b.add_table(&t, None);
        let hook = BaseChain {
            kind: "filter",
            hook: Hook::Prerouting,
            priority: PRIORITY,
        };
        let chain = Chain {
            name: PREROUTING,
            base: Some(hook),
            comment: None,
        };
        b.add_chain(&t, &chain);
    }
    for name in [&iface, &mac_chain] {
        if existing.has(name) {
            b.flush_chain(&t, name);
        } else {
            b.add_chain(
                &t,
                &Chain {
                    name,
                    base: None,
                    comment: None,
                },
            );
        }
    }
    for r in &existing.stale {
        b.delete_rule(&t, &r.chain, r.handle);
    }
    let mut jump = expr::iifname_match(host_iface);
    jump.push(expr::verdict(&Verdict::Jump(iface.clone())));
    b.add_rule(&t, PREROUTING, &jump, Some(&comment));
    let to_mac = [expr::verdict(&Verdict::Jump(mac_chain.clone()))];
    b.add_rule(&t, &iface, &to_mac, Some(&comment));
    let mut allow = expr::ether_saddr_match(mac);
    allow.push(expr::verdict(&Verdict::Return));
    b.add_rule(&t, &mac_chain, &allow, Some(&comment));
    b.add_rule(
        &t,
        &mac_chain,
        &[expr::verdict(&Verdict::Drop)],
        Some(&comment),
    );
    b
}

/// Installs (or refreshes) the spoof check of one port: frames entering the bridge from
/// `host_iface` must carry `mac` as their source.
pub fn setup(nft: &mut Nft, sc: &SpoofCheck<'_>, host_iface: &str, mac: &[u8; 6]) -> Result<()> {
    let existing = Existing::of(sc, nft.list_rules(&table(), None)?);
    nft.apply(&setup_batch(sc, host_iface, mac, &existing))
        .context("failed to setup spoof-check")
}

/// Removes the spoof check of one port; success when it is already gone.
pub fn teardown(nft: &mut Nft, sc: &SpoofCheck<'_>) -> Result<()> {
    let t = table();
    let rules = nft.list_rules(&t, None)?;
    let chains = [sc.iface_chain(), sc.mac_chain()];
    let mut b = Batch::new();
    for r in rules.iter().filter(|r| sc.is_jump_rule(r)) {
        b.delete_rule(&t, &r.chain, r.handle);
    }
    // Deleting a chain deletes its rules; the iface chain goes first as its rule refers to
    // the mac chain.
    let (seen, unseen): (Vec<&String>, Vec<&String>) = chains
        .iter()
        .partition(|c| rules.iter().any(|r| &r.chain == *c));
    for c in &seen {
        b.delete_chain(&t, c);
    }
    nft.apply(&b).context("failed to tear down spoof-check")?;
    // A chain without rules does not show in the rule dump (the reference declares the
    // chains in a transaction of their own, so a failed setup may leave them empty).
    for c in unseen {
        let mut b = Batch::new();
        b.delete_chain(&t, c);
        match nft.apply(&b) {
            Err(e) if is_errno(&e, libc::ENOENT) => {}
            other => other.context("failed to tear down spoof-check")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::oracle::{self, here, run};
    use crate::testutil::fresh_netns;

    const SC: SpoofCheck<'static> = SpoofCheck {
        container_id: "c1",
        ifname: "eth0",
    };
    const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x09];

    #[test]
    fn names_match_reference() {
        assert_eq!(SC.iface_chain(), "cni-br-iface-c1-eth0");
        assert_eq!(SC.mac_chain(), "cni-br-iface-c1-eth0-mac");
        assert_eq!(SC.comment(), "macspoofchk-c1-eth0");
    }

    #[test]
    fn setup_batch_shape() {
        let fresh = setup_batch(&SC, "veth1", &MAC, &Existing::default());
        let what: Vec<&str> = (0..fresh.len())
            .map(|i| fresh.describe(i).unwrap())
            .collect();
        assert_eq!(
            what,
            [
                "add table nat",
                "add chain nat PREROUTING",
                "add chain nat cni-br-iface-c1-eth0",
                "add chain nat cni-br-iface-c1-eth0-mac",
                "add rule nat PREROUTING (macspoofchk-c1-eth0)",
                "add rule nat cni-br-iface-c1-eth0 (macspoofchk-c1-eth0)",
                "add rule nat cni-br-iface-c1-eth0-mac (macspoofchk-c1-eth0)",
                "add rule nat cni-br-iface-c1-eth0-mac (macspoofchk-c1-eth0)",
            ]
        );
        let again = Existing {
            chains: vec![PREROUTING.into(), SC.iface_chain(), SC.mac_chain()],
            stale: vec![RuleInfo {
                chain: PREROUTING.into(),
                handle: 4,
                comment: None,
                exprs: vec![],
                udata: vec![],
            }],
        };
        let b = setup_batch(&SC, "veth1", &MAC, &again);
        let what: Vec<&str> = (0..b.len()).map(|i| b.describe(i).unwrap()).collect();
        assert_eq!(
            what[..3],
            [
                "flush chain nat cni-br-iface-c1-eth0",
                "flush chain nat cni-br-iface-c1-eth0-mac",
                "delete rule nat PREROUTING handle 4",
            ]
        );
        assert_eq!(b.len(), 7);
    }

    /// `nft list ruleset` prints our rules exactly as it prints the reference's (the text
    /// below is what nft 1.0.6 printed for the reference layout loaded with `nft -f`).
    #[test]
    fn nft_reads_our_rules_as_the_reference_layout() {
        let Some(_ns) = fresh_netns("nft_reads_our_rules_as_the_reference_layout") else {
            return;
        };
        if !oracle::have("nft") {
            println!("skipped: needs nft as its oracle");
            return;
        }
        let mut nft = Nft::new().unwrap();
        setup(&mut nft, &SC, "veth1234abcd", &MAC).unwrap();
        setup(&mut nft, &SC, "veth1234abcd", &MAC).unwrap();
        let want = "table bridge nat {
	chain PREROUTING {
		type filter hook prerouting priority dstnat; policy accept;
		iifname \"veth1234abcd\" jump cni-br-iface-c1-eth0 comment \"macspoofchk-c1-eth0\"
	}

	chain cni-br-iface-c1-eth0 {
		jump cni-br-iface-c1-eth0-mac comment \"macspoofchk-c1-eth0\"
	}

	chain cni-br-iface-c1-eth0-mac {
		ether saddr 02:42:ac:11:00:09 return comment \"macspoofchk-c1-eth0\"
		drop comment \"macspoofchk-c1-eth0\"
	}
}
";
        assert_eq!(
            run(&here(), &["nft", "list", "ruleset"]),
            want,
            "a repeated setup adds nothing"
        );
        teardown(&mut nft, &SC).unwrap();
        let left = run(&here(), &["nft", "list", "ruleset"]);
        assert!(
            !left.contains("cni-br-iface") && left.contains("chain PREROUTING"),
            "{left}"
        );
        teardown(&mut nft, &SC).unwrap();
    }

    /// What the reference leaves after a failed second transaction: declared, empty chains.
    #[test]
    fn teardown_removes_empty_chains_and_other_ports_stay() {
        let Some(_ns) = fresh_netns("teardown_removes_empty_chains_and_other_ports_stay") else {
            return;
        };
        if !oracle::have("nft") {
            println!("skipped: needs nft as its oracle");
            return;
        }
        let other = SpoofCheck {
            container_id: "c2",
            ifname: "eth0",
        };
        let mut nft = Nft::new().unwrap();
        setup(&mut nft, &other, "vethother", &MAC).unwrap();
        let mut b = Batch::new();
        for c in [SC.iface_chain(), SC.mac_chain()] {
            b.add_chain(
                &table(),
                &Chain {
                    name: &c,
                    base: None,
                    comment: None,
                },
            );
        }
        nft.apply(&b).unwrap();
        teardown(&mut nft, &SC).unwrap();
        let left = run(&here(), &["nft", "list", "ruleset"]);
        assert!(!left.contains("cni-br-iface-c1-"), "{left}");
        assert!(
            left.contains("iifname \"vethother\" jump cni-br-iface-c2-eth0"),
            "{left}"
        );
        assert!(left.contains("chain cni-br-iface-c2-eth0-mac"), "{left}");
    }
}
