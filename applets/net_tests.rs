//! The tool end to end (in process) against the shell fake plugin, plus its pure parts:
//! container ID, CNI_ARGS, CAP_ARGS, path cleaning, the readable summary.

use super::*;
use crate::runtime::test_support::{TempDir, testdata};
use crate::types::{Dns, Interface, IpConfig, Route};
use serde_json::json;

struct Tool {
    dir: TempDir,
    env: Env,
}

/// A conf dir holding network `n` (two fake plugins, version 1.1.0), a CNI_PATH with the fake
/// plugin, and a private cache dir.
fn tool() -> Tool {
    let dir = TempDir::new("net-tool");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(testdata("plugins/fake"), bin.join("fake")).unwrap();
    let log = dir.path().join("calls.log").display().to_string();
    let result = dir.write(
        "result.json",
        r#"{"cniVersion":"1.1.0","ips":[{"address":"10.9.0.2/24"}]}"#,
    );
    let list = json!({"cniVersion":"1.1.0","name":"n","plugins":[
        {"type":"fake","tag":"a","logFile":log,"capabilities":{"mac":true}},
        {"type":"fake","tag":"b","logFile":log,"resultFile":result.display().to_string()}]});
    dir.write("conf/10-n.conflist", &list.to_string());
    let mut env = Env::new();
    env.insert(
        "NETCONFPATH".into(),
        dir.path().join("conf").display().to_string(),
    );
    env.insert("CNI_PATH".into(), bin.display().to_string());
    if let Ok(p) = std::env::var("PATH") {
        env.insert("PATH".into(), p);
    }
    Tool { dir, env }
}

impl Tool {
    fn run(&self, flavor: Flavor, args: &[&str]) -> (u8, String, String) {
        let cache = self.dir.path().join("cache").display().to_string();
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.extend(["--cache-dir".into(), cache.into()]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(flavor, &argv, &self.env, &mut out, &mut err);
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// `verb tag container ifname args` per logged call; clears the log.
    fn calls(&self) -> Vec<String> {
        let log = self.dir.path().join("calls.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(8, '|').collect();
                format!("{} {} {} {} {}", f[1], f[0], f[2], f[4], f[5])
            })
            .collect()
    }

    fn cached(&self, cid: &str, ifname: &str) -> bool {
        self.dir
            .path()
            .join(format!("cache/results/n-{cid}-{ifname}"))
            .exists()
    }
}

#[test]
fn container_id_is_cnitools_hash_of_the_netns_path() {
    // printf '%s' /var/run/netns/test | sha512sum | cut -c1-20
    assert_eq!(
        container_id("/var/run/netns/test"),
        "cnitool-7b8a61d5d8e94d07cbe4"
    );
    assert_eq!(
        container_id("/run/netns/blue"),
        "cnitool-df26705e2e4ffd095eb1"
    );
    assert_eq!(
        absolute("/run//netns/./x/../blue/").unwrap(),
        "/run/netns/blue"
    );
    assert_eq!(absolute("/..").unwrap(), "/");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        absolute("ns").unwrap(),
        cwd.join("ns").display().to_string()
    );
}

#[test]
fn cni_args_follow_cnitools_rules() {
    assert_eq!(
        parse_cni_args("IgnoreUnknown=1;IP=10.0.0.2").unwrap(),
        vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("IP".into(), "10.0.0.2".into())
        ]
    );
    for (bad, pair) in [
        ("A", "A"),
        ("A=", "A="),
        ("=1", "=1"),
        ("A=1=2", "A=1=2"),
        ("A=1;", ""),
    ] {
        assert_eq!(
            parse_cni_args(bad).unwrap_err().to_string(),
            format!("invalid CNI_ARGS pair {pair:?}")
        );
    }
    assert_eq!(parse_cap_args(r#"{"mac":"m"}"#).unwrap()["mac"], "m");
    assert!(parse_cap_args("null").unwrap().is_empty());
    assert!(parse_cap_args("[1]").is_err() && parse_cap_args("{").is_err());
}

#[test]
fn cnitool_add_prints_the_result_as_is_and_del_prints_nothing() {
    let t = tool();
    let (status, out, err) = t.run(Flavor::Cnitool, &["add", "n", "/var/run/netns/test"]);
    assert_eq!((status, err.as_str()), (0, ""));
    let want = "{\n    \"cniVersion\": \"1.1.0\",\n    \"ips\": [\n        {\n            \"address\": \"10.9.0.2/24\"\n        }\n    ]\n}";
    assert_eq!(out, want);
    let cid = "cnitool-7b8a61d5d8e94d07cbe4";
    assert_eq!(
        t.calls(),
        [format!("ADD a {cid} eth0 "), format!("ADD b {cid} eth0 ")]
    );
    assert!(t.cached(cid, "eth0"));
    let (status, out, _) = t.run(Flavor::Cnitool, &["del", "n", "/var/run/netns/test"]);
    assert_eq!((status, out.as_str()), (0, ""));
    assert_eq!(
        t.calls(),
        [format!("DEL b {cid} eth0 "), format!("DEL a {cid} eth0 ")]
    );
    assert!(!t.cached(cid, "eth0"));
}

#[test]
fn environment_is_read_and_flags_win() {
    let mut t = tool();
    t.env.insert("CNI_IFNAME".into(), "net1".into());
    t.env.insert("CNI_ARGS".into(), "K8S_POD_NAME=web".into());
    t.env
        .insert("CAP_ARGS".into(), r#"{"mac":"c2:11:22:33:44:55"}"#.into());
    assert_eq!(
        t.run(
            Flavor::Cnitool,
            &["add", "n", "/run/netns/x", "--container-id", "abc"]
        )
        .0,
        0
    );
    let calls = t.calls();
    assert_eq!(calls[0], "ADD a abc net1 K8S_POD_NAME=web");
    assert!(t.cached("abc", "net1"));
    let entry = ResultCache::new(t.dir.path().join("cache"))
        .read_entry("n", "abc", "net1")
        .unwrap()
        .unwrap();
    assert_eq!(entry.capability_args["mac"], "c2:11:22:33:44:55");
    let (status, _, _) = t.run(
        Flavor::Net,
        &[
            "check",
            "-i",
            "eth7",
            "--args",
            "X=1",
            "n",
            "/run/netns/x",
            "--container-id",
            "abc",
        ],
    );
    assert_eq!(status, 0);
    assert_eq!(t.calls(), ["CHECK a abc eth7 X=1", "CHECK b abc eth7 X=1"]);
}

#[test]
fn net_json_prints_the_result_in_the_list_version() {
    let t = tool();
    let (status, out, _) = t.run(Flavor::Net, &["add", "--json", "n", "/run/netns/x"]);
    assert_eq!(status, 0);
    assert!(out.ends_with("}\n"), "{out:?}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"cniVersion":"1.1.0","ips":[{"address":"10.9.0.2/24"}]})
    );
    let (status, out, _) = t.run(Flavor::Net, &["del", "n", "/run/netns/x"]);
    assert_eq!(status, 0);
    assert_eq!(out, format!("n eth0 in /run/netns/x: deleted\n"));
}

#[test]
fn gc_and_status_need_no_netns() {
    let t = tool();
    t.run(Flavor::Cnitool, &["add", "n", "/run/netns/x"]);
    t.calls();
    let (status, out, err) = t.run(Flavor::Net, &["gc", "n"]);
    assert_eq!(
        (status, out.as_str(), err.as_str()),
        (0, "n: garbage-collected\n", "")
    );
    let calls = t.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls[0].starts_with("DEL b cnitool-"), "{calls:?}");
    assert_eq!(&calls[2..], ["GC a   ", "GC b   "]);
    let (status, out, _) = t.run(Flavor::Cnitool, &["status", "n"]);
    assert_eq!((status, out.as_str()), (0, ""));
    assert_eq!(t.calls(), ["STATUS a   ", "STATUS b   "]);
}

#[test]
fn errors_go_to_stderr_with_status_1() {
    let mut t = tool();
    let (status, out, err) = t.run(Flavor::Cnitool, &["add", "nope", "/run/netns/x"]);
    assert_eq!((status, out.as_str()), (1, ""));
    assert!(
        err.starts_with("no net configuration with name \"nope\" in "),
        "{err}"
    );
    t.env.insert("CNI_ARGS".into(), "A".into());
    let (status, _, err) = t.run(Flavor::Cnitool, &["add", "n", "/run/netns/x"]);
    assert_eq!((status, err.as_str()), (1, "invalid CNI_ARGS pair \"A\"\n"));
    t.env.remove("CNI_ARGS");
    let (status, _, err) = t.run(Flavor::Cnitool, &["add", "n"]);
    assert_eq!(status, 1);
    assert!(err.contains("NETNS"), "{err}");
    t.env.remove("CNI_PATH");
    let (status, _, err) = t.run(Flavor::Net, &["add", "n", "/run/netns/x"]);
    assert_eq!(status, 1);
    assert!(err.contains("CNI_PATH is empty"), "{err}");
    assert!(t.calls().is_empty());
}

#[test]
fn help_goes_to_stdout() {
    let t = tool();
    let (status, out, err) = t.run(Flavor::Cnitool, &["--help"]);
    assert_eq!((status, err.as_str()), (0, ""));
    for word in [
        "add",
        "check",
        "del",
        "gc",
        "status",
        "--conf-dir",
        "--ifname",
    ] {
        assert!(out.contains(word), "{word}: {out}");
    }
    assert_eq!(t.run(Flavor::Net, &[]).0, 1);
}

#[test]
fn summary_lists_interfaces_addresses_routes_and_dns() {
    let r = CniResult {
        interfaces: vec![
            Interface {
                name: "cni0".into(),
                mac: "aa:bb:cc:dd:ee:01".into(),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mtu: 1450,
                sandbox: "/run/netns/x".into(),
                ..Interface::default()
            },
        ],
        ips: vec![IpConfig {
            interface: Some(1),
            address: "10.1.0.5/16".parse().unwrap(),
            gateway: Some("10.1.0.1".parse().unwrap()),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some("10.1.0.1".parse().unwrap()),
            mtu: 0,
            advmss: 0,
            priority: 100,
            table: None,
            scope: None,
        }],
        dns: Dns {
            nameservers: vec!["10.1.0.1".into()],
            search: vec!["a".into(), "b".into()],
            ..Dns::default()
        },
    };
    assert_eq!(
        summary(&r),
        "interfaces:\n  [0] cni0 aa:bb:cc:dd:ee:01 (host)\n  [1] eth0 mtu 1450 (/run/netns/x)\n\
         addresses:\n  10.1.0.5/16 gateway 10.1.0.1 on eth0\n\
         routes:\n  0.0.0.0/0 via 10.1.0.1 metric 100\n\
         dns:\n  nameservers 10.1.0.1\n  search a b\n"
    );
    assert_eq!(summary(&CniResult::default()), "");
}
