//! The nf_tables wire format: netlink headers, the `nfgenmsg` header, TLV attributes (rtattr ==
//! nlattr on the wire) and the parsing of the kernel's replies, including the extended-ACK
//! text. Constants are those of `linux/netfilter/nf_tables.h` and `linux/netfilter/nfnetlink.h`.
//!
//! neli 0.7 has no nf_tables support (its `netfilter` feature is empty), and its attribute
//! builders neither set `NLA_F_NESTED` nor encode big-endian values, so messages are laid out
//! here by hand; neli provides the socket (see `socket.rs`).

use anyhow::{Result, bail};

/// `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type.
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` (`NLMSG_MIN_TYPE`).
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`.
pub const NFNL_MSG_BATCH_END: u16 = 0x11;

/// `NFT_MSG_*` message kinds (low byte of the netlink type).
pub mod msg {
    /// Create a table.
    pub const NEWTABLE: u16 = 0;
    /// Delete a table.
    pub const DELTABLE: u16 = 2;
    /// Create a chain.
    pub const NEWCHAIN: u16 = 3;
    /// Get one chain by name.
    pub const GETCHAIN: u16 = 4;
    /// Delete a chain.
    pub const DELCHAIN: u16 = 5;
    /// Add a rule; also the type of each rule in a dump.
    pub const NEWRULE: u16 = 6;
    /// Dump rules.
    pub const GETRULE: u16 = 7;
    /// Delete a rule by handle, or every rule of a chain.
    pub const DELRULE: u16 = 8;
    /// Read the ruleset generation (used as a cheap probe).
    pub const GETGEN: u16 = 16;
}

/// Netlink header flags (`NLM_F_*`).
pub mod flags {
    /// A request.
    pub const REQUEST: u16 = 0x1;
    /// Part of a multi-message reply.
    pub const MULTI: u16 = 0x2;
    /// Ask for an ACK.
    pub const ACK: u16 = 0x4;
    /// The dump was interrupted by a change: its content is inconsistent.
    pub const DUMP_INTR: u16 = 0x10;
    /// `NLM_F_ROOT | NLM_F_MATCH`: dump everything.
    pub const DUMP: u16 = 0x300;
    /// Create if missing.
    pub const CREATE: u16 = 0x400;
    /// Add at the end.
    pub const APPEND: u16 = 0x800;
    /// On an `NLMSG_ERROR`: the echoed request was cut to its header.
    pub const CAPPED: u16 = 0x100;
    /// On an `NLMSG_ERROR`: extended-ACK attributes follow.
    pub const ACK_TLVS: u16 = 0x200;
}

/// `NLA_F_NESTED`, which nft sets on every nest (the kernel accepts it either way).
pub const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Rounds up to the 4-byte netlink alignment.
pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A growing list of TLV attributes. Integers the kernel reads as `NLA_BE32`/`NLA_BE64` go
/// through [`Attrs::be32`]/[`Attrs::be64`]; strings are NUL-terminated like libnftnl's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs(Vec<u8>);

impl Attrs {
    /// An empty list.
    pub fn new() -> Self {
        Attrs(Vec::new())
    }

    /// One attribute with a raw payload, padded to 4 bytes.
    pub fn bytes(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.0.resize(align4(self.0.len()), 0);
        self
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.bytes(ty, &v)
    }

    /// A big-endian u32.
    pub fn be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }

    /// A big-endian u64.
    pub fn be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }

    /// A nested attribute whose content `fill` writes.
    pub fn nest(&mut self, ty: u16, fill: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut inner = Attrs::new();
        fill(&mut inner);
        self.bytes(ty | NLA_F_NESTED, &inner.0)
    }

    /// The encoded attributes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Splits a TLV area into `(type without flag bits, payload)` pairs.
pub fn parse_attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            bail!(
                "malformed netlink attribute (len {len}, {} bytes left)",
                buf.len()
            );
        }
        out.push((ty, &buf[4..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// The payload of the first attribute of type `ty`.
pub fn find<'a>(attrs: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    attrs.iter().find(|(t, _)| *t == ty).map(|(_, p)| *p)
}

/// A NUL-terminated string attribute.
pub fn get_str(attrs: &[(u16, &[u8])], ty: u16) -> Option<String> {
    let p = find(attrs, ty)?;
    let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
    Some(String::from_utf8_lossy(&p[..end]).into_owned())
}

/// A big-endian u32 attribute.
pub fn get_be32(attrs: &[(u16, &[u8])], ty: u16) -> Option<u32> {
    Some(u32::from_be_bytes(find(attrs, ty)?.try_into().ok()?))
}

/// A big-endian u64 attribute.
pub fn get_be64(attrs: &[(u16, &[u8])], ty: u16) -> Option<u64> {
    Some(u64::from_be_bytes(find(attrs, ty)?.try_into().ok()?))
}

/// One netlink message: header, `nfgenmsg {family, version 0, res_id}` and attributes.
pub fn encode_msg(
    out: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &Attrs,
) {
    let len = NLMSG_HDRLEN + 4 + attrs.0.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 = to the kernel
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(&attrs.0);
}

/// The netlink type of an nf_tables message.
pub fn nft_type(kind: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | kind
}

/// One message the kernel sent back.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `NLMSG_ERROR` with code 0 for request `seq`.
    Ack { seq: u32 },
    /// `NLMSG_ERROR` with a negative errno for request `seq`, and the ext-ack text if any.
    Error {
        seq: u32,
        errno: i32,
        msg: Option<String>,
    },
    /// `NLMSG_DONE`: the end of a dump.
    Done { seq: u32 },
    /// A data message: its type, flags, `nfgenmsg` family and attribute area.
    Data {
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        attrs: &'a [u8],
    },
}

/// Splits one `recv` buffer into replies.
pub fn parse_replies(mut buf: &[u8]) -> Result<Vec<Reply<'_>>> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into()?) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            bail!(
                "malformed netlink message (len {len}, {} bytes left)",
                buf.len()
            );
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let fl = u16::from_ne_bytes([buf[6], buf[7]]);
        let seq = u32::from_ne_bytes(buf[8..12].try_into()?);
        let body = &buf[NLMSG_HDRLEN..len];
        out.push(match ty {
            NLMSG_ERROR => parse_error(fl, body)?,
            NLMSG_DONE => Reply::Done { seq },
            _ if body.len() >= 4 => Reply::Data {
                ty,
                flags: fl,
                seq,
                family: body[0],
                attrs: &body[4..],
            },
            _ => bail!("short netlink message of type {ty:#x}"),
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// `struct nlmsgerr { int error; struct nlmsghdr msg; [payload]; [ext-ack TLVs] }`.
fn parse_error(fl: u16, body: &[u8]) -> Result<Reply<'_>> {
    if body.len() < 4 + NLMSG_HDRLEN {
        bail!("short NLMSG_ERROR");
    }
    let errno = i32::from_ne_bytes(body[0..4].try_into()?);
    let orig = &body[4..];
    let seq = u32::from_ne_bytes(orig[8..12].try_into()?);
    if errno == 0 {
        return Ok(Reply::Ack { seq });
    }
    let mut msg = None;
    if fl & flags::ACK_TLVS != 0 {
        let echoed = if fl & flags::CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4(u32::from_ne_bytes(orig[0..4].try_into()?) as usize)
        };
        let tlvs = orig.get(echoed..).unwrap_or_default();
        msg = get_str(&parse_attrs(tlvs)?, NLMSGERR_ATTR_MSG);
    }
    Ok(Reply::Error {
        seq,
        errno: -errno,
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nests_flagged() {
        let mut a = Attrs::new();
        a.str(1, "t").be32(2, 0x0102_0304).nest(4, |n| {
            n.bytes(1, &[0xaa]);
        });
        assert_eq!(
            a.as_bytes(),
            [
                6, 0, 1, 0, b't', 0, 0, 0, // "t\0" + 2 pad
                8, 0, 2, 0, 1, 2, 3, 4, // big endian
                12, 0, 4, 0x80, 5, 0, 1, 0, 0xaa, 0, 0, 0, // nested, inner padded
            ]
        );
        let parsed = parse_attrs(a.as_bytes()).unwrap();
        assert_eq!(get_str(&parsed, 1).as_deref(), Some("t"));
        assert_eq!(get_be32(&parsed, 2), Some(0x0102_0304));
        assert_eq!(
            parse_attrs(find(&parsed, 4).unwrap()).unwrap(),
            vec![(1, &[0xaa][..])]
        );
    }

    #[test]
    fn malformed_attributes_are_errors() {
        assert!(parse_attrs(&[9, 0, 1, 0, 0]).is_err());
        assert!(parse_attrs(&[2, 0, 1, 0]).is_err());
    }

    #[test]
    fn error_reply_with_ext_ack_text() {
        // nlmsghdr(ERROR, flags ACK_TLVS|CAPPED) + errno -2 + echoed header (seq 7) + MSG attr.
        let mut tlv = Attrs::new();
        tlv.str(NLMSGERR_ATTR_MSG, "no chain");
        let mut body = (-2i32).to_ne_bytes().to_vec();
        body.extend_from_slice(&[40, 0, 0, 0, 6, 10, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(tlv.as_bytes());
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&(flags::ACK_TLVS | flags::CAPPED).to_ne_bytes());
        msg.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(&body);
        let replies = parse_replies(&msg).unwrap();
        assert_eq!(
            replies,
            vec![Reply::Error {
                seq: 7,
                errno: 2,
                msg: Some("no chain".into())
            }]
        );
    }
}
