//! `cni-multi doctor` end to end, run inside a throwaway "host" netns with its own `CNI_PATH`
//! farm and conf dir: the kernel report against `ip link add` as the oracle
//! ([`kernel_supports`]), `--json`, the exit code following the configurations found, the
//! plugin scan. Also each plugin's `--help` (config keys), through `applet` and a symlink.

use crate::support::{Cni, Farm, Outcome, TempDir, TestNs, kernel_supports, require_root};
use serde_json::{Value, json};

/// The link kinds doctor probes, as `kernel_supports` (and `ip link add ... type`) names them.
const KINDS: &[&str] = &[
    "veth", "bridge", "macvlan", "ipvlan", "vlan", "vrf", "dummy", "ifb", "vxlan",
];

/// `doctor ARGS` through the farm's `doctor` symlink, CNI_PATH the farm, in `host`.
fn doctor(farm: &Farm, host: &TestNs, conf_dir: &TempDir, args: &[&str]) -> Outcome {
    let mut c = Cni::new(farm, "doctor")
        .arg("--conf-dir")
        .arg(conf_dir.path());
    for a in args {
        c = c.arg(*a);
    }
    c.run_in(host)
}

fn json_of(out: &Outcome) -> &Value {
    out.json
        .as_ref()
        .unwrap_or_else(|| panic!("doctor --json printed no JSON:\n{out}"))
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

/// Each link kind is reported present exactly when `ip link add` can make one; on this
/// machine's kernel that is: dummy, vlan (8021q), ipvlan and vrf missing, the rest present.
#[test]
fn kernel_link_kinds_match_ip_link_add() {
    if !require_root() {
        return;
    }
    let host = TestNs::new("doctor-kinds");
    let confs = TempDir::new("doctor-kinds-conf");
    let out = doctor(Farm::shared(), &host, &confs, &["--json"]);
    assert_eq!(out.code, 0, "no configs: exit 0\n{out}");
    let report = json_of(&out);
    for kind in KINDS {
        let want = if kernel_supports(kind) {
            "ok"
        } else {
            "missing"
        };
        let c = check(report, &format!("link/{kind}"));
        assert_eq!(c["status"], want, "link/{kind}: {c}");
    }
    for q in ["tbf", "ingress", "htb"] {
        assert_eq!(check(report, &format!("qdisc/{q}"))["status"], "ok", "{q}");
    }
    assert_eq!(check(report, "device/tun")["status"], "ok");
    // The throwaway netns doctor probed in left nothing in the host it ran from.
    assert_eq!(host.link_names(), ["lo"]);
}

/// The human table names every probe and shows the missing ones in capitals.
#[test]
fn table_names_every_kind() {
    if !require_root() {
        return;
    }
    let host = TestNs::new("doctor-table");
    let confs = TempDir::new("doctor-table-conf");
    let out = doctor(Farm::shared(), &host, &confs, &[]);
    assert_eq!(out.code, 0, "{out}");
    for kind in KINDS {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("link/{kind} ")))
            .unwrap_or_else(|| panic!("no row for {kind}:\n{}", out.stdout));
        let want = if kernel_supports(kind) {
            " ok "
        } else {
            " MISSING "
        };
        assert!(line.contains(want), "{line}");
    }
    assert!(
        out.stdout.contains("verdict: every configuration can work"),
        "{out}"
    );
}

/// `--json` has the documented fields, and the scan tells our links, foreign binaries and
/// broken links apart.
#[test]
fn json_report_and_plugin_scan() {
    if !require_root() {
        return;
    }
    let farm = Farm::new("doctor-scan");
    std::os::unix::fs::symlink("/nonexistent/plugin", farm.applet("gone")).unwrap();
    let foreign = farm.applet("foreign");
    std::fs::write(&foreign, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = TestNs::new("doctor-json");
    let confs = TempDir::new("doctor-json-conf");
    let out = doctor(&farm, &host, &confs, &["--json"]);
    let r = json_of(&out);
    for key in [
        "ok", "cni_path", "conf_dir", "checks", "plugins", "applets", "configs",
    ] {
        assert!(r.get(key).is_some(), "no {key} in {r:#}");
    }
    assert_eq!(r["ok"], true);
    assert_eq!(r["cni_path"], json!([farm.dir()]));
    let kind_of = |name: &str| {
        let p = r["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name);
        p.map(|p| p["kind"].as_str().unwrap().to_string())
    };
    assert_eq!(kind_of("bridge").as_deref(), Some("ours"));
    assert_eq!(kind_of("cni-multi").as_deref(), Some("ours"));
    assert_eq!(kind_of("foreign").as_deref(), Some("foreign"));
    assert_eq!(kind_of("gone").as_deref(), Some("broken"));
    let bridge = r["applets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "bridge");
    assert_eq!(bridge.unwrap()["installed"], true);
    assert_eq!(bridge.unwrap()["can_work"], true);
    for c in r["checks"].as_array().unwrap() {
        let st = c["status"].as_str().unwrap();
        assert!(["ok", "warn", "missing", "error"].contains(&st), "{c}");
    }
}

fn write_conf(dir: &TempDir, file: &str, conf: Value) {
    dir.write(file, serde_json::to_vec_pretty(&conf).unwrap());
}

/// A conf dir needing only bridge (and host-local, portmap): exit 0.
#[test]
fn exit_0_when_the_configs_can_work() {
    if !require_root() {
        return;
    }
    let host = TestNs::new("doctor-ok");
    let confs = TempDir::new("doctor-ok-conf");
    write_conf(
        &confs,
        "10-br.conflist",
        json!({"cniVersion": "1.0.0", "name": "br", "plugins": [
            {"type": "bridge", "bridge": "cni9", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]}),
    );
    let out = doctor(Farm::shared(), &host, &confs, &[]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains("10-br.conflist  network br (bridge, host-local, portmap)  ok")
    );
    assert_eq!(out.stderr, "");
}

/// A config needing ipvlan: exit 1, naming the config and what it lacks.
#[test]
fn exit_1_names_the_config_needing_ipvlan() {
    if !require_root() {
        return;
    }
    // Where the kernel has ipvlan (the VM rig), an ipvlan applet must be absent for the
    // configuration to fail: a private farm without it.
    let farm = Farm::new("doctor-ipvlan");
    let _ = std::fs::remove_file(farm.applet("ipvlan"));
    let host = TestNs::new("doctor-ipvlan");
    let confs = TempDir::new("doctor-ipvlan-conf");
    write_conf(
        &confs,
        "10-br.conflist",
        json!({"cniVersion": "1.0.0", "name": "br", "plugins": [{"type": "bridge"}]}),
    );
    write_conf(
        &confs,
        "20-iv.conf",
        json!({"cniVersion": "1.0.0", "name": "iv", "type": "ipvlan", "master": "eth0",
               "ipam": {"type": "host-local", "subnet": "10.8.0.0/24"}}),
    );
    let out = doctor(&farm, &host, &confs, &["--json"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("ipvlan: plugin not found in CNI_PATH"),
        "{out}"
    );
    let file = confs.join("20-iv.conf").display().to_string();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(!lines.is_empty(), "{out}");
    for l in &lines {
        assert!(
            l.starts_with(&format!("doctor: {file} (network iv): ipvlan: ")),
            "{l}"
        );
    }
    if !kernel_supports("ipvlan") {
        assert!(out.stderr.contains("ipvlan: needs link/ipvlan"), "{out}");
    }
    let r = json_of(&out);
    assert_eq!(r["ok"], false);
    let by_file = |f: &str| {
        r["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["file"].as_str().unwrap().ends_with(f))
    };
    assert_eq!(by_file("10-br.conflist").unwrap()["problems"], json!([]));
    assert_eq!(by_file("20-iv.conf").unwrap()["network"], "iv");
}

/// A config naming a plugin absent from CNI_PATH: exit 1.
#[test]
fn exit_1_when_a_plugin_is_not_installed() {
    if !require_root() {
        return;
    }
    let host = TestNs::new("doctor-absent");
    let confs = TempDir::new("doctor-absent-conf");
    write_conf(
        &confs,
        "50-x.conflist",
        json!({"cniVersion": "1.0.0", "name": "x", "plugins": [
            {"type": "bridge"}, {"type": "no-such-plugin"}]}),
    );
    let out = doctor(Farm::shared(), &host, &confs, &[]);
    assert_eq!(out.code, 1, "{out}");
    let file = confs.join("50-x.conflist").display().to_string();
    assert_eq!(
        out.stderr.trim_end(),
        format!("doctor: {file} (network x): no-such-plugin: plugin not found in CNI_PATH")
    );
    assert!(
        out.stdout
            .contains("verdict: 1 configuration(s) cannot work"),
        "{out}"
    );
}

/// `cni-multi applet doctor`, `cni-multi doctor` and the symlink are one command.
#[test]
fn reachable_three_ways() {
    if !require_root() {
        return;
    }
    let farm = Farm::shared();
    let host = TestNs::new("doctor-ways");
    let confs = TempDir::new("doctor-ways-conf");
    let conf = confs.path().to_str().unwrap();
    let args = [
        "--conf-dir",
        conf,
        "--cni-path",
        farm.dir().to_str().unwrap(),
        "--help",
    ];
    let via = |prefix: &[&str]| {
        let mut c = Cni::at(farm.binary());
        for a in prefix.iter().chain(&args) {
            c = c.arg(*a);
        }
        c.run_in(&host)
    };
    let want = doctor(farm, &host, &confs, &["--help"]);
    assert_eq!(want.code, 0, "{want}");
    assert!(want.stdout.contains("--json") && want.stdout.contains("--conf-dir"));
    assert_eq!(via(&["doctor"]).stdout, want.stdout);
    assert_eq!(via(&["applet", "doctor"]).stdout, want.stdout);
}

/// Each plugin's `--help` lists its config keys one per line, through `applet` and the symlink.
#[test]
fn plugin_help_lists_config_keys() {
    if !require_root() {
        return;
    }
    let farm = Farm::shared();
    let host = TestNs::new("doctor-help");
    let via_symlink = Cni::new(farm, "bridge").arg("--help").run_in(&host);
    let via_applet = Cni::at(farm.binary())
        .arg("applet")
        .arg("bridge")
        .arg("--help")
        .run_in(&host);
    assert_eq!(via_symlink.code, 0, "{via_symlink}");
    assert_eq!(via_symlink.stdout, via_applet.stdout);
    for key in [
        "bridge",
        "isGateway",
        "ipMasq",
        "vlanTrunk",
        "macspoofchk",
        "portIsolation",
    ] {
        let rows = via_symlink
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(key))
            .count();
        assert_eq!(rows, 1, "{key} must have one line:\n{}", via_symlink.stdout);
    }
    let hl = Cni::new(farm, "host-local").arg("-h").run_in(&host);
    assert!(hl.stdout.contains("\n  ipam.subnet "), "{hl}");
}
