//! Forward filtering for the `firewall` applet (FEATURES.md 6.14), mirroring the reference's
//! `plugins/meta/firewall`: traffic to a container is accepted when it belongs to a connection
//! the container made, traffic from it always; a user-owned admin chain is consulted first;
//! `ingressPolicy` `same-bridge` / `isolated` drops traffic between bridges (and, isolated,
//! within one).
//!
//! Two netfilter backends sit behind [`Rules`]: iptables (the reference's chains, jumps,
//! comments and per-address rules exactly, one `iptables-restore --noflush` per family under
//! the portmap lock) and nftables (the same semantics in a table of our own, in process, one
//! batch per change). The firewalld backend ([`firewalld`]) makes the addresses sources
//! of a zone over D-Bus.
//!
//! Teardown knows what to remove without `prevResult`: nftables rules carry their owner in
//! their userdata, and the addresses an attachment was given are kept in a small state file
//! ([`state`]), which iptables needs because its per-address rules carry no owner (they must
//! stay byte-for-byte the reference's, so that either side's DEL removes the other's rules).

pub mod firewalld;
pub mod iptables;
pub mod nftables;
pub mod state;

use super::IpFamily;
use crate::error::ErrorList;
use crate::types::Attachment;
use anyhow::{Result, bail};
use ipnet::IpNet;

/// The default admin chain (`iptablesAdminChainName`).
pub const DEFAULT_ADMIN_CHAIN: &str = "CNI-ADMIN";

/// `ingressPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressPolicy {
    /// Everything may reach the container (the default).
    Open,
    /// Traffic from another isolated bridge is dropped.
    SameBridge,
    /// Like `SameBridge`, and traffic between ports of the same bridge is dropped too.
    Isolated,
}

impl IngressPolicy {
    /// Parses the config value; empty means `open`.
    pub fn parse(s: &str) -> Result<IngressPolicy> {
        Ok(match s {
            "" | "open" => IngressPolicy::Open,
            "same-bridge" => IngressPolicy::SameBridge,
            "isolated" => IngressPolicy::Isolated,
            other => bail!("unknown ingress policy: {other:?}"),
        })
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            IngressPolicy::Open => "open",
            IngressPolicy::SameBridge => "same-bridge",
            IngressPolicy::Isolated => "isolated",
        }
    }
}

/// Whose rules these are.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The network name.
    pub network: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
}

/// What ADD and CHECK act on: the container's host addresses and the policy.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// The attachment.
    pub owner: Owner<'a>,
    /// The container addresses as host prefixes (`/32`, `/128`).
    pub ips: Vec<IpNet>,
    /// The user-owned chain jumped to first.
    pub admin_chain: &'a str,
    /// The ingress policy.
    pub policy: IngressPolicy,
    /// The bridge the policy applies to (`prevResult.interfaces[0].name`).
    pub bridge: Option<&'a str>,
}

impl Rules<'_> {
    /// The addresses of `family`.
    pub fn ips_of(&self, family: IpFamily) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(|ip| IpFamily::of(ip) == family)
            .copied()
            .collect()
    }

    /// The families of the addresses, IPv4 first.
    pub fn families(&self) -> Vec<IpFamily> {
        IpFamily::present(&self.ips)
    }

    /// The bridge to isolate, when the policy asks for isolation.
    pub fn isolated_bridge(&self) -> Option<&str> {
        match self.policy {
            IngressPolicy::Open => None,
            _ => self.bridge,
        }
    }
}

/// The host prefix (`/32`, `/128`) of a container address, as the reference's `ipString`.
pub fn host_prefix(ip: &IpNet) -> IpNet {
    IpNet::from(ip.addr())
}

/// Which netfilter backends teardown looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// iptables (per-address rules in `CNI-FORWARD`).
    pub iptables: bool,
    /// nftables (rules of the owner in `inet cni_plugins_firewall`).
    pub nftables: bool,
}

impl Used {
    /// Both: nothing says which one made the rules.
    pub const ALL: Used = Used {
        iptables: true,
        nftables: true,
    };

    /// The netfilter backends among recorded backend names; both when none is recorded.
    pub fn from_names(names: &[String]) -> Used {
        if names.is_empty() {
            return Used::ALL;
        }
        Used {
            iptables: names.iter().any(|n| n == "iptables"),
            nftables: names.iter().any(|n| n == "nftables"),
        }
    }
}

/// Removes the rules of `owner` (with the addresses `ips` it was given) from the backends in
/// `used`. A backend that is not usable here is skipped silently.
pub fn teardown(owner: &Owner<'_>, ips: &[IpNet], used: Used) -> Result<()> {
    let mut errors = ErrorList::new();
    for family in IpFamily::present(ips).into_iter().filter(|_| used.iptables) {
        let ipt = super::iptables::Iptables::new(family);
        let family_ips: Vec<IpNet> = ips
            .iter()
            .filter(|i| IpFamily::of(i) == family)
            .copied()
            .collect();
        if let Err(e) = iptables::teardown(&ipt, &family_ips)
            && ipt.usable()
        {
            errors.note::<()>(Err(e.context("remove firewall rules with iptables")));
        }
    }
    if used.nftables
        && let Err(e) = nftables::teardown(owner)
        && super::nftables::Nft::usable()
    {
        errors.note::<()>(Err(e.context("remove firewall rules with nftables")));
    }
    errors.finish()
}

/// Removes, in both backends, the rules of attachments to `network` not in `valid`: those
/// the state files in `data_dir` name (their addresses also go through `also`, e.g. to
/// firewalld), and nftables rules by their owner.
pub fn gc(
    data_dir: &std::path::Path,
    network: &str,
    valid: &[Attachment],
    also: &dyn Fn(&[IpNet]) -> Result<()>,
) -> Result<()> {
    let mut errors = ErrorList::new();
    let stale = errors
        .note(state::stale(data_dir, network, valid))
        .unwrap_or_default();
    for s in stale {
        let owner = Owner {
            network,
            container_id: &s.container_id,
            ifname: &s.ifname,
        };
        let used = Used::from_names(&s.backends);
        let done = teardown(&owner, &s.ips, used).and_then(|()| also(&s.ips));
        if done.is_ok() {
            errors.note(state::remove(data_dir, &owner));
        }
        errors.note(done);
    }
    if let Err(e) = nftables::gc(network, valid)
        && super::nftables::Nft::usable()
    {
        errors.note::<()>(Err(
            e.context("garbage-collect firewall rules with nftables")
        ));
    }
    errors.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_like_the_reference() {
        assert_eq!(IngressPolicy::parse("").unwrap(), IngressPolicy::Open);
        assert_eq!(
            IngressPolicy::parse("same-bridge").unwrap(),
            IngressPolicy::SameBridge
        );
        assert_eq!(IngressPolicy::parse("isolated").unwrap().name(), "isolated");
        let e = IngressPolicy::parse("closed").unwrap_err().to_string();
        assert_eq!(e, "unknown ingress policy: \"closed\"");
    }

    #[test]
    fn host_prefixes() {
        let v4: IpNet = "10.0.0.5/24".parse().unwrap();
        let v6: IpNet = "fd00::5/64".parse().unwrap();
        assert_eq!(host_prefix(&v4).to_string(), "10.0.0.5/32");
        assert_eq!(host_prefix(&v6).to_string(), "fd00::5/128");
    }
}
