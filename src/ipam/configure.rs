//! Applies a Result's addresses and routes to an interface inside a container netns: what
//! every main plugin does after IPAM. Mirrors the reference's `ipam.ConfigureIface`
//! (FEATURES.md 5.1) with two changes users asked for: the 1.1 route fields `mtu` and `advmss`
//! are applied (plugins#971, #1015), and the wait for IPv6 DAD happens only when DAD is on for
//! the interface, bounded (plugins#680).

use crate::netlink::{Handle, RouteSpec};
use crate::netns::Netns;
use crate::sysctl;
use crate::types::CniResult;
use anyhow::{Context, bail};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// `IFA_F_TENTATIVE`: DAD has not finished.
const IFA_F_TENTATIVE: u32 = 0x40;
/// `IFA_F_DADFAILED`: DAD found a duplicate.
const IFA_F_DADFAILED: u32 = 0x08;
/// How long to wait for IPv6 DAD, as the reference.
const DAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures `ifname` (inside `ns`, reached through `nl`, a handle opened in `ns`) from
/// `result`: addresses of the `ips` entries whose `interface` index names it, link up, routes.
pub fn configure_iface(
    nl: &Handle,
    ns: &Netns,
    ifname: &str,
    result: &CniResult,
) -> anyhow::Result<()> {
    if result.interfaces.is_empty() {
        bail!("no interfaces to configure");
    }
    let link = nl
        .link_by_name(ifname)?
        .with_context(|| format!("interface {ifname} not found in {}", ns.path().display()))?;
    let mut gw4: Option<IpAddr> = None;
    let mut gw6: Option<IpAddr> = None;
    let mut has_v6 = false;
    for ip in &result.ips {
        let Some(idx) = ip.interface else { continue };
        if result.interfaces.get(idx).is_none_or(|i| i.name != ifname) {
            bail!(
                "invalid interface index {idx} for {ifname} in ips entry {}",
                ip.address
            );
        }
        if ip.address.addr().is_ipv6() && !has_v6 {
            has_v6 = true;
            enable_ipv6(ns, ifname)?;
        }
        nl.add_address(link.index, ip.address, false)
            .or_else(|e| {
                if crate::netlink::is_exists(&e) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("add address {} to {ifname}", ip.address))?;
        match ip.gateway {
            Some(g @ IpAddr::V4(_)) if gw4.is_none() => gw4 = Some(g),
            Some(g @ IpAddr::V6(_)) if gw6.is_none() => gw6 = Some(g),
            _ => {}
        }
    }
    nl.set_up(link.index)
        .with_context(|| format!("set {ifname} up"))?;
    if has_v6 && dad_enabled(ns, ifname) {
        settle_ipv6(nl, link.index, ifname)?;
    }
    for r in &result.routes {
        let gw = r.gw.or(if r.dst.addr().is_ipv4() { gw4 } else { gw6 });
        let spec = RouteSpec {
            gw,
            oif: Some(link.index),
            table: r.table,
            scope: r.scope,
            metric: (r.priority != 0).then_some(r.priority),
            mtu: (r.mtu != 0).then_some(r.mtu),
            advmss: (r.advmss != 0).then_some(r.advmss),
            ..RouteSpec::new(r.dst.trunc())
        };
        let shown = gw.map_or(String::new(), |g| format!(" via {g}"));
        nl.add_route(&spec)
            .or_else(|e| {
                if crate::netlink::is_exists(&e) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("add route {}{shown} dev {ifname}", r.dst))?;
    }
    Ok(())
}

/// IPv6 may be disabled in a fresh netns; the reference turns it on for `lo` and the interface
/// and keeps addresses across a link down.
fn enable_ipv6(ns: &Netns, ifname: &str) -> anyhow::Result<()> {
    for dev in ["lo", ifname] {
        let key = format!("net/ipv6/conf/{dev}/disable_ipv6");
        if sysctl::read_in(ns, &key)
            .map(|v| v.trim() != "0")
            .unwrap_or(false)
        {
            sysctl::write_in(ns, &key, "0")?;
        }
    }
    // Best effort, as the reference: an old kernel may lack the knob.
    let _ = sysctl::write_in(
        ns,
        &format!("net/ipv6/conf/{ifname}/keep_addr_on_down"),
        "1",
    );
    Ok(())
}

fn dad_enabled(ns: &Netns, ifname: &str) -> bool {
    sysctl::read_in(ns, &format!("net/ipv6/conf/{ifname}/accept_dad"))
        .map(|v| v.trim() != "0")
        .unwrap_or(true)
}

/// Waits, bounded, for IPv6 addresses to leave the tentative state. A link that never came
/// up operationally cannot finish DAD; that is not an error (reference v1.9.1).
fn settle_ipv6(nl: &Handle, index: u32, ifname: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + DAD_TIMEOUT;
    loop {
        let addrs = nl.addresses(Some(index), Some(crate::netlink::Family::V6))?;
        if let Some(a) = addrs.iter().find(|a| a.flags & IFA_F_DADFAILED != 0) {
            bail!(
                "IPv6 address {} on {ifname} failed duplicate address detection",
                a.addr
            );
        }
        if addrs.iter().all(|a| a.flags & IFA_F_TENTATIVE == 0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let up = nl.link_by_index(index)?.is_some_and(|l| l.operstate == 6);
            if !up {
                return Ok(());
            }
            bail!("{ifname} still has tentative IPv6 addresses after {DAD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
