//! Deleting conntrack entries over ctnetlink (`NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`), as the reference's `utils.DeleteConntrackEntriesForDstPort`
//! does for portmap: a UDP "connection" to a host port stays pinned to its old DNAT target
//! until it expires, so the entries whose original destination port is a mapped host port are
//! deleted when the mapping changes (ADD and, beyond the reference, DEL: plugins#1190).
//!
//! One `IPCTNL_MSG_CT_DELETE` carrying a `CTA_FILTER` on protocol and original destination
//! port makes the kernel flush the matching entries itself (Linux 6.10+). Older kernels
//! refuse that message; then the entries of the family are dumped, matched here and
//! deleted one by one by their original tuple, which is what the reference does always.
//!
//! Acts on the netns of the calling thread.

use super::IpFamily;
use super::nftables::wire::{
    Attrs, NLA_F_NESTED, Reply, encode_msg, find, flags, parse_attrs, parse_replies,
};
use anyhow::{Context, Result, bail};
use neli::consts::socket::{Msg, NlFamily};
use neli::socket::NlSocket;
use neli::utils::Groups;
use std::io::ErrorKind;

/// `NFNL_SUBSYS_CTNETLINK`.
const SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_GET`.
const CT_GET: u16 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
const CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
/// `CTA_FILTER_F_CTA_PROTO_NUM | CTA_FILTER_F_CTA_PROTO_DST_PORT`.
const FILTER_PROTO_DPORT: u32 = (1 << 3) | (1 << 5);
const RECV_BUF: usize = 64 * 1024;

/// `IPPROTO_UDP`.
pub const PROTO_UDP: u8 = 17;

fn af(family: IpFamily) -> u8 {
    match family {
        IpFamily::V4 => libc::AF_INET as u8,
        IpFamily::V6 => libc::AF_INET6 as u8,
    }
}

fn ct_type(kind: u16) -> u16 {
    (SUBSYS_CTNETLINK << 8) | kind
}

/// `CTA_TUPLE_ORIG { CTA_TUPLE_PROTO { NUM, DST_PORT } }`.
fn orig_proto_port(a: &mut Attrs, proto: u8, port: u16) {
    a.nest(CTA_TUPLE_ORIG, |t| {
        t.nest(CTA_TUPLE_PROTO, |p| {
            p.bytes(CTA_PROTO_NUM, &[proto]);
            p.bytes(CTA_PROTO_DST_PORT, &port.to_be_bytes());
        });
    });
}

/// The filtered flush: delete every `family` entry with protocol `proto` and original
/// destination port `port`.
pub fn flush_message(family: IpFamily, proto: u8, port: u16, seq: u32) -> Vec<u8> {
    let mut a = Attrs::new();
    orig_proto_port(&mut a, proto, port);
    a.nest(CTA_FILTER, |f| {
        f.bytes(CTA_FILTER_ORIG_FLAGS, &FILTER_PROTO_DPORT.to_ne_bytes());
        f.bytes(CTA_FILTER_REPLY_FLAGS, &0u32.to_ne_bytes());
    });
    let mut out = Vec::new();
    let fl = flags::REQUEST | flags::ACK;
    encode_msg(&mut out, ct_type(CT_DELETE), fl, seq, af(family), 0, &a);
    out
}

/// A ctnetlink socket in the calling thread's netns.
pub struct Conntrack {
    sock: NlSocket,
    seq: u32,
}

impl Conntrack {
    /// Opens the socket.
    pub fn new() -> Result<Conntrack> {
        let sock = NlSocket::connect(NlFamily::Netfilter, None, Groups::empty())
            .context("open a NETLINK_NETFILTER socket")?;
        Ok(Conntrack { sock, seq: 1 })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let sent = self
            .sock
            .send(bytes, Msg::empty())
            .context("send to ctnetlink")?;
        if sent != bytes.len() {
            bail!("ctnetlink took {sent} of {} bytes", bytes.len());
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Reads replies until the ACK or error of `seq` (or the end of its dump), passing each
    /// data message to `each`. An error reply is returned as its errno.
    fn replies(
        &mut self,
        seq: u32,
        mut each: impl FnMut(&[u8]),
    ) -> Result<std::result::Result<(), i32>> {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let (n, _) = match self.sock.recv(&mut buf[..], Msg::empty()) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("receive from ctnetlink"),
            };
            for r in parse_replies(&buf[..n])? {
                match r {
                    Reply::Ack { seq: s } | Reply::Done { seq: s } if s == seq => {
                        return Ok(Ok(()));
                    }
                    Reply::Error { seq: s, errno, .. } if s == seq => return Ok(Err(errno)),
                    Reply::Data { seq: s, attrs, .. } if s == seq => each(attrs),
                    _ => {}
                }
            }
        }
    }

    /// Deletes the entries of `family` with protocol `proto` to original destination port
    /// `port`; returns how many the fallback deleted (the kernel's own flush does not say).
    pub fn delete_by_dport(&mut self, family: IpFamily, proto: u8, port: u16) -> Result<usize> {
        let seq = self.next_seq();
        let msg = flush_message(family, proto, port, seq);
        self.send(&msg)?;
        match self.replies(seq, |_| {})? {
            Ok(()) => Ok(0),
            // Pre-6.10 kernels: EOPNOTSUPP (filter not allowed in a flush) or EINVAL (the
            // tuple is taken as a full one and lacks its addresses).
            Err(libc::EOPNOTSUPP | libc::EINVAL) => self.dump_and_delete(family, proto, port),
            Err(errno) => Err(std::io::Error::from_raw_os_error(errno))
                .with_context(|| format!("flush conntrack entries to port {port}")),
        }
    }

    /// The fallback: dump the family's entries, delete the matching ones by tuple.
    pub fn dump_and_delete(&mut self, family: IpFamily, proto: u8, port: u16) -> Result<usize> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        let fl = flags::REQUEST | flags::DUMP;
        encode_msg(
            &mut out,
            ct_type(CT_GET),
            fl,
            seq,
            af(family),
            0,
            &Attrs::new(),
        );
        self.send(&out)?;
        let mut victims: Vec<Attrs> = Vec::new();
        let dumped = self.replies(seq, |attrs| {
            if let Some(del) = deletion_for(attrs, proto, port) {
                victims.push(del);
            }
        })?;
        if let Err(errno) = dumped {
            return Err(std::io::Error::from_raw_os_error(errno)).context("dump conntrack entries");
        }
        let mut deleted = 0;
        for a in &victims {
            let seq = self.next_seq();
            let mut out = Vec::new();
            let fl = flags::REQUEST | flags::ACK;
            encode_msg(&mut out, ct_type(CT_DELETE), fl, seq, af(family), 0, a);
            self.send(&out)?;
            match self.replies(seq, |_| {})? {
                Ok(()) => deleted += 1,
                Err(libc::ENOENT) => {} // expired meanwhile
                Err(errno) => {
                    return Err(std::io::Error::from_raw_os_error(errno))
                        .context("delete a conntrack entry");
                }
            }
        }
        Ok(deleted)
    }
}

/// For a dumped entry matching `proto` and `port`: the attributes that delete exactly it (its
/// original tuple and zone, copied).
fn deletion_for(entry: &[u8], proto: u8, port: u16) -> Option<Attrs> {
    let attrs = parse_attrs(entry).ok()?;
    let orig = find(&attrs, CTA_TUPLE_ORIG)?;
    let tuple = parse_attrs(orig).ok()?;
    let p = parse_attrs(find(&tuple, CTA_TUPLE_PROTO)?).ok()?;
    let num = *find(&p, CTA_PROTO_NUM)?.first()?;
    let dport = find(&p, CTA_PROTO_DST_PORT)?;
    if num != proto || dport != port.to_be_bytes() {
        return None;
    }
    let mut del = Attrs::new();
    del.bytes(CTA_TUPLE_ORIG | NLA_F_NESTED, orig);
    if let Some(zone) = find(&attrs, CTA_ZONE) {
        del.bytes(CTA_ZONE, zone);
    }
    Some(del)
}

/// Flushes the UDP entries to each `(family, port)`; failures are only logged, as in the
/// reference (a missing conntrack module must not fail the plugin).
pub fn flush_udp_ports(ports: &[(IpFamily, u16)]) {
    if ports.is_empty() {
        return;
    }
    let mut ct = match Conntrack::new() {
        Ok(ct) => ct,
        Err(e) => return log::warn!("conntrack flush skipped: {e:#}"),
    };
    for &(family, port) in ports {
        if let Err(e) = ct.delete_by_dport(family, PROTO_UDP, port) {
            log::warn!("failed to delete stale UDP conntrack entries for port {port}: {e:#}");
        }
    }
}

#[cfg(test)]
#[path = "conntrack_tests.rs"]
mod tests;
