//! `macvlan`: gives the container its own MAC on a host NIC (the master): a macvlan link
//! named `CNI_IFNAME`, created by a socket inside the container netns (so a host link of that
//! name cannot clash; the reference creates a temporary name and renames it), addressed by
//! IPAM when an `ipam` section is given (L2 only otherwise). Mirrors the
//! reference macvlan plugin (FEATURES.md 6.3): keys `master` (default: the default route's
//! interface), `mode` (bridge, private, vepa, passthru), `mtu` (at most the master's), `mac`
//! (config < CNI_ARGS `MAC` < `runtimeConfig.mac`), `bcqueuelen`, `linkInContainer`; result
//! `[macvlan]` with `ips` on interface 0 and the config's DNS only; `arp_notify` and
//! `ndisc_notify` set when addressed.
//!
//! `hostShim` (issue 16; src/podnet/shim.rs): a bridge-mode macvlan on the master in the host,
//! shared by the pods on that master, with a host route to each pod address, so the host
//! reaches its macvlan pods and they reach it; removed with the last pod when we made it.
//!
//! Beyond the reference (USER-ASKS rows 3, 12, 20): with no `master` and a `prevResult`, the
//! master is the previous plugin's one host-side interface (chained mode); DEL reads only the
//! raw config, so it needs neither the master nor a default route, releases IPAM first and
//! treats a missing netns or link as done; GC is forwarded to IPAM; config errors are code 7.

use crate::doctor::{Need, Probe};
use crate::error::{ErrorList, bad_config};
use crate::keys::{Key, key};
use crate::netlink::{Handle, KindData, Link, LinkKind, LinkSpec, MacvlanMode, parse_mac};
use crate::podnet;
use crate::podnet::shim::{self, ShimConf};
use crate::podnet::stacked::{self, Addressing, LowerConf, Sides};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Command, Plugin};
use crate::types::version::{Family, Version};
use crate::types::{CniResult, NetConf};
use anyhow::{Result, bail};
use serde::Deserialize;

/// The applet.
pub struct Macvlan;

/// The macvlan plugin's configuration.
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
    mac: String,
    #[serde(default)]
    bcqueuelen: u32,
    /// A bridge-mode macvlan on the master in the host, so the host reaches its pods.
    #[serde(default, rename = "hostShim", deserialize_with = "shim::deserialize")]
    host_shim: Option<ShimConf>,
}

/// What DEL reads: nothing that needs the master to exist.
#[derive(Debug, Deserialize)]
struct DelConfig {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default, rename = "hostShim", deserialize_with = "shim::deserialize")]
    host_shim: Option<ShimConf>,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("master", r#""eth0""#, "the host NIC to stack on (default: chained prevResult's interface, else the default route's)"),
    key("mtu", "1500", "MTU of the new link, at most the master's (default: the master's)"),
    key("linkInContainer", "true", "the master is in the container netns, not on the host"),
    key("mode", r#""bridge""#, "bridge, private, vepa or passthru (default bridge)"),
    key("mac", r#""c2:11:22:33:44:55""#, "MAC of the container link (CNI_ARGS MAC and runtimeConfig.mac win)"),
    key("bcqueuelen", "1000", "length of the broadcast queue (default: the kernel's)"),
    key("hostShim", r#"{"name":"mv-host","address":"192.168.1.250/24","stateDir":"/tmp/shim"}"#, "true or {name,address,stateDir}: a host macvlan so the host reaches its pods"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[Need::always(Probe::Link("macvlan"))];

impl Plugin for Macvlan {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let ns = args.open_netns()?;
        let (host, cont) = (Handle::new()?, Handle::in_netns(&ns)?);
        let sides = Sides {
            host: &host,
            cont: &cont,
            ns: &ns,
        };
        let prev = conf.net.prev_result()?;
        let master =
            stacked::find_master(&conf.lower, prev.as_ref(), args, sides.lower(&conf.lower))?;
        stacked::check_mtu(conf.lower.mtu, &master)?;
        let mut rb = Rollback::new();
        let spec = conf.link_spec(&master, sides.parent_netnsid(&conf.lower)?, args)?;
        let link = stacked::create_in_container(&sides, &spec, &mut rb)?;
        let addressing = match podnet::ipam_type(&conf.net) {
            Some(t) => Addressing::Ipam(t),
            None => Addressing::None,
        };
        let result =
            stacked::address_link(&sides, args, &conf.net, &link, addressing, true, &mut rb)?;
        if let Some(shim) = &conf.host_shim {
            let ips: Vec<_> = result.ips.iter().map(|ip| ip.address).collect();
            let owner = (args.container_id.as_str(), args.ifname.as_str());
            shim::attach(&host, shim, &master, &ips, owner, &mut rb)?;
        }
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf: DelConfig = args.config()?;
        let mut errs = ErrorList::new();
        // The shim's routes first: they live on the host, whatever became of the container.
        if let Some(shim) = &conf.host_shim {
            let owner = (args.container_id.as_str(), args.ifname.as_str());
            errs.note(Handle::new().and_then(|host| shim::detach(&host, shim, owner)));
        }
        errs.note(stacked::del_container_link(args, &conf.net));
        errs.finish()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        stacked::check_attachment(args, &conf.net, &conf.lower, "macvlan", |d| {
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
    /// Decodes stdin and checks what can be checked without the kernel (code 7).
    fn load(args: &CmdArgs) -> Result<Config> {
        let c: Config = args.config()?;
        c.mode()?;
        c.mac(args)?;
        if c.host_shim.is_some() && (c.lower.link_in_container || c.mode()? != MacvlanMode::Bridge)
        {
            return Err(bad_config(
                "hostShim needs a bridge-mode macvlan whose master is on the host (a shim reaches only bridge-mode children of the same master)",
            ));
        }
        if podnet::ipam_type(&c.net).is_none() && args.command == Command::Add {
            l2_only_needs_interfaces(&args.version)?;
        }
        Ok(c)
    }

    /// `mode`; empty means bridge. `source` needs a MAC list the CNI config cannot give.
    fn mode(&self) -> Result<MacvlanMode> {
        match self.mode.as_str() {
            "" => Ok(MacvlanMode::Bridge),
            "bridge" | "private" | "vepa" | "passthru" => {
                Ok(MacvlanMode::from_name(&self.mode).expect("listed"))
            }
            other => Err(bad_config(format!(
                "unknown macvlan mode: {other:?} (want bridge, private, vepa or passthru)"
            ))),
        }
    }

    /// The MAC asked for: `runtimeConfig.mac`, else `args.cni.mac`, else CNI_ARGS `MAC`, else
    /// the config's `mac`.
    fn mac(&self, args: &CmdArgs) -> Result<Option<[u8; 6]>> {
        if let Some(mac) = podnet::container_mac(&self.net, args)? {
            return Ok(Some(mac));
        }
        if self.mac.is_empty() {
            return Ok(None);
        }
        parse_mac(&self.mac)
            .map(Some)
            .map_err(|e| bad_config(format!("invalid MAC address for macvlan: {e:#}")))
    }

    /// The link to create in the container on `master` (in the netns the container knows as
    /// `netnsid`).
    fn link_spec(&self, master: &Link, netnsid: Option<i32>, args: &CmdArgs) -> Result<LinkSpec> {
        let kind = LinkKind::Macvlan {
            mode: self.mode()?,
            bc_queue_len: (self.bcqueuelen != 0).then_some(self.bcqueuelen),
        };
        Ok(stacked::stacked_spec(
            &args.ifname,
            kind,
            master.index,
            netnsid,
            self.lower.mtu,
            self.mac(args)?,
        ))
    }

    /// CHECK: the kernel's mode (and broadcast queue length, when configured) match.
    fn check_kind_data(&self, data: &KindData) -> Result<()> {
        let want = self.mode()?;
        let KindData::Macvlan { mode, bc_queue_len } = *data else {
            bail!("container interface is not a macvlan");
        };
        if mode != want as u32 {
            let have = MacvlanMode::from_raw(mode).map_or("unknown", MacvlanMode::name);
            bail!(
                "container macvlan mode {have} does not match expected value: {}",
                want.name()
            );
        }
        if self.bcqueuelen != 0 && bc_queue_len.is_some_and(|l| l != self.bcqueuelen) {
            bail!(
                "container macvlan bcqueuelen {} does not match expected value: {}",
                bc_queue_len.unwrap_or_default(),
                self.bcqueuelen
            );
        }
        Ok(())
    }
}

/// Results before 0.3.0 carry no interfaces, only addresses, so an L2-only macvlan cannot be
/// reported in them: refused up front (code 7) rather than failing after the link exists.
fn l2_only_needs_interfaces(version: &str) -> Result<()> {
    let v = if version.is_empty() { "0.1.0" } else { version };
    match Version::parse(v) {
        Ok(v) if v.family() == Family::V02 => Err(bad_config(format!(
            "macvlan without \"ipam\" (L2 only) needs cniVersion 0.3.0 or later: a {v} \
             result has no room for an interface without addresses"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "macvlan_tests.rs"]
mod tests;
