//! Address ranges and range sets for host-local: canonicalisation, membership, overlap and
//! capacity. Pure logic, no I/O. Mirrors `Range.Canonicalize`, `Range.Contains`,
//! `Range.Overlaps` and `RangeSet.Canonicalize` of the reference allocator (FEATURES.md 6.10),
//! with two additions: `rangeStart <= rangeEnd` and a gateway inside the subnet are required,
//! and the network address (and the IPv4 broadcast address) are never handed out even when a
//! range includes them.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A canonical range: every field set, all inside `subnet`, `range_start <= range_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet, without host bits.
    pub subnet: IpNet,
    /// First address handed out (inclusive).
    pub range_start: IpAddr,
    /// Last address handed out (inclusive).
    pub range_end: IpAddr,
    /// Gateway returned with every address; never handed out.
    pub gateway: IpAddr,
}

/// Why a range was rejected, and which of its keys is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError {
    /// The config key: `subnet`, `rangeStart`, `rangeEnd` or `gateway`.
    pub field: &'static str,
    /// What is wrong.
    pub msg: String,
}

impl RangeError {
    fn new(field: &'static str, msg: String) -> Self {
        RangeError { field, msg }
    }
}

/// The address as a number; IPv4 in the low 32 bits.
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`ip_to_u128`] for the family of `like`.
pub fn u128_to_ip(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

impl Range {
    /// Builds a canonical range as the reference does: `subnet` must have no host bits and
    /// leave at least two host bits (IPv4 /30, IPv6 /126 at most); `rangeStart` defaults to
    /// network+1, `rangeEnd` to broadcast−1 (IPv4) or the last address (IPv6), `gateway` to
    /// network+1. IPv4-mapped IPv6 addresses are taken as IPv4.
    pub fn new(
        subnet: IpNet,
        range_start: Option<IpAddr>,
        range_end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Range, RangeError> {
        if subnet.addr() != subnet.network() {
            return Err(RangeError::new(
                "subnet",
                format!(
                    "{subnet} has host bits set; for a prefix of length {} the network address is {}",
                    subnet.prefix_len(),
                    subnet.network()
                ),
            ));
        }
        // Beyond the reference: a /0 would put every destination on-link (its "gateway" is
        // 0.0.0.1) and hand out 0.0.0.2; no real pool is that.
        if subnet.prefix_len() == 0 {
            return Err(RangeError::new(
                "subnet",
                format!("{subnet} spans the whole address space; give the pool's own network"),
            ));
        }
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(RangeError::new(
                "subnet",
                format!("network {subnet} too small to allocate from"),
            ));
        }
        let net = ip_to_u128(subnet.network());
        let first = u128_to_ip(net + 1, subnet.network());
        let last = match subnet {
            IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.broadcast()) - 1)),
            IpNet::V6(n) => IpAddr::V6(n.broadcast()),
        };
        let inside = |field: &'static str, ip: Option<IpAddr>, default: IpAddr| {
            let ip = ip.map(|a| a.to_canonical()).unwrap_or(default);
            if subnet.contains(&ip) {
                Ok(ip)
            } else {
                Err(RangeError::new(
                    field,
                    format!("{field} {ip} not in network {subnet}"),
                ))
            }
        };
        let range_start = inside("rangeStart", range_start, first)?;
        let range_end = inside("rangeEnd", range_end, last)?;
        let gateway = inside("gateway", gateway, first)?;
        if ip_to_u128(range_start) > ip_to_u128(range_end) {
            return Err(RangeError::new(
                "rangeStart",
                format!("rangeStart {range_start} is after rangeEnd {range_end}"),
            ));
        }
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }

    /// True when `ip` lies between `range_start` and `range_end` (same family).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.range_start.is_ipv4()
            && (ip_to_u128(self.range_start)..=ip_to_u128(self.range_end)).contains(&ip_to_u128(ip))
    }

    /// True when `ip` may be handed out: inside the range and not the gateway, the network
    /// address or (IPv4) the broadcast address.
    pub fn is_assignable(&self, ip: IpAddr) -> bool {
        self.contains(ip) && self.why_reserved(ip.to_canonical()).is_none()
    }

    /// Why an address of this subnet is never handed out, if it is one of those.
    pub fn why_reserved(&self, ip: IpAddr) -> Option<&'static str> {
        if ip == self.gateway {
            Some("the gateway")
        } else if ip == self.subnet.network() {
            Some("the network address")
        } else if matches!(self.subnet, IpNet::V4(_)) && ip == self.subnet.broadcast() {
            Some("the broadcast address")
        } else {
            None
        }
    }

    /// True when the two ranges share an address (ranges of different families never do).
    pub fn overlaps(&self, other: &Range) -> bool {
        self.range_start.is_ipv4() == other.range_start.is_ipv4()
            && ip_to_u128(self.range_start) <= ip_to_u128(other.range_end)
            && ip_to_u128(other.range_start) <= ip_to_u128(self.range_end)
    }

    /// How many addresses this range can hand out.
    pub fn capacity(&self) -> u128 {
        let span = ip_to_u128(self.range_end) - ip_to_u128(self.range_start);
        let mut reserved = vec![self.gateway, self.subnet.network()];
        if matches!(self.subnet, IpNet::V4(_)) {
            reserved.push(self.subnet.broadcast());
        }
        reserved.sort();
        reserved.dedup();
        let skipped = reserved.iter().filter(|ip| self.contains(**ip)).count() as u128;
        // span + 1 addresses minus the skipped ones, without overflowing on an IPv6 /0.
        if skipped == 0 {
            span.saturating_add(1)
        } else {
            span - (skipped - 1)
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// One or more ranges of one family that together provide one address (a "range set").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(Vec<Range>);

impl RangeSet {
    /// Checks the set as `RangeSet.Canonicalize` does: not empty, one family, no two ranges
    /// overlapping. The error names the ranges at fault.
    pub fn new(ranges: Vec<Range>) -> Result<RangeSet, String> {
        let Some(first) = ranges.first() else {
            return Err("empty range set".into());
        };
        if let Some(r) = ranges
            .iter()
            .find(|r| r.range_start.is_ipv4() != first.range_start.is_ipv4())
        {
            return Err(format!("mixed address families: {first} and {r}"));
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(format!("ranges {a} and {b} overlap"));
            }
        }
        Ok(RangeSet(ranges))
    }

    /// The ranges, in configuration order.
    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    /// True when the set holds IPv4 ranges.
    pub fn is_ipv4(&self) -> bool {
        self.0[0].range_start.is_ipv4()
    }

    /// The range holding `ip` between its start and end.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    /// True when some range holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// True when `ip` may be handed out from this set.
    pub fn is_assignable(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some_and(|r| r.is_assignable(ip))
    }

    /// True when any range of `self` overlaps any range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    /// How many addresses the set can hand out (saturating).
    pub fn capacity(&self) -> u128 {
        self.0
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.capacity()))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Range::to_string).collect();
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn range(s: &str) -> Range {
        Range::new(net(s), None, None, None).unwrap()
    }

    #[test]
    fn ipv4_defaults() {
        let r = range("192.0.2.0/24");
        assert_eq!(
            (r.range_start, r.range_end, r.gateway),
            (ip("192.0.2.1"), ip("192.0.2.254"), ip("192.0.2.1"))
        );
        let r = range("10.0.0.0/30");
        assert_eq!(
            (r.range_start, r.range_end),
            (ip("10.0.0.1"), ip("10.0.0.2"))
        );
        assert_eq!(r.capacity(), 1, "only .2: .1 is the gateway");
        assert_eq!(r.to_string(), "10.0.0.1-10.0.0.2");
    }

    #[test]
    fn ipv6_defaults_end_at_the_last_address() {
        let r = range("2001:db8:1::/64");
        assert_eq!(r.range_start, ip("2001:db8:1::1"));
        assert_eq!(r.range_end, ip("2001:db8:1::ffff:ffff:ffff:ffff"));
        assert_eq!(r.gateway, ip("2001:db8:1::1"));
        assert_eq!(r.capacity(), (1u128 << 64) - 2);
    }

    #[test]
    fn too_small_and_host_bits() {
        for small in [
            "192.0.2.0/31",
            "192.0.2.0/32",
            "2001:db8::/127",
            "2001:db8::/128",
        ] {
            let e = Range::new(net(small), None, None, None).unwrap_err();
            assert_eq!(e.field, "subnet");
            assert!(
                e.msg.contains("too small to allocate from"),
                "{small}: {e:?}"
            );
        }
        let e = Range::new(net("192.0.2.5/24"), None, None, None).unwrap_err();
        assert!(e.msg.contains("the network address is 192.0.2.0"), "{e:?}");
        for all in ["0.0.0.0/0", "::/0"] {
            let e = Range::new(net(all), None, None, None).unwrap_err();
            assert!(e.msg.contains("whole address space"), "{all}: {e:?}");
        }
        let e = Range::new(net("2001:db8:24:19ff::/63"), None, None, None).unwrap_err();
        assert!(e.msg.contains("2001:db8:24:19fe::"), "{e:?}");
    }

    #[test]
    fn bounds_are_checked() {
        let n = net("192.0.2.0/24");
        let e = Range::new(n, Some(ip("192.0.3.0")), None, None).unwrap_err();
        assert_eq!(
            (e.field, e.msg.as_str()),
            (
                "rangeStart",
                "rangeStart 192.0.3.0 not in network 192.0.2.0/24"
            )
        );
        let e = Range::new(n, None, Some(ip("192.0.4.0")), None).unwrap_err();
        assert_eq!(e.field, "rangeEnd");
        let e = Range::new(n, None, None, Some(ip("10.0.0.1"))).unwrap_err();
        assert_eq!(e.field, "gateway");
        let e = Range::new(n, Some(ip("192.0.2.50")), Some(ip("192.0.2.40")), None).unwrap_err();
        assert_eq!(e.field, "rangeStart");
        assert!(e.msg.contains("after rangeEnd"));
        let e = Range::new(n, Some(ip("2001:db8::1")), None, None).unwrap_err();
        assert_eq!(e.field, "rangeStart", "other family");
    }

    #[test]
    fn explicit_fields_and_mapped_addresses() {
        let r = Range::new(
            net("10.1.0.0/16"),
            Some(ip("::ffff:10.1.2.10")),
            Some(ip("10.1.2.20")),
            Some(ip("10.1.254.254")),
        )
        .unwrap();
        assert_eq!(r.range_start, ip("10.1.2.10"));
        assert!(r.contains(ip("10.1.2.10")) && r.contains(ip("10.1.2.20")));
        assert!(
            !r.contains(ip("10.1.2.9"))
                && !r.contains(ip("10.1.2.21"))
                && !r.contains(ip("2001:db8::1"))
        );
        assert_eq!(r.capacity(), 11);
    }

    #[test]
    fn never_assignable() {
        let r = Range::new(
            net("10.0.0.0/29"),
            Some(ip("10.0.0.0")),
            Some(ip("10.0.0.7")),
            None,
        )
        .unwrap();
        assert!(!r.is_assignable(ip("10.0.0.0")));
        assert!(!r.is_assignable(ip("10.0.0.1")));
        assert!(!r.is_assignable(ip("10.0.0.7")));
        assert!(r.is_assignable(ip("10.0.0.2")));
        assert_eq!(r.capacity(), 5);
        let r6 = Range::new(
            net("2001:db8::/126"),
            Some(ip("2001:db8::")),
            None,
            Some(ip("2001:db8::3")),
        )
        .unwrap();
        assert!(!r6.is_assignable(ip("2001:db8::")));
        assert!(r6.is_assignable(ip("2001:db8::1")));
        assert_eq!(r6.capacity(), 2);
    }

    #[test]
    fn sets_reject_overlap_and_mixed_families() {
        let a = Range::new(
            net("10.0.0.0/24"),
            Some(ip("10.0.0.10")),
            Some(ip("10.0.0.20")),
            None,
        )
        .unwrap();
        let b = Range::new(
            net("10.0.0.0/24"),
            Some(ip("10.0.0.20")),
            Some(ip("10.0.0.30")),
            None,
        )
        .unwrap();
        let c = Range::new(
            net("10.0.0.0/24"),
            Some(ip("10.0.0.21")),
            Some(ip("10.0.0.30")),
            None,
        )
        .unwrap();
        let e = RangeSet::new(vec![a.clone(), b]).unwrap_err();
        assert_eq!(
            e,
            "ranges 10.0.0.10-10.0.0.20 and 10.0.0.20-10.0.0.30 overlap"
        );
        let set = RangeSet::new(vec![a.clone(), c.clone()]).unwrap();
        assert_eq!(set.to_string(), "10.0.0.10-10.0.0.20,10.0.0.21-10.0.0.30");
        assert_eq!(set.capacity(), 21);
        assert!(
            RangeSet::new(vec![a, range("2001:db8::/64")])
                .unwrap_err()
                .contains("mixed address families")
        );
        assert_eq!(RangeSet::new(vec![]).unwrap_err(), "empty range set");
        let other = RangeSet::new(vec![range("10.0.0.0/16")]).unwrap();
        assert!(set.overlaps(&other));
        assert!(!set.overlaps(&RangeSet::new(vec![range("10.1.0.0/16")]).unwrap()));
        assert!(!set.overlaps(&RangeSet::new(vec![range("2001:db8::/64")]).unwrap()));
    }
}
