//! In-process tests of the protocol: every verb and every error path, on in-memory IO.

use super::*;
use crate::error::bad_config;
use crate::types::{Interface, IpConfig};
use serde_json::{Value, json};
use std::sync::Mutex;

/// A plugin that records which verb ran and can be told to fail or panic.
struct Fake {
    seen: Mutex<Vec<(Command, String, String)>>,
    fail: Option<fn() -> anyhow::Error>,
    panic: bool,
    versions: &'static [&'static str],
}

impl Fake {
    fn new() -> Fake {
        Fake {
            seen: Mutex::new(Vec::new()),
            fail: None,
            panic: false,
            versions: version::ALL,
        }
    }

    fn record(&self, a: &CmdArgs) -> anyhow::Result<()> {
        self.seen
            .lock()
            .unwrap()
            .push((a.command, a.container_id.clone(), a.ifname.clone()));
        if self.panic {
            panic!("deliberate");
        }
        match self.fail {
            Some(f) => Err(f()),
            None => Ok(()),
        }
    }
}

impl Plugin for Fake {
    fn add(&self, a: &CmdArgs) -> anyhow::Result<CniResult> {
        self.record(a)?;
        Ok(CniResult {
            interfaces: vec![Interface {
                name: a.ifname.clone(),
                sandbox: a.netns.clone(),
                ..Default::default()
            }],
            ips: vec![IpConfig {
                interface: Some(0),
                address: "10.1.0.5/24".parse().unwrap(),
                gateway: None,
            }],
            ..Default::default()
        })
    }
    fn del(&self, a: &CmdArgs) -> anyhow::Result<()> {
        self.record(a)
    }
    fn check(&self, a: &CmdArgs) -> anyhow::Result<()> {
        self.record(a)
    }
    fn gc(&self, a: &CmdArgs) -> anyhow::Result<()> {
        self.record(a)
    }
    fn status(&self, a: &CmdArgs) -> anyhow::Result<()> {
        self.record(a)
    }
    fn versions(&self) -> &'static [&'static str] {
        self.versions
    }
}

struct Out {
    code: u8,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
    fn err_code(&self) -> u64 {
        assert_eq!(self.code, 1, "expected failure; stdout {:?}", self.stdout);
        self.json()["code"].as_u64().unwrap()
    }
    fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap().to_string()
    }
}

fn env(cmd: &str) -> Env {
    let mut e = Env::new();
    e.insert("CNI_COMMAND".into(), cmd.into());
    e.insert("CNI_CONTAINERID".into(), "ctr-1".into());
    // A netns path that does not exist: the same-netns check then has nothing to compare.
    e.insert("CNI_NETNS".into(), "/nonexistent/netns".into());
    e.insert("CNI_IFNAME".into(), "eth0".into());
    e.insert("CNI_PATH".into(), "/opt/cni/bin".into());
    e
}

fn call(p: &Fake, env: &Env, stdin: &str) -> Out {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(
        "fake",
        p,
        env,
        Io {
            stdin: &mut stdin.as_bytes(),
            stdout: &mut out,
            stderr: &mut err,
        },
    );
    Out {
        code,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

fn conf(version: &str) -> String {
    json!({"cniVersion": version, "name": "testnet", "type": "fake"}).to_string()
}

#[test]
fn version_ignores_stdin_and_lists_versions() {
    let o = call(&Fake::new(), &env("VERSION"), "garbage");
    assert_eq!(o.code, 0);
    assert!(o.stdout.ends_with('\n'));
    assert_eq!(
        o.json(),
        json!({"cniVersion": "1.1.0", "supportedVersions": version::ALL})
    );
}

#[test]
fn version_needs_nothing_but_the_command() {
    let mut e = Env::new();
    e.insert("CNI_COMMAND".into(), "VERSION".into());
    assert_eq!(call(&Fake::new(), &e, "").code, 0);
}

#[test]
fn no_command_prints_about_on_stderr_and_succeeds() {
    let o = call(&Fake::new(), &Env::new(), "");
    assert_eq!(o.code, 0);
    assert!(o.stdout.is_empty());
    assert!(o.stderr.contains("CNI fake plugin"));
    assert!(o.stderr.contains("1.1.0"));
}

#[test]
fn add_runs_and_encodes_in_the_config_version() {
    for v in version::ALL {
        let p = Fake::new();
        let o = call(&p, &env("ADD"), &conf(v));
        assert_eq!(o.code, 0, "{v}: {}", o.stdout);
        let j = o.json();
        assert_eq!(j["cniVersion"], *v);
        if v.starts_with("0.1") || v.starts_with("0.2") {
            assert_eq!(j["ip4"]["ip"], "10.1.0.5/24", "{v}");
        } else {
            assert_eq!(j["ips"][0]["address"], "10.1.0.5/24", "{v}");
        }
        assert_eq!(
            p.seen.lock().unwrap()[0],
            (Command::Add, "ctr-1".into(), "eth0".into())
        );
    }
}

#[test]
fn del_check_gc_status_print_nothing_on_success() {
    for (cmd, v) in [
        ("DEL", "0.3.1"),
        ("CHECK", "0.4.0"),
        ("GC", "1.1.0"),
        ("STATUS", "1.1.0"),
    ] {
        let o = call(&Fake::new(), &env(cmd), &conf(v));
        assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{cmd}");
    }
}

#[test]
fn gc_and_status_need_only_the_command_and_path() {
    for cmd in ["GC", "STATUS"] {
        let mut e = Env::new();
        e.insert("CNI_COMMAND".into(), cmd.into());
        e.insert("CNI_PATH".into(), "/opt/cni/bin".into());
        let p = Fake::new();
        assert_eq!(call(&p, &e, &conf("1.1.0")).code, 0, "{cmd}");
        assert_eq!(
            p.seen.lock().unwrap()[0].1,
            "",
            "{cmd} gets no container id"
        );
    }
}

#[test]
fn missing_env_is_code_4_and_named() {
    let mut e = env("ADD");
    e.remove("CNI_NETNS");
    e.remove("CNI_PATH");
    let o = call(&Fake::new(), &e, &conf("1.0.0"));
    assert_eq!(o.err_code(), 4);
    assert_eq!(
        o.msg(),
        "required env variables [CNI_NETNS,CNI_PATH] missing"
    );
    assert_eq!(o.json()["cniVersion"], "1.1.0");
}

#[test]
fn del_does_not_need_a_netns() {
    let mut e = env("DEL");
    e.remove("CNI_NETNS");
    assert_eq!(call(&Fake::new(), &e, &conf("1.0.0")).code, 0);
}

#[test]
fn empty_container_id_is_code_3_bad_one_is_code_4() {
    let mut e = env("ADD");
    e.remove("CNI_CONTAINERID");
    assert_eq!(call(&Fake::new(), &e, &conf("1.0.0")).err_code(), 3);
    e.insert("CNI_CONTAINERID".into(), "../escape".into());
    let o = call(&Fake::new(), &e, &conf("1.0.0"));
    assert_eq!(o.err_code(), 4);
    assert!(o.msg().contains("containerID"), "{}", o.msg());
}

#[test]
fn bad_interface_names_are_code_4() {
    for bad in ["abcdefghijklmnop", "a/b", "a:b", "a b", ".", ".."] {
        let mut e = env("ADD");
        e.insert("CNI_IFNAME".into(), bad.into());
        let o = call(&Fake::new(), &e, &conf("1.0.0"));
        assert_eq!(o.err_code(), 4, "{bad}");
        assert!(o.msg().contains("interface name"), "{bad}: {}", o.msg());
    }
    let mut e = env("ADD");
    e.insert("CNI_IFNAME".into(), "abcdefghijklmno".into());
    assert_eq!(
        call(&Fake::new(), &e, &conf("1.0.0")).code,
        0,
        "15 bytes is allowed"
    );
}

#[test]
fn unknown_command_is_code_4() {
    let o = call(&Fake::new(), &env("ATTACH"), &conf("1.0.0"));
    assert_eq!(o.err_code(), 4);
    assert_eq!(o.msg(), "unknown CNI_COMMAND: ATTACH");
}

#[test]
fn stdin_not_json_is_code_6() {
    for bad in ["", "{", "not json", "[1,2]"] {
        let o = call(&Fake::new(), &env("ADD"), bad);
        assert_eq!(o.err_code(), 6, "{bad:?}");
    }
}

#[test]
fn missing_or_bad_network_name_is_code_7() {
    let o = call(
        &Fake::new(),
        &env("ADD"),
        r#"{"cniVersion":"1.0.0","type":"fake"}"#,
    );
    assert_eq!(o.err_code(), 7);
    assert!(o.msg().contains("network name"));
    let o = call(
        &Fake::new(),
        &env("ADD"),
        r#"{"cniVersion":"1.0.0","name":"a/b"}"#,
    );
    assert_eq!(o.err_code(), 7);
}

#[test]
fn unsupported_version_is_code_1_with_details() {
    let o = call(&Fake::new(), &env("ADD"), &conf("9.9.9"));
    assert_eq!(o.err_code(), 1);
    assert_eq!(o.msg(), "incompatible CNI versions");
    assert!(o.json()["details"].as_str().unwrap().contains("9.9.9"));
    let mut p = Fake::new();
    p.versions = &["0.3.1", "0.4.0"];
    assert_eq!(call(&p, &env("ADD"), &conf("1.0.0")).err_code(), 1);
}

/// A malformed version is an unsupported one, code 1, as the reference answers (found by the
/// fuzzer: it was code 6 here), and the error names a version we know, not the garbage.
#[test]
fn unparsable_version_is_code_1_as_the_reference() {
    for bad in ["one", "../../etc/passwd", "1.0.0-rc1"] {
        let o = call(&Fake::new(), &env("ADD"), &conf(bad));
        assert_eq!(o.err_code(), 1, "{bad}");
        assert_eq!(o.msg(), "incompatible CNI versions");
        assert_eq!(
            o.json()["cniVersion"],
            crate::types::version::CURRENT,
            "{bad}"
        );
    }
}

#[test]
fn missing_version_means_0_1_0() {
    let o = call(&Fake::new(), &env("ADD"), r#"{"name":"n"}"#);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json()["cniVersion"], "0.1.0");
}

#[test]
fn check_needs_0_4_0_gc_and_status_need_1_1_0() {
    for (cmd, v) in [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "1.0.0")] {
        let p = Fake::new();
        let o = call(&p, &env(cmd), &conf(v));
        assert_eq!(o.err_code(), 1, "{cmd} {v}");
        assert!(o.msg().contains(cmd), "{}", o.msg());
        assert!(p.seen.lock().unwrap().is_empty(), "{cmd} must not run");
        assert_eq!(
            o.json()["cniVersion"],
            v,
            "error reported in the config's version"
        );
    }
}

#[test]
fn plugin_errors_keep_their_code_or_become_999() {
    let mut p = Fake::new();
    p.fail = Some(|| bad_config("ipam: subnet missing"));
    let o = call(&p, &env("ADD"), &conf("1.0.0"));
    assert_eq!(o.err_code(), 7);
    assert_eq!(o.msg(), "ipam: subnet missing");
    p.fail = Some(|| anyhow::anyhow!("kernel said no"));
    let o = call(&p, &env("DEL"), &conf("1.0.0"));
    assert_eq!(o.err_code(), 999);
    assert_eq!(o.msg(), "kernel said no");
}

#[test]
fn a_panic_becomes_code_999_without_a_backtrace_on_stdout() {
    let mut p = Fake::new();
    p.panic = true;
    let o = call(&p, &env("ADD"), &conf("1.0.0"));
    assert_eq!(o.err_code(), 999);
    assert!(o.msg().contains("panicked: deliberate"), "{}", o.msg());
    assert!(!o.stdout.contains("backtrace"));
}

#[test]
fn unknown_cni_args_keys_are_accepted_malformed_are_not() {
    let mut e = env("ADD");
    e.insert(
        "CNI_ARGS".into(),
        "IgnoreUnknown=1;K8S_POD_NAME=x;K8S_POD_NAMESPACE=y".into(),
    );
    assert_eq!(call(&Fake::new(), &e, &conf("1.0.0")).code, 0);
    e.insert("CNI_ARGS".into(), "justakey".into());
    assert_eq!(call(&Fake::new(), &e, &conf("1.0.0")).err_code(), 4);
}

#[test]
fn adding_into_the_plugins_own_netns_is_refused_unless_overridden() {
    let mut e = env("ADD");
    e.insert("CNI_NETNS".into(), "/proc/self/ns/net".into());
    let p = Fake::new();
    let o = call(&p, &e, &conf("1.0.0"));
    assert_eq!(o.err_code(), 8);
    assert!(p.seen.lock().unwrap().is_empty(), "ADD must not have acted");
    e.insert("CNI_NETNS_OVERRIDE".into(), "true".into());
    assert_eq!(call(&Fake::new(), &e, &conf("1.0.0")).code, 0);
}

#[test]
fn prev_result_of_the_wrong_shape_is_code_7() {
    let c: crate::types::NetConf = serde_json::from_value(json!({
        "cniVersion": "1.0.0", "name": "n", "prevResult": {"ips": "not-a-list"}
    }))
    .unwrap();
    let e = c.prev_result().unwrap_err();
    assert_eq!(crate::error::code_of(&e), 7);
    assert!(format!("{e:#}").contains("prevResult"));
}
