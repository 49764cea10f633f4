//! `cluster-ipam`: IPAM for a whole cluster, its pool kept in etcd v3 (the role whereabouts or
//! calico-ipam play). Ranges, routes, `resolvConf` and requested addresses are host-local's
//! keys and the host-local allocator runs unchanged over [`EtcdStore`], so two nodes can never
//! hand out one address (each reservation is one compare-and-create transaction). Its own
//! keys, in `ipam`:
//! `etcdEndpoints` (URLs, failed over in order), `etcdCACert`/`etcdCert`/`etcdKey` (PEM files
//! for TLS with a client certificate), `etcdPrefix` (default `/cni-multi/ipam/`), `exclude`
//! (CIDRs never handed out) and `nodeName` (default: the host name).
//!
//! DEL releases only the keys holding this attachment; with etcd unreachable it fails (code
//! 11: the address cannot be freed without the store), and a later DEL succeeds. GC releases
//! this node's reservations absent from `cni.dev/valid-attachments`. STATUS answers 50 when
//! etcd cannot serve a linearizable read (no quorum, unreachable) or a range set is full.

use crate::error::{CniError, ErrorList, bad_config, code};
use crate::etcd::{self, Client};
use crate::ipam::allocator::{allocate, free_addresses, release};
use crate::ipam::config::{HostLocalConfig, get_str, ipam_section, read_resolv_conf};
use crate::ipam::etcd::EtcdStore;
use crate::ipam::exclude::{Exclude, Excluding};
use crate::ipam::{RangeSet, Store};
use crate::keys::{Key, key};
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, NetConf};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The cluster-ipam applet.
pub struct ClusterIpam;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/cni-multi/ipam/";

#[derive(Debug, Deserialize)]
struct Conf {
    #[serde(flatten)]
    net: NetConf,
}

/// Where the pool lives and who this node is (all DEL needs).
struct Cluster {
    etcd: etcd::Config,
    prefix: String,
    node: String,
    network: String,
}

/// Its configuration keys (inside `ipam`), one line each, for `--help`; a test holds this table
/// equal to what the loaders read ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("ipam.etcdEndpoints", r#"["https://10.0.0.1:2379","https://10.0.0.2:2379"]"#, "etcd v3 client URLs (tried in order; at least one)"),
    key("ipam.etcdCACert", r#""/etc/etcd/ca.pem""#, "CA of the etcd servers (https endpoints)"),
    key("ipam.etcdCert", r#""/etc/etcd/client.pem""#, "client certificate for etcd"),
    key("ipam.etcdKey", r#""/etc/etcd/client-key.pem""#, "its private key"),
    key("ipam.etcdPrefix", r#""/cni-multi/ipam/""#, "key prefix of the pool (default /cni-multi/ipam/)"),
    key("ipam.nodeName", r#""node-1""#, "this node's name in each reservation (default: the host name)"),
    key("ipam.exclude", r#"["10.1.0.32/28"]"#, "CIDRs never handed out"),
    key("ipam.ranges", r#"[[{"subnet":"10.2.0.0/24"}]]"#, "range sets, as host-local's"),
    key("ipam.subnet", r#""10.1.0.0/24""#, "a single range (legacy form of ranges)"),
    key("ipam.rangeStart", r#""10.1.0.10""#, "first address handed out in subnet"),
    key("ipam.rangeEnd", r#""10.1.0.50""#, "last address handed out in subnet"),
    key("ipam.gateway", r#""10.1.0.1""#, "gateway of subnet (never handed out)"),
    key("ipam.routes", r#"[{"dst":"0.0.0.0/0"}]"#, "routes to return: {dst, gw}"),
    key("ipam.dataDir", r#""/var/lib/cni/networks""#, "read as host-local reads it, unused: reservations live in etcd"),
    key("ipam.resolvConf", r#""/etc/resolv.conf""#, "a resolv.conf to return as DNS"),
];

impl Plugin for ClusterIpam {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let conf: Conf = args.config()?;
        let cluster = Cluster::load(&conf.net)?;
        let pool = HostLocalConfig::load(&conf.net, &args.args)?;
        let exclude = exclude_of(&conf.net)?;
        let requested = pool.requests_per_set()?;
        if let Some(ip) = requested.iter().flatten().find(|ip| exclude.contains(**ip)) {
            return Err(bad_config(format!(
                "requested IP address {ip} is excluded (ipam.exclude)"
            )));
        }
        let mut store = cluster.open()?;
        let mut store = Excluding {
            inner: &mut store,
            exclude: &exclude,
        };
        let ips = allocate(
            &mut store,
            &pool.range_sets,
            &args.container_id,
            &args.ifname,
            &requested,
        )?;
        let dns = match &pool.resolv_conf {
            Some(path) => read_resolv_conf(path)?,
            None => Default::default(),
        };
        Ok(CniResult {
            ips,
            routes: pool.routes,
            dns,
            ..Default::default()
        })
    }

    fn del(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf: Conf = args.config()?;
        let mut store = Cluster::load(&conf.net)?.open()?;
        release(&mut store, &args.container_id, &args.ifname)?;
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf: Conf = args.config()?;
        let pool = HostLocalConfig::load(&conf.net, &args.args)?;
        let store = Cluster::load(&conf.net)?.open()?;
        let held = store.get_by_id(&args.container_id, &args.ifname)?;
        if held.is_empty() {
            anyhow::bail!(
                "cluster-ipam: no address held in etcd by container {} ({})",
                args.container_id,
                args.ifname
            );
        }
        let Some(prev) = conf.net.prev_result()? else {
            return Ok(());
        };
        let ours = |ip: &std::net::IpAddr| pool.range_sets.iter().any(|s| s.contains(*ip));
        for ip in prev.ips.iter().map(|c| c.address.addr()).filter(ours) {
            if !held.contains(&ip) {
                anyhow::bail!(
                    "cluster-ipam: prevResult address {ip} is not held in etcd by this attachment"
                );
            }
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf: Conf = args.config()?;
        // Without the list nothing is known to be stale (as host-local).
        let Some(valid) = conf.net.valid_attachments.as_deref() else {
            return Ok(());
        };
        let mut store = Cluster::load(&conf.net)?.open()?;
        let mut errors = ErrorList::new();
        for e in store.entries()? {
            let Some(owner) = e.owner else { continue };
            let keep = owner.node != store.node()
                || valid
                    .iter()
                    .any(|a| a.container_id == owner.container_id && a.ifname == owner.ifname);
            if !keep {
                errors.note(store.release(e.ip));
            }
        }
        errors.finish()
    }

    fn status(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let conf: Conf = args.config()?;
        let pool = HostLocalConfig::load(&conf.net, &args.args)?;
        let exclude = exclude_of(&conf.net)?;
        let store = Cluster::load(&conf.net)?.open()?;
        let unavailable = |msg: String| CniError::new(code::PLUGIN_NOT_AVAILABLE, msg);
        let taken = store
            .list()
            .map_err(|e| unavailable(format!("cluster-ipam: etcd cannot serve the pool: {e:#}")))?;
        let full: Vec<String> = pool
            .range_sets
            .iter()
            .zip(&pool.set_labels)
            .filter(|(set, _)| free(set, &taken, &exclude) == 0)
            .map(|(set, label)| format!("{label} ({set})"))
            .collect();
        if full.is_empty() {
            return Ok(());
        }
        Err(unavailable(format!(
            "no IP addresses available in range set {}",
            full.join(", ")
        ))
        .into())
    }
}

fn free(set: &RangeSet, taken: &[crate::ipam::Reservation], exclude: &Exclude) -> u128 {
    free_addresses(set, taken).saturating_sub(exclude.count_in(set))
}

fn exclude_of(net: &NetConf) -> anyhow::Result<Exclude> {
    Exclude::parse(ipam_section(net)?.get("exclude"), "ipam.exclude")
}

impl Cluster {
    /// Reads the etcd keys of `ipam`; every error is code 7 and names the key.
    fn load(net: &NetConf) -> anyhow::Result<Cluster> {
        let ipam = ipam_section(net)?;
        let endpoints = string_list(ipam, "etcdEndpoints")?;
        if endpoints.is_empty() {
            return Err(bad_config(
                "ipam.etcdEndpoints: at least one endpoint URL is required",
            ));
        }
        let path = |k: &str| -> anyhow::Result<Option<PathBuf>> {
            Ok(get_str(ipam, k, "ipam")?.map(PathBuf::from))
        };
        let prefix = get_str(ipam, "etcdPrefix", "ipam")?.unwrap_or(DEFAULT_PREFIX);
        let node = match get_str(ipam, "nodeName", "ipam")? {
            Some(n) => n.to_string(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_err(|e| anyhow::anyhow!("reading the host name: {e}"))?
                .trim()
                .to_string(),
        };
        Ok(Cluster {
            etcd: etcd::Config {
                endpoints,
                ca: path("etcdCACert")?,
                cert: path("etcdCert")?,
                key: path("etcdKey")?,
                timeout: None,
            },
            prefix: prefix.to_string(),
            node,
            network: net.name.clone(),
        })
    }

    fn open(&self) -> anyhow::Result<EtcdStore> {
        let client = Client::new(&self.etcd)?;
        Ok(EtcdStore::new(
            client,
            &self.prefix,
            &self.network,
            &self.node,
        ))
    }
}

fn string_list(obj: &Map<String, Value>, key: &str) -> anyhow::Result<Vec<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad_config(format!("ipam.{key}: expected a list of strings")))
            })
            .collect(),
        Some(_) => Err(bad_config(format!(
            "ipam.{key}: expected a list of strings"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net(ipam: Value) -> NetConf {
        serde_json::from_value(
            json!({"cniVersion": "1.1.0", "name": "pool", "type": "x", "ipam": ipam}),
        )
        .unwrap()
    }

    #[test]
    fn keys_and_defaults() {
        let c = Cluster::load(&net(json!({"type": "cluster-ipam", "etcdEndpoints": ["http://10.0.0.1:2379"], "nodeName": "n1"}))).unwrap();
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!((c.node.as_str(), c.network.as_str()), ("n1", "pool"));
        assert_eq!(c.etcd.endpoints, ["http://10.0.0.1:2379"]);
        let c = Cluster::load(&net(json!({"etcdEndpoints": "https://e:2379", "etcdPrefix": "/p/", "etcdCACert": "/ca.pem"}))).unwrap();
        assert_eq!(
            (c.prefix.as_str(), c.etcd.ca.as_deref()),
            ("/p/", Some(std::path::Path::new("/ca.pem")))
        );
        assert!(!c.node.is_empty(), "the host name by default");
    }

    #[test]
    fn bad_keys_are_code_7() {
        for ipam in [
            json!({}),
            json!({"etcdEndpoints": []}),
            json!({"etcdEndpoints": [1]}),
            json!({"etcdEndpoints": ["x"], "etcdPrefix": 3}),
        ] {
            let err = Cluster::load(&net(ipam.clone())).err().unwrap();
            assert_eq!(
                err.downcast_ref::<CniError>().unwrap().code,
                code::INVALID_CONFIG,
                "{ipam}"
            );
        }
    }

    #[test]
    fn help_lists_every_config_key() {
        let sources = [
            include_str!("cluster_ipam.rs"),
            include_str!("../src/ipam/config.rs"),
            include_str!("../src/ipam/exclude.rs"),
        ];
        crate::keys::assert_ipam_keys(KEYS, &sources, |net| {
            HostLocalConfig::load(net, &crate::types::args::CniArgs::default())?;
            Cluster::load(net)?;
            exclude_of(net).map(drop)
        });
    }
}
