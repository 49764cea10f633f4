//! Netfilter for the plugins that program it (bridge and ptp `ipMasq`, portmap; later
//! firewall): two backends, iptables (`iptables-restore` text) and nftables (in-process
//! netlink), behind the [`Backend`] trait, plus the reference's chain naming.
//!
//! Mirrors the reference's `pkg/ip/ipmasq_*_linux.go`, `pkg/utils/{utils,netfilter}.go`.

pub mod conntrack;
pub mod describe;
pub mod firewall;
pub mod iptables;
pub mod masq;
pub mod naming;
pub mod nftables;
pub mod portmap;
pub mod probe;
pub mod spoofcheck;

#[cfg(test)]
pub(crate) mod oracle;

use crate::types::Attachment;
use anyhow::{Result, bail};
use ipnet::IpNet;

pub use masq::{Masq, check_ip_masq, gc_ip_masq, setup_ip_masq, teardown_ip_masq};

/// Which backend programs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `iptables-restore` / `ip6tables-restore`.
    Iptables,
    /// nf_tables over netlink.
    Nftables,
}

impl BackendKind {
    /// The config spelling (`ipMasqBackend`, portmap's `backend`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Iptables => "iptables",
            BackendKind::Nftables => "nftables",
        }
    }
}

/// One netfilter backend. Each feature adds its operations here, so a plugin picks a backend
/// once and DEL can run the same teardown through every backend.
pub trait Backend {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// True when the backend works on this machine (binaries present, kernel support).
    fn usable(&self) -> bool;
    /// Installs masquerading for `m` (idempotent).
    fn setup_masq(&self, m: &Masq<'_>) -> Result<()>;
    /// Removes what [`Backend::setup_masq`] made for `m`; success when nothing is there.
    fn teardown_masq(&self, m: &Masq<'_>) -> Result<()>;
    /// Fails unless everything [`Backend::setup_masq`] makes for `m` is in place.
    fn check_masq(&self, m: &Masq<'_>) -> Result<()>;
    /// Removes masquerading of `network` that belongs to none of the `valid` attachments.
    fn gc_masq(&self, network: &str, valid: &[Attachment]) -> Result<()>;
}

/// The backend object for `kind`.
pub fn backend(kind: BackendKind) -> &'static dyn Backend {
    match kind {
        BackendKind::Iptables => &masq::IptablesBackend,
        BackendKind::Nftables => &masq::NftablesBackend,
    }
}

/// Both backends, iptables first (the order teardown and GC use).
pub fn all_backends() -> [&'static dyn Backend; 2] {
    [
        backend(BackendKind::Iptables),
        backend(BackendKind::Nftables),
    ]
}

/// The backend for a configured name (`"iptables"`, `"nftables"`); with none, iptables unless
/// iptables is unusable and nftables is usable (`SetupIPMasqForNetworks`' default).
pub fn choose_backend(requested: Option<&str>) -> Result<BackendKind> {
    match requested {
        Some("iptables") => Ok(BackendKind::Iptables),
        Some("nftables") => Ok(BackendKind::Nftables),
        Some(other) => bail!("unknown ipmasq backend {other:?}"),
        None => {
            let ipt = backend(BackendKind::Iptables);
            let nft = backend(BackendKind::Nftables);
            Ok(if !ipt.usable() && nft.usable() {
                BackendKind::Nftables
            } else {
                BackendKind::Iptables
            })
        }
    }
}

/// IPv4 or IPv6: picks `iptables` or `ip6tables`, and the multicast range left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4
    V4,
    /// IPv6
    V6,
}

impl IpFamily {
    /// The family of an address/prefix.
    pub fn of(net: &IpNet) -> IpFamily {
        match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }
    }

    /// The families present in `nets`, IPv4 first, each once.
    pub fn present(nets: &[IpNet]) -> Vec<IpFamily> {
        let mut f: Vec<IpFamily> = nets.iter().map(IpFamily::of).collect();
        f.sort();
        f.dedup();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_backend_names() {
        assert_eq!(
            choose_backend(Some("iptables")).unwrap(),
            BackendKind::Iptables
        );
        assert_eq!(
            choose_backend(Some("nftables")).unwrap(),
            BackendKind::Nftables
        );
        let e = choose_backend(Some("ebtables")).unwrap_err().to_string();
        assert_eq!(e, "unknown ipmasq backend \"ebtables\"");
    }

    #[test]
    fn families_present_once_in_order() {
        let nets: Vec<IpNet> = ["fd00::2/64", "10.0.0.2/24", "10.1.0.2/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(IpFamily::present(&nets), [IpFamily::V4, IpFamily::V6]);
        assert!(IpFamily::present(&[]).is_empty());
    }
}
