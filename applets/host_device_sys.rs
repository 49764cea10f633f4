//! host-device's view of sysfs: which network device sits under a PCI function, an auxiliary
//! device or a kernel device path, and whether a PCI function is bound to a userspace (DPDK)
//! driver. Mirrors the reference's `getLink` / `hasDpdkDriver` / `handleDeviceID`
//! (FEATURES.md 6.6): the first entry of `<dev>/net/` (names sorted), a `virtio*/net/`
//! subdirectory for virtio functions, and the drivers `vfio-pci`, `uio_pci_generic`, `igb_uio`.
//!
//! sysfs shows the network devices of the netns it was *mounted* in, not of the reader, so
//! a plugin run in a netns other than the one `/sys` belongs to needs its own sysfs mount
//! (the e2e tests give their fake host one). The root is a parameter so unit tests can build
//! a fake tree.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Drivers that hand a PCI network function to userspace: the netdev is gone, nothing moves.
pub const USERSPACE_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// A sysfs tree.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// The real `/sys`.
    pub fn system() -> Sysfs {
        Sysfs::at("/sys")
    }

    /// A tree rooted elsewhere (tests).
    pub fn at(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    fn pci(&self, addr: &str) -> PathBuf {
        self.root.join("bus/pci/devices").join(addr)
    }

    fn aux(&self, name: &str) -> PathBuf {
        self.root.join("bus/auxiliary/devices").join(name)
    }

    /// True when `/sys/bus/pci/devices/<addr>` exists.
    pub fn is_pci(&self, addr: &str) -> bool {
        plain_name(addr) && self.pci(addr).exists()
    }

    /// True when `/sys/bus/auxiliary/devices/<name>` exists.
    pub fn is_aux(&self, name: &str) -> bool {
        plain_name(name) && self.aux(name).exists()
    }

    /// The driver bound to PCI function `addr`, `None` when none is.
    pub fn pci_driver(&self, addr: &str) -> Option<String> {
        let target = std::fs::read_link(self.pci(addr).join("driver")).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// True when `addr` is bound to a userspace driver (DPDK mode).
    pub fn is_dpdk(&self, addr: &str) -> bool {
        self.pci_driver(addr)
            .is_some_and(|d| USERSPACE_DRIVERS.contains(&d.as_str()))
    }

    /// The netdev name of PCI function `addr`: `<dev>/net/*`, else `<dev>/virtio*/net/*`.
    pub fn pci_netdev(&self, addr: &str) -> Result<String> {
        let dev = self.pci(addr);
        if !plain_name(addr) || !dev.exists() {
            bail!("PCI device {addr} not found under {}", dev.display());
        }
        let mut dirs = vec![dev.join("net")];
        dirs.extend(
            sorted_entries(&dev)
                .unwrap_or_default()
                .into_iter()
                .filter(|n| n.starts_with("virtio"))
                .map(|n| dev.join(n).join("net")),
        );
        for d in &dirs {
            if let Some(first) = sorted_entries(d).ok().and_then(|v| v.into_iter().next()) {
                return Ok(first);
            }
        }
        bail!("no network device under PCI device {addr} (is it in another netns?)")
    }

    /// The netdev name of auxiliary device `name` (`<dev>/net/*`).
    pub fn aux_netdev(&self, name: &str) -> Result<String> {
        first_netdev(&self.aux(name).join("net"))
            .with_context(|| format!("auxiliary device {name}"))
    }

    /// The netdev of a kernel device path: the first entry of `<path>/net/` (the reference),
    /// or, when `path` is itself a network device's directory (`/sys/devices/virtual/net/x`,
    /// what `/sys/class/net/x` points at), that device.
    pub fn kernelpath_netdev(&self, path: &str) -> Result<String> {
        let p = self.resolve(path)?;
        let own = p.parent().is_some_and(|d| d.ends_with("net")) && p.join("ifindex").exists();
        if own {
            return Ok(p
                .file_name()
                .expect("has a parent")
                .to_string_lossy()
                .into());
        }
        first_netdev(&p.join("net")).with_context(|| format!("kernel device path {path}"))
    }

    /// `path` (absolute, under `/sys/devices/`) inside this tree.
    fn resolve(&self, path: &str) -> Result<PathBuf> {
        let p = Path::new(path);
        let under = p
            .strip_prefix("/sys")
            .ok()
            .filter(|r| r.starts_with("devices"));
        let clean = !p.components().any(|c| c == std::path::Component::ParentDir);
        match under {
            Some(rel) if p.is_absolute() && clean => Ok(self.root.join(rel)),
            _ => Err(crate::error::bad_config(format!(
                "kernel device path {path:?} must be absolute and begin with /sys/devices/"
            ))),
        }
    }
}

/// A single path component (no `/`, not `.` or `..`).
fn plain_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && s != "." && s != ".."
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    Ok(v)
}

fn first_netdev(dir: &Path) -> Result<String> {
    let entries =
        sorted_entries(dir).with_context(|| format!("failed to read {}", dir.display()))?;
    entries
        .into_iter()
        .next()
        .with_context(|| format!("no network device in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn tree() -> (TempDir, Sysfs) {
        let t = TempDir::new("hostdev-sysfs");
        for f in [
            "bus/pci/devices/0000:00:03.0/net/ens3/ifindex",
            "bus/pci/devices/0000:00:04.0/virtio1/net/eth1/ifindex",
            "bus/pci/devices/0000:00:05.0/vendor",
            "bus/pci/devices/0000:00:06.0/net/b1/ifindex",
            "bus/pci/devices/0000:00:06.0/net/a1/ifindex",
            "bus/auxiliary/devices/mlx5_core.sf.4/net/enp3s0f0s4/ifindex",
            "devices/pci0000:00/0000:00:03.0/net/ens3/ifindex",
            "devices/virtual/net/veth9/ifindex",
            "drivers/vfio-pci/x",
            "drivers/virtio-pci/x",
        ] {
            t.write(f, "1\n");
        }
        let link = |dev: &str, drv: &str| {
            std::os::unix::fs::symlink(
                t.path().join("drivers").join(drv),
                t.path().join("bus/pci/devices").join(dev).join("driver"),
            )
            .unwrap()
        };
        link("0000:00:05.0", "vfio-pci");
        link("0000:00:04.0", "virtio-pci");
        let s = Sysfs::at(t.path());
        (t, s)
    }

    #[test]
    fn pci_functions_their_netdevs_and_dpdk() {
        let (_t, s) = tree();
        assert_eq!(s.pci_netdev("0000:00:03.0").unwrap(), "ens3");
        assert_eq!(s.pci_netdev("0000:00:04.0").unwrap(), "eth1");
        assert_eq!(s.pci_netdev("0000:00:06.0").unwrap(), "a1", "first by name");
        let e = s.pci_netdev("0000:00:05.0").unwrap_err();
        assert!(e.to_string().contains("no network device"), "{e}");
        assert!(s.pci_netdev("0000:00:09.0").is_err());
        assert!(s.pci_netdev("../..").is_err() && !s.is_pci(".."));
        assert!(s.is_dpdk("0000:00:05.0"));
        assert!(!s.is_dpdk("0000:00:04.0") && !s.is_dpdk("0000:00:03.0"));
        assert_eq!(s.pci_driver("0000:00:04.0").as_deref(), Some("virtio-pci"));
        assert!(s.is_pci("0000:00:03.0") && !s.is_pci("mlx5_core.sf.4"));
    }

    #[test]
    fn auxiliary_and_kernel_paths() {
        let (_t, s) = tree();
        assert!(s.is_aux("mlx5_core.sf.4"));
        assert_eq!(s.aux_netdev("mlx5_core.sf.4").unwrap(), "enp3s0f0s4");
        assert_eq!(
            s.kernelpath_netdev("/sys/devices/pci0000:00/0000:00:03.0")
                .unwrap(),
            "ens3"
        );
        assert_eq!(
            s.kernelpath_netdev("/sys/devices/virtual/net/veth9")
                .unwrap(),
            "veth9"
        );
        for bad in ["sys/devices/x", "/sys/class/net/x", "/sys/devices/../class"] {
            let e = s.kernelpath_netdev(bad).unwrap_err();
            assert_eq!(crate::error::code_of(&e), 7, "{bad}");
        }
        assert!(s.kernelpath_netdev("/sys/devices/nothing").is_err());
    }
}
