//! `ptp`: a point-to-point veth between the container and the host, routed (no bridge). The
//! container gets IPAM's addresses with all traffic steered through the gateway; the host end
//! gets the gateway as a /32 (/128) and a host route to each container address. Mirrors the
//! reference ptp plugin (FEATURES.md 6.2): same keys, same result (`[host veth, container
//! veth]`, `ips` pointing at the container veth), same routes.
//!
//! Differences: DAD is off on the container veth and the host end's gateway addresses are
//! added without DAD (the link has exactly two ends, so a duplicate cannot exist and a
//! tentative address would only delay the pod, USER-ASKS row 9); DEL keeps going past
//! failures and removes masquerading even when the link is already gone; GC forwards to IPAM
//! and removes the masquerading of stale attachments; CHECK also checks the masquerade rules.

use crate::doctor::{Need, Probe};
use crate::error::{ErrorList, bad_config};
use crate::exec::delegate;
use crate::ipam::configure::configure_iface;
use crate::keys::{Key, key};
use crate::netlink::{self, Handle, RouteSpec};
use crate::netns::Netns;
use crate::podnet::{self, check};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Command, Plugin};
use crate::sysctl;
use crate::types::{CniResult, Interface, IpConfig, NetConf};
use crate::veth::{VethPair, VethRequest, setup_veth};
use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

/// The applet.
pub struct Ptp;

/// The ptp plugin's configuration.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: u32,
}

/// Index of the container veth in the result's interfaces.
const CONTAINER_IFACE: usize = 1;

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("ipMasq", "true", "masquerade traffic leaving the container's subnet"),
    key("ipMasqBackend", r#""nftables""#, "iptables or nftables (default: iptables unless only nftables works)"),
    key("mtu", "1500", "MTU of the veth pair (default: the kernel's)"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[
    Need::always(Probe::Link("veth")),
    Need::when("ipMasq", Probe::Netfilter),
];

impl Plugin for Ptp {
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
        let mut rb = Rollback::new();
        let mut result = podnet::ipam_add(args, conf.ipam(), &mut rb)?;
        let gateways = gateways_of(&result.ips)?;
        podnet::enable_forwarding(result.ips.iter().map(|c| c.address.addr()))?;
        let pair = add_veth(&host, &cont, &ns, &conf, args, &mut rb)?;
        take_interfaces(&mut result, &pair, args);
        no_dad(&ns, &args.ifname);
        configure_iface(&cont, &ns, &args.ifname, &result)?;
        if result.ips.iter().any(|c| c.address.addr().is_ipv6()) {
            podnet::wait_ipv6_usable(&cont, pair.container.index, &args.ifname)?;
        }
        route_via_gateway(&cont, pair.container.index, &result.ips, &gateways)?;
        host_side(&host, pair.host.index, &result.ips, &gateways)?;
        if conf.ip_masq {
            let nets = podnet::result_nets(&result);
            podnet::setup_masq(
                conf.ip_masq_backend.as_deref(),
                &conf.net,
                args,
                nets,
                &mut rb,
            )?;
        }
        podnet::override_dns(&mut result, &conf.net.dns);
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let mut errors = ErrorList::new();
        errors.note(podnet::release_ipam(args, &conf.net));
        let (link, masq) =
            podnet::remove_container_link_with(args, |link_nets| match conf.ip_masq {
                true => podnet::teardown_masq(&conf.net, args, link_nets),
                false => Ok(()),
            });
        errors.note(link);
        errors.note(masq);
        errors.finish()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let ns = args.open_netns()?;
        delegate(Command::Check, conf.ipam(), args)?;
        let prev = check::prev_result(&conf.net, "ptp")?;
        let cont = Handle::in_netns(&ns)?;
        check::validate_container_veth(&cont, check::container_interface(&prev, args)?)?;
        check::validate_interface_ips(&cont, &args.ifname, &prev.ips)?;
        check::validate_routes(&cont, &prev.routes)?;
        if conf.ip_masq {
            let nets = podnet::result_nets(&prev);
            podnet::check_masq(conf.ip_masq_backend.as_deref(), &conf.net, args, &nets)?;
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        podnet::gc(args, &Config::load(args)?.net)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        delegate(Command::Status, conf.ipam(), args)
    }
}

impl Config {
    /// Decodes stdin; ptp cannot work without IPAM.
    fn load(args: &CmdArgs) -> Result<Config> {
        let c: Config = args.config()?;
        if podnet::ipam_type(&c.net).is_none() {
            return Err(bad_config("ptp needs an \"ipam\" section with a \"type\""));
        }
        Ok(c)
    }

    fn ipam(&self) -> &str {
        podnet::ipam_type(&self.net).expect("checked at load")
    }
}

/// Each address's gateway; ptp routes everything through it, so every address needs one.
fn gateways_of(ips: &[IpConfig]) -> Result<Vec<IpAddr>> {
    ips.iter()
        .map(|c| {
            c.gateway.ok_or_else(|| {
                bad_config(format!(
                    "ptp needs a gateway for {} (set one in the IPAM config)",
                    c.address
                ))
            })
        })
        .collect()
}

/// The veth pair; its removal is pushed onto `rb`.
fn add_veth<'a>(
    host: &'a Handle,
    cont: &Handle,
    ns: &Netns,
    conf: &Config,
    args: &CmdArgs,
    rb: &mut Rollback<'a>,
) -> Result<VethPair> {
    let req = VethRequest {
        ifname: &args.ifname,
        host_name: None,
        mtu: conf.mtu,
        container_mac: None,
    };
    let pair = setup_veth(host, cont, ns, &req)?;
    let index = pair.host.index;
    rb.push(format!("delete veth {}", pair.host.name), move || {
        host.delete_link(index)
    });
    Ok(pair)
}

/// The result's interfaces are `[host veth, container veth]`; every address is the
/// container's.
fn take_interfaces(result: &mut CniResult, pair: &VethPair, args: &CmdArgs) {
    result.interfaces = vec![
        Interface {
            name: pair.host.name.clone(),
            mac: pair.host.mac_string(),
            ..Default::default()
        },
        Interface {
            name: pair.container.name.clone(),
            mac: pair.container.mac_string(),
            sandbox: args.netns.clone(),
            ..Default::default()
        },
    ];
    for ip in &mut result.ips {
        ip.interface = Some(CONTAINER_IFACE);
    }
}

/// Best effort: the other end of a point-to-point veth cannot hold a duplicate address.
fn no_dad(ns: &Netns, ifname: &str) {
    let _ = ns.run(|| sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0"));
}

/// The host part of `ip` as a /32 or /128.
fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// Inside the container: the kernel's subnet route is replaced by `<gw>/32 dev <if> scope
/// link src <ip>` and `<subnet> via <gw> dev <if> src <ip>`, so even neighbours in the
/// subnet are reached through the gateway (veth has no IFF_POINTOPOINT).
fn route_via_gateway(
    cont: &Handle,
    index: u32,
    ips: &[IpConfig],
    gateways: &[IpAddr],
) -> Result<()> {
    for (ip, &gw) in ips.iter().zip(gateways) {
        let subnet = ip.address.trunc();
        let kernel_route = RouteSpec {
            oif: Some(index),
            ..RouteSpec::new(subnet)
        };
        cont.del_route(&kernel_route)
            .with_context(|| format!("failed to delete route {subnet}"))?;
        let to_gw = RouteSpec {
            oif: Some(index),
            scope: Some(libc::RT_SCOPE_LINK),
            src: Some(ip.address.addr()),
            ..RouteSpec::new(host_net(gw))
        };
        let via_gw = RouteSpec {
            gw: Some(gw),
            oif: Some(index),
            scope: Some(libc::RT_SCOPE_UNIVERSE),
            src: Some(ip.address.addr()),
            ..RouteSpec::new(subnet)
        };
        for r in [to_gw, via_gw] {
            cont.add_route(&r)
                .with_context(|| format!("failed to add route {}", r.describe()))?;
        }
    }
    Ok(())
}

/// On the host end: each gateway as a /32 (/128) address and a host route to each container
/// address (an existing route is fine).
fn host_side(host: &Handle, index: u32, ips: &[IpConfig], gateways: &[IpAddr]) -> Result<()> {
    for (ip, &gw) in ips.iter().zip(gateways) {
        match host.add_address(index, host_net(gw), true) {
            Err(e) if netlink::is_exists(&e) => {}
            r => r.with_context(|| format!("failed to add IP addr {gw} to the host veth"))?,
        }
        let route = RouteSpec {
            oif: Some(index),
            scope: Some(libc::RT_SCOPE_HOST),
            ..RouteSpec::new(host_net(ip.address.addr()))
        };
        match host.add_route(&route) {
            Err(e) if netlink::is_exists(&e) => {}
            r => r.context("failed to add route on host")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_config_key() {
        crate::keys::assert_struct_keys::<Config>(KEYS);
    }
    use crate::types::args::CniArgs;

    fn load(json: &str) -> Result<Config> {
        Config::load(&CmdArgs {
            command: Command::Add,
            container_id: "c1".into(),
            netns: String::new(),
            ifname: "eth0".into(),
            args: CniArgs::default(),
            path: vec![],
            stdin: json.as_bytes().to_vec(),
            version: "1.0.0".into(),
            env: Default::default(),
        })
    }

    #[test]
    fn keys_and_required_ipam() {
        let c = load(
            r#"{"name":"n","type":"ptp","ipMasq":true,"ipMasqBackend":"iptables","mtu":1300,
                "ipam":{"type":"host-local"}}"#,
        )
        .unwrap();
        assert!(c.ip_masq && c.mtu == 1300 && c.ipam() == "host-local");
        assert_eq!(c.ip_masq_backend.as_deref(), Some("iptables"));
        let e = load(r#"{"name":"n","type":"ptp"}"#).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7);
        assert_eq!(
            e.to_string(),
            "ptp needs an \"ipam\" section with a \"type\""
        );
    }

    #[test]
    fn every_address_needs_a_gateway() {
        let ip = |a: &str, g: Option<&str>| IpConfig {
            interface: None,
            address: a.parse().unwrap(),
            gateway: g.map(|g| g.parse().unwrap()),
        };
        let gws = gateways_of(&[
            ip("10.1.0.5/24", Some("10.1.0.1")),
            ip("fd00::5/64", Some("fd00::1")),
        ]);
        assert_eq!(gws.unwrap().len(), 2);
        let e = gateways_of(&[ip("10.1.0.5/24", None)]).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7);
        assert!(
            e.to_string()
                .contains("ptp needs a gateway for 10.1.0.5/24"),
            "{e}"
        );
        assert_eq!(
            host_net("10.1.0.1".parse().unwrap()).to_string(),
            "10.1.0.1/32"
        );
        assert_eq!(
            host_net("fd00::1".parse().unwrap()).to_string(),
            "fd00::1/128"
        );
    }
}
