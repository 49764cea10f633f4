//! `make demo` keeps working, with our own tools only: demo/run.sh, pointed at the test farm as
//! its `CNI_PATH` and run inside a throwaway netns with a `PATH` that holds only the few
//! programs it may use (bash, coreutils, util-linux, ping: no `ip`, `nft` or `iptables`), joins
//! the bundled default network, shows what `net add` made (addresses, routes, the masquerade
//! rules read back from the kernel), pings the gateway, leaves, finds nothing left behind (it
//! fails otherwise) and says it cleaned up. `net add`'s summary lists the iptables rules too,
//! read back from the kernel, and they agree with `iptables-save`.

use crate::support::runtime::NetTool;
use crate::support::{Farm, Pair, TempDir, TestNs, require_root};
use serde_json::json;
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

#[test]
fn net_add_summary_lists_the_iptables_rules_it_made() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("demo-ipt");
    let data = TempDir::new("demo-ipt");
    let tool = NetTool::new("demo-ipt");
    tool.write(
        "10-m.conflist",
        &json!({"cniVersion": "1.0.0", "name": "masq", "plugins": [{"type": "bridge",
            "bridge": "ipt0", "isGateway": true, "ipMasq": true, "ipMasqBackend": "iptables",
            "ipam": {"type": "host-local", "dataDir": data.path(),
                     "ranges": [[{"subnet": "10.66.0.0/24"}]]}}]}),
    );
    let netns = pair.container.path().to_str().unwrap();
    let add = tool.run(&pair.host, &["add", "masq", netns]);
    let text = &add.ok().stdout;
    // The oracle: what iptables-save shows for the attachment's chain.
    let saved = pair.host.run(["iptables-save", "-t", "nat"]);
    let chain = saved
        .lines()
        .find_map(|l| l.strip_prefix(":CNI-"))
        .and_then(|l| l.split_whitespace().next())
        .map(|c| format!("CNI-{c}"))
        .unwrap_or_else(|| panic!("no CNI- chain in {saved}"));
    for want in [
        format!("rules:\n  iptables nat -A POSTROUTING -s 10.66.0.2/32 -j {chain}\n"),
        format!("  iptables nat -A {chain} -d 10.66.0.0/24 -j ACCEPT\n"),
        format!("  iptables nat -A {chain} ! -d 224.0.0.0/4 -j MASQUERADE\n"),
    ] {
        assert!(text.contains(&want), "no {want:?} in:\n{text}\n{saved}");
    }
    let del = tool.run(&pair.host, &["del", "masq", netns]);
    assert_eq!(del.ok().stdout, format!("masq eth0 in {netns}: deleted\n"));
}
