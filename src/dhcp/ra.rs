//! Is DHCPv6 offered on this link? The routers say so: a Router Advertisement with the M
//! ("managed address configuration") flag tells hosts to take addresses from DHCPv6 (RFC 4861
//! §4.2), which is how NetworkManager and systemd-networkd decide to start their DHCPv6
//! client. When `ipam.ipv6` is left unset, the daemon sends one Router Solicitation from the
//! container's interface and listens for the answer a short while: an RA with M set means a
//! DHCPv6 lease is acquired alongside the DHCPv4 one; an RA without it, or none at all, means
//! DHCPv4 only. The reference has no DHCPv6 (plugins#720).
//!
//! The first solicitation goes out of a packet socket from the unspecified address, as RFC 4861
//! §6.3.7 says while the interface has no usable address (its link-local address is tentative
//! until DAD ends, about a second after the link comes up); routers that multicast their
//! answers (radvd, the kernel) reply at once. Routers that answer by unicast to the source
//! (dnsmasq) need a real one, so a second solicitation, from the link-local address and with
//! our link-layer address in it, goes out as soon as that address is usable. Whatever RA
//! arrives first (an answer to either, to the kernel's own solicitation, or a periodic one)
//! decides.

use super::rawsock::RawSock;
use crate::netlink::addr::flags;
use crate::netlink::{Family, Handle, Link};
use crate::netns::Netns;
use anyhow::Result;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// What the first Router Advertisement said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    /// M: addresses come from DHCPv6.
    pub managed: bool,
    /// O: other configuration (DNS) comes from DHCPv6.
    pub other: bool,
}

/// `ff02::2`, all routers, and its Ethernet multicast address.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const ALL_ROUTERS_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 2];

/// Solicits on `link` (in `ns`, seen through `nl`) and waits for an advertisement: `wait`
/// in all, but at least [`ANSWER_WAIT`] after the solicitation from the link-local address,
/// and while that address is still in DAD, up to [`DAD_WAIT`] more.
pub fn probe(ns: &Netns, nl: &Handle, link: &Link, wait: Duration) -> Result<Option<Advert>> {
    let sock = RawSock::open_ra(ns, link.index)?;
    let start = Instant::now();
    sock.send_packet(&solicitation(None), ALL_ROUTERS_MAC)?;
    let mut deadline = start + wait;
    let mut from_link_local = false;
    loop {
        let now = Instant::now();
        if !from_link_local {
            match link_local(nl, link.index) {
                LinkLocal::Usable(ll) => {
                    from_link_local = true;
                    if let Some(mac) = link.mac {
                        // A lost send only costs the answer it would have brought.
                        let _ = sock.send_packet(&solicitation(Some((ll, mac))), ALL_ROUTERS_MAC);
                    }
                    deadline = deadline.max(now + ANSWER_WAIT);
                }
                LinkLocal::Tentative if now >= deadline && now < start + wait + DAD_WAIT => {
                    deadline = now + POLL;
                }
                _ => {}
            }
        }
        if now >= deadline {
            return Ok(None);
        }
        let slice = if from_link_local {
            deadline - now
        } else {
            (deadline - now).min(POLL)
        };
        if let Some((pkt, _)) = sock.recv_packet(slice.max(Duration::from_millis(1)))?
            && let Some(a) = parse_advert(&pkt)
        {
            return Ok(Some(a));
        }
    }
}

/// How long a router may take to answer a solicitation: RFC 4861's MAX_RA_DELAY_TIME (0.5 s),
/// doubled.
pub const ANSWER_WAIT: Duration = Duration::from_millis(1000);
/// The longest DAD of a fresh link-local address takes with the kernel's defaults: a random
/// delay up to `rtr_solicit_delay` (1 s), then one `RetransTimer` (1 s).
pub const DAD_WAIT: Duration = Duration::from_millis(2500);
/// How often the link-local address is looked at while it is tentative.
const POLL: Duration = Duration::from_millis(100);

/// The interface's link-local address and whether DAD is done with it.
enum LinkLocal {
    Usable(Ipv6Addr),
    Tentative,
    None,
}

fn link_local(nl: &Handle, index: u32) -> LinkLocal {
    let Ok(addrs) = nl.addresses(Some(index), Some(Family::V6)) else {
        return LinkLocal::None;
    };
    let mut found = LinkLocal::None;
    for a in addrs {
        if let std::net::IpAddr::V6(ip) = a.addr.addr()
            && ip.is_unicast_link_local()
            && a.flags & flags::DADFAILED == 0
        {
            if a.flags & flags::TENTATIVE == 0 {
                return LinkLocal::Usable(ip);
            }
            found = LinkLocal::Tentative;
        }
    }
    found
}

/// An IPv6 packet holding a Router Solicitation to `ff02::2`: from `::` with no options, or
/// from a link-local address with its link-layer address option (RFC 4861 §4.1).
pub fn solicitation(from: Option<(Ipv6Addr, [u8; 6])>) -> Vec<u8> {
    let mut icmp = vec![133u8, 0, 0, 0, 0, 0, 0, 0];
    let src = match from {
        Some((ip, mac)) => {
            icmp.extend_from_slice(&[1, 1]);
            icmp.extend_from_slice(&mac);
            ip
        }
        None => Ipv6Addr::UNSPECIFIED,
    };
    let sum = checksum(src, ALL_ROUTERS, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0, 0, icmp.len() as u8, 58, 255];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&ALL_ROUTERS.octets());
    p.extend_from_slice(&icmp);
    p
}

/// The ICMPv6 checksum over the pseudo-header and `msg`.
fn checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(40 + msg.len());
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&dst.octets());
    data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 58]);
    data.extend_from_slice(msg);
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A valid Router Advertisement (IPv6, ICMPv6 type 134 code 0, hop limit 255 as RFC 4861
/// §6.1.2 requires, from a link-local source, checksum right): its flags.
pub fn parse_advert(pkt: &[u8]) -> Option<Advert> {
    if pkt.len() < 40 + 16 || pkt[0] >> 4 != 6 || pkt[6] != 58 || pkt[7] != 255 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
    let icmp = pkt.get(40..40 + payload_len)?;
    if icmp.len() < 16 || icmp[0] != 134 || icmp[1] != 0 {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).ok()?);
    if !src.is_unicast_link_local() || checksum(src, dst, icmp) != 0 {
        return None;
    }
    Some(Advert {
        managed: icmp[5] & 0x80 != 0,
        other: icmp[5] & 0x40 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RA from fe80::1 to ff02::1 with `flags`, checksummed.
    fn advert(flags: u8) -> Vec<u8> {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        let mut icmp = vec![134, 0, 0, 0, 64, flags, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        let sum = checksum(src, dst, &icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut p = vec![0x60, 0, 0, 0, 0, icmp.len() as u8, 58, 255];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&icmp);
        p
    }

    #[test]
    fn solicitations_are_checksummed_rs_from_unspecified_or_link_local() {
        let p = solicitation(None);
        assert_eq!(p.len(), 48);
        assert_eq!((p[6], p[7], p[40]), (58, 255, 133));
        assert_eq!(checksum(Ipv6Addr::UNSPECIFIED, ALL_ROUTERS, &p[40..]), 0);
        // worked by hand: 0xff02 + 0x0002 + 8 + 58 + 0x8500, folded and inverted
        assert_eq!(&p[42..44], &[0x7b, 0xb8]);
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let p = solicitation(Some((ll, [2, 0, 0, 0, 0, 9])));
        assert_eq!((p.len(), p[5]), (56, 16));
        assert_eq!(&p[8..24], &ll.octets());
        assert_eq!(
            &p[48..56],
            &[1, 1, 2, 0, 0, 0, 0, 9],
            "source link-layer address"
        );
        assert_eq!(checksum(ll, ALL_ROUTERS, &p[40..]), 0);
    }

    #[test]
    fn adverts_give_their_flags_and_bad_ones_are_ignored() {
        let m = advert(0x80);
        assert_eq!(
            parse_advert(&m),
            Some(Advert {
                managed: true,
                other: false
            })
        );
        assert_eq!(
            parse_advert(&advert(0x40)),
            Some(Advert {
                managed: false,
                other: true
            })
        );
        let mut hop = m.clone();
        hop[7] = 64;
        assert_eq!(parse_advert(&hop), None, "hop limit below 255: off-link");
        let mut sum = m.clone();
        sum[47] ^= 1;
        assert_eq!(parse_advert(&sum), None, "bad checksum");
        let mut rs = m.clone();
        rs[40] = 133;
        assert_eq!(parse_advert(&rs), None, "not an RA");
        assert_eq!(parse_advert(&m[..50]), None, "truncated");
    }
}
