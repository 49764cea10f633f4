//! `dummy`: a dummy link in the container holding IPAM's addresses (a stable address that is
//! not bound to any NIC). Mirrors the reference dummy plugin (FEATURES.md 6.7) including its
//! v1.9.1 fix: the link is created by a socket opened inside the container netns, so a host
//! link with the same name as `CNI_IFNAME` cannot clash. IPAM is required; result `[dummy]`
//! with `ips` on interface 0 and no DNS, as the reference.
//!
//! DEL releases IPAM first and treats a missing netns or link as done; GC is forwarded to IPAM;
//! CHECK compares kind, MAC, up state and addresses.

use crate::doctor::{Need, Probe};
use crate::error::bad_config;
use crate::exec::delegate;
use crate::keys::Key;
use crate::netlink::{Handle, LinkKind, LinkSpec};
use crate::podnet::stacked::{self, Addressing, Sides};
use crate::podnet::{self, check};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Command, Plugin};
use crate::types::{CniResult, NetConf};
use anyhow::{Result, bail};

/// The applet.
pub struct Dummy;

/// It reads no keys of its own: only the common ones ([`crate::keys::COMMON`]).
const KEYS: &[Key] = &[];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[Need::always(Probe::Link("dummy"))];

impl Plugin for Dummy {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let net = load(args)?;
        let ipam = podnet::ipam_type(&net).expect("checked at load");
        let ns = args.open_netns()?;
        let (host, cont) = (Handle::new()?, Handle::in_netns(&ns)?);
        let sides = Sides {
            host: &host,
            cont: &cont,
            ns: &ns,
        };
        let mut rb = Rollback::new();
        let link = stacked::create_in_container(&sides, &link_spec(args), &mut rb)?;
        let addressing = Addressing::Ipam(ipam);
        let mut result =
            stacked::address_link(&sides, args, &net, &link, addressing, false, &mut rb)?;
        result.dns = Default::default();
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let net: NetConf = args.config()?;
        stacked::del_container_link(args, &net)
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let net = load(args)?;
        let ns = args.open_netns()?;
        delegate(
            Command::Check,
            podnet::ipam_type(&net).expect("checked at load"),
            args,
        )?;
        let prev = check::prev_result(&net, "dummy")?;
        let cont = Handle::in_netns(&ns)?;
        let d = stacked::check_container_link(&cont, &prev, args, "dummy", 0)?;
        if !d.link.is_up() {
            bail!("Interface {} is down", args.ifname);
        }
        check::validate_interface_ips(&cont, &args.ifname, &prev.ips)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        stacked::gc_ipam(args, &args.config()?)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        podnet::status(args, &load(args)?)
    }
}

/// Decodes stdin; dummy cannot work without IPAM (code 7).
fn load(args: &CmdArgs) -> Result<NetConf> {
    let net: NetConf = args.config()?;
    if podnet::ipam_type(&net).is_none() {
        return Err(bad_config("dummy interface requires an IPAM configuration"));
    }
    Ok(net)
}

/// The dummy link: created by the container's own socket, so named `CNI_IFNAME` from the
/// start (no `IFLA_NET_NS_FD`, no rename).
fn link_spec(args: &CmdArgs) -> LinkSpec {
    LinkSpec::new(args.ifname.as_str(), LinkKind::Dummy)
}

#[cfg(test)]
#[path = "dummy_tests.rs"]
mod tests;
