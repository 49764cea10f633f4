//! `vrf`: puts the container interface into a VRF, mirroring the reference meta plugin
//! `plugins/meta/vrf` (FEATURES.md 6.18). In the container netns: find the VRF `vrfname` or
//! create it (bound to `table`, or to the lowest table from 1 no other VRF uses) and bring it
//! up; enslave `CNI_IFNAME` (refused when it already has a master); re-add the global IPv6
//! addresses the kernel dropped on enslaving and wait for their local routes in the VRF's
//! table (10 ms back-off, doubling, 8 retries); move the interface's universe-scope main-table
//! routes into that table. ADD returns `prevResult`.
//!
//! DEL releases the interface and deletes the VRF once no interface is left in it. Beyond the
//! reference: DEL succeeds when the interface is gone too (the reference fails), releases the
//! interface only from this VRF, and a failed ADD undoes what it did.

use crate::doctor::{Need, Probe};
use crate::error::{ErrorList, bad_config};
use crate::keys::{Key, key};
use crate::netlink::vrf::Vrf;
use crate::netlink::{Address, Family, Handle, LinkKind, LinkSpec, RouteSpec};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, NetConf};
use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// The applet.
pub struct VrfPlugin;

const RT_SCOPE_UNIVERSE: u8 = 0;
const IFA_F_NODAD: u32 = 0x02;
const LOCAL_ROUTE_RETRIES: u32 = 8;

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    vrfname: String,
    #[serde(default)]
    table: u32,
}

fn config(args: &CmdArgs) -> Result<Config> {
    let conf: Config = args.config()?;
    if conf.vrfname.is_empty() {
        return Err(bad_config(
            "configuration is expected to have a valid vrf name",
        ));
    }
    Ok(conf)
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("vrfname", r#""blue""#, "the VRF to put the interface in; made if missing (required)"),
    key("table", "100", "routing table of a new VRF (default: the lowest from 1 no VRF uses)"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[Need::always(Probe::Link("vrf"))];

impl Plugin for VrfPlugin {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = config(args)?;
        let prev = conf
            .net
            .prev_result()?
            .ok_or_else(|| bad_config("missing prevResult from earlier plugin"))?;
        let nl = Handle::in_netns(&args.open_netns()?)?;
        let mut rollback = Rollback::new();
        let vrf = find_or_create(&nl, &conf, &mut rollback)?;
        add_interface(&nl, &vrf, &args.ifname, &mut rollback)?;
        rollback.commit();
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf = config(args)?;
        let Some(ns) = args.netns_if_present()? else {
            return Ok(());
        };
        let nl = Handle::in_netns(&ns)?;
        let Some(vrf) = nl.vrf_by_name(&conf.vrfname)? else {
            return Ok(());
        };
        let mut errors = ErrorList::new();
        if let Some(link) = nl.link_by_name(&args.ifname)?
            && link.master == Some(vrf.index)
        {
            errors.note(nl.set_nomaster(link.index));
        }
        let enslaved = nl.links()?.iter().any(|l| l.master == Some(vrf.index));
        if !enslaved {
            errors.note(nl.delete_link(vrf.index).context("delete the VRF"));
        }
        errors.finish()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = config(args)?;
        conf.net
            .prev_result()?
            .ok_or_else(|| bad_config("missing prevResult from earlier plugin"))?;
        let nl = Handle::in_netns(&args.open_netns()?)?;
        let vrf = nl
            .vrf_by_name(&conf.vrfname)?
            .with_context(|| format!("VRF {} not found", conf.vrfname))?;
        let link = nl.link_by_name(&args.ifname)?;
        if link.and_then(|l| l.master) != Some(vrf.index) {
            bail!(
                "failed to find {} associated to vrf {}",
                args.ifname,
                conf.vrfname
            );
        }
        Ok(())
    }
}

/// The VRF `vrfname` (its table must match a non-zero `table`), created and brought up when
/// missing.
fn find_or_create<'a>(nl: &'a Handle, conf: &Config, rb: &mut Rollback<'a>) -> Result<Vrf> {
    let vrfs = nl.vrfs()?;
    if let Some(v) = vrfs.iter().find(|v| v.name == conf.vrfname) {
        if conf.table != 0 && v.table != conf.table {
            bail!(
                "VRF {} already exist with different routing table {}",
                v.name,
                v.table
            );
        }
        return Ok(v.clone());
    }
    if nl.link_by_name(&conf.vrfname)?.is_some() {
        bail!("Netlink {} is not a VRF", conf.vrfname);
    }
    let table = match conf.table {
        0 => lowest_free(vrfs.iter().map(|v| v.table).collect()),
        t => t,
    };
    let mut spec = LinkSpec::new(conf.vrfname.clone(), LinkKind::Vrf { table });
    spec.up = true;
    nl.create_link(&spec)
        .with_context(|| format!("could not add VRF {}", conf.vrfname))?;
    let vrf = nl
        .vrf_by_name(&conf.vrfname)?
        .with_context(|| format!("VRF {} vanished after creation", conf.vrfname))?;
    let index = vrf.index;
    rb.push("VRF", move || nl.delete_link(index));
    Ok(vrf)
}

/// The lowest table from 1 that no VRF uses.
fn lowest_free(used: BTreeSet<u32>) -> u32 {
    (1..).find(|t| !used.contains(t)).expect("a free table")
}

/// The global addresses of one family of a link.
fn global_addresses(nl: &Handle, index: u32, family: Family) -> Result<Vec<Address>> {
    Ok(nl
        .addresses(Some(index), Some(family))?
        .into_iter()
        .filter(|a| a.scope == RT_SCOPE_UNIVERSE)
        .collect())
}

fn add_interface<'a>(nl: &'a Handle, vrf: &Vrf, ifname: &str, rb: &mut Rollback<'a>) -> Result<()> {
    let link = nl
        .link_by_name(ifname)?
        .with_context(|| format!("could not get link by name {ifname}"))?;
    if let Some(m) = link.master {
        let name = nl.link_by_index(m)?.map(|l| l.name).unwrap_or_default();
        bail!("interface {ifname} has already a master set: {name}");
    }
    let before = global_addresses(nl, link.index, Family::V6)?;
    let mut routes = Vec::new();
    for family in [Family::V4, Family::V6] {
        let main = nl.routes(family, Some(libc::RT_TABLE_MAIN as u32))?;
        routes.extend(main.into_iter().filter(|r| {
            r.oif == Some(link.index) && r.scope.unwrap_or(RT_SCOPE_UNIVERSE) == RT_SCOPE_UNIVERSE
        }));
    }
    nl.set_master(link.index, vrf.index)
        .with_context(|| format!("could not set vrf {} as master of {ifname}", vrf.name))?;
    let index = link.index;
    rb.push("enslave", move || nl.set_nomaster(index));
    let after = global_addresses(nl, link.index, Family::V6)?;
    for a in before
        .iter()
        .filter(|a| !after.iter().any(|b| b.addr == a.addr))
    {
        nl.add_address(link.index, a.addr, a.flags & IFA_F_NODAD != 0)
            .with_context(|| format!("could not restore address {} to {ifname}", a.addr))?;
        wait_local_route(nl, vrf.table, link.index, a.addr)?;
    }
    for r in routes {
        let moved = RouteSpec {
            table: Some(vrf.table),
            ..r
        };
        nl.replace_route(&moved)
            .with_context(|| format!("could not add route {}", moved.describe()))?;
    }
    Ok(())
}

/// Waits until the local route of `addr` shows in `table` via the link (10 ms, doubling).
fn wait_local_route(nl: &Handle, table: u32, index: u32, addr: IpNet) -> Result<()> {
    let host = IpNet::from(addr.addr());
    for retry in 0..=LOCAL_ROUTE_RETRIES {
        let found = nl
            .routes(Family::of_net(&host), Some(table))
            .unwrap_or_default()
            .iter()
            .any(|r| r.dst == host && r.oif == Some(index));
        if found {
            return Ok(());
        }
        if retry < LOCAL_ROUTE_RETRIES {
            std::thread::sleep(Duration::from_millis(10 << retry));
        }
    }
    bail!(
        "failed getting local/host addresses for ifindex {index} in table {table} with dst {host}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_table_is_lowest_unused() {
        assert_eq!(lowest_free(BTreeSet::new()), 1);
        assert_eq!(lowest_free([1, 2, 4].into()), 3);
    }

    #[test]
    fn help_lists_every_config_key() {
        crate::keys::assert_struct_keys::<Config>(KEYS);
    }
}
