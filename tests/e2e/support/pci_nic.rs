//! PCI network functions for e2e tests that need a real one (host-device by `pciBusID`): the VM
//! rig (tests/vm) gives its guest two e1000 NICs, at 0000:00:04.0 and 0000:00:05.0, on a QEMU
//! hub of their own, so frames sent by one arrive at the other. [`pci_netdevs`] finds them;
//! [`LentNic`] moves one into a test namespace and gives it back on drop.
//!
//! Note: /sys/bus/pci/devices/*/net lists the netdevs of the namespace that mounted /sys (in
//! the VM: the VM's own), not of the reader's. A fake host made with
//! `TestNs::with_mounts(label, "mount -t sysfs sysfs /sys")` and entered with `nsenter --net
//! --mount` sees the NIC it holds there (vm_rig tests this); `ip -d link` shows `parentdev`.

use super::netns::TestNs;
use std::path::PathBuf;

/// `(PCI address, netdev name)` of every PCI function with a netdev in the namespace that
/// mounted /sys, sorted by address.
pub fn pci_netdevs() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for dev in std::fs::read_dir("/sys/bus/pci/devices")
        .into_iter()
        .flatten()
    {
        let dev = dev.expect("read /sys/bus/pci/devices").path();
        let addr = dev.file_name().unwrap().to_string_lossy().into_owned();
        for n in std::fs::read_dir(dev.join("net")).into_iter().flatten() {
            let name = n
                .expect("read net/")
                .file_name()
                .to_string_lossy()
                .into_owned();
            found.push((addr.clone(), name));
        }
    }
    found.sort();
    found
}

/// A PCI NIC moved from the test process's namespace into a [`TestNs`] (under its own name);
/// on drop, also while a failing test unwinds, renamed back if it was renamed and returned to
/// the namespace of PID 1, ready for the next test.
#[derive(Debug)]
pub struct LentNic<'a> {
    ns: &'a TestNs,
    /// The netdev's name where it came from.
    pub name: String,
    /// Its PCI address (`0000:00:04.0`).
    pub pci: String,
}

impl<'a> LentNic<'a> {
    /// Moves netdev `name` (PCI function `pci`) into `ns`; panics if that fails.
    pub fn lend(pci: &str, name: &str, ns: &'a TestNs) -> LentNic<'a> {
        let netns = ns.path().to_str().expect("UTF-8 netns path");
        let moved = std::process::Command::new("ip")
            .args(["link", "set", name, "netns", netns])
            .status()
            .expect("run ip");
        assert!(moved.success(), "move {name} into {}", ns.label());
        LentNic {
            ns,
            name: name.to_string(),
            pci: pci.to_string(),
        }
    }

    /// `/sys/bus/pci/devices/<pci>`.
    pub fn sysfs(&self) -> PathBuf {
        PathBuf::from("/sys/bus/pci/devices").join(&self.pci)
    }
}

impl Drop for LentNic<'_> {
    fn drop(&mut self) {
        // Found by its PCI parent, whatever it is called now.
        let back = format!(
            "dev=$(ip -o -d link show | grep -F 'parentdev {pci} ' | cut -d: -f2 | tr -d ' ') && \
             [ -n \"$dev\" ] && ip link set \"$dev\" down && \
             {{ [ \"$dev\" = {name} ] || ip link set \"$dev\" name {name}; }} && \
             ip link set {name} netns 1",
            pci = self.pci,
            name = self.name
        );
        let _ = self.ns.exec(["sh", "-c", &back]);
    }
}
