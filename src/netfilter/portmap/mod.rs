//! Port forwarding for the `portmap` applet (FEATURES.md 6.15), mirroring the reference's
//! `plugins/meta/portmap`: DNAT from `hostIP:hostPort` to the container, a masquerade for
//! hairpin and localhost-originated connections, in either backend with the reference's
//! chain and table names so each side removes what the other made.
//!
//! Forward and CHECK use the chosen backend; teardown and GC run through both backends (the
//! attachment may have been made under another configuration) and report a backend's error
//! only when that backend is usable here. Teardown needs neither the mappings nor the
//! container address: it finds the attachment's rules by chain name (iptables) or comment
//! (nftables), and returns the UDP host ports they forwarded so their conntrack entries can
//! be flushed.
//!
//! Everything acts on the netns of the calling thread (the runtime's, i.e. the host's).

pub mod conditions;
pub mod iptables;
pub mod lock;
pub mod nftables;

use super::iptables::Iptables;
use super::nftables::Nft;
use super::{BackendKind, IpFamily};
use crate::error::ErrorList;
use crate::types::Attachment;
use anyhow::{Context, Result};
use ipnet::IpNet;
use std::net::IpAddr;

/// A transport protocol a mapping may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// `tcp`
    Tcp,
    /// `udp`
    Udp,
    /// `sctp`
    Sctp,
}

impl Proto {
    /// Parses a protocol name, in any case (`tcp`, `UDP`, ...).
    pub fn parse(name: &str) -> Option<Proto> {
        match name.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The lowercase name iptables and nft use.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }

    /// The protocol with this number.
    pub fn from_number(n: u8) -> Option<Proto> {
        [Proto::Tcp, Proto::Udp, Proto::Sctp]
            .into_iter()
            .find(|p| p.number() == n)
    }
}

/// One validated entry of `runtimeConfig.portMappings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The port on the host (1-65535).
    pub host_port: u16,
    /// The port in the container (1-65535).
    pub container_port: u16,
    /// The transport protocol.
    pub proto: Proto,
    /// Only traffic to this host address is forwarded; `None` means any.
    pub host_ip: Option<IpAddr>,
}

impl Mapping {
    /// Whether the mapping is forwarded to a container address of `family`, and the host
    /// address to match if so: `None` skips it (its `hostIP` is of the other family, even an
    /// unspecified one, as in the reference); `Some(None)` matches any host address.
    pub fn target_for(&self, family: IpFamily) -> Option<Option<IpAddr>> {
        match self.host_ip {
            None => Some(None),
            Some(ip) if family_of(&ip) != family => None,
            Some(ip) if ip.is_unspecified() => Some(None),
            Some(ip) => Some(Some(ip)),
        }
    }
}

/// The family of an address.
pub fn family_of(ip: &IpAddr) -> IpFamily {
    match ip {
        IpAddr::V4(_) => IpFamily::V4,
        IpAddr::V6(_) => IpFamily::V6,
    }
}

/// How hairpin and localhost-originated connections are masqueraded (`snat`,
/// `markMasqBit`, `externalSetMarkChain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snat {
    /// `snat: false`: no masquerade.
    Off,
    /// Our own mark-and-masquerade chains, with this mark bit (0-31).
    MarkBit(u8),
    /// Jump to this existing chain (e.g. `KUBE-MARK-MASQ`) to request the masquerade
    /// (iptables only).
    ExternalChain(String),
}

/// One attachment's port forwarding for one container address.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    /// The network name.
    pub network: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// The container address and prefix, e.g. `10.88.0.5/16`.
    pub container: IpNet,
    /// Every mapping (those of the other family are skipped per rule).
    pub mappings: &'a [Mapping],
    /// The masquerade of hairpin and localhost traffic.
    pub snat: &'a Snat,
    /// Masquerade hairpin traffic from any source, not only the container's own.
    pub masq_all: bool,
    /// Extra match tokens for this family, in the backend's syntax.
    pub conditions: &'a [String],
}

impl Forward<'_> {
    /// The family of the container address.
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.container)
    }
}

/// The attachment whose rules teardown removes.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The network name.
    pub network: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
}

/// What teardown removed: the UDP host ports that were forwarded, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// `(family, host port)` of every UDP mapping found, each once.
    pub udp_ports: Vec<(IpFamily, u16)>,
}

impl Removed {
    fn add_udp(&mut self, family: IpFamily, port: u16) {
        if !self.udp_ports.contains(&(family, port)) {
            self.udp_ports.push((family, port));
        }
    }
}

/// Installs (or refreshes) the forwarding of `f` with `kind`.
pub fn forward_ports(kind: BackendKind, f: &Forward<'_>) -> Result<()> {
    match kind {
        BackendKind::Iptables => iptables::forward(&Iptables::new(f.family()), f),
        BackendKind::Nftables => nftables::forward(&mut Nft::new()?, f),
    }
    .with_context(|| format!("forward ports with {}", kind.name()))
}

/// Fails unless everything [`forward_ports`] makes for `f` is in place.
pub fn check_ports(kind: BackendKind, f: &Forward<'_>) -> Result<()> {
    match kind {
        BackendKind::Iptables => iptables::check(&Iptables::new(f.family()), f),
        BackendKind::Nftables => nftables::check(&mut Nft::new()?, f),
    }
    .with_context(|| format!("check port forwarding with {}", kind.name()))
}

/// Removes the forwarding of `owner` from both backends and both families. An unusable
/// backend or family is skipped unless nothing at all is usable.
pub fn unforward_ports(owner: &Owner<'_>) -> Result<Removed> {
    let mut removed = Removed::default();
    let mut errors = ErrorList::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        let ipt = Iptables::new(family);
        if let Err(e) = iptables::teardown(&ipt, owner, &mut removed)
            && ipt.usable()
        {
            errors.note::<()>(Err(e.context("remove port forwarding with iptables")));
        }
    }
    let nft = Nft::new().and_then(|mut nft| nftables::teardown(&mut nft, owner, &mut removed));
    if let Err(e) = nft
        && Nft::usable()
    {
        errors.note::<()>(Err(e.context("remove port forwarding with nftables")));
    }
    errors.finish().map(|()| removed)
}

/// Removes the forwarding of every attachment to `network` that is not in `valid`, in both
/// backends; returns the UDP host ports that were forwarded.
pub fn gc_ports(network: &str, valid: &[Attachment]) -> Result<Removed> {
    let mut removed = Removed::default();
    let mut errors = ErrorList::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        let ipt = Iptables::new(family);
        if let Err(e) = iptables::gc(&ipt, network, valid, &mut removed)
            && ipt.usable()
        {
            errors.note::<()>(Err(
                e.context("garbage-collect port forwarding with iptables")
            ));
        }
    }
    let nft = Nft::new().and_then(|mut nft| nftables::gc(&mut nft, network, valid, &mut removed));
    if let Err(e) = nft
        && Nft::usable()
    {
        errors.note::<()>(Err(
            e.context("garbage-collect port forwarding with nftables")
        ));
    }
    errors.finish().map(|()| removed)
}

/// The mappings of the reference's own unit test (portmap_test.go), shared by both backends' tests.
#[cfg(test)]
pub(crate) fn reference_mappings() -> Vec<Mapping> {
    let m = |h, c, p, ip: Option<&str>| Mapping {
        host_port: h,
        container_port: c,
        proto: p,
        host_ip: ip.map(|s| s.parse().unwrap()),
    };
    vec![
        m(8080, 80, Proto::Tcp, None),
        m(8081, 80, Proto::Tcp, None),
        m(8080, 81, Proto::Udp, None),
        m(8082, 82, Proto::Udp, None),
        m(8083, 83, Proto::Tcp, Some("192.168.0.2")),
        m(8084, 84, Proto::Tcp, Some("0.0.0.0")),
        m(8085, 85, Proto::Tcp, Some("2001:db8:a::1")),
        m(8086, 86, Proto::Tcp, Some("::")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host_ip: Option<&str>) -> Mapping {
        Mapping {
            host_port: 8080,
            container_port: 80,
            proto: Proto::Tcp,
            host_ip: host_ip.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn host_ip_family_rules_match_reference() {
        let v4 = IpFamily::V4;
        let v6 = IpFamily::V6;
        assert_eq!(mapping(None).target_for(v4), Some(None));
        assert_eq!(mapping(None).target_for(v6), Some(None));
        assert_eq!(mapping(Some("0.0.0.0")).target_for(v4), Some(None));
        assert_eq!(mapping(Some("0.0.0.0")).target_for(v6), None);
        assert_eq!(mapping(Some("::")).target_for(v4), None);
        let ip: IpAddr = "192.168.0.2".parse().unwrap();
        assert_eq!(mapping(Some("192.168.0.2")).target_for(v4), Some(Some(ip)));
        assert_eq!(mapping(Some("192.168.0.2")).target_for(v6), None);
    }

    #[test]
    fn protocols() {
        assert_eq!(Proto::parse("TCP"), Some(Proto::Tcp));
        assert_eq!(Proto::parse("sctp").map(Proto::number), Some(132));
        assert_eq!(Proto::parse("icmp"), None);
        assert_eq!(Proto::from_number(17), Some(Proto::Udp));
        assert_eq!(Proto::from_number(1), None);
    }
}
