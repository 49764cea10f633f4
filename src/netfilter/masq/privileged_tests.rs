//! Privileged tests of ipMasq: each runs in a fresh netns of its own thread (netfilter state
//! is per netns), checks the result with the real tools and compares it with what the
//! reference plugins make.

use super::*;
use crate::netfilter::iptables::Saved;
use crate::netfilter::naming::chain_name;
use crate::netfilter::oracle::{self, here, nat_state, run, try_run};
use crate::testutil::{another_netns, fresh_netns};

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn golden(name: &str) -> String {
    format!("{}/testdata/netfilter/{name}", env!("CARGO_MANIFEST_DIR"))
}

const DUAL: [&str; 2] = ["10.88.0.5/16", "fd00::5/64"];

fn masq<'a>(ipns: &'a [IpNet], id: &'a str) -> Masq<'a> {
    Masq {
        ipns,
        network: "mynet",
        ifname: "eth0",
        container_id: id,
    }
}

/// The lines the reference bridge v1.1.1 left for `DUAL` (testdata), per family.
fn reference_lines(save_file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(golden(save_file)).unwrap();
    let chain = chain_name("mynet", "ctr1");
    text.lines()
        .filter(|l| l.contains(&chain) && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn iptables_dual_stack_lifecycle() {
    let Some(_ns) = fresh_netns("iptables_dual_stack_lifecycle") else {
        return;
    };
    if !oracle::have("iptables-restore") || !oracle::have("ip6tables-restore") {
        println!("skipped: iptables tools missing");
        return;
    }
    let ipns = nets(&DUAL);
    let m = masq(&ipns, "ctr1");
    assert!(check_ip_masq(BackendKind::Iptables, &m).is_err());
    setup_ip_masq(BackendKind::Iptables, &m).unwrap();
    let v4 = nat_state("iptables-save");
    let v6 = nat_state("ip6tables-save");
    // Same rules as the reference made (testdata/netfilter/ipmasq-reference-v*.save).
    assert_eq!(
        sorted(v4.clone()),
        sorted(reference_lines("ipmasq-reference-v4.save"))
    );
    assert_eq!(
        sorted(v6.clone()),
        sorted(reference_lines("ipmasq-reference-v6.save"))
    );
    check_ip_masq(BackendKind::Iptables, &m).unwrap();

    setup_ip_masq(BackendKind::Iptables, &m).unwrap();
    assert_eq!(
        nat_state("iptables-save"),
        v4,
        "setup twice must not duplicate rules"
    );

    teardown_ip_masq(&m).unwrap();
    assert_eq!(nat_state("iptables-save"), Vec::<String>::new());
    assert_eq!(nat_state("ip6tables-save"), Vec::<String>::new());
    teardown_ip_masq(&m).unwrap();
    assert!(check_ip_masq(BackendKind::Iptables, &m).is_err());
}

/// State written by the reference is removed by our teardown; a second container survives.
#[test]
fn iptables_teardown_of_reference_state() {
    let Some(_ns) = fresh_netns("iptables_teardown_of_reference_state") else {
        return;
    };
    if !oracle::have("iptables-restore") {
        println!("skipped: iptables tools missing");
        return;
    }
    run(
        &here(),
        &[
            "iptables-restore",
            "-w",
            "5",
            "--noflush",
            &golden("ipmasq-reference.save"),
        ],
    );
    let ipns = nets(&["10.88.0.5/16"]);
    check_ip_masq(BackendKind::Iptables, &masq(&ipns, "ctr1")).unwrap();
    teardown_ip_masq(&masq(&ipns, "ctr1")).unwrap();
    let left = nat_state("iptables-save");
    assert!(
        !left
            .iter()
            .any(|l| l.contains(&chain_name("mynet", "ctr1"))),
        "{left:?}"
    );
    assert_eq!(
        left.len(),
        4,
        "ctr2's chain, jump and two rules stay: {left:?}"
    );
    check_ip_masq(
        BackendKind::Iptables,
        &masq(&nets(&["10.88.0.6/16"]), "ctr2"),
    )
    .unwrap();
}

/// Our rule text is what iptables-legacy stores as well, and the same plan tears it down.
#[test]
fn iptables_legacy_flavour() {
    let Some(_ns) = fresh_netns("iptables_legacy_flavour") else {
        return;
    };
    if !oracle::have("iptables-legacy-restore") {
        println!("skipped: iptables-legacy missing");
        return;
    }
    let ipns = nets(&DUAL);
    let (chain, comment) = (
        chain_name("mynet", "ctr1"),
        crate::netfilter::naming::comment("mynet", "ctr1"),
    );
    for (family, file) in [
        (IpFamily::V4, "ipmasq-reference-v4.save"),
        (IpFamily::V6, "ipmasq-reference-v6.save"),
    ] {
        let ipt = Iptables::legacy(family);
        ipt.restore(&iptables::plan_setup(
            &Saved::default(),
            family,
            &ipns,
            &chain,
            &comment,
        ))
        .unwrap();
        let saved = ipt.save("nat").unwrap();
        assert!(iptables::missing(&saved, family, &ipns, &chain, &comment).is_empty());
        let tool = if family == IpFamily::V4 {
            "iptables-legacy-save"
        } else {
            "ip6tables-legacy-save"
        };
        assert_eq!(sorted(nat_state(tool)), sorted(reference_lines(file)));
        ipt.restore(&iptables::plan_teardown(&saved, &chain))
            .unwrap();
        assert_eq!(nat_state(tool), Vec::<String>::new());
    }
}

fn ruleset(ns: &str) -> String {
    run(ns, &["nft", "list", "ruleset"])
}

#[test]
fn nftables_lifecycle_matches_reference_layout() {
    let Some(_ns) = fresh_netns("nftables_lifecycle_matches_reference_layout") else {
        return;
    };
    if !oracle::have("nft") {
        println!("skipped: nft missing");
        return;
    }
    // The reference's transaction, through nft, in a second netns: the oracle.
    let reference = another_netns();
    run(
        &oracle::path_of(&reference),
        &["nft", "-f", &golden("ipmasq-reference.nft")],
    );
    let want = ruleset(&oracle::path_of(&reference));

    let ipns = nets(&DUAL);
    let m = masq(&ipns, "ctr1");
    assert!(check_ip_masq(BackendKind::Nftables, &m).is_err());
    setup_ip_masq(BackendKind::Nftables, &m).unwrap();
    assert_eq!(ruleset(&here()), want);
    assert!(
        want.contains(
            "comment \"d23676b4f2d9fe04-7883a6f9ce71eedb, net: mynet, if: eth0, id: ctr1\""
        )
    );
    check_ip_masq(BackendKind::Nftables, &m).unwrap();
    setup_ip_masq(BackendKind::Nftables, &m).unwrap();
    assert_eq!(
        ruleset(&here()),
        want,
        "setup twice must not duplicate rules"
    );

    teardown_ip_masq(&m).unwrap();
    let json = run(&here(), &["nft", "-j", "list", "ruleset"]);
    assert!(!json.contains("\"masquerade\""), "{json}");
    assert!(check_ip_masq(BackendKind::Nftables, &m).is_err());
    teardown_ip_masq(&m).unwrap();
}

/// An intact `postrouting` is left alone by a second setup (its rules keep their handles: no
/// deletion, so no RCU wait when the socket closes); a damaged one is rewritten.
#[test]
fn nftables_setup_rewrites_postrouting_only_when_damaged() {
    let Some(_ns) = fresh_netns("nftables_setup_rewrites_postrouting_only_when_damaged") else {
        return;
    };
    if !oracle::have("nft") {
        println!("skipped: nft missing");
        return;
    }
    let handles = || -> Vec<u64> {
        let mut nft = Nft::new().unwrap();
        let rules = nft.list_rules(&nftables::table(), Some(nftables::POSTROUTING));
        rules.unwrap().iter().map(|r| r.handle).collect()
    };
    let ipns = nets(&DUAL);
    setup_ip_masq(BackendKind::Nftables, &masq(&ipns, "a")).unwrap();
    let first = handles();
    assert_eq!(first.len(), 3);
    setup_ip_masq(BackendKind::Nftables, &masq(&ipns, "b")).unwrap();
    assert_eq!(handles(), first, "intact chain left alone");
    let goto = first[2].to_string();
    let del = [
        "nft",
        "delete",
        "rule",
        "inet",
        nftables::TABLE,
        nftables::POSTROUTING,
        "handle",
        &goto,
    ];
    run(&here(), &del);
    setup_ip_masq(BackendKind::Nftables, &masq(&ipns, "c")).unwrap();
    let repaired = handles();
    assert_eq!(repaired.len(), 3);
    assert!(repaired.iter().all(|h| !first.contains(h)), "rewritten");
    check_ip_masq(BackendKind::Nftables, &masq(&ipns, "c")).unwrap();
}

/// A reused address: "four" takes "one"'s IP before "one" is deleted; DEL of "one" keeps
/// "four", and GC keeps exactly the valid attachments (the reference's unit-test scenario).
#[test]
fn nftables_reused_ip_and_gc() {
    let Some(_ns) = fresh_netns("nftables_reused_ip_and_gc") else {
        return;
    };
    let one = nets(&["192.168.1.1/24"]);
    let two = nets(&["192.168.1.2/24", "2001:db8::2/64"]);
    for (ipns, id) in [(&one, "one"), (&two, "two"), (&one, "four")] {
        setup_ip_masq(BackendKind::Nftables, &masq(ipns, id)).unwrap();
    }
    teardown_ip_masq(&masq(&one, "one")).unwrap();
    check_ip_masq(BackendKind::Nftables, &masq(&one, "four")).unwrap();
    assert!(check_ip_masq(BackendKind::Nftables, &masq(&one, "one")).is_err());

    let valid = [Attachment {
        container_id: "two".into(),
        ifname: "eth0".into(),
    }];
    gc_ip_masq("othernet", &[]).unwrap();
    check_ip_masq(BackendKind::Nftables, &masq(&one, "four")).unwrap();
    gc_ip_masq("mynet", &valid).unwrap();
    assert!(check_ip_masq(BackendKind::Nftables, &masq(&one, "four")).is_err());
    check_ip_masq(BackendKind::Nftables, &masq(&two, "two")).unwrap();
    gc_ip_masq("mynet", &[]).unwrap();
    let mut nft = Nft::new().unwrap();
    assert!(
        nft.list_rules(&nftables::table(), Some(nftables::CHAIN))
            .unwrap()
            .is_empty()
    );
}

/// Rules the reference made through `nft` are found and removed by our teardown.
#[test]
fn nftables_teardown_of_reference_state() {
    let Some(_ns) = fresh_netns("nftables_teardown_of_reference_state") else {
        return;
    };
    if !oracle::have("nft") {
        println!("skipped: nft missing");
        return;
    }
    run(&here(), &["nft", "-f", &golden("ipmasq-reference.nft")]);
    let ipns = nets(&DUAL);
    check_ip_masq(BackendKind::Nftables, &masq(&ipns, "ctr1")).unwrap();
    teardown_ip_masq(&masq(&ipns, "ctr1")).unwrap();
    let (_, list) = try_run(
        &here(),
        &[
            "nft",
            "list",
            "chain",
            "inet",
            nftables::TABLE,
            nftables::CHAIN,
        ],
    );
    assert!(
        list.contains("chain masq_checks") && !list.contains("saddr"),
        "{list}"
    );
}

#[test]
fn teardown_and_gc_with_nothing_there() {
    let Some(_ns) = fresh_netns("teardown_and_gc_with_nothing_there") else {
        return;
    };
    let ipns = nets(&DUAL);
    teardown_ip_masq(&masq(&ipns, "nobody")).unwrap();
    teardown_ip_masq(&masq(&[], "nobody")).unwrap();
    gc_ip_masq("mynet", &[]).unwrap();
}

#[test]
fn default_backend_is_iptables_when_usable() {
    let Some(_ns) = fresh_netns("default_backend_is_iptables_when_usable") else {
        return;
    };
    assert!(backend(BackendKind::Nftables).usable());
    let want = if backend(BackendKind::Iptables).usable() {
        BackendKind::Iptables
    } else {
        BackendKind::Nftables
    };
    assert_eq!(crate::netfilter::choose_backend(None).unwrap(), want);
}

/// Kills the stand-in container and removes the IPAM dir, even when the test fails.
struct Cleanup(std::process::Child, std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn reference_bridge(verb: &str, netns: &str, data_dir: &std::path::Path) {
    use std::io::Write;
    let conf = format!(
        r#"{{"cniVersion":"0.4.0","name":"mynet","type":"bridge","bridge":"cnitest0","isGateway":true,
        "ipMasq":true,"ipam":{{"type":"host-local","dataDir":"{}","ranges":[
        [{{"subnet":"10.88.0.0/16","rangeStart":"10.88.0.5"}}],[{{"subnet":"fd00::/64","rangeStart":"fd00::5"}}]]}}}}"#,
        data_dir.display()
    );
    let mut child = std::process::Command::new("/usr/lib/cni/bridge")
        .env_clear()
        .envs([
            ("CNI_COMMAND", verb),
            ("CNI_PATH", "/usr/lib/cni"),
            ("CNI_CONTAINERID", "ctr1"),
        ])
        .envs([
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reference bridge {verb}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The reference bridge (v1.1.1, iptables only) and ours make the same iptables state, and each
/// tears down what the other made.
#[test]
fn interop_with_reference_bridge_binary() {
    let Some(ns) = fresh_netns("interop_with_reference_bridge_binary") else {
        return;
    };
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() || !oracle::have("iptables-restore") {
        println!(
            "skipped: reference plugins not installed (apt-get install containernetworking-plugins)"
        );
        return;
    }
    let ctr = std::process::Command::new("unshare")
        .args(["-n", "sleep", "60"])
        .spawn()
        .unwrap();
    let ctr_ns = format!("/proc/{}/ns/net", ctr.id());
    let data_dir = std::env::temp_dir().join(format!(
        "cni-multi-nf-{}-{}",
        std::process::id(),
        nix::unistd::gettid()
    ));
    let _cleanup = Cleanup(ctr, data_dir.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while crate::netns::Netns::open(&ctr_ns)
        .map(|c| c.same_as(&ns))
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "container netns never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let ipns = nets(&DUAL);
    let m = masq(&ipns, "ctr1");

    reference_bridge("ADD", &ctr_ns, &data_dir);
    assert_eq!(
        sorted(nat_state("iptables-save")),
        sorted(reference_lines("ipmasq-reference-v4.save"))
    );
    assert_eq!(
        sorted(nat_state("ip6tables-save")),
        sorted(reference_lines("ipmasq-reference-v6.save"))
    );
    check_ip_masq(BackendKind::Iptables, &m).unwrap();
    teardown_ip_masq(&m).unwrap();
    assert!(nat_state("iptables-save").is_empty() && nat_state("ip6tables-save").is_empty());

    setup_ip_masq(BackendKind::Iptables, &m).unwrap();
    reference_bridge("DEL", &ctr_ns, &data_dir);
    assert!(nat_state("iptables-save").is_empty() && nat_state("ip6tables-save").is_empty());
}
