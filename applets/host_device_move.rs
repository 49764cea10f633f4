//! Moving a host device into a container netns and back, each time through a fresh anonymous
//! netns so that renaming can never clash with a name in the host or the container, and
//! without the quick double rename that races udev and NetworkManager. Mirrors the
//! reference's `moveLinkIn` / `moveLinkOut` (FEATURES.md 6.6): the original host name is kept
//! in `IFLA_IFALIAS` inside the container, and every step is undone when a later one fails,
//! so a failure leaves the device where it was, under its name, alias and up state.
//!
//! Beyond the reference: the device is found in the container also after it was renamed there
//! (by its MAC, from `prevResult` or `hwaddr`, or by an alias equal to `device`), and a device
//! the kernel handed back to the initial netns when the container netns died (a physical
//! device keeps its container name and alias) gets its own name back.

use crate::netlink::{Handle, Link};
use crate::netns::Netns;
use crate::rollback::Rollback;
use anyhow::{Context, Result, anyhow};

/// What identifies our device when it is not called `CNI_IFNAME` any more.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// The MAC `prevResult` reported for the interface.
    pub prev_mac: Option<[u8; 6]>,
    /// The config's `hwaddr`.
    pub hwaddr: Option<[u8; 6]>,
    /// The config's `device` (the original host name).
    pub device: Option<String>,
}

impl Hints {
    fn matches(&self, l: &Link) -> bool {
        let alias = l.alias.as_deref().unwrap_or("");
        let by_mac = l.mac.is_some() && (l.mac == self.prev_mac || l.mac == self.hwaddr);
        !alias.is_empty() && (by_mac || self.device.as_deref() == Some(alias))
    }
}

/// Moves `dev` (a link of `host`, the calling thread's netns) into `ns` as `ifname`, with
/// `IFLA_IFALIAS` = its host name, and sets it up there. Returns the link as the container
/// sees it. On failure every step taken is undone.
pub fn move_in(host: &Handle, dev: &Link, ns: &Netns, ifname: &str) -> Result<Link> {
    let home = Netns::current()?;
    let temp = Netns::create_anonymous()?;
    let (tmp_nl, cont) = (Handle::in_netns(&temp)?, Handle::in_netns(ns)?);
    let tmp = &tmp_nl;
    let name = dev.name.as_str();
    let mut rb = Rollback::new();
    if dev.is_up() {
        // Moving takes a device down; the last undo step brings it back up.
        rb.push(format!("set {name} up again"), || {
            set_up_by_name(host, name)
        });
    }
    host.move_to_netns(dev.index, &temp)
        .with_context(|| format!("failed to move {name} to a temporary netns"))?;
    rb.push(format!("move {name} back to the host"), || {
        tmp.move_to_netns(find(tmp, name)?.index, &home)
    });
    let t = find(tmp, name)?;
    tmp.set_name(t.index, ifname)
        .with_context(|| format!("failed to rename host device {name} to {ifname}"))?;
    rb.push(format!("rename {ifname} back to {name}"), || {
        tmp.set_name(find(tmp, ifname)?.index, name)
    });
    tmp.set_alias(t.index, name)
        .with_context(|| format!("failed to set alias {name} on {ifname}"))?;
    let old_alias = dev.alias.clone().unwrap_or_default();
    rb.push(format!("restore the alias of {name}"), move || {
        tmp.set_alias(find(tmp, ifname)?.index, &old_alias)
    });
    tmp.move_to_netns(t.index, ns)
        .with_context(|| format!("failed to move {ifname} (host: {name}) to the container"))?;
    rb.push(format!("move {ifname} out of the container"), || {
        cont.move_to_netns(find(&cont, ifname)?.index, &temp)
    });
    let c = find(&cont, ifname)?;
    cont.set_up(c.index)
        .with_context(|| format!("failed to set {ifname} up"))?;
    rb.commit();
    Ok(c)
}

/// Moves our device out of `ns` back to the calling thread's netns under its original name
/// (the alias; else `hints.device`; else the name it has) with the alias cleared; it arrives
/// down, as in the reference. `Ok(None)` when the container has no such device. On failure
/// the device stays in the container, as it was.
pub fn move_out(ns: &Netns, ifname: &str, hints: &Hints) -> Result<Option<Link>> {
    let cont = Handle::in_netns(ns)?;
    let Some(link) = locate(&cont, ifname, hints)? else {
        return Ok(None);
    };
    let alias = link.alias.clone().filter(|a| !a.is_empty());
    let host_name = alias.or(hints.device.clone()).unwrap_or(link.name.clone());
    let (home, temp) = (Netns::current()?, Netns::create_anonymous()?);
    let tmp_nl = Handle::in_netns(&temp)?;
    let tmp = &tmp_nl;
    let cur = link.name.as_str();
    let mut rb = Rollback::new();
    if link.is_up() {
        rb.push(format!("set {cur} up again"), || set_up_by_name(&cont, cur));
    }
    cont.move_to_netns(link.index, &temp)
        .with_context(|| format!("failed to move {cur} to a temporary netns"))?;
    rb.push(format!("move {cur} back to the container"), || {
        tmp.move_to_netns(find(tmp, cur)?.index, ns)
    });
    let t = find(tmp, cur)?;
    if host_name != cur {
        tmp.set_name(t.index, &host_name)
            .with_context(|| format!("failed to rename {cur} to {host_name}"))?;
        rb.push(format!("rename {host_name} back to {cur}"), || {
            tmp.set_name(find(tmp, &host_name)?.index, cur)
        });
    }
    if link.alias.as_deref().is_some_and(|a| !a.is_empty()) {
        tmp.set_alias(t.index, "")
            .with_context(|| format!("failed to clear the alias of {host_name}"))?;
        let (alias, now) = (link.alias.clone().unwrap_or_default(), host_name.clone());
        rb.push(format!("restore the alias of {cur}"), move || {
            tmp.set_alias(find(tmp, &now)?.index, &alias)
        });
    }
    tmp.move_to_netns(t.index, &home)
        .with_context(|| format!("failed to move {cur} back to the host"))?;
    rb.commit();
    Handle::new()?.link_by_name(&host_name)
}

/// The container's device: `ifname` if it carries an alias or a MAC `hints` know (a link of
/// that name without either is not one we moved), else a link with an alias that `hints`
/// recognise (renamed inside the container).
fn locate(cont: &Handle, ifname: &str, hints: &Hints) -> Result<Option<Link>> {
    if let Some(l) = cont.link_by_name(ifname)? {
        let aliased = l.alias.as_deref().is_some_and(|a| !a.is_empty());
        let known = l.mac.is_some() && (l.mac == hints.prev_mac || l.mac == hints.hwaddr);
        if aliased || known {
            return Ok(Some(l));
        }
    }
    Ok(cont.links()?.into_iter().find(|l| hints.matches(l)))
}

/// With the container netns gone, a physical device is back in the initial netns under its
/// container name, alias still set, down. If the calling thread's netns holds such a device
/// that `hints` recognise, it gets its alias back as name and the alias is cleared (unless
/// that name is taken). Returns the name it has then.
pub fn restore_refunded(host: &Handle, hints: &Hints) -> Result<Option<String>> {
    let found = host
        .links()?
        .into_iter()
        .find(|l| hints.matches(l) && !l.is_up());
    let Some(l) = found else { return Ok(None) };
    let alias = l.alias.clone().unwrap_or_default();
    if alias != l.name {
        if host.link_by_name(&alias)?.is_some() {
            // Its name is taken: leave it as it is, the alias still telling what it was.
            return Ok(Some(l.name));
        }
        host.set_name(l.index, &alias)
            .with_context(|| format!("failed to rename {} back to {alias}", l.name))?;
    }
    host.set_alias(l.index, "")?;
    Ok(Some(alias))
}

fn find(nl: &Handle, name: &str) -> Result<Link> {
    nl.link_by_name(name)?
        .ok_or_else(|| anyhow!("link {name} vanished while being moved"))
}

fn set_up_by_name(nl: &Handle, name: &str) -> Result<()> {
    nl.set_up(find(nl, name)?.index)
}
