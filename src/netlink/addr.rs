//! Interface addresses: add (with the IPv4 broadcast and optional no-DAD, as the reference's
//! `netlink.AddrAdd` does), delete, list. `IFA_F_NODAD` goes in the u32 `IFA_FLAGS`
//! attribute: `ifa_flags` in the header is only 8 bits wide.

use super::attr::{attr, find, ip_attr, ip_of, parse, u32_of};
use super::{Family, Handle};
use anyhow::Context;
use ipnet::IpNet;
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifa, IfaF, RtAddrFamily, RtScope, Rtm};
use neli::rtnl::{Ifaddrmsg, IfaddrmsgBuilder};

/// One address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// ifindex.
    pub index: u32,
    /// Address with its prefix length (`10.1.2.3/24`).
    pub addr: IpNet,
    /// Scope (`RT_SCOPE_*`: 0 universe, 253 link, 254 host).
    pub scope: u8,
    /// `IFA_F_*` flags (permanent, nodad, tentative, ...).
    pub flags: u32,
}

/// The kernel's address flags that callers look at.
pub mod flags {
    /// No duplicate address detection.
    pub const NODAD: u32 = libc::IFA_F_NODAD;
    /// DAD has not finished yet.
    pub const TENTATIVE: u32 = libc::IFA_F_TENTATIVE;
    /// DAD failed.
    pub const DADFAILED: u32 = libc::IFA_F_DADFAILED;
    /// Configured, not autoconf.
    pub const PERMANENT: u32 = libc::IFA_F_PERMANENT;
}

fn family(net: &IpNet) -> RtAddrFamily {
    Family::of_net(net).rt()
}

fn addr_msg(
    index: u32,
    addr: IpNet,
    extra: Vec<super::attr::Attr<Ifa>>,
) -> anyhow::Result<Ifaddrmsg> {
    let scope = if addr.addr().is_loopback() {
        RtScope::Host
    } else {
        RtScope::Universe
    };
    let mut attrs = vec![
        ip_attr(Ifa::Local, addr.addr())?,
        ip_attr(Ifa::Address, addr.addr())?,
    ];
    attrs.extend(extra);
    Ok(IfaddrmsgBuilder::default()
        .ifa_family(family(&addr))
        .ifa_prefixlen(addr.prefix_len())
        .ifa_scope(scope)
        .ifa_index(index)
        .rtattrs(attrs.into_iter().collect())
        .build()?)
}

fn parse_address(b: &[u8]) -> anyhow::Result<Option<Address>> {
    let m: Ifaddrmsg = parse(b)?;
    // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links and
    // the only one present for IPv6.
    let ip = find(m.rtattrs(), libc::IFA_LOCAL)
        .or_else(|| find(m.rtattrs(), libc::IFA_ADDRESS))
        .and_then(ip_of);
    let Some(ip) = ip else { return Ok(None) };
    let addr = IpNet::new(ip, *m.ifa_prefixlen()).context("address prefix length")?;
    let flags = find(m.rtattrs(), libc::IFA_FLAGS)
        .and_then(u32_of)
        .unwrap_or(u32::from(m.ifa_flags().bits()));
    Ok(Some(Address {
        index: *m.ifa_index(),
        addr,
        scope: u8::from(*m.ifa_scope()),
        flags,
    }))
}

impl Handle {
    /// Adds `addr` to the link (`CREATE|EXCL`: EEXIST if it is already there). IPv4 gets the
    /// subnet broadcast below /31; `nodad` skips IPv6 duplicate address detection.
    pub fn add_address(&self, index: u32, addr: IpNet, nodad: bool) -> anyhow::Result<()> {
        let mut extra = Vec::new();
        if let IpNet::V4(v4) = addr
            && v4.prefix_len() < 31
        {
            extra.push(attr(Ifa::Broadcast, v4.broadcast().octets())?);
        }
        if nodad {
            extra.push(attr(Ifa::Flags, flags::NODAD)?);
        }
        let m = addr_msg(index, addr, extra)?;
        self.request(
            &format!("add address {addr} to ifindex {index}"),
            Rtm::Newaddr,
            NlmF::CREATE | NlmF::EXCL,
            m,
        )
    }

    /// Removes `addr` from the link.
    pub fn del_address(&self, index: u32, addr: IpNet) -> anyhow::Result<()> {
        let m = addr_msg(index, addr, vec![])?;
        self.request(
            &format!("delete address {addr} from ifindex {index}"),
            Rtm::Deladdr,
            NlmF::empty(),
            m,
        )
    }

    /// Addresses, optionally only of one link and/or one family (filtered by the kernel).
    pub fn addresses(
        &self,
        index: Option<u32>,
        family: Option<Family>,
    ) -> anyhow::Result<Vec<Address>> {
        let req = || {
            Ok(IfaddrmsgBuilder::default()
                .ifa_family(family.map_or(RtAddrFamily::Unspecified, Family::rt))
                .ifa_prefixlen(0)
                .ifa_flags(IfaF::empty())
                .ifa_scope(RtScope::Universe)
                .ifa_index(index.unwrap_or(0))
                .build()?)
        };
        let op = match index {
            Some(i) => format!("list addresses of ifindex {i}"),
            None => "list addresses".to_string(),
        };
        let wanted = |a: &Address| {
            index.is_none_or(|i| a.index == i)
                && family.is_none_or(|f| Family::of_net(&a.addr) == f)
        };
        self.dump(&op, Rtm::Getaddr, req, |b| {
            Ok(parse_address(b)?.filter(wanted))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::attr::to_bytes;
    use crate::netlink::oracle::ip;
    use crate::netlink::{is_exists, is_not_found};
    use crate::testutil::fresh_netns;

    #[test]
    fn v4_message_has_local_address_and_broadcast() {
        let b = [attr(Ifa::Broadcast, [10u8, 1, 2, 255]).unwrap()];
        let m = addr_msg(3, "10.1.2.3/24".parse().unwrap(), b.into()).unwrap();
        let expected = [
            2, 24, 0, 0, 3, 0, 0,
            0, // ifaddrmsg: AF_INET, /24, flags 0, scope universe, index 3
            8, 0, 2, 0, 10, 1, 2, 3, // IFA_LOCAL
            8, 0, 1, 0, 10, 1, 2, 3, // IFA_ADDRESS
            8, 0, 4, 0, 10, 1, 2, 255, // IFA_BROADCAST
        ];
        assert_eq!(to_bytes(&m).unwrap(), expected);
        let lo = addr_msg(1, "127.0.0.2/8".parse().unwrap(), vec![]).unwrap();
        assert_eq!(to_bytes(&lo).unwrap()[3], libc::RT_SCOPE_HOST);
    }

    #[test]
    fn add_list_delete_v4_and_v6() {
        let Some(_ns) = fresh_netns("add_list_delete_v4_and_v6") else {
            return;
        };
        let h = Handle::new().unwrap();
        h.create_veth("ad0", "ad1", 0, None, None, None).unwrap();
        let i = h.link_by_name("ad0").unwrap().unwrap().index;
        h.set_up(i).unwrap();
        let v4: IpNet = "10.1.2.3/24".parse().unwrap();
        let v6: IpNet = "fd00:1::5/64".parse().unwrap();
        h.add_address(i, v4, false).unwrap();
        h.add_address(i, v6, true).unwrap();

        let got = h.addresses(Some(i), None).unwrap();
        let a4 = got.iter().find(|a| a.addr == v4).expect("v4 listed");
        assert_eq!((a4.index, a4.scope), (i, 0));
        let a6 = got.iter().find(|a| a.addr == v6).expect("v6 listed");
        assert!(
            a6.flags & flags::NODAD != 0 && a6.flags & flags::TENTATIVE == 0,
            "{:#x}",
            a6.flags
        );
        assert!(got.iter().all(|a| a.index == i));
        let only6 = h.addresses(Some(i), Some(Family::V6)).unwrap();
        assert!(
            only6.iter().all(|a| a.addr.addr().is_ipv6()) && only6.iter().any(|a| a.addr == v6)
        );
        assert!(
            h.addresses(None, Some(Family::V4))
                .unwrap()
                .iter()
                .all(|a| a.addr.addr().is_ipv4())
        );

        let j = &ip(&["addr", "show", "dev", "ad0"])[0]["addr_info"];
        let j4 = j
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["local"] == "10.1.2.3")
            .expect("ip sees v4");
        assert_eq!(
            (&j4["prefixlen"], &j4["broadcast"]),
            (&24.into(), &"10.1.2.255".into())
        );
        let j6 = j
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["local"] == "fd00:1::5")
            .expect("ip sees v6");
        assert_eq!(j6["nodad"], true);
        assert!(j6.get("tentative").is_none());

        assert!(is_exists(&h.add_address(i, v4, false).unwrap_err()));
        h.del_address(i, v4).unwrap();
        h.del_address(i, v6).unwrap();
        assert!(
            h.addresses(Some(i), None)
                .unwrap()
                .iter()
                .all(|a| a.addr != v4 && a.addr != v6)
        );
        let e = h.del_address(i, v4).unwrap_err();
        assert!(is_not_found(&e), "{e:#}");
    }
}
