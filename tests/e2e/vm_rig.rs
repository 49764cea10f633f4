//! The VM rig's self-test (tests/vm/run.sh runs it inside the VM, where `CNI_E2E_VM` is set):
//! the VM's kernel makes every link kind the VM-only tests need, filters bridge VLANs, and has
//! PCI network functions whose netdevs can be moved into namespaces and carry frames (the two
//! e1000 NICs share a QEMU hub). On a kernel without these, each test skips ("kernel lacks");
//! inside the VM nothing may be missing, so the rig proves itself before any applet test runs.

use crate::support::bridge_vlan::kernel_supports_vlan_filtering;
use crate::support::traffic::ping;
use crate::support::{TestNs, kernel_supports, require_root, skip};
use std::path::PathBuf;
use std::time::Duration;

/// Set by tests/vm/guest.sh: this process runs inside the VM.
fn in_vm() -> bool {
    std::env::var_os("CNI_E2E_VM").is_some()
}

#[test]
fn the_kernel_makes_every_link_kind_the_vm_tests_need() {
    if !require_root() {
        return;
    }
    for kind in [
        "dummy", "vlan", "ipvlan", "macvlan", "vrf", "bond", "veth", "bridge", "ifb",
    ] {
        if !in_vm() && !kernel_supports(kind) {
            skip!("kernel lacks {kind}");
        }
        assert!(kernel_supports(kind), "the VM's kernel cannot make {kind}");
    }
}

#[test]
fn the_kernel_filters_bridge_vlans() {
    if !require_root() {
        return;
    }
    if !in_vm() && !kernel_supports_vlan_filtering() {
        skip!("kernel lacks bridge VLAN filtering");
    }
    assert!(kernel_supports_vlan_filtering());
}

/// The netdev names of PCI functions as sysfs lists them (`/sys/bus/pci/devices/*/net/*`):
/// those of the namespace that mounted /sys, which in the VM is the VM's own.
fn pci_netdevs() -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for dev in std::fs::read_dir("/sys/bus/pci/devices")
        .into_iter()
        .flatten()
    {
        let dir = dev.unwrap().path().join("net");
        for n in std::fs::read_dir(&dir).into_iter().flatten() {
            let name = n.unwrap().file_name().to_string_lossy().into_owned();
            found.push((dir.clone(), name));
        }
    }
    found.sort();
    found
}

/// A PCI NIC moved into a test namespace as `nic0`; on drop (also while a failing test unwinds)
/// renamed back and returned to the VM's own namespace (that of PID 1) for the next test.
struct Moved<'a> {
    ns: &'a TestNs,
    name: String,
}

impl<'a> Moved<'a> {
    fn new(name: &str, ns: &'a TestNs, addr: &str) -> Moved<'a> {
        let netns = ns.path().to_str().unwrap();
        let moved = std::process::Command::new("ip")
            .args(["link", "set", name, "netns", netns])
            .status()
            .expect("run ip");
        assert!(moved.success(), "move {name} into {}", ns.label());
        let m = Moved {
            ns,
            name: name.to_string(),
        };
        ns.ip(&["link", "set", name, "name", "nic0"]);
        ns.ip(&["addr", "add", addr, "dev", "nic0"]);
        ns.ip(&["link", "set", "nic0", "up"]);
        m
    }
}

impl Drop for Moved<'_> {
    fn drop(&mut self) {
        let back = format!(
            "ip link set nic0 down; ip link set nic0 name {0}; ip link set {0} netns 1",
            self.name
        );
        let _ = self.ns.exec(["sh", "-c", &back]);
    }
}

#[test]
fn pci_nics_move_into_namespaces_and_carry_frames() {
    if !require_root() {
        return;
    }
    if !in_vm() {
        skip!("kernel lacks the VM rig's PCI NICs (this test runs in tests/vm)");
    }
    let nics = pci_netdevs();
    assert!(nics.len() >= 2, "the VM has two e1000 PCI NICs: {nics:?}");
    let (a, b) = (TestNs::new("nic-a"), TestNs::new("nic-b"));
    {
        let _ma = Moved::new(&nics[0].1, &a, "192.0.2.1/24");
        let _mb = Moved::new(&nics[1].1, &b, "192.0.2.2/24");
        assert!(
            ping(&a, "192.0.2.2", Duration::from_secs(20)),
            "no reply over the QEMU hub between the two PCI NICs"
        );
    }
    assert_eq!(
        pci_netdevs(),
        nics,
        "the NICs are back under their own names"
    );
}
