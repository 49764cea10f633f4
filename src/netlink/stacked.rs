//! Lookups for links stacked on a lower device (macvlan, ipvlan, 802.1Q vlan): their
//! kind-specific settings read back from `IFLA_INFO_DATA` (what CHECK compares against the
//! configuration), and the interface of the default route (the reference's
//! `getDefaultRouteInterfaceName`: the first route to `0.0.0.0/0` or `::/0` in the main table).

use super::attr::{find, kind_of, nested, parse};
use super::kinds::{IpvlanFlag, IpvlanMode, MacvlanMode};
use super::link::{Link, parse_link};
use super::{Family, Handle};
use neli::consts::rtnl::{Ifla, IflaInfo, RtAddrFamily, Rtm};
use neli::rtnl::{Ifinfomsg, IfinfomsgBuilder};

// IFLA_INFO_DATA attribute numbers (include/uapi/linux/if_link.h).
const IFLA_MACVLAN_MODE: u16 = 1;
const IFLA_MACVLAN_BC_QUEUE_LEN: u16 = 7;
const IFLA_IPVLAN_MODE: u16 = 1;
const IFLA_IPVLAN_FLAGS: u16 = 2;
const IFLA_VLAN_ID: u16 = 1;

/// The settings of a link of a stacked kind, as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindData {
    /// A macvlan: `MACVLAN_MODE_*` and the broadcast queue length (when reported).
    Macvlan {
        /// Raw mode (see [`MacvlanMode::from_raw`]).
        mode: u32,
        /// `IFLA_MACVLAN_BC_QUEUE_LEN`.
        bc_queue_len: Option<u32>,
    },
    /// An ipvlan: `IPVLAN_MODE_*` and `IPVLAN_F_*`.
    Ipvlan {
        /// Raw mode (see [`IpvlanMode::from_raw`]).
        mode: u16,
        /// Raw flags (see [`IpvlanFlag::from_raw`]).
        flags: u16,
    },
    /// An 802.1Q vlan.
    Vlan {
        /// VLAN id.
        id: u16,
    },
    /// Any other kind, or none.
    Other,
}

/// A link with its kind-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDetails {
    /// The common attributes.
    pub link: Link,
    /// The kind-specific ones.
    pub data: KindData,
}

impl MacvlanMode {
    /// The mode for a raw `MACVLAN_MODE_*` value.
    pub fn from_raw(v: u32) -> Option<MacvlanMode> {
        [
            MacvlanMode::Private,
            MacvlanMode::Vepa,
            MacvlanMode::Bridge,
            MacvlanMode::Passthru,
            MacvlanMode::Source,
        ]
        .into_iter()
        .find(|m| *m as u32 == v)
    }

    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Passthru => "passthru",
            MacvlanMode::Source => "source",
        }
    }
}

impl IpvlanMode {
    /// The mode for a raw `IPVLAN_MODE_*` value.
    pub fn from_raw(v: u16) -> Option<IpvlanMode> {
        [IpvlanMode::L2, IpvlanMode::L3, IpvlanMode::L3s]
            .into_iter()
            .find(|m| *m as u16 == v)
    }

    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }
}

impl IpvlanFlag {
    /// The flag for raw `IPVLAN_F_*` bits.
    pub fn from_raw(v: u16) -> Option<IpvlanFlag> {
        [IpvlanFlag::Bridge, IpvlanFlag::Private, IpvlanFlag::Vepa]
            .into_iter()
            .find(|m| *m as u16 == v)
    }

    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            IpvlanFlag::Bridge => "bridge",
            IpvlanFlag::Private => "private",
            IpvlanFlag::Vepa => "vepa",
        }
    }
}

fn u16_of(p: &[u8]) -> Option<u16> {
    p.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

fn u32_of(p: &[u8]) -> Option<u32> {
    p.get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The settings in an `IFLA_LINKINFO` payload (kind + data attributes).
pub(crate) fn parse_kind_data(linkinfo: &[u8]) -> anyhow::Result<KindData> {
    let info = nested::<IflaInfo>(linkinfo)?;
    let kind = find(&info, libc::IFLA_INFO_KIND).map(super::attr::str_of);
    let data = match find(&info, libc::IFLA_INFO_DATA) {
        Some(d) => nested::<u16>(d)?,
        None => return Ok(KindData::Other),
    };
    let get = |t| find(&data, t);
    Ok(match kind.as_deref() {
        Some("macvlan") => KindData::Macvlan {
            mode: get(IFLA_MACVLAN_MODE).and_then(u32_of).unwrap_or(0),
            bc_queue_len: get(IFLA_MACVLAN_BC_QUEUE_LEN).and_then(u32_of),
        },
        Some("ipvlan") => KindData::Ipvlan {
            mode: get(IFLA_IPVLAN_MODE).and_then(u16_of).unwrap_or(0),
            flags: get(IFLA_IPVLAN_FLAGS).and_then(u16_of).unwrap_or(0),
        },
        Some("vlan") => KindData::Vlan {
            id: get(IFLA_VLAN_ID).and_then(u16_of).unwrap_or(0),
        },
        _ => KindData::Other,
    })
}

fn parse_details(b: &[u8]) -> anyhow::Result<LinkDetails> {
    let link = parse_link(b)?;
    let m: Ifinfomsg = parse(b)?;
    let data = match m
        .rtattrs()
        .iter()
        .find(|a| kind_of(*a) == libc::IFLA_LINKINFO)
    {
        Some(a) => parse_kind_data(a.rta_payload().as_ref())?,
        None => KindData::Other,
    };
    Ok(LinkDetails { link, data })
}

impl Handle {
    /// The link called `name` with its kind-specific settings, `None` if there is none.
    pub fn link_details(&self, name: &str) -> anyhow::Result<Option<LinkDetails>> {
        let m = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(
                [super::attr::attr(Ifla::Ifname, name)?]
                    .into_iter()
                    .collect(),
            )
            .build()?;
        match self.get(&format!("get link {name}"), Rtm::Getlink, m, parse_details) {
            Err(e) if super::errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            r => r,
        }
    }

    /// The ifindex of the interface of the first default route in the main table (IPv4
    /// first, then IPv6), `None` when there is no such route. A multipath default route
    /// names no single interface and is passed over.
    pub fn default_route_link(&self) -> anyhow::Result<Option<u32>> {
        for family in [Family::V4, Family::V6] {
            // Unfiltered: asking for a table the netns never used fails with ENOENT.
            let routes = self.routes(family, None)?;
            let found = routes
                .iter()
                .filter(|r| r.table == Some(libc::RT_TABLE_MAIN as u32))
                .filter(|r| r.dst.prefix_len() == 0)
                .find_map(|r| r.oif);
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
#[path = "stacked_tests.rs"]
mod tests;
