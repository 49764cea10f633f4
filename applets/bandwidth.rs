//! `bandwidth`: shapes a container's traffic with token bucket filters, mirroring the reference
//! meta plugin `plugins/meta/bandwidth` (FEATURES.md 6.13). It runs chained after a plugin that
//! made a veth pair, and finds the host end as the peer of `CNI_IFNAME`.
//!
//! - `ingressRate`/`ingressBurst` (bit/s, bits) shape traffic *to* the container: a root `tbf`
//!   on the host veth, whose egress is the container's ingress.
//! - `egressRate`/`egressBurst` shape traffic *from* the container: the host veth's ingress is
//!   redirected (ingress qdisc, match-all `u32`, `mirred`) to an IFB named `bwp` + 12 hex of
//!   SHA-512(network name + container ID), and a root `tbf` on the IFB shapes it. The IFB is
//!   added to the result's interfaces.
//!
//! The four keys come from the config, or from `runtimeConfig.bandwidth` (capability
//! `bandwidth`) when the config has none of them. DEL deletes the IFB (the host veth's qdiscs
//! go with the veth) and needs no netns. CHECK compares the tbfs with the config.
//!
//! Beyond the reference: CHECK fails when a tbf is missing (the reference only looks at tbfs it
//! finds) and verifies the redirect filter; a failed ADD removes what it made; bursts and rates
//! under one byte are rejected as bad config (the kernel would refuse them); GC (1.1) deletes
//! this network's IFBs whose attachment is not in `cni.dev/valid-attachments` (and does nothing
//! without that list). The IFB name is a one-way hash of network and container ID only, so ADD
//! stores `<containerID>/<ifname>` in the IFB's alias: GC reads it back (IFBs without it, made
//! by the reference, are left alone), and DEL leaves an IFB whose alias names another
//! attachment of the same container (eth0's, when DEL comes for a failed eth1).

use crate::doctor::{Need, Probe};
use crate::error::{ErrorList, bad_config};
use crate::keys::{Key, key};
use crate::netfilter::naming::hash_with_prefix;
use crate::netlink::{Handle, Link, LinkKind, LinkSpec, is_not_found};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Plugin};
use crate::tc::{INGRESS_HANDLE, Psched, TC_H_ROOT, Tbf};
use crate::types::{Attachment, CniResult, Interface, NetConf};
use anyhow::{Context, bail};
use serde::Deserialize;

/// The applet.
pub struct Bandwidth;

/// IFB names: `bwp` + hex, 15 characters (the longest interface name).
const IFB_PREFIX: &str = "bwp";
const IFB_NAME_LEN: usize = 15;

/// One set of limits (`BandwidthEntry` in the reference, CONVENTIONS.md `bandwidth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Limits {
    #[serde(default)]
    ingress_rate: u64,
    #[serde(default)]
    ingress_burst: u64,
    #[serde(default)]
    egress_rate: u64,
    #[serde(default)]
    egress_burst: u64,
}

impl Limits {
    fn is_zero(&self) -> bool {
        *self == Limits::default()
    }

    fn ingress(&self) -> Option<(u64, u64)> {
        (self.ingress_rate > 0).then_some((self.ingress_rate, self.ingress_burst))
    }

    fn egress(&self) -> Option<(u64, u64)> {
        (self.egress_rate > 0).then_some((self.egress_rate, self.egress_burst))
    }
}

/// The config: the common keys plus the four limits at the top level.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    ingress_rate: Option<u64>,
    ingress_burst: Option<u64>,
    egress_rate: Option<u64>,
    egress_burst: Option<u64>,
}

/// The parsed call: config and the limits in force.
struct Conf {
    net: NetConf,
    limits: Limits,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("ingressRate", "1000000", "rate of traffic to the container, bits/s (0: unlimited)"),
    key("ingressBurst", "100000", "burst of traffic to the container, bits"),
    key("egressRate", "1000000", "rate of traffic from the container, bits/s (0: unlimited)"),
    key("egressBurst", "100000", "burst of traffic from the container, bits"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[
    Need::always(Probe::Qdisc("tbf")),
    Need::always(Probe::Qdisc("ingress")),
    Need::always(Probe::Link("ifb")),
];

impl Plugin for Bandwidth {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let conf = load(args)?;
        let prev = conf.net.prev_result()?;
        if conf.limits.is_zero() {
            return Ok(prev.unwrap_or_default());
        }
        let mut result = prev.ok_or_else(|| bad_config("must be called as chained plugin"))?;
        let host_nl = Handle::new()?;
        let host = host_veth(args, &host_nl, &result)?;
        let clock = Psched::read();
        let mut rb = Rollback::new();
        if let Some((rate, burst)) = conf.limits.ingress() {
            host_nl
                .add_tbf(host.index, &Tbf::from_bits(rate, burst, &clock))
                .with_context(|| format!("shape traffic to the container on {}", host.name))?;
            rb.push("ingress tbf", || host_nl.del_root_qdisc(host.index));
        }
        if let Some((rate, burst)) = conf.limits.egress() {
            let tbf = Tbf::from_bits(rate, burst, &clock);
            let ifb = setup_egress(&host_nl, &mut rb, &host, &ifb_name(&conf.net, args), args)?;
            host_nl
                .add_tbf(ifb.index, &tbf)
                .with_context(|| format!("shape traffic from the container on {}", ifb.name))?;
            result.interfaces.push(Interface {
                name: ifb.name.clone(),
                mac: ifb.mac_string(),
                ..Default::default()
            });
        }
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> anyhow::Result<()> {
        // Only the name matters here: limits a failed ADD refused must not block DEL.
        let net: NetConf = args.config()?;
        let nl = Handle::new()?;
        let name = ifb_name(&net, args);
        let Some(ifb) = nl.link_by_name(&name)? else {
            return Ok(());
        };
        // The name does not include the ifname: another attachment of this container may own
        // it. No alias means the reference made it; then the name is all there is to go by.
        let mine = format!("{}/{}", args.container_id, args.ifname);
        if ifb.alias.as_deref().is_some_and(|a| a != mine) {
            return Ok(());
        }
        delete_ifb(&nl, &name)
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf = load(args)?;
        let prev = conf
            .net
            .prev_result()?
            .ok_or_else(|| bad_config("must be called as chained plugin"))?;
        let nl = Handle::new()?;
        let host = host_veth(args, &nl, &prev)?;
        let clock = Psched::read();
        if let Some((rate, burst)) = conf.limits.ingress() {
            check_tbf(&nl, &host, &Tbf::from_bits(rate, burst, &clock))?;
        }
        if let Some((rate, burst)) = conf.limits.egress() {
            let name = ifb_name(&conf.net, args);
            let ifb = nl
                .link_by_name(&name)?
                .with_context(|| format!("ifb device {name} is missing"))?;
            check_tbf(&nl, &ifb, &Tbf::from_bits(rate, burst, &clock))?;
            check_redirect(&nl, &host, &ifb)?;
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf = load(args)?;
        // Without the list (cnitool gc sends none) nothing can be told stale.
        let Some(valid) = conf.net.valid_attachments.as_deref() else {
            return Ok(());
        };
        let nl = Handle::new()?;
        let mut errors = ErrorList::new();
        for ifb in nl.links()? {
            if stale_ifb(&conf.net.name, &ifb, valid) {
                errors.note(delete_ifb(&nl, &ifb.name));
            }
        }
        errors.finish()
    }

    fn versions(&self) -> &'static [&'static str] {
        &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    }
}

/// Decodes the config and picks the limits: the top-level keys if any is present, else
/// `runtimeConfig.bandwidth`.
fn load(args: &CmdArgs) -> anyhow::Result<Conf> {
    let c: Config = args.config()?;
    let top = [
        c.ingress_rate,
        c.ingress_burst,
        c.egress_rate,
        c.egress_burst,
    ];
    let limits = if top.iter().any(Option::is_some) {
        Limits {
            ingress_rate: c.ingress_rate.unwrap_or(0),
            ingress_burst: c.ingress_burst.unwrap_or(0),
            egress_rate: c.egress_rate.unwrap_or(0),
            egress_burst: c.egress_burst.unwrap_or(0),
        }
    } else {
        c.net.runtime::<Limits>("bandwidth")?.unwrap_or_default()
    };
    validate(limits.ingress_rate, limits.ingress_burst, "ingress")?;
    validate(limits.egress_rate, limits.egress_burst, "egress")?;
    Ok(Conf { net: c.net, limits })
}

fn validate(rate: u64, burst: u64, what: &str) -> anyhow::Result<()> {
    let msg = match (rate, burst) {
        (0, 0) => return Ok(()),
        (_, 0) => "if rate is set, burst must also be set",
        (0, _) => "if burst is set, rate must also be set",
        _ if burst / 8 >= u64::from(u32::MAX) => "burst cannot be more than 4GB",
        _ if rate < 8 || burst < 8 => "rate and burst must be at least 8 bits (one byte)",
        _ => return Ok(()),
    };
    Err(bad_config(format!("{what}: {msg}")))
}

fn ifb_name(net: &NetConf, args: &CmdArgs) -> String {
    let key = format!("{}{}", net.name, args.container_id);
    hash_with_prefix(IFB_NAME_LEN, IFB_PREFIX, &key)
}

/// The host end of the veth whose container end is `CNI_IFNAME`; it must be listed in the
/// previous result as a host interface.
fn host_veth(args: &CmdArgs, host_nl: &Handle, prev: &CniResult) -> anyhow::Result<Link> {
    if prev.interfaces.is_empty() {
        bail!("no interfaces provided");
    }
    let ns = args.open_netns()?;
    let cont = Handle::in_netns(&ns)?
        .link_by_name(&args.ifname)?
        .filter(|l| l.kind == "veth")
        .with_context(|| format!("container interface {} has no veth peer", args.ifname))?;
    let peer = cont
        .link
        .and_then(|i| host_nl.link_by_index(i).transpose())
        .transpose()?
        .with_context(|| format!("veth peer of {} is not in the host netns", args.ifname))?;
    let listed = prev
        .interfaces
        .iter()
        .any(|i| i.sandbox.is_empty() && i.name == peer.name);
    if !listed {
        bail!("no veth peer of container interface found in host ns");
    }
    Ok(peer)
}

/// Creates the IFB (up, the host veth's MTU, no tx queue, alias naming the attachment) and
/// redirects everything the host veth receives to it.
fn setup_egress<'a>(
    nl: &'a Handle,
    rb: &mut Rollback<'a>,
    host: &Link,
    name: &str,
    args: &CmdArgs,
) -> anyhow::Result<Link> {
    let spec = LinkSpec {
        mtu: Some(host.mtu),
        txqlen: Some(0),
        up: true,
        ..LinkSpec::new(name, LinkKind::Ifb)
    };
    nl.create_link(&spec).context("adding link")?;
    let ifb = nl
        .link_by_name(name)?
        .with_context(|| format!("ifb {name} vanished after creation"))?;
    let index = ifb.index;
    rb.push(format!("ifb {name}"), move || nl.delete_link(index));
    nl.set_alias(index, &format!("{}/{}", args.container_id, args.ifname))?;
    nl.add_ingress_qdisc(host.index)
        .with_context(|| format!("create ingress qdisc on {}", host.name))?;
    let host_index = host.index;
    rb.push("ingress qdisc", move || nl.del_ingress_qdisc(host_index));
    nl.add_redirect_filter(host.index, index)
        .with_context(|| format!("add filter redirecting {} to {name}", host.name))?;
    Ok(ifb)
}

/// Deletes an IFB by name; already gone is fine.
fn delete_ifb(nl: &Handle, name: &str) -> anyhow::Result<()> {
    let Some(ifb) = nl.link_by_name(name)? else {
        return Ok(());
    };
    match nl.delete_link(ifb.index) {
        Err(e) if !is_not_found(&e) => Err(e.context(format!("delete ifb {name}"))),
        _ => Ok(()),
    }
}

/// True for an IFB this network made (by its name and alias) whose attachment is not valid.
fn stale_ifb(network: &str, link: &Link, valid: &[Attachment]) -> bool {
    if link.kind != "ifb" || !link.name.starts_with(IFB_PREFIX) {
        return false;
    }
    let Some((cid, ifname)) = link.alias.as_deref().and_then(|a| a.split_once('/')) else {
        return false;
    };
    let ours = hash_with_prefix(IFB_NAME_LEN, IFB_PREFIX, &format!("{network}{cid}")) == link.name;
    ours && !valid
        .iter()
        .any(|a| a.container_id == cid && a.ifname == ifname)
}

/// The root qdisc of `link` must be a tbf with exactly these numbers.
fn check_tbf(nl: &Handle, link: &Link, want: &Tbf) -> anyhow::Result<()> {
    let qdiscs = nl.qdiscs(link.index)?;
    let Some(root) = qdiscs.iter().find(|q| q.parent == TC_H_ROOT) else {
        bail!("Failed to find qdisc on {}", link.name);
    };
    let Some(got) = &root.tbf else {
        bail!("{} has a {} root qdisc, not tbf", link.name, root.kind);
    };
    let name = &link.name;
    if got.rate != want.rate {
        bail!(
            "Rate doesn't match on {name}: {} B/s, want {}",
            got.rate,
            want.rate
        );
    }
    if got.limit != want.limit {
        bail!(
            "Limit doesn't match on {name}: {} B, want {}",
            got.limit,
            want.limit
        );
    }
    if got.buffer != want.buffer {
        bail!(
            "Buffer doesn't match on {name}: {} ticks, want {}",
            got.buffer,
            want.buffer
        );
    }
    Ok(())
}

/// The host veth's ingress must be redirected to the IFB.
fn check_redirect(nl: &Handle, host: &Link, ifb: &Link) -> anyhow::Result<()> {
    let redirected = nl
        .filters(host.index, INGRESS_HANDLE)?
        .iter()
        .filter_map(|f| f.u32.as_ref())
        .any(|u| u.match_all && u.redirect_to == Some(ifb.index));
    if !redirected {
        bail!("{} is not redirected to {}", host.name, ifb.name);
    }
    Ok(())
}

#[cfg(test)]
#[path = "bandwidth_tests.rs"]
mod tests;
