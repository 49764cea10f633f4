//! `portmap`: forwards host ports to the container (FEATURES.md 6.15), mirroring the
//! reference meta plugin `plugins/meta/portmap`. Chained after a main plugin, it reads the
//! container addresses from `prevResult`, installs DNAT (and hairpin/localhost masquerade)
//! rules with iptables or nftables (`src/netfilter/portmap`), flushes stale UDP conntrack
//! entries of the host ports, sets `route_localnet` on the host interface toward the
//! container, and passes `prevResult` on.
//!
//! Beyond the reference: DEL needs no mappings (the rules are found by chain name or
//! comment) and flushes conntrack as well; GC removes the rules of attachments not in
//! `cni.dev/valid-attachments`; ports above 65535 and unknown protocols are refused; with
//! mappings but no `prevResult`, ADD fails before touching anything.

use crate::doctor::{Need, Probe};
use crate::error::bad_config;
use crate::keys::{Key, key};
use crate::netfilter::conntrack::flush_udp_ports;
use crate::netfilter::portmap::{
    self, Forward, Mapping, Owner, Proto, Snat, conditions, forward_ports,
};
use crate::netfilter::{BackendKind, IpFamily, choose_backend};
use crate::netlink::Handle;
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, NetConf};
use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

/// The applet.
pub struct Portmap;

/// The reference's default mark bit (Kubernetes uses 14 and 15, Calico 20-31).
const DEFAULT_MARK_BIT: i64 = 13;

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    backend: Option<String>,
    snat: Option<bool>,
    #[serde(rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
    #[serde(default)]
    masq_all: bool,
    mark_masq_bit: Option<i64>,
    external_set_mark_chain: Option<String>,
}

/// One `runtimeConfig.portMappings` entry as given.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMapping {
    host_port: i64,
    container_port: i64,
    #[serde(default)]
    protocol: String,
    #[serde(rename = "hostIP", default)]
    host_ip: String,
}

/// The validated configuration.
struct Settings {
    backend: BackendKind,
    snat: Snat,
    masq_all: bool,
    conditions_v4: Vec<String>,
    conditions_v6: Vec<String>,
    mappings: Vec<Mapping>,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("backend", r#""iptables""#, "iptables or nftables (default: iptables unless only nftables works)"),
    key("snat", "true", "masquerade hairpin and localhost traffic (default true)"),
    key("conditionsV4", r#"["-s","10.0.0.0/8"]"#, "extra iptables match on the IPv4 entry rule"),
    key("conditionsV6", r#"["-s","fd00::/8"]"#, "extra iptables match on the IPv6 entry rule"),
    key("masqAll", "true", "masquerade all traffic to the mapped ports, not only hairpin"),
    key("markMasqBit", "13", "the fwmark bit asking for masquerade (0-31, default 13)"),
    key("externalSetMarkChain", r#""KUBE-MARK-MASQ""#, "an existing chain that sets the masquerade mark"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[Need::always(Probe::Netfilter)];

impl Plugin for Portmap {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf: Config = args.config()?;
        let s = settings(&conf)?;
        let prev = conf.net.prev_result()?;
        if s.mappings.is_empty() {
            return Ok(prev.unwrap_or_default());
        }
        let prev = prev.ok_or_else(|| {
            bad_config("portmap must be called as a chained plugin: prevResult is missing")
        })?;
        let mut rollback = Rollback::new();
        let owner = owner_of(&conf, args);
        rollback.push("port forwarding", move || {
            portmap::unforward_ports(&owner).map(drop)
        });
        for ip in container_ips(&prev, &args.ifname) {
            let f = forward_of(&conf, &s, args, ip);
            forward_ports(s.backend, &f)?;
            flush_udp_ports(&udp_ports(&s.mappings, f.family()));
            if f.family() == IpFamily::V4 && s.snat != Snat::Off {
                enable_localnet_routing(ip.addr())?;
            }
        }
        rollback.commit();
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf: Config = args.config()?;
        let removed = portmap::unforward_ports(&owner_of(&conf, args))?;
        flush_udp_ports(&removed.udp_ports);
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf: Config = args.config()?;
        let s = settings(&conf)?;
        let prev = conf
            .net
            .prev_result()?
            .ok_or_else(|| bad_config("required prevResult missing"))?;
        // ADD made nothing without mappings, so there is nothing to find (as the reference).
        if s.mappings.is_empty() {
            return Ok(());
        }
        for ip in container_ips(&prev, &args.ifname) {
            portmap::check_ports(s.backend, &forward_of(&conf, &s, args, ip))?;
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        let conf: Config = args.config()?;
        let Some(valid) = &conf.net.valid_attachments else {
            return Ok(());
        };
        let removed = portmap::gc_ports(&conf.net.name, valid)?;
        flush_udp_ports(&removed.udp_ports);
        Ok(())
    }
}

fn owner_of<'a>(conf: &'a Config, args: &'a CmdArgs) -> Owner<'a> {
    Owner {
        network: &conf.net.name,
        container_id: &args.container_id,
        ifname: &args.ifname,
    }
}

fn forward_of<'a>(conf: &'a Config, s: &'a Settings, args: &'a CmdArgs, ip: IpNet) -> Forward<'a> {
    let conditions = match IpFamily::of(&ip) {
        IpFamily::V4 => &s.conditions_v4,
        IpFamily::V6 => &s.conditions_v6,
    };
    Forward {
        network: &conf.net.name,
        container_id: &args.container_id,
        ifname: &args.ifname,
        container: ip,
        mappings: &s.mappings,
        snat: &s.snat,
        masq_all: s.masq_all,
        conditions,
    }
}

/// Validates everything ADD and CHECK use, as the reference's `parseConfig` (plus port and
/// protocol checks): every failure is code 7 and nothing has been touched yet.
fn settings(conf: &Config) -> Result<Settings> {
    let snat = match (conf.mark_masq_bit, &conf.external_set_mark_chain) {
        (Some(_), Some(_)) => {
            return Err(bad_config(
                "cannot specify both externalSetMarkChain and markMasqBit",
            ));
        }
        _ if conf.snat == Some(false) => Snat::Off,
        (_, Some(chain)) => Snat::ExternalChain(chain.clone()),
        (bit, None) => {
            let bit = bit.unwrap_or(DEFAULT_MARK_BIT);
            if !(0..=31).contains(&bit) {
                return Err(bad_config(format!(
                    "markMasqBit must be between 0 and 31, not {bit}"
                )));
            }
            Snat::MarkBit(bit as u8)
        }
    };
    let backend = backend_of(conf)?;
    let conditions_v4 = conf.conditions_v4.clone().unwrap_or_default();
    let conditions_v6 = conf.conditions_v6.clone().unwrap_or_default();
    if backend == BackendKind::Nftables {
        for (c, family) in [
            (&conditions_v4, IpFamily::V4),
            (&conditions_v6, IpFamily::V6),
        ] {
            conditions::compile(c, family).map_err(|e| bad_config(format!("{e:#}")))?;
        }
    }
    let raw: Vec<RawMapping> = conf.net.runtime("portMappings")?.unwrap_or_default();
    let mappings = raw.iter().map(mapping_of).collect::<Result<_>>()?;
    Ok(Settings {
        backend,
        snat,
        masq_all: conf.masq_all,
        conditions_v4,
        conditions_v6,
        mappings,
    })
}

/// iptables syntax starts with `-` or `!`; anything else is nftables (`detectBackendOfConditions`).
fn conditions_backend(c: &Option<Vec<String>>) -> Option<BackendKind> {
    let first = c.as_ref()?.first()?;
    match first.chars().next()? {
        '-' | '!' => Some(BackendKind::Iptables),
        _ => Some(BackendKind::Nftables),
    }
}

/// The backend (`ensureBackend`): as configured, else iptables unless only nftables works;
/// options of the other backend are an error.
fn backend_of(conf: &Config) -> Result<BackendKind> {
    let kind = match conf.backend.as_deref() {
        None => choose_backend(None)?,
        Some("iptables") => BackendKind::Iptables,
        Some("nftables") => BackendKind::Nftables,
        Some(other) => return Err(bad_config(format!("unrecognized backend {other:?}"))),
    };
    let mut foreign = Vec::new();
    if conf.external_set_mark_chain.is_some() && kind == BackendKind::Nftables {
        foreign.push("externalSetMarkChain");
    }
    for (key, c) in [
        ("conditionsV4", &conf.conditions_v4),
        ("conditionsV6", &conf.conditions_v6),
    ] {
        if conditions_backend(c).is_some_and(|b| b != kind) {
            foreign.push(key);
        }
    }
    if !foreign.is_empty() {
        let other = match kind {
            BackendKind::Iptables => "nftables",
            BackendKind::Nftables => "iptables",
        };
        return Err(bad_config(format!(
            "{} backend was requested but configuration contains {other}-specific options {foreign:?}",
            kind.name()
        )));
    }
    Ok(kind)
}

fn mapping_of(m: &RawMapping) -> Result<Mapping> {
    let port = |what: &str, p: i64| {
        u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad_config(format!("invalid {what} port number: {p} (must be 1-65535)")))
    };
    let proto = Proto::parse(&m.protocol).ok_or_else(|| {
        bad_config(format!(
            "invalid protocol {:?} for host port {} (must be tcp, udp or sctp)",
            m.protocol, m.host_port
        ))
    })?;
    let host_ip = match m.host_ip.as_str() {
        "" => None,
        s => Some(
            s.parse::<IpAddr>()
                .map_err(|_| bad_config(format!("invalid hostIP {s:?}")))?,
        ),
    };
    Ok(Mapping {
        host_port: port("host", m.host_port)?,
        container_port: port("container", m.container_port)?,
        proto,
        host_ip,
    })
}

/// The first IPv4 and the first IPv6 address of `prev` on the container interface `ifname`
/// (an address whose `interface` points at another interface, or at one without a sandbox, is
/// skipped; one without an index counts), as the reference.
fn container_ips(prev: &CniResult, ifname: &str) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for ip in &prev.ips {
        if out
            .iter()
            .any(|o| IpFamily::of(o) == IpFamily::of(&ip.address))
        {
            continue;
        }
        let elsewhere = ip
            .interface
            .and_then(|i| prev.interfaces.get(i))
            .is_some_and(|i| i.name != ifname || i.sandbox.is_empty());
        if !elsewhere {
            out.push(ip.address);
        }
    }
    out.sort_by_key(IpFamily::of);
    out
}

/// The UDP host ports forwarded to a container address of `family`.
fn udp_ports(mappings: &[Mapping], family: IpFamily) -> Vec<(IpFamily, u16)> {
    let mut out: Vec<(IpFamily, u16)> = mappings
        .iter()
        .filter(|m| m.proto == Proto::Udp && m.target_for(family).is_some())
        .map(|m| (family, m.host_port))
        .collect();
    out.dedup();
    out
}

/// `route_localnet=1` on the host interface that routes to the container, so that
/// connections from 127.0.0.1, once DNATed, may leave through it.
fn enable_localnet_routing(container: IpAddr) -> Result<()> {
    let nl = Handle::new()?;
    // No route to the container (yet) is no interface to set, as in the reference.
    let Some(oif) = nl.route_get(container).ok().flatten().and_then(|r| r.oif) else {
        return Ok(());
    };
    let Some(link) = nl.link_by_index(oif)? else {
        return Ok(());
    };
    crate::sysctl::write(&format!("net/ipv4/conf/{}/route_localnet", link.name), "1")
        .context("unable to enable route_localnet")
}

#[cfg(test)]
#[path = "portmap_tests.rs"]
mod tests;
