//! Which netfilter backends work here, and whether rules live in both iptables flavours: the
//! nf_tables netlink API (what our nftables backend speaks), the `iptables` tools our iptables
//! backend runs (and which flavour, `nf_tables` or `legacy`, they are), and the rules held by
//! `iptables-legacy` and by `iptables-nft`. Rules in both flavours is a known source of
//! breakage: packets pass both rule sets, and each tool shows only its own. Shared by
//! `cni-multi doctor` and tests; read-only, it changes no rule.

use super::IpFamily;
use super::iptables::{Iptables, find_in_path};
use super::nftables::socket::Nft;
use std::process::{Command, Stdio};

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netfilter {
    /// The nf_tables netlink API answers (a `GETGEN` request succeeds).
    pub nf_tables: bool,
    /// `iptables-restore` is on `PATH` and `iptables-save -t nat` works.
    pub iptables: bool,
    /// What `iptables` is (`nf_tables` or `legacy`), from `iptables-save --version`.
    pub iptables_flavour: Option<String>,
    /// `-A` rules `iptables-legacy-save` shows (`None`: tool absent or failing).
    pub legacy_rules: Option<usize>,
    /// `-A` rules `iptables-nft-save` shows.
    pub nft_rules: Option<usize>,
}

impl Netfilter {
    /// Probes the calling thread's netns.
    pub fn probe() -> Netfilter {
        let save = |tool: &str| run(tool, &[]).map(|text| count_rules(&text));
        Netfilter {
            nf_tables: Nft::usable(),
            iptables: Iptables::new(IpFamily::V4).usable(),
            iptables_flavour: run("iptables-save", &["--version"])
                .and_then(|v| flavour_of(&v).map(String::from)),
            legacy_rules: save("iptables-legacy-save"),
            nft_rules: save("iptables-nft-save"),
        }
    }

    /// True when rules exist in both iptables flavours.
    pub fn mixed(&self) -> bool {
        self.legacy_rules.unwrap_or(0) > 0 && self.nft_rules.unwrap_or(0) > 0
    }
}

/// The flavour in `iptables-save v1.8.9 (nf_tables)`: `nf_tables` or `legacy`.
pub fn flavour_of(version: &str) -> Option<&str> {
    let start = version.find('(')? + 1;
    let end = start + version[start..].find(')')?;
    Some(&version[start..end])
}

/// The number of rules (`-A` lines) in `*-save` output.
pub fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// stdout of `tool ARGS` when it is on `PATH` and succeeds.
fn run(tool: &str, args: &[&str]) -> Option<String> {
    find_in_path(tool)?;
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavour_and_rules_are_read_from_the_tools_text() {
        assert_eq!(
            flavour_of("iptables-save v1.8.9 (nf_tables)\n"),
            Some("nf_tables")
        );
        assert_eq!(flavour_of("iptables-save v1.8.7 (legacy)"), Some("legacy"));
        assert_eq!(flavour_of("iptables-save v1.4"), None);
        let save = "*nat\n:POSTROUTING ACCEPT [0:0]\n:CNI-x - [0:0]\n-A POSTROUTING -j CNI-x\n\
                    -A CNI-x -j MASQUERADE\nCOMMIT\n";
        assert_eq!(count_rules(save), 2);
        assert_eq!(count_rules(""), 0);
    }

    #[test]
    fn mixed_needs_rules_in_both() {
        let mut n = Netfilter {
            nf_tables: true,
            iptables: true,
            iptables_flavour: Some("nf_tables".into()),
            legacy_rules: Some(0),
            nft_rules: Some(3),
        };
        assert!(!n.mixed());
        n.legacy_rules = Some(1);
        assert!(n.mixed());
        n.nft_rules = None;
        assert!(!n.mixed());
    }
}
