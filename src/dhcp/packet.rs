//! DHCPv4 messages on the `dhcproto` codec: what the client sends (DISCOVER, REQUEST in its
//! RFC 2131 §4.3.2 variants, RELEASE) and what it takes from a server's reply (OFFER, ACK,
//! NAK), plus the IPv4/UDP framing a packet socket needs before the interface has an address.
//! Mirrors the reference daemon's use of `nclient4`: client id option 61 with type byte 0,
//! the parameter request list (option 55) and the `provide` options on every message.

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::{Decodable, Encodable};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// What stays the same in every message of one lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Option 61 payload without its type byte: `<containerID>/<network>/<ifname>`.
    pub client_id: Vec<u8>,
    /// Hardware address of the interface (chaddr).
    pub mac: [u8; 6],
    /// Option codes for the parameter request list (option 55).
    pub request: Vec<u8>,
    /// Options sent as they are (`provide`): code and value.
    pub provide: Vec<(u8, Vec<u8>)>,
    /// Set the BOOTP broadcast flag (the daemon's `-broadcast`).
    pub broadcast: bool,
}

/// The message kinds a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// DISCOVER, optionally asking for an address (option 50).
    Discover { requested: Option<Ipv4Addr> },
    /// REQUEST while selecting (requested + server id), or renewing/rebinding (ciaddr only).
    Request {
        /// Option 50.
        requested: Option<Ipv4Addr>,
        /// Option 54.
        server: Option<Ipv4Addr>,
        /// ciaddr (RENEWING and REBINDING).
        ciaddr: Option<Ipv4Addr>,
    },
    /// RELEASE of `ciaddr` to `server`.
    Release { ciaddr: Ipv4Addr, server: Ipv4Addr },
}

/// What the client keeps from an OFFER or ACK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Transaction id it answers.
    pub xid: u32,
    /// OFFER, ACK or NAK.
    pub kind: ReplyKind,
    /// The address offered or acknowledged.
    pub yiaddr: Ipv4Addr,
    /// Option 54.
    pub server: Option<Ipv4Addr>,
    /// Option 1.
    pub mask: Option<Ipv4Addr>,
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 33: (destination host, router).
    pub static_routes: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Option 121: (destination, router).
    pub classless: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 51 (seconds).
    pub lease_secs: Option<u32>,
    /// Option 58.
    pub t1_secs: Option<u32>,
    /// Option 59.
    pub t2_secs: Option<u32>,
}

/// The server message types the client acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyKind {
    /// DHCPOFFER.
    Offer,
    /// DHCPACK.
    Ack,
    /// DHCPNAK.
    Nak,
}

/// Encodes one client message.
pub fn build(p: &Params, what: Outgoing, xid: u32) -> Vec<u8> {
    let (ciaddr, kind) = match what {
        Outgoing::Discover { .. } => (None, MessageType::Discover),
        Outgoing::Request { ciaddr, .. } => (ciaddr, MessageType::Request),
        Outgoing::Release { ciaddr, .. } => (Some(ciaddr), MessageType::Release),
    };
    let unspec = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(
        xid,
        ciaddr.unwrap_or(unspec),
        unspec,
        unspec,
        unspec,
        &p.mac,
    );
    m.set_opcode(Opcode::BootRequest);
    // RFC 2131 §4.1: the broadcast bit only while the client has no address.
    if p.broadcast && ciaddr.is_none() {
        m.set_flags(Flags::default().set_broadcast());
    }
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    let mut cid = vec![0u8];
    cid.extend_from_slice(&p.client_id[..p.client_id.len().min(254)]);
    o.insert(DhcpOption::ClientIdentifier(cid));
    match what {
        Outgoing::Discover { requested } => {
            if let Some(a) = requested {
                o.insert(DhcpOption::RequestedIpAddress(a));
            }
        }
        Outgoing::Request {
            requested, server, ..
        } => {
            if let Some(a) = requested {
                o.insert(DhcpOption::RequestedIpAddress(a));
            }
            if let Some(s) = server {
                o.insert(DhcpOption::ServerIdentifier(s));
            }
        }
        Outgoing::Release { server, .. } => {
            o.insert(DhcpOption::ServerIdentifier(server));
        }
    }
    if !matches!(what, Outgoing::Release { .. }) {
        let prl = p.request.iter().map(|c| OptionCode::from(*c)).collect();
        o.insert(DhcpOption::ParameterRequestList(prl));
    }
    for (code, value) in &p.provide {
        o.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(*code),
            value.clone(),
        )));
    }
    m.to_vec()
        .expect("a DHCP message with bounded options always encodes")
}

/// Decodes a server reply meant for `mac`; anything else (a request, another client's
/// reply, garbage) is `None`.
pub fn parse(bytes: &[u8], mac: &[u8; 6]) -> Option<Reply> {
    let m = Message::from_bytes(bytes).ok()?;
    if m.opcode() != Opcode::BootReply || m.chaddr().get(..6)? != mac {
        return None;
    }
    let o = m.opts();
    let kind = match o.msg_type()? {
        MessageType::Offer => ReplyKind::Offer,
        MessageType::Ack => ReplyKind::Ack,
        MessageType::Nak => ReplyKind::Nak,
        _ => return None,
    };
    let mut r = Reply {
        xid: m.xid(),
        kind,
        yiaddr: m.yiaddr(),
        server: None,
        mask: None,
        routers: Vec::new(),
        static_routes: Vec::new(),
        classless: Vec::new(),
        dns: Vec::new(),
        lease_secs: None,
        t1_secs: None,
        t2_secs: None,
    };
    for (_, opt) in o.iter() {
        match opt {
            DhcpOption::ServerIdentifier(a) => r.server = Some(*a),
            DhcpOption::SubnetMask(a) => r.mask = Some(*a),
            DhcpOption::Router(v) => r.routers = v.clone(),
            DhcpOption::StaticRoutingTable(v) => r.static_routes = v.clone(),
            DhcpOption::ClasslessStaticRoute(v) => r.classless = v.clone(),
            DhcpOption::DomainNameServer(v) => r.dns = v.clone(),
            DhcpOption::AddressLeaseTime(s) => r.lease_secs = Some(*s),
            DhcpOption::Renewal(s) => r.t1_secs = Some(*s),
            DhcpOption::Rebinding(s) => r.t2_secs = Some(*s),
            _ => {}
        }
    }
    Some(r)
}

/// Client and server UDP ports.
pub const CLIENT_PORT: u16 = 68;
/// See [`CLIENT_PORT`].
pub const SERVER_PORT: u16 = 67;

/// Wraps a DHCP payload in IPv4 + UDP headers (for a `SOCK_DGRAM` packet socket).
pub fn frame(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0x10]); // version 4, IHL 5; TOS low delay as dhclient
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]); // id, frag, TTL, UDP, checksum
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ck = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    udp.extend_from_slice(&SERVER_PORT.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = [
        &src.octets()[..],
        &dst.octets()[..],
        &[0, 17],
        &(udp_len as u16).to_be_bytes(),
    ]
    .concat();
    let ck = match checksum(&[&pseudo, &udp]) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&ck.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

/// The UDP payload of an IPv4 datagram to the client port, or `None`.
pub fn unframe(ip: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ip.get(9)? != &17 || ihl < 20 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dport != CLIENT_PORT || len < 8 {
        return None;
    }
    udp.get(8..len.min(udp.len()))
}

/// The Internet checksum over the concatenation of `parts` (each of even length but the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for chunk in part.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
