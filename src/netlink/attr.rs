//! Attribute helpers over neli's `Rtattr`: build one from any payload neli can serialise, nest
//! a list, serialise a message to bytes, and read typed values back out of received payloads.
//! A plain `u16` serves as the attribute type wherever neli has no enum (DEPS.md 1.2).

use anyhow::{Context, ensure};
use neli::consts::rtnl::RtaType;
use neli::rtnl::{Rtattr, RtattrBuilder};
use neli::types::{Buffer, RtBuffer};
use neli::{FromBytesWithInput, Size, ToBytes};
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An attribute with its payload already serialised.
pub(crate) type Attr<T> = Rtattr<T, Buffer>;

/// Set on attributes whose payload is a list of attributes. rtnetlink mostly does not care,
/// but a few places (IFLA_PROTINFO for AF_BRIDGE) change meaning with it.
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
/// Strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from a received attribute type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One attribute of type `t` holding `p` (integers native-endian, `&str` NUL-terminated).
pub(crate) fn attr<T: RtaType, P: Size + ToBytes>(t: T, p: P) -> anyhow::Result<Attr<T>> {
    let len = p.unpadded_size() + 4;
    ensure!(
        len <= usize::from(u16::MAX),
        "netlink attribute of {len} bytes is too large"
    );
    Ok(RtattrBuilder::default()
        .rta_type(t)
        .rta_payload(p)
        .build()?)
}

/// One attribute whose payload is the list `children`.
pub(crate) fn nest<T: RtaType, U: RtaType>(
    t: T,
    children: Vec<Attr<U>>,
) -> anyhow::Result<Attr<T>> {
    attr(t, children.into_iter().collect::<RtBuffer<U, Buffer>>())
}

/// An address attribute: 4 or 16 bytes in network order.
pub(crate) fn ip_attr<T: RtaType>(t: T, ip: IpAddr) -> anyhow::Result<Attr<T>> {
    match ip {
        IpAddr::V4(v4) => attr(t, v4.octets()),
        IpAddr::V6(v6) => attr(t, v6.octets()),
    }
}

/// Serialises a message or attribute, padding included.
pub(crate) fn to_bytes<P: Size + ToBytes>(p: &P) -> anyhow::Result<Vec<u8>> {
    let mut c = Cursor::new(vec![0u8; p.padded_size()]);
    p.to_bytes(&mut c).context("serialise netlink message")?;
    Ok(c.into_inner())
}

/// Parses a received message body (`ifinfomsg` + attributes, ...).
pub(crate) fn parse<M: FromBytesWithInput<Input = usize>>(b: &[u8]) -> anyhow::Result<M> {
    M::from_bytes_with_input(&mut Cursor::new(b), b.len())
        .with_context(|| format!("parse {}", std::any::type_name::<M>()))
}

/// Parses a payload holding nested attributes.
pub(crate) fn nested<U: RtaType>(p: &[u8]) -> anyhow::Result<RtBuffer<U, Buffer>> {
    parse(p)
}

/// The attribute's type number without the nested/byte-order flag bits.
pub(crate) fn kind_of<T: Copy + Into<u16>>(a: &Attr<T>) -> u16 {
    (*a.rta_type()).into() & NLA_TYPE_MASK
}

/// The payload of the first attribute of type `t` in `attrs`.
pub(crate) fn find<T: Copy + Into<u16>>(attrs: &RtBuffer<T, Buffer>, t: u16) -> Option<&[u8]> {
    attrs
        .iter()
        .find(|a| kind_of(a) == t)
        .map(|a| a.rta_payload().as_ref())
}

/// A `u8` payload.
pub(crate) fn u8_of(p: &[u8]) -> Option<u8> {
    p.first().copied()
}

/// A native-endian `u32` payload.
pub(crate) fn u32_of(p: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

/// A native-endian `i32` payload.
pub(crate) fn i32_of(p: &[u8]) -> Option<i32> {
    u32_of(p).map(|v| v as i32)
}

/// A C string payload (up to the first NUL).
pub(crate) fn str_of(p: &[u8]) -> String {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    String::from_utf8_lossy(&p[..end]).into_owned()
}

/// A 6-byte Ethernet address payload (other lengths, e.g. tunnels, give `None`).
pub(crate) fn mac_of(p: &[u8]) -> Option<[u8; 6]> {
    p.try_into().ok()
}

/// A 4- or 16-byte address payload.
pub(crate) fn ip_of(p: &[u8]) -> Option<IpAddr> {
    match p.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(p).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p).ok()?))),
        _ => None,
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case; `-` separators accepted too).
pub fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let bad = || anyhow::anyhow!("invalid MAC address {s:?}");
    let parts: Vec<&str> = s.split([':', '-']).collect();
    ensure!(parts.len() == 6, bad());
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        ensure!(
            p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()),
            bad()
        );
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_pads_payload_but_not_length() {
        // rta_len 4+5 = 9 ("abcd\0"), padded to 12 on the wire.
        let a = attr(3u16, "abcd").unwrap();
        assert_eq!(
            to_bytes(&a).unwrap(),
            [9, 0, 3, 0, b'a', b'b', b'c', b'd', 0, 0, 0, 0]
        );
    }

    #[test]
    fn nested_attrs_round_trip() {
        let n = nest(
            18u16,
            vec![attr(1u16, "veth").unwrap(), attr(7u16, 5u32).unwrap()],
        )
        .unwrap();
        let bytes = to_bytes(&n).unwrap();
        assert_eq!(bytes[..4], [4 + 12 + 8, 0, 18, 0]);
        let inner = nested::<u16>(&bytes[4..]).unwrap();
        assert_eq!(find(&inner, 1).map(str_of).as_deref(), Some("veth"));
        assert_eq!(find(&inner, 7).and_then(u32_of), Some(5));
        assert_eq!(find(&inner, 9), None);
    }

    #[test]
    fn readers_check_lengths() {
        assert_eq!(u32_of(&[1, 0]), None);
        assert_eq!(mac_of(&[1, 2, 3, 4]), None);
        assert_eq!(ip_of(&[10, 0, 0, 1]), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(ip_of(&[1, 2, 3]), None);
        assert_eq!(str_of(b"eth0\0\0"), "eth0");
        assert_eq!(
            mac_string(&[0xaa, 0xbb, 0xcc, 0, 1, 0x0f]),
            "aa:bb:cc:00:01:0f"
        );
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:42:AC:11:00:0f").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 0x0f]
        );
        assert_eq!(
            parse_mac("02-42-ac-11-00-0f").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 0x0f]
        );
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:0f:01",
            "2:42:ac:11:00:0f",
            "zz:42:ac:11:00:0f",
            "+2:42:ac:11:00:0f",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad:?}");
        }
        let mac = [0xde, 0xad, 0xbe, 0xef, 0, 1];
        assert_eq!(parse_mac(&mac_string(&mac)).unwrap(), mac);
    }

    #[test]
    fn oversized_attr_is_refused() {
        let big = Buffer::from(vec![0u8; 70_000]);
        assert!(attr(1u16, big).is_err());
    }
}
