//! Where host-local keeps its reservations: the [`Store`] trait (the reference's
//! `backend.Store`), the reference's matching rules for `(containerID, ifname)` including
//! legacy id-only entries, and [`MemStore`] for tests. The on-disk store is in
//! [`super::disk`].

use std::collections::BTreeMap;
use std::net::IpAddr;

/// One reserved address and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The reserved address.
    pub ip: IpAddr,
    /// `CNI_CONTAINERID` of the owner (may be empty for a damaged entry).
    pub container_id: String,
    /// `CNI_IFNAME` of the owner; `None` for entries written by old reference versions,
    /// which stored the container ID alone.
    pub ifname: Option<String>,
}

impl Reservation {
    /// Parses a reservation file's content as the reference compares it: trimmed, then
    /// `<containerID>\r\n<ifname>`, or just `<containerID>` (legacy).
    pub fn parse(ip: IpAddr, content: &str) -> Reservation {
        let content = content.trim();
        match content.split_once("\r\n") {
            Some((id, ifname)) => Reservation {
                ip,
                container_id: id.to_string(),
                ifname: Some(ifname.to_string()),
            },
            None => Reservation {
                ip,
                container_id: content.to_string(),
                ifname: None,
            },
        }
    }

    /// The file content the reference writes: `<containerID>\r\n<ifname>`.
    pub fn content(id: &str, ifname: &str) -> String {
        format!("{}\r\n{ifname}", id.trim())
    }

    /// True when this entry was written for exactly `(id, ifname)`.
    pub fn is_exactly(&self, id: &str, ifname: &str) -> bool {
        self.container_id == id.trim() && self.ifname.as_deref() == Some(ifname)
    }

    /// True for a legacy id-only entry of `id`.
    pub fn is_legacy_of(&self, id: &str) -> bool {
        self.ifname.is_none() && self.container_id == id.trim()
    }
}

/// A reservation store. Callers hold the lock (see [`with_lock`]) around every sequence of
/// reads and writes that must be atomic; the range-set index `set` names the
/// `last_reserved_ip.<set>` entry.
pub trait Store {
    /// Takes the store's exclusive lock, waiting for it.
    fn lock(&mut self) -> anyhow::Result<()>;
    /// Releases the lock.
    fn unlock(&mut self) -> anyhow::Result<()>;
    /// Reserves `ip` for `(id, ifname)` and records it as the last address reserved from
    /// `set`. `Ok(false)` when the address is already taken.
    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, set: usize) -> anyhow::Result<bool>;
    /// The last address reserved from `set`, if known and readable.
    fn last_reserved_ip(&self, set: usize) -> Option<IpAddr>;
    /// Removes the reservation of `ip`; `Ok(false)` when there was none.
    fn release(&mut self, ip: IpAddr) -> anyhow::Result<bool>;
    /// Every reservation, in address order.
    fn list(&self) -> anyhow::Result<Vec<Reservation>>;

    /// The addresses held by `(id, ifname)`, counting legacy id-only entries of `id`
    /// (the reference's `GetByID`).
    fn get_by_id(&self, id: &str, ifname: &str) -> anyhow::Result<Vec<IpAddr>> {
        let all = self.list()?;
        Ok(all
            .iter()
            .filter(|r| r.is_exactly(id, ifname) || r.is_legacy_of(id))
            .map(|r| r.ip)
            .collect())
    }

    /// Releases everything `(id, ifname)` holds; only when it holds nothing in the current
    /// format are legacy id-only entries of `id` released (the reference's `ReleaseByID`).
    /// Returns the released addresses.
    fn release_by_id(&mut self, id: &str, ifname: &str) -> anyhow::Result<Vec<IpAddr>> {
        let all = self.list()?;
        let mut mine: Vec<IpAddr> = all
            .iter()
            .filter(|r| r.is_exactly(id, ifname))
            .map(|r| r.ip)
            .collect();
        if mine.is_empty() {
            mine = all
                .iter()
                .filter(|r| r.is_legacy_of(id))
                .map(|r| r.ip)
                .collect();
        }
        let mut released = Vec::new();
        for ip in mine {
            if self.release(ip)? {
                released.push(ip);
            }
        }
        Ok(released)
    }
}

/// Runs `f` with the store locked; unlocks afterwards whatever `f` returned.
pub fn with_lock<T>(
    store: &mut dyn Store,
    f: impl FnOnce(&mut dyn Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    store.lock()?;
    let out = f(store);
    let unlocked = store.unlock();
    let out = out?;
    unlocked?;
    Ok(out)
}

/// An in-memory store for tests: same semantics as the disk store, plus a check that every
/// write happens under the lock.
#[derive(Debug, Default)]
pub struct MemStore {
    entries: BTreeMap<IpAddr, Reservation>,
    last: BTreeMap<usize, IpAddr>,
    locked: bool,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry as an old reference version wrote it (container ID only).
    pub fn insert_legacy(&mut self, ip: IpAddr, id: &str) {
        self.entries.insert(
            ip,
            Reservation {
                ip,
                container_id: id.to_string(),
                ifname: None,
            },
        );
    }

    /// Sets `last_reserved_ip.<set>`.
    pub fn set_last_reserved(&mut self, set: usize, ip: IpAddr) {
        self.last.insert(set, ip);
    }

    fn assert_locked(&self) {
        assert!(self.locked, "MemStore written without holding the lock");
    }
}

impl Store for MemStore {
    fn lock(&mut self) -> anyhow::Result<()> {
        assert!(!self.locked, "MemStore locked twice");
        self.locked = true;
        Ok(())
    }

    fn unlock(&mut self) -> anyhow::Result<()> {
        self.locked = false;
        Ok(())
    }

    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, set: usize) -> anyhow::Result<bool> {
        self.assert_locked();
        if self.entries.contains_key(&ip) {
            return Ok(false);
        }
        self.entries.insert(
            ip,
            Reservation::parse(ip, &Reservation::content(id, ifname)),
        );
        self.last.insert(set, ip);
        Ok(true)
    }

    fn last_reserved_ip(&self, set: usize) -> Option<IpAddr> {
        self.last.get(&set).copied()
    }

    fn release(&mut self, ip: IpAddr) -> anyhow::Result<bool> {
        self.assert_locked();
        Ok(self.entries.remove(&ip).is_some())
    }

    fn list(&self) -> anyhow::Result<Vec<Reservation>> {
        Ok(self.entries.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_both_formats() {
        let r = Reservation::parse(ip("10.0.0.2"), "abc\r\neth0");
        assert_eq!(
            (r.container_id.as_str(), r.ifname.as_deref()),
            ("abc", Some("eth0"))
        );
        let r = Reservation::parse(ip("10.0.0.2"), "abc\n");
        assert_eq!((r.container_id.as_str(), r.ifname), ("abc", None));
        assert_eq!(Reservation::content(" abc ", "eth0"), "abc\r\neth0");
    }

    #[test]
    fn release_prefers_current_format_over_legacy() {
        let mut s = MemStore::new();
        with_lock(&mut s, |s| {
            assert!(s.reserve("c1", "eth0", ip("10.0.0.2"), 0)?);
            assert!(!s.reserve("c2", "eth0", ip("10.0.0.2"), 0)?);
            assert!(s.reserve("c1", "eth1", ip("10.0.0.3"), 0)?);
            Ok(())
        })
        .unwrap();
        s.insert_legacy(ip("10.0.0.4"), "c1");
        assert_eq!(
            s.get_by_id("c1", "eth0").unwrap(),
            vec![ip("10.0.0.2"), ip("10.0.0.4")]
        );
        assert_eq!(s.last_reserved_ip(0), Some(ip("10.0.0.3")));
        let released = with_lock(&mut s, |s| s.release_by_id("c1", "eth0")).unwrap();
        assert_eq!(
            released,
            vec![ip("10.0.0.2")],
            "legacy entry kept while a current one matched"
        );
        let released = with_lock(&mut s, |s| s.release_by_id("c1", "eth9")).unwrap();
        assert_eq!(
            released,
            vec![ip("10.0.0.4")],
            "legacy entry released when nothing else matched"
        );
        assert_eq!(s.get_by_id("c1", "eth1").unwrap(), vec![ip("10.0.0.3")]);
    }

    #[test]
    fn unlock_happens_on_error() {
        let mut s = MemStore::new();
        let r: anyhow::Result<()> = with_lock(&mut s, |_| anyhow::bail!("boom"));
        assert!(r.is_err());
        with_lock(&mut s, |_| Ok(())).unwrap();
    }
}
