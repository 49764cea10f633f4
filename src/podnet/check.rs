//! CHECK validators shared by the pod-network plugins: find the container interface in
//! `prevResult`, check it is a veth with the right MAC in the right netns, and check that the
//! result's addresses and routes are present there. Mirrors the reference's
//! `ip.ValidateExpectedInterfaceIPs` and `ip.ValidateExpectedRoute` (FEATURES.md 6.1, 6.2),
//! with the 1.1 route fields honoured (a route in another table is looked up in that table)
//! and a default route's gateway compared too.

use crate::error::bad_config;
use crate::netlink::{Family, Handle, Link, RouteSpec};
use crate::skel::CmdArgs;
use crate::types::{CniResult, Interface, IpConfig, NetConf, Route};
use anyhow::{Result, bail};

/// `prevResult`, which CHECK needs.
pub fn prev_result(net: &NetConf, plugin: &str) -> Result<CniResult> {
    net.prev_result()?
        .ok_or_else(|| bad_config(format!("{plugin}: Required prevResult missing")))
}

/// The interface of `prev` named `CNI_IFNAME` whose sandbox is `CNI_NETNS`.
pub fn container_interface<'r>(prev: &'r CniResult, args: &CmdArgs) -> Result<&'r Interface> {
    prev.interfaces
        .iter()
        .find(|i| i.name == args.ifname && i.sandbox == args.netns)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "Sandbox in prevResult doesn't match configured netns: no interface {} with sandbox {}",
                args.ifname,
                args.netns
            )
        })
}

/// The container interface as the kernel has it (through `nl`, a handle in the container
/// netns): it must exist, be a veth, and carry the MAC `iface` lists (if any).
pub fn validate_container_veth(nl: &Handle, iface: &Interface) -> Result<Link> {
    let Some(link) = nl.link_by_name(&iface.name)? else {
        bail!("Container interface {} not found", iface.name);
    };
    if link.kind != "veth" {
        bail!(
            "Container interface {} not of type veth (it is {:?})",
            iface.name,
            link.kind
        );
    }
    check_mac(&link, iface)?;
    Ok(link)
}

/// Fails when `iface` lists a MAC that `link` does not have.
pub fn check_mac(link: &Link, iface: &Interface) -> Result<()> {
    if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&link.mac_string()) {
        bail!(
            "Interface {} MAC {} doesn't match the kernel's: {}",
            iface.name,
            iface.mac,
            link.mac_string()
        );
    }
    Ok(())
}

/// Every address of `ips` is on `ifname` (same address and prefix length), and the main
/// table has a route to its subnet.
pub fn validate_interface_ips(nl: &Handle, ifname: &str, ips: &[IpConfig]) -> Result<()> {
    let Some(link) = nl.link_by_name(ifname)? else {
        bail!("Cannot find container link {ifname}");
    };
    let have = nl.addresses(Some(link.index), None)?;
    for ip in ips {
        if !have.iter().any(|a| a.addr == ip.address) {
            bail!("Failed to match addr {} on interface {ifname}", ip.address);
        }
        let subnet = ip.address.trunc();
        let routes = nl.routes(Family::of_net(&subnet), Some(libc::RT_TABLE_MAIN as u32))?;
        if !routes.iter().any(|r| r.dst == subnet) {
            bail!(
                "Failed to find a route to {subnet} (gateway {}) for interface {ifname}",
                ip.gateway.map_or("none".into(), |g| g.to_string())
            );
        }
    }
    Ok(())
}

/// Every route of `routes` is in its table (main unless it names one), to the same
/// destination and, when it names one, through the same gateway.
pub fn validate_routes(nl: &Handle, routes: &[Route]) -> Result<()> {
    for r in routes {
        let dst = r.dst.trunc();
        let table = r.table.unwrap_or(libc::RT_TABLE_MAIN as u32);
        let have = nl.routes(Family::of_net(&dst), Some(table))?;
        if !have.iter().any(|k| matches(k, &dst, r)) {
            let via = r.gw.map_or(String::new(), |g| format!(" via {g}"));
            bail!("Expected Route {dst}{via} not found in routing table {table}");
        }
    }
    Ok(())
}

fn matches(kernel: &RouteSpec, dst: &ipnet::IpNet, r: &Route) -> bool {
    kernel.dst == *dst && (r.gw.is_none() || kernel.gw == r.gw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fresh_netns;

    fn ipc(addr: &str) -> IpConfig {
        IpConfig {
            interface: Some(0),
            address: addr.parse().unwrap(),
            gateway: None,
        }
    }

    #[test]
    fn addresses_and_routes_are_found_or_named() {
        let Some(_ns) = fresh_netns("addresses_and_routes_are_found_or_named") else {
            return;
        };
        let nl = Handle::new().unwrap();
        nl.create_veth("ck0", "ck1", 0, None, None, None).unwrap();
        let l = nl.link_by_name("ck0").unwrap().unwrap();
        let peer = nl.link_by_name("ck1").unwrap().unwrap();
        nl.set_up(l.index).unwrap();
        nl.set_up(peer.index).unwrap();
        nl.add_address(l.index, "10.9.0.5/24".parse().unwrap(), false)
            .unwrap();
        validate_interface_ips(&nl, "ck0", &[ipc("10.9.0.5/24")]).unwrap();
        let e = validate_interface_ips(&nl, "ck0", &[ipc("10.9.0.5/25")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Failed to match addr 10.9.0.5/25 on interface ck0"
        );
        let e = validate_interface_ips(&nl, "nope", &[]).unwrap_err();
        assert_eq!(e.to_string(), "Cannot find container link nope");

        let gw = Some("10.9.0.1".parse().unwrap());
        let default = Route::new("0.0.0.0/0".parse().unwrap(), gw);
        let e = validate_routes(&nl, std::slice::from_ref(&default)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Expected Route 0.0.0.0/0 via 10.9.0.1 not found in routing table 254"
        );
        let spec = RouteSpec {
            gw,
            oif: Some(l.index),
            ..RouteSpec::new("0.0.0.0/0".parse().unwrap())
        };
        nl.add_route(&spec).unwrap();
        validate_routes(&nl, std::slice::from_ref(&default)).unwrap();
        let other_gw = Route::new(
            "0.0.0.0/0".parse().unwrap(),
            Some("10.9.0.2".parse().unwrap()),
        );
        assert!(validate_routes(&nl, &[other_gw]).is_err());
        let mut in_table = Route::new("10.9.0.0/24".parse().unwrap(), None);
        validate_routes(&nl, std::slice::from_ref(&in_table)).unwrap();
        in_table.table = Some(100);
        assert!(validate_routes(&nl, &[in_table]).is_err());

        let mut iface = Interface {
            name: "ck0".into(),
            mac: l.mac_string().to_uppercase(),
            ..Default::default()
        };
        assert_eq!(validate_container_veth(&nl, &iface).unwrap().index, l.index);
        iface.mac = "02:00:00:00:00:01".into();
        assert!(validate_container_veth(&nl, &iface).is_err());
        iface.name = "lo".into();
        iface.mac.clear();
        let e = validate_container_veth(&nl, &iface).unwrap_err();
        assert!(e.to_string().contains("not of type veth"), "{e}");
    }
}
