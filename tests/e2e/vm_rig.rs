//! The VM rig's self-test (tests/vm/run.sh runs it inside the VM, where `CNI_E2E_VM` is set):
//! the VM's kernel makes every link kind the VM-only tests need, filters bridge VLANs, and has
//! PCI network functions whose netdevs can be moved into namespaces and carry frames (the two
//! e1000 NICs share a QEMU hub). On a kernel without these, each test skips ("kernel lacks");
//! inside the VM nothing may be missing, so the rig proves itself before any applet test runs.

use crate::support::bridge_vlan::kernel_supports_vlan_filtering;
use crate::support::pci_nic::{LentNic, pci_netdevs};
use crate::support::traffic::ping;
use crate::support::{TestNs, kernel_supports, require_root, skip};
use std::process::Command;
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

#[test]
fn pci_nics_move_into_namespaces_and_carry_frames() {
    if !require_root() {
        return;
    }
    if !in_vm() {
        skip!("kernel lacks the VM rig's PCI NICs (this test runs in tests/vm)");
    }
    let nics = pci_netdevs();
    let addrs: Vec<&str> = nics.iter().map(|(pci, _)| pci.as_str()).collect();
    assert_eq!(addrs, ["0000:00:04.0", "0000:00:05.0"], "{nics:?}");
    // `a` also mounts a sysfs of its own, which lists the NIC it holds under its PCI function
    // (the VM's /sys shows the VM's namespace): what host-device by `pciBusID` reads.
    let a = TestNs::with_mounts("nic-a", "mount -t sysfs sysfs /sys");
    let b = TestNs::new("nic-b");
    {
        let lent = [
            LentNic::lend(&nics[0].0, &nics[0].1, &a),
            LentNic::lend(&nics[1].0, &nics[1].1, &b),
        ];
        for (nic, (ns, addr)) in lent
            .iter()
            .zip([(&a, "192.0.2.1/24"), (&b, "192.0.2.2/24")])
        {
            // Renamed, to show that the way back finds it by its PCI address.
            ns.ip(&["link", "set", &nic.name, "name", "nic0"]);
            ns.ip(&["addr", "add", addr, "dev", "nic0"]);
            ns.ip(&["link", "set", "nic0", "up"]);
        }
        assert!(
            ping(&a, "192.0.2.2", Duration::from_secs(20)),
            "no reply over the QEMU hub between the two PCI NICs"
        );
        let seen = Command::new("nsenter")
            .arg(format!("--net={}", a.path().display()))
            .arg(format!("--mount={}", a.mount_path().display()))
            .args(["ls", &format!("/sys/bus/pci/devices/{}/net", nics[0].0)])
            .output()
            .expect("run nsenter");
        assert_eq!(
            String::from_utf8_lossy(&seen.stdout).trim(),
            "nic0",
            "{seen:?}"
        );
        let vm_view = std::fs::read_dir(lent[0].sysfs().join("net"))
            .unwrap()
            .count();
        assert_eq!(vm_view, 0, "the VM's own /sys no longer lists it");
    }
    assert_eq!(
        pci_netdevs(),
        nics,
        "the NICs are back under their own names"
    );
}
