//! `make demo` keeps working, with our own tools only: demo/run.sh, pointed at the test farm as
//! its `CNI_PATH` and run inside a throwaway netns with a `PATH` that holds only the few
//! programs it may use (bash, coreutils, util-linux, ping: no `ip`, `nft` or `iptables`), joins
//! the bundled default network, shows what `net add` made (addresses, routes, the masquerade
//! rules read back from the kernel), pings the gateway, leaves, finds nothing left behind (it
//! fails otherwise) and says it cleaned up.

use crate::support::{Farm, TempDir, TestNs, require_root};
use std::path::Path;

/// What demo/run.sh may run besides our binary (and bash builtins).
const DEMO_TOOLS: &[&str] = &[
    "bash", "env", "sed", "awk", "grep", "find", "ls", "rm", "mkdir", "mktemp", "basename",
    "dirname", "readlink", "seq", "sleep", "cat", "id", "unshare", "nsenter", "ping",
];

/// A directory of symlinks to `DEMO_TOOLS` as found on this machine's PATH.
fn restricted_path(dir: &TempDir) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/usr/bin:/sbin:/bin";
    for tool in DEMO_TOOLS {
        let found = path
            .split(':')
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} not found (make deps installs ping)"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    bin.display().to_string()
}

#[test]
fn demo_script_joins_pings_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let ns = TestNs::new("demo");
    let dir = TempDir::new("demo");
    let path = restricted_path(&dir);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/run.sh");
    let farm = Farm::shared().dir().display().to_string();
    let bash = format!("{path}/bash");
    let out = ns.exec([
        "env",
        "-i",
        &format!("PATH={path}"),
        &format!("CNI_PATH={farm}"),
        &bash,
        script,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "  10.88.77.2/24 gateway 10.88.77.1 on eth0\n",
        "  fd88:77::2/64 gateway fd88:77::1 on eth0\n",
        "  0.0.0.0/0 via 10.88.77.1\n",
        "rules:\n  nftables inet cni_plugins_masquerade masq_checks: \
         ip saddr 10.88.77.2 ip daddr != 10.88.77.0/24 masquerade\n",
        "ip6 saddr fd88:77::2 ip6 daddr != fd88:77::/64 masquerade\n",
        "2 received",
        ": deleted\n",
        "nothing: no veth, no address",
        "cleaned up: both namespaces",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert!(!text.contains("rules left behind"), "{text}");
}
