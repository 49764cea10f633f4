//! The macvlan host shim (issue 16): a host cannot talk to its own macvlan children through
//! their master (the kernel hands frames between a master and its macvlans to neither), so
//! users add, by hand, a bridge-mode macvlan on the master in the host ("shim") and routes to
//! the pods through it. With `hostShim` on macvlan that is done per pod: ADD makes sure the
//! shim exists (created once, shared by every pod on that master, marked as ours by its
//! alias; a link of that name the user made is used but never changed or removed), gives it
//! the configured address, and routes each pod address through it; DEL removes that pod's
//! routes, and the shim with the last pod when we created it.
//!
//! Which pod holds which routes is kept in `<stateDir>/<containerID>-<ifname>` (JSON, written
//! atomically), so DEL needs no `prevResult`; a flock on `<stateDir>/<shim>.lock` orders the
//! "last pod removes the shim" decision against a concurrent ADD. No reference plugin has it.

use crate::error::bad_config;
use crate::netlink::{self, Handle, Link, LinkKind, LinkSpec, MacvlanMode, RouteSpec};
use crate::rollback::Rollback;
use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The alias that marks a shim as created by us (and so ours to remove).
const OURS: &str = "cni-multi macvlan host shim";
/// Where the per-pod state lives unless `hostShim.stateDir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/macvlan-shim";

/// `hostShim`: `true` (a generated name, no address), or an object.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(test, derive(Serialize), serde(rename_all = "camelCase"))]
pub struct ShimConf {
    /// The shim's name; empty: `mvs-` + the master's name (cut to 15 bytes).
    pub name: String,
    /// An address for the shim (so pods can reach the host at it), e.g. `192.168.1.250/24`.
    pub address: Option<IpNet>,
    /// Where per-pod state is kept.
    pub state_dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    On(bool),
    Spec {
        #[serde(default)]
        name: String,
        #[serde(default)]
        address: Option<IpNet>,
        #[serde(default, rename = "stateDir")]
        state_dir: Option<PathBuf>,
    },
}

/// Deserializes `hostShim` (absent or `false`: `None`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ShimConf>, D::Error> {
    let raw = Option::<Raw>::deserialize(d)?;
    Ok(match raw {
        None | Some(Raw::On(false)) => None,
        Some(Raw::On(true)) => Some(ShimConf {
            state_dir: DEFAULT_STATE_DIR.into(),
            ..Default::default()
        }),
        Some(Raw::Spec {
            name,
            address,
            state_dir,
        }) => Some(ShimConf {
            name,
            address,
            state_dir: state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
        }),
    })
}

/// What one pod added: kept in its state file.
#[derive(Debug, Serialize, Deserialize)]
struct PodState {
    shim: String,
    routes: Vec<IpNet>,
}

impl ShimConf {
    /// The shim's name for `master`.
    pub fn name_for(&self, master: &str) -> Result<String> {
        let name = if self.name.is_empty() {
            let mut n = format!("mvs-{master}");
            n.truncate(15);
            n
        } else {
            self.name.clone()
        };
        if name.len() > 15 || name.contains(['/', ' ', ':']) {
            return Err(bad_config(format!("hostShim: invalid name {name:?}")));
        }
        Ok(name)
    }

    fn pod_file(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.state_dir.join(format!("{container_id}-{ifname}"))
    }
}

/// Holds `<stateDir>/<shim>.lock` while alive.
struct ShimLock(#[allow(dead_code)] File);

fn lock(dir: &Path, shim: &str) -> Result<ShimLock> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{shim}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    f.lock()
        .with_context(|| format!("lock {}", path.display()))?;
    Ok(ShimLock(f))
}

/// ADD: the shim on `master` (in the netns of `host`), routes to `pod_ips` through it, and the
/// pod's state file. Undo steps go onto `rb`.
pub fn attach<'a>(
    host: &'a Handle,
    conf: &'a ShimConf,
    master: &Link,
    pod_ips: &[IpNet],
    owner: (&str, &str),
    rb: &mut Rollback<'a>,
) -> Result<()> {
    let name = conf.name_for(&master.name)?;
    let _lock = lock(&conf.state_dir, &name)?;
    let shim = ensure_shim(host, &name, master)?;
    // Undo before anything else can fail: a shim this ADD created must not outlive it when
    // the address, the state file or a route fails (DEL would find no state and keep it).
    let (cid, ifname, shim_name) = (owner.0.to_string(), owner.1.to_string(), name.clone());
    rb.push(format!("remove host shim routes of {cid}"), move || {
        let detached = detach(host, conf, (&cid, &ifname));
        let _lock = lock(&conf.state_dir, &shim_name)?;
        remove_if_unused(host, &conf.state_dir, &shim_name)?;
        detached
    });
    let ours = shim.alias.as_deref() == Some(OURS);
    if let (Some(addr), true) = (conf.address, ours) {
        let have = host.addresses(Some(shim.index), Some(netlink::Family::of_net(&addr)))?;
        if !have.iter().any(|a| a.addr.addr() == addr.addr()) {
            host.add_address(shim.index, addr, true)
                .with_context(|| format!("hostShim: add {addr} to {name}"))?;
        }
    }
    let routes: Vec<IpNet> = pod_ips.iter().map(|ip| host_route(ip.addr())).collect();
    let file = conf.pod_file(owner.0, owner.1);
    write_state(
        &file,
        &PodState {
            shim: name.clone(),
            routes: routes.clone(),
        },
    )?;
    for dst in routes {
        let mut r = RouteSpec::new(dst);
        r.oif = Some(shim.index);
        r.scope = Some(libc::RT_SCOPE_LINK);
        host.replace_route(&r)
            .with_context(|| format!("hostShim: route {dst} via {name}"))?;
    }
    Ok(())
}

/// The shim, created (bridge mode, up, marked ours) unless a link of that name exists; an
/// existing one must be a macvlan on `master`, and one the user made is left as it is.
fn ensure_shim(host: &Handle, name: &str, master: &Link) -> Result<Link> {
    if let Some(l) = host.link_by_name(name)? {
        if l.kind != "macvlan" || l.link != Some(master.index) {
            return Err(bad_config(format!(
                "hostShim: {name} exists but is not a macvlan on {}",
                master.name
            )));
        }
        return Ok(l);
    }
    let spec = LinkSpec {
        parent: Some(master.index),
        ..LinkSpec::new(
            name,
            LinkKind::Macvlan {
                mode: MacvlanMode::Bridge,
                bc_queue_len: None,
            },
        )
    };
    host.create_link(&spec)
        .with_context(|| format!("hostShim: create {name} on {}", master.name))?;
    let l = host
        .link_by_name(name)?
        .with_context(|| format!("hostShim: {name} vanished after creation"))?;
    host.set_alias(l.index, OURS)?;
    host.set_up(l.index)?;
    // Read back: the caller tells ours from the user's by the alias just set.
    host.link_by_index(l.index)?
        .with_context(|| format!("hostShim: {name} vanished after creation"))
}

/// DEL: the pod's routes through the shim, its state file, and the shim itself when it is ours
/// and no other pod uses it. Nothing recorded: nothing to do.
pub fn detach(host: &Handle, conf: &ShimConf, owner: (&str, &str)) -> Result<()> {
    let file = conf.pod_file(owner.0, owner.1);
    let Some(state) = read_state(&file)? else {
        return Ok(());
    };
    let _lock = lock(&conf.state_dir, &state.shim)?;
    let shim = host.link_by_name(&state.shim)?;
    if let Some(shim) = &shim {
        for dst in &state.routes {
            let mut r = RouteSpec::new(*dst);
            r.oif = Some(shim.index);
            match host.del_route(&r) {
                Err(e) if !netlink::is_not_found(&e) => {
                    return Err(e.context(format!("hostShim: remove route {dst}")));
                }
                _ => {}
            }
        }
    }
    remove_file(&file)?;
    if shim.is_some() {
        remove_if_unused(host, &conf.state_dir, &state.shim)?;
    }
    Ok(())
}

/// Deletes the shim `name` when it is ours and no pod's state names it. The caller holds its
/// lock.
fn remove_if_unused(host: &Handle, dir: &Path, name: &str) -> Result<()> {
    let Some(shim) = host.link_by_name(name)? else {
        return Ok(());
    };
    if shim.alias.as_deref() != Some(OURS) || in_use(dir, name)? {
        return Ok(());
    }
    match host.delete_link(shim.index) {
        Err(e) if !netlink::is_not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Whether any pod's state file still names `shim`.
fn in_use(dir: &Path, shim: &str) -> Result<bool> {
    // A state file of a writer killed before its rename names no live pod.
    crate::orphans::sweep(dir, TEMP_PREFIX, '-');
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".lock") || name.starts_with('.') {
            continue;
        }
        if read_state(&e.path())?.is_some_and(|s| s.shim == shim) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A host route to one pod address: /32 or /128.
fn host_route(ip: std::net::IpAddr) -> IpNet {
    IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("full-length prefix")
}

fn read_state(path: &Path) -> Result<Option<PodState>> {
    match std::fs::read(path) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Writes the state file atomically (temp file + rename).
/// The temporary name of a state file being written: `.tmp-<pid>-<name>` (the dot keeps it
/// out of [`in_use`], the pid lets a sweep find a dead writer's).
const TEMP_PREFIX: &str = ".tmp-";

fn write_state(path: &Path, state: &PodState) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!("{TEMP_PREFIX}{}-{name}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec(state)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct C {
        #[serde(default, deserialize_with = "deserialize", rename = "hostShim")]
        shim: Option<ShimConf>,
    }

    fn parse(v: serde_json::Value) -> Option<ShimConf> {
        serde_json::from_value::<C>(v).unwrap().shim
    }

    #[test]
    fn forms_of_the_key() {
        assert_eq!(parse(serde_json::json!({})), None);
        assert_eq!(parse(serde_json::json!({"hostShim": false})), None);
        let on = parse(serde_json::json!({"hostShim": true})).unwrap();
        assert_eq!(on.name_for("eno1").unwrap(), "mvs-eno1");
        assert_eq!(
            on.name_for("enp0s31f6-long-name").unwrap(),
            "mvs-enp0s31f6-l"
        );
        assert_eq!(on.state_dir, Path::new(DEFAULT_STATE_DIR));
        let full = parse(serde_json::json!({"hostShim": {"name": "mv-host",
            "address": "192.168.1.250/24", "stateDir": "/tmp/x"}}))
        .unwrap();
        assert_eq!(full.name_for("eno1").unwrap(), "mv-host");
        assert_eq!(full.address, Some("192.168.1.250/24".parse().unwrap()));
        assert!(serde_json::from_value::<C>(serde_json::json!({"hostShim": "yes"})).is_err());
        let bad = parse(serde_json::json!({"hostShim": {"name": "much-too-long-name"}})).unwrap();
        assert!(bad.name_for("eno1").is_err());
    }

    /// A state file half-written by a killed ADD neither keeps the shim alive nor stays.
    #[test]
    fn a_dead_writers_state_file_is_not_a_pod() {
        let dir = std::env::temp_dir().join(format!("cni-shim-orphan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let state = PodState {
            shim: "mvs-eno1".into(),
            routes: vec![],
        };
        let orphan = dir.join(format!("{TEMP_PREFIX}{dead}-c1-net1"));
        std::fs::write(&orphan, serde_json::to_vec(&state).unwrap()).unwrap();
        assert!(!in_use(&dir, "mvs-eno1").unwrap());
        assert!(!orphan.exists(), "the orphan stays");
        write_state(&dir.join("c2-net1"), &state).unwrap();
        assert!(in_use(&dir, "mvs-eno1").unwrap());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["c2-net1"], "no temp file after a write");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn host_routes_are_full_length() {
        assert_eq!(
            host_route("10.1.2.3".parse().unwrap()).to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            host_route("fd00::3".parse().unwrap()).to_string(),
            "fd00::3/128"
        );
    }
}
