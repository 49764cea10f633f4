//! `firewall`: lets traffic of the container through the host's forward filter, mirroring the
//! reference meta plugin `plugins/meta/firewall` (FEATURES.md 6.14). Chained after a main
//! plugin, it reads the container addresses from `prevResult` and accepts, in the `FORWARD`
//! path, everything from them and replies to them, after a user-owned admin chain
//! (`iptablesAdminChainName`, default `CNI-ADMIN`); `ingressPolicy` `same-bridge` or
//! `isolated` adds bridge isolation for `prevResult.interfaces[0]`. It passes `prevResult` on.
//!
//! `backend`: `iptables` (the reference's rules exactly), `nftables` (ours, in process, table
//! `inet cni_plugins_firewall`), `firewalld` (the addresses become sources of `firewalldZone`,
//! default `trusted`, over D-Bus on the system bus: `DBUS_SYSTEM_BUS_ADDRESS` or
//! `/run/dbus/system_bus_socket`) or unset (firewalld when its bus name has an owner, else
//! nftables when iptables is unusable and nftables works, else iptables; other values count
//! as unset, as in the reference).
//!
//! Beyond the reference: the isolation rules follow the chosen netfilter backend (under
//! firewalld, the unset choice; the reference always uses iptables); DEL needs no
//! `prevResult` (the addresses are kept in
//! `<dataDir>/<network>/<containerID>_<ifname>.json`, `dataDir` defaulting to
//! `/var/lib/cni/firewall`) and removes the rules from both backends, skipping an unusable one;
//! GC removes the rules (and firewalld sources) of attachments not in
//! `cni.dev/valid-attachments`; CHECK only reads
//! (the reference creates the chains).

use crate::dbus::DEFAULT_SYSTEM_BUS;
use crate::doctor::{Need, Probe};
use crate::error::{ErrorList, bad_config};
use crate::keys::{Key, key};
use crate::netfilter::firewall::{
    self, DEFAULT_ADMIN_CHAIN, IngressPolicy, Owner, Rules, Used, firewalld, host_prefix, iptables,
    nftables, state,
};
use crate::netfilter::iptables::Iptables;
use crate::netfilter::{BackendKind, choose_backend};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, NetConf};
use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::Deserialize;
use std::path::PathBuf;

/// The applet.
pub struct Firewall;

/// Who programs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// iptables or nftables, in process.
    Netfilter(BackendKind),
    /// firewalld over D-Bus.
    Firewalld,
}

impl Backend {
    /// The config spelling, as the state file records it.
    fn name(self) -> &'static str {
        match self {
            Backend::Netfilter(kind) => kind.name(),
            Backend::Firewalld => "firewalld",
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    backend: String,
    #[serde(default)]
    iptables_admin_chain_name: String,
    #[serde(default)]
    firewalld_zone: String,
    #[serde(default)]
    ingress_policy: String,
    #[serde(default)]
    data_dir: String,
}

impl Config {
    fn admin_chain(&self) -> &str {
        match self.iptables_admin_chain_name.as_str() {
            "" => DEFAULT_ADMIN_CHAIN,
            name => name,
        }
    }

    fn data_dir(&self) -> PathBuf {
        match self.data_dir.as_str() {
            "" => PathBuf::from(state::DEFAULT_DIR),
            d => PathBuf::from(d),
        }
    }

    fn zone(&self) -> &str {
        match self.firewalld_zone.as_str() {
            "" => "trusted",
            zone => zone,
        }
    }

    fn backend(&self, bus: &str) -> Result<Backend> {
        Ok(match self.backend.as_str() {
            "iptables" => Backend::Netfilter(BackendKind::Iptables),
            "nftables" => Backend::Netfilter(BackendKind::Nftables),
            "firewalld" => Backend::Firewalld,
            _ if firewalld::running(bus) => Backend::Firewalld,
            _ => Backend::Netfilter(choose_backend(None)?),
        })
    }
}

/// The system bus address from the plugin's environment.
fn bus_address(args: &CmdArgs) -> &str {
    args.env
        .get("DBUS_SYSTEM_BUS_ADDRESS")
        .map_or(DEFAULT_SYSTEM_BUS, String::as_str)
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("backend", r#""nftables""#, "iptables, nftables or firewalld (default: firewalld if running, else by what works)"),
    key("iptablesAdminChainName", r#""CNI-ADMIN""#, "user-owned chain consulted first (default CNI-ADMIN)"),
    key("firewalldZone", r#""trusted""#, "firewalld zone the addresses join (default trusted)"),
    key("ingressPolicy", r#""same-bridge""#, "open (default), same-bridge or isolated: bridge isolation"),
    key("dataDir", r#""/var/lib/cni/firewall""#, "where DEL and GC find what ADD set up (default /var/lib/cni/firewall)"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[Need::always(Probe::Netfilter)];

impl Plugin for Firewall {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf: Config = args.config()?;
        let prev = required_prev(&conf)?;
        let bus = bus_address(args);
        let backend = conf.backend(bus)?;
        let rules = rules_of(&conf, args, &prev)?;
        let dir = conf.data_dir();
        let mut rollback = Rollback::new();
        state::save(&dir, &rules.owner, &rules.ips, backend.name())
            .context("record the container addresses")?;
        rollback.push("firewall state", || {
            state::remove(&dir, &owner_of(&conf, args))
        });
        rollback.push("firewall rules", || {
            firewall::teardown(&owner_of(&conf, args), &rules.ips, Used::ALL)
        });
        if backend == Backend::Firewalld {
            rollback.push("firewalld sources", || {
                firewalld::remove(bus, conf.zone(), &rules.ips)
            });
        }
        install(backend, bus, conf.zone(), &rules)?;
        rollback.commit();
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf: Config = args.config()?;
        let owner = owner_of(&conf, args);
        let dir = conf.data_dir();
        let record = state::load(&dir, &owner);
        let mut ips = record.as_ref().map(|r| r.ips.clone()).unwrap_or_default();
        // A prevResult that does not parse must not block DEL: the record still names the
        // addresses.
        if let Ok(Some(prev)) = conf.net.prev_result() {
            ips.extend(prev.ips.iter().map(|i| host_prefix(&i.address)));
        }
        ips.sort();
        ips.dedup();
        // What the record names, or everything when there is none (rules of the reference, or
        // of an ADD before the record existed).
        let backends = record.map(|r| r.backends).unwrap_or_default();
        let mut errors = ErrorList::new();
        errors.note(firewall::teardown(
            &owner,
            &ips,
            Used::from_names(&backends),
        ));
        if backends.is_empty() || backends.iter().any(|b| b == "firewalld") {
            errors.note(firewalld::remove(bus_address(args), conf.zone(), &ips));
        }
        if errors.is_empty() {
            errors.note(state::remove(&dir, &owner));
        }
        errors.finish()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf: Config = args.config()?;
        let prev = required_prev(&conf)?;
        let rules = rules_of(&conf, args, &prev)?;
        let bus = bus_address(args);
        let kind = match conf.backend(bus)? {
            Backend::Firewalld => {
                firewalld::check(bus, conf.zone(), &rules.ips)?;
                if rules.isolated_bridge().is_none() {
                    return Ok(());
                }
                choose_backend(None)?
            }
            Backend::Netfilter(kind) => kind,
        };
        match kind {
            BackendKind::Iptables => {
                for family in rules.families() {
                    iptables::check(&Iptables::new(family), &rules)?;
                }
                Ok(())
            }
            BackendKind::Nftables => nftables::check(&rules),
        }
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        let conf: Config = args.config()?;
        let Some(valid) = &conf.net.valid_attachments else {
            return Ok(());
        };
        let bus = bus_address(args);
        let firewalld_sources = |ips: &[IpNet]| firewalld::remove(bus, conf.zone(), ips);
        firewall::gc(&conf.data_dir(), &conf.net.name, valid, &firewalld_sources)
    }
}

fn required_prev(conf: &Config) -> Result<CniResult> {
    conf.net
        .prev_result()?
        .ok_or_else(|| bad_config("missing prevResult from earlier plugin"))
}

fn owner_of<'a>(conf: &'a Config, args: &'a CmdArgs) -> Owner<'a> {
    Owner {
        network: &conf.net.name,
        container_id: &args.container_id,
        ifname: &args.ifname,
    }
}

/// Everything ADD and CHECK act on; a bad policy or a policy without a bridge is code 7.
fn rules_of<'a>(conf: &'a Config, args: &'a CmdArgs, prev: &'a CniResult) -> Result<Rules<'a>> {
    let policy =
        IngressPolicy::parse(&conf.ingress_policy).map_err(|e| bad_config(format!("{e:#}")))?;
    let bridge = match policy {
        IngressPolicy::Open => None,
        _ => Some(bridge_of(prev, policy)?),
    };
    let mut ips: Vec<IpNet> = prev.ips.iter().map(|i| host_prefix(&i.address)).collect();
    ips.dedup();
    Ok(Rules {
        owner: owner_of(conf, args),
        ips,
        admin_chain: conf.admin_chain(),
        policy,
        bridge,
    })
}

/// The bridge an ingress policy isolates: the first interface of `prevResult`.
fn bridge_of(prev: &CniResult, policy: IngressPolicy) -> Result<&str> {
    let Some(first) = prev.interfaces.first() else {
        return Err(bad_config(format!(
            "interface needs to be set for ingress policy {:?}, make sure to chain \"firewall\" plugin with \"bridge\"",
            policy.name()
        )));
    };
    if first.name.is_empty() {
        return Err(bad_config("got empty bridge name"));
    }
    Ok(&first.name)
}

/// Programs `rules`: firewalld zone sources (then isolation only, with the netfilter backend
/// the unset choice gives), or all of it with iptables or nftables.
fn install(backend: Backend, bus: &str, zone: &str, rules: &Rules<'_>) -> Result<()> {
    let kind = match backend {
        Backend::Netfilter(kind) => kind,
        Backend::Firewalld => {
            firewalld::add(bus, zone, &rules.ips)?;
            if rules.isolated_bridge().is_none() {
                return Ok(());
            }
            let isolation_only = Rules {
                ips: Vec::new(),
                ..rules.clone()
            };
            return netfilter_install(choose_backend(None)?, &isolation_only);
        }
    };
    netfilter_install(kind, rules)
}

fn netfilter_install(kind: BackendKind, rules: &Rules<'_>) -> Result<()> {
    match kind {
        BackendKind::Iptables => {
            for family in rules.families() {
                iptables::add(&Iptables::new(family), rules)
                    .context("add firewall rules with iptables")?;
            }
            Ok(())
        }
        BackendKind::Nftables => nftables::add(rules).context("add firewall rules with nftables"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: serde_json::Value) -> Config {
        let mut c = serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "firewall"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(c).unwrap()
    }

    #[test]
    fn defaults_and_explicit_values() {
        let c = conf(serde_json::json!({}));
        assert_eq!(c.admin_chain(), "CNI-ADMIN");
        assert_eq!(c.data_dir(), PathBuf::from("/var/lib/cni/firewall"));
        let c = conf(serde_json::json!({"iptablesAdminChainName": "MINE", "backend": "nftables"}));
        assert_eq!(c.admin_chain(), "MINE");
        let nobus = "unix:path=/nonexistent/bus";
        assert_eq!(
            c.backend(nobus).unwrap(),
            Backend::Netfilter(BackendKind::Nftables)
        );
        let f = conf(serde_json::json!({"backend": "firewalld"}));
        assert_eq!(f.backend(nobus).unwrap(), Backend::Firewalld);
        assert_eq!(f.zone(), "trusted");
    }

    #[test]
    fn policy_needs_a_bridge() {
        let prev = CniResult::default();
        let e = bridge_of(&prev, IngressPolicy::Isolated).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7);
        assert!(
            e.to_string()
                .contains("chain \"firewall\" plugin with \"bridge\"")
        );
    }

    #[test]
    fn help_lists_every_config_key() {
        crate::keys::assert_struct_keys::<Config>(KEYS);
    }
}
