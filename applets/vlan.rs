//! `vlan`: puts the container on an 802.1Q VLAN of a host NIC: a vlan link on the master
//! named `CNI_IFNAME`, created by a socket inside the container netns (a host link of that
//! name cannot clash, without the reference's temporary name and rename), addressed by IPAM.
//! Mirrors the reference vlan plugin (FEATURES.md 6.5): keys `master` (required), `vlanId`
//! (0-4094), `mtu` (at most the master's), `linkInContainer`, `ipam` (required); result
//! `[vlan]`, the config's DNS only.
//!
//! Beyond the reference (USER-ASKS rows 3, 12, 20): with no `master` and a `prevResult`, the
//! master is the previous plugin's one host-side interface (chained mode, plugins PR#989);
//! DEL reads only the raw config, so it works with the master gone (the reference fails its
//! MTU check there), releases IPAM first and treats a missing netns or link as done; GC is
//! forwarded to IPAM.

use crate::doctor::{Need, Probe};
use crate::error::bad_config;
use crate::keys::{Key, key};
use crate::netlink::{Handle, KindData, Link, LinkKind, LinkSpec};
use crate::podnet;
use crate::podnet::stacked::{self, Addressing, LowerConf, Sides};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, NetConf};
use anyhow::{Result, bail};
use serde::Deserialize;

/// The applet.
pub struct Vlan;

/// The vlan plugin's configuration.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(flatten)]
    lower: LowerConf,
    #[serde(default)]
    vlan_id: i64,
}

/// What DEL reads: nothing that needs the master to exist.
#[derive(Debug, Deserialize)]
struct DelConfig {
    #[serde(flatten)]
    net: NetConf,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("master", r#""eth0""#, "the host NIC to put the VLAN on (required unless chained: prevResult's one host interface)"),
    key("mtu", "1500", "MTU of the new link, at most the master's (default: the master's)"),
    key("linkInContainer", "true", "the master is in the container netns, not on the host"),
    key("vlanId", "100", "the 802.1Q VLAN id, 0-4094"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[Need::always(Probe::Link("vlan"))];

impl Plugin for Vlan {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let prev = conf.net.prev_result()?;
        if conf.lower.master.is_empty() && prev.is_none() {
            return Err(bad_config(
                "\"master\" field is required. It specifies the host interface name to create the VLAN for",
            ));
        }
        let ns = args.open_netns()?;
        let (host, cont) = (Handle::new()?, Handle::in_netns(&ns)?);
        let sides = Sides {
            host: &host,
            cont: &cont,
            ns: &ns,
        };
        let master =
            stacked::find_master(&conf.lower, prev.as_ref(), args, sides.lower(&conf.lower))?;
        stacked::check_mtu(conf.lower.mtu, &master)?;
        let mut rb = Rollback::new();
        let spec = conf.link_spec(&master, sides.parent_netnsid(&conf.lower)?, args)?;
        let link = stacked::create_in_container(&sides, &spec, &mut rb)?;
        let ipam = Addressing::Ipam(conf.ipam());
        let result = stacked::address_link(&sides, args, &conf.net, &link, ipam, false, &mut rb)?;
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf: DelConfig = args.config()?;
        stacked::del_container_link(args, &conf.net)
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        // IPAM is required (checked at load), so check_attachment always delegates its CHECK.
        stacked::check_attachment(args, &conf.net, &conf.lower, "vlan", |d| match *d {
            KindData::Vlan { id } if i64::from(id) == conf.vlan_id => Ok(()),
            KindData::Vlan { id } => bail!(
                "container vlan {} has VLAN id {id}, the configuration says {}",
                args.ifname,
                conf.vlan_id
            ),
            _ => bail!("container interface {} is not a vlan", args.ifname),
        })
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        let conf: DelConfig = args.config()?;
        stacked::gc_ipam(args, &conf.net)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        let conf: DelConfig = args.config()?;
        podnet::status(args, &conf.net)
    }
}

impl Config {
    /// Decodes stdin; checks the VLAN id and that IPAM is configured (code 7).
    fn load(args: &CmdArgs) -> Result<Config> {
        let c: Config = args.config()?;
        if !(0..=4094).contains(&c.vlan_id) {
            return Err(bad_config(format!(
                "invalid VLAN ID {} (must be between 0 and 4094 inclusive)",
                c.vlan_id
            )));
        }
        if podnet::ipam_type(&c.net).is_none() {
            return Err(bad_config("vlan needs an \"ipam\" section with a \"type\""));
        }
        Ok(c)
    }

    fn ipam(&self) -> &str {
        podnet::ipam_type(&self.net).expect("checked at load")
    }

    /// The link to create in the container on `master` (in the netns the container knows as
    /// `netnsid`).
    fn link_spec(&self, master: &Link, netnsid: Option<i32>, args: &CmdArgs) -> Result<LinkSpec> {
        let kind = LinkKind::Vlan {
            id: u16::try_from(self.vlan_id).expect("checked at load"),
        };
        Ok(stacked::stacked_spec(
            &args.ifname,
            kind,
            master.index,
            netnsid,
            self.lower.mtu,
            None,
        ))
    }
}

#[cfg(test)]
#[path = "vlan_tests.rs"]
mod tests;
