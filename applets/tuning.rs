//! `tuning`: sets sysctls and link attributes of the container interface, mirroring the
//! reference meta plugin `plugins/meta/tuning` (FEATURES.md 6.17).
//!
//! - `sysctl` (map): written inside the container netns. A key uses dots or, like sysctl(8),
//!   slashes (then dots stay, for interface names such as `eth0.100`); its first `IFNAME` is
//!   replaced by `CNI_IFNAME`; it must name something under `/proc/sys/net/`, and `..` or an
//!   empty part is refused. Duplicate keys are refused. When `/etc/cni/tuning/allowlist.conf`
//!   exists, every key must match one of its lines (Go/RE2 regexps, unanchored).
//! - `mac`, `promisc` (on only), `mtu`, `allmulti`, `txQLen`: the original values of those
//!   being changed are saved to `<dataDir>/<containerID>_<ifname>.json` (`dataDir` defaults to
//!   `/run/cni/tuning`; same file format as the reference) and restored by DEL.
//! - Sources: config < CNI_ARGS `MAC` < `runtimeConfig.mac` < `args.cni.*` (`sysctl` entries
//!   are merged into the config's).
//!
//! ADD returns `prevResult` with the new MAC on the interface. DEL never fails on the kernel
//! side (as the reference); sysctls are not restored by DEL (they die with the netns). CHECK
//! compares every configured value, promisc both ways.
//!
//! Beyond the reference: a failed ADD restores what it changed, sysctls and link attributes,
//! and removes the backup; DEL always removes the backup file, restored or not (the reference
//! leaves it when the netns or interface is gone or a restore fails, and DEL is never retried);
//! MACs are compared as addresses, not strings. No GC: backup files do not name their
//! network, so one network's GC could not tell its own stale files from another network's.

use crate::error::{ErrorList, bad_config};
use crate::keys::{Key, key};
use crate::netlink::{Handle, Link, mac_string, parse_mac};
use crate::netns::Netns;
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Plugin};
use crate::sysctl;
use crate::types::{CniResult, NetConf};
use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The applet.
pub struct Tuning;

const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";
const ALLOWLIST: &str = "/etc/cni/tuning/allowlist.conf";

/// The config as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    data_dir: String,
    #[serde(default, deserialize_with = "unique_keys")]
    sysctl: BTreeMap<String, String>,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    promisc: bool,
    #[serde(default)]
    mtu: u32,
    #[serde(default, rename = "txQLen")]
    txqlen: Option<u32>,
    #[serde(default)]
    allmulti: Option<bool>,
}

/// All DEL reads.
#[derive(Debug, Deserialize)]
struct DelConfig {
    #[serde(default, rename = "dataDir")]
    data_dir: String,
}

/// What to do, every source merged.
#[derive(Debug, Clone, PartialEq)]
struct Want {
    data_dir: PathBuf,
    sysctl: BTreeMap<String, String>,
    mac: Option<[u8; 6]>,
    promisc: bool,
    mtu: u32,
    txqlen: Option<u32>,
    allmulti: Option<bool>,
}

impl Want {
    fn changes_link(&self) -> bool {
        self.mac.is_some()
            || self.promisc
            || self.mtu != 0
            || self.txqlen.is_some()
            || self.allmulti.is_some()
    }
}

/// The saved original values (`configToRestore`): only those being changed are present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Backup {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promisc: Option<bool>,
    #[serde(default, skip_serializing_if = "is_zero")]
    mtu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allmulti: Option<bool>,
    #[serde(default, rename = "txQLen", skip_serializing_if = "Option::is_none")]
    txqlen: Option<u32>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("dataDir", r#""/run/cni/tuning""#, "where the original values are kept for DEL"),
    key("sysctl", r#"{"net.ipv4.conf.eth0.rp_filter":"1"}"#, "net.* sysctls to set in the container"),
    key("mac", r#""c2:11:22:33:44:55""#, "MAC address of the container interface"),
    key("promisc", "true", "promiscuous mode on the container interface"),
    key("mtu", "1400", "MTU of the container interface"),
    key("txQLen", "1000", "transmit queue length of the container interface"),
    key("allmulti", "true", "all-multicast mode on the container interface"),
];

impl Plugin for Tuning {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let (want, net) = load(args)?;
        check_allowlist(Path::new(ALLOWLIST), &want.sysctl)?;
        let mut result = net
            .prev_result()?
            .ok_or_else(|| bad_config("Required prevResult missing"))?;
        let ns = args.open_netns()?;
        let nl = want
            .changes_link()
            .then(|| Handle::in_netns(&ns))
            .transpose()?;
        let file = backup_file(&want.data_dir, args);
        let mut rb = Rollback::new();
        write_sysctls(&ns, &want.sysctl, &args.ifname, &mut rb)?;
        if let Some(nl) = &nl {
            let link = container_link(nl, &args.ifname)?;
            let saved = backup_of(&link, &want);
            rb.push("backup file", || forget(&file));
            save(&file, &saved)?;
            rb.push("link attributes", move || restore(nl, &saved, &args.ifname));
            apply(nl, link.index, &want)?;
        }
        rb.commit();
        if let Some(mac) = want.mac {
            for i in result
                .interfaces
                .iter_mut()
                .filter(|i| i.name == args.ifname)
            {
                i.mac = mac_string(&mac);
            }
        }
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> anyhow::Result<()> {
        // Only dataDir matters here: a config ADD refused (duplicate keys, a bad MAC) must
        // not block DEL.
        let c: DelConfig = args.config()?;
        let file = backup_file(&data_dir(&c.data_dir), args);
        // As the reference: restoring is best effort and DEL succeeds regardless. DEL is then
        // never retried, so the backup goes whatever happened to the restore.
        if let Some(saved) = read_backup(&file)
            && let Ok(Some(ns)) = args.netns_if_present()
        {
            let _ = Handle::in_netns(&ns).and_then(|nl| restore(&nl, &saved, &args.ifname));
        }
        forget(&file)
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (want, net) = load(args)?;
        net.prev_result()?
            .ok_or_else(|| bad_config("Required prevResult missing"))?;
        let ns = args.open_netns()?;
        check_sysctls(&ns, &want.sysctl, &args.ifname)?;
        let nl = Handle::in_netns(&ns)?;
        let link = nl
            .link_by_name(&args.ifname)?
            .with_context(|| format!("Cannot find container link {}", args.ifname))?;
        check_link(&link, &want)
    }
}

/// A map that refuses a key given twice (serde_json would keep the last silently).
fn unique_keys<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of sysctl keys to string values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = m.next_entry::<String, String>()? {
                if out.insert(k, v).is_some() {
                    return Err(serde::de::Error::custom(
                        "duplicated sysctl keys are not allowed",
                    ));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

fn data_dir(configured: &str) -> PathBuf {
    PathBuf::from(if configured.is_empty() {
        DEFAULT_DATA_DIR
    } else {
        configured
    })
}

/// Decodes the config and merges the sources of each setting.
fn load(args: &CmdArgs) -> anyhow::Result<(Want, NetConf)> {
    let c: Config = args.config()?;
    let net = &c.net;
    let mut mac = c.mac.clone();
    if let Some(m) = args.args.get("MAC").filter(|m| !m.is_empty()) {
        mac = m.to_string();
    }
    if let Some(m) = net.runtime::<String>("mac")?.filter(|m| !m.is_empty()) {
        mac = m;
    }
    if let Some(m) = net.cni_arg::<String>("mac")? {
        mac = m;
    }
    let mut sysctl = c.sysctl.clone();
    if let Some(extra) = net.cni_arg::<BTreeMap<String, String>>("sysctl")? {
        sysctl.extend(extra);
    }
    let mac = (!mac.is_empty())
        .then(|| parse_mac(&mac).map_err(|e| bad_config(format!("invalid args for MAC addr: {e}"))))
        .transpose()?;
    let want = Want {
        data_dir: data_dir(&c.data_dir),
        sysctl,
        mac,
        promisc: net.cni_arg("promisc")?.unwrap_or(c.promisc),
        mtu: net.cni_arg("mtu")?.unwrap_or(c.mtu),
        txqlen: net.cni_arg("txQLen")?.or(c.txqlen),
        allmulti: net.cni_arg("allmulti")?.or(c.allmulti),
    };
    Ok((want, c.net))
}

/// With an allowlist file present, every key must match one of its regexps.
fn check_allowlist(path: &Path, sysctl: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    allowed(&patterns, sysctl.keys())
}

fn allowed<'a>(
    patterns: &[&str],
    keys: impl IntoIterator<Item = &'a String>,
) -> anyhow::Result<()> {
    let res = patterns
        .iter()
        .map(|p| regex_lite::Regex::new(p).with_context(|| format!("sysctl allowlist: {p:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for key in keys {
        if !res.iter().any(|re| re.is_match(key)) {
            return Err(bad_config(format!(
                "Sysctl {key} is not allowed. Only the following sysctls are allowed: {patterns:?}"
            )));
        }
    }
    Ok(())
}

/// The sysctl key (slash form) a configured key names for `ifname`; it must be under `net/`.
fn sysctl_key(key: &str, ifname: &str) -> anyhow::Result<String> {
    let slashed = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    let k = slashed.replacen("IFNAME", ifname, 1);
    let path = sysctl::path_of(&k).map_err(|e| bad_config(format!("{e:#}")))?;
    match path.strip_prefix("/proc/sys/net") {
        Ok(rest) if rest.components().next().is_some() => Ok(k),
        _ => Err(bad_config(format!("invalid net sysctl key: {key:?}"))),
    }
}

/// Writes the sysctls inside `ns`, first pushing onto `rb` a step that writes back the values
/// they had (keys that cannot be read, such as write-only ones, are not restored).
fn write_sysctls<'a>(
    ns: &'a Netns,
    sysctl: &BTreeMap<String, String>,
    ifname: &str,
    rb: &mut Rollback<'a>,
) -> anyhow::Result<()> {
    let keys: Vec<(String, &String)> = sysctl
        .iter()
        .map(|(k, v)| Ok((sysctl_key(k, ifname)?, v)))
        .collect::<anyhow::Result<_>>()?;
    if keys.is_empty() {
        return Ok(());
    }
    let old: Vec<(String, String)> = ns.run(|| {
        keys.iter()
            .filter_map(|(k, _)| sysctl::read(k).ok().map(|v| (k.clone(), v)))
            .collect()
    })?;
    rb.push("sysctls", move || {
        ns.run(|| {
            let mut errors = ErrorList::new();
            for (k, v) in old.iter().rev() {
                errors.note(sysctl::write(k, v));
            }
            errors.finish()
        })?
    });
    ns.run(|| keys.iter().try_for_each(|(k, v)| sysctl::write(k, v)))?
}

fn check_sysctls(
    ns: &Netns,
    sysctl: &BTreeMap<String, String>,
    ifname: &str,
) -> anyhow::Result<()> {
    for (key, want) in sysctl {
        let k = sysctl_key(key, ifname)?;
        let got = sysctl::read_in(ns, &k)?;
        if &got != want {
            bail!("Tuning configured value of {k} is {want}, current value is {got}");
        }
    }
    Ok(())
}

fn container_link(nl: &Handle, ifname: &str) -> anyhow::Result<Link> {
    nl.link_by_name(ifname)?
        .with_context(|| format!("failed to get {ifname:?}"))
}

fn is_allmulti(link: &Link) -> bool {
    link.flags & libc::IFF_ALLMULTI as u32 != 0
}

fn backup_file(dir: &Path, args: &CmdArgs) -> PathBuf {
    dir.join(format!("{}_{}.json", args.container_id, args.ifname))
}

/// The current values of the attributes `want` changes.
fn backup_of(link: &Link, want: &Want) -> Backup {
    Backup {
        mac: want.mac.map(|_| link.mac_string()).unwrap_or_default(),
        promisc: want.promisc.then(|| link.is_promisc()),
        mtu: if want.mtu != 0 { link.mtu } else { 0 },
        allmulti: want.allmulti.map(|_| is_allmulti(link)),
        txqlen: want.txqlen.map(|_| link.txqlen),
    }
}

/// Writes the backup (mode 0600, the directory 0700), indented as the reference's.
fn save(file: &Path, b: &Backup) -> anyhow::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("failed to create backup directory {}", dir.display()))?;
    }
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    b.serialize(&mut serde_json::Serializer::with_formatter(&mut out, fmt))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut f| f.write_all(&out))
        .with_context(|| format!("failed to save file {}", file.display()))
}

fn apply(nl: &Handle, index: u32, want: &Want) -> anyhow::Result<()> {
    if let Some(mac) = want.mac {
        nl.set_mac(index, mac)?;
    }
    if want.promisc {
        nl.set_promisc(index, true)?;
    }
    if want.mtu != 0 {
        nl.set_mtu(index, want.mtu)?;
    }
    if let Some(on) = want.allmulti {
        nl.set_allmulti(index, on)?;
    }
    if let Some(qlen) = want.txqlen {
        nl.set_txqlen(index, qlen)?;
    }
    Ok(())
}

/// The backup in `file`; `None` when it is missing or unreadable (nothing to restore).
fn read_backup(file: &Path) -> Option<Backup> {
    let text = std::fs::read(file).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Puts back the saved values; a missing interface leaves nothing to restore.
fn restore(nl: &Handle, b: &Backup, ifname: &str) -> anyhow::Result<()> {
    let Some(link) = nl.link_by_name(ifname)? else {
        return Ok(());
    };
    let mut errors = ErrorList::new();
    let i = link.index;
    if b.mtu != 0 {
        errors.note(nl.set_mtu(i, b.mtu).context("failed to restore MTU"));
    }
    if !b.mac.is_empty() {
        errors.note(
            parse_mac(&b.mac)
                .and_then(|m| nl.set_mac(i, m))
                .context("failed to restore MAC address"),
        );
    }
    if let Some(on) = b.promisc {
        errors.note(
            nl.set_promisc(i, on)
                .context("failed to restore promiscuous mode"),
        );
    }
    if let Some(on) = b.allmulti {
        errors.note(
            nl.set_allmulti(i, on)
                .context("failed to restore all-multicast mode"),
        );
    }
    if let Some(qlen) = b.txqlen {
        errors.note(
            nl.set_txqlen(i, qlen)
                .context("failed to restore transmit queue length"),
        );
    }
    errors.finish()
}

fn forget(file: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("failed to remove file {}", file.display()))
        }
        _ => Ok(()),
    }
}

fn check_link(link: &Link, want: &Want) -> anyhow::Result<()> {
    let name = &link.name;
    if let Some(mac) = want.mac
        && link.mac != Some(mac)
    {
        bail!(
            "Tuning configured Ethernet of {name} is {}, current value is {}",
            mac_string(&mac),
            link.mac_string()
        );
    }
    if want.promisc != link.is_promisc() {
        bail!(
            "Tuning link {name} configured promisc is {}, current value is {}",
            want.promisc,
            link.is_promisc()
        );
    }
    if want.mtu != 0 && want.mtu != link.mtu {
        bail!(
            "Tuning configured MTU of {name} is {}, current value is {}",
            want.mtu,
            link.mtu
        );
    }
    if let Some(on) = want.allmulti
        && on != is_allmulti(link)
    {
        bail!(
            "Tuning configured all-multicast mode of {name} is {on}, current value is {}",
            is_allmulti(link)
        );
    }
    if let Some(qlen) = want.txqlen
        && qlen != link.txqlen
    {
        bail!(
            "Tuning configured Transmit Queue Length of {name} is {qlen}, current value is {}",
            link.txqlen
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "tuning_tests.rs"]
mod tests;
