//! `cni-multi doctor`: which applets can work on this node, and why not. The kernel's link
//! kinds and qdiscs are probed by making one in a throwaway netns ([`Netns::scratch`]), then
//! `/dev/net/tun`, the netfilter backends (and rules in both iptables flavours), the dhcp
//! daemon's socket, the state directories, the plugins in `CNI_PATH` and the configurations in
//! the conf dir. A configuration is healthy when every plugin type it names is in `CNI_PATH`
//! and every kernel need of that type is met. The reference has no such command.
//!
//! The probes live beside what they probe ([`crate::netlink::probe`], [`crate::tc::probe`],
//! [`crate::netfilter::probe`]); each applet declares its needs once, in
//! [`crate::skel::Plugin::needs`], or, for applets this binary may not have yet, in
//! [`needs::EXTRA`]. This module only gathers, judges ([`judge`], pure) and renders.

pub mod needs;
mod render;
mod scan;
#[cfg(test)]
mod tests;

pub use needs::{Need, Probe, needs_of};
pub use render::table;
pub use scan::{Installed, InstalledKind};

use crate::netns::Netns;
use crate::runtime::NetworkConfigList;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where doctor looks.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plugin directories (`CNI_PATH`).
    pub cni_path: Vec<PathBuf>,
    /// The configuration directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The dhcp daemon's socket.
    pub dhcp_socket: PathBuf,
    /// State directories to check.
    pub state_dirs: Vec<PathBuf>,
}

/// The default plugin directory.
pub const DEFAULT_CNI_PATH: &str = "/opt/cni/bin";
/// The default configuration directory.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// The dhcp daemon's socket.
pub const DHCP_SOCKET: &str = "/run/cni/dhcp.sock";
/// The state directories the applets and the runtime tool write.
pub const STATE_DIRS: &[&str] = &[
    "/var/lib/cni",
    "/var/lib/cni/networks",
    "/var/lib/cni/results",
    "/run/cni",
    "/run/cni/tuning",
];

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Works, but something deserves a look.
    Warn,
    /// Absent here.
    Missing,
    /// The probe itself failed.
    Error,
}

impl Status {
    /// True for what an applet can rely on.
    pub fn usable(self) -> bool {
        matches!(self, Status::Ok | Status::Warn)
    }
}

/// One thing looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `link/veth`, `qdisc/tbf`, `device/tun`, `netfilter/...`, `daemon/dhcp`, `state:<dir>`.
    pub id: String,
    /// The outcome.
    pub status: Status,
    /// Why, in words.
    pub detail: String,
}

impl Check {
    /// A check.
    pub fn new(id: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
        Check {
            id: id.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// Can an applet work here?
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppletStatus {
    /// The type name.
    pub name: String,
    /// Installed and nothing it always needs is missing.
    pub can_work: bool,
    /// Found in `CNI_PATH`.
    pub installed: bool,
    /// Ids of the checks it always needs that failed: it cannot work.
    pub missing: Vec<String>,
    /// Options that cannot work, as `ipMasq: netfilter` (key: failed check).
    pub limited: Vec<String>,
}

/// One configuration file and what it lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigStatus {
    /// The file.
    pub file: String,
    /// Its network name, when it parses.
    pub network: Option<String>,
    /// The plugin types it names, in order (IPAM types included).
    pub plugins: Vec<String>,
    /// What is missing, one line each; empty when it can work.
    pub problems: Vec<String>,
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when every configuration can work (the exit status).
    pub ok: bool,
    /// The directories searched for plugins.
    pub cni_path: Vec<String>,
    /// The configuration directory.
    pub conf_dir: String,
    /// Kernel, netfilter, device, daemon and state checks.
    pub checks: Vec<Check>,
    /// What is in `CNI_PATH`.
    pub plugins: Vec<Installed>,
    /// Each applet this binary has (or [`needs::EXTRA`] knows): can it work?
    pub applets: Vec<AppletStatus>,
    /// Each configuration in the conf dir.
    pub configs: Vec<ConfigStatus>,
}

/// Runs every probe and judges the configurations.
pub fn run(opts: &Options) -> Report {
    let mut checks = kernel_checks();
    checks.extend(netfilter_checks(
        &crate::netfilter::probe::Netfilter::probe(),
    ));
    checks.push(scan::dhcp_socket(&opts.dhcp_socket));
    checks.extend(opts.state_dirs.iter().map(|d| scan::state_dir(d)));
    let plugins = scan::plugins(&opts.cni_path);
    let configs = load_configs(&opts.conf_dir);
    let found = |t: &str| crate::exec::find_in_path(t, &opts.cni_path).is_ok();
    judge(opts, checks, plugins, &configs, &found)
}

/// The pure part: applet and configuration verdicts from what was found.
pub fn judge(
    opts: &Options,
    checks: Vec<Check>,
    plugins: Vec<Installed>,
    configs: &[(PathBuf, anyhow::Result<NetworkConfigList>)],
    found: &dyn Fn(&str) -> bool,
) -> Report {
    let applets = needs::known_types()
        .into_iter()
        .map(|name| applet_status(name, &checks, found))
        .collect();
    let configs: Vec<ConfigStatus> = configs
        .iter()
        .map(|(file, list)| config_status(file, list, &checks, found))
        .collect();
    Report {
        ok: configs.iter().all(|c| c.problems.is_empty()),
        cni_path: opts
            .cni_path
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        conf_dir: opts.conf_dir.display().to_string(),
        checks,
        plugins,
        applets,
        configs,
    }
}

/// Can type `name` work here, and which of its options cannot?
fn applet_status(name: &str, checks: &[Check], found: &dyn Fn(&str) -> bool) -> AppletStatus {
    let failed = needs_of(name)
        .iter()
        .filter(|n| !satisfied(checks, n.probe));
    let (always, when): (Vec<&Need>, Vec<&Need>) = failed.partition(|n| n.when.is_none());
    let installed = found(name);
    AppletStatus {
        name: name.to_string(),
        can_work: installed && always.is_empty(),
        installed,
        missing: always.iter().map(|n| n.probe.id()).collect(),
        limited: when
            .iter()
            .map(|n| format!("{}: {}", n.when.unwrap_or_default(), n.probe.id()))
            .collect(),
    }
}

/// True when the check for `probe` came out usable.
pub fn satisfied(checks: &[Check], probe: Probe) -> bool {
    let id = probe.id();
    checks.iter().any(|c| c.id == id && c.status.usable())
}

/// What one configuration file lacks.
fn config_status(
    file: &Path,
    list: &anyhow::Result<NetworkConfigList>,
    checks: &[Check],
    found: &dyn Fn(&str) -> bool,
) -> ConfigStatus {
    let mut status = ConfigStatus {
        file: file.display().to_string(),
        network: None,
        plugins: Vec::new(),
        problems: Vec::new(),
    };
    let list = match list {
        Ok(l) => l,
        Err(e) => {
            status.problems.push(format!("does not parse: {e:#}"));
            return status;
        }
    };
    status.network = Some(list.name.clone());
    for plugin in &list.plugins {
        for (ty, conf) in needs::types_in(plugin.raw()) {
            status.plugins.push(ty.to_string());
            if !found(ty) {
                status
                    .problems
                    .push(format!("{ty}: plugin not found in CNI_PATH"));
            }
            for need in needs_of(ty).iter().filter(|n| n.applies(conf)) {
                if !satisfied(checks, need.probe) {
                    let why = checks.iter().find(|c| c.id == need.probe.id());
                    let why = why.map(|c| c.detail.as_str()).unwrap_or("not probed");
                    status
                        .problems
                        .push(format!("{ty}: needs {}: {why}", need.probe.id()));
                }
            }
        }
    }
    status
}

/// Every configuration file in `dir` as libcni finds them (`.conf`, `.conflist`, `.json`),
/// parsed with the runtime's loader.
pub fn load_configs(dir: &Path) -> Vec<(PathBuf, anyhow::Result<NetworkConfigList>)> {
    let files = match crate::runtime::config::conf_files(dir, &[".conf", ".conflist", ".json"]) {
        Ok(f) => f,
        Err(e) => return vec![(dir.to_path_buf(), Err(e.into()))],
    };
    files
        .into_iter()
        .map(|f| {
            let list = if f.extension().is_some_and(|e| e == "conflist") {
                NetworkConfigList::from_file(&f)
            } else {
                std::fs::read(&f)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| crate::runtime::config::PluginConf::from_bytes(&b))
                    .and_then(|p| NetworkConfigList::from_plugin(&p))
            };
            (f, list)
        })
        .collect()
}

/// The kernel probes, all in one throwaway netns.
fn kernel_checks() -> Vec<Check> {
    use crate::netlink::probe::{LINK_KINDS, probe_link_kind, probe_tun};
    use crate::tc::probe::{QDISCS, probe_qdisc};
    let ids: Vec<String> = LINK_KINDS
        .iter()
        .map(|k| Probe::Link(k).id())
        .chain(QDISCS.iter().map(|q| Probe::Qdisc(q).id()))
        .chain([Probe::Tun.id()])
        .collect();
    let setup = Netns::scratch()
        .map_err(|e| format!("throwaway netns: {e} (run as root)"))
        .and_then(|ns| {
            let nl = crate::netlink::Handle::in_netns(&ns).map_err(|e| format!("{e:#}"))?;
            Ok((ns, nl))
        });
    let (ns, nl) = match setup {
        Ok(v) => v,
        Err(e) => {
            return ids
                .into_iter()
                .map(|id| Check::new(id, Status::Error, e.clone()))
                .collect();
        }
    };
    let mut out: Vec<Check> = LINK_KINDS
        .iter()
        .map(|k| from_outcome(Probe::Link(k), probe_link_kind(&nl, k)))
        .collect();
    let lo = nl.link_by_name("lo").ok().flatten().map(|l| l.index);
    for q in QDISCS {
        let outcome = match lo {
            Some(lo) => probe_qdisc(&nl, lo, q),
            None => crate::netlink::probe::Outcome::Failed("no lo in the netns".into()),
        };
        out.push(from_outcome(Probe::Qdisc(q), outcome));
    }
    out.push(from_outcome(Probe::Tun, probe_tun(&ns)));
    out
}

fn from_outcome(probe: Probe, o: crate::netlink::probe::Outcome) -> Check {
    use crate::netlink::probe::Outcome;
    match o {
        Outcome::Present => Check::new(probe.id(), Status::Ok, "works"),
        Outcome::Missing(why) => Check::new(probe.id(), Status::Missing, why),
        Outcome::Failed(why) => Check::new(probe.id(), Status::Error, why),
    }
}

/// The netfilter checks, and `netfilter` itself: usable when either backend is.
pub fn netfilter_checks(n: &crate::netfilter::probe::Netfilter) -> Vec<Check> {
    let yes = |b: bool| if b { Status::Ok } else { Status::Missing };
    let flavour = n.iptables_flavour.as_deref().unwrap_or("unknown flavour");
    let count = |c: Option<usize>| c.map_or("unreadable".into(), |c| format!("{c} rules"));
    let rules = format!(
        "iptables-legacy: {}, iptables-nft: {}",
        count(n.legacy_rules),
        count(n.nft_rules)
    );
    vec![
        Check::new(
            "netfilter/nf_tables",
            yes(n.nf_tables),
            if n.nf_tables {
                "netlink API answers"
            } else {
                "no nf_tables in the kernel"
            },
        ),
        Check::new(
            "netfilter/iptables",
            yes(n.iptables),
            if n.iptables {
                format!("iptables-save/-restore work ({flavour})")
            } else {
                "iptables-restore missing or iptables-save -t nat fails".into()
            },
        ),
        if n.mixed() {
            Check::new(
                "netfilter/mixed",
                Status::Warn,
                format!(
                    "rules in both flavours ({rules}): packets pass both, each tool shows only its own"
                ),
            )
        } else {
            Check::new("netfilter/mixed", Status::Ok, rules)
        },
        Check::new(
            Probe::Netfilter.id(),
            yes(n.nf_tables || n.iptables),
            "masquerading and port forwarding need nf_tables or iptables",
        ),
    ]
}
