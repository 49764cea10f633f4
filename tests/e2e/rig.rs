//! Tests of the rig itself: namespaces are really separate and really gone after drop, temp dirs
//! vanish, the farm matches `--list`, the call builder passes exactly what it is told, and the
//! binary's own entry points (`--version`, `--help`, `--list`, unknown applets) behave as
//! dispatch promises (exit 127 for an unknown applet, like a shell's "command not found").

use crate::support::residue::nft_residue;
use crate::support::{
    self, Cni, Farm, Pair, TempDir, TestNs, farm, kernel_supports, netns_inode, require_root,
};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn own_netns() -> u64 {
    netns_inode(Path::new("/proc/self/ns/net"))
}

#[test]
fn test_ns_is_a_fresh_netns_of_its_own() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("distinct");
    assert_ne!(pair.host.inode(), own_netns());
    assert_ne!(pair.container.inode(), own_netns());
    assert_ne!(pair.host.inode(), pair.container.inode());
    assert_eq!(
        pair.host.link_names(),
        ["lo"],
        "a fresh netns holds only lo"
    );
    let seen_inside = pair.host.run(["readlink", "/proc/self/ns/net"]);
    assert_eq!(seen_inside.trim(), format!("net:[{}]", pair.host.inode()));
}

#[test]
fn test_ns_is_gone_after_drop() {
    if !require_root() {
        return;
    }
    let ns = TestNs::new("gone");
    let (pid, path) = (ns.pid(), ns.path().to_path_buf());
    assert!(path.exists());
    drop(ns);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "holder {pid} still alive"
    );
    assert!(!path.exists());
}

#[test]
fn test_ns_drop_also_ends_processes_left_inside() {
    if !require_root() {
        return;
    }
    let ns = TestNs::new("straggler");
    let pid = ns.sh("sleep 1000 >/dev/null 2>&1 & echo $!");
    let pid = pid.trim();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(ns);
    // Killed and, orphaned to init (or a subreaper), reaped shortly after.
    let gone = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    assert!(
        gone,
        "process {pid} left inside the netns survived the drop"
    );
}

#[test]
fn test_ns_is_gone_after_a_panicking_test() {
    if !require_root() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        let ns = TestNs::new("panics");
        let dir = TempDir::new("panics");
        tx.send((ns.pid(), dir.path().to_path_buf())).unwrap();
        panic!("a test failing while it holds a netns and a temp dir");
    })
    .join();
    assert!(failed.is_err());
    let (pid, dir) = rx.recv().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "holder {pid} survived the panic"
    );
    assert!(!dir.exists(), "{} survived the panic", dir.display());
}

#[test]
fn exec_and_the_ip_oracle_act_inside_the_test_ns_only() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("oracle");
    // A bridge, not a dummy: some kernels (this machine's among them) lack the dummy driver.
    pair.host.ip(&["link", "add", "rig-br0", "type", "bridge"]);
    pair.host
        .ip(&["addr", "add", "192.0.2.7/24", "dev", "rig-br0"]);
    let link = pair
        .host
        .link("rig-br0")
        .expect("the bridge is visible inside");
    assert_eq!(link["linkinfo"]["info_kind"], "bridge");
    let addrs = pair.host.ip_json(&["addr", "show", "dev", "rig-br0"]);
    assert_eq!(addrs[0]["addr_info"][0]["local"], "192.0.2.7");
    assert!(pair.container.link("rig-br0").is_none());
    let here = Command::new("ip")
        .args(["link", "show", "rig-br0"])
        .output()
        .unwrap();
    assert!(
        !here.status.success(),
        "the bridge leaked into the test's own netns"
    );
    assert!(!pair.host.exec(["false"]).status.success());
    assert_eq!(pair.host.sh("echo $((6 * 7))").trim(), "42");
}

#[test]
fn temp_dir_is_removed_on_drop() {
    let dir = TempDir::new("drop me/../x");
    let file = dir.write("a/b/c.txt", "data");
    assert!(dir.path().starts_with(std::env::temp_dir()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
    let other = TempDir::new("drop me/../x");
    assert_ne!(dir.path(), other.path());
    let path = dir.path().to_path_buf();
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn farm_holds_the_binary_and_one_symlink_per_applet() {
    let farm = Farm::shared();
    let mut want = farm::applet_names();
    want.push("cni-multi".to_string());
    want.sort();
    let mut have: Vec<String> = std::fs::read_dir(farm.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    have.sort();
    assert_eq!(have, want);
    let bin = std::fs::symlink_metadata(farm.binary()).unwrap();
    assert!(bin.file_type().is_file() && bin.permissions().mode() & 0o111 != 0);
    assert_eq!(
        std::fs::read(farm.binary()).unwrap(),
        std::fs::read(farm::binary()).unwrap()
    );
    for name in farm::applet_names() {
        assert_eq!(
            std::fs::read_link(farm.applet(&name)).unwrap(),
            Path::new("cni-multi"),
            "{name}"
        );
    }
}

#[test]
fn version_help_and_list_of_the_binary() {
    let run = |args: &[&str]| Command::new(farm::binary()).args(args).output().unwrap();
    let version = run(&["--version"]);
    assert!(version.status.success());
    let line = String::from_utf8(version.stdout).unwrap();
    assert!(
        line.starts_with(&format!(
            "cni-multi {} (CNI spec ",
            env!("CARGO_PKG_VERSION")
        )),
        "{line}"
    );
    let names = farm::applet_names();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "--list is sorted and unique");
    for args in [&["--help"][..], &[]] {
        let help = run(args);
        assert!(help.status.success(), "{args:?}");
        let text = String::from_utf8(help.stdout).unwrap();
        assert!(
            text.contains("usage:") && text.contains("cni-multi applet NAME"),
            "{text}"
        );
        for name in &names {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(name.as_str())),
                "--help lacks {name}"
            );
        }
    }
    let unknown = run(&["applet", "no-such-applet"]);
    assert_eq!(unknown.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-applet"));
    assert_eq!(run(&["applet"]).status.code(), Some(2));
    assert_eq!(run(&["--no-such-option"]).status.code(), Some(2));
    assert_eq!(run(&["no-such-applet", "x"]).status.code(), Some(2));
    // Busybox style: the applet name as the first argument, without `applet`.
    let net_help = run(&["net", "--help"]);
    assert!(net_help.status.success(), "{net_help:?}");
    assert!(
        String::from_utf8_lossy(&net_help.stdout).contains("add"),
        "{net_help:?}"
    );
    let version = Command::new(farm::binary())
        .arg("loopback")
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&version.stdout).unwrap();
    assert_eq!(reply["cniVersion"], "1.1.0", "{version:?}");
}

#[test]
fn unknown_applet_symlink_exits_127_with_a_cni_error() {
    if !require_root() {
        return;
    }
    let host = TestNs::new("unknown");
    let dir = TempDir::new("unknown-applet");
    std::os::unix::fs::symlink(Farm::shared().binary(), dir.join("no-such-plugin")).unwrap();
    let call = Cni::at(dir.join("no-such-plugin"));
    let plain = call.run_in(&host);
    assert_eq!(plain.code, 127, "{plain}");
    assert!(plain.stderr.contains("no-such-plugin"), "{plain}");
    assert!(plain.stdout.is_empty(), "{plain}");
    let as_plugin = call.command("ADD").run_in(&host);
    assert_eq!(as_plugin.code, 127, "{as_plugin}");
    let err = as_plugin.json.as_ref().expect("a CNI error on stdout");
    assert_eq!(as_plugin.error_code(), Some(999), "{as_plugin}");
    assert!(
        err["msg"].as_str().unwrap().contains("no-such-plugin"),
        "{as_plugin}"
    );
    assert!(err["cniVersion"].is_string(), "{as_plugin}");
}

/// A stand-in plugin that reports what it was given: its environment (as execve passed it), its
/// stdin, its netns and argv.
const ECHO_PLUGIN: &str = "#!/bin/sh\n\
    tr '\\0' '\\n' < /proc/$$/environ | sort > \"$(dirname \"$0\")/env\"\n\
    cat > \"$(dirname \"$0\")/stdin\"\n\
    readlink /proc/self/ns/net\n\
    echo \"$@\"\n\
    echo oops >&2\n\
    exit 3\n";

#[test]
fn cni_builder_passes_exactly_what_it_is_told() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("builder");
    let dir = TempDir::new("builder");
    let plugin = dir.write("echo-plugin", ECHO_PLUGIN);
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Cni::at(&plugin)
        .command("ADD")
        .container_id("ctr-1")
        .netns(pair.container.path())
        .ifname("eth0")
        .args("IgnoreUnknown=1")
        .path("/nowhere")
        .env("EXTRA", "x")
        .env("DROPPED", "y")
        .unset("DROPPED")
        .arg("first")
        .arg("second")
        .config(serde_json::json!({"cniVersion": "1.1.0", "name": "n", "type": "echo-plugin"}))
        .run_in(&pair.host);
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(out.stderr, "oops\n");
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("net:[{}]", pair.host.inode()),
        "runs inside the host netns"
    );
    assert_eq!(lines.next().unwrap(), "first second");
    assert!(out.json.is_none() && out.error_code().is_none());
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    let want = format!(
        "CNI_ARGS=IgnoreUnknown=1\nCNI_COMMAND=ADD\nCNI_CONTAINERID=ctr-1\nCNI_IFNAME=eth0\n\
         CNI_NETNS={}\nCNI_PATH=/nowhere\nEXTRA=x\nPATH={}\n",
        pair.container.path().display(),
        support::cni::STD_PATH
    );
    assert_eq!(env, want);
    let stdin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stdin")).unwrap()).unwrap();
    assert_eq!(stdin["type"], "echo-plugin");
}

#[test]
fn cni_builder_kills_a_hung_plugin() {
    if !require_root() {
        return;
    }
    let host = TestNs::new("hung");
    let call = Cni::at("/bin/sleep")
        .arg("30")
        .timeout(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let caught = std::panic::catch_unwind(|| call.run_in(&host));
    let msg = caught.expect_err("a hung call must fail the test");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("timed out"), "{msg}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn kernel_probe_answers_and_skip_announces() {
    if !require_root() {
        return;
    }
    assert!(kernel_supports("veth"));
    assert!(kernel_supports("veth"), "cached answer");
    assert!(!kernel_supports("no-such-kind"));
    if !kernel_supports("no-such-kind") {
        support::skip!("kernel lacks no-such-kind (expected: this proves skip! returns)");
    }
    unreachable!("skip! must return from the test");
}

/// The residue oracle lets through the shared skeleton only: a container's DNAT rule, another
/// `cni_` table, or a masquerade rule outside `CNI-HOSTPORT-MASQ` is reported.
#[test]
fn residue_oracle_allows_only_the_shared_skeleton() {
    let skeleton = "table ip cni_hostport {\n\tcomment \"CNI portmap plugin\"\n\
        \tchain hostports {\n\t}\n\tchain prerouting {\n\
        \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
        \t\tfib daddr type local jump hostports_all\n\t}\n}\n\
        table ip nat {\n\tchain CNI-HOSTPORT-MASQ {\n\
        \t\tmeta mark & 0x00002000 == 0x00002000 counter packets 4 bytes 212 masquerade\n\t}\n}\n";
    assert_eq!(nft_residue(skeleton), Vec::<String>::new());
    let dnat = skeleton.replace(
        "\tchain hostports {\n",
        "\tchain hostports {\n\t\ttcp dport 8080 dnat to 10.0.0.2:80 comment \"c1\"\n",
    );
    assert_eq!(nft_residue(&dnat).len(), 1, "{dnat}");
    let other = format!("{skeleton}table inet cni_other {{\n}}\n");
    assert_eq!(nft_residue(&other).len(), 1, "{other}");
    let masq = skeleton.replace(
        "\tchain CNI-HOSTPORT-MASQ {\n",
        "\tchain CNI-0123 {\n\t\tip daddr != 224.0.0.0/4 masquerade\n\t}\n\tchain CNI-HOSTPORT-MASQ {\n",
    );
    assert_eq!(nft_residue(&masq).len(), 1, "{masq}");
}
