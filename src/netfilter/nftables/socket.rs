//! The nf_tables transport over a neli `NETLINK_NETFILTER` socket: one `send` per batch,
//! then every ACK or error the kernel queued for it; and rule dumps parsed into
//! [`RuleInfo`] (chain, handle, comment, expressions).
//!
//! The kernel runs a whole batch inside `sendmsg` and queues one reply per message that asked
//! for an ACK (successes and errors alike) before `send` returns, so the replies are read
//! without blocking until the socket is empty. A socket stays bound to the netns it was
//! opened in.

use super::batch::{Batch, Table};
use super::expr::{DecodedExpr, decode_list};
use super::wire::{
    Attrs, Reply, encode_msg, find, flags, get_be64, get_str, msg, nft_type, parse_attrs,
    parse_replies,
};
use anyhow::{Context, Result, bail};
use neli::consts::socket::{Msg, NlFamily};
use neli::socket::NlSocket;
use neli::utils::Groups;
use std::collections::VecDeque;
use std::fmt;
use std::io::ErrorKind;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

const RECV_BUF: usize = 64 * 1024;
const DUMP_ATTEMPTS: usize = 5;

/// A kernel refusal of one nf_tables operation, with the errno kept for callers
/// (`ENOENT`: no such table/chain/rule, `EEXIST`, `EBUSY`: chain in use, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftError {
    /// What was being done (`add rule cni_plugins_masquerade masq_checks`, ...).
    pub op: String,
    /// The positive errno.
    pub errno: i32,
    /// The kernel's extended-ACK text, if it sent one.
    pub msg: Option<String>,
}

impl fmt::Display for NftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nftables: {}: {}",
            self.op,
            std::io::Error::from_raw_os_error(self.errno)
        )?;
        if let Some(m) = &self.msg {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

impl std::error::Error for NftError {}

/// True when `err` is an [`NftError`] with `errno`.
pub fn is_errno(err: &anyhow::Error, errno: i32) -> bool {
    err.downcast_ref::<NftError>()
        .is_some_and(|e| e.errno == errno)
}

/// A rule read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The chain holding it.
    pub chain: String,
    /// Its handle (what `delete rule` needs).
    pub handle: u64,
    /// Its comment, if it has one stored the way `nft` stores them.
    pub comment: Option<String>,
    /// Its whole userdata (libnftnl TLVs: the comment and any others).
    pub udata: Vec<u8>,
    /// Its expressions.
    pub exprs: Vec<DecodedExpr>,
}

/// An nf_tables netlink socket in the netns it was opened in.
pub struct Nft {
    /// Always `Some` until dropped (then maybe handed to [`PARKED`]).
    sock: Option<NlSocket>,
    seq: u32,
}

/// Whether a dropped [`Nft`] parks its socket instead of closing it (see [`linger`]).
static LINGER: AtomicBool = AtomicBool::new(false);
/// The parked sockets, oldest first.
static PARKED: Mutex<VecDeque<NlSocket>> = Mutex::new(VecDeque::new());
/// How many sockets stay parked; parking one more closes the oldest.
const PARKED_MAX: usize = 8;

/// From now on, a dropped [`Nft`] keeps its socket open (the last eight of them)
/// until the process exits, for a process that runs several plugins in a row (the runtime
/// tool). After a batch that deleted something, the kernel's release handler for the socket
/// flushes nf_tables' transaction destroy work, which waits for an RCU grace period: closed at
/// once, the socket makes its plugin wait; closed later, the grace period has passed while the
/// next plugin worked (deleting a link waits for one too) and nothing waits.
pub fn linger() {
    LINGER.store(true, Ordering::Relaxed);
}

/// Keeps `sock` open; closes the oldest parked socket when more than `max` are.
fn park(parked: &Mutex<VecDeque<NlSocket>>, sock: NlSocket, max: usize) {
    let mut parked = parked.lock().unwrap_or_else(|p| p.into_inner());
    parked.push_back(sock);
    while parked.len() > max {
        parked.pop_front();
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        if let Some(sock) = self.sock.take()
            && LINGER.load(Ordering::Relaxed)
        {
            park(&PARKED, sock, PARKED_MAX);
        }
    }
}

impl Nft {
    /// Opens a socket in the calling thread's netns, with extended ACKs on.
    pub fn new() -> Result<Nft> {
        let sock = NlSocket::connect(NlFamily::Netfilter, None, Groups::empty())
            .context("open a NETLINK_NETFILTER socket")?;
        sock.enable_ext_ack(true)
            .context("enable netlink extended ACKs")?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32);
        Ok(Nft {
            sock: Some(sock),
            seq: seed.unwrap_or(1),
        })
    }

    /// True when nf_tables answers here (`NFT_MSG_GETGEN`), i.e. the nftables backend works.
    pub fn usable() -> bool {
        let probe = || -> Result<()> {
            let mut nft = Nft::new()?;
            let seq = nft.next_seq(1);
            let mut out = Vec::new();
            encode_msg(
                &mut out,
                nft_type(msg::GETGEN),
                flags::REQUEST | flags::ACK,
                seq,
                0,
                0,
                &Attrs::new(),
            );
            nft.send(&out)?;
            nft.read_until(
                |r| matches!(r, Reply::Ack { .. } | Reply::Error { .. }),
                "get generation",
            )?;
            Ok(())
        };
        probe().is_ok()
    }

    fn next_seq(&mut self, count: usize) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(count as u32 + 2);
        first
    }

    fn sock(&self) -> &NlSocket {
        self.sock.as_ref().expect("open until dropped")
    }

    fn send(&self, bytes: &[u8]) -> Result<()> {
        let sent = self
            .sock()
            .send(bytes, Msg::empty())
            .context("send to nf_tables")?;
        if sent != bytes.len() {
            bail!("nf_tables took {sent} of {} bytes", bytes.len());
        }
        Ok(())
    }

    /// Applies `batch` atomically. The first kernel error is returned as an [`NftError`]
    /// naming the failing operation; nothing of the batch is then left behind.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let first = self.next_seq(batch.len());
        self.send(&batch.encode(first))?;
        let mut acked = 0;
        let mut first_err: Option<NftError> = None;
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let n = match self.sock().recv(&mut buf[..], Msg::DONTWAIT) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("receive nf_tables replies"),
            };
            for r in parse_replies(&buf[..n])? {
                // Offsets 0 and len + 1 are the batch markers; message i has offset i + 1.
                let offset = |seq: u32| seq.wrapping_sub(first) as usize;
                match r {
                    Reply::Ack { seq } if (1..=batch.len()).contains(&offset(seq)) => acked += 1,
                    Reply::Error { seq, errno, msg }
                        if first_err.is_none() && offset(seq) <= batch.len() + 1 =>
                    {
                        let op = offset(seq)
                            .checked_sub(1)
                            .and_then(|i| batch.describe(i))
                            .unwrap_or("batch");
                        first_err = Some(NftError {
                            op: op.to_string(),
                            errno,
                            msg,
                        });
                    }
                    _ => {}
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e.into());
        }
        if acked != batch.len() {
            bail!("nf_tables acknowledged {acked} of {} changes", batch.len());
        }
        Ok(())
    }

    fn read_until(&self, mut stop: impl FnMut(&Reply<'_>) -> bool, op: &str) -> Result<()> {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let (n, _) = self
                .sock()
                .recv(&mut buf[..], Msg::empty())
                .context("receive from nf_tables")?;
            for r in parse_replies(&buf[..n])? {
                if let Reply::Error { errno, msg, .. } = r {
                    return Err(NftError {
                        op: op.into(),
                        errno,
                        msg,
                    }
                    .into());
                }
                if stop(&r) {
                    return Ok(());
                }
            }
        }
    }

    /// True when `chain` exists in `table` (one non-dump `GETCHAIN`, a hash lookup in the
    /// kernel); a missing table is `false`.
    pub fn chain_exists(&mut self, table: &Table, chain: &str) -> Result<bool> {
        let mut a = Attrs::new();
        a.str(1, &table.name).str(3, chain);
        let seq = self.next_seq(1);
        let mut out = Vec::new();
        encode_msg(
            &mut out,
            nft_type(msg::GETCHAIN),
            flags::REQUEST | flags::ACK,
            seq,
            table.family as u8,
            0,
            &a,
        );
        self.send(&out)?;
        let op = format!("get chain {} {chain}", table.name);
        // The answer is the chain, then the ACK; or only an error.
        match self.read_until(|r| matches!(r, Reply::Ack { .. }), &op) {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The rules of `table` (only those of `chain` when given), in chain order. A missing
    /// table or chain gives an empty list.
    pub fn list_rules(&mut self, table: &Table, chain: Option<&str>) -> Result<Vec<RuleInfo>> {
        for _ in 0..DUMP_ATTEMPTS {
            match self.dump_rules(table, chain) {
                Ok(Some(rules)) => return Ok(rules),
                Ok(None) => continue,
                Err(e) if is_errno(&e, libc::ENOENT) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        bail!(
            "nftables: list rules of {}: dump kept being interrupted",
            table.name
        )
    }

    /// One dump attempt; `None` when the kernel flagged it as interrupted by a change.
    fn dump_rules(&mut self, table: &Table, chain: Option<&str>) -> Result<Option<Vec<RuleInfo>>> {
        let mut a = Attrs::new();
        a.str(1, &table.name);
        if let Some(c) = chain {
            a.str(2, c);
        }
        let seq = self.next_seq(1);
        let mut out = Vec::new();
        encode_msg(
            &mut out,
            nft_type(msg::GETRULE),
            flags::REQUEST | flags::DUMP,
            seq,
            table.family as u8,
            0,
            &a,
        );
        self.send(&out)?;
        let (mut rules, mut intr, mut err) = (Vec::new(), false, None);
        let op = format!("list rules of {}", table.name);
        self.read_until(
            |r| match r {
                Reply::Data {
                    ty,
                    flags: f,
                    attrs,
                    ..
                } if *ty == nft_type(msg::NEWRULE) => {
                    intr |= f & flags::DUMP_INTR != 0;
                    match parse_rule(attrs) {
                        Ok(rule) => rules.push(rule),
                        Err(e) => err = err.take().or(Some(e)),
                    }
                    false
                }
                Reply::Done { .. } => true,
                _ => false,
            },
            &op,
        )?;
        if let Some(e) = err {
            return Err(e.context(op));
        }
        Ok((!intr).then_some(rules))
    }
}

/// Decodes one `NFT_MSG_NEWRULE` dump message.
fn parse_rule(buf: &[u8]) -> Result<RuleInfo> {
    let attrs = parse_attrs(buf)?;
    let chain = get_str(&attrs, 2).context("rule without a chain")?;
    let handle = get_be64(&attrs, 3).context("rule without a handle")?;
    let exprs = match find(&attrs, 4) {
        Some(list) => decode_list(list)?,
        None => Vec::new(),
    };
    let udata = find(&attrs, 7).unwrap_or_default().to_vec();
    let comment = comment_of_udata(&udata);
    Ok(RuleInfo {
        chain,
        handle,
        comment,
        udata,
        exprs,
    })
}

/// The comment TLV (type 0) of libnftnl udata, without its NUL.
fn comment_of_udata(udata: &[u8]) -> Option<String> {
    let value = udata_tlv(udata, 0)?;
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    Some(String::from_utf8_lossy(&value[..end]).into_owned())
}

/// The value of the first TLV of type `ty` in libnftnl udata (`{type u8, len u8, value}`).
pub fn udata_tlv(mut udata: &[u8], ty: u8) -> Option<&[u8]> {
    while udata.len() >= 2 {
        let (t, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if t == ty {
            return Some(value);
        }
        udata = &udata[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::nftables::batch::comment_udata;

    #[test]
    fn udata_comment_is_found_among_other_tlvs() {
        let mut u = vec![3, 2, 0xaa, 0xbb];
        u.extend(comment_udata("hello"));
        assert_eq!(comment_of_udata(&u).as_deref(), Some("hello"));
        assert_eq!(comment_of_udata(&[3, 9, 1]), None);
    }

    /// A parked socket stays open; parking more than the cap closes the oldest.
    #[test]
    fn parked_sockets_stay_open_up_to_the_cap() {
        use std::os::fd::AsRawFd;
        let target = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
        let parked = Mutex::new(VecDeque::new());
        let socks: Vec<NlSocket> = (0..3)
            .map(|_| NlSocket::connect(NlFamily::Route, None, Groups::empty()).unwrap())
            .collect();
        let ids: Vec<_> = socks
            .iter()
            .map(|s| (s.as_raw_fd(), target(s.as_raw_fd())))
            .collect();
        for s in socks {
            park(&parked, s, 2);
        }
        assert_eq!(parked.lock().unwrap().len(), 2);
        // The oldest is closed (its number may already serve another file of this process).
        assert_ne!(target(ids[0].0), ids[0].1);
        for (fd, socket) in &ids[1..] {
            assert!(socket.is_some());
            assert_eq!(&target(*fd), socket, "still open");
        }
    }

    #[test]
    fn error_display_has_op_errno_and_text() {
        let e = NftError {
            op: "add rule t c".into(),
            errno: libc::ENOENT,
            msg: Some("x".into()),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("nftables: add rule t c: No such file or directory"),
            "{s}"
        );
        assert!(s.ends_with("(x)"));
        assert!(is_errno(&anyhow::Error::from(e), libc::ENOENT));
    }
}
