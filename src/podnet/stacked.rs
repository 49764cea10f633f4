//! What the plugins whose container link stacks on a lower device (macvlan, ipvlan, vlan)
//! share, and what they share with dummy: the master chosen from the config, a chained
//! `prevResult` or the default route, on the host or inside the container
//! (`linkInContainer`); the MTU bound; the link created by a socket inside the container
//! netns, its lower device named by (`IFLA_LINK`, `IFLA_LINK_NETNSID`), so a host link called
//! like `CNI_IFNAME` cannot clash and no rename is needed (the reference creates it from the
//! host under a temporary name and renames it); IPAM or `prevResult` addresses applied; and a
//! DEL that needs neither the master nor
//! `prevResult`. Mirrors the reference's macvlan, ipvlan and vlan plugins (FEATURES.md 6.3-6.5,
//! 5.1, 7.1) with the changes users asked for (USER-ASKS rows 3, 12, 20): chained mode for
//! every stacked kind, DEL total, config errors as code 7.

use super::{check, ipam_add, ipam_type, override_dns, release_ipam};
use crate::error::{ErrorList, bad_config};
use crate::exec::delegate;
use crate::ipam::configure::configure_iface;
use crate::netlink::{self, Handle, KindData, Link, LinkDetails, LinkKind, LinkSpec};
use crate::netns::Netns;
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Command};
use crate::sysctl;
use crate::types::{CniResult, Interface, NetConf};
use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The keys every stacked plugin has.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct LowerConf {
    /// The lower device; empty: chained (`prevResult`) or the default route's interface.
    #[serde(default)]
    pub master: String,
    /// MTU of the new link; 0 leaves the kernel's (the master's).
    #[serde(default)]
    pub mtu: u32,
    /// The master lives in the container netns.
    #[serde(default)]
    pub link_in_container: bool,
}

/// Both ends of an ADD: a handle on the host, one in the container, the container netns.
pub struct Sides<'a> {
    /// Handle in the netns the plugin runs in.
    pub host: &'a Handle,
    /// Handle in the container netns.
    pub cont: &'a Handle,
    /// The container netns.
    pub ns: &'a Netns,
}

impl Sides<'_> {
    /// The handle of the netns the master lives in.
    pub fn lower(&self, lower: &LowerConf) -> &Handle {
        if lower.link_in_container {
            self.cont
        } else {
            self.host
        }
    }
}

/// The master link: the configured one, else (chained) the one host-side interface of
/// `prev`, else the interface of the default route, looked up where it lives. A missing one
/// is a configuration error (code 7).
pub fn find_master(
    lower: &LowerConf,
    prev: Option<&CniResult>,
    args: &CmdArgs,
    nl: &Handle,
) -> Result<Link> {
    let name = if !lower.master.is_empty() {
        lower.master.clone()
    } else if let Some(prev) = prev {
        chained_master(prev, args, lower.link_in_container)?
    } else {
        let index = nl.default_route_link()?.ok_or_else(|| {
            bad_config(format!(
                "no \"master\" given and no default route {} to take its interface",
                where_(lower)
            ))
        })?;
        return nl
            .link_by_index(index)?
            .ok_or_else(|| bad_config(format!("default route interface {index} vanished")));
    };
    nl.link_by_name(&name)?.ok_or_else(|| {
        bad_config(format!(
            "failed to lookup master {name:?}: not found {}",
            where_(lower)
        ))
    })
}

fn where_(lower: &LowerConf) -> &'static str {
    if lower.link_in_container {
        "in the container netns"
    } else {
        "on the host"
    }
}

/// Chained mode: the master is the interface of `prev` on the master's side (no sandbox, or
/// the container's with `linkInContainer`) when there is exactly one; else, as the reference
/// ipvlan, the single named interface of `prev`.
pub fn chained_master(prev: &CniResult, args: &CmdArgs, in_container: bool) -> Result<String> {
    let named: Vec<&Interface> = prev
        .interfaces
        .iter()
        .filter(|i| !i.name.is_empty())
        .collect();
    let side: Vec<&Interface> = named
        .iter()
        .copied()
        .filter(|i| match in_container {
            true => i.sandbox == args.netns && i.name != args.ifname,
            false => i.sandbox.is_empty(),
        })
        .collect();
    match (side.as_slice(), named.as_slice()) {
        ([one], _) | ([], [one]) => Ok(one.name.clone()),
        _ => Err(bad_config(format!(
            "chained master failure: prevResult lacks a single {} interface to use as master \
             (it has {}); set \"master\"",
            if in_container {
                "container-side"
            } else {
                "host-side"
            },
            named.len()
        ))),
    }
}

/// `mtu` must fit the master's (0 means "inherit").
pub fn check_mtu(mtu: u32, master: &Link) -> Result<()> {
    if mtu > master.mtu {
        return Err(bad_config(format!(
            "invalid MTU {mtu}, must be [0, master MTU({})]",
            master.mtu
        )));
    }
    Ok(())
}

/// The `RTM_NEWLINK` of a stacked link, sent by the container's own socket: named `ifname`
/// from the start, on `parent`, which lives in the netns the container knows as
/// `parent_netnsid` (`None`: in the container itself), down, with `mtu` (0: inherited) and
/// `mac` if given.
pub fn stacked_spec(
    ifname: &str,
    kind: LinkKind,
    parent: u32,
    parent_netnsid: Option<i32>,
    mtu: u32,
    mac: Option<[u8; 6]>,
) -> LinkSpec {
    LinkSpec {
        parent: Some(parent),
        parent_netnsid,
        mtu: (mtu != 0).then_some(mtu),
        mac,
        ..LinkSpec::new(ifname, kind)
    }
}

impl Sides<'_> {
    /// The id under which the container netns knows the master's netns: `None` with
    /// `linkInContainer`, else the host's (assigned by the kernel when missing).
    pub fn parent_netnsid(&self, lower: &LowerConf) -> Result<Option<i32>> {
        if lower.link_in_container {
            return Ok(None);
        }
        let host = Netns::current().context("open the host netns")?;
        Ok(Some(self.cont.netnsid_of(&host).context(
            "get the id of the host netns in the container netns",
        )?))
    }
}

/// Creates `spec` with the container's own socket, so the kernel looks its name up only in
/// the container netns (the reference creates it from the host under a temporary name and
/// renames it inside, as a host socket's request is matched against host link names; a
/// rename costs an RCU grace period). Its deletion is pushed onto `rb`. Returns the link as
/// the container sees it.
pub fn create_in_container<'a>(
    sides: &Sides<'a>,
    spec: &LinkSpec,
    rb: &mut Rollback<'a>,
) -> Result<Link> {
    let kind = spec.kind.name();
    let cont = sides.cont;
    cont.create_link(spec)
        .with_context(|| format!("failed to create {kind}"))?;
    let link = cont
        .link_by_name(&spec.name)?
        .with_context(|| format!("{kind} {} vanished after creation", spec.name))?;
    let index = link.index;
    rb.push(format!("delete {kind} {}", spec.name), move || {
        match cont.delete_link(index) {
            Err(e) if netlink::is_not_found(&e) => Ok(()),
            r => r,
        }
    });
    Ok(link)
}

/// The result's one interface: the container link.
pub fn container_interface(link: &Link, args: &CmdArgs) -> Interface {
    Interface {
        name: args.ifname.clone(),
        mac: link.mac_string(),
        sandbox: args.netns.clone(),
        ..Default::default()
    }
}

/// Where a stacked link's addresses come from.
pub enum Addressing<'a> {
    /// None: the link is only brought up (L2 only).
    None,
    /// The IPAM plugin of this type.
    Ipam(&'a str),
    /// The addresses of a chained `prevResult` (ipvlan without IPAM).
    Prev(CniResult),
}

/// Turns the new link into the result: addresses from `addressing` (IPAM ADD's release on
/// `rb`), all pointing at interface 0, `arp_notify`/`ndisc_notify` when `notify`, applied with
/// `ConfigureIface`; the config's DNS only. L2 only: the link is just set up.
pub fn address_link<'a>(
    sides: &Sides<'a>,
    args: &'a CmdArgs,
    net: &NetConf,
    link: &Link,
    addressing: Addressing<'a>,
    notify: bool,
    rb: &mut Rollback<'a>,
) -> Result<CniResult> {
    let mut result = match addressing {
        Addressing::None => {
            sides
                .cont
                .set_up(link.index)
                .with_context(|| format!("failed to set {:?} up", args.ifname))?;
            CniResult::default()
        }
        Addressing::Ipam(ipam) => ipam_add(args, ipam, rb)?,
        Addressing::Prev(prev) => prev,
    };
    result.interfaces = vec![container_interface(link, args)];
    result.dns = Default::default();
    override_dns(&mut result, &net.dns);
    if result.ips.is_empty() {
        return Ok(result);
    }
    for ip in &mut result.ips {
        ip.interface = Some(0);
    }
    if notify {
        notify_neighbours(sides.ns, &args.ifname);
    }
    configure_iface(sides.cont, sides.ns, &args.ifname, &result)?;
    Ok(result)
}

/// Best effort, as the reference: gratuitous ARP and unsolicited NA on link up and address
/// changes, so switches and neighbours learn the new MAC quickly.
fn notify_neighbours(ns: &Netns, ifname: &str) {
    let _ = sysctl::write_in(ns, &format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
    let _ = sysctl::write_in(ns, &format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1");
}

/// CHECK: the interface of `prev` named `CNI_IFNAME` in `CNI_NETNS`, as the kernel has it
/// there: present, of `kind`, with the MAC `prev` lists and, when `mtu` is set, that MTU.
/// Returns its details for the kind-specific comparisons.
pub fn check_container_link(
    cont: &Handle,
    prev: &CniResult,
    args: &CmdArgs,
    kind: &str,
    mtu: u32,
) -> Result<LinkDetails> {
    let iface = check::container_interface(prev, args)?;
    let Some(d) = cont.link_details(&iface.name)? else {
        bail!("Container interface {} not found", iface.name);
    };
    if d.link.kind != kind {
        bail!(
            "Container interface {} not of type {kind} (it is {:?})",
            iface.name,
            d.link.kind
        );
    }
    check::check_mac(&d.link, iface)?;
    if mtu != 0 && d.link.mtu != mtu {
        bail!(
            "Container interface {} has MTU {}, the configuration says {mtu}",
            iface.name,
            d.link.mtu
        );
    }
    Ok(d)
}

/// CHECK: a configured master must still exist where it lives (read only).
pub fn check_master(lower: &LowerConf, sides: &Sides<'_>) -> Result<()> {
    if !lower.master.is_empty() && sides.lower(lower).link_by_name(&lower.master)?.is_none() {
        bail!(
            "failed to lookup master {:?}: not found {}",
            lower.master,
            where_(lower)
        );
    }
    Ok(())
}

/// CHECK: addresses and routes of `prev` are in the container.
pub fn check_addresses(cont: &Handle, args: &CmdArgs, prev: &CniResult) -> Result<()> {
    check::validate_interface_ips(cont, &args.ifname, &prev.ips)?;
    check::validate_routes(cont, &prev.routes)
}
/// CHECK of a stacked plugin's attachment (FEATURES.md: IPAM's CHECK when there is IPAM, a
/// `prevResult`, the master, the container link of `kind` with its MTU, its kind data as
/// `kind_data` wants it, the addresses).
pub fn check_attachment(
    args: &CmdArgs,
    net: &NetConf,
    lower: &LowerConf,
    kind: &str,
    kind_data: impl FnOnce(&KindData) -> Result<()>,
) -> Result<()> {
    let ns = args.open_netns()?;
    if let Some(t) = ipam_type(net) {
        delegate(Command::Check, t, args)?;
    }
    let prev = check::prev_result(net, kind)?;
    let (host, cont) = (Handle::new()?, Handle::in_netns(&ns)?);
    let sides = Sides {
        host: &host,
        cont: &cont,
        ns: &ns,
    };
    check_master(lower, &sides)?;
    let d = check_container_link(&cont, &prev, args, kind, lower.mtu)?;
    kind_data(&d.data)?;
    check_addresses(&cont, args, &prev)
}

/// DEL of a link that lives only in the container: IPAM DEL first (when configured), then
/// the link; a missing netns or link is success, and the master, a default route and
/// `prevResult` are never needed.
pub fn del_container_link(args: &CmdArgs, net: &NetConf) -> Result<()> {
    let mut errors = ErrorList::new();
    errors.note(release_ipam(args, net));
    errors.note(remove_container_link(args));
    errors.finish()
}

fn remove_container_link(args: &CmdArgs) -> Result<()> {
    let Some(ns) = args.netns_if_present()? else {
        return Ok(());
    };
    let nl = Handle::in_netns(&ns)?;
    let Some(link) = nl.link_by_name(&args.ifname)? else {
        return Ok(());
    };
    match nl.delete_link(link.index) {
        Err(e) if netlink::is_not_found(&e) => Ok(()),
        r => r.with_context(|| format!("delete {} in the container", args.ifname)),
    }
}

/// GC (1.1): forwarded to the IPAM plugin, when there is one (these plugins keep no other
/// state outside the container).
pub fn gc_ipam(args: &CmdArgs, net: &NetConf) -> Result<()> {
    match ipam_type(net) {
        Some(t) => delegate(Command::Gc, t, args),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "stacked_tests.rs"]
mod tests;
