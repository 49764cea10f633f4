//! Unit tests of doctor's pure parts: needs, verdicts, rendering, the file-system scan.

use super::*;
use crate::testutil::TempDir;
use serde_json::json;

/// Checks as this kernel answers them: ipvlan/vlan/vrf/dummy missing, the rest present.
fn checks() -> Vec<Check> {
    let mut v: Vec<Check> = crate::netlink::probe::LINK_KINDS
        .iter()
        .map(|k| match *k {
            "ipvlan" | "vlan" | "vrf" | "dummy" => Check::new(
                Probe::Link(k).id(),
                Status::Missing,
                format!("kernel lacks {k}"),
            ),
            _ => Check::new(Probe::Link(k).id(), Status::Ok, "works"),
        })
        .collect();
    v.push(Check::new("qdisc/tbf", Status::Ok, "works"));
    v.push(Check::new("qdisc/ingress", Status::Ok, "works"));
    v.push(Check::new("netfilter", Status::Missing, "none"));
    v
}

fn opts() -> Options {
    Options {
        cni_path: vec!["/opt/cni/bin".into()],
        conf_dir: "/etc/cni/net.d".into(),
        dhcp_socket: DHCP_SOCKET.into(),
        state_dirs: vec![],
    }
}

fn list(v: serde_json::Value) -> anyhow::Result<NetworkConfigList> {
    NetworkConfigList::from_bytes(&serde_json::to_vec(&v).unwrap())
}

fn judge_one(conf: serde_json::Value, installed: &[&str]) -> ConfigStatus {
    let configs = vec![(PathBuf::from("/c/10-x.conflist"), list(conf))];
    let found = |t: &str| installed.contains(&t);
    let r = judge(&opts(), checks(), vec![], &configs, &found);
    assert_eq!(r.ok, r.configs[0].problems.is_empty());
    r.configs.into_iter().next().unwrap()
}

#[test]
fn a_config_needing_only_what_is_present_is_ok() {
    let c = judge_one(
        json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local"}},
            {"type": "bandwidth"}]}),
        &["bridge", "host-local", "bandwidth"],
    );
    assert_eq!(c.problems, Vec::<String>::new());
    assert_eq!(c.plugins, ["bridge", "host-local", "bandwidth"]);
    assert_eq!(c.network.as_deref(), Some("n"));
}

#[test]
fn a_missing_kernel_feature_names_the_type_and_the_check() {
    let c = judge_one(
        json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "ipvlan"}]}),
        &["ipvlan"],
    );
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
    assert!(c.problems[0].starts_with("ipvlan: needs link/ipvlan: kernel lacks ipvlan"));
}

#[test]
fn a_plugin_absent_from_cni_path_is_a_problem() {
    let c = judge_one(
        json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local"}}]}),
        &["bridge"],
    );
    assert_eq!(c.problems, ["host-local: plugin not found in CNI_PATH"]);
}

#[test]
fn conditional_needs_apply_only_when_their_key_is_set() {
    let conf = |masq: serde_json::Value| json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "ptp", "ipMasq": masq}]});
    assert!(judge_one(conf(json!(false)), &["ptp"]).problems.is_empty());
    let c = judge_one(conf(json!(true)), &["ptp"]);
    assert_eq!(c.problems, ["ptp: needs netfilter: none"]);
}

#[test]
fn an_unknown_type_needs_only_to_be_installed() {
    assert!(needs_of("some-foreign-plugin").is_empty());
    let c = judge_one(
        json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "some-foreign-plugin"}]}),
        &["some-foreign-plugin"],
    );
    assert!(c.problems.is_empty());
}

#[test]
fn a_config_that_does_not_parse_is_a_problem() {
    let configs = vec![(PathBuf::from("/c/bad.conf"), list(json!({"plugins": []})))];
    let r = judge(&opts(), checks(), vec![], &configs, &|_| true);
    assert!(!r.ok);
    assert!(r.configs[0].problems[0].starts_with("does not parse"));
    assert_eq!(r.configs[0].network, None);
}

#[test]
fn no_config_is_ok_and_applets_say_what_they_miss() {
    let r = judge(&opts(), checks(), vec![], &[], &|t| t == "bridge");
    assert!(r.ok);
    let by_name = |n: &str| r.applets.iter().find(|a| a.name == n).unwrap();
    assert!(by_name("bridge").installed && by_name("bridge").missing.is_empty());
    assert!(by_name("bridge").can_work && !by_name("ptp").can_work);
    assert_eq!(by_name("vrf").missing, ["link/vrf"]);
    assert_eq!(by_name("portmap").missing, ["netfilter"]);
    assert_eq!(by_name("ptp").limited, ["ipMasq: netfilter"]);
    assert!(by_name("ptp").missing.is_empty());
    assert!(!by_name("portmap").installed);
}

/// Each type's needs are declared once: in its applet or in EXTRA, never both; EXTRA sorted.
#[test]
fn needs_are_declared_once() {
    for (name, _) in needs::EXTRA {
        if let Some(a) = crate::applets::find(name)
            && let Some(p) = a.run.plugin()
        {
            assert!(
                p.needs().is_empty(),
                "{name}: needs in both Plugin::needs and EXTRA"
            );
        }
    }
    for w in needs::EXTRA.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "EXTRA must stay sorted: {} {}",
            w[0].0,
            w[1].0
        );
    }
}

/// Every need names a check doctor runs.
#[test]
fn every_need_is_probed() {
    let mut ids: Vec<String> = crate::netlink::probe::LINK_KINDS
        .iter()
        .map(|k| Probe::Link(k).id())
        .chain(
            crate::tc::probe::QDISCS
                .iter()
                .map(|q| Probe::Qdisc(q).id()),
        )
        .collect();
    ids.push(Probe::Tun.id());
    let nf = crate::netfilter::probe::Netfilter {
        nf_tables: true,
        iptables: false,
        iptables_flavour: None,
        legacy_rules: None,
        nft_rules: None,
    };
    ids.extend(netfilter_checks(&nf).into_iter().map(|c| c.id));
    ids.push(scan::dhcp_socket(std::path::Path::new("/nonexistent")).id);
    for t in needs::known_types() {
        for n in needs_of(t) {
            assert!(
                ids.contains(&n.probe.id()),
                "{t} needs {:?}, never probed",
                n.probe
            );
        }
    }
}

#[test]
fn need_conditions() {
    let n = Need::when("ipMasq", Probe::Netfilter);
    let m = |v: serde_json::Value| v.as_object().unwrap().clone();
    assert!(!n.applies(&m(json!({}))));
    assert!(!n.applies(&m(json!({"ipMasq": false}))));
    assert!(!n.applies(&m(json!({"ipMasq": null}))));
    assert!(n.applies(&m(json!({"ipMasq": true}))));
    assert!(Need::always(Probe::Tun).applies(&m(json!({}))));
}

#[test]
fn table_shows_every_section_and_the_verdict() {
    let configs = vec![(
        PathBuf::from("/c/20-ipvlan.conf"),
        list(json!({"cniVersion": "1.0.0", "name": "iv", "plugins": [{"type": "ipvlan"}]})),
    )];
    let plugins = vec![Installed {
        name: "bridge".into(),
        dir: "/opt/cni/bin".into(),
        kind: InstalledKind::Ours,
        target: Some("cni-multi".into()),
    }];
    let r = judge(&opts(), checks(), plugins, &configs, &|_| true);
    let t = table(&r);
    for want in [
        "NODE",
        "PLUGINS",
        "APPLETS",
        "CONFIGURATIONS",
        "verdict: 1 configuration",
    ] {
        assert!(t.contains(want), "{want} missing from:\n{t}");
    }
    assert!(t.contains("link/dummy") && t.contains("MISSING"), "{t}");
    assert!(t.contains("/opt/cni/bin -> cni-multi"), "{t}");
    assert!(
        t.contains("/c/20-ipvlan.conf  network iv (ipvlan)  FAIL"),
        "{t}"
    );
    assert!(t.contains("      ipvlan: needs link/ipvlan"), "{t}");
    let line = t
        .lines()
        .find(|l| l.trim_start().starts_with("vrf "))
        .unwrap();
    assert!(
        line.contains("NO") && line.contains("missing link/vrf"),
        "{line}"
    );
}

#[test]
fn json_has_the_documented_fields() {
    let r = judge(&opts(), checks(), vec![], &[], &|_| false);
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "ok", "cni_path", "conf_dir", "checks", "plugins", "applets", "configs",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(v["checks"][0]["status"], "ok");
    assert!(v["checks"][0]["id"].is_string() && v["checks"][0]["detail"].is_string());
}

#[test]
fn scan_tells_ours_foreign_broken_and_unknown_apart() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let d = TempDir::new("doctor-scan");
    let bin = d.write("cni-multi", "#!/bin/sh\n");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let foreign = d.write("foreign", "#!/bin/sh\n");
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.write("notes.txt", "x");
    symlink("cni-multi", d.path().join("bridge")).unwrap();
    symlink("cni-multi", d.path().join("no-such-applet")).unwrap();
    symlink("/nonexistent/x", d.path().join("gone")).unwrap();
    let got: Vec<(String, InstalledKind)> = scan::plugins(&[d.path().to_path_buf()])
        .into_iter()
        .map(|i| (i.name, i.kind))
        .collect();
    let want = [
        ("bridge", InstalledKind::Ours),
        ("cni-multi", InstalledKind::Ours),
        ("foreign", InstalledKind::Foreign),
        ("gone", InstalledKind::Broken),
        ("no-such-applet", InstalledKind::OursUnknown),
        ("notes.txt", InstalledKind::NotExecutable),
    ];
    let want: Vec<(String, InstalledKind)> =
        want.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    assert_eq!(got, want);
}

#[test]
fn state_dirs_and_the_dhcp_socket() {
    let d = TempDir::new("doctor-state");
    assert_eq!(scan::state_dir(d.path()).status, Status::Ok);
    let absent = scan::state_dir(&d.path().join("a/b"));
    assert_eq!(absent.status, Status::Ok);
    assert!(absent.detail.contains("absent"));
    let file = d.write("f", "x");
    assert_eq!(scan::state_dir(&file).status, Status::Error);
    let sock = d.path().join("dhcp.sock");
    assert_eq!(scan::dhcp_socket(&sock).status, Status::Missing);
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert_eq!(scan::dhcp_socket(&sock).status, Status::Ok);
}

#[test]
fn configs_are_found_as_libcni_finds_them() {
    let d = TempDir::new("doctor-confs");
    d.write(
        "10-a.conflist",
        r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}"#,
    );
    d.write(
        "20-b.conf",
        r#"{"cniVersion":"1.0.0","name":"b","type":"ptp"}"#,
    );
    d.write(
        "30-c.json",
        r#"{"cniVersion":"1.0.0","name":"c","type":"loopback"}"#,
    );
    d.write("40-d.txt", "ignored");
    let got: Vec<String> = load_configs(d.path())
        .into_iter()
        .map(|(_, l)| l.unwrap().plugins[0].plugin_type().to_string())
        .collect();
    assert_eq!(got, ["bridge", "ptp", "loopback"]);
}
