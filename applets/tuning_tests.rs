//! tuning tests: sysctl key mapping and escapes, the precedence of every source, duplicate
//! keys, the allowlist, the backup file format (read and written as the reference's); and the
//! verbs in process with a veth end in a second netns (ADD, CHECK, DEL restoring, rollback).

use super::*;
use crate::error::code_of;
use crate::ipam::test_support::TempDir;
use crate::skel::{Command, Env};
use crate::testutil::{another_netns, fresh_netns};
use crate::types::args::CniArgs;
use serde_json::{Value, json};

fn cmd(command: Command, conf: &Value, netns: &str, cni_args: &str) -> CmdArgs {
    CmdArgs {
        command,
        container_id: "ctr1".into(),
        netns: netns.into(),
        ifname: "eth0".into(),
        args: CniArgs::parse(cni_args).unwrap(),
        path: Vec::new(),
        stdin: serde_json::to_vec(conf).unwrap(),
        version: conf["cniVersion"].as_str().unwrap_or_default().into(),
        env: Env::new(),
    }
}

fn want(conf: Value, cni_args: &str) -> anyhow::Result<Want> {
    load(&cmd(Command::Add, &conf, "", cni_args)).map(|(w, _)| w)
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}

#[test]
fn sysctl_keys_map_under_proc_sys_net() {
    let k = |key| sysctl_key(key, "eth0.100");
    assert_eq!(k("net.ipv4.ip_forward").unwrap(), "net/ipv4/ip_forward");
    assert_eq!(
        k("net.ipv4.conf.IFNAME.rp_filter").unwrap(),
        "net/ipv4/conf/eth0.100/rp_filter"
    );
    assert_eq!(
        k("net/ipv6/conf/eth0.100/accept_ra").unwrap(),
        "net/ipv6/conf/eth0.100/accept_ra"
    );
    assert_eq!(
        k("net.IFNAME.IFNAME").unwrap(),
        "net/eth0.100/IFNAME",
        "only the first IFNAME"
    );
    for bad in [
        "kernel.hostname",
        "net",
        "net.",
        "net/../kernel/hostname",
        "net/ipv4/../../kernel/x",
        "/proc/sys/net/x",
        "netx.y",
        "",
    ] {
        let e = k(bad).unwrap_err();
        assert_eq!(code_of(&e), 7, "{bad:?}: {e:#}");
    }
}

#[test]
fn sources_in_order_of_precedence() {
    let base = json!({"name": "n", "mac": "02:00:00:00:00:01", "mtu": 1400, "promisc": true,
                      "sysctl": {"net.a": "1", "net.b": "2"}});
    let w = want(base.clone(), "").unwrap();
    assert_eq!(w.mac, Some([2, 0, 0, 0, 0, 1]));
    assert_eq!(
        (w.mtu, w.promisc, w.txqlen, w.allmulti),
        (1400, true, None, None)
    );
    assert_eq!(w.data_dir, PathBuf::from("/run/cni/tuning"));
    assert!(!want(json!({"name": "n"}), "").unwrap().changes_link());

    let w = want(base.clone(), "IgnoreUnknown=1;MAC=02:00:00:00:00:02").unwrap();
    assert_eq!(
        w.mac,
        Some([2, 0, 0, 0, 0, 2]),
        "CNI_ARGS MAC beats the config"
    );
    let mut c = base.clone();
    c["runtimeConfig"] = json!({"mac": "02:00:00:00:00:03"});
    let w = want(c.clone(), "MAC=02:00:00:00:00:02").unwrap();
    assert_eq!(
        w.mac,
        Some([2, 0, 0, 0, 0, 3]),
        "runtimeConfig.mac beats CNI_ARGS"
    );
    c["args"] = json!({"cni": {"mac": "02:00:00:00:00:04", "mtu": 9000, "promisc": false,
        "allmulti": true, "txQLen": 7, "sysctl": {"net.b": "20", "net.c": "3"}}});
    let w = want(c, "MAC=02:00:00:00:00:02").unwrap();
    assert_eq!(
        w.mac,
        Some([2, 0, 0, 0, 0, 4]),
        "args.cni.mac beats everything"
    );
    assert_eq!(
        (w.mtu, w.promisc, w.txqlen, w.allmulti),
        (9000, false, Some(7), Some(true))
    );
    let sysctl: Vec<(&str, &str)> = w
        .sysctl
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(sysctl, [("net.a", "1"), ("net.b", "20"), ("net.c", "3")]);
}

#[test]
fn bad_configs_are_code_7() {
    for (conf, msg) in [
        (
            r#"{"sysctl": {"net.a": "1", "net.a": "2"}}"#,
            "duplicated sysctl keys",
        ),
        (r#"{"mac": "nope"}"#, "MAC"),
        (r#"{"mtu": -1}"#, "invalid network configuration"),
        (r#"{"args": {"cni": {"mtu": "x"}}}"#, "args.cni.mtu"),
    ] {
        let c = CmdArgs {
            stdin: conf.as_bytes().to_vec(),
            ..cmd(Command::Add, &json!({}), "", "")
        };
        let e = load(&c).unwrap_err();
        assert_eq!(code_of(&e), 7, "{conf}");
        assert!(format!("{e:#}").contains(msg), "{conf}: {e:#}");
    }
}

#[test]
fn del_reads_only_data_dir() {
    let dir = TempDir::new("tuning-del");
    let file = dir.path().join("ctr1_eth0.json");
    let conf = format!(
        r#"{{"dataDir": {:?}, "sysctl": {{"net.a": "1", "net.a": "2"}}, "mac": "nope"}}"#,
        dir.path()
    );
    std::fs::write(&file, "{}").unwrap();
    let c = CmdArgs {
        stdin: conf.into_bytes(),
        ..cmd(Command::Del, &json!({}), "", "")
    };
    // No netns: nothing to restore, the backup goes, and the refused config does not matter.
    Tuning.del(&c).unwrap();
    assert!(!file.exists());
}

#[test]
fn allowlist_regexps_match_unanchored() {
    let keys: BTreeMap<String, String> = [("net.ipv4.conf.IFNAME.arp_filter", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    allowed(&[r"^net\.ipv4\.conf\.IFNAME\.[a-z_]*$"], keys.keys()).unwrap();
    allowed(&["nothing", r"conf\.IFNAME"], keys.keys()).unwrap();
    let e = allowed(&[r"^net\.ipv6\."], keys.keys()).unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(format!("{e}").contains("is not allowed"));
    assert!(allowed(&["(unclosed"], keys.keys()).is_err());
    let dir = TempDir::new("tuning-allowlist");
    check_allowlist(&dir.path().join("absent.conf"), &keys).unwrap();
    let file = dir.path().join("allowlist.conf");
    std::fs::write(&file, "\n  ^net\\.ipv6\\.  \n\n").unwrap();
    assert!(check_allowlist(&file, &keys).is_err());
    std::fs::write(&file, "^net\\.ipv6\\.\n^net\\.ipv4\\.\n").unwrap();
    check_allowlist(&file, &keys).unwrap();
}

#[test]
fn backup_file_is_the_references() {
    let dir = TempDir::new("tuning-backup");
    let file = dir.path().join("sub/ctr1_eth0.json");
    let b = Backup {
        mac: "02:00:00:00:00:01".into(),
        promisc: Some(false),
        mtu: 1500,
        allmulti: None,
        txqlen: Some(1000),
    };
    save(&file, &b).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        "{\n \"mac\": \"02:00:00:00:00:01\",\n \"promisc\": false,\n \"mtu\": 1500,\n \"txQLen\": 1000\n}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // As the reference writes it when only allmulti changes.
    let theirs: Backup = serde_json::from_str("{\n \"allmulti\": true\n}").unwrap();
    assert_eq!(
        theirs,
        Backup {
            allmulti: Some(true),
            ..Default::default()
        }
    );
}

/// Test thread in a fresh "host" netns; a veth whose `eth0` end sits in a second netns.
fn setup(test: &str) -> Option<(Netns, String, TempDir)> {
    let _home = fresh_netns(test)?;
    let cont = another_netns();
    let h = Handle::new().unwrap();
    h.create_veth("tveth0", "eth0", 1500, None, None, Some(&cont))
        .unwrap();
    let path = format!("/proc/{}/fd/{}", std::process::id(), cont.raw_fd());
    Some((cont, path, TempDir::new("tuning")))
}

fn conf_with(dir: &TempDir, path: &str, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.1.0", "name": "tnet", "type": "tuning",
        "dataDir": dir.path().join("state"),
        "prevResult": {"cniVersion": "1.1.0", "interfaces": [
            {"name": "tveth0"}, {"name": "eth0", "sandbox": path, "mac": "02:99:99:99:99:99"}]},
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn add_check_del_restore_in_process() {
    let Some((cont, path, dir)) = setup("tuning_add_check_del_restore_in_process") else {
        return;
    };
    let nl = Handle::in_netns(&cont).unwrap();
    let before = nl.link_by_name("eth0").unwrap().unwrap();
    let c = conf_with(
        &dir,
        &path,
        json!({"mac": "02:11:22:33:44:55", "mtu": 1280, "promisc": true, "allmulti": true,
               "txQLen": 77, "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "2"}}),
    );
    let r = Tuning.add(&cmd(Command::Add, &c, &path, "")).unwrap();
    assert_eq!(r.interfaces[1].mac, "02:11:22:33:44:55");
    assert_eq!(r.interfaces[0].mac, "", "other interfaces untouched");
    let now = nl.link_by_name("eth0").unwrap().unwrap();
    assert_eq!(now.mac_string(), "02:11:22:33:44:55");
    assert_eq!(
        (now.mtu, now.txqlen, now.is_promisc(), is_allmulti(&now)),
        (1280, 77, true, true)
    );
    assert_eq!(
        sysctl::read_in(&cont, "net/ipv4/conf/eth0/arp_ignore").unwrap(),
        "2"
    );
    let file = dir.path().join("state/ctr1_eth0.json");
    let saved: Backup = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved.mac, before.mac_string());
    assert_eq!((saved.mtu, saved.txqlen), (1500, Some(before.txqlen)));
    Tuning.check(&cmd(Command::Check, &c, &path, "")).unwrap();

    nl.set_promisc(now.index, false).unwrap();
    let e = Tuning
        .check(&cmd(Command::Check, &c, &path, ""))
        .unwrap_err();
    assert!(format!("{e:#}").contains("promisc"), "{e:#}");
    nl.set_promisc(now.index, true).unwrap();
    sysctl::write_in(&cont, "net/ipv4/conf/eth0/arp_ignore", "1").unwrap();
    let e = Tuning
        .check(&cmd(Command::Check, &c, &path, ""))
        .unwrap_err();
    assert!(format!("{e:#}").contains("arp_ignore"), "{e:#}");

    Tuning.del(&cmd(Command::Del, &c, &path, "")).unwrap();
    let after = nl.link_by_name("eth0").unwrap().unwrap();
    assert_eq!(
        (after.mac, after.mtu, after.txqlen),
        (before.mac, 1500, before.txqlen)
    );
    assert!(!after.is_promisc() && !is_allmulti(&after));
    assert!(!file.exists());
    Tuning.del(&cmd(Command::Del, &c, &path, "")).unwrap();
    // With the netns gone DEL still succeeds and drops a leftover backup.
    save(&file, &saved).unwrap();
    Tuning
        .del(&cmd(Command::Del, &c, "/proc/self/no-such-netns", ""))
        .unwrap();
    assert!(!file.exists());
}

#[test]
fn failed_add_restores_what_it_changed() {
    let Some((cont, path, dir)) = setup("tuning_failed_add_restores_what_it_changed") else {
        return;
    };
    let nl = Handle::in_netns(&cont).unwrap();
    let before = nl.link_by_name("eth0").unwrap().unwrap();
    // The MAC is set first; an MTU above the veth maximum then fails.
    let c = conf_with(
        &dir,
        &path,
        json!({"mac": "02:11:22:33:44:55", "mtu": 70000}),
    );
    let e = Tuning.add(&cmd(Command::Add, &c, &path, "")).unwrap_err();
    assert!(format!("{e:#}").contains("mtu"), "{e:#}");
    assert_eq!(nl.link_by_name("eth0").unwrap().unwrap().mac, before.mac);
    assert!(!dir.path().join("state/ctr1_eth0.json").exists());
    let c = conf_with(&dir, &path, json!({"sysctl": {"kernel.hostname": "x"}}));
    let e = Tuning.add(&cmd(Command::Add, &c, &path, "")).unwrap_err();
    assert_eq!(code_of(&e), 7);
    let c = json!({"cniVersion": "1.1.0", "name": "tnet", "mtu": 1400});
    let e = Tuning.add(&cmd(Command::Add, &c, &path, "")).unwrap_err();
    assert!(format!("{e}").contains("prevResult"));
}

#[test]
fn del_drops_the_backup_when_the_netns_cannot_be_opened() {
    let dir = TempDir::new("tuning-del-notns");
    let file = dir.path().join("ctr1_eth0.json");
    std::fs::write(&file, "{\"mtu\": 1500}").unwrap();
    // Exists, but is no netns: DEL succeeds and is never retried, so the backup must go.
    let not_ns = dir.path().join("not-a-netns");
    std::fs::write(&not_ns, "").unwrap();
    let c = json!({"cniVersion": "1.1.0", "name": "tnet", "dataDir": dir.path()});
    Tuning
        .del(&cmd(Command::Del, &c, not_ns.to_str().unwrap(), ""))
        .unwrap();
    assert!(!file.exists());
}

#[test]
fn del_drops_the_backup_when_restoring_fails() {
    let Some((cont, path, dir)) = setup("tuning_del_drops_the_backup_when_restoring_fails") else {
        return;
    };
    let file = dir.path().join("state/ctr1_eth0.json");
    let b = Backup {
        mtu: 70000,
        ..Default::default()
    };
    save(&file, &b).unwrap();
    let c = conf_with(&dir, &path, json!({}));
    Tuning.del(&cmd(Command::Del, &c, &path, "")).unwrap();
    assert!(!file.exists());
    let nl = Handle::in_netns(&cont).unwrap();
    assert_eq!(nl.link_by_name("eth0").unwrap().unwrap().mtu, 1500);
}

#[test]
fn failed_add_restores_the_sysctls_it_wrote() {
    let Some((cont, path, dir)) = setup("tuning_failed_add_restores_the_sysctls_it_wrote") else {
        return;
    };
    let key = "net/ipv4/conf/eth0/arp_ignore";
    let before = sysctl::read_in(&cont, key).unwrap();
    assert_ne!(before, "2");
    // The sysctl is written, then the link change fails.
    let c = conf_with(
        &dir,
        &path,
        json!({"sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "2"}, "mtu": 70000}),
    );
    Tuning.add(&cmd(Command::Add, &c, &path, "")).unwrap_err();
    assert_eq!(sysctl::read_in(&cont, key).unwrap(), before);
    // A later sysctl failing undoes the earlier ones (keys are written in sorted order).
    let c = conf_with(
        &dir,
        &path,
        json!({"sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "2",
                          "net.ipv4.conf.IFNAME.no_such_knob": "1"}}),
    );
    Tuning.add(&cmd(Command::Add, &c, &path, "")).unwrap_err();
    assert_eq!(sysctl::read_in(&cont, key).unwrap(), before);
}
