//! host-local tests: the verbs called directly (ADD returns a struct) and through skel
//! in process (DEL, CHECK, GC, STATUS print nothing on success), against a temp dataDir; and
//! the good/bad configs under `testdata/config/host-local/`.

use super::*;
use crate::error::code_of;
use crate::ipam::test_support::TempDir;
use crate::skel::{Command, Env, Io};
use crate::testutil::check_config_testdata;
use crate::types::IpConfig;
use crate::types::args::CniArgs;
use serde_json::{Value, json};
use std::fs;
use std::path::Path;

fn conf(data_dir: &Path, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = "host-local".into();
    ipam["dataDir"] = data_dir.to_str().unwrap().into();
    json!({"cniVersion": "1.1.0", "name": "hlnet", "type": "bridge", "ipam": ipam})
}

fn cmd(command: Command, conf: &Value, id: &str, ifname: &str, cni_args: &str) -> CmdArgs {
    CmdArgs {
        command,
        container_id: id.into(),
        netns: String::new(),
        ifname: ifname.into(),
        args: CniArgs::parse(cni_args).unwrap(),
        path: Vec::new(),
        stdin: serde_json::to_vec(conf).unwrap(),
        version: conf["cniVersion"].as_str().unwrap_or_default().into(),
        env: Env::new(),
    }
}

fn add(conf: &Value, id: &str, ifname: &str) -> anyhow::Result<Vec<IpConfig>> {
    HostLocal
        .add(&cmd(Command::Add, conf, id, ifname, ""))
        .map(|r| r.ips)
}

/// Runs a verb through skel with an env map and in-memory IO: (exit code, stdout).
fn via_skel(verb: &str, conf: &Value, id: &str, ifname: &str) -> (u8, String) {
    let mut env = Env::new();
    for (k, v) in [
        ("CNI_COMMAND", verb),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_CONTAINERID", id),
        ("CNI_IFNAME", ifname),
    ] {
        if !v.is_empty() {
            env.insert(k.into(), v.into());
        }
    }
    if verb == "CHECK" {
        env.insert("CNI_NETNS".into(), "/var/run/netns/unused".into());
    }
    let stdin = serde_json::to_vec(conf).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let io = Io {
        stdin: &mut stdin.as_slice(),
        stdout: &mut out,
        stderr: &mut err,
    };
    let rc = crate::skel::run("host-local", &HostLocal, &env, io);
    (rc, String::from_utf8(out).unwrap())
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn help_lists_every_ipam_key() {
    let sources = [
        include_str!("host_local.rs"),
        include_str!("../src/ipam/config.rs"),
        include_str!("../src/ipam/exclude.rs"),
    ];
    crate::keys::assert_ipam_keys(KEYS, &sources, |net| {
        HostLocalConfig::load(net, &CniArgs::default())?;
        let ipam = crate::ipam::config::ipam_section(net)?;
        crate::ipam::exclude::Exclude::parse(ipam.get("exclude"), "ipam.exclude").map(drop)
    });
}

#[test]
fn add_returns_ipam_result_and_writes_state() {
    let tmp = TempDir::new("hl-add");
    let resolv = tmp.path().join("resolv.conf");
    fs::write(&resolv, "nameserver 10.0.0.53\nsearch example.com\n").unwrap();
    let c = conf(
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.10.0.0/24"}], [{"subnet": "2001:db8:10::/64"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "resolvConf": resolv.to_str().unwrap()}),
    );
    let r = HostLocal
        .add(&cmd(Command::Add, &c, "c1", "eth0", ""))
        .unwrap();
    assert!(r.interfaces.is_empty());
    let ips: Vec<(String, String)> = r
        .ips
        .iter()
        .map(|i| (i.address.to_string(), i.gateway.unwrap().to_string()))
        .collect();
    assert_eq!(
        ips,
        [
            ("10.10.0.2/24".into(), "10.10.0.1".into()),
            ("2001:db8:10::2/64".into(), "2001:db8:10::1".into())
        ]
    );
    assert!(r.ips.iter().all(|i| i.interface.is_none()));
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.dns.nameservers, ["10.0.0.53"]);
    assert_eq!(r.dns.search, ["example.com"]);
    let dir = tmp.path().join("hlnet");
    assert_eq!(fs::read(dir.join("10.10.0.2")).unwrap(), b"c1\r\neth0");
    assert_eq!(
        add(&c, "c1", "eth0").unwrap(),
        r.ips,
        "repeated ADD returns the same addresses"
    );
    assert_eq!(
        add(&c, "c2", "eth0").unwrap()[0].address.to_string(),
        "10.10.0.3/24"
    );
}

#[test]
fn add_honours_requested_addresses() {
    let tmp = TempDir::new("hl-req");
    let mut c = conf(tmp.path(), json!({"subnet": "10.11.0.0/24"}));
    let r = HostLocal
        .add(&cmd(
            Command::Add,
            &c,
            "c1",
            "eth0",
            "IgnoreUnknown=1;IP=10.11.0.77",
        ))
        .unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.11.0.77/24");
    c["runtimeConfig"] = json!({"ips": ["10.11.0.77/24"]});
    let e = add(&c, "c2", "eth0").unwrap_err();
    assert!(
        format!("{e:#}").contains("requested IP address 10.11.0.77 is not available"),
        "{e:#}"
    );
    c["runtimeConfig"] = json!({"ips": ["10.99.0.1"]});
    let e = add(&c, "c2", "eth0").unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(
        format!("{e:#}").contains(
            "runtimeConfig.ips[0]: requested IP address 10.99.0.1 is not in any range set"
        )
    );
    assert_eq!(
        files(&tmp.path().join("hlnet")),
        ["10.11.0.77", "last_reserved_ip.0", "lock"]
    );
}

#[test]
fn del_releases_and_is_total() {
    let tmp = TempDir::new("hl-del");
    let c = conf(tmp.path(), json!({"subnet": "10.12.0.0/24"}));
    add(&c, "c1", "eth0").unwrap();
    add(&c, "c1", "eth1").unwrap();
    assert_eq!(via_skel("DEL", &c, "c1", "eth0"), (0, String::new()));
    let dir = tmp.path().join("hlnet");
    assert_eq!(files(&dir), ["10.12.0.3", "last_reserved_ip.0", "lock"]);
    assert_eq!(
        via_skel("DEL", &c, "c1", "eth0"),
        (0, String::new()),
        "DEL twice"
    );
    let other = conf(
        &tmp.path().join("nowhere"),
        json!({"subnet": "10.12.0.0/24"}),
    );
    assert_eq!(
        via_skel("DEL", &other, "c1", "eth0"),
        (0, String::new()),
        "missing dataDir"
    );
    assert!(!tmp.path().join("nowhere").exists(), "DEL creates nothing");
}

#[test]
fn check_finds_the_reservation() {
    let tmp = TempDir::new("hl-check");
    let c = conf(tmp.path(), json!({"subnet": "10.13.0.0/24"}));
    add(&c, "c1", "eth0").unwrap();
    assert_eq!(via_skel("CHECK", &c, "c1", "eth0"), (0, String::new()));
    let (rc, out) = via_skel("CHECK", &c, "c1", "eth9");
    assert_eq!(rc, 1);
    assert!(
        out.contains("host-local: Failed to find address added by container c1"),
        "{out}"
    );
    let e = HostLocal
        .check(&cmd(Command::Check, &c, "c2", "eth0", ""))
        .unwrap_err();
    assert!(format!("{e}").contains("container c2"));
}

#[test]
fn check_compares_prev_result() {
    let sets = vec![
        crate::ipam::RangeSet::new(vec![
            crate::ipam::Range::new("10.14.0.0/24".parse().unwrap(), None, None, None).unwrap(),
        ])
        .unwrap(),
    ];
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let prev = |addrs: &[&str]| CniResult {
        ips: addrs
            .iter()
            .map(|a| IpConfig {
                interface: Some(0),
                address: a.parse().unwrap(),
                gateway: None,
            })
            .collect(),
        ..Default::default()
    };
    let held = [ip("10.14.0.2")];
    check_prev(&sets, &held, &prev(&["10.14.0.2/24", "192.168.9.9/24"])).unwrap();
    let e = check_prev(&sets, &held, &prev(&["10.14.0.3/24"])).unwrap_err();
    assert!(
        format!("{e}").contains("prevResult address 10.14.0.3 is not reserved"),
        "{e}"
    );
    let e = check_prev(&sets, &held, &prev(&[])).unwrap_err();
    assert!(format!("{e}").contains(
        "10.14.0.2 reserved for this container and interface is missing from prevResult"
    ));
}

#[test]
fn gc_releases_everything_not_valid() {
    let tmp = TempDir::new("hl-gc");
    let mut c = conf(tmp.path(), json!({"subnet": "10.15.0.0/24"}));
    add(&c, "keep", "eth0").unwrap();
    add(&c, "gone", "eth0").unwrap();
    add(&c, "keep", "eth1").unwrap();
    let dir = tmp.path().join("hlnet");
    fs::write(dir.join("10.15.0.200"), "keep").unwrap();
    fs::write(dir.join("10.15.0.201"), "stale-legacy").unwrap();
    assert_eq!(via_skel("GC", &c, "", ""), (0, String::new()));
    assert_eq!(
        files(&dir).len(),
        7,
        "no valid-attachments key: nothing known stale"
    );
    c["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    assert_eq!(via_skel("GC", &c, "", ""), (0, String::new()));
    assert_eq!(
        files(&dir),
        ["10.15.0.2", "10.15.0.200", "last_reserved_ip.0", "lock"]
    );
    c["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(via_skel("GC", &c, "", ""), (0, String::new()));
    assert_eq!(files(&dir), ["last_reserved_ip.0", "lock"]);
}

#[test]
fn status_reports_exhaustion_with_code_50() {
    let tmp = TempDir::new("hl-status");
    let c = conf(
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.16.0.0/24"}], [{"subnet": "10.17.0.0/30"}]]}),
    );
    assert_eq!(
        via_skel("STATUS", &c, "", ""),
        (0, String::new()),
        "nothing reserved yet"
    );
    assert!(!tmp.path().join("hlnet").exists(), "STATUS creates nothing");
    add(&c, "c1", "eth0").unwrap();
    let (rc, out) = via_skel("STATUS", &c, "", "");
    assert_eq!(rc, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["code"], 50);
    assert_eq!(
        v["msg"],
        "no IP addresses available in range set ipam.ranges[1] (10.17.0.1-10.17.0.2)"
    );
    assert_eq!(via_skel("DEL", &c, "c1", "eth0"), (0, String::new()));
    assert_eq!(via_skel("STATUS", &c, "", ""), (0, String::new()));
}

#[test]
fn bad_config_is_code_7_but_del_reads_only_the_store_location() {
    let tmp = TempDir::new("hl-bad");
    let c = conf(tmp.path(), json!({"subnet": "10.18.0.0/33"}));
    let (rc, out) = via_skel("STATUS", &c, "", "");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((rc, v["code"].as_u64()), (1, Some(7)), "{out}");
    let want = "ipam.subnet: invalid CIDR \"10.18.0.0/33\"";
    assert!(v["msg"].as_str().unwrap().contains(want), "{out}");
    // DEL needs only the store's location: ranges may come from ipRanges, absent at DEL.
    assert_eq!(via_skel("DEL", &c, "c1", "eth0"), (0, String::new()));
    let mut c = conf(tmp.path(), json!({}));
    c["ipam"]["dataDir"] = json!(5);
    let (rc, out) = via_skel("DEL", &c, "c1", "eth0");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((rc, v["code"].as_u64()), (1, Some(7)), "{out}");
    assert!(v["msg"].as_str().unwrap().contains("ipam.dataDir"), "{out}");
}

/// Every `ok-*` config parses; every `bad-*` fails with code 7 and its `_expect` text.
#[test]
fn testdata_configs() {
    check_config_testdata("host-local", (4, 8), |v| {
        let c = serde_json::from_value::<Conf>(v.clone())?;
        HostLocalConfig::load(&c.net, &CniArgs::default())?.requests_per_set()?;
        Ok(())
    });
}

/// The reference binary, when this machine has it (Debian's containernetworking-plugins).
fn reference_host_local() -> Option<&'static Path> {
    let p = Path::new("/usr/lib/cni/host-local");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: no reference host-local at {}", p.display());
        None
    }
}

/// Starts the reference plugin for `verb` on `conf` (ifname eth0).
fn run_reference(bin: &Path, verb: &str, conf: &Value, id: &str) -> std::process::Child {
    use std::io::Write;
    use std::process::{Command as Proc, Stdio};
    let mut child = Proc::new(bin)
        .env_clear()
        .envs([
            ("CNI_COMMAND", verb),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", "/proc/self/ns/net"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reference host-local");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(conf).unwrap())
        .unwrap();
    child
}

/// Runs the reference plugin to completion: (success, stdout).
fn reference(bin: &Path, verb: &str, conf: &Value, id: &str) -> (bool, String) {
    let out = run_reference(bin, verb, conf, id)
        .wait_with_output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// State written by the reference is read and cleaned by us, and the other way round.
#[test]
fn interoperates_with_the_reference_plugin() {
    let Some(bin) = reference_host_local() else {
        return;
    };
    let tmp = TempDir::new("hl-interop");
    // cniVersion 1.0.0: the packaged reference may predate 1.1.0.
    let mut c = conf(
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.19.0.0/24"}], [{"subnet": "2001:db8:19::/64"}]]}),
    );
    c["cniVersion"] = "1.0.0".into();
    let (ok, out) = reference(bin, "ADD", &c, "go1");
    assert!(ok && out.contains("10.19.0.2/24"), "{out}");
    let ours = add(&c, "rs1", "eth0").unwrap();
    assert_eq!(
        ours[0].address.to_string(),
        "10.19.0.3/24",
        "round robin continues after the reference"
    );
    assert_eq!(ours[1].address.to_string(), "2001:db8:19::3/64");
    assert!(
        reference(bin, "CHECK", &c, "rs1").0,
        "reference finds our reservation"
    );
    let (ok, out) = reference(bin, "ADD", &c, "go2");
    assert!(
        ok && out.contains("10.19.0.4/24"),
        "reference continues after us: {out}"
    );
    HostLocal
        .del(&cmd(Command::Del, &c, "go1", "eth0", ""))
        .unwrap();
    assert!(reference(bin, "DEL", &c, "rs1").0);
    let left: Vec<String> = files(&tmp.path().join("hlnet"));
    assert_eq!(
        left,
        [
            "10.19.0.4",
            "2001:db8:19::4",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
}

/// Our flock and the reference's go-filemutex exclude each other.
#[test]
fn lock_excludes_the_reference_plugin() {
    let Some(bin) = reference_host_local() else {
        return;
    };
    let tmp = TempDir::new("hl-interop-lock");
    let mut c = conf(tmp.path(), json!({"subnet": "10.20.0.0/24"}));
    c["cniVersion"] = "1.0.0".into();
    let mut store = crate::ipam::DiskStore::open(tmp.path(), "hlnet").unwrap();
    store.lock().unwrap();
    let mut child = run_reference(bin, "ADD", &c, "go1");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let early = child.try_wait().unwrap();
    store.unlock().unwrap();
    let status = child.wait().unwrap();
    assert!(
        early.is_none(),
        "reference ADD finished while we held the lock"
    );
    assert!(status.success());
    assert!(tmp.path().join("hlnet/10.20.0.2").exists());
}

#[test]
fn exclude_is_never_handed_out() {
    let tmp = TempDir::new("hl-exclude");
    let c = conf(
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.19.0.0/29"}]], "exclude": ["10.19.0.2/31", "10.19.0.6"]}),
    );
    let a = add(&c, "c1", "eth0").unwrap();
    assert_eq!(a[0].address.to_string(), "10.19.0.4/29");
    assert_eq!(via_skel("STATUS", &c, "", ""), (0, String::new()));
    let b = add(&c, "c2", "eth0").unwrap();
    assert_eq!(b[0].address.to_string(), "10.19.0.5/29");
    assert!(add(&c, "c3", "eth0").is_err(), ".2, .3 and .6 are excluded");
    let (rc, out) = via_skel("STATUS", &c, "", "");
    assert_eq!(rc, 1);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["code"], 50);
    let e = HostLocal
        .add(&cmd(Command::Add, &c, "c4", "eth0", "IP=10.19.0.3"))
        .unwrap_err();
    assert_eq!(code_of(&e), 7);
    let mut bad = c.clone();
    bad["ipam"]["exclude"] = json!(["nope"]);
    assert_eq!(code_of(&add(&bad, "c5", "eth0").unwrap_err()), 7);
}
