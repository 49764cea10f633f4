//! Links: look up, list, create (any kind, and veth pairs across netns), change one attribute
//! at a time, move to another netns, delete; bridge port options (hairpin, isolated). Mirrors
//! the vishvananda/netlink calls the reference plugins make (`LinkByName`, `LinkSetUp`,
//! `LinkSetMTU`, `LinkSetMaster`, `LinkSetNsFd`, `LinkSetHairpin`, `LinkDel`, ...).
//! Links are addressed by ifindex once they exist.

use super::attr::{
    Attr, NLA_F_NESTED, attr, find, i32_of, kind_of, mac_of, mac_string, nest, nested, parse,
    str_of, u8_of, u32_of,
};
use super::kinds::{LinkKind, LinkSpec, create_flags, newlink_payload};
use super::{Handle, NlError};
use crate::netns::Netns;
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Iff, Ifla, IflaInfo, RtAddrFamily, Rtm};
use neli::rtnl::{Ifinfomsg, IfinfomsgBuilder};

const IFLA_BRPORT_MODE: u16 = 4;
const IFLA_BRPORT_ISOLATED: u16 = 33;
const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// ifindex.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_INFO_KIND` ("veth", "bridge", ...), empty for physical devices and lo.
    pub kind: String,
    /// MTU.
    pub mtu: u32,
    /// Ethernet address (`None` for links without a 6-byte address).
    pub mac: Option<[u8; 6]>,
    /// `IFF_*` flags.
    pub flags: u32,
    /// ifindex of the master (bridge, VRF, bond).
    pub master: Option<u32>,
    /// `IFLA_LINK`: the lower device, or a veth's peer (in `link_netnsid` if that is set).
    pub link: Option<u32>,
    /// netnsid (as seen from this netns) of the netns `link` lives in.
    pub link_netnsid: Option<i32>,
    /// Transmit queue length.
    pub txqlen: u32,
    /// `IFLA_IFALIAS`.
    pub alias: Option<String>,
    /// RFC 2863 operational state (`IF_OPER_*`: 6 up, 2 down, 0 unknown).
    pub operstate: u8,
}

impl Link {
    /// `IFF_UP` is set (administratively up).
    pub fn is_up(&self) -> bool {
        self.flags & libc::IFF_UP as u32 != 0
    }

    /// `IFF_PROMISC` is set.
    pub fn is_promisc(&self) -> bool {
        self.flags & libc::IFF_PROMISC as u32 != 0
    }

    /// The MAC as `aa:bb:cc:dd:ee:ff`, empty when the link has none.
    pub fn mac_string(&self) -> String {
        self.mac.as_ref().map(mac_string).unwrap_or_default()
    }
}

/// Per-port options of a bridge member (`IFLA_PROTINFO` under `AF_BRIDGE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgePortOpts {
    /// Hairpin mode: send frames back out of the port they came in on.
    pub hairpin: Option<bool>,
    /// Isolated: no traffic to other isolated ports.
    pub isolated: Option<bool>,
}

pub(super) fn parse_link(b: &[u8]) -> anyhow::Result<Link> {
    let m: Ifinfomsg = parse(b)?;
    let mut l = Link {
        index: *m.ifi_index() as u32,
        name: String::new(),
        kind: String::new(),
        mtu: 0,
        mac: None,
        flags: m.ifi_flags().bits(),
        master: None,
        link: None,
        link_netnsid: None,
        txqlen: 0,
        alias: None,
        operstate: 0,
    };
    for a in m.rtattrs().iter() {
        let p = a.rta_payload().as_ref();
        match kind_of(a) {
            libc::IFLA_IFNAME => l.name = str_of(p),
            libc::IFLA_MTU => l.mtu = u32_of(p).unwrap_or(0),
            libc::IFLA_ADDRESS => l.mac = mac_of(p),
            libc::IFLA_MASTER => l.master = u32_of(p).filter(|&m| m != 0),
            libc::IFLA_LINK => l.link = u32_of(p),
            libc::IFLA_LINK_NETNSID => l.link_netnsid = i32_of(p),
            libc::IFLA_TXQLEN => l.txqlen = u32_of(p).unwrap_or(0),
            libc::IFLA_IFALIAS => l.alias = Some(str_of(p)),
            libc::IFLA_OPERSTATE => l.operstate = u8_of(p).unwrap_or(0),
            libc::IFLA_LINKINFO => {
                l.kind = find(&nested::<IflaInfo>(p)?, libc::IFLA_INFO_KIND)
                    .map(str_of)
                    .unwrap_or_default()
            }
            _ => {}
        }
    }
    Ok(l)
}

fn parse_bridge_port(b: &[u8]) -> anyhow::Result<Option<(u32, BridgePortOpts)>> {
    let m: Ifinfomsg = parse(b)?;
    let Some(info) = find(m.rtattrs(), libc::IFLA_PROTINFO) else {
        return Ok(None);
    };
    let port = nested::<u16>(info)?;
    let flag = |t| find(&port, t).and_then(u8_of).map(|v| v != 0);
    let opts = BridgePortOpts {
        hairpin: flag(IFLA_BRPORT_MODE),
        isolated: flag(IFLA_BRPORT_ISOLATED),
    };
    Ok(Some((*m.ifi_index() as u32, opts)))
}

/// An `ifinfomsg` addressing one existing link.
fn msg(index: u32) -> IfinfomsgBuilder {
    IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::Unspecified)
        .ifi_index(index as i32)
}

fn flag_msg(index: u32, flag: Iff, on: bool) -> anyhow::Result<Ifinfomsg> {
    let flags = if on { flag } else { Iff::empty() };
    Ok(msg(index).ifi_flags(flags).ifi_change(flag).build()?)
}

impl Handle {
    /// `RTM_SETLINK` of one link with the given attributes.
    fn setlink(&self, op: &str, index: u32, attrs: Vec<Attr<Ifla>>) -> anyhow::Result<()> {
        let m = msg(index).rtattrs(attrs.into_iter().collect()).build()?;
        self.request(op, Rtm::Setlink, NlmF::empty(), m)
    }

    /// The link called `name`, `None` if there is none.
    pub fn link_by_name(&self, name: &str) -> anyhow::Result<Option<Link>> {
        let m = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs([attr(Ifla::Ifname, name)?].into_iter().collect())
            .build()?;
        none_if_missing(self.get(&format!("get link {name}"), Rtm::Getlink, m, parse_link))
    }

    /// The link with ifindex `index`, `None` if there is none.
    pub fn link_by_index(&self, index: u32) -> anyhow::Result<Option<Link>> {
        let m = msg(index).build()?;
        none_if_missing(self.get(
            &format!("get link ifindex {index}"),
            Rtm::Getlink,
            m,
            parse_link,
        ))
    }

    /// Every link in the netns.
    pub fn links(&self) -> anyhow::Result<Vec<Link>> {
        let req = || {
            Ok(IfinfomsgBuilder::default()
                .ifi_family(RtAddrFamily::Unspecified)
                .build()?)
        };
        self.dump("dump links", Rtm::Getlink, req, |b| parse_link(b).map(Some))
    }

    /// Brings the link up.
    pub fn set_up(&self, index: u32) -> anyhow::Result<()> {
        let op = format!("set ifindex {index} up");
        self.request(
            &op,
            Rtm::Setlink,
            NlmF::empty(),
            flag_msg(index, Iff::UP, true)?,
        )
    }

    /// Takes the link down.
    pub fn set_down(&self, index: u32) -> anyhow::Result<()> {
        let op = format!("set ifindex {index} down");
        self.request(
            &op,
            Rtm::Setlink,
            NlmF::empty(),
            flag_msg(index, Iff::UP, false)?,
        )
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, index: u32, mtu: u32) -> anyhow::Result<()> {
        self.setlink(
            &format!("set mtu {mtu} on ifindex {index}"),
            index,
            vec![attr(Ifla::Mtu, mtu)?],
        )
    }

    /// Sets the MAC address.
    pub fn set_mac(&self, index: u32, mac: [u8; 6]) -> anyhow::Result<()> {
        let op = format!("set mac {} on ifindex {index}", mac_string(&mac));
        self.setlink(&op, index, vec![attr(Ifla::Address, mac)?])
    }

    /// Enslaves the link to `master` (a bridge, a VRF, a bond).
    pub fn set_master(&self, index: u32, master: u32) -> anyhow::Result<()> {
        let op = format!("set master ifindex {master} on ifindex {index}");
        self.setlink(&op, index, vec![attr(Ifla::Master, master)?])
    }

    /// Releases the link from its master.
    pub fn set_nomaster(&self, index: u32) -> anyhow::Result<()> {
        self.setlink(
            &format!("remove master of ifindex {index}"),
            index,
            vec![attr(Ifla::Master, 0u32)?],
        )
    }

    /// Renames the link (it must be down).
    pub fn set_name(&self, index: u32, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            super::kinds::valid_ifname(name),
            "invalid interface name {name:?}"
        );
        self.setlink(
            &format!("rename ifindex {index} to {name}"),
            index,
            vec![attr(Ifla::Ifname, name)?],
        )
    }

    /// Turns promiscuous mode on or off.
    pub fn set_promisc(&self, index: u32, on: bool) -> anyhow::Result<()> {
        let op = format!("set promisc {} on ifindex {index}", on_off(on));
        self.request(
            &op,
            Rtm::Setlink,
            NlmF::empty(),
            flag_msg(index, Iff::PROMISC, on)?,
        )
    }

    /// Turns all-multicast mode on or off.
    pub fn set_allmulti(&self, index: u32, on: bool) -> anyhow::Result<()> {
        let op = format!("set allmulticast {} on ifindex {index}", on_off(on));
        self.request(
            &op,
            Rtm::Setlink,
            NlmF::empty(),
            flag_msg(index, Iff::ALLMULTI, on)?,
        )
    }

    /// Sets the transmit queue length.
    pub fn set_txqlen(&self, index: u32, qlen: u32) -> anyhow::Result<()> {
        self.setlink(
            &format!("set txqlen {qlen} on ifindex {index}"),
            index,
            vec![attr(Ifla::Txqlen, qlen)?],
        )
    }

    /// Sets the alias (`ip link set .. alias`); an empty string removes it.
    pub fn set_alias(&self, index: u32, alias: &str) -> anyhow::Result<()> {
        // An empty IFLA_IFALIAS (length 0, no NUL) is how the kernel is told to drop it.
        let a = if alias.is_empty() {
            attr(Ifla::Ifalias, &[][..])?
        } else {
            attr(Ifla::Ifalias, alias)?
        };
        self.setlink(
            &format!("set alias {alias:?} on ifindex {index}"),
            index,
            vec![a],
        )
    }

    /// Moves the link into `ns` (it gets a new ifindex there only on a clash).
    pub fn move_to_netns(&self, index: u32, ns: &Netns) -> anyhow::Result<()> {
        let op = format!("move ifindex {index} to netns {}", ns.path().display());
        self.setlink(&op, index, vec![attr(Ifla::NetNsFd, ns.raw_fd() as u32)?])
    }

    /// Deletes the link (for a veth, both ends go).
    pub fn delete_link(&self, index: u32) -> anyhow::Result<()> {
        self.request(
            &format!("delete ifindex {index}"),
            Rtm::Dellink,
            NlmF::empty(),
            msg(index).build()?,
        )
    }

    /// Creates a link; fails with EEXIST (see [`super::is_exists`]) if the name is taken.
    pub fn create_link(&self, spec: &LinkSpec) -> anyhow::Result<()> {
        let op = format!("create {} link {}", spec.kind.name(), spec.name);
        self.request(&op, Rtm::Newlink, create_flags(), newlink_payload(spec)?)
    }

    /// Creates a veth pair `name` <-> `peer`, both ends with `mtu` (0: kernel default), the
    /// peer created straight inside `peer_ns` when given.
    pub fn create_veth(
        &self,
        name: &str,
        peer: &str,
        mtu: u32,
        mac: Option<[u8; 6]>,
        peer_mac: Option<[u8; 6]>,
        peer_ns: Option<&Netns>,
    ) -> anyhow::Result<()> {
        let mtu = (mtu != 0).then_some(mtu);
        let kind = LinkKind::Veth {
            peer_name: peer.to_string(),
            peer_mtu: mtu,
            peer_mac,
            peer_ns_fd: peer_ns.map(Netns::raw_fd),
        };
        let spec = LinkSpec {
            mtu,
            mac,
            ..LinkSpec::new(name, kind)
        };
        let op = format!("create veth {name} <-> {peer}");
        self.request(&op, Rtm::Newlink, create_flags(), newlink_payload(&spec)?)
    }

    /// Sets bridge port options on a bridge member; options left `None` are not touched.
    pub fn set_bridge_port(&self, index: u32, opts: &BridgePortOpts) -> anyhow::Result<()> {
        let mut port = Vec::new();
        let mut what = Vec::new();
        if let Some(on) = opts.hairpin {
            port.push(attr(IFLA_BRPORT_MODE, u8::from(on))?);
            what.push(format!("hairpin {}", on_off(on)));
        }
        if let Some(on) = opts.isolated {
            port.push(attr(IFLA_BRPORT_ISOLATED, u8::from(on))?);
            what.push(format!("isolated {}", on_off(on)));
        }
        if port.is_empty() {
            return Ok(());
        }
        // The bridge reads an IFLA_PROTINFO *without* NLA_F_NESTED as a bare u8 STP port
        // state (old RSTP ABI), so the flag is required here.
        let protinfo = nest(Ifla::from(libc::IFLA_PROTINFO | NLA_F_NESTED), port)?;
        let m = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::from(AF_BRIDGE))
            .ifi_index(index as i32)
            .rtattrs([protinfo].into_iter().collect())
            .build()?;
        let op = format!("set bridge port {} for ifindex {index}", what.join(", "));
        self.request(&op, Rtm::Setlink, NlmF::empty(), m)
    }

    /// The bridge port options of `index`, `None` if it is not a bridge port.
    pub fn bridge_port(&self, index: u32) -> anyhow::Result<Option<BridgePortOpts>> {
        // The AF_BRIDGE link dump lists bridge ports with their IFLA_PROTINFO; with strict
        // checking it takes no ifindex filter, so filter here.
        let req = || {
            Ok(IfinfomsgBuilder::default()
                .ifi_family(RtAddrFamily::from(AF_BRIDGE))
                .build()?)
        };
        let ports = self.dump("dump bridge ports", Rtm::Getlink, req, parse_bridge_port)?;
        Ok(ports.into_iter().find(|(i, _)| *i == index).map(|(_, o)| o))
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Maps "no such device" answers of a lookup to `Ok(None)`.
fn none_if_missing<T>(r: anyhow::Result<Option<T>>) -> anyhow::Result<Option<T>> {
    match r {
        Err(e)
            if e.downcast_ref::<NlError>()
                .is_some_and(|n| n.errno == libc::ENODEV) =>
        {
            Ok(None)
        }
        r => r,
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
