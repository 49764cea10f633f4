//! The applet registry: the one sorted table that dispatch, `cni-multi --list`, `install.sh`
//! and the docs read. Adding an applet is one `mod` line and one row.
//!
//! A plugin also lists its config keys for `APPLET --help`: a `KEYS: &[Key]` table returned by
//! `Plugin::keys`, with `#[cfg_attr(test, derive(serde::Serialize))]` on its config struct and
//! a one-line test `crate::keys::assert_struct_keys::<Config>(KEYS)` that fails when table and
//! struct differ (IPAM applets: `assert_ipam_keys`). What it needs from the kernel goes in
//! `Plugin::needs`, for `cni-multi doctor` (see `applets/ptp.rs` for both). `fn keys` returns
//! `Some(KEYS)`; the default `None` makes `--help` say the keys are not listed yet.

mod bandwidth;
mod bridge;
mod cluster_ipam;
mod dhcp;
mod doctor;
mod dummy;
mod firewall;
mod flannel;
mod host_device;
mod host_local;
mod ipvlan;
mod loopback;
mod macvlan;
mod multi;
mod net;
mod portmap;
mod ptp;
mod sbr;
mod static_ipam;
mod tap;
mod tuning;
mod vlan;
mod vrf;

use crate::skel::Plugin;
use std::ffi::OsString;
use std::process::ExitCode;

/// What a row runs.
pub enum Run {
    /// A CNI plugin, driven by skel.
    Plugin(&'static dyn Plugin),
    /// A command-line tool that parses its own arguments (argv without the applet name).
    Tool(fn(&[OsString]) -> ExitCode),
    /// A CNI plugin that is also a tool when its first argument is `word` (`dhcp daemon`).
    PluginOrTool {
        /// Run through skel otherwise.
        plugin: &'static dyn Plugin,
        /// The first argument that selects the tool.
        word: &'static str,
        /// Gets the arguments after `word`.
        tool: fn(&[OsString]) -> ExitCode,
    },
}

impl Run {
    /// The CNI plugin of a plugin row (also of a plugin that doubles as a tool).
    pub fn plugin(&self) -> Option<&'static dyn Plugin> {
        match *self {
            Run::Plugin(p) | Run::PluginOrTool { plugin: p, .. } => Some(p),
            Run::Tool(_) => None,
        }
    }
}

/// One applet.
pub struct Applet {
    /// The exact name runtimes exec (the `type` in a network configuration).
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// What it runs.
    pub run: Run,
}

/// Every applet, sorted by name (a unit test keeps it so).
pub static APPLETS: &[Applet] = &[
    Applet {
        name: "bandwidth",
        about: "meta: shapes traffic to and from the container with tbf (ifb for egress)",
        run: Run::Plugin(&bandwidth::Bandwidth),
    },
    Applet {
        name: "bridge",
        about: "attaches the container to a host bridge through a veth pair (gateway, ipMasq, VLANs, spoof check)",
        run: Run::Plugin(&bridge::Bridge),
    },
    Applet {
        name: "cluster-ipam",
        about: "IPAM: one pool for a whole cluster kept in etcd v3 (compare-and-create per address, TLS, failover)",
        run: Run::Plugin(&cluster_ipam::ClusterIpam),
    },
    Applet {
        name: "cnitool",
        about: "run a network configuration against a netns, as the reference cnitool (JSON output)",
        run: Run::Tool(net::cnitool_main),
    },
    Applet {
        name: "dhcp",
        about: "IPAM: leases from the LAN's DHCP server (v4, v6) through `dhcp daemon`, which persists them",
        run: Run::PluginOrTool {
            plugin: &dhcp::Dhcp,
            word: "daemon",
            tool: dhcp::daemon_main,
        },
    },
    Applet {
        name: "doctor",
        about: "which applets can work on this node and why not; exit 1 names configs that cannot",
        run: Run::Tool(doctor::main),
    },
    Applet {
        name: "dummy",
        about: "a dummy link in the container holding IPAM's addresses",
        run: Run::Plugin(&dummy::Dummy),
    },
    Applet {
        name: "firewall",
        about: "meta: accepts the container's forwarded traffic (iptables or nftables), admin chain, ingress isolation",
        run: Run::Plugin(&firewall::Firewall),
    },
    Applet {
        name: "flannel",
        about: "meta: turns flanneld's subnet.env into a bridge + host-local config and delegates to it",
        run: Run::Plugin(&flannel::Flannel),
    },
    Applet {
        name: "host-device",
        about: "moves an existing host device (NIC, SR-IOV VF by PCI address, sub-function) into the container",
        run: Run::Plugin(&host_device::HostDevice),
    },
    Applet {
        name: "host-local",
        about: "IPAM: allocates addresses from local ranges, reservations kept as files",
        run: Run::Plugin(&host_local::HostLocal),
    },
    Applet {
        name: "ipvlan",
        about: "an ipvlan link on a host NIC (l2, l3, l3s; chained master from prevResult)",
        run: Run::Plugin(&ipvlan::Ipvlan),
    },
    Applet {
        name: "loopback",
        about: "brings lo up in the container netns",
        run: Run::Plugin(&loopback::Loopback),
    },
    Applet {
        name: "macvlan",
        about: "a macvlan link on a host NIC: the container gets its own MAC on the LAN (IPAM optional)",
        run: Run::Plugin(&macvlan::Macvlan),
    },
    Applet {
        name: "multi",
        about: "meta: several interfaces per pod from one config, each attachment its own plugin list",
        run: Run::Plugin(&multi::Multi),
    },
    Applet {
        name: "net",
        about: "run a network configuration against a netns: add|check|del|gc|status (readable output)",
        run: Run::Tool(net::net_main),
    },
    Applet {
        name: "portmap",
        about: "meta: forwards host ports to the container (iptables or nftables), hairpin and localhost included",
        run: Run::Plugin(&portmap::Portmap),
    },
    Applet {
        name: "ptp",
        about: "a routed point-to-point veth between the container and the host (ipMasq)",
        run: Run::Plugin(&ptp::Ptp),
    },
    Applet {
        name: "sbr",
        about: "meta: source-based routing, a routing table per container address of the interface",
        run: Run::Plugin(&sbr::Sbr),
    },
    Applet {
        name: "static",
        about: "IPAM: returns fixed addresses, routes and DNS from the config",
        run: Run::Plugin(&static_ipam::Static),
    },
    Applet {
        name: "tap",
        about: "a TAP device in the container (owner, group, multi-queue, MAC, MTU, bridge), made through /dev/net/tun",
        run: Run::Plugin(&tap::Tap),
    },
    Applet {
        name: "tuning",
        about: "meta: sets net.* sysctls, MAC, MTU, promisc, allmulti, txqlen; restores them on DEL",
        run: Run::Plugin(&tuning::Tuning),
    },
    Applet {
        name: "vlan",
        about: "an 802.1Q VLAN link on a host NIC in the container",
        run: Run::Plugin(&vlan::Vlan),
    },
    Applet {
        name: "vrf",
        about: "meta: moves the container interface into a VRF (created on demand) with its routes",
        run: Run::Plugin(&vrf::VrfPlugin),
    },
];

/// The applet with exactly this name.
pub fn find(name: &str) -> Option<&'static Applet> {
    APPLETS
        .binary_search_by(|a| a.name.cmp(name))
        .ok()
        .map(|i| &APPLETS[i])
}

/// Marker lines around the generated applet table in README.md.
pub const README_BEGIN: &str = "<!-- applets:begin -->";
/// See [`README_BEGIN`].
pub const README_END: &str = "<!-- applets:end -->";

/// The README's applet table, markers included.
pub fn readme_table() -> String {
    let mut s = format!("{README_BEGIN}\n| applet | what it does |\n|---|---|\n");
    for a in APPLETS {
        s.push_str(&format!("| `{}` | {} |\n", a.name, a.about));
    }
    s.push_str(README_END);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in APPLETS.windows(2) {
            assert!(
                w[0].name < w[1].name,
                "{} must sort before {}",
                w[0].name,
                w[1].name
            );
        }
    }

    #[test]
    fn every_row_is_found_by_its_exact_name() {
        for a in APPLETS {
            assert!(std::ptr::eq(find(a.name).unwrap(), a));
            assert!(find(&a.name.to_uppercase()).is_none() || a.name.to_uppercase() == a.name);
            assert!(!a.about.is_empty(), "{} needs an about line", a.name);
        }
        assert!(find("no-such-applet").is_none());
    }

    /// The README's applet table is generated from this table: `make readme` rewrites it.
    #[test]
    fn readme_lists_exactly_the_applets() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let start = readme
            .find(README_BEGIN)
            .expect("README has the applets:begin marker");
        let end = readme
            .find(README_END)
            .expect("README has the applets:end marker");
        assert_eq!(
            &readme[start..end + README_END.len()],
            readme_table(),
            "README.md's applet table is stale: run `make readme`"
        );
    }
}
