//! `ipvlan`: the container shares the master's MAC and gets its own addresses on it: an
//! ipvlan link named `CNI_IFNAME`, created by a socket inside the container netns (a host
//! link of that name cannot clash, without the reference's temporary name and rename).
//! Mirrors the reference ipvlan plugin (FEATURES.md 6.4): keys `master` (config, else
//! chained: the `prevResult` interface, else the default route's interface), `mode` (l2, l3,
//! l3s), `mtu`, `linkInContainer`, `ipam` (optional when `prevResult` already
//! carries addresses, which are then applied); result interfaces replaced by `[ipvlan]`, the
//! config's DNS only; `arp_notify` and `ndisc_notify` set.
//!
//! Beyond the reference: the kernel's flags `flag` = bridge (default), private or vepa;
//! `mtu` bounded by the master's as for macvlan and vlan (a config error, code 7, instead of
//! the kernel's EINVAL); DEL reads only the raw config, so it needs neither the master, nor a
//! default route, nor `prevResult` (the reference fails without them), releases IPAM first and
//! treats a missing netns or link as done; GC is forwarded to IPAM.

use crate::doctor::{Need, Probe};
use crate::error::bad_config;
use crate::keys::{Key, key};
use crate::netlink::{Handle, IpvlanFlag, IpvlanMode, KindData, Link, LinkKind, LinkSpec};
use crate::podnet;
use crate::podnet::stacked::{self, Addressing, LowerConf, Sides};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, NetConf};
use anyhow::{Result, bail};
use serde::Deserialize;

/// The applet.
pub struct Ipvlan;

/// The ipvlan plugin's configuration.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(flatten)]
    lower: LowerConf,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    flag: String,
}

/// What DEL reads: nothing that needs the master, a default route or `prevResult`.
#[derive(Debug, Deserialize)]
struct DelConfig {
    #[serde(flatten)]
    net: NetConf,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("master", r#""eth0""#, "the host NIC to stack on (default: chained prevResult's interface, else the default route's)"),
    key("mtu", "1500", "MTU of the new link, at most the master's (default: the master's)"),
    key("linkInContainer", "true", "the master is in the container netns, not on the host"),
    key("mode", r#""l3""#, "l2, l3 or l3s (default l2)"),
    key("flag", r#""private""#, "bridge, private or vepa (default bridge)"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[Need::always(Probe::Link("ipvlan"))];

impl Plugin for Ipvlan {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let prev = conf.net.prev_result()?;
        let addressing = conf.addressing(prev.clone())?;
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
        let result =
            stacked::address_link(&sides, args, &conf.net, &link, addressing, true, &mut rb)?;
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf: DelConfig = args.config()?;
        stacked::del_container_link(args, &conf.net)
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        stacked::check_attachment(args, &conf.net, &conf.lower, "ipvlan", |d| {
            conf.check_kind_data(d)
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
    /// Decodes stdin and checks mode and flag (code 7).
    fn load(args: &CmdArgs) -> Result<Config> {
        let c: Config = args.config()?;
        c.mode()?;
        c.flag()?;
        Ok(c)
    }

    /// `mode`; empty means l2.
    fn mode(&self) -> Result<IpvlanMode> {
        match self.mode.as_str() {
            "" => Ok(IpvlanMode::L2),
            m => IpvlanMode::from_name(m).ok_or_else(|| {
                bad_config(format!("unknown ipvlan mode: {m:?} (want l2, l3 or l3s)"))
            }),
        }
    }

    /// `flag`; empty means bridge.
    fn flag(&self) -> Result<IpvlanFlag> {
        match self.flag.as_str() {
            "" => Ok(IpvlanFlag::Bridge),
            f => IpvlanFlag::from_name(f).ok_or_else(|| {
                bad_config(format!(
                    "unknown ipvlan flag: {f:?} (want bridge, private or vepa)"
                ))
            }),
        }
    }

    /// IPAM when configured, else the addresses of a chained `prevResult`; one of the two
    /// is needed.
    fn addressing(&self, prev: Option<CniResult>) -> Result<Addressing<'_>> {
        if let Some(t) = podnet::ipam_type(&self.net) {
            return Ok(Addressing::Ipam(t));
        }
        match prev {
            Some(p) if !p.ips.is_empty() => Ok(Addressing::Prev(p)),
            _ => Err(bad_config(
                "ipvlan needs an \"ipam\" section, or a prevResult that carries IPs",
            )),
        }
    }

    /// The link to create in the container on `master` (in the netns the container knows as
    /// `netnsid`).
    fn link_spec(&self, master: &Link, netnsid: Option<i32>, args: &CmdArgs) -> Result<LinkSpec> {
        let kind = LinkKind::Ipvlan {
            mode: self.mode()?,
            flags: self.flag()?,
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

    /// CHECK: the kernel's mode and flag match.
    fn check_kind_data(&self, data: &KindData) -> Result<()> {
        let (want_mode, want_flag) = (self.mode()?, self.flag()?);
        let KindData::Ipvlan { mode, flags } = *data else {
            bail!("container interface is not an ipvlan");
        };
        if mode != want_mode as u16 {
            let have = IpvlanMode::from_raw(mode).map_or("unknown", IpvlanMode::name);
            bail!(
                "container ipvlan mode {have} does not match expected value: {}",
                want_mode.name()
            );
        }
        if flags != want_flag as u16 {
            let have = IpvlanFlag::from_raw(flags).map_or("unknown", IpvlanFlag::name);
            bail!(
                "container ipvlan flag {have} does not match expected value: {}",
                want_flag.name()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "ipvlan_tests.rs"]
mod tests;
