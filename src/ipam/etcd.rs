//! A reservation [`Store`] kept in etcd v3, shared by every node of a cluster: the host-local
//! allocator runs unchanged on top of it. Layout under `<prefix><network>/`:
//!
//! - `ips/<address>` = `{"containerID":..,"ifname":..,"node":..}`, created by one transaction
//!   that compares the key's create revision with 0, so two nodes can never hold one address;
//! - `last/<node>/<set>` = the address this node reserved last from range set `<set>`, put in
//!   the same transaction (the round-robin start, per node as host-local's is per host).
//!
//! A release deletes a key only if it still holds the value this store read (or wrote), so a
//! node never frees an address someone else holds. The lock is etcd's transaction: `lock` and
//! `unlock` do nothing.

use super::store::{Reservation, Store};
use crate::etcd::{Client, Created};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The node (host name) that allocated it.
    pub node: String,
}

impl Owner {
    /// The value stored under the address key.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain strings serialize")
    }
}

/// One reservation as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The address.
    pub ip: IpAddr,
    /// Its holder; `None` when the value is not ours to read (never released by GC).
    pub owner: Option<Owner>,
    /// The value as stored (what a release compares with).
    pub raw: Vec<u8>,
}

/// The store of one network on one node.
pub struct EtcdStore {
    client: RefCell<Client>,
    /// `<prefix><network>/`.
    base: String,
    node: String,
    /// What the last listing (and our own writes) showed: address -> value.
    seen: RefCell<BTreeMap<IpAddr, Vec<u8>>>,
    last: RefCell<BTreeMap<usize, IpAddr>>,
}

impl EtcdStore {
    /// The store of `network` under `prefix` for `node`.
    pub fn new(client: Client, prefix: &str, network: &str, node: &str) -> EtcdStore {
        EtcdStore {
            client: RefCell::new(client),
            base: format!("{prefix}{network}/"),
            node: node.to_string(),
            seen: RefCell::default(),
            last: RefCell::default(),
        }
    }

    /// The key of an address.
    pub fn ip_key(&self, ip: IpAddr) -> String {
        format!("{}ips/{ip}", self.base)
    }

    fn last_key(&self, set: usize) -> String {
        format!("{}last/{}/{set}", self.base, self.node)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Every reservation of the network, with owners (one linearizable range request).
    pub fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        let kvs = self
            .client
            .borrow_mut()
            .range_prefix(self.base.as_bytes())?;
        let ips_prefix = format!("{}ips/", self.base);
        let last_prefix = format!("{}last/{}/", self.base, self.node);
        let (mut out, mut seen, mut last) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
        for kv in kvs {
            let key = String::from_utf8_lossy(&kv.key);
            if let Some(ip) = key.strip_prefix(&ips_prefix).and_then(|s| s.parse().ok()) {
                seen.insert(ip, kv.value.clone());
                out.push(Entry {
                    ip,
                    owner: serde_json::from_slice(&kv.value).ok(),
                    raw: kv.value,
                });
            } else if let Some(set) = key.strip_prefix(&last_prefix).and_then(|s| s.parse().ok())
                && let Ok(ip) = String::from_utf8_lossy(&kv.value).parse()
            {
                last.insert(set, ip);
            }
        }
        out.sort_by_key(|e| e.ip);
        *self.seen.borrow_mut() = seen;
        *self.last.borrow_mut() = last;
        Ok(out)
    }
}

impl Store for EtcdStore {
    fn lock(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    fn unlock(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, set: usize) -> anyhow::Result<bool> {
        let value = Owner {
            container_id: id.trim().to_string(),
            ifname: ifname.to_string(),
            node: self.node.clone(),
        }
        .encode();
        let (key, last_key, last) = (self.ip_key(ip), self.last_key(set), ip.to_string());
        let created = self
            .client
            .borrow_mut()
            .create(
                key.as_bytes(),
                &value,
                &[(last_key.as_bytes(), last.as_bytes())],
            )
            .with_context(|| format!("reserving {ip} in etcd"))?;
        let ours = match created {
            Created::Yes => true,
            // Our own write, committed by an attempt whose answer was lost.
            Created::Exists(v) => v == value,
        };
        if ours {
            self.seen.borrow_mut().insert(ip, value);
            self.last.borrow_mut().insert(set, ip);
        }
        Ok(ours)
    }

    fn last_reserved_ip(&self, set: usize) -> Option<IpAddr> {
        self.last.borrow().get(&set).copied()
    }

    fn release(&mut self, ip: IpAddr) -> anyhow::Result<bool> {
        let Some(value) = self.seen.borrow().get(&ip).cloned() else {
            return Ok(false);
        };
        let key = self.ip_key(ip);
        let deleted = self
            .client
            .borrow_mut()
            .delete_if(key.as_bytes(), &value)
            .with_context(|| format!("releasing {ip} in etcd"))?;
        self.seen.borrow_mut().remove(&ip);
        Ok(deleted)
    }

    fn list(&self) -> anyhow::Result<Vec<Reservation>> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|e| Reservation {
                ip: e.ip,
                container_id: e
                    .owner
                    .as_ref()
                    .map_or(String::new(), |o| o.container_id.clone()),
                ifname: Some(e.owner.map_or(String::new(), |o| o.ifname)),
            })
            .collect())
    }
}
