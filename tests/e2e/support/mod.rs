//! The e2e rig: throwaway namespaces ([`TestNs`], [`Pair`]), temp dirs ([`TempDir`]), the
//! installed `CNI_PATH` farm ([`Farm`]), the plugin call builder ([`Cni`] -> [`Outcome`]),
//! probes that skip loudly ([`require_root`], [`kernel_supports`], [`skip!`]), and real traffic
//! through a fake host (`traffic`).
//!
//! A test reads like this:
//! ```ignore
//! if !require_root() { return; }
//! let pair = Pair::new("loopback-add");
//! let out = Cni::new(Farm::shared(), "loopback").command("ADD").container_id("c1")
//!     .netns(pair.container.path()).ifname("lo").config(conf).run_in(&pair.host);
//! let result = out.result();
//! ```

#![allow(dead_code)] // Each helper is used by some test module, not necessarily by all of them.

pub mod cni;
pub mod echo;
pub mod farm;
pub mod ipam;
pub mod lan;
pub mod netns;
pub mod residue;
pub mod runtime;
pub mod tc;
pub mod tempdir;
pub mod traffic;

#[allow(unused_imports)] // Re-exported for the applet test modules.
pub use cni::{Cni, Outcome};
pub use farm::Farm;
pub use netns::{Pair, TestNs, netns_inode};
pub use tempdir::TempDir;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// Ends the current test early, announcing `skipped: <why>` on stderr (uncaptured, so it shows
/// in every run): `if !kernel_supports("vrf") { skip!("kernel lacks vrf"); }`.
macro_rules! skip {
    ($($why:tt)+) => {{
        $crate::support::announce_skip(&format!($($why)+));
        return;
    }};
}
pub(crate) use skip;

/// One `#[test]` per case (a spec version, a firewall backend), each running `body(case)`:
/// `tests_of!(lifecycle: lifecycle_1_0_0 = "1.0.0", lifecycle_1_1_0 = "1.1.0");`.
macro_rules! tests_of {
    ($body:ident: $($name:ident = $case:literal),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $body($case);
            }
        )+
    };
}
pub(crate) use tests_of;

/// Prints `skipped: <why> (<test name>)` straight to stderr, bypassing the test harness' capture.
/// Under `CI` only what this kernel lacks may be skipped: a missing tool or reference plugin
/// means `.ci/run` failed to install it, and a green run would hide the gap, so it fails.
pub fn announce_skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let _ = writeln!(std::io::stderr(), "skipped: {why} ({test})");
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(
        !in_ci || why.starts_with("kernel lacks"),
        "CI: {why}; .ci/run must install what the tests need"
    );
}

/// True when running as root; otherwise announces `skipped: e2e needs root` and returns false.
pub fn require_root() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        announce_skip("e2e needs root");
    }
    root
}

/// Whether this kernel can create links of `kind` (`dummy`, `vrf`, `macvlan`, `ipvlan`, `vlan`,
/// `vxlan`, `bridge`, `veth`, `ifb`, ...; some kernels lack even `dummy`): tries `ip link add`
/// in a throwaway namespace, once per kind per process. False when not root.
pub fn kernel_supports(kind: &str) -> bool {
    static CACHE: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);
    if !nix::unistd::Uid::effective().is_root() {
        return false;
    }
    if let Some(&known) = CACHE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(kind)
    {
        return known;
    }
    let found = probe_link_kind(kind);
    CACHE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(kind.to_string(), found);
    found
}

fn probe_link_kind(kind: &str) -> bool {
    let ns = TestNs::new(&format!("probe-{kind}"));
    let extra: &[&str] = match kind {
        "vrf" => &["table", "4242"],
        "vlan" => &["id", "42"],
        "vxlan" => &["id", "42", "dstport", "4789"],
        "geneve" => &["id", "42", "remote", "192.0.2.1"],
        "veth" => &["peer", "name", "probe-peer"],
        _ => &[],
    };
    let mut argv = vec!["ip", "link", "add"];
    if matches!(kind, "macvlan" | "macvtap" | "ipvlan" | "ipvtap" | "vlan") {
        // These stack on an Ethernet parent; a veth is one (some kernels lack dummy).
        let parent = [
            "ip",
            "link",
            "add",
            "probe-parent",
            "type",
            "veth",
            "peer",
            "name",
            "probe-peer1",
        ];
        if !ns.exec(parent).status.success() {
            return false;
        }
        argv.extend(["link", "probe-parent"]);
    }
    argv.extend(["probe0", "type", kind]);
    argv.extend(extra);
    ns.exec(&argv).status.success()
}

/// The reference plugin of that name from Debian's `containernetworking-plugins`
/// (`/usr/lib/cni/<name>`), when installed: the oracle for side-by-side tests.
pub fn reference_plugin(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from("/usr/lib/cni").join(name);
    p.is_file().then_some(p)
}
