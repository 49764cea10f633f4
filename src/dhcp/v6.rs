//! DHCPv6 (RFC 8415) IA_NA leases, which the reference lacks (plugins#720): messages on the
//! `dhcproto` codec, a UDP socket on port 546 bound to the container's interface (opened in
//! its netns; link-local multicast to ff02::1:2 needs no packet socket), and the exchanges:
//! SOLICIT/ADVERTISE/REQUEST/REPLY, RENEW (at T1, to the server), REBIND (at T2, any server),
//! RELEASE. The client DUID is DUID-LL of the interface's MAC; the IAID is a hash of the
//! reference's client id, so two attachments never share an IA. Retransmission: each send
//! waits the back-off (1 s doubling to `resend_max`, at most `timeout`), one exchange gives up
//! after `resend_timeout`.

use super::client::{Ms, Timing};
use anyhow::{Context, Result, bail};
use dhcproto::v6::{self, DhcpOption, IAAddr, IANA, Message, MessageType, ORO, OptionCode};
use dhcproto::{Decodable, Encodable};
use serde::{Deserialize, Serialize};
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

/// A bound DHCPv6 lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease6 {
    /// The IA_NA address.
    pub addr: Ipv6Addr,
    /// The server's DUID (for RENEW and RELEASE).
    pub server_id: Vec<u8>,
    /// T1 and T2 (seconds; 0 = the client picks: 0.5 and 0.8 of the preferred lifetime).
    pub t1: u32,
    /// See `t1`.
    pub t2: u32,
    /// Preferred and valid lifetimes (seconds).
    pub preferred: u32,
    /// See `preferred`.
    pub valid: u32,
    /// When granted (ms since the epoch).
    pub start: Ms,
}

impl Lease6 {
    /// T1 as an absolute time.
    pub fn t1_at(&self) -> Ms {
        let s = if self.t1 > 0 {
            self.t1
        } else {
            self.preferred / 2
        };
        self.start + Ms::from(s.max(1)) * 1000
    }
    /// T2 as an absolute time.
    pub fn t2_at(&self) -> Ms {
        let s = if self.t2 > 0 {
            self.t2
        } else {
            self.preferred / 5 * 4
        };
        self.start + Ms::from(s.max(1)) * 1000
    }
    /// Expiry (valid lifetime) as an absolute time.
    pub fn expiry(&self) -> Ms {
        self.start + Ms::from(self.valid) * 1000
    }
}

/// Who the client is.
#[derive(Debug, Clone)]
pub struct Ident {
    /// DUID-LL.
    pub duid: Vec<u8>,
    /// IA_NA identifier.
    pub iaid: u32,
}

impl Ident {
    /// DUID-LL of `mac`, IAID from `client_id`.
    pub fn new(mac: [u8; 6], client_id: &str) -> Ident {
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&mac);
        let iaid = client_id.bytes().fold(2_166_136_261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16_777_619)
        });
        Ident { duid, iaid }
    }
}

/// Encodes a client message; `lease` fills the server id and the IA address when given.
pub fn build(
    kind: MessageType,
    xid: u32,
    id: &Ident,
    server: Option<&[u8]>,
    addr: Option<Ipv6Addr>,
) -> Vec<u8> {
    let mut m = Message::new(kind);
    m.set_xid_num(xid & 0x00ff_ffff);
    let o = m.opts_mut();
    o.insert(DhcpOption::ClientId(id.duid.clone()));
    if let Some(s) = server {
        o.insert(DhcpOption::ServerId(s.to_vec()));
    }
    o.insert(DhcpOption::ElapsedTime(0));
    let mut ia_opts = v6::DhcpOptions::new();
    if let Some(a) = addr {
        ia_opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: a,
            preferred_life: 0,
            valid_life: 0,
            opts: v6::DhcpOptions::new(),
        }));
    }
    o.insert(DhcpOption::IANA(IANA {
        id: id.iaid,
        t1: 0,
        t2: 0,
        opts: ia_opts,
    }));
    if kind != MessageType::Release {
        o.insert(DhcpOption::ORO(ORO {
            opts: vec![OptionCode::DomainNameServers],
        }));
    }
    m.to_vec().expect("a bounded DHCPv6 message always encodes")
}

/// What a server said: ADVERTISE or REPLY, for our xid and DUID, with an address or a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// ADVERTISE or REPLY.
    pub kind: MessageType,
    /// Server DUID.
    pub server_id: Vec<u8>,
    /// The lease offered or granted, when the IA_NA holds an address.
    pub lease: Option<Lease6>,
}

/// Decodes a server message for `xid` and our DUID.
pub fn parse(bytes: &[u8], xid: u32, id: &Ident, now: Ms) -> Option<Answer> {
    let m = Message::from_bytes(bytes).ok()?;
    let kind = m.msg_type();
    if !matches!(kind, MessageType::Advertise | MessageType::Reply)
        || m.xid_num() != xid & 0x00ff_ffff
    {
        return None;
    }
    let o = m.opts();
    match o.get(OptionCode::ClientId) {
        Some(DhcpOption::ClientId(d)) if *d == id.duid => {}
        _ => return None,
    }
    let Some(DhcpOption::ServerId(server_id)) = o.get(OptionCode::ServerId) else {
        return None;
    };
    let lease = o.iter().find_map(|opt| match opt {
        DhcpOption::IANA(ia) if ia.id == id.iaid => ia.opts.iter().find_map(|x| match x {
            DhcpOption::IAAddr(a) if a.valid_life > 0 => Some(Lease6 {
                addr: a.addr,
                server_id: server_id.clone(),
                t1: ia.t1,
                t2: ia.t2,
                preferred: a.preferred_life,
                valid: a.valid_life,
                start: now,
            }),
            _ => None,
        }),
        _ => None,
    });
    Some(Answer {
        kind,
        server_id: server_id.clone(),
        lease,
    })
}

/// No server answered an exchange within its limits.
#[derive(Debug)]
pub struct NoAnswer(pub String);

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoAnswer {}

/// The DHCPv6 client socket: UDP [::]:546 bound to the interface, made in the container netns.
pub struct Sock6 {
    sock: UdpSocket,
    ifindex: u32,
}

impl Sock6 {
    /// Opens it inside `ns` on interface `ifname` (index `ifindex` there).
    pub fn open(ns: &crate::netns::Netns, ifname: &str, ifindex: u32) -> Result<Sock6> {
        let sock = ns.run(|| -> Result<UdpSocket> {
            let s = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet6,
                nix::sys::socket::SockType::Datagram,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::ReuseAddr, &true)?;
            nix::sys::socket::setsockopt(
                &s,
                nix::sys::socket::sockopt::BindToDevice,
                &std::ffi::OsString::from(ifname),
            )?;
            let addr = nix::sys::socket::SockaddrIn6::from(SocketAddrV6::new(
                Ipv6Addr::UNSPECIFIED,
                546,
                0,
                0,
            ));
            nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&s), &addr)?;
            Ok(UdpSocket::from(s))
        })??;
        Ok(Sock6 { sock, ifindex })
    }

    fn send(&self, msg: &[u8]) -> Result<()> {
        let to = SocketAddrV6::new("ff02::1:2".parse().expect("valid"), 547, 0, self.ifindex);
        self.sock.send_to(msg, to).context("send DHCPv6 message")?;
        Ok(())
    }

    fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .ok()?;
        let mut buf = vec![0u8; 2048];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Sends `build()` until an answer of `want` arrives (retransmitting with back-off) or
    /// `timing.resend_timeout` passes; `stop` is polled between waits.
    pub fn exchange(
        &self,
        timing: &Timing,
        want: MessageType,
        mut build: impl FnMut(u32) -> Vec<u8>,
        id: &Ident,
        xid: u32,
        stop: &dyn Fn() -> bool,
    ) -> Result<Answer> {
        let start = Instant::now();
        let limit = Duration::from_millis(timing.resend_timeout);
        let mut backoff = 1000u64;
        let mut tries = 0;
        while start.elapsed() < limit {
            if let Err(e) = self.send(&build(xid)) {
                // The link was just set up and has no usable link-local address yet: try
                // again shortly rather than after a whole retransmission interval.
                log::debug!("{e:#}");
                if stop() {
                    bail!("stopped");
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            tries += 1;
            let until = Instant::now() + Duration::from_millis(backoff.min(timing.timeout.max(1)));
            while Instant::now() < until && start.elapsed() < limit {
                if stop() {
                    bail!("stopped");
                }
                let left = until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                if let Some(b) = self.recv(left)
                    && let Some(a) = parse(&b, xid, id, super::lease::now_ms())
                    && a.kind == want
                {
                    return Ok(a);
                }
            }
            backoff = (backoff * 2).min(timing.resend_max.max(1000));
        }
        Err(NoAnswer(format!(
            "no DHCPv6 {want:?} within {} ms ({tries} tries): no more tries",
            timing.resend_timeout
        ))
        .into())
    }
}

/// SOLICIT/ADVERTISE then REQUEST/REPLY.
pub fn acquire(
    s: &Sock6,
    timing: &Timing,
    id: &Ident,
    xid: u32,
    stop: &dyn Fn() -> bool,
) -> Result<Lease6> {
    let adv = s.exchange(
        timing,
        MessageType::Advertise,
        |x| build(MessageType::Solicit, x, id, None, None),
        id,
        xid,
        stop,
    )?;
    let offered = adv.lease.as_ref().map(|l| l.addr);
    let xid2 = xid.wrapping_add(1);
    let reply = s.exchange(
        timing,
        MessageType::Reply,
        |x| build(MessageType::Request, x, id, Some(&adv.server_id), offered),
        id,
        xid2,
        stop,
    )?;
    reply
        .lease
        .context("the DHCPv6 REPLY holds no address (status code in the IA)")
}

/// RENEW (to the lease's server) or REBIND (to any), returning the extended lease.
pub fn extend(
    s: &Sock6,
    timing: &Timing,
    id: &Ident,
    xid: u32,
    lease: &Lease6,
    rebind: bool,
    stop: &dyn Fn() -> bool,
) -> Result<Lease6> {
    let (kind, server) = if rebind {
        (MessageType::Rebind, None)
    } else {
        (MessageType::Renew, Some(lease.server_id.as_slice()))
    };
    let r = s.exchange(
        timing,
        MessageType::Reply,
        |x| build(kind, x, id, server, Some(lease.addr)),
        id,
        xid,
        stop,
    )?;
    r.lease
        .context("the DHCPv6 REPLY to RENEW holds no address")
}

/// RELEASE, sent once (errors only logged by the caller, as for DHCPv4).
pub fn release(s: &Sock6, id: &Ident, xid: u32, lease: &Lease6) -> Result<()> {
    s.send(&build(
        MessageType::Release,
        xid,
        id,
        Some(&lease.server_id),
        Some(lease.addr),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicit_and_reply_round_trip() {
        let id = Ident::new([2, 0, 0, 0, 0, 7], "c/lan/eth0");
        let sol = build(MessageType::Solicit, 0x123456, &id, None, None);
        let m = Message::from_bytes(&sol).unwrap();
        assert_eq!(m.msg_type(), MessageType::Solicit);
        assert_eq!(m.xid_num(), 0x123456);
        // a server's REPLY to it
        let mut r = Message::new_with_id(MessageType::Reply, m.xid());
        let mut ia = v6::DhcpOptions::new();
        ia.insert(DhcpOption::IAAddr(IAAddr {
            addr: "fd00::5".parse().unwrap(),
            preferred_life: 100,
            valid_life: 200,
            opts: v6::DhcpOptions::new(),
        }));
        r.opts_mut().insert(DhcpOption::ClientId(id.duid.clone()));
        r.opts_mut().insert(DhcpOption::ServerId(vec![0, 1, 2]));
        r.opts_mut().insert(DhcpOption::IANA(IANA {
            id: id.iaid,
            t1: 50,
            t2: 80,
            opts: ia,
        }));
        let bytes = r.to_vec().unwrap();
        let a = parse(&bytes, 0x123456, &id, 1000).unwrap();
        let l = a.lease.unwrap();
        assert_eq!(l.addr, "fd00::5".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            (l.t1_at(), l.t2_at(), l.expiry()),
            (51_000, 81_000, 201_000)
        );
        assert!(parse(&bytes, 0x123457, &id, 0).is_none(), "other xid");
        let other = Ident::new([2, 0, 0, 0, 0, 8], "c/lan/eth0");
        assert!(parse(&bytes, 0x123456, &other, 0).is_none(), "other DUID");
    }
}
