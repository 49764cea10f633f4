//! `loopback`: brings `lo` up in the container netns. Mirrors the reference loopback plugin
//! (FEATURES.md 6.9): ADD sets `lo` up and reports it with its loopback addresses, or passes
//! `prevResult` through when chained (a 0.1.0/0.2.0 result carries no address, as the
//! reference's reads there); DEL sets it down and succeeds when the netns is gone;
//! CHECK verifies it is up. `CNI_IFNAME` is ignored, as in the reference.

use crate::error::{CniError, code};
use crate::keys::Key;
use crate::netlink::{Handle, Link};
use crate::skel::{CmdArgs, Plugin};
use crate::types::version::{Family, Version};
use crate::types::{CniResult, Interface, IpConfig, NetConf};
use anyhow::Context;

/// The applet.
pub struct Loopback;

/// loopback has no keys of its own.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Config {
    #[serde(flatten)]
    net: NetConf,
}

/// Its configuration keys (none of its own); a test holds this equal to the struct.
const KEYS: &[Key] = &[];

impl Plugin for Loopback {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let conf: Config = args.config()?;
        let prev = conf.net.prev_result()?;
        let ns = args.open_netns()?;
        let nl = Handle::in_netns(&ns)?;
        let lo = find_lo(&nl)?;
        nl.set_up(lo.index).context("set lo up")?;
        let ips = loopback_addresses(&nl, &lo)?;
        if let Some(prev) = prev {
            return Ok(prev);
        }
        // A 0.1.0/0.2.0 result has only ip4/ip6, which a runtime of that age takes as the
        // container's address: the reference's result reads as just `"dns":{}` there (it
        // prints the 1.0 layout under the old version, which such a runtime cannot read).
        if Version::parse(&conf.net.cni_version)?.family() == Family::V02 {
            return Ok(CniResult::default());
        }
        Ok(CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                sandbox: args.netns.clone(),
                ..Default::default()
            }],
            ips,
            ..Default::default()
        })
    }

    fn del(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let Some(ns) = args.netns_if_present()? else {
            return Ok(());
        };
        let nl = Handle::in_netns(&ns)?;
        match nl.link_by_name("lo")? {
            Some(lo) => nl.set_down(lo.index).context("set lo down"),
            None => Ok(()),
        }
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let ns = args.open_netns()?;
        let lo = find_lo(&Handle::in_netns(&ns)?)?;
        if !lo.is_up() {
            anyhow::bail!("loopback interface lo is down");
        }
        Ok(())
    }
}

fn find_lo(nl: &Handle) -> anyhow::Result<Link> {
    nl.link_by_name("lo")?.ok_or_else(|| {
        CniError::new(
            code::INVALID_NETNS,
            "no lo interface in the container netns",
        )
        .into()
    })
}

/// The first IPv4 and first IPv6 address of `lo`; any non-loopback address is an error, as in
/// the reference.
fn loopback_addresses(nl: &Handle, lo: &Link) -> anyhow::Result<Vec<IpConfig>> {
    let mut ips: Vec<IpConfig> = Vec::new();
    for a in nl.addresses(Some(lo.index), None)? {
        if !a.addr.addr().is_loopback() {
            anyhow::bail!("lo has a non-loopback address {}", a.addr);
        }
        if !ips
            .iter()
            .any(|i| i.address.addr().is_ipv4() == a.addr.addr().is_ipv4())
        {
            ips.push(IpConfig {
                interface: Some(0),
                address: a.addr,
                gateway: None,
            });
        }
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_lists_every_config_key() {
        crate::keys::assert_struct_keys::<super::Config>(super::KEYS);
    }
}
