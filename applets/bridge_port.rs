//! Bridge ports for the `bridge` applet: a host veth joins the bridge with the hairpin and
//! isolated flags and its VLANs; the `<bridge>.<vlan>` gateway interface; `vlanTrunk`
//! parsing. Mirrors the reference bridge plugin's `setupVeth`, `removeDefaultVlan`,
//! `ensureVlanInterface` and `collectVlanTrunk` (FEATURES.md 6.1).

use crate::error::bad_config;
use crate::netlink::{self, BridgePortOpts, BridgeVlan, Handle, Link};
use crate::netns::Netns;
use crate::veth::{VethRequest, setup_veth};
use anyhow::{Context, Result};
use serde::Deserialize;

/// One `vlanTrunk` entry: `{"id": N}` or `{"minID": A, "maxID": B}` (or both).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct VlanTrunk {
    #[serde(default, rename = "minID")]
    min_id: Option<i64>,
    #[serde(default, rename = "maxID")]
    max_id: Option<i64>,
    #[serde(default)]
    id: Option<i64>,
}

/// `vlanTrunk` as sorted, unique VLAN ids; every id 1-4094, `minID` and `maxID` together.
pub(super) fn collect_vlan_trunk(trunk: &[VlanTrunk]) -> Result<Vec<u16>> {
    let valid = |v: i64, what: &str| {
        if (1..=4094).contains(&v) {
            Ok(v as u16)
        } else {
            Err(bad_config(format!("incorrect trunk {what} parameter")))
        }
    };
    let mut ids = Vec::new();
    for t in trunk {
        match (t.min_id, t.max_id) {
            (Some(min), Some(max)) => {
                let (min, max) = (valid(min, "minID")?, valid(max, "maxID")?);
                if max < min {
                    return Err(bad_config("minID is greater than maxID in trunk parameter"));
                }
                ids.extend(min..=max);
            }
            (None, Some(_)) => {
                return Err(bad_config(
                    "minID and maxID should be configured simultaneously, minID is missing",
                ));
            }
            (Some(_), None) => {
                return Err(bad_config(
                    "minID and maxID should be configured simultaneously, maxID is missing",
                ));
            }
            (None, None) => {}
        }
        if let Some(id) = t.id {
            ids.push(valid(id, "id")?);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Explains the kernel's EOPNOTSUPP when VLAN filtering is asked for.
pub(super) fn vlan_hint(e: anyhow::Error) -> anyhow::Error {
    if netlink::is_unsupported(&e) {
        e.context(
            "vlan and vlanTrunk need bridge VLAN filtering, which this kernel lacks \
             (CONFIG_BRIDGE_VLAN_FILTERING)",
        )
    } else {
        e
    }
}

/// How a port joins the bridge.
pub(super) struct PortOpts<'a> {
    pub hairpin: bool,
    pub isolated: bool,
    pub vlan: u16,
    pub trunk: &'a [u16],
    pub preserve_default_vlan: bool,
}

/// Master, hairpin and isolated flags (always written, as the reference), then VLANs: the
/// default PVID removed unless preserved, `vlan` as PVID+untagged, trunk ids tagged, and VID 1
/// as the native VLAN of a trunk without `vlan`.
pub(super) fn join_bridge(host: &Handle, br: &Link, port: &Link, o: &PortOpts<'_>) -> Result<()> {
    let name = &port.name;
    host.set_master(port.index, br.index)
        .with_context(|| format!("failed to connect {name:?} to bridge {}", br.name))?;
    let flags = BridgePortOpts {
        hairpin: Some(o.hairpin),
        isolated: Some(o.isolated),
    };
    host.set_bridge_port(port.index, &flags)
        .with_context(|| format!("failed to set hairpin and isolation on {name}"))?;
    let vlans_wanted = o.vlan != 0 || !o.trunk.is_empty();
    if vlans_wanted && !o.preserve_default_vlan {
        for v in host.bridge_vlans(port.index)? {
            host.bridge_vlan_del(port.index, v.vid)
                .map_err(vlan_hint)
                .with_context(|| format!("failed to remove default vlan on interface {name:?}"))?;
        }
    }
    let mut add: Vec<BridgeVlan> = Vec::new();
    if o.vlan != 0 {
        add.push(BridgeVlan::native(o.vlan));
    }
    add.extend(o.trunk.iter().map(|&v| BridgeVlan::tagged(v)));
    if o.vlan == 0 && !o.trunk.is_empty() {
        add.push(BridgeVlan::native(1));
    }
    for v in add {
        host.bridge_vlan_add(port.index, &v)
            .map_err(vlan_hint)
            .with_context(|| format!("failed to setup vlan tag on interface {name:?}"))?;
    }
    Ok(())
}

/// The `<bridge>.<vlan>` gateway interface: a veth pair in the host netns whose other end is a
/// bridge port with PVID `vlan`; reused when it exists.
pub(super) fn ensure_vlan_interface(
    host: &Handle,
    br: &Link,
    vlan: u16,
    preserve_default_vlan: bool,
) -> Result<Link> {
    let name = format!("{}.{vlan}", br.name);
    if let Some(l) = host.link_by_name(&name)? {
        return Ok(l);
    }
    let host_ns = Netns::current()?;
    let req = VethRequest {
        ifname: &name,
        host_name: None,
        mtu: br.mtu,
        container_mac: None,
    };
    let pair = setup_veth(host, host, &host_ns, &req)
        .with_context(|| format!("failed to create vlan gateway {name:?}"))?;
    let opts = PortOpts {
        hairpin: false,
        isolated: false,
        vlan,
        trunk: &[],
        preserve_default_vlan,
    };
    // A half-made gateway would be reused as it is by the next ADD (found by name), without
    // its VLAN: remove it again (both ends go with one) when it cannot be finished.
    let finish = join_bridge(host, br, &pair.host, &opts).and_then(|()| {
        host.set_up(pair.container.index)
            .with_context(|| format!("failed to up {name:?}"))
    });
    if let Err(e) = finish {
        let _ = host.delete_link(pair.host.index);
        return Err(e);
    }
    Ok(pair.container)
}

/// DEL: removes the `<bridge>.<vlan>` gateway interface once no other port of the bridge
/// carries `vlan` (USER-ASKS row 11; the reference never removes it). Only a veth whose peer
/// is a port of the bridge counts as ours; a missing bridge or gateway is success. A
/// concurrent ADD in the same VLAN has joined its port before it looks for the gateway, so
/// it is counted; if it found the gateway just before, its ADD fails and rolls back.
/// Nothing for a config without `isGateway`, or with a bridge name or VLAN that ADD refuses.
pub(super) fn release_vlan_gateway(bridge: &str, vlan: i64, is_gateway: bool) -> Result<()> {
    let vlan = u16::try_from(vlan).ok().filter(|v| (1..=4094).contains(v));
    match vlan {
        Some(vlan) if is_gateway && netlink::kinds::valid_ifname(bridge) => {
            remove_unused_gateway(&Handle::new()?, bridge, vlan)
        }
        _ => Ok(()),
    }
}

fn remove_unused_gateway(host: &Handle, bridge: &str, vlan: u16) -> Result<()> {
    let (Some(br), Some(gw)) = (
        host.link_by_name(bridge)?,
        host.link_by_name(&format!("{bridge}.{vlan}"))?,
    ) else {
        return Ok(());
    };
    let Some(peer) = gw
        .link
        .filter(|_| gw.kind == "veth" && gw.link_netnsid.is_none())
    else {
        return Ok(());
    };
    let ports: Vec<u32> = host
        .links()?
        .iter()
        .filter(|l| l.master == Some(br.index))
        .map(|l| l.index)
        .collect();
    if !ports.contains(&peer) {
        return Ok(());
    }
    let in_use = host
        .bridge_vlans_by_port()?
        .iter()
        .filter(|(port, _)| *port != peer && ports.contains(port))
        .any(|(_, vlans)| vlans.iter().any(|v| v.vid == vlan));
    if in_use {
        return Ok(());
    }
    match host.delete_link(gw.index) {
        Err(e) if netlink::is_not_found(&e) => Ok(()),
        r => r.with_context(|| format!("failed to remove vlan gateway {:?}", gw.name)),
    }
}
