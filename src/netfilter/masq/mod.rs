//! IP masquerade for bridge and ptp (`ipMasq`), mirroring the reference's
//! `SetupIPMasqForNetworks`, `TeardownIPMasqForNetworks` and `GCIPMasqForNetwork`: setup and
//! CHECK use the chosen backend; teardown and GC run through *both* backends (the attachment
//! may have been made by another version or configuration) and report a backend's error only
//! when that backend is usable here.
//!
//! All of it acts on the netns of the calling thread (the host side of the plugin).

pub mod iptables;
pub mod nftables;

use super::iptables::Iptables;
use super::naming::{chain_name, comment};
use super::nftables::Nft;
use super::{Backend, BackendKind, IpFamily, all_backends, backend};
use crate::error::ErrorList;
use crate::types::Attachment;
use anyhow::{Context, Result, bail};
use ipnet::IpNet;

/// One attachment's masquerade: its addresses (with their prefix, e.g. `10.88.0.5/16`), the
/// network name, the container interface and the container ID.
#[derive(Debug, Clone, Copy)]
pub struct Masq<'a> {
    /// Container addresses; each one's subnet is left un-masqueraded.
    pub ipns: &'a [IpNet],
    /// The network name (`name` in the config).
    pub network: &'a str,
    /// `CNI_IFNAME` (used by the nftables layout only, as in the reference).
    pub ifname: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
}

/// Installs masquerading for `m` with `kind`.
pub fn setup_ip_masq(kind: BackendKind, m: &Masq<'_>) -> Result<()> {
    backend(kind)
        .setup_masq(m)
        .with_context(|| format!("set up ipMasq with {}", kind.name()))
}

/// Removes masquerading for `m` from both backends; success when nothing is there or a
/// backend (for iptables: an address family) is not usable here.
pub fn teardown_ip_masq(m: &Masq<'_>) -> Result<()> {
    let mut errors = ErrorList::new();
    for b in all_backends() {
        if let Err(e) = b.teardown_masq(m)
            && b.usable()
        {
            errors.note::<()>(Err(
                e.context(format!("tear down ipMasq with {}", b.kind().name()))
            ));
        }
    }
    errors.finish()
}

/// Fails unless the masquerading `kind` makes for `m` is in place.
pub fn check_ip_masq(kind: BackendKind, m: &Masq<'_>) -> Result<()> {
    backend(kind)
        .check_masq(m)
        .with_context(|| format!("check ipMasq with {}", kind.name()))
}

/// Removes masquerading of `network` that belongs to none of `valid`, in both backends.
pub fn gc_ip_masq(network: &str, valid: &[Attachment]) -> Result<()> {
    let mut errors = ErrorList::new();
    for b in all_backends() {
        if let Err(e) = b.gc_masq(network, valid)
            && b.usable()
        {
            errors.note::<()>(Err(
                e.context(format!("garbage-collect ipMasq with {}", b.kind().name()))
            ));
        }
    }
    errors.finish()
}

/// The iptables backend.
#[derive(Debug, Clone, Copy)]
pub struct IptablesBackend;

/// The nftables backend.
#[derive(Debug, Clone, Copy)]
pub struct NftablesBackend;

impl Backend for IptablesBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Iptables
    }

    fn usable(&self) -> bool {
        Iptables::new(IpFamily::V4).usable()
    }

    fn setup_masq(&self, m: &Masq<'_>) -> Result<()> {
        let (chain, comment) = (
            chain_name(m.network, m.container_id),
            comment(m.network, m.container_id),
        );
        for family in IpFamily::present(m.ipns) {
            let ipt = Iptables::new(family);
            let saved = ipt.save(iptables::TABLE)?;
            ipt.restore(&iptables::plan_setup(
                &saved, family, m.ipns, &chain, &comment,
            ))?;
        }
        Ok(())
    }

    /// A family whose tools do not work here (e.g. no ip6tables) cannot hold rules of ours:
    /// its failure is no error, whatever the other family does.
    fn teardown_masq(&self, m: &Masq<'_>) -> Result<()> {
        let chain = chain_name(m.network, m.container_id);
        let mut errors = ErrorList::new();
        for family in IpFamily::present(m.ipns) {
            let ipt = Iptables::new(family);
            let done = ipt
                .save(iptables::TABLE)
                .and_then(|saved| ipt.restore(&iptables::plan_teardown(&saved, &chain)));
            if done.is_err() && ipt.usable() {
                errors.note(done);
            }
        }
        errors.finish()
    }

    fn check_masq(&self, m: &Masq<'_>) -> Result<()> {
        let (chain, comment) = (
            chain_name(m.network, m.container_id),
            comment(m.network, m.container_id),
        );
        let mut gaps = Vec::new();
        for family in IpFamily::present(m.ipns) {
            let saved = Iptables::new(family).save(iptables::TABLE)?;
            gaps.extend(iptables::missing(&saved, family, m.ipns, &chain, &comment));
        }
        if !gaps.is_empty() {
            bail!("iptables nat lacks {}", gaps.join("; "));
        }
        Ok(())
    }

    /// Not possible, as in the reference: a chain name does not tell its network.
    fn gc_masq(&self, _network: &str, _valid: &[Attachment]) -> Result<()> {
        Ok(())
    }
}

impl Backend for NftablesBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Nftables
    }

    fn usable(&self) -> bool {
        Nft::usable()
    }

    fn setup_masq(&self, m: &Masq<'_>) -> Result<()> {
        nftables::setup(
            &mut Nft::new()?,
            m.ipns,
            m.network,
            m.ifname,
            m.container_id,
        )
    }

    fn teardown_masq(&self, m: &Masq<'_>) -> Result<()> {
        nftables::teardown(&mut Nft::new()?, m.network, m.ifname, m.container_id)
    }

    fn check_masq(&self, m: &Masq<'_>) -> Result<()> {
        nftables::check(
            &mut Nft::new()?,
            m.ipns,
            m.network,
            m.ifname,
            m.container_id,
        )
    }

    fn gc_masq(&self, network: &str, valid: &[Attachment]) -> Result<()> {
        nftables::gc(&mut Nft::new()?, network, valid)
    }
}

#[cfg(test)]
#[path = "privileged_tests.rs"]
mod privileged_tests;
