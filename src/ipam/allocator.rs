//! The host-local allocation algorithm over a [`Store`] (the reference's `IPAllocator`,
//! FEATURES.md 6.10): one address per range set; a requested address must lie in the set and
//! be free; otherwise round-robin starting after `last_reserved_ip.<set>` and wrapping around,
//! never handing out the gateway, the network address or the IPv4 broadcast address.
//!
//! One deliberate difference: an ADD repeated for a `(containerID, ifname)` that already
//! holds an address in a set gets that address back, where the reference fails with
//! "duplicate allocation is not allowed".

use super::range::{Range, RangeSet, ip_to_u128, u128_to_ip};
use super::store::{Reservation, Store, with_lock};
use crate::types::{Attachment, IpConfig};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;

/// What [`get`] produced for one range set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The address (with the subnet's prefix) and the range's gateway; no interface index.
    pub config: IpConfig,
    /// False when `(id, ifname)` already held the address before this call.
    pub newly_reserved: bool,
}

/// Allocates one address from every range set for `(id, ifname)` under the store's lock.
/// `requested[i]` is the address asked for in set `i`, if any. On any failure the addresses
/// reserved by this call are released again.
pub fn allocate(
    store: &mut dyn Store,
    sets: &[RangeSet],
    id: &str,
    ifname: &str,
    requested: &[Option<IpAddr>],
) -> anyhow::Result<Vec<IpConfig>> {
    with_lock(store, |s| {
        let mut fresh = Vec::new();
        let mut out = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            let want = requested.get(i).copied().flatten();
            match get(s, set, i, id, ifname, want) {
                Ok(a) => {
                    if a.newly_reserved {
                        fresh.push(a.config.address.addr());
                    }
                    out.push(a.config);
                }
                Err(e) => {
                    for ip in fresh {
                        let _ = s.release(ip);
                    }
                    return Err(e.context(format!("failed to allocate for range {i}")));
                }
            }
        }
        Ok(out)
    })
}

/// Allocates from range set number `index` (the caller holds the lock).
pub fn get(
    store: &mut dyn Store,
    set: &RangeSet,
    index: usize,
    id: &str,
    ifname: &str,
    requested: Option<IpAddr>,
) -> anyhow::Result<Allocation> {
    let all = store.list()?;
    let held: Vec<IpAddr> = all
        .iter()
        .filter(|r| r.is_exactly(id, ifname) && set.contains(r.ip))
        .map(|r| r.ip)
        .collect();
    if let Some(want) = requested {
        return get_requested(store, set, index, id, ifname, want.to_canonical(), &held);
    }
    if let Some(&ip) = held.first() {
        let range = set.range_for(ip).expect("filtered on set.contains");
        return Ok(Allocation {
            config: ip_config(range, ip),
            newly_reserved: false,
        });
    }
    let taken: HashSet<IpAddr> = all.iter().map(|r| r.ip).collect();
    for (range, ip) in candidates(set, store.last_reserved_ip(index)) {
        if !taken.contains(&ip) && store.reserve(id, ifname, ip, index)? {
            return Ok(Allocation {
                config: ip_config(range, ip),
                newly_reserved: true,
            });
        }
    }
    anyhow::bail!("no IP addresses available in range set: {set}")
}

fn get_requested(
    store: &mut dyn Store,
    set: &RangeSet,
    index: usize,
    id: &str,
    ifname: &str,
    want: IpAddr,
    held: &[IpAddr],
) -> anyhow::Result<Allocation> {
    let Some(range) = set.range_for(want) else {
        anyhow::bail!("requested IP address {want} is not in range set {set}");
    };
    if let Some(why) = range.why_reserved(want) {
        anyhow::bail!("requested IP address {want} is {why} of range set {set}");
    }
    if held.contains(&want) {
        return Ok(Allocation {
            config: ip_config(range, want),
            newly_reserved: false,
        });
    }
    if !store.reserve(id, ifname, want, index)? {
        anyhow::bail!(
            "requested IP address {want} is not available in range set {set}: already reserved"
        );
    }
    Ok(Allocation {
        config: ip_config(range, want),
        newly_reserved: true,
    })
}

fn ip_config(range: &Range, ip: IpAddr) -> IpConfig {
    let address = IpNet::new(ip, range.subnet.prefix_len()).expect("prefix of a valid subnet");
    IpConfig {
        interface: None,
        address,
        gateway: Some(range.gateway),
    }
}

/// The addresses of `set` in round-robin order: from just after `last` when it lies in the
/// set (else from the first range's start), across the ranges in order, wrapping around, each
/// address once; only assignable ones are yielded. Mirrors the reference's `RangeIter`.
pub fn candidates(set: &RangeSet, last: Option<IpAddr>) -> impl Iterator<Item = (&Range, IpAddr)> {
    let ranges = set.ranges();
    let after_last = last.and_then(|l| ranges.iter().position(|r| r.contains(l)).map(|i| (i, l)));
    let start = match after_last {
        Some((i, l)) => successor(ranges, i, ip_to_u128(l.to_canonical())),
        None => (0, ip_to_u128(ranges[0].range_start)),
    };
    let mut pos = Some(start);
    std::iter::from_fn(move || {
        let (i, v) = pos?;
        let next = successor(ranges, i, v);
        pos = (next != start).then_some(next);
        Some((&ranges[i], u128_to_ip(v, ranges[i].range_start)))
    })
    .filter(|(r, ip)| r.is_assignable(*ip))
}

/// The position after address `v` of range `i`: the next address, or the next range's start.
fn successor(ranges: &[Range], i: usize, v: u128) -> (usize, u128) {
    if v == ip_to_u128(ranges[i].range_end) {
        let j = (i + 1) % ranges.len();
        (j, ip_to_u128(ranges[j].range_start))
    } else {
        (i, v + 1)
    }
}

/// Releases everything `(id, ifname)` holds (legacy id-only entries as the reference does)
/// under the lock; returns the released addresses.
pub fn release(store: &mut dyn Store, id: &str, ifname: &str) -> anyhow::Result<Vec<IpAddr>> {
    with_lock(store, |s| s.release_by_id(id, ifname))
}

/// GC: under the lock, releases every reservation whose owner is not in `valid`. A legacy
/// id-only entry stays when any valid attachment has its container ID. An empty `valid`
/// releases everything. Returns the released addresses.
pub fn release_all_but(store: &mut dyn Store, valid: &[Attachment]) -> anyhow::Result<Vec<IpAddr>> {
    let keep = |r: &Reservation| match &r.ifname {
        Some(ifname) => valid
            .iter()
            .any(|a| a.container_id == r.container_id && &a.ifname == ifname),
        None => valid.iter().any(|a| a.container_id == r.container_id),
    };
    with_lock(store, |s| {
        let mut released = Vec::new();
        for r in s.list()? {
            if !keep(&r) && s.release(r.ip)? {
                released.push(r.ip);
            }
        }
        Ok(released)
    })
}

/// How many addresses of `set` are still free, given the current reservations.
pub fn free_addresses(set: &RangeSet, reservations: &[Reservation]) -> u128 {
    let used = reservations
        .iter()
        .filter(|r| set.is_assignable(r.ip))
        .count() as u128;
    set.capacity().saturating_sub(used)
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
