//! The runtime tool on bad input, end to end: no network named, an unknown network, no
//! configurations at all, a netns that does not exist, a plugin missing from `CNI_PATH` in the
//! middle of a list, and a list in a version one of its plugins (the reference tuning, v1.1.1)
//! does not speak. Each gives a clear error with exit status 1 (usage errors too, as cnitool's)
//! and leaves nothing half-attached: a failed ADD of loopback + bridge (host-local, ipMasq) +
//! portmap + tuning + X DELs the plugins before X, checked in the kernel (`lo` down, no eth0,
//! no veth), nftables, the host-local store, tuning's backups and the cache.
//! Also the proof that our own plugins run in process: `strace -f` counts one execve (the tool
//! itself) for ADD and CHECK of that whole chain (DEL adds only iptables-save, clearing the
//! other firewall backend), and more as soon as a plugin is a foreign program.

use crate::runtime::{Rig, files, testdata};
use crate::support::{Outcome, TempDir, reference_plugin, require_root, skip};

/// The port mapping passed to portmap (as `CAP_ARGS`).
const CAP_ARGS: &str =
    r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}"#;

/// `net add NETWORK <container> -i eth0 --container-id badpod` with the port mapping.
fn add(rig: &Rig, network: &str) -> Outcome {
    let ns = rig.netns();
    let args = ["add", network, &ns, "--container-id", "badpod"];
    rig.tool("net", &args)
        .env("CAP_ARGS", CAP_ARGS)
        .run_in(&rig.pair.host)
}

/// Panics unless nothing of an attachment is left in `rig` for `network`.
fn assert_nothing_attached(rig: &Rig, network: &str, out: &Outcome) {
    assert!(!rig.lo_state().0, "lo left up:\n{out}");
    assert_eq!(rig.pair.container.link_names(), ["lo"], "{out}");
    assert!(rig.host_veths().is_empty(), "host veths:\n{out}");
    assert!(rig.reservations(network).is_empty(), "reserved:\n{out}");
    assert!(rig.cache_files().is_empty(), "cached:\n{out}");
    assert!(
        files(&rig.dir.join("tuning")).is_empty(),
        "tuning backup:\n{out}"
    );
    // The shared, empty tables and chains stay, as the reference leaves them; no rule does.
    let rules = rig.pair.host.sh("nft list ruleset; iptables-save");
    let rule_lines = rules.lines().map(str::trim).filter(|l| {
        !["table ", "chain ", ":", "*", "#"]
            .iter()
            .any(|p| l.starts_with(p))
    });
    for needle in ["badpod", "8080", "10.97.0.2", "masquerade", "MASQUERADE"] {
        let hits: Vec<&str> = rule_lines.clone().filter(|l| l.contains(needle)).collect();
        assert!(
            hits.is_empty(),
            "rules with {needle} left: {hits:#?}\n{out}"
        );
    }
}

/// Panics unless `out` failed with exit status `code` and `stderr` says every one of `words`.
fn assert_fails(out: &Outcome, code: i32, words: &[&str]) {
    assert_eq!(out.code, code, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    for w in words {
        assert!(out.stderr.contains(w), "stderr lacks {w:?}:\n{out}");
    }
}

#[test]
fn missing_or_unknown_network_is_a_usage_or_config_error() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("bad-names", &["chain.conflist"]);
    let ns = rig.netns();
    // Usage errors exit 1 too, as cnitool's.
    assert_fails(&rig.net(&["add"]), 1, &["NETWORK"]);
    assert_fails(&rig.net(&["add", "rtchain"]), 1, &["NETNS"]);
    let unknown = rig.net(&["add", "nosuch", &ns]);
    let conf = rig.dir.join("conf");
    let want = format!(
        "no net configuration with name \"nosuch\" in {}",
        conf.display()
    );
    assert_fails(&unknown, 1, &[&want]);
    assert_nothing_attached(&rig, "rtchain", &unknown);

    let empty = TempDir::new("rt-no-conf");
    let none = rig
        .tool("net", &["add", "rtchain", &ns])
        .env("NETCONFPATH", empty.path().to_str().unwrap())
        .run_in(&rig.pair.host);
    assert_fails(&none, 1, &["no net configurations found"]);
    assert_nothing_attached(&rig, "rtchain", &none);
}

#[test]
fn a_netns_that_does_not_exist_attaches_nothing() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("bad-netns", &["chain.conflist"]);
    let gone = "/proc/999999999/ns/net";
    let out = rig.net(&["add", "rtchain", gone, "-i", "lo"]);
    assert_fails(&out, 1, &["loopback", gone]);
    assert_nothing_attached(&rig, "rtchain", &out);
    let del = rig.net(&["del", "rtchain", gone, "-i", "lo"]);
    assert_eq!(del.code, 0, "DEL of a gone netns is a success:\n{del}");
}

#[test]
fn a_plugin_missing_from_cni_path_undoes_the_plugins_before_it() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("bad-missing", &["missing-plugin.conflist"]);
    let out = add(&rig, "rtmissing");
    assert_fails(
        &out,
        1,
        &[
            "plugin type=\"no-such-plugin\"",
            "failed (add)",
            "failed to find plugin \"no-such-plugin\"",
        ],
    );
    assert_nothing_attached(&rig, "rtmissing", &out);
    assert_eq!(
        files(&rig.dir.join("ipam/rtmissing")),
        ["last_reserved_ip.0", "lock"],
        "host-local ran, then released"
    );
}

#[test]
fn a_list_in_a_version_one_plugin_does_not_speak_is_undone() {
    if !require_root() {
        return;
    }
    let Some(reference) = reference_plugin("tuning") else {
        skip!("reference tuning not installed");
    };
    let bin = TempDir::new("rt-ref-bin");
    std::os::unix::fs::symlink(reference, bin.join("ref-tuning")).unwrap();
    let rig = Rig::new("bad-versions", &["mixed-versions.conflist"]).also_path(bin.path());
    let out = add(&rig, "rtmixed");
    assert_fails(
        &out,
        1,
        &[
            "plugin type=\"ref-tuning\"",
            "incompatible CNI versions",
            "1.1.0",
        ],
    );
    assert_nothing_attached(&rig, "rtmixed", &out);
    assert_eq!(
        files(&rig.dir.join("ipam/rtmixed")),
        ["last_reserved_ip.0", "lock"],
        "host-local ran, then released"
    );
}

/// The execve calls `strace -f` saw while `net ARGS...` ran in the rig's host.
fn execves(rig: &Rig, args: &[&str]) -> Vec<String> {
    let log = rig.dir.join("strace.log");
    let log_path = log.to_str().expect("UTF-8 temp dir");
    let call = rig.tool("net", args).env("CAP_ARGS", CAP_ARGS).under([
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=execve",
        "-o",
        log_path,
    ]);
    let out = call.run_in(&rig.pair.host);
    assert_eq!(out.code, 0, "{out}");
    let text = std::fs::read_to_string(&log).unwrap();
    text.lines()
        .filter(|l| l.contains("execve(") && !l.contains("resumed>"))
        .map(String::from)
        .collect()
}

#[test]
fn our_plugins_run_in_process() {
    if !require_root() {
        return;
    }
    if !std::path::Path::new("/usr/bin/strace").is_file() {
        skip!("strace not installed");
    }
    let rig =
        Rig::new("inproc", &["pod.conflist", "recorded.conflist"]).also_path(&testdata("plugins"));
    let ns = rig.netns();
    // loopback, bridge (with host-local and nftables masquerading), portmap, tuning.
    let pod = ["rtpod", ns.as_str(), "--container-id", "inproc"];
    let ours = execves(&rig, &[&["add"][..], &pod].concat());
    assert_eq!(ours.len(), 1, "only the tool itself: {ours:#?}");
    assert!(ours[0].contains("/net\""), "{ours:?}");
    assert_eq!(
        rig.container_addrs("eth0"),
        ["10.96.0.2/24"],
        "the chain ran"
    );
    assert_eq!(rig.pair.container.link("eth0").unwrap()["mtu"], 1400);
    let rules = rig.pair.host.sh("nft list ruleset");
    assert!(
        rules.contains("8080") && rules.contains("masquerade"),
        "{rules}"
    );
    let check = execves(&rig, &[&["check"][..], &pod].concat());
    assert_eq!(check.len(), 1, "{check:#?}");
    // DEL also clears the iptables backend (DEL is total; iptables-save is the one program
    // the product may exec), but no plugin is executed.
    let del = execves(&rig, &[&["del"][..], &pod].concat());
    assert!(del[0].contains("/net\""), "{del:#?}");
    let others: Vec<&String> = del[1..]
        .iter()
        .filter(|l| !l.contains("tables-save\"") && !l.contains("tables-restore\""))
        .collect();
    assert!(others.is_empty(), "DEL executed {others:#?}");
    assert!(rig.host_veths().is_empty());
    // The control: a list ending in a foreign plugin (a shell script) execs it.
    let foreign = execves(&rig, &["add", "rtrec", &ns]);
    assert!(
        foreign.iter().any(|l| l.contains("/fake\"")),
        "the counter must see a foreign plugin: {foreign:#?}"
    );
}
