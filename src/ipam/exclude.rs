//! `exclude`: CIDRs never handed out (USER-ASKS row 19). Applied at the store boundary, so the
//! allocator stays as it is: [`Excluding`] wraps any [`Store`] and refuses to reserve an
//! excluded address, which the allocator treats as taken and skips. [`Exclude::count_in`]
//! keeps STATUS's free-address count exact.

use super::range::{RangeSet, ip_to_u128};
use super::store::{Reservation, Store};
use crate::error::bad_config;
use ipnet::IpNet;
use serde_json::Value;
use std::net::IpAddr;

/// A set of excluded CIDRs, none inside another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclude(Vec<IpNet>);

impl Exclude {
    /// Parses a JSON list of CIDRs (a bare address means one address) at `path`.
    pub fn parse(v: Option<&Value>, path: &str) -> anyhow::Result<Exclude> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Exclude::default());
        };
        let list = v
            .as_array()
            .ok_or_else(|| bad_config(format!("{path}: expected a list of CIDRs")))?;
        let mut nets = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let s = item
                .as_str()
                .ok_or_else(|| bad_config(format!("{path}[{i}]: expected a string")))?;
            let net = match s.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match s.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(bad_config(format!("{path}[{i}]: invalid CIDR {s:?}"))),
                },
            };
            nets.push(net);
        }
        Ok(Exclude::new(nets))
    }

    /// The set of `nets`, nested ones dropped (CIDRs either nest or are disjoint).
    pub fn new(mut nets: Vec<IpNet>) -> Exclude {
        nets.sort_by_key(|n| n.prefix_len());
        let mut kept: Vec<IpNet> = Vec::new();
        for n in nets {
            if !kept.iter().any(|k| k.contains(&n)) {
                kept.push(n);
            }
        }
        Exclude(kept)
    }

    /// True when `ip` is excluded.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// True when nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many assignable addresses of `set` are excluded.
    pub fn count_in(&self, set: &RangeSet) -> u128 {
        let mut total = 0;
        for range in set.ranges() {
            for n in &self.0 {
                if n.addr().is_ipv4() != range.range_start.is_ipv4() {
                    continue;
                }
                let lo = ip_to_u128(n.network()).max(ip_to_u128(range.range_start));
                let hi = ip_to_u128(n.broadcast()).min(ip_to_u128(range.range_end));
                if lo > hi {
                    continue;
                }
                let mut reserved = vec![range.gateway, range.subnet.network()];
                if range.subnet.addr().is_ipv4() {
                    reserved.push(range.subnet.broadcast());
                }
                reserved.sort();
                reserved.dedup();
                let inside = reserved
                    .iter()
                    .filter(|ip| (lo..=hi).contains(&ip_to_u128(**ip)))
                    .count() as u128;
                total += (hi - lo).saturating_add(1).saturating_sub(inside);
            }
        }
        total
    }
}

/// A store that never reserves an excluded address.
pub struct Excluding<'a> {
    /// The store holding the reservations.
    pub inner: &'a mut dyn Store,
    /// What is never handed out.
    pub exclude: &'a Exclude,
}

impl Store for Excluding<'_> {
    fn lock(&mut self) -> anyhow::Result<()> {
        self.inner.lock()
    }
    fn unlock(&mut self) -> anyhow::Result<()> {
        self.inner.unlock()
    }
    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, set: usize) -> anyhow::Result<bool> {
        if self.exclude.contains(ip) {
            return Ok(false);
        }
        self.inner.reserve(id, ifname, ip, set)
    }
    fn last_reserved_ip(&self, set: usize) -> Option<IpAddr> {
        self.inner.last_reserved_ip(set)
    }
    fn release(&mut self, ip: IpAddr) -> anyhow::Result<bool> {
        self.inner.release(ip)
    }
    fn list(&self) -> anyhow::Result<Vec<Reservation>> {
        self.inner.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::allocator::{allocate, free_addresses};
    use crate::ipam::{MemStore, Range};
    use serde_json::json;

    fn set(subnet: &str) -> RangeSet {
        RangeSet::new(vec![
            Range::new(subnet.parse().unwrap(), None, None, None).unwrap(),
        ])
        .unwrap()
    }

    #[test]
    fn parse_and_nesting() {
        let e = Exclude::parse(
            Some(&json!(["10.0.0.0/30", "10.0.0.2", "10.0.0.8/29"])),
            "ipam.exclude",
        )
        .unwrap();
        assert_eq!(e.0.len(), 2, "10.0.0.2 lies in 10.0.0.0/30");
        assert!(e.contains("10.0.0.3".parse().unwrap()));
        assert!(!e.contains("10.0.0.4".parse().unwrap()));
        assert!(Exclude::parse(Some(&json!(["x"])), "ipam.exclude").is_err());
        assert!(Exclude::parse(Some(&json!("10.0.0.0/8")), "ipam.exclude").is_err());
        assert!(Exclude::parse(None, "ipam.exclude").unwrap().is_empty());
    }

    #[test]
    fn count_skips_gateway_network_and_broadcast() {
        let s = set("10.0.0.0/29"); // assignable: .2 .. .6 (gateway .1)
        let e = Exclude::new(vec!["10.0.0.0/30".parse().unwrap()]);
        assert_eq!(e.count_in(&s), 2, ".2 and .3");
        let all = Exclude::new(vec!["10.0.0.0/24".parse().unwrap()]);
        assert_eq!(all.count_in(&s), s.capacity());
        let v6 = Exclude::new(vec!["fd00::/64".parse().unwrap()]);
        assert_eq!(v6.count_in(&s), 0);
    }

    #[test]
    fn allocation_skips_excluded_addresses() {
        let s = set("10.0.0.0/29");
        let e = Exclude::new(vec!["10.0.0.2/31".parse().unwrap()]);
        let mut mem = MemStore::new();
        let mut store = Excluding {
            inner: &mut mem,
            exclude: &e,
        };
        let mut got = Vec::new();
        for i in 0..3 {
            let ips = allocate(
                &mut store,
                std::slice::from_ref(&s),
                &format!("c{i}"),
                "eth0",
                &[None],
            );
            got.push(ips.unwrap()[0].address.addr().to_string());
        }
        assert_eq!(got, ["10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        assert!(allocate(&mut store, std::slice::from_ref(&s), "c9", "eth0", &[None]).is_err());
        let left = free_addresses(&s, &mem.list().unwrap()) - e.count_in(&s);
        assert_eq!(left, 0);
    }
}
