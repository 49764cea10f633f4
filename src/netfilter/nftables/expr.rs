//! nf_tables expressions: encoders for the ones CNI rules use (payload, cmp, meta, bitwise,
//! immediate/verdicts, masq, nat, counter) and a generic decoder for rules read back.
//!
//! Address matches are encoded the way `nft` 1.0.6 encodes `ip saddr 10.0.0.5`,
//! `ip daddr != 10.0.0.0/24` or `ip6 daddr ff00::/8`, so `nft list ruleset` prints our rules
//! exactly like the reference plugins' (which go through the `nft` binary): a byte-aligned
//! prefix loads and compares only its bytes; any other prefix loads the whole address and masks
//! it with `bitwise` first. In an `inet` (or `bridge`) table the match is preceded by
//! `meta nfproto`, the dependency `nft` adds.

use super::wire::{Attrs, find, get_be32, get_str, parse_attrs};
use anyhow::{Context, Result};
use ipnet::IpNet;
use std::net::IpAddr;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// `NFT_REG_VERDICT`.
pub const REG_VERDICT: u32 = 0;
/// `NFT_REG_1`, the 16-byte register nft uses for single matches.
pub const REG_1: u32 = 1;
/// `NFT_REG_2`.
pub const REG_2: u32 = 2;

/// `NFT_PAYLOAD_LL_HEADER` (the Ethernet header in a `bridge` table).
pub const BASE_LINK: u32 = 0;
/// `NFT_PAYLOAD_NETWORK_HEADER`.
pub const BASE_NETWORK: u32 = 1;
/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
pub const BASE_TRANSPORT: u32 = 2;

/// `NFT_META_IIFNAME`.
pub const META_IIFNAME: u32 = 6;
/// `NFT_META_NFPROTO`.
pub const META_NFPROTO: u32 = 15;
/// `NFT_META_L4PROTO`.
pub const META_L4PROTO: u32 = 16;

/// `NFPROTO_IPV4` / `NFPROTO_IPV6` (also the `nat` expression's family).
pub const NFPROTO_IPV4: u8 = 2;
/// See [`NFPROTO_IPV4`].
pub const NFPROTO_IPV6: u8 = 10;

/// A comparison operator (`enum nft_cmp_ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq = 0,
    /// `!=`
    Neq = 1,
}

/// A verdict (`NF_ACCEPT`, `NF_DROP`, `NFT_RETURN`, `NFT_JUMP`, `NFT_GOTO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `accept`
    Accept,
    /// `drop`
    Drop,
    /// `return`
    Return,
    /// `jump <chain>`
    Jump(String),
    /// `goto <chain>`
    Goto(String),
}

/// Which address of an IP header to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrField {
    /// `ip saddr` / `ip6 saddr`
    Saddr,
    /// `ip daddr` / `ip6 daddr`
    Daddr,
}

/// One encoded expression (the content of an `NFTA_LIST_ELEM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr(Attrs);

impl Expr {
    fn new(name: &str, fill: impl FnOnce(&mut Attrs)) -> Expr {
        let mut a = Attrs::new();
        a.str(NFTA_EXPR_NAME, name).nest(NFTA_EXPR_DATA, fill);
        Expr(a)
    }
}

/// Encodes a rule's expression list (`NFTA_RULE_EXPRESSIONS` content).
pub fn encode_list(exprs: &[Expr], out: &mut Attrs) {
    for e in exprs {
        out.bytes(NFTA_LIST_ELEM | super::wire::NLA_F_NESTED, e.0.as_bytes());
    }
}

fn data_value(a: &mut Attrs, ty: u16, bytes: &[u8]) {
    a.nest(ty, |d| {
        d.bytes(NFTA_DATA_VALUE, bytes);
    });
}

/// `payload load <len>b @ <base> + <offset> => reg <dreg>`.
pub fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr::new("payload", |a| {
        a.be32(1, dreg).be32(2, base).be32(3, offset).be32(4, len);
    })
}

/// `cmp <op> reg <sreg> <data>`.
pub fn cmp(op: CmpOp, sreg: u32, data: &[u8]) -> Expr {
    Expr::new("cmp", |a| {
        a.be32(1, sreg).be32(2, op as u32);
        data_value(a, 3, data);
    })
}

/// `meta load <key> => reg <dreg>`.
pub fn meta(key: u32, dreg: u32) -> Expr {
    Expr::new("meta", |a| {
        a.be32(2, key).be32(1, dreg);
    })
}

/// `bitwise reg <dreg> = (reg <sreg> & <mask>) ^ <xor>`; mask and xor have the same length.
pub fn bitwise(sreg: u32, dreg: u32, mask: &[u8], xor: &[u8]) -> Expr {
    Expr::new("bitwise", |a| {
        a.be32(1, sreg).be32(2, dreg).be32(3, mask.len() as u32);
        data_value(a, 4, mask);
        data_value(a, 5, xor);
    })
}

/// `immediate reg <dreg> <data>`.
pub fn immediate(dreg: u32, data: &[u8]) -> Expr {
    Expr::new("immediate", |a| {
        a.be32(1, dreg);
        data_value(a, 2, data);
    })
}

/// A verdict statement (`immediate reg 0 <verdict>`).
pub fn verdict(v: &Verdict) -> Expr {
    let (code, chain): (i32, Option<&str>) = match v {
        Verdict::Accept => (1, None),
        Verdict::Drop => (0, None),
        Verdict::Return => (-5, None),
        Verdict::Jump(c) => (-3, Some(c)),
        Verdict::Goto(c) => (-4, Some(c)),
    };
    Expr::new("immediate", |a| {
        a.be32(1, REG_VERDICT).nest(2, |d| {
            d.nest(NFTA_DATA_VERDICT, |v| {
                v.be32(NFTA_VERDICT_CODE, code as u32);
                if let Some(c) = chain {
                    v.str(NFTA_VERDICT_CHAIN, c);
                }
            });
        });
    })
}

/// `masquerade`.
pub fn masq() -> Expr {
    Expr::new("masq", |_| {})
}

/// `NFT_FIB_RESULT_ADDRTYPE`: the route type of the looked-up address.
pub const FIB_RESULT_ADDRTYPE: u32 = 3;
/// `NFTA_FIB_F_DADDR`: look up the destination address.
pub const FIB_F_DADDR: u32 = 1 << 1;

/// `fib <flags> <result> => reg <dreg>` (e.g. `fib daddr type`).
pub fn fib(flags: u32, result: u32, dreg: u32) -> Expr {
    Expr::new("fib", |a| {
        a.be32(1, dreg).be32(2, result).be32(3, flags);
    })
}

/// `counter` (starting at zero).
pub fn counter() -> Expr {
    Expr::new("counter", |a| {
        a.be64(1, 0).be64(2, 0);
    })
}

/// The `nat` expression: `kind` 0 = snat, 1 = dnat; address (and optionally port) taken from
/// registers loaded by [`immediate`] before it.
pub fn nat(kind: u32, family: u8, reg_addr: u32, reg_proto: Option<u32>, flags: u32) -> Expr {
    Expr::new("nat", |a| {
        a.be32(1, kind).be32(2, family as u32).be32(3, reg_addr);
        if let Some(r) = reg_proto {
            a.be32(5, r);
        }
        if flags != 0 {
            a.be32(7, flags);
        }
    })
}

/// `meta nfproto ipv4|ipv6`: the dependency nft puts before an address match in `inet` tables.
pub fn nfproto(v6: bool) -> Vec<Expr> {
    let proto = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
    vec![meta(META_NFPROTO, REG_1), cmp(CmpOp::Eq, REG_1, &[proto])]
}

/// `ip[6] saddr|daddr [!=] <net>` (a host address is a full-length prefix).
pub fn addr_match(field: AddrField, op: CmpOp, net: &IpNet) -> Vec<Expr> {
    let (offset, addr_len, bytes) = match (net.network(), field) {
        (IpAddr::V4(a), AddrField::Saddr) => (12, 4, a.octets().to_vec()),
        (IpAddr::V4(a), AddrField::Daddr) => (16, 4, a.octets().to_vec()),
        (IpAddr::V6(a), AddrField::Saddr) => (8, 16, a.octets().to_vec()),
        (IpAddr::V6(a), AddrField::Daddr) => (24, 16, a.octets().to_vec()),
    };
    let plen = net.prefix_len() as usize;
    if plen.is_multiple_of(8) && plen > 0 {
        let n = plen / 8;
        return vec![
            payload(BASE_NETWORK, offset, n as u32, REG_1),
            cmp(op, REG_1, &bytes[..n]),
        ];
    }
    let mask = match net.netmask() {
        IpAddr::V4(m) => m.octets().to_vec(),
        IpAddr::V6(m) => m.octets().to_vec(),
    };
    vec![
        payload(BASE_NETWORK, offset, addr_len, REG_1),
        bitwise(REG_1, REG_1, &mask, &vec![0; addr_len as usize]),
        cmp(op, REG_1, &bytes),
    ]
}

/// `iifname "<name>"`: nft compares the whole `IFNAMSIZ` (16-byte, NUL-padded) name.
pub fn iifname_match(name: &str) -> Vec<Expr> {
    let mut padded = [0u8; 16];
    let n = name.len().min(15);
    padded[..n].copy_from_slice(&name.as_bytes()[..n]);
    vec![meta(META_IIFNAME, REG_1), cmp(CmpOp::Eq, REG_1, &padded)]
}

/// `ether saddr <mac>`: 6 bytes at offset 6 of the link-layer header (bridge family).
pub fn ether_saddr_match(mac: &[u8; 6]) -> Vec<Expr> {
    vec![payload(BASE_LINK, 6, 6, REG_1), cmp(CmpOp::Eq, REG_1, mac)]
}

/// The interface name an `iifname` match compares with, if the rule has one.
pub fn matched_iifname(exprs: &[DecodedExpr]) -> Option<String> {
    exprs.windows(2).find_map(|w| {
        let (m, c) = (&w[0], &w[1]);
        if m.name != "meta" || m.u32(2)? != META_IIFNAME || c.name != "cmp" {
            return None;
        }
        let bytes = c.value(3)?;
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
    })
}

/// `NFT_META_OIFNAME`.
pub const META_OIFNAME: u32 = 7;
/// `NFT_CT_STATE`.
pub const CT_STATE: u32 = 0;
/// `ct state` bit of an established connection (`NF_CT_STATE_BIT(IP_CT_ESTABLISHED)`).
pub const CT_STATE_ESTABLISHED: u32 = 1 << 1;
/// `ct state` bit of a related connection (`NF_CT_STATE_BIT(IP_CT_RELATED)`).
pub const CT_STATE_RELATED: u32 = 1 << 2;

/// `ct load <key> => reg <dreg>`.
pub fn ct(key: u32, dreg: u32) -> Expr {
    Expr::new("ct", |a| {
        a.be32(1, dreg).be32(2, key);
    })
}

/// `ct state <bits>` as nft encodes `ct state established,related`: load, mask, compare
/// with zero for inequality. The state is a host-order u32 in the register.
pub fn ct_state_match(bits: u32) -> Vec<Expr> {
    vec![
        ct(CT_STATE, REG_1),
        bitwise(REG_1, REG_1, &bits.to_ne_bytes(), &[0; 4]),
        cmp(CmpOp::Neq, REG_1, &[0; 4]),
    ]
}

/// `oifname [!=] "<name>"`, the whole `IFNAMSIZ` name like [`iifname_match`].
pub fn oifname_match(op: CmpOp, name: &str) -> Vec<Expr> {
    let mut padded = [0u8; 16];
    let n = name.len().min(15);
    padded[..n].copy_from_slice(&name.as_bytes()[..n]);
    vec![meta(META_OIFNAME, REG_1), cmp(op, REG_1, &padded)]
}

/// An expression read back from the kernel: its name and its data attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedExpr {
    /// `payload`, `cmp`, `immediate`, ...
    pub name: String,
    /// `(attribute type, payload)` pairs of `NFTA_EXPR_DATA`.
    pub data: Vec<(u16, Vec<u8>)>,
}

impl DecodedExpr {
    /// A big-endian u32 data attribute.
    pub fn u32(&self, ty: u16) -> Option<u32> {
        let p = self.data.iter().find(|(t, _)| *t == ty)?;
        Some(u32::from_be_bytes(p.1.as_slice().try_into().ok()?))
    }

    /// The `NFTA_DATA_VALUE` inside the data attribute `ty` (cmp data, bitwise mask, ...).
    pub fn value(&self, ty: u16) -> Option<Vec<u8>> {
        let p = self.data.iter().find(|(t, _)| *t == ty)?;
        let inner = parse_attrs(&p.1).ok()?;
        find(&inner, NFTA_DATA_VALUE).map(<[u8]>::to_vec)
    }

    /// The verdict of an `immediate reg 0` expression.
    pub fn verdict(&self) -> Option<Verdict> {
        if self.name != "immediate" || self.u32(1)? != REG_VERDICT {
            return None;
        }
        let data = parse_attrs(&self.data.iter().find(|(t, _)| *t == 2)?.1).ok()?;
        let v = parse_attrs(find(&data, NFTA_DATA_VERDICT)?).ok()?;
        let chain = get_str(&v, NFTA_VERDICT_CHAIN);
        Some(match get_be32(&v, NFTA_VERDICT_CODE)? as i32 {
            1 => Verdict::Accept,
            0 => Verdict::Drop,
            -5 => Verdict::Return,
            -3 => Verdict::Jump(chain?),
            -4 => Verdict::Goto(chain?),
            _ => return None,
        })
    }
}

/// Decodes an `NFTA_RULE_EXPRESSIONS` list.
pub fn decode_list(buf: &[u8]) -> Result<Vec<DecodedExpr>> {
    let mut out = Vec::new();
    for (_, elem) in parse_attrs(buf)? {
        let attrs = parse_attrs(elem)?;
        let name = get_str(&attrs, NFTA_EXPR_NAME).context("expression without a name")?;
        let data = match find(&attrs, NFTA_EXPR_DATA) {
            Some(d) => parse_attrs(d)?
                .into_iter()
                .map(|(t, p)| (t, p.to_vec()))
                .collect(),
            None => Vec::new(),
        };
        out.push(DecodedExpr { name, data });
    }
    Ok(out)
}

/// The address a rule compares `field` with for equality (`ip saddr 10.0.0.5`), if any.
pub fn matched_addr(exprs: &[DecodedExpr], field: AddrField) -> Option<IpAddr> {
    exprs.windows(2).find_map(|w| {
        let (p, c) = (&w[0], &w[1]);
        if p.name != "payload"
            || c.name != "cmp"
            || p.u32(2)? != BASE_NETWORK
            || c.u32(2)? != CmpOp::Eq as u32
        {
            return None;
        }
        let bytes = c.value(3)?;
        match (p.u32(3)?, p.u32(4)?, field) {
            (12, 4, AddrField::Saddr) | (16, 4, AddrField::Daddr) => {
                Some(IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?))
            }
            (8, 16, AddrField::Saddr) | (24, 16, AddrField::Daddr) => {
                Some(IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?))
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(exprs: &[Expr]) -> Vec<DecodedExpr> {
        let mut a = Attrs::new();
        encode_list(exprs, &mut a);
        decode_list(a.as_bytes()).unwrap()
    }

    #[test]
    fn aligned_prefix_loads_only_its_bytes() {
        let d = roundtrip(&addr_match(
            AddrField::Daddr,
            CmpOp::Neq,
            &"192.168.1.0/24".parse().unwrap(),
        ));
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].u32(3), d[0].u32(4)), (Some(16), Some(3)));
        assert_eq!(d[1].u32(2), Some(CmpOp::Neq as u32));
        assert_eq!(d[1].value(3), Some(vec![192, 168, 1]));
    }

    #[test]
    fn unaligned_prefix_is_masked() {
        let d = roundtrip(&addr_match(
            AddrField::Daddr,
            CmpOp::Eq,
            &"224.0.0.0/4".parse().unwrap(),
        ));
        let names: Vec<_> = d.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["payload", "bitwise", "cmp"]);
        assert_eq!(d[0].u32(4), Some(4));
        assert_eq!(d[1].value(4), Some(vec![0xf0, 0, 0, 0]));
        assert_eq!(d[2].value(3), Some(vec![224, 0, 0, 0]));
    }

    #[test]
    fn host_match_is_read_back() {
        let mut e = nfproto(true);
        e.extend(addr_match(
            AddrField::Saddr,
            CmpOp::Eq,
            &"2001:db8::2/128".parse().unwrap(),
        ));
        e.push(masq());
        let d = roundtrip(&e);
        assert_eq!(
            matched_addr(&d, AddrField::Saddr),
            Some("2001:db8::2".parse().unwrap())
        );
        assert_eq!(matched_addr(&d, AddrField::Daddr), None);
    }

    /// The registers and data `nft --debug=netlink` shows for `iifname "veth1234abcd"` and
    /// `ether saddr 02:42:ac:11:00:09` in a bridge table.
    #[test]
    fn iifname_and_ether_saddr_as_nft_encodes_them() {
        let d = roundtrip(&iifname_match("veth1234abcd"));
        assert_eq!(
            (d[0].name.as_str(), d[0].u32(2), d[0].u32(1)),
            ("meta", Some(6), Some(1))
        );
        assert_eq!(d[1].value(3).unwrap(), b"veth1234abcd\0\0\0\0");
        assert_eq!(matched_iifname(&d).as_deref(), Some("veth1234abcd"));
        let d = roundtrip(&ether_saddr_match(&[2, 0x42, 0xac, 0x11, 0, 9]));
        // payload load 6b @ link header + 6 => reg 1
        assert_eq!(
            (d[0].u32(1), d[0].u32(2), d[0].u32(3), d[0].u32(4)),
            (Some(1), Some(0), Some(6), Some(6))
        );
        assert_eq!(d[1].value(3).unwrap(), [2, 0x42, 0xac, 0x11, 0, 9]);
        assert_eq!(matched_iifname(&d), None);
    }

    #[test]
    fn verdicts_round_trip() {
        for v in [
            Verdict::Accept,
            Verdict::Drop,
            Verdict::Return,
            Verdict::Goto("x".into()),
            Verdict::Jump("y".into()),
        ] {
            assert_eq!(roundtrip(&[verdict(&v)])[0].verdict(), Some(v));
        }
    }
}
