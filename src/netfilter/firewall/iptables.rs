//! The firewall with iptables, in the reference's layout (`iptables.go`, `ingresspolicy.go`),
//! table `filter`:
//!
//! ```text
//! FORWARD    -I 1: -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j CNI-ISOLATION-STAGE-1
//! FORWARD    -I 1: -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
//! CNI-FORWARD -I 1: -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN
//! CNI-FORWARD -A: -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//! CNI-FORWARD -A: -s <ip>/32 -j ACCEPT
//! CNI-ISOLATION-STAGE-1 -I 1: -i <br> ! -o <br> -m comment --comment "... (ingressPolicy: P)" -j CNI-ISOLATION-STAGE-2
//! CNI-ISOLATION-STAGE-1 -I 1: -i <br> -o <br> -m comment --comment "... (ingressPolicy: isolated)" -j DROP
//! CNI-ISOLATION-STAGE-1 -A: -m comment --comment "... (ingressPolicy: same-bridge|isolated)" -j RETURN
//! CNI-ISOLATION-STAGE-2 -I 1: -o <br> -m comment --comment "... (same-bridge|isolated)" -j DROP
//! CNI-ISOLATION-STAGE-2 -A: -m comment --comment "... (same-bridge|isolated)" -j RETURN
//! ```
//!
//! Each change is planned on one `iptables-save -t filter` snapshot and written with one
//! restore per family, under the portmap lock; what exists is not added again. Chains are
//! declared only when missing (declaring an existing chain flushes it), so the admin chain's
//! rules are never touched. Teardown deletes only the per-address rules; chains, jumps and
//! isolation rules stay, as in the reference (the bridge may be shared). CHECK only reads.
//! Teardown first tries the deletion blind (one exec), reading the table only when it fails.

use super::Rules;
use crate::netfilter::iptables::{Change, Iptables, Rule, Saved};
use crate::netfilter::portmap::lock;
use anyhow::{Result, bail};
use ipnet::IpNet;

/// The table.
pub const TABLE: &str = "filter";
/// Our chain, jumped to from `FORWARD`.
pub const PRIV_CHAIN: &str = "CNI-FORWARD";
/// The isolation chains.
pub const STAGE1: &str = "CNI-ISOLATION-STAGE-1";
/// See [`STAGE1`].
pub const STAGE2: &str = "CNI-ISOLATION-STAGE-2";
const RULES_COMMENT: &str = "CNI firewall plugin rules";
const ADMIN_COMMENT: &str = "CNI firewall plugin admin overrides";
const POLICY_COMMENT_PREFIX: &str = "CNI firewall plugin rules (ingressPolicy: ";
const SHARED_POLICY_COMMENT: &str =
    "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)";

fn commented(chain: &str, matches: &[&str], comment: &str, target: &str) -> Rule {
    let mut args: Vec<String> = matches.iter().map(|s| s.to_string()).collect();
    args.extend(["-m", "comment", "--comment", comment, "-j", target].map(String::from));
    Rule::new(chain, args)
}

/// `FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD`.
pub fn forward_jump() -> Rule {
    commented("FORWARD", &[], RULES_COMMENT, PRIV_CHAIN)
}

/// The admin jump at the top of `CNI-FORWARD`.
pub fn admin_jump(admin: &str) -> Rule {
    commented(PRIV_CHAIN, &[], ADMIN_COMMENT, admin)
}

/// The two per-address rules (`getPrivChainRules`).
pub fn ip_rules(ip: &IpNet) -> [Rule; 2] {
    let ip = ip.to_string();
    [
        Rule::new(
            PRIV_CHAIN,
            [
                "-d",
                &ip,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
        ),
        Rule::new(PRIV_CHAIN, ["-s", &ip, "-j", "ACCEPT"]),
    ]
}

/// The isolation rules of `bridge` as `(rule, prepend)`, in the reference's order.
pub fn isolation_rules(bridge: &str, isolated: bool) -> Vec<(Rule, bool)> {
    let policy = format!(
        "CNI firewall plugin rules (ingressPolicy: {})",
        if isolated { "isolated" } else { "same-bridge" }
    );
    let mut out = vec![
        (
            commented("FORWARD", &[], SHARED_POLICY_COMMENT, STAGE1),
            true,
        ),
        (
            commented(STAGE1, &["-i", bridge, "!", "-o", bridge], &policy, STAGE2),
            true,
        ),
    ];
    if isolated {
        let drop = commented(STAGE1, &["-i", bridge, "-o", bridge], &policy, "DROP");
        out.push((drop, true));
    }
    out.push((
        commented(STAGE1, &[], SHARED_POLICY_COMMENT, "RETURN"),
        false,
    ));
    out.push((
        commented(STAGE2, &["-o", bridge], SHARED_POLICY_COMMENT, "DROP"),
        true,
    ));
    out.push((
        commented(STAGE2, &[], SHARED_POLICY_COMMENT, "RETURN"),
        false,
    ));
    out
}

/// True when `saved` has `rule`, or the same rule under another ingress policy comment:
/// reference releases before HEAD wrote the policy's own name (`(ingressPolicy:
/// same-bridge)`) where HEAD writes `(ingressPolicy: same-bridge|isolated)`.
fn has_equivalent(saved: &Saved, rule: &Rule) -> bool {
    if saved.contains(rule) {
        return true;
    }
    let Some(comment) = rule.value_of("--comment") else {
        return false;
    };
    if !comment.starts_with(POLICY_COMMENT_PREFIX) {
        return false;
    }
    let strip = |r: &Rule| -> Vec<String> {
        r.args
            .iter()
            .filter(|a| !a.starts_with(POLICY_COMMENT_PREFIX))
            .cloned()
            .collect()
    };
    let want = strip(rule);
    saved.rules_in(&rule.chain).any(|r| {
        r.value_of("--comment")
            .is_some_and(|c| c.starts_with(POLICY_COMMENT_PREFIX))
            && strip(r) == want
    })
}

/// Adds `rule` at the top (or the end) unless the snapshot or the change already has it.
fn ensure(c: &mut Change, saved: &Saved, rule: Rule, prepend: bool) {
    if has_equivalent(saved, &rule) || c.adds(&rule) {
        return;
    }
    if prepend {
        c.insert(rule, 1);
    } else {
        c.append(rule);
    }
}

fn ensure_chain(c: &mut Change, saved: &Saved, chain: &str) {
    if !saved.has_chain(chain) {
        c.declare_chain(chain);
    }
}

/// The change ADD makes for the addresses of `ips` (one family) on top of `saved`.
pub fn plan_add(saved: &Saved, r: &Rules<'_>, ips: &[IpNet]) -> Change {
    let mut c = Change::new(TABLE);
    if !ips.is_empty() {
        ensure_chain(&mut c, saved, PRIV_CHAIN);
        ensure_chain(&mut c, saved, r.admin_chain);
        ensure(&mut c, saved, forward_jump(), true);
        ensure(&mut c, saved, admin_jump(r.admin_chain), true);
        for ip in ips {
            for rule in ip_rules(ip) {
                ensure(&mut c, saved, rule, false);
            }
        }
    }
    if let Some(bridge) = r.isolated_bridge() {
        ensure_chain(&mut c, saved, STAGE1);
        ensure_chain(&mut c, saved, STAGE2);
        let isolated = r.policy == super::IngressPolicy::Isolated;
        for (rule, prepend) in isolation_rules(bridge, isolated) {
            ensure(&mut c, saved, rule, prepend);
        }
    }
    c
}

/// Installs the rules of `r` for the family of `ipt` with one restore.
pub fn add(ipt: &Iptables, r: &Rules<'_>) -> Result<()> {
    let _held = lock::exclusive()?;
    let saved = ipt.save(TABLE)?;
    ipt.restore(&plan_add(&saved, r, &r.ips_of(ipt.family())))
}

/// Fails unless everything [`add`] makes for `r` in this family is there; reads only.
pub fn check(ipt: &Iptables, r: &Rules<'_>) -> Result<()> {
    let saved = ipt.save(TABLE)?;
    let ips = r.ips_of(ipt.family());
    let mut wanted = Vec::new();
    if !ips.is_empty() {
        wanted.extend([forward_jump(), admin_jump(r.admin_chain)]);
        wanted.extend(ips.iter().flat_map(ip_rules));
        for chain in [PRIV_CHAIN, r.admin_chain] {
            if !saved.has_chain(chain) {
                bail!("chain {chain} not found");
            }
        }
    }
    if let Some(bridge) = r.isolated_bridge() {
        let isolated = r.policy == super::IngressPolicy::Isolated;
        wanted.extend(
            isolation_rules(bridge, isolated)
                .into_iter()
                .map(|(r, _)| r),
        );
    }
    for rule in wanted {
        if !has_equivalent(&saved, &rule) {
            bail!("expected rule -A {} {} not found", rule.chain, rule.spec());
        }
    }
    Ok(())
}

/// The change that deletes the per-address rules of `ips` found in `saved`.
pub fn plan_teardown(saved: &Saved, ips: &[IpNet]) -> Change {
    let mut c = Change::new(TABLE);
    for ip in ips {
        for rule in ip_rules(ip) {
            if saved.contains(&rule) {
                c.delete(rule);
            }
        }
    }
    c
}

/// Deletes the per-address rules of `ips` (one family); nothing there is success. The usual
/// case, every rule there, is one restore; only when it fails (a rule is already gone, and a
/// restore applies all or nothing) is the table read to delete what is left.
pub fn teardown(ipt: &Iptables, ips: &[IpNet]) -> Result<()> {
    if ips.is_empty() {
        return Ok(());
    }
    let _held = lock::exclusive()?;
    let mut all = Change::new(TABLE);
    for rule in ips.iter().flat_map(ip_rules) {
        all.delete(rule);
    }
    if ipt.restore(&all).is_ok() {
        return Ok(());
    }
    let saved = ipt.save(TABLE)?;
    ipt.restore(&plan_teardown(&saved, ips))
}

#[cfg(test)]
mod tests {
    use super::super::{IngressPolicy, Owner};
    use super::*;

    fn rules(policy: IngressPolicy) -> Rules<'static> {
        Rules {
            owner: Owner {
                network: "n",
                container_id: "c",
                ifname: "eth0",
            },
            ips: vec!["10.0.0.2/32".parse().unwrap()],
            admin_chain: "CNI-ADMIN",
            policy,
            bridge: Some("cni0"),
        }
    }

    /// The restore input of a first ADD on an empty table, every line as the reference's.
    #[test]
    fn first_add_renders_reference_rules() {
        let r = rules(IngressPolicy::Isolated);
        let c = plan_add(&Saved::default(), &r, &r.ips.clone());
        let want = "*filter\n:CNI-FORWARD - [0:0]\n:CNI-ADMIN - [0:0]\n\
:CNI-ISOLATION-STAGE-1 - [0:0]\n:CNI-ISOLATION-STAGE-2 - [0:0]\n\
-I FORWARD 1 -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD\n\
-I CNI-FORWARD 1 -m comment --comment \"CNI firewall plugin admin overrides\" -j CNI-ADMIN\n\
-A CNI-FORWARD -d 10.0.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A CNI-FORWARD -s 10.0.0.2/32 -j ACCEPT\n\
-I FORWARD 1 -m comment --comment \"CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)\" -j CNI-ISOLATION-STAGE-1\n\
-I CNI-ISOLATION-STAGE-1 1 -i cni0 ! -o cni0 -m comment --comment \"CNI firewall plugin rules (ingressPolicy: isolated)\" -j CNI-ISOLATION-STAGE-2\n\
-I CNI-ISOLATION-STAGE-1 1 -i cni0 -o cni0 -m comment --comment \"CNI firewall plugin rules (ingressPolicy: isolated)\" -j DROP\n\
-A CNI-ISOLATION-STAGE-1 -m comment --comment \"CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)\" -j RETURN\n\
-I CNI-ISOLATION-STAGE-2 1 -o cni0 -m comment --comment \"CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)\" -j DROP\n\
-A CNI-ISOLATION-STAGE-2 -m comment --comment \"CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)\" -j RETURN\n\
COMMIT\n";
        assert_eq!(c.render(), want);
    }

    /// What is there is neither added again nor declared (which would flush the admin chain).
    #[test]
    fn second_add_adds_only_what_is_missing() {
        let r = rules(IngressPolicy::Open);
        let first = plan_add(&Saved::default(), &r, &r.ips.clone());
        let text = format!(
            "*filter\n:FORWARD ACCEPT [0:0]\n:CNI-FORWARD - [0:0]\n:CNI-ADMIN - [0:0]\n{}COMMIT\n",
            first
                .render()
                .lines()
                .filter(|l| l.starts_with("-"))
                .map(|l| {
                    let mut t: Vec<&str> = l.split(' ').collect();
                    if t[0] == "-I" {
                        t.remove(2);
                    }
                    format!("-A{}\n", &t.join(" ")[2..])
                })
                .collect::<String>()
        );
        let saved = Saved::parse(&text, TABLE).unwrap();
        assert!(plan_add(&saved, &r, &r.ips.clone()).is_empty());
        let other: IpNet = "10.0.0.3/32".parse().unwrap();
        assert_eq!(
            plan_add(&saved, &r, &[other]).render(),
            "*filter\n-A CNI-FORWARD -d 10.0.0.3/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A CNI-FORWARD -s 10.0.0.3/32 -j ACCEPT\nCOMMIT\n"
        );
        let del = plan_teardown(&saved, &[r.ips[0], other]);
        let old_style = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m comment --comment \
            \"CNI firewall plugin rules (ingressPolicy: same-bridge)\" -j CNI-ISOLATION-STAGE-1\nCOMMIT\n";
        let old = Saved::parse(old_style, TABLE).unwrap();
        let (jump, _) = &isolation_rules("cni0", false)[0];
        assert!(has_equivalent(&old, jump), "v1.1.1's comment counts");
        assert!(!has_equivalent(&old, &forward_jump()));
        assert_eq!(
            del.render(),
            "*filter\n-D CNI-FORWARD -d 10.0.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-D CNI-FORWARD -s 10.0.0.2/32 -j ACCEPT\nCOMMIT\n"
        );
    }
}
