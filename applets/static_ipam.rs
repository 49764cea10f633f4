//! `static` IPAM: returns fixed addresses, routes and DNS from the config, mirroring the
//! reference's `plugins/ipam/static` (FEATURES.md 6.11). Addresses come from `ipam.addresses`,
//! plus CNI_ARGS `IP` (comma-separated CIDRs, appended), with CNI_ARGS `GATEWAY` set on every
//! address whose subnet holds it; `args.cni.ips` and then `runtimeConfig.ips` replace them all.
//! Nothing is allocated, so DEL has nothing to do. Two deliberate differences: at least one
//! address is required, and CHECK fails when a configured address is missing from
//! `prevResult` (the reference only checks the gateways of those present).

use crate::error::{bad_config, bad_env};
use crate::ipam::config::{get_str, ipam_section, parse_cidr, parse_ip, parse_routes};
use crate::keys::{Key, key};
use crate::skel::{CmdArgs, Plugin};
use crate::types::args::CniArgs;
use crate::types::{CniResult, Dns, IpConfig, NetConf, Route, Version};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

/// The static applet.
pub struct Static;

/// static reads the plugin-level config; its own keys live in `ipam`.
#[derive(Debug, Deserialize)]
struct Conf {
    #[serde(flatten)]
    net: NetConf,
}

/// The merged configuration.
#[derive(Debug, Clone, PartialEq)]
struct StaticConfig {
    addresses: Vec<Address>,
    routes: Vec<Route>,
    dns: Dns,
}

/// One address, host bits kept (`10.1.2.3/24`), with an optional gateway.
#[derive(Debug, Clone, PartialEq)]
struct Address {
    address: IpNet,
    gateway: Option<IpAddr>,
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("ipam.addresses", r#"[{"address":"10.1.0.5/24","gateway":"10.1.0.1"}]"#, "addresses to return: {address, gateway}"),
    key("ipam.routes", r#"[{"dst":"0.0.0.0/0"}]"#, "routes to return: {dst, gw}"),
    key("ipam.dns", r#"{"nameservers":["10.1.0.1"]}"#, "DNS to return: {nameservers, domain, search, options}"),
];

impl Plugin for Static {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let (conf, _) = load(args)?;
        let ips = conf
            .addresses
            .iter()
            .map(|a| IpConfig {
                interface: None,
                address: a.address,
                gateway: a.gateway,
            })
            .collect();
        Ok(CniResult {
            ips,
            routes: conf.routes,
            dns: conf.dns,
            ..Default::default()
        })
    }

    fn del(&self, _args: &CmdArgs) -> anyhow::Result<()> {
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (conf, net) = load(args)?;
        let prev = net
            .prev_result()?
            .ok_or_else(|| bad_config("Required prevResult missing"))?;
        check_prev(&conf, &prev, &args.ifname)
    }
}

fn load(args: &CmdArgs) -> anyhow::Result<(StaticConfig, NetConf)> {
    let conf: Conf = args.config()?;
    let sc = StaticConfig::load(&conf.net, &args.args)?;
    Ok((sc, conf.net))
}

impl StaticConfig {
    /// Merges the sources in the reference's order and checks the result.
    fn load(net: &NetConf, cni_args: &CniArgs) -> anyhow::Result<StaticConfig> {
        let ipam = ipam_section(net)?;
        let mut addresses = config_addresses(ipam.get("addresses"))?;
        apply_cni_args(&mut addresses, cni_args)?;
        for (key, list) in [
            ("args.cni.ips", net.cni_arg::<Vec<String>>("ips")?),
            ("runtimeConfig.ips", net.runtime::<Vec<String>>("ips")?),
        ] {
            let list = list.unwrap_or_default();
            if !list.is_empty() {
                addresses = list
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        Ok(Address {
                            address: parse_cidr(s, &format!("{key}[{i}]"))?,
                            gateway: None,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
        }
        if addresses.is_empty() {
            return Err(bad_config(
                "ipam.addresses: no address configured (nor given by CNI_ARGS IP, args.cni.ips or runtimeConfig.ips)",
            ));
        }
        check_families(&addresses, &net.cni_version)?;
        let dns = match ipam.get("dns").filter(|v| !v.is_null()) {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| bad_config(format!("ipam.dns: {e}")))?,
            None => Dns::default(),
        };
        Ok(StaticConfig {
            addresses,
            routes: parse_routes(ipam.get("routes"), "ipam.routes")?,
            dns,
        })
    }
}

/// `ipam.addresses`: `[{address: CIDR, gateway?: IP}]`.
fn config_addresses(v: Option<&serde_json::Value>) -> anyhow::Result<Vec<Address>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| bad_config("ipam.addresses: expected an array"))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("ipam.addresses[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| bad_config(format!("{path}: expected an object")))?;
        let addr = get_str(obj, "address", &path)?
            .ok_or_else(|| bad_config(format!("{path}.address: missing")))?;
        let gateway = get_str(obj, "gateway", &path)?
            .map(|g| parse_ip(g, &format!("{path}.gateway")))
            .transpose()?;
        out.push(Address {
            address: parse_cidr(addr, &format!("{path}.address"))?,
            gateway,
        });
    }
    Ok(out)
}

/// CNI_ARGS `IP` (CIDRs, appended) and `GATEWAY` (set on every address whose subnet holds
/// it), as the reference.
fn apply_cni_args(addresses: &mut Vec<Address>, cni_args: &CniArgs) -> anyhow::Result<()> {
    let env_err = |e: anyhow::Error| bad_env(format!("{e}"));
    if let Some(ips) = cni_args.get("IP").filter(|s| !s.is_empty()) {
        for item in ips.split(',') {
            let address = parse_cidr(item, "CNI_ARGS IP").map_err(env_err)?;
            addresses.push(Address {
                address,
                gateway: None,
            });
        }
    }
    if let Some(gws) = cni_args.get("GATEWAY").filter(|s| !s.is_empty()) {
        for item in gws.split(',') {
            let gw = parse_ip(item, "CNI_ARGS GATEWAY").map_err(env_err)?;
            for a in addresses.iter_mut().filter(|a| a.address.contains(&gw)) {
                a.gateway = Some(gw);
            }
        }
    }
    Ok(())
}

/// Versions before 0.3.0 carry one address per family.
fn check_families(addresses: &[Address], cni_version: &str) -> anyhow::Result<()> {
    let v4 = addresses
        .iter()
        .filter(|a| a.address.addr().is_ipv4())
        .count();
    let v6 = addresses.len() - v4;
    if (v4 > 1 || v6 > 1) && Version::parse(cni_version)? < Version(0, 3, 0) {
        return Err(bad_config(format!(
            "ipam.addresses: cniVersion {cni_version:?} does not support more than one address per family"
        )));
    }
    Ok(())
}

/// Every configured address must be in `prevResult.ips`, with the configured gateway if any.
fn check_prev(conf: &StaticConfig, prev: &CniResult, ifname: &str) -> anyhow::Result<()> {
    for a in &conf.addresses {
        let ip = a.address.addr();
        let Some(found) = prev.ips.iter().find(|p| p.address.addr() == ip) else {
            anyhow::bail!("static: address {ip} is missing from prevResult on interface {ifname}");
        };
        if a.gateway.is_some() && a.gateway != found.gateway {
            anyhow::bail!("static: Failed to match addr {ip} on interface {ifname}");
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "static_ipam_tests.rs"]
mod tests;
