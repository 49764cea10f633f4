//! The three wire layouts a result is written in, as structs whose field order is the key
//! order the reference prints (serde keeps declaration order when serializing a struct).
//!
//! - 0.1.0/0.2.0 (`types020.Result`) and 0.3.x/0.4.0 (`types040.Result`): Go struct order;
//!   `dns` has no omit logic there, so an empty one prints as `{}`.
//! - 1.x (`types100.Result`): its `MarshalJSON` round-trips through a Go map to drop an empty
//!   `dns`, so every object comes out with its keys sorted; the 1.x structs below are declared
//!   in that sorted order.
//!
//! The builders mirror `types100.convertTo04x` and `types040.convertTo02x`.

use super::{CniResult, Dns, Interface, IpConfig, Route};
use anyhow::{Result, bail};
use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;

/// A result in one of the three layouts.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum Wire {
    V02(V02Result),
    V04(V04Result),
    V1(V1Result),
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct V02Result {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip4: Option<V02Ip>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip6: Option<V02Ip>,
    dns: Dns,
}

#[derive(Debug, Clone, Serialize)]
struct V02Ip {
    ip: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct V04Result {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<V04Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<V04Ip>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    dns: Dns,
}

#[derive(Debug, Clone, Serialize)]
struct V04Interface {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    sandbox: String,
}

#[derive(Debug, Clone, Serialize)]
struct V04Ip {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct V1Result {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<V1Dns>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<V1Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<V1Ip>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<V1Route>,
}

#[derive(Debug, Clone, Serialize)]
struct V1Dns {
    #[serde(skip_serializing_if = "String::is_empty")]
    domain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nameservers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    options: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    search: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct V1Interface {
    #[serde(skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(skip_serializing_if = "is_zero")]
    mtu: u32,
    name: String,
    #[serde(rename = "pciID", skip_serializing_if = "String::is_empty")]
    pci_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    sandbox: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    socket_path: String,
}

#[derive(Debug, Clone, Serialize)]
struct V1Ip {
    address: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
struct V1Route {
    #[serde(skip_serializing_if = "is_zero")]
    advmss: u32,
    dst: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
    #[serde(skip_serializing_if = "is_zero")]
    mtu: u32,
    #[serde(skip_serializing_if = "is_zero")]
    priority: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<u32>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// 0.1.0/0.2.0: the first address of each family becomes `ip4`/`ip6`; a route joins the block
/// of its destination's family only when that block exists, keeping just `dst` and `gw`.
pub(super) fn legacy(r: &CniResult, version: &str) -> Result<Wire> {
    let block = |v4: bool| {
        r.ips
            .iter()
            .find(|c| c.address.addr().is_ipv4() == v4)
            .map(|c| V02Ip {
                ip: c.address,
                gateway: c.gateway,
                routes: Vec::new(),
            })
    };
    let (mut ip4, mut ip6) = (block(true), block(false));
    for route in &r.routes {
        let target = if route.dst.addr().is_ipv4() {
            &mut ip4
        } else {
            &mut ip6
        };
        if let Some(b) = target {
            b.routes.push(Route::new(route.dst, route.gw));
        }
    }
    // An empty result (loopback's in these versions) is just its DNS; one that lost its
    // addresses is an error, as in the reference's converter.
    let empty = r.interfaces.is_empty() && r.ips.is_empty() && r.routes.is_empty();
    if ip4.is_none() && ip6.is_none() && !empty {
        bail!("cannot convert: no valid IP addresses");
    }
    Ok(Wire::V02(V02Result {
        cni_version: version.to_owned(),
        ip4,
        ip6,
        dns: r.dns.clone(),
    }))
}

/// 0.3.x/0.4.0: `version` from the address family; interfaces lose their 1.1 fields; routes
/// are copied whole, so 1.1 route fields survive (a reference quirk, kept on purpose).
pub(super) fn v04(r: &CniResult, version: &str) -> Wire {
    let interfaces = r
        .interfaces
        .iter()
        .map(|i| V04Interface {
            name: i.name.clone(),
            mac: i.mac.clone(),
            sandbox: i.sandbox.clone(),
        })
        .collect();
    let ips = r
        .ips
        .iter()
        .map(|c: &IpConfig| V04Ip {
            version: if c.address.addr().is_ipv4() { "4" } else { "6" },
            interface: c.interface,
            address: c.address,
            gateway: c.gateway,
        })
        .collect();
    Wire::V04(V04Result {
        cni_version: version.to_owned(),
        interfaces,
        ips,
        routes: r.routes.clone(),
        dns: r.dns.clone(),
    })
}

/// 1.0.0/1.1.0: everything, with an empty `dns` dropped. 1.1 fields are kept for 1.0.0 too:
/// both share one Go type and `convertFrom100` is a shallow copy.
pub(super) fn v1(r: &CniResult, version: &str) -> Wire {
    let d = &r.dns;
    let dns = (!d.is_empty()).then(|| V1Dns {
        domain: d.domain.clone(),
        nameservers: d.nameservers.clone(),
        options: d.options.clone(),
        search: d.search.clone(),
    });
    Wire::V1(V1Result {
        cni_version: version.to_owned(),
        dns,
        interfaces: r.interfaces.iter().map(v1_interface).collect(),
        ips: r
            .ips
            .iter()
            .map(|c| V1Ip {
                address: c.address,
                gateway: c.gateway,
                interface: c.interface,
            })
            .collect(),
        routes: r.routes.iter().map(v1_route).collect(),
    })
}

fn v1_interface(i: &Interface) -> V1Interface {
    V1Interface {
        mac: i.mac.clone(),
        mtu: i.mtu,
        name: i.name.clone(),
        pci_id: i.pci_id.clone(),
        sandbox: i.sandbox.clone(),
        socket_path: i.socket_path.clone(),
    }
}

fn v1_route(r: &Route) -> V1Route {
    V1Route {
        advmss: r.advmss,
        dst: r.dst,
        gw: r.gw,
        mtu: r.mtu,
        priority: r.priority,
        scope: r.scope,
        table: r.table,
    }
}
