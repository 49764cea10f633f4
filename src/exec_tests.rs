//! exec tests: finding plugins, a foreign delegate (`testdata/plugins/fake-ipam`, a shell
//! script) answering in every spec version or failing in every way, and the in-process fast
//! path (symlinks to this test binary), which must give what skel gives for the same call.

use super::*;
use crate::error::{cni_error_of, code_of};
use crate::ipam::test_support::TempDir;
use crate::types::args::CniArgs;
use crate::types::version;
use serde_json::{Value, json};
use std::cell::Cell;

thread_local! {
    /// Calls that took the in-process path on this thread (the path runs on the caller's
    /// thread, so parallel tests cannot disturb each other's count).
    pub(crate) static IN_PROCESS_CALLS: Cell<u32> = const { Cell::new(0) };
}

fn in_process_calls() -> u32 {
    IN_PROCESS_CALLS.with(Cell::get)
}

const PLUGINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/plugins");
const RESULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/results");

/// The arguments a delegating plugin would have: its env (`CNI_COMMAND` is replaced by
/// delegation), `conf` as stdin, `path` as `CNI_PATH`.
fn cmd_args(conf: &Value, path: &[PathBuf]) -> CmdArgs {
    let joined = std::env::join_paths(path).unwrap();
    let mut env = Env::new();
    for (k, v) in [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", "/var/run/netns/unused"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1"),
        ("CNI_PATH", joined.to_str().unwrap()),
        (CHILD_MARK, "1"),
    ] {
        env.insert(k.into(), v.into());
    }
    CmdArgs {
        command: Command::Add,
        container_id: "ctr1".into(),
        netns: "/var/run/netns/unused".into(),
        ifname: "eth0".into(),
        args: CniArgs::parse("IgnoreUnknown=1").unwrap(),
        path: path.to_vec(),
        stdin: serde_json::to_vec(conf).unwrap(),
        version: conf["cniVersion"].as_str().unwrap_or_default().into(),
        env,
    }
}

fn fake(mode: &str) -> CmdArgs {
    let conf = json!({"cniVersion": "1.0.0", "name": "net", "type": "bridge",
                      "ipam": {"type": "fake-ipam"}, "fake": mode});
    cmd_args(
        &conf,
        &[PathBuf::from("/nonexistent"), PathBuf::from(PLUGINS)],
    )
}

#[test]
fn find_rejects_separators_and_empty_path() {
    assert!(
        format!(
            "{}",
            find_in_path("a/b", &[PathBuf::from("/bin")]).unwrap_err()
        )
        .contains("contains '/'")
    );
    assert_eq!(code_of(&find_in_path("sh", &[]).unwrap_err()), 4);
    assert!(find_in_path("", &[PathBuf::from("/bin")]).is_err());
}

#[test]
fn find_takes_the_first_directory_and_skips_directories() {
    let path = [
        PathBuf::from("/nonexistent"),
        PathBuf::from("/usr"),
        PathBuf::from("/bin"),
    ];
    assert_eq!(find_in_path("sh", &path).unwrap(), PathBuf::from("/bin/sh"));
    let e = find_in_path("bin", &[PathBuf::from("/usr")]).unwrap_err();
    assert!(format!("{e}").contains("failed to find plugin \"bin\""));
}

#[test]
fn failing_plugin_error_keeps_its_code() {
    let out = br#"{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"later"}"#.to_vec();
    let mut sink = Vec::new();
    let e = finish(
        "x",
        false,
        out,
        Vec::new(),
        "exit status: 1".into(),
        &mut sink,
    )
    .unwrap_err();
    let c = cni_error_of(&e).unwrap();
    assert_eq!(
        (c.code, c.msg.as_str(), c.details.as_str()),
        (11, "busy", "later")
    );
}

#[test]
fn failing_plugin_without_json_is_explained() {
    let mut sink = Vec::new();
    let e = finish(
        "x",
        false,
        Vec::new(),
        b"segfault\n".to_vec(),
        "signal: 11".into(),
        &mut sink,
    )
    .unwrap_err();
    assert!(format!("{e}").contains("\"segfault\""), "{e}");
    assert_eq!(sink, b"segfault\n");
    let e = finish(
        "x",
        false,
        b"oops".to_vec(),
        Vec::new(),
        "exit status: 1".into(),
        &mut sink,
    )
    .unwrap_err();
    assert!(format!("{e}").contains("could not be parsed"), "{e}");
}

#[test]
fn null_output_is_an_empty_result() {
    assert_eq!(
        decode_result(b"null", "1.0.0").unwrap(),
        CniResult::default()
    );
    assert_eq!(code_of(&decode_result(b"{", "1.0.0").unwrap_err()), 6);
}

/// The delegate sees exactly the caller's `CNI_*` variables (with `CNI_COMMAND` replaced) and
/// nothing else of our environment, and gets the configuration bytes unchanged.
#[test]
fn foreign_delegate_gets_the_same_env_and_stdin() {
    let tmp = TempDir::new("exec-record");
    let prefix = tmp.path().join("seen");
    let args = fake(&format!("record:{}", prefix.display()));
    delegate(Command::Del, "fake-ipam", &args).unwrap();
    let env = std::fs::read_to_string(prefix.with_extension("env")).unwrap();
    let mut seen: Vec<&str> = env
        .lines()
        .filter(|l| !l.starts_with("PWD=")) // set by sh itself
        .collect();
    seen.sort();
    let mut want: Vec<String> = args
        .env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "CNI_COMMAND" => "CNI_COMMAND=DEL".to_string(),
            _ => format!("{k}={v}"),
        })
        .collect();
    // ... plus the delegation chain, for loop detection.
    want.push(format!("{CHAIN_VAR}=fake-ipam"));
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(
        std::fs::read(prefix.with_extension("stdin")).unwrap(),
        args.stdin
    );
}

#[test]
fn delegation_chains_stop_at_a_repeat_or_past_the_depth_limit() {
    let mut env = Env::new();
    for t in ["a", "b", "c", "d"] {
        enter_delegation(t, &mut env).unwrap();
    }
    assert_eq!(env[CHAIN_VAR], "a,b,c,d");
    let deep = enter_delegation("e", &mut env.clone()).unwrap_err();
    assert_eq!(code_of(&deep), code::INVALID_CONFIG);
    let msg = format!("{deep:#}");
    assert!(msg.contains("more than 4 nested") && msg.contains("a -> b -> c -> d -> e"));
    let mut short = Env::new();
    short.insert(CHAIN_VAR.into(), "x,y".into());
    let again = enter_delegation("x", &mut short).unwrap_err();
    let msg = format!("{again:#}");
    assert!(
        msg.contains("\"x\" delegates to itself (x -> y -> x)"),
        "{msg}"
    );
}

/// The same result in every spec version's layout decodes to the same canonical result.
#[test]
fn foreign_result_of_every_version_is_decoded() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{RESULTS}/1.1.0/ipam.json")).unwrap(),
    )
    .unwrap();
    let want = CniResult::decode(&golden, "1.1.0").unwrap();
    assert_eq!(want.ips[0].address.to_string(), "10.22.0.7/24");
    for v in version::ALL {
        let got = delegate_add("fake-ipam", &fake(&format!("result-{v}")))
            .unwrap_or_else(|e| panic!("{v}: {e:#}"));
        assert_eq!(got, want, "result in version {v}");
    }
}

/// Without `cniVersion` a result is read in the configuration's version (cni#895).
#[test]
fn foreign_result_without_version_takes_the_config_version() {
    let got = delegate_add("fake-ipam", &fake("no-version")).unwrap();
    assert_eq!(got.ips.len(), 1);
    assert_eq!(got.ips[0].address.to_string(), "10.9.0.2/24");
    assert_eq!(got.ips[0].gateway.unwrap().to_string(), "10.9.0.1");
}

#[test]
fn foreign_error_keeps_code_msg_and_details() {
    for verb in [Command::Add, Command::Del, Command::Check] {
        let e = match verb {
            Command::Add => delegate_add("fake-ipam", &fake("error")).unwrap_err(),
            _ => delegate(verb, "fake-ipam", &fake("error")).unwrap_err(),
        };
        assert_eq!(code_of(&e), 11, "{e:#}");
        let c = cni_error_of(&e).unwrap();
        assert_eq!(
            (c.msg.as_str(), c.details.as_str()),
            ("pool busy", "retry in 1s")
        );
        let text = format!("{e:#}");
        assert!(
            text.starts_with(&format!("fake-ipam {}: pool busy", verb.as_str())),
            "{text}"
        );
    }
}

#[test]
fn foreign_stderr_is_passed_through() {
    let args = fake("result-0.4.0");
    let inv = Invocation {
        plugin_type: "fake-ipam",
        path: &args.path,
        env: args.env.clone(),
        stdin: &args.stdin,
    };
    let mut sink = Vec::new();
    invoke_with_stderr(&inv, &mut sink).unwrap();
    assert_eq!(
        String::from_utf8(sink).unwrap(),
        "fake-ipam: ADD result-0.4.0\n"
    );
}

#[test]
fn foreign_failures_without_error_json() {
    let e = delegate_add("fake-ipam", &fake("silent-fail")).unwrap_err();
    assert_eq!(code_of(&e), 999);
    let text = format!("{e:#}");
    assert!(text.contains("fake-ipam: ADD silent-fail"), "{text}");
    assert!(text.contains("exit status: 2"), "{text}");
    let e = delegate_add("fake-ipam", &fake("garbage")).unwrap_err();
    assert_eq!(code_of(&e), 6, "{e:#}");
    assert!(format!("{e:#}").contains("this is not JSON"), "{e:#}");
}

#[test]
fn missing_or_misnamed_delegate() {
    let args = fake("result-1.0.0");
    let e = delegate_add("no-such-ipam", &args).unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(
        format!("{e:#}").contains(&format!(
            "failed to find plugin \"no-such-ipam\" in path [/nonexistent:{PLUGINS}]"
        )),
        "{e:#}"
    );
    let e = delegate_add("../plugins/fake-ipam", &args).unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(format!("{e:#}").contains("contains '/'"), "{e:#}");
    let mut no_path = args.clone();
    no_path.path.clear();
    assert_eq!(
        code_of(&delegate_add("fake-ipam", &no_path).unwrap_err()),
        4
    );
}

#[test]
fn non_executable_delegate_is_an_error() {
    let tmp = TempDir::new("exec-noexec");
    std::fs::write(tmp.path().join("plain"), "#!/bin/sh\necho '{}'\n").unwrap();
    let args = cmd_args(
        &json!({"cniVersion": "1.0.0", "name": "n"}),
        &[tmp.path().to_path_buf()],
    );
    let e = delegate_add("plain", &args).unwrap_err();
    assert!(format!("{e:#}").contains("Permission denied"), "{e:#}");
}

/// Set in the env of in-process calls: a test binary executed by mistake sees it and exits.
const CHILD_MARK: &str = "CNI_MULTI_EXEC_TEST_CHILD";

/// A CNI_PATH whose `host-local` and `static` are symlinks to this test binary. Executing it
/// would run the test harness, not a plugin, so a wrong path choice cannot pass unnoticed; the
/// checks here keep such a mistake from recursing through the whole test suite.
fn self_farm(tmp: &TempDir) -> Vec<PathBuf> {
    if std::env::var_os(CHILD_MARK).is_some() {
        eprintln!("exec tests: this test binary was executed as a plugin; the fast path is broken");
        std::process::exit(70);
    }
    let me = std::env::current_exe().unwrap();
    for name in ["host-local", "static", "not-an-applet"] {
        std::os::unix::fs::symlink(&me, tmp.path().join(name)).unwrap();
    }
    for name in ["host-local", "static"] {
        assert!(
            in_process_plugin(name, &tmp.path().join(name)).is_some(),
            "{name} would be executed, not run in process"
        );
    }
    vec![tmp.path().to_path_buf()]
}

/// What skel prints for the same call made directly: (exit code, stdout).
fn skel_direct(plugin: &dyn Plugin, env: &Env, stdin: &[u8]) -> (u8, Vec<u8>) {
    let (mut out, mut err, mut input) = (Vec::new(), Vec::new(), stdin);
    let io = Io {
        stdin: &mut input,
        stdout: &mut out,
        stderr: &mut err,
    };
    (skel::run("host-local", plugin, env, io), out)
}

#[test]
fn own_applets_run_in_process_with_skel_semantics() {
    let tmp = TempDir::new("exec-self");
    let path = self_farm(&tmp);
    assert!(in_process_plugin("not-an-applet", &path[0].join("not-an-applet")).is_none());
    assert!(in_process_plugin("host-local", Path::new("/bin/sh")).is_none());
    let hl = crate::applets::find("host-local").unwrap();
    let Run::Plugin(host_local) = hl.run else {
        panic!("host-local is a plugin")
    };
    let conf = |dir: &str| {
        json!({"cniVersion": "1.0.0", "name": "net", "type": "bridge",
               "ipam": {"type": "host-local", "subnet": "10.77.0.0/24",
                        "dataDir": tmp.path().join(dir).to_str().unwrap()}})
    };
    let args = cmd_args(&conf("delegated"), &path);
    let before = in_process_calls();
    let inv = Invocation {
        plugin_type: "host-local",
        path: &path,
        env: args.env.clone(),
        stdin: &args.stdin,
    };
    let out = invoke(&inv).unwrap();
    assert_eq!(in_process_calls(), before + 1, "not run in process");
    let direct = skel_direct(
        host_local,
        &args.env,
        &serde_json::to_vec(&conf("direct")).unwrap(),
    );
    assert_eq!((0, out), direct, "same bytes as skel");
    let mine = tmp.path().join("delegated/net/10.77.0.2");
    assert_eq!(std::fs::read(&mine).unwrap(), b"ctr1\r\neth0");
    delegate(Command::Del, "host-local", &args).unwrap();
    assert!(!mine.exists());
    assert_eq!(in_process_calls(), before + 2);
}

#[test]
fn own_applet_errors_in_process_keep_code_and_message() {
    let tmp = TempDir::new("exec-self-err");
    let path = self_farm(&tmp);
    let bad = json!({"cniVersion": "1.0.0", "name": "net",
                     "ipam": {"type": "host-local", "subnet": "10.1.0.0/33"}});
    let args = cmd_args(&bad, &path);
    let before = in_process_calls();
    let e = delegate_add("host-local", &args).unwrap_err();
    assert_eq!(in_process_calls(), before + 1);
    let c = cni_error_of(&e).unwrap();
    assert_eq!(c.code, 7);
    assert!(
        c.msg.contains("ipam.subnet: invalid CIDR \"10.1.0.0/33\""),
        "{}",
        c.msg
    );
    let hl = crate::applets::find("host-local").unwrap();
    let Run::Plugin(host_local) = hl.run else {
        panic!("host-local is a plugin")
    };
    let (rc, out) = skel_direct(host_local, &args.env, &args.stdin);
    let wire: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (rc, wire["code"].as_u64(), wire["msg"].as_str()),
        (1, Some(7), Some(c.msg.as_str()))
    );
}

#[test]
fn static_runs_in_process_in_every_version() {
    let tmp = TempDir::new("exec-self-static");
    let path = self_farm(&tmp);
    for v in version::ALL {
        let conf = json!({"cniVersion": v, "name": "net",
            "ipam": {"type": "static", "addresses": [{"address": "10.5.0.9/24", "gateway": "10.5.0.1"}],
                     "routes": [{"dst": "0.0.0.0/0"}]}});
        let args = cmd_args(&conf, &path);
        let before = in_process_calls();
        let r = delegate_add("static", &args).unwrap_or_else(|e| panic!("{v}: {e:#}"));
        assert_eq!(in_process_calls(), before + 1);
        assert_eq!(r.ips[0].address.to_string(), "10.5.0.9/24", "{v}");
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.5.0.1", "{v}");
        assert_eq!(r.routes.len(), 1, "{v}");
    }
}
