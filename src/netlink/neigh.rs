//! Neighbour (ARP/NDP) entries: add a static one, delete, list. Used where the reference
//! pre-populates neighbours (e.g. a permanent entry for a gateway MAC).

use super::attr::{attr, find, ip_attr, ip_of, mac_of, mac_string, parse};
use super::{Family, Handle};
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Nda, Ntf, Nud, RtAddrFamily, Rtm, Rtn};
use neli::rtnl::{Ndmsg, NdmsgBuilder};
use std::net::IpAddr;

/// One neighbour table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// ifindex.
    pub index: u32,
    /// Protocol address.
    pub ip: IpAddr,
    /// Link-layer address, if resolved.
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` state bits.
    pub state: u16,
}

impl Neighbour {
    /// A static entry that never expires.
    pub fn is_permanent(&self) -> bool {
        self.state & libc::NUD_PERMANENT != 0
    }
}

fn neigh_msg(index: u32, ip: IpAddr, mac: Option<[u8; 6]>, state: Nud) -> anyhow::Result<Ndmsg> {
    let mut attrs = vec![ip_attr(Nda::Dst, ip)?];
    if let Some(mac) = mac {
        attrs.push(attr(Nda::Lladdr, mac)?);
    }
    Ok(NdmsgBuilder::default()
        .ndm_family(Family::of(&ip).rt())
        .ndm_index(index as i32)
        .ndm_state(state)
        .ndm_flags(Ntf::empty())
        .ndm_type(Rtn::Unspec)
        .rtattrs(attrs.into_iter().collect())
        .build()?)
}

fn parse_neigh(b: &[u8]) -> anyhow::Result<Option<Neighbour>> {
    let m: Ndmsg = parse(b)?;
    let Some(ip) = find(m.rtattrs(), libc::NDA_DST).and_then(ip_of) else {
        return Ok(None);
    };
    Ok(Some(Neighbour {
        index: *m.ndm_index() as u32,
        ip,
        mac: find(m.rtattrs(), libc::NDA_LLADDR).and_then(mac_of),
        state: m.ndm_state().bits(),
    }))
}

impl Handle {
    /// Adds an entry `ip -> mac` on the link, permanent or reachable (`CREATE|EXCL`).
    pub fn add_neigh(
        &self,
        index: u32,
        ip: IpAddr,
        mac: [u8; 6],
        permanent: bool,
    ) -> anyhow::Result<()> {
        let state = if permanent {
            Nud::PERMANENT
        } else {
            Nud::REACHABLE
        };
        let op = format!(
            "add neighbour {ip} lladdr {} on ifindex {index}",
            mac_string(&mac)
        );
        self.request(
            &op,
            Rtm::Newneigh,
            NlmF::CREATE | NlmF::EXCL,
            neigh_msg(index, ip, Some(mac), state)?,
        )
    }

    /// Deletes the entry for `ip` on the link.
    pub fn del_neigh(&self, index: u32, ip: IpAddr) -> anyhow::Result<()> {
        let op = format!("delete neighbour {ip} on ifindex {index}");
        self.request(
            &op,
            Rtm::Delneigh,
            NlmF::empty(),
            neigh_msg(index, ip, None, Nud::NONE)?,
        )
    }

    /// IPv4 and IPv6 neighbours, of one link if given (filtered by the kernel).
    pub fn neighbours(&self, index: Option<u32>) -> anyhow::Result<Vec<Neighbour>> {
        // A strict neighbour dump wants a zero ndm_ifindex; the filter goes in NDA_IFINDEX.
        let req = || {
            let filter = match index {
                Some(i) => vec![attr(Nda::Ifindex, i)?],
                None => vec![],
            };
            Ok(NdmsgBuilder::default()
                .ndm_family(RtAddrFamily::Unspecified)
                .ndm_index(0)
                .ndm_state(Nud::NONE)
                .ndm_type(Rtn::Unspec)
                .rtattrs(filter.into_iter().collect())
                .build()?)
        };
        let op = index.map_or("list neighbours".to_string(), |i| {
            format!("list neighbours of ifindex {i}")
        });
        let wanted = |n: &Neighbour| index.is_none_or(|i| n.index == i);
        self.dump(&op, Rtm::Getneigh, req, |b| {
            Ok(parse_neigh(b)?.filter(wanted))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::oracle::ip;
    use crate::netlink::{is_exists, is_not_found};
    use crate::testutil::fresh_netns;

    #[test]
    fn neighbours_v4_and_v6() {
        let Some(_ns) = fresh_netns("neighbours_v4_and_v6") else {
            return;
        };
        let h = Handle::new().unwrap();
        h.create_veth("nb0", "nb1", 0, None, None, None).unwrap();
        let i = h.link_by_name("nb0").unwrap().unwrap().index;
        h.set_up(i).unwrap();
        let mac = [0x02, 0, 0, 0, 0, 0x99];
        let v4: IpAddr = "10.9.0.9".parse().unwrap();
        let v6: IpAddr = "fd00:9::9".parse().unwrap();
        h.add_neigh(i, v4, mac, true).unwrap();
        h.add_neigh(i, v6, mac, false).unwrap();
        assert!(is_exists(&h.add_neigh(i, v4, mac, true).unwrap_err()));

        let got = h.neighbours(Some(i)).unwrap();
        let n4 = got.iter().find(|n| n.ip == v4).expect("v4 entry");
        assert_eq!((n4.index, n4.mac), (i, Some(mac)));
        assert!(n4.is_permanent());
        let n6 = got.iter().find(|n| n.ip == v6).expect("v6 entry");
        assert_eq!(n6.mac, Some(mac));
        assert!(got.iter().all(|n| n.index == i));

        let j = ip(&["neigh", "show", "dev", "nb0"]);
        let j4 = j
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["dst"] == "10.9.0.9")
            .expect("ip sees v4");
        assert_eq!(
            (&j4["lladdr"], &j4["state"][0]),
            (&"02:00:00:00:00:99".into(), &"PERMANENT".into())
        );
        assert!(
            j.as_array()
                .unwrap()
                .iter()
                .any(|n| n["dst"] == "fd00:9::9")
        );

        h.del_neigh(i, v4).unwrap();
        h.del_neigh(i, v6).unwrap();
        assert!(
            h.neighbours(Some(i))
                .unwrap()
                .iter()
                .all(|n| n.ip != v4 && n.ip != v6)
        );
        assert!(is_not_found(&h.del_neigh(i, v4).unwrap_err()));
    }
}
