//! Bridge port VLANs: add, delete and list the VLAN ids of a bridge port (`bridge vlan add dev
//! X vid N [pvid] [untagged] master`). Mirrors vishvananda/netlink's `BridgeVlanAdd`,
//! `BridgeVlanDel` and `BridgeVlanList` as the reference bridge plugin calls them: an
//! `AF_BRIDGE` `RTM_SETLINK`/`RTM_DELLINK` carrying `IFLA_AF_SPEC` { `IFLA_BRIDGE_FLAGS` =
//! master, `IFLA_BRIDGE_VLAN_INFO` }, and an `AF_BRIDGE` link dump with
//! `IFLA_EXT_MASK = RTEXT_FILTER_BRVLAN`.
//!
//! A kernel built without `CONFIG_BRIDGE_VLAN_FILTERING` answers every one of these with
//! EOPNOTSUPP; the messages are therefore also tested byte for byte.

use super::Handle;
use super::attr::{Attr, attr, find, nested, parse};
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifla, RtAddrFamily, Rtm};
use neli::rtnl::{Ifinfomsg, IfinfomsgBuilder};

const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
const IFLA_BRIDGE_FLAGS: u16 = 0;
const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
const BRIDGE_FLAGS_MASTER: u16 = 1;
const BRIDGE_VLAN_INFO_PVID: u16 = 2;
const BRIDGE_VLAN_INFO_UNTAGGED: u16 = 4;
const RTEXT_FILTER_BRVLAN: u32 = 2;

/// One VLAN of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BridgeVlan {
    /// VLAN id, 1-4094.
    pub vid: u16,
    /// Untagged frames entering the port get this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port untagged.
    pub untagged: bool,
}

impl BridgeVlan {
    /// A tagged VLAN (a trunk member).
    pub fn tagged(vid: u16) -> BridgeVlan {
        BridgeVlan {
            vid,
            pvid: false,
            untagged: false,
        }
    }

    /// The port's native VLAN: PVID and untagged.
    pub fn native(vid: u16) -> BridgeVlan {
        BridgeVlan {
            vid,
            pvid: true,
            untagged: true,
        }
    }

    fn flags(&self) -> u16 {
        let mut f = 0;
        if self.pvid {
            f |= BRIDGE_VLAN_INFO_PVID;
        }
        if self.untagged {
            f |= BRIDGE_VLAN_INFO_UNTAGGED;
        }
        f
    }

    /// `struct bridge_vlan_info { __u16 flags; __u16 vid; }`, native endian.
    fn info(&self) -> [u8; 4] {
        let (f, v) = (self.flags().to_ne_bytes(), self.vid.to_ne_bytes());
        [f[0], f[1], v[0], v[1]]
    }
}

/// The `ifinfomsg` that adds or deletes `vlan` on bridge port `index` (through its master).
fn vlan_msg(index: u32, vlan: &BridgeVlan) -> anyhow::Result<Ifinfomsg> {
    // No NLA_F_NESTED on IFLA_AF_SPEC, as vishvananda/netlink sends it; the bridge code
    // finds the attribute by its masked type either way.
    let spec: Attr<Ifla> = attr(
        Ifla::AfSpec,
        [
            attr(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_MASTER)?,
            attr(IFLA_BRIDGE_VLAN_INFO, vlan.info())?,
        ]
        .into_iter()
        .collect::<neli::types::RtBuffer<u16, neli::types::Buffer>>(),
    )?;
    Ok(IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::from(AF_BRIDGE))
        .ifi_index(index as i32)
        .rtattrs([spec].into_iter().collect())
        .build()?)
}

/// The VLANs listed in one `AF_BRIDGE` link dump message, with its ifindex.
fn parse_port_vlans(b: &[u8]) -> anyhow::Result<Option<(u32, Vec<BridgeVlan>)>> {
    let m: Ifinfomsg = parse(b)?;
    let Some(spec) = find(m.rtattrs(), libc::IFLA_AF_SPEC) else {
        return Ok(None);
    };
    let mut vlans = Vec::new();
    for a in nested::<u16>(spec)?.iter() {
        let p = a.rta_payload().as_ref();
        if super::attr::kind_of(a) != IFLA_BRIDGE_VLAN_INFO || p.len() < 4 {
            continue;
        }
        let flags = u16::from_ne_bytes([p[0], p[1]]);
        vlans.push(BridgeVlan {
            vid: u16::from_ne_bytes([p[2], p[3]]),
            pvid: flags & BRIDGE_VLAN_INFO_PVID != 0,
            untagged: flags & BRIDGE_VLAN_INFO_UNTAGGED != 0,
        });
    }
    Ok(Some((*m.ifi_index() as u32, vlans)))
}

fn describe(vlan: &BridgeVlan) -> String {
    let mut s = format!("vid {}", vlan.vid);
    if vlan.pvid {
        s.push_str(" pvid");
    }
    if vlan.untagged {
        s.push_str(" untagged");
    }
    s
}

impl Handle {
    /// Adds `vlan` to bridge port `index` (`bridge vlan add dev .. vid .. master`).
    pub fn bridge_vlan_add(&self, index: u32, vlan: &BridgeVlan) -> anyhow::Result<()> {
        let op = format!("add bridge vlan {} on ifindex {index}", describe(vlan));
        self.request(&op, Rtm::Setlink, NlmF::empty(), vlan_msg(index, vlan)?)
    }

    /// Removes VLAN `vid` from bridge port `index`.
    pub fn bridge_vlan_del(&self, index: u32, vid: u16) -> anyhow::Result<()> {
        let op = format!("delete bridge vlan vid {vid} on ifindex {index}");
        let m = vlan_msg(index, &BridgeVlan::tagged(vid))?;
        self.request(&op, Rtm::Dellink, NlmF::empty(), m)
    }

    /// The VLANs of bridge port `index` (empty when it has none or is not a port).
    pub fn bridge_vlans(&self, index: u32) -> anyhow::Result<Vec<BridgeVlan>> {
        Ok(self
            .bridge_vlans_by_port()?
            .into_iter()
            .filter(|(i, _)| *i == index)
            .flat_map(|(_, v)| v)
            .collect())
    }

    /// The VLANs of every bridge port in this netns (of any bridge), by ifindex, from one
    /// dump (`bridge vlan show`); ports without VLANs may be left out.
    pub fn bridge_vlans_by_port(&self) -> anyhow::Result<Vec<(u32, Vec<BridgeVlan>)>> {
        // The AF_BRIDGE dump takes no ifindex filter.
        let req = || {
            Ok(IfinfomsgBuilder::default()
                .ifi_family(RtAddrFamily::from(AF_BRIDGE))
                .rtattrs(
                    [attr(Ifla::ExtMask, RTEXT_FILTER_BRVLAN)?]
                        .into_iter()
                        .collect(),
                )
                .build()?)
        };
        self.dump("dump bridge vlans", Rtm::Getlink, req, parse_port_vlans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::attr::to_bytes;
    use crate::netlink::is_unsupported;
    use crate::testutil::fresh_netns;

    /// Byte for byte what vishvananda/netlink's `BridgeVlanAdd(link, 10, true, true, false,
    /// true)` puts after the nlmsghdr (iproute2 sends the same, plus NLA_F_NESTED).
    #[test]
    fn add_native_vlan_message_bytes() {
        let m = vlan_msg(7, &BridgeVlan::native(10)).unwrap();
        #[rustfmt::skip]
        let want = [
            7, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg: AF_BRIDGE, ifindex 7
            20, 0, 26, 0,                 // IFLA_AF_SPEC, 20 bytes
            6, 0, 0, 0, 1, 0, 0, 0,       //   IFLA_BRIDGE_FLAGS = BRIDGE_FLAGS_MASTER (+ pad)
            8, 0, 2, 0, 6, 0, 10, 0,      //   IFLA_BRIDGE_VLAN_INFO {flags PVID|UNTAGGED, vid 10}
        ];
        assert_eq!(to_bytes(&m).unwrap(), want);
        let trunk = to_bytes(&vlan_msg(7, &BridgeVlan::tagged(4094)).unwrap()).unwrap();
        assert_eq!(trunk[32..], [0, 0, 0xfe, 0x0f], "no flags, vid 4094");
    }

    #[test]
    fn dump_message_is_parsed_into_vlans() {
        let spec: Attr<Ifla> = attr(
            Ifla::AfSpec,
            [
                attr(IFLA_BRIDGE_VLAN_INFO, BridgeVlan::native(1).info()).unwrap(),
                attr(IFLA_BRIDGE_VLAN_INFO, BridgeVlan::tagged(20).info()).unwrap(),
            ]
            .into_iter()
            .collect::<neli::types::RtBuffer<u16, neli::types::Buffer>>(),
        )
        .unwrap();
        let m = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::from(AF_BRIDGE))
            .ifi_index(9)
            .rtattrs([spec].into_iter().collect())
            .build()
            .unwrap();
        let (index, vlans) = parse_port_vlans(&to_bytes(&m).unwrap()).unwrap().unwrap();
        assert_eq!(index, 9);
        assert_eq!(vlans, [BridgeVlan::native(1), BridgeVlan::tagged(20)]);
    }

    /// This kernel may lack VLAN filtering: then adding says so (EOPNOTSUPP) and listing
    /// works and finds nothing; with it, the VLAN is added, listed and deleted.
    #[test]
    fn vlan_on_a_live_bridge_port() {
        let Some(_ns) = fresh_netns("vlan_on_a_live_bridge_port") else {
            return;
        };
        let h = Handle::new().unwrap();
        let br = crate::netlink::LinkSpec::new(
            "vbr0",
            crate::netlink::LinkKind::Bridge {
                vlan_filtering: None,
                vlan_default_pvid: None,
                mcast_snooping: None,
            },
        );
        h.create_link(&br).unwrap();
        let br = h.link_by_name("vbr0").unwrap().unwrap();
        h.create_veth("vp0", "vp1", 0, None, None, None).unwrap();
        let port = h.link_by_name("vp0").unwrap().unwrap();
        h.set_master(port.index, br.index).unwrap();
        match h.bridge_vlan_add(port.index, &BridgeVlan::tagged(20)) {
            Err(e) if is_unsupported(&e) => {
                let text = format!("{e:#}");
                assert!(
                    text.starts_with(&format!(
                        "add bridge vlan vid 20 on ifindex {}: Operation not supported",
                        port.index
                    )),
                    "{text}"
                );
                assert!(h.bridge_vlans(port.index).unwrap().is_empty());
                println!("skipped: kernel lacks bridge vlan filtering ({text})");
            }
            Err(e) => panic!("{e:#}"),
            Ok(()) => {
                assert!(
                    h.bridge_vlans(port.index)
                        .unwrap()
                        .contains(&BridgeVlan::tagged(20))
                );
                let all = h.bridge_vlans_by_port().unwrap();
                let of_port = all.iter().find(|(i, _)| *i == port.index).unwrap();
                assert!(of_port.1.contains(&BridgeVlan::tagged(20)), "{all:?}");
                h.bridge_vlan_del(port.index, 20).unwrap();
                assert!(
                    !h.bridge_vlans(port.index)
                        .unwrap()
                        .iter()
                        .any(|v| v.vid == 20)
                );
            }
        }
    }
}
