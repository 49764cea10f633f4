//! What each applet needs from the node. An applet in this binary declares its needs once, in
//! [`crate::skel::Plugin::needs`]; [`EXTRA`] holds the needs of plugin types this binary may
//! not have yet (applets being written, or foreign plugins of the same name), keyed by type
//! name, for the coordinator to extend. A type in neither has no known needs: doctor then only
//! checks that it is installed.

use crate::applets::APPLETS;
use serde_json::{Map, Value};

/// One thing a probe establishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Probe {
    /// The kernel can create links of this kind (`veth`, `vlan`, ...).
    Link(&'static str),
    /// The kernel has this qdisc (`tbf`, `ingress`, `htb`).
    Qdisc(&'static str),
    /// `/dev/net/tun` makes TAP devices.
    Tun,
    /// nf_tables or iptables works.
    Netfilter,
    /// The nf_tables API works (bridge's `macspoofchk` has no iptables form).
    NfTables,
    /// The dhcp daemon answers on its socket.
    DhcpDaemon,
}

impl Probe {
    /// The id of the check that answers it (`link/veth`).
    pub fn id(&self) -> String {
        match self {
            Probe::Link(k) => format!("link/{k}"),
            Probe::Qdisc(q) => format!("qdisc/{q}"),
            Probe::Tun => "device/tun".into(),
            Probe::Netfilter => "netfilter".into(),
            Probe::NfTables => "netfilter/nf_tables".into(),
            Probe::DhcpDaemon => "daemon/dhcp".into(),
        }
    }
}

/// One need: a probe that must pass, always or only when a configuration key is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// What must work.
    pub probe: Probe,
    /// Only when this top-level key is set to something other than `false`, `null`, `""`, 0.
    pub when: Option<&'static str>,
}

impl Need {
    /// Needed whatever the configuration says.
    pub const fn always(probe: Probe) -> Need {
        Need { probe, when: None }
    }

    /// Needed when `key` is set (`ipMasq`).
    pub const fn when(key: &'static str, probe: Probe) -> Need {
        Need {
            probe,
            when: Some(key),
        }
    }

    /// Does it apply to this plugin configuration object?
    pub fn applies(&self, conf: &Map<String, Value>) -> bool {
        let Some(key) = self.when else {
            return true;
        };
        match conf.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(_) => true,
        }
    }
}

use Probe::{DhcpDaemon, Link};

/// Needs of plugin types this binary may lack, keyed by type name. Move a row into the
/// applet's `Plugin::needs` when it lands (a test refuses a type declared in both places).
pub static EXTRA: &[(&str, &[Need])] = &[
    ("dhcp", &[Need::always(DhcpDaemon)]),
    (
        "flannel",
        &[Need::always(Link("veth")), Need::always(Link("bridge"))],
    ),
];

/// The needs of plugin type `name`: its own declaration, else [`EXTRA`]'s, else none.
pub fn needs_of(name: &str) -> &'static [Need] {
    let own = crate::applets::find(name).and_then(|a| a.run.plugin().map(|p| p.needs()));
    match own {
        Some(n) if !n.is_empty() => n,
        _ => EXTRA
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[], |(_, needs)| needs),
    }
}

/// Every plugin type doctor knows: the plugin rows of `APPLETS` and [`EXTRA`], sorted.
pub fn known_types() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = APPLETS
        .iter()
        .filter(|a| a.run.plugin().is_some())
        .map(|a| a.name)
        .chain(EXTRA.iter().map(|(n, _)| *n))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The plugin types one plugin object runs, each with the object its needs are judged on: its
/// `type`, then its `ipam.type` (with the `ipam` object).
pub fn types_in(plugin: &Map<String, Value>) -> Vec<(&str, &Map<String, Value>)> {
    let mut out = Vec::new();
    if let Some(t) = plugin.get("type").and_then(Value::as_str) {
        out.push((t, plugin));
    }
    if let Some(ipam) = plugin.get("ipam").and_then(Value::as_object)
        && let Some(t) = ipam.get("type").and_then(Value::as_str)
        && !t.is_empty()
    {
        out.push((t, ipam));
    }
    out
}
