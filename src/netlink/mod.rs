//! rtnetlink over neli, with our own request/ACK/DONE loop so the kernel's extended-ACK text
//! reaches error messages. Applets use the typed operations here and never build messages.
//!
//! One [`Handle`] is one `NETLINK_ROUTE` socket, bound to the netns it was created in; it keeps
//! working from any thread or netns afterwards, so a plugin opens one on each side and works
//! from the host (the reference's `ns.Do` dance is only needed for sysctl and ioctls).
//!
//! neli's `NlRouter` is deliberately not used: it drops the ext-ack text and spawns a reader
//! thread per socket (DEPS.md 1.3). Requests carry `NLM_F_ACK`; dumps are collected into owned
//! structs and restarted when the kernel flags them `NLM_F_DUMP_INTR`.

pub mod addr;
pub(crate) mod attr;
pub mod bridge_vlan;
pub mod kinds;
pub mod link;
pub mod neigh;
#[cfg(test)]
mod oracle;
pub mod route;
pub mod rule;
pub mod stacked;

pub use addr::Address;
pub use attr::{mac_string, parse_mac};
pub use bridge_vlan::BridgeVlan;
pub use kinds::{
    BondMode, IpvlanFlag, IpvlanMode, LinkKind, LinkSpec, MacvlanMode, newlink_message,
};
pub use link::{BridgePortOpts, Link};
pub use neigh::Neighbour;
pub use route::RouteSpec;
pub use rule::RuleSpec;
pub use stacked::{KindData, LinkDetails};

use crate::netns::Netns;
use anyhow::Context;
use neli::consts::nl::{NlmF, NlmsgerrAttr};
use neli::consts::rtnl::{RtAddrFamily, Rtm};
use neli::consts::socket::NlFamily;
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::socket::synchronous::NlSocketHandle;
use neli::types::{Buffer, GenlBuffer};
use neli::utils::Groups;
use neli::{Size, ToBytes};
use std::cell::Cell;
use std::fmt;
use std::net::IpAddr;

/// How many times a dump is restarted after the kernel flagged it inconsistent.
const DUMP_ATTEMPTS: usize = 5;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// The family of a prefix.
    pub fn of_net(net: &ipnet::IpNet) -> Family {
        Family::of(&net.addr())
    }

    pub(crate) fn rt(self) -> RtAddrFamily {
        match self {
            Family::V4 => RtAddrFamily::Inet,
            Family::V6 => RtAddrFamily::Inet6,
        }
    }

    pub(crate) fn from_rt(f: RtAddrFamily) -> Option<Family> {
        match f {
            RtAddrFamily::Inet => Some(Family::V4),
            RtAddrFamily::Inet6 => Some(Family::V6),
            _ => None,
        }
    }
}

/// A request the kernel refused: the operation, the errno, and the kernel's own explanation
/// (extended ACK) when it gave one. Stays typed inside an `anyhow` chain so callers can match
/// the errno (see [`is_not_found`], [`is_exists`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    /// What was attempted, naming the object ("set mtu 1400 on ifindex 7").
    pub op: String,
    /// Positive errno (`libc::EEXIST`, ...).
    pub errno: i32,
    /// The kernel's `NLMSGERR_ATTR_MSG`, if any.
    pub ext_ack: Option<String>,
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.op,
            std::io::Error::from_raw_os_error(self.errno)
        )?;
        if let Some(text) = &self.ext_ack {
            write!(f, " ({text})")?;
        }
        Ok(())
    }
}

impl std::error::Error for NlError {}

/// The first errno found in the chain: an [`NlError`] or an OS-level `io::Error`.
pub fn errno_of(e: &anyhow::Error) -> Option<i32> {
    e.chain().find_map(|c| {
        c.downcast_ref::<NlError>().map(|n| n.errno).or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.raw_os_error())
        })
    })
}

/// True when the error says the object does not exist (ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL).
pub fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        errno_of(e),
        Some(libc::ENOENT | libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL)
    )
}

/// True when the error says the object already exists (EEXIST).
pub fn is_exists(e: &anyhow::Error) -> bool {
    errno_of(e) == Some(libc::EEXIST)
}

/// True when the kernel lacks the feature (EOPNOTSUPP), e.g. a link kind not built in.
pub fn is_unsupported(e: &anyhow::Error) -> bool {
    errno_of(e) == Some(libc::EOPNOTSUPP)
}

/// One `NETLINK_ROUTE` socket with extended ACKs and strict checking enabled.
pub struct Handle {
    sock: NlSocketHandle,
    seq: Cell<u32>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("port", &self.sock.pid())
            .finish()
    }
}

impl Handle {
    /// Opens a socket in the calling thread's current netns.
    pub fn new() -> anyhow::Result<Handle> {
        let sock = NlSocketHandle::connect(NlFamily::Route, None, Groups::empty())
            .context("open NETLINK_ROUTE socket")?;
        sock.enable_ext_ack(true)
            .context("enable netlink extended ACK")?;
        // Strict checking makes the kernel filter dumps by the header fields and attributes
        // we send (ifindex, table) and reject requests with garbage in them. Linux < 4.20
        // lacks it; the dump helpers filter on our side as well, so carry on without.
        if let Err(e) = sock.enable_strict_checking(true) {
            log::debug!("netlink strict checking unavailable: {e}");
        }
        Ok(Handle {
            sock,
            seq: Cell::new(1),
        })
    }

    /// Opens a socket inside `ns` (switching this thread in and back); the handle then works
    /// on that netns from anywhere.
    pub fn in_netns(ns: &Netns) -> anyhow::Result<Handle> {
        ns.run(Handle::new)?
            .with_context(|| format!("open netlink socket in netns {}", ns.path().display()))
    }

    fn next_seq(&self) -> u32 {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1).max(1));
        seq
    }

    /// Sends one request with `NLM_F_ACK` and waits for the ACK or the error.
    pub(crate) fn request<P>(
        &self,
        op: &str,
        ty: Rtm,
        flags: NlmF,
        payload: P,
    ) -> anyhow::Result<()>
    where
        P: Size + ToBytes + fmt::Debug,
    {
        self.exchange(op, ty, flags | NlmF::ACK, payload, |_| Ok(()))
            .map(|_| ())
    }

    /// Sends a non-dump `RTM_GET*` and parses the single answer, `None` if there was none.
    pub(crate) fn get<P, T>(
        &self,
        op: &str,
        ty: Rtm,
        payload: P,
        mut parse: impl FnMut(&[u8]) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>>
    where
        P: Size + ToBytes + fmt::Debug,
    {
        let mut out = None;
        self.exchange(op, ty, NlmF::ACK, payload, |b| {
            if out.is_none() {
                out = Some(parse(b)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs a dump, collecting what `parse` keeps; restarts it when the kernel flags it
    /// interrupted (the set changed while it was being dumped), a few times at most.
    pub(crate) fn dump<P, T>(
        &self,
        op: &str,
        ty: Rtm,
        request: impl Fn() -> anyhow::Result<P>,
        mut parse: impl FnMut(&[u8]) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<Vec<T>>
    where
        P: Size + ToBytes + fmt::Debug,
    {
        for _ in 0..DUMP_ATTEMPTS {
            let mut out = Vec::new();
            let complete = self.exchange(op, ty, NlmF::DUMP, request()?, |b| {
                out.extend(parse(b)?);
                Ok(())
            })?;
            if complete {
                return Ok(out);
            }
        }
        Err(NlError {
            op: op.to_string(),
            errno: libc::EINTR,
            ext_ack: None,
        })
        .context(format!(
            "dump still inconsistent after {DUMP_ATTEMPTS} attempts"
        ))
    }

    /// The one send/receive loop. Messages of other sequence numbers (left over from an
    /// earlier failed exchange) are skipped. Returns false when a dump was interrupted.
    fn exchange<P>(
        &self,
        op: &str,
        ty: Rtm,
        flags: NlmF,
        payload: P,
        visit: impl FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool>
    where
        P: Size + ToBytes + fmt::Debug,
    {
        let seq = self.next_seq();
        let msg = NlmsghdrBuilder::default()
            .nl_type(ty)
            .nl_flags(flags | NlmF::REQUEST)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .with_context(|| format!("{op}: build netlink message"))?;
        self.sock
            .send(&msg)
            .with_context(|| format!("{op}: send netlink request"))?;
        let mut reply = Reply {
            op,
            seq,
            port: self.sock.pid(),
            intr: false,
            parse_err: None,
            visit,
        };
        loop {
            let (msgs, _) = self
                .sock
                .recv::<u16, Buffer>()
                .with_context(|| format!("{op}: receive netlink reply"))?;
            for m in msgs {
                let m = m.with_context(|| format!("{op}: malformed netlink reply"))?;
                if let Some(end) = reply.take(&m) {
                    return end;
                }
            }
        }
    }
}

/// One exchange while its replies come in.
struct Reply<'a, V> {
    op: &'a str,
    seq: u32,
    port: u32,
    intr: bool,
    // A payload that fails to parse must not stop us draining up to DONE, or the rest of the
    // dump would be read as the answer to the next request.
    parse_err: Option<anyhow::Error>,
    visit: V,
}

impl<V: FnMut(&[u8]) -> anyhow::Result<()>> Reply<'_, V> {
    /// Takes one received message; `Some` once the exchange is over, with `Ok(false)` for a
    /// dump the kernel flagged interrupted. Messages of other sequence numbers (left over
    /// from an earlier failed exchange) are skipped.
    fn take(&mut self, m: &Nlmsghdr<u16, Buffer>) -> Option<anyhow::Result<bool>> {
        if *m.nl_seq() != self.seq || *m.nl_pid() != self.port {
            return None;
        }
        self.intr |= m.nl_flags().contains(NlmF::DUMP_INTR);
        let end = match m.nl_payload() {
            NlPayload::Payload(p) => {
                if self.parse_err.is_none() {
                    self.parse_err = (self.visit)(p.as_ref()).err();
                }
                return None;
            }
            NlPayload::Err(e) => Err(nl_error(self.op, *e.error(), e.ext_ack())),
            // NLMSG_DONE of a dump; a failed dump puts its errno there.
            NlPayload::DumpExtAck(e) if *e.error() != 0 => {
                Err(nl_error(self.op, *e.error(), e.ext_ack()))
            }
            NlPayload::Ack(_) | NlPayload::DumpExtAck(_) | NlPayload::Empty => Ok(!self.intr),
        };
        Some(match (end, self.parse_err.take()) {
            (Ok(_), Some(e)) => Err(e.context(format!("{}: parse reply", self.op))),
            (end, _) => end,
        })
    }
}

fn nl_error(op: &str, error: i32, ext: &GenlBuffer<NlmsgerrAttr, Buffer>) -> anyhow::Error {
    let ext_ack = ext
        .get_attr_handle()
        .get_attr_payload_as_with_len::<String>(NlmsgerrAttr::Msg)
        .ok()
        .map(|s| s.trim_end_matches('\0').to_string())
        .filter(|s| !s.is_empty());
    NlError {
        op: op.to_string(),
        errno: error.abs(),
        ext_ack,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nl_error_display_has_strerror_errno_and_ext_ack() {
        let e = NlError {
            op: "set mtu 70000 on ifindex 7".into(),
            errno: libc::EINVAL,
            ext_ack: None,
        };
        assert_eq!(
            e.to_string(),
            "set mtu 70000 on ifindex 7: Invalid argument (os error 22)"
        );
        let e = NlError {
            ext_ack: Some("mtu greater than device maximum".into()),
            ..e
        };
        assert_eq!(
            e.to_string(),
            "set mtu 70000 on ifindex 7: Invalid argument (os error 22) (mtu greater than device maximum)"
        );
    }

    #[test]
    fn errno_classes_are_found_through_context() {
        let mk = |errno| -> anyhow::Error {
            anyhow::Error::new(NlError {
                op: "x".into(),
                errno,
                ext_ack: None,
            })
            .context("outer step")
        };
        for errno in [libc::ENOENT, libc::ENODEV, libc::ESRCH, libc::EADDRNOTAVAIL] {
            assert!(is_not_found(&mk(errno)), "{errno}");
            assert!(!is_exists(&mk(errno)));
        }
        assert!(is_exists(&mk(libc::EEXIST)));
        assert!(!is_not_found(&mk(libc::EEXIST)));
        assert!(is_unsupported(&mk(libc::EOPNOTSUPP)));
        assert!(!is_not_found(&anyhow::anyhow!("no errno here")));
        let io =
            anyhow::Error::new(std::io::Error::from_raw_os_error(libc::ENOENT)).context("read x");
        assert!(is_not_found(&io));
    }

    /// One raw netlink message: header + body, padded.
    fn raw(ty: u16, flags: u16, seq: u32, pid: u32, body: &[u8]) -> Vec<u8> {
        let mut v = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        v.extend(ty.to_ne_bytes());
        v.extend(flags.to_ne_bytes());
        v.extend(seq.to_ne_bytes());
        v.extend(pid.to_ne_bytes());
        v.extend(body);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    /// Feeds raw messages through neli's parser and our reply logic, like the receive loop.
    fn run(msgs: &[Vec<u8>]) -> (Vec<Vec<u8>>, Option<anyhow::Result<bool>>) {
        let mut seen = Vec::new();
        let mut reply = Reply {
            op: "dump things",
            seq: 5,
            port: 77,
            intr: false,
            parse_err: None,
            visit: |b: &[u8]| {
                seen.push(b.to_vec());
                anyhow::ensure!(b != b"bad!", "cannot parse");
                Ok(())
            },
        };
        let mut end = None;
        for bytes in msgs {
            let m = neli::FromBytes::from_bytes(&mut std::io::Cursor::new(bytes)).unwrap();
            end = reply.take(&m);
            if end.is_some() {
                break;
            }
        }
        drop(reply);
        (seen, end)
    }

    const DONE: u16 = libc::NLMSG_DONE as u16;
    const ERROR: u16 = libc::NLMSG_ERROR as u16;
    const MULTI: u16 = libc::NLM_F_MULTI as u16;

    #[test]
    fn dump_collects_its_own_messages_and_notes_interruption() {
        let msgs = [
            raw(16, MULTI, 4, 77, b"old!"), // an earlier exchange: skipped
            raw(16, MULTI, 5, 78, b"port"), // another socket: skipped
            raw(16, MULTI, 5, 77, b"one!"),
            raw(16, MULTI | libc::NLM_F_DUMP_INTR as u16, 5, 77, b"two!"),
            raw(DONE, MULTI, 5, 77, &0i32.to_ne_bytes()),
        ];
        let (seen, end) = run(&msgs);
        assert_eq!(seen, [b"one!".to_vec(), b"two!".to_vec()]);
        assert!(
            !end.unwrap().unwrap(),
            "interrupted dump must be reported incomplete"
        );
        let (_, end) = run(&[
            raw(16, MULTI, 5, 77, b"one!"),
            raw(DONE, MULTI, 5, 77, &0i32.to_ne_bytes()),
        ]);
        assert!(end.unwrap().unwrap());
    }

    #[test]
    fn error_reply_keeps_errno_and_ext_ack_text() {
        let mut body = (-libc::EINVAL).to_ne_bytes().to_vec();
        body.extend(raw(19, 5, 5, 0, &[])); // the echoed request header
        body.extend([9, 0, 1, 0, b'b', b'o', b'o', b'm', 0, 0, 0, 0]); // NLMSGERR_ATTR_MSG "boom"
        let (_, end) = run(&[raw(ERROR, libc::NLM_F_ACK_TLVS as u16, 5, 77, &body)]);
        let e = end.unwrap().unwrap_err();
        let nl = e.downcast_ref::<NlError>().unwrap();
        assert_eq!(
            (nl.errno, nl.ext_ack.as_deref()),
            (libc::EINVAL, Some("boom"))
        );
        assert_eq!(
            e.to_string(),
            "dump things: Invalid argument (os error 22) (boom)"
        );

        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend(raw(19, 5, 5, 0, &[]));
        assert!(run(&[raw(ERROR, 0, 5, 77, &ack)]).1.unwrap().unwrap());
    }

    #[test]
    fn failed_dump_and_unparsable_payload_are_errors() {
        let (_, end) = run(&[raw(DONE, MULTI, 5, 77, &(-libc::EBUSY).to_ne_bytes())]);
        assert_eq!(errno_of(&end.unwrap().unwrap_err()), Some(libc::EBUSY));
        let msgs = [
            raw(16, MULTI, 5, 77, b"bad!"),
            raw(16, MULTI, 5, 77, b"more"),
            raw(DONE, MULTI, 5, 77, &0i32.to_ne_bytes()),
        ];
        let (seen, end) = run(&msgs);
        assert_eq!(seen.len(), 1, "no visiting after the first parse error");
        let e = end.expect("drained to DONE").unwrap_err();
        assert_eq!(format!("{e:#}"), "dump things: parse reply: cannot parse");
    }

    #[test]
    fn handle_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<Handle>();
    }

    #[test]
    fn family_of_addresses() {
        assert_eq!(Family::of(&"10.0.0.1".parse().unwrap()), Family::V4);
        assert_eq!(Family::of(&"fd00::1".parse().unwrap()), Family::V6);
        assert_eq!(Family::of_net(&"fd00::/64".parse().unwrap()), Family::V6);
    }
}
