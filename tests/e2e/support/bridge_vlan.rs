//! Bridge VLAN filtering for e2e tests: the probe (this kernel may be built without
//! `CONFIG_BRIDGE_VLAN_FILTERING`: then such tests run in the VM rig, tests/vm) and the oracle,
//! `bridge -j vlan show` (iproute2) read into one [`PortVlan`] per VLAN id, ranges expanded.

use super::netns::TestNs;
use serde_json::Value;
use std::sync::OnceLock;

/// Whether a bridge with `vlan_filtering 1` can be made here (tried once per process in a
/// throwaway namespace). False when not root.
pub fn kernel_supports_vlan_filtering() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        if !nix::unistd::Uid::effective().is_root() {
            return false;
        }
        let ns = TestNs::new("probe-vlan-filtering");
        let add = ["ip", "link", "add", "probe0", "type", "bridge"];
        ns.exec(add.iter().chain(&["vlan_filtering", "1"]))
            .status
            .success()
    })
}

/// One VLAN of a bridge port (or of the bridge itself, its "self" port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortVlan {
    /// The VLAN id.
    pub vid: u16,
    /// Untagged frames entering the port are put in this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port untagged.
    pub untagged: bool,
}

impl PortVlan {
    /// PVID and untagged: the port's native (access) VLAN.
    pub fn native(vid: u16) -> PortVlan {
        PortVlan {
            vid,
            pvid: true,
            untagged: true,
        }
    }

    /// Tagged only: a trunk member.
    pub fn tagged(vid: u16) -> PortVlan {
        PortVlan {
            vid,
            pvid: false,
            untagged: false,
        }
    }
}

/// The VLANs of `dev` in `ns` by `bridge -j vlan show dev DEV`, sorted by id; empty when it has
/// none (or is not a bridge port).
pub fn port_vlans(ns: &TestNs, dev: &str) -> Vec<PortVlan> {
    let out = ns.run(["bridge", "-j", "vlan", "show", "dev", dev]);
    let json: Value = if out.trim().is_empty() {
        Value::Array(Vec::new())
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bridge -j vlan show: {e}: {out}"))
    };
    let mut vlans = Vec::new();
    for port in json.as_array().into_iter().flatten() {
        if port["ifname"] != dev {
            continue;
        }
        for v in port["vlans"].as_array().into_iter().flatten() {
            let flags: Vec<&str> = v["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let first = v["vlan"].as_u64().expect("vlan id") as u16;
            let last = v["vlanEnd"].as_u64().map_or(first, |e| e as u16);
            vlans.extend((first..=last).map(|vid| PortVlan {
                vid,
                pvid: flags.contains(&"PVID"),
                untagged: flags.contains(&"Egress Untagged"),
            }));
        }
    }
    vlans.sort();
    vlans
}
