//! `host-device`: hands an existing host network device (a NIC, an SR-IOV virtual function, a
//! sub-function) to the container, renamed to `CNI_IFNAME`, and gives it back on DEL under its
//! own name. Mirrors the reference host-device plugin (FEATURES.md 6.6): the same keys
//! (`device`, `hwaddr`, `kernelpath`, `pciBusID`, `runtimeConfig.deviceID` as SR-IOV device
//! plugins hand it over), the move through a temporary netns with the host name kept in
//! `IFLA_IFALIAS`, DPDK mode for functions bound to a userspace driver (nothing moved, the
//! IPAM result returned but not applied), optional IPAM, the same result.
//!
//! Differences, all on the side of not losing things (USER-ASKS rows 3, 13, 20):
//! - DEL releases IPAM first, always: also with `CNI_NETNS` empty or gone (the reference
//!   leaks the address there and fails the second DEL), and it is total: a missing netns or
//!   device is success. It finds the device also after a rename inside the container, and a
//!   device the kernel returned to the host when the netns died gets its name back.
//! - A failed ADD leaves the device on the host under its name, alias and up state, with IPAM
//!   released; the device is looked up before IPAM runs, so a bad selector allocates nothing.
//! - `runtimeConfig.deviceID` really overrides the config's selectors (the reference documents
//!   that but looks `device` up first); several config selectors must name the same device.
//! - `kernelpath` may also be a network device's own directory (`/sys/devices/virtual/net/x`).

#[path = "host_device_move.rs"]
mod moving;
#[path = "host_device_sys.rs"]
mod sys;

use crate::error::{ErrorList, bad_config};
use crate::exec::delegate;
use crate::ipam::configure::configure_iface;
use crate::keys::{Key, key};
use crate::netlink::{Handle, Link, parse_mac};
use crate::podnet::{self, check};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Command, Plugin};
use crate::types::{CniResult, Interface, NetConf};
use anyhow::{Context, Result};
use moving::Hints;
use serde::Deserialize;
use sys::Sysfs;

/// The applet.
pub struct HostDevice;

/// The host-device plugin's configuration.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    device: String,
    #[serde(default)]
    hwaddr: String,
    #[serde(default)]
    kernelpath: String,
    #[serde(default, rename = "pciBusID")]
    pci_bus_id: String,
    /// The reference's untagged `DPDKMode` field: any key spelling "dpdkmode" in any case, read
    /// by `load` from the raw object (the name is for the keys test's encoding only).
    #[serde(skip_deserializing, rename = "DPDKMode")]
    dpdk_key: bool,
}

/// How the device is named, in the order the reference looks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Name(String),
    Mac([u8; 6]),
    KernelPath(String),
    Pci(String),
    Aux(String),
}

/// The device to use: its selectors and whether it is in DPDK mode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    selectors: Vec<Selector>,
    dpdk: bool,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("device", r#""eth1""#, "the host link to move, by name"),
    key("hwaddr", r#""c2:11:22:33:44:55""#, "the host link to move, by MAC"),
    key("kernelpath", r#""/sys/devices/pci0000:00/0000:00:19.0""#, "the host link to move, by its /sys/devices path"),
    key("pciBusID", r#""0000:04:00.5""#, "the host link to move, by PCI address (vfio-pci, uio: DPDK mode)"),
    key("DPDKMode", "true", "without pciBusID: the device is bound to a userspace driver, nothing is moved (any case)"),
];

impl Plugin for HostDevice {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let target = conf.target(&Sysfs::system())?;
        let ns = args.open_netns()?;
        let host = Handle::new()?;
        let device = match target.dpdk {
            true => None,
            false => Some(find_device(&host, &target, &Sysfs::system())?),
        };
        let mut rb = Rollback::new();
        let mut result = match podnet::ipam_type(&conf.net) {
            Some(t) => podnet::ipam_add(args, t, &mut rb)?,
            None => CniResult::default(),
        };
        let mut iface = Interface {
            name: args.ifname.clone(),
            sandbox: args.netns.clone(),
            ..Default::default()
        };
        if let Some(dev) = &device {
            let moved = moving::move_in(&host, dev, &ns, &args.ifname)?;
            rb.push(format!("give {} back to the host", dev.name), || {
                give_back(&host, dev, &ns, &args.ifname)
            });
            iface.mac = moved.mac_string();
        }
        result.interfaces = vec![iface];
        for ip in &mut result.ips {
            ip.interface = Some(0);
        }
        if device.is_some() && !result.ips.is_empty() {
            let cont = Handle::in_netns(&ns)?;
            configure_iface(&cont, &ns, &args.ifname, &result)?;
        }
        podnet::override_dns(&mut result, &conf.net.dns);
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let mut errors = ErrorList::new();
        errors.note(podnet::release_ipam(args, &conf.net));
        let dpdk = conf.target(&Sysfs::system()).is_ok_and(|t| t.dpdk);
        if !dpdk {
            let hints = conf.hints(args);
            let back = match args.netns_if_present() {
                Ok(Some(ns)) => moving::move_out(&ns, &args.ifname, &hints).map(drop),
                Ok(None) => {
                    Handle::new().and_then(|h| moving::restore_refunded(&h, &hints).map(drop))
                }
                Err(e) => Err(e),
            };
            errors.note(back.context("failed to give the device back to the host"));
        }
        errors.finish()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let ns = args.open_netns()?;
        if let Some(t) = podnet::ipam_type(&conf.net) {
            delegate(Command::Check, t, args)?;
        }
        let prev = check::prev_result(&conf.net, "host-device")?;
        if conf.target(&Sysfs::system())?.dpdk {
            return Ok(());
        }
        let iface = check::container_interface(&prev, args)?;
        let cont = Handle::in_netns(&ns)?;
        let Some(link) = cont.link_by_name(&iface.name)? else {
            anyhow::bail!("Container interface {} not found", iface.name);
        };
        check::check_mac(&link, iface)?;
        check::validate_interface_ips(&cont, &args.ifname, &prev.ips)?;
        check::validate_routes(&cont, &prev.routes)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        match podnet::ipam_type(&conf.net) {
            Some(t) => delegate(Command::Gc, t, args),
            None => Ok(()),
        }
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        podnet::status(args, &Config::load(args)?.net)
    }
}

impl Config {
    /// Decodes stdin; at least one selector is required, each well formed.
    fn load(args: &CmdArgs) -> Result<Config> {
        let mut c: Config = args.config()?;
        let raw: serde_json::Map<String, serde_json::Value> = args.config()?;
        c.dpdk_key = raw
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("dpdkmode") && v.as_bool() == Some(true));
        let device_id = c.device_id()?;
        let none = [&c.device, &c.hwaddr, &c.kernelpath, &c.pci_bus_id]
            .iter()
            .all(|s| s.is_empty());
        if none && device_id.is_none() {
            return Err(bad_config(
                r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#,
            ));
        }
        if !c.hwaddr.is_empty() {
            parse_mac(&c.hwaddr).map_err(|e| bad_config(format!("hwaddr: {e:#}")))?;
        }
        Ok(c)
    }

    fn device_id(&self) -> Result<Option<String>> {
        Ok(self
            .net
            .runtime::<String>("deviceID")?
            .filter(|d| !d.is_empty()))
    }

    /// The selectors to use and the DPDK mode. `runtimeConfig.deviceID` replaces the config's
    /// selectors: a PCI address if sysfs has it, else an auxiliary device, else code 7.
    fn target(&self, sys: &Sysfs) -> Result<Target> {
        let selectors = match self.device_id()? {
            Some(id) if sys.is_pci(&id) => vec![Selector::Pci(id)],
            Some(id) if sys.is_aux(&id) => vec![Selector::Aux(id)],
            Some(id) => {
                return Err(bad_config(format!(
                    "runtimeConfig.deviceID {id} is neither a PCI nor an auxiliary device"
                )));
            }
            None => self.config_selectors()?,
        };
        let pci = selectors.iter().find_map(|s| match s {
            Selector::Pci(a) => Some(a.as_str()),
            _ => None,
        });
        let dpdk = match pci {
            Some(addr) => sys.is_dpdk(addr),
            None => self.dpdk_key,
        };
        Ok(Target { selectors, dpdk })
    }

    fn config_selectors(&self) -> Result<Vec<Selector>> {
        let mut v = Vec::new();
        if !self.device.is_empty() {
            v.push(Selector::Name(self.device.clone()));
        }
        if !self.hwaddr.is_empty() {
            let mac = parse_mac(&self.hwaddr).map_err(|e| bad_config(format!("{e:#}")))?;
            v.push(Selector::Mac(mac));
        }
        if !self.kernelpath.is_empty() {
            v.push(Selector::KernelPath(self.kernelpath.clone()));
        }
        if !self.pci_bus_id.is_empty() {
            v.push(Selector::Pci(self.pci_bus_id.clone()));
        }
        Ok(v)
    }

    /// What recognises the device after a rename or a refund.
    fn hints(&self, args: &CmdArgs) -> Hints {
        let prev = self.net.prev_result().ok().flatten();
        let prev_mac = prev
            .iter()
            .flat_map(|p| &p.interfaces)
            .find(|i| i.name == args.ifname && !i.mac.is_empty())
            .and_then(|i| parse_mac(&i.mac).ok());
        Hints {
            prev_mac,
            hwaddr: parse_mac(&self.hwaddr).ok(),
            device: Some(self.device.clone()).filter(|d| !d.is_empty()),
        }
    }
}

/// The host link every selector names; they must agree.
fn find_device(host: &Handle, target: &Target, sys: &Sysfs) -> Result<Link> {
    let mut found: Option<(Link, &Selector)> = None;
    for s in &target.selectors {
        let link = resolve(host, s, sys)?;
        if let Some((first, by)) = &found
            && first.index != link.index
        {
            return Err(bad_config(format!(
                "{} names {} but {} names {}",
                describe(by),
                first.name,
                describe(s),
                link.name
            )));
        }
        found.get_or_insert((link, s));
    }
    found
        .map(|(l, _)| l)
        .ok_or_else(|| bad_config("no device selector"))
}

fn resolve(host: &Handle, s: &Selector, sys: &Sysfs) -> Result<Link> {
    let name = match s {
        Selector::Name(n) => n.clone(),
        Selector::Mac(mac) => {
            let links = host.links()?;
            let l = links.into_iter().find(|l| l.mac.as_ref() == Some(mac));
            return l.ok_or_else(|| not_found(s));
        }
        Selector::KernelPath(p) => sys.kernelpath_netdev(p)?,
        Selector::Pci(a) => sys
            .pci_netdev(a)
            .map_err(|e| bad_config(format!("{e:#}")))?,
        Selector::Aux(a) => sys
            .aux_netdev(a)
            .map_err(|e| bad_config(format!("{e:#}")))?,
    };
    host.link_by_name(&name)?.ok_or_else(|| not_found(s))
}

fn describe(s: &Selector) -> String {
    match s {
        Selector::Name(n) => format!("device {n:?}"),
        Selector::Mac(m) => format!("hwaddr {}", crate::netlink::mac_string(m)),
        Selector::KernelPath(p) => format!("kernelpath {p:?}"),
        Selector::Pci(a) => format!("PCI device {a}"),
        Selector::Aux(a) => format!("auxiliary device {a}"),
    }
}

fn not_found(s: &Selector) -> anyhow::Error {
    bad_config(format!(
        "failed to find host device: {} is not a link in this netns",
        describe(s)
    ))
}

/// ADD's undo of the move: the device back under its name and alias, up again if it was.
fn give_back(host: &Handle, dev: &Link, ns: &crate::netns::Netns, ifname: &str) -> Result<()> {
    let hints = Hints::default();
    let back = moving::move_out(ns, ifname, &hints)?
        .with_context(|| format!("{ifname} vanished from the container"))?;
    if let Some(a) = dev.alias.as_deref().filter(|a| !a.is_empty()) {
        host.set_alias(back.index, a)?;
    }
    if dev.is_up() {
        host.set_up(back.index)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "host_device_tests.rs"]
mod tests;
