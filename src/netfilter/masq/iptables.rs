//! ipMasq with iptables, in the reference's layout (`pkg/ip/ipmasq_iptables_linux.go`,
//! `SetupIPMasq`/`TeardownIPMasq`), table `nat`, one chain per network and container:
//!
//! ```text
//! :CNI-<24 hex of SHA-512(network + containerID)> - [0:0]
//! -A CNI-… -d <container subnet> -m comment --comment "name: \"<net>\" id: \"<cid>\"" -j ACCEPT
//! -A CNI-… ! -d 224.0.0.0/4 -m comment --comment "…" -j MASQUERADE      (v6: ! -d ff00::/8)
//! -A POSTROUTING -s <container ip>/32 -m comment --comment "…" -j CNI-…  (v6: /128)
//! ```
//!
//! The interface name is not part of it (as in the reference, "for historical reasons").
//! Setup only adds what is missing (the reference's `AppendUnique`). One deliberate
//! difference: an ACCEPT for a second subnet of the same family is inserted *before* the
//! MASQUERADE rule (the reference appends it after, where it never matches). Teardown flushes
//! and deletes the chain and every rule jumping to it (which covers the reference's `-s ip`
//! and legacy `-s ip/prefix` jumps); there is no GC, as in the reference.

use crate::netfilter::IpFamily;
use crate::netfilter::iptables::{Change, Rule, Saved};
use ipnet::IpNet;

/// The table all of this lives in.
pub const TABLE: &str = "nat";
const POSTROUTING: &str = "POSTROUTING";

fn with_comment(mut args: Vec<String>, comment: &str, target: &str) -> Vec<String> {
    args.extend(["-m", "comment", "--comment", comment, "-j", target].map(String::from));
    args
}

/// `-A <chain> -d <subnet of net> ... -j ACCEPT`: traffic inside the network is left alone.
pub fn accept_rule(chain: &str, net: &IpNet, comment: &str) -> Rule {
    Rule::new(
        chain,
        with_comment(
            vec!["-d".into(), net.trunc().to_string()],
            comment,
            "ACCEPT",
        ),
    )
}

/// `-A <chain> ! -d <multicast> ... -j MASQUERADE`.
pub fn masquerade_rule(chain: &str, family: IpFamily, comment: &str) -> Rule {
    let multicast = match family {
        IpFamily::V4 => "224.0.0.0/4",
        IpFamily::V6 => "ff00::/8",
    };
    Rule::new(
        chain,
        with_comment(
            vec!["!".into(), "-d".into(), multicast.into()],
            comment,
            "MASQUERADE",
        ),
    )
}

/// `-A POSTROUTING -s <ip>/<32|128> ... -j <chain>`: the container's traffic enters the chain.
pub fn jump_rule(chain: &str, net: &IpNet, comment: &str) -> Rule {
    let host = IpNet::from(net.addr());
    Rule::new(
        POSTROUTING,
        with_comment(vec!["-s".into(), host.to_string()], comment, chain),
    )
}

fn of_family(nets: &[IpNet], family: IpFamily) -> impl Iterator<Item = &IpNet> {
    nets.iter().filter(move |n| IpFamily::of(n) == family)
}

/// What setup must add to `saved` (the family's `nat` table) for the `family` nets.
pub fn plan_setup(
    saved: &Saved,
    family: IpFamily,
    nets: &[IpNet],
    chain: &str,
    comment: &str,
) -> Change {
    let mut change = Change::new(TABLE);
    if of_family(nets, family).next().is_none() {
        return change;
    }
    if !saved.has_chain(chain) {
        change.declare_chain(chain);
    }
    let masq = masquerade_rule(chain, family, comment);
    let masq_exists = saved.contains(&masq);
    for net in of_family(nets, family) {
        let accept = accept_rule(chain, net, comment);
        if saved.contains(&accept) || change.adds(&accept) {
            continue;
        }
        if masq_exists {
            change.insert(accept, 1)
        } else {
            change.append(accept)
        }
    }
    if !masq_exists {
        change.append(masq);
    }
    for net in of_family(nets, family) {
        let jump = jump_rule(chain, net, comment);
        if !saved.contains(&jump) {
            change.append(jump);
        }
    }
    change
}

/// What teardown must remove from `saved`: the chain (flushed, then deleted) and every rule
/// elsewhere that jumps to it. Empty when none of it exists.
pub fn plan_teardown(saved: &Saved, chain: &str) -> Change {
    let mut change = Change::new(TABLE);
    let exists = saved.has_chain(chain);
    if exists {
        change.declare_chain(chain);
    }
    for rule in saved
        .rules
        .iter()
        .filter(|r| r.chain != chain && r.target() == Some(chain))
    {
        change.delete(rule.clone());
    }
    if exists {
        change.delete_chain(chain);
    }
    change
}

/// What of the `family` part of the setup is missing from `saved`, described for CHECK.
pub fn missing(
    saved: &Saved,
    family: IpFamily,
    nets: &[IpNet],
    chain: &str,
    comment: &str,
) -> Vec<String> {
    if of_family(nets, family).next().is_none() {
        return Vec::new();
    }
    if !saved.has_chain(chain) {
        return vec![format!("chain {chain}")];
    }
    let mut wanted = vec![masquerade_rule(chain, family, comment)];
    for net in of_family(nets, family) {
        wanted.push(accept_rule(chain, net, comment));
        wanted.push(jump_rule(chain, net, comment));
    }
    wanted
        .into_iter()
        .filter(|r| !saved.contains(r))
        .map(|r| format!("-A {} {}", r.chain, r.spec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::naming::{chain_name, comment};

    fn golden(name: &str) -> String {
        let path = format!("{}/testdata/netfilter/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn plan(saved: &Saved, fam: IpFamily, list: &[&str]) -> String {
        let (chain, c) = (chain_name("mynet", "ctr1"), comment("mynet", "ctr1"));
        plan_setup(saved, fam, &nets(list), &chain, &c).render()
    }

    #[test]
    fn setup_v4_golden() {
        let got = plan(
            &Saved::default(),
            IpFamily::V4,
            &["10.88.0.5/16", "fd00::5/64"],
        );
        assert_eq!(got, golden("ipmasq-setup-v4.restore"));
    }

    #[test]
    fn setup_v6_golden() {
        let got = plan(
            &Saved::default(),
            IpFamily::V6,
            &["10.88.0.5/16", "fd00::5/64"],
        );
        assert_eq!(got, golden("ipmasq-setup-v6.restore"));
    }

    #[test]
    fn setup_two_subnets_golden() {
        let got = plan(
            &Saved::default(),
            IpFamily::V4,
            &["10.88.0.5/16", "192.168.7.9/24", "10.88.0.6/16"],
        );
        assert_eq!(got, golden("ipmasq-setup-two-subnets.restore"));
    }

    /// On top of the reference's state for 10.88.0.5/16, adding 192.168.7.9/24 inserts the new
    /// ACCEPT ahead of the MASQUERADE and adds only the new jump.
    #[test]
    fn setup_on_existing_state_golden() {
        let saved = Saved::parse(&golden("ipmasq-reference.save"), "nat").unwrap();
        let got = plan(&saved, IpFamily::V4, &["10.88.0.5/16", "192.168.7.9/24"]);
        assert_eq!(got, golden("ipmasq-setup-existing.restore"));
        assert!(
            plan_setup(
                &saved,
                IpFamily::V4,
                &nets(&["10.88.0.5/16"]),
                &chain_name("mynet", "ctr1"),
                &comment("mynet", "ctr1")
            )
            .is_empty()
        );
    }

    #[test]
    fn teardown_golden_and_idempotent() {
        let saved = Saved::parse(&golden("ipmasq-reference.save"), "nat").unwrap();
        let got = plan_teardown(&saved, &chain_name("mynet", "ctr1")).render();
        assert_eq!(got, golden("ipmasq-teardown.restore"));
        assert!(plan_teardown(&Saved::default(), &chain_name("mynet", "ctr1")).is_empty());
    }

    #[test]
    fn check_reports_what_is_missing() {
        let saved = Saved::parse(&golden("ipmasq-reference.save"), "nat").unwrap();
        let (chain, c) = (chain_name("mynet", "ctr1"), comment("mynet", "ctr1"));
        assert!(missing(&saved, IpFamily::V4, &nets(&["10.88.0.5/16"]), &chain, &c).is_empty());
        let gaps = missing(&saved, IpFamily::V4, &nets(&["10.88.0.7/16"]), &chain, &c);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(gaps[0].starts_with("-A POSTROUTING -s 10.88.0.7/32 "));
        assert_eq!(
            missing(
                &Saved::default(),
                IpFamily::V4,
                &nets(&["10.0.0.1/8"]),
                &chain,
                &c
            ),
            [format!("chain {chain}")]
        );
    }
}
