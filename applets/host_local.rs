//! `host-local` IPAM: allocates one address per range set from ranges in the config and
//! records each reservation as a file under `dataDir`, compatible with the reference's
//! `plugins/ipam/host-local` (FEATURES.md 6.10). Run with the full network config of the
//! plugin that delegates to it (FEATURES.md 1.7). Beyond the reference: GC releases every
//! reservation not in `cni.dev/valid-attachments` (nothing without that key), `ipam.exclude`
//! lists CIDRs never handed out (USER-ASKS row 19), STATUS reports an exhausted range set with
//! code 50 (USER-ASKS rows 2, 3), CHECK also compares the reservations with `prevResult`, a
//! repeated ADD returns the addresses already held, and DEL reads only the network name and
//! `dataDir` (ranges given only through `ipRanges` are often absent from DEL).

use crate::error::bad_config;
use crate::error::{CniError, code};
use crate::ipam::allocator::{allocate, free_addresses, release, release_all_but};
use crate::ipam::config::{HostLocalConfig, data_dir, ipam_section, read_resolv_conf};
use crate::ipam::exclude::{Exclude, Excluding};
use crate::ipam::{DiskStore, RangeSet, Store};
use crate::keys::{Key, key};
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, Dns, NetConf};
use serde::Deserialize;
use std::net::IpAddr;

/// The host-local applet.
pub struct HostLocal;

/// host-local reads the plugin-level config; its own keys live in `ipam`.
#[derive(Debug, Deserialize)]
struct Conf {
    #[serde(flatten)]
    net: NetConf,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("ipam.ranges", r#"[[{"subnet":"10.2.0.0/24"}]]"#, "range sets: each a list of {subnet, rangeStart, rangeEnd, gateway}"),
    key("ipam.subnet", r#""10.1.0.0/24""#, "a single range (legacy form of ranges)"),
    key("ipam.rangeStart", r#""10.1.0.10""#, "first address handed out in subnet"),
    key("ipam.rangeEnd", r#""10.1.0.50""#, "last address handed out in subnet"),
    key("ipam.gateway", r#""10.1.0.1""#, "gateway of subnet (never handed out)"),
    key("ipam.routes", r#"[{"dst":"0.0.0.0/0"}]"#, "routes to return: {dst, gw}"),
    key("ipam.dataDir", r#""/var/lib/cni/networks""#, "where reservations are kept"),
    key("ipam.resolvConf", r#""/etc/resolv.conf""#, "a resolv.conf to return as DNS"),
    key("ipam.exclude", r#"["10.1.0.32/28"]"#, "CIDRs never handed out (beyond the reference)"),
];

impl Plugin for HostLocal {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let (conf, _) = load(args)?;
        let requested = conf.requests_per_set()?;
        let dns = match &conf.resolv_conf {
            Some(path) => read_resolv_conf(path)?,
            None => Dns::default(),
        };
        let exclude = exclude_of(args)?;
        if let Some(ip) = requested.iter().flatten().find(|ip| exclude.contains(**ip)) {
            return Err(bad_config(format!(
                "requested IP address {ip} is excluded (ipam.exclude)"
            )));
        }
        let mut disk = DiskStore::open(&conf.data_dir, &conf.name)?;
        let mut store = Excluding {
            inner: &mut disk,
            exclude: &exclude,
        };
        let ips = allocate(
            &mut store,
            &conf.range_sets,
            &args.container_id,
            &args.ifname,
            &requested,
        )?;
        Ok(CniResult {
            ips,
            routes: conf.routes,
            dns,
            ..Default::default()
        })
    }

    fn del(&self, args: &CmdArgs) -> anyhow::Result<()> {
        // Only the store's location: ranges from ipRanges are often absent from DEL.
        let conf: Conf = args.config()?;
        if let Some(mut store) = DiskStore::open_existing(&data_dir(&conf.net)?, &conf.net.name)? {
            release(&mut store, &args.container_id, &args.ifname)?;
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (conf, net) = load(args)?;
        let held = match DiskStore::open_existing(&conf.data_dir, &conf.name)? {
            Some(store) => store.get_by_id(&args.container_id, &args.ifname)?,
            None => Vec::new(),
        };
        if held.is_empty() {
            anyhow::bail!(
                "host-local: Failed to find address added by container {}",
                args.container_id
            );
        }
        match net.prev_result()? {
            Some(prev) => check_prev(&conf.range_sets, &held, &prev),
            None => Ok(()),
        }
    }

    fn gc(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (conf, net) = load(args)?;
        // Without the list nothing can be known to be stale, so nothing is released (an empty
        // list means "none valid"). libcni sends no list when its caller gives none, as
        // `cnitool gc` does after DELeting every cached attachment; failing there would fail
        // every such GC, which the reference (no GC at all) never does.
        let Some(valid) = net.valid_attachments.as_deref() else {
            return Ok(());
        };
        if let Some(mut store) = DiskStore::open_existing(&conf.data_dir, &conf.name)? {
            release_all_but(&mut store, valid)?;
        }
        Ok(())
    }

    fn status(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (conf, _) = load(args)?;
        let exclude = exclude_of(args)?;
        let reservations = match DiskStore::open_existing(&conf.data_dir, &conf.name)? {
            Some(store) => store.list()?,
            None => Vec::new(),
        };
        let exhausted: Vec<String> = conf
            .range_sets
            .iter()
            .zip(&conf.set_labels)
            .filter(|(set, _)| {
                free_addresses(set, &reservations).saturating_sub(exclude.count_in(set)) == 0
            })
            .map(|(set, label)| format!("{label} ({set})"))
            .collect();
        if exhausted.is_empty() {
            return Ok(());
        }
        Err(CniError::new(
            code::PLUGIN_NOT_AVAILABLE,
            format!(
                "no IP addresses available in range set {}",
                exhausted.join(", ")
            ),
        )
        .into())
    }
}

/// Decodes stdin and reads host-local's keys from it.
fn load(args: &CmdArgs) -> anyhow::Result<(HostLocalConfig, NetConf)> {
    let conf: Conf = args.config()?;
    let hl = HostLocalConfig::load(&conf.net, &args.args)?;
    Ok((hl, conf.net))
}

/// `ipam.exclude`: CIDRs never handed out (beyond the reference; USER-ASKS row 19).
fn exclude_of(args: &CmdArgs) -> anyhow::Result<Exclude> {
    let conf: Conf = args.config()?;
    Exclude::parse(ipam_section(&conf.net)?.get("exclude"), "ipam.exclude")
}

/// CHECK against `prevResult`: within the configured range sets, the addresses it lists and
/// the addresses held by this attachment must be the same.
fn check_prev(sets: &[RangeSet], held: &[IpAddr], prev: &CniResult) -> anyhow::Result<()> {
    let ours = |ip: &IpAddr| sets.iter().any(|s| s.contains(*ip));
    let listed: Vec<IpAddr> = prev
        .ips
        .iter()
        .map(|c| c.address.addr())
        .filter(ours)
        .collect();
    if let Some(ip) = listed.iter().find(|ip| !held.contains(ip)) {
        anyhow::bail!(
            "host-local: prevResult address {ip} is not reserved for this container and interface"
        );
    }
    if let Some(ip) = held
        .iter()
        .filter(|ip| ours(ip))
        .find(|ip| !listed.contains(ip))
    {
        anyhow::bail!(
            "host-local: address {ip} reserved for this container and interface is missing from prevResult"
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "host_local_tests.rs"]
mod tests;
