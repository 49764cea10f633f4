//! IPAM delegation end to end (FEATURES.md 1.7): this test process plays the main plugin (as
//! bridge or ptp will) and hands its IPAM work to the installed host-local and static with
//! `cni_multi::exec`, executed from the farm as from a runtime's `CNI_PATH`. In every spec
//! version the delegated result and store equal those of direct runs, and failures come back
//! with the applet's code and message. The in-process fast path (a `CNI_PATH` entry that is
//! this very executable, which links the same applets) prints the installed binary's bytes.

use crate::host_local::{NET, conf, ours, with_prev};
use crate::support::ipam::snapshot;
use crate::support::{Cni, Farm, Outcome, Pair, TempDir, require_root};
use cni_multi::error::{CniError, cni_error_of};
use cni_multi::exec::{self, Invocation, delegate, delegate_add};
use cni_multi::skel::{CmdArgs, Command, Env};
use cni_multi::types::Version;
use cni_multi::types::args::CniArgs;
use cni_multi::types::version::ALL;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// What the main plugin received from the runtime for `conf`, with `CNI_PATH` = `path`.
fn main_plugin_args(pair: &Pair, path: &Path, conf: &Value) -> CmdArgs {
    container_args(pair, path, conf, "deleg")
}

/// [`main_plugin_args`] for container `id`.
fn container_args(pair: &Pair, path: &Path, conf: &Value, id: &str) -> CmdArgs {
    let mut env = Env::new();
    for (k, v) in [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", pair.container.path().to_str().unwrap()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", path.to_str().unwrap()),
    ] {
        env.insert(k.into(), v.into());
    }
    CmdArgs {
        command: Command::Add,
        container_id: id.into(),
        netns: env["CNI_NETNS"].clone(),
        ifname: "eth0".into(),
        args: CniArgs::default(),
        path: vec![path.to_path_buf()],
        stdin: serde_json::to_vec(conf).unwrap(),
        version: conf["cniVersion"].as_str().unwrap().into(),
        env,
    }
}

/// The same call made directly by the runtime.
fn direct(program: Cni, pair: &Pair, verb: &str, c: &Value) -> Outcome {
    program
        .command(verb)
        .container_id("deleg")
        .netns(pair.container.path())
        .ifname("eth0")
        .config(c)
        .run_in(&pair.host)
}

fn err_of(e: &anyhow::Error) -> CniError {
    cni_error_of(e)
        .unwrap_or_else(|| panic!("no CniError in {e:#}"))
        .clone()
}

fn static_conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "stnet", "type": "ptp", "ipam": {"type": "static",
        "addresses": [{"address": "10.90.0.5/24", "gateway": "10.90.0.1"},
                      {"address": "2001:db8:90::5/64"}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.90.0.53"]}}})
}

/// ADD, CHECK (0.4.0+), DEL and DEL again, delegated and direct, in every version.
#[test]
fn delegated_calls_equal_direct_runs_in_every_version() {
    if !require_root() {
        return;
    }
    let farm = Farm::shared();
    for name in ["host-local", "static"] {
        let found = farm.applet(name);
        assert!(
            exec::in_process_plugin(name, &found).is_none(),
            "must be executed"
        );
    }
    let pair = Pair::new("deleg-versions");
    for (n, v) in (1..).zip(ALL) {
        let tmp = TempDir::new(&format!("deleg-{v}"));
        let ipam = json!({"ranges": [[{"subnet": format!("10.91.{n}.0/24")}],
                                     [{"subnet": format!("2001:db8:91:{n}::/64")}]],
                          "routes": [{"dst": "0.0.0.0/0"}]});
        let (a, b) = (tmp.join("delegated"), tmp.join("direct"));
        let hl = [conf(v, &a, ipam.clone()), conf(v, &b, ipam)];
        let st = [static_conf(v), static_conf(v)];
        for (name, [cd, cr]) in [("host-local", hl), ("static", st)] {
            let plugin = Cni::new(farm, name);
            let args = main_plugin_args(&pair, farm.dir(), &cd);
            let got = delegate_add(name, &args).unwrap_or_else(|e| panic!("{name} {v}: {e:#}"));
            let want = direct(plugin.clone(), &pair, "ADD", &cr);
            assert_eq!(&got.to_value(v).unwrap(), want.result(), "{name} ADD {v}");
            assert_eq!(snapshot(&a.join(NET)), snapshot(&b.join(NET)), "{v}");
            if Version::parse(v).unwrap() >= Version::V0_4_0 {
                let prev = main_plugin_args(&pair, farm.dir(), &with_prev(&cd, want.result()));
                delegate(Command::Check, name, &prev).unwrap_or_else(|e| panic!("{e:#}"));
            }
            for _ in 0..2 {
                delegate(Command::Del, name, &args).unwrap_or_else(|e| panic!("{e:#}"));
                direct(plugin.clone(), &pair, "DEL", &cr).ok();
                assert_eq!(snapshot(&a.join(NET)), snapshot(&b.join(NET)), "{v}");
            }
        }
        assert_eq!(
            snapshot(&a.join(NET)).len(),
            3,
            "last_reserved_ip.{{0,1}} and lock"
        );
    }
}

#[test]
fn delegated_failures_carry_the_applets_code_and_message() {
    if !require_root() {
        return;
    }
    let farm = Farm::shared();
    let pair = Pair::new("deleg-errors");
    let tmp = TempDir::new("deleg-errors");
    let mut c = conf("1.1.0", tmp.path(), json!({"subnet": "10.92.0.0/30"}));
    let args = |c: &Value| main_plugin_args(&pair, farm.dir(), c);
    delegate_add("host-local", &args(&c)).unwrap();
    let e = delegate_add(
        "host-local",
        &container_args(&pair, farm.dir(), &c, "other"),
    );
    let e = err_of(&e.unwrap_err());
    assert_eq!(e.code, 999);
    let third = crate::host_local::call(ours(), &pair, "ADD", "third", &c);
    assert_eq!(third.expect_error(999)["msg"], e.msg.as_str(), "as direct");
    assert_eq!(
        e.msg,
        "failed to allocate for range 0: no IP addresses available in range set: 10.92.0.1-10.92.0.2"
    );
    let e = err_of(&delegate(Command::Status, "host-local", &args(&c)).unwrap_err());
    assert_eq!(e.code, 50);
    assert!(
        e.msg
            .starts_with("no IP addresses available in range set ipam.subnet"),
        "{}",
        e.msg
    );

    c["cni.dev/valid-attachments"] = json!([]);
    delegate(Command::Gc, "host-local", &args(&c)).unwrap();
    let keys: Vec<String> = snapshot(&tmp.join(NET)).into_keys().collect();
    assert_eq!(keys, ["last_reserved_ip.0", "lock"], "GC freed everything");
    delegate(Command::Status, "host-local", &args(&c)).unwrap();

    let bad = conf("1.0.0", tmp.path(), json!({"subnet": "10.92.0.0/33"}));
    let e = err_of(&delegate_add("host-local", &args(&bad)).unwrap_err());
    assert_eq!(e.code, 7);
    assert!(
        e.msg.contains("ipam.subnet: invalid CIDR \"10.92.0.0/33\""),
        "{}",
        e.msg
    );
    let e = err_of(&delegate_add("no-such-ipam", &args(&c)).unwrap_err());
    assert_eq!(e.code, 7);
    assert!(
        e.msg.starts_with("failed to find plugin \"no-such-ipam\""),
        "{}",
        e.msg
    );
}

/// Set in the env of fast-path calls: this test binary, executed by mistake, exits at once.
const CHILD_MARK: &str = "CNI_MULTI_E2E_DELEGATE_CHILD";

/// A `CNI_PATH` directory whose `host-local` and `static` are this test binary.
fn self_path(tmp: &TempDir) -> PathBuf {
    if std::env::var_os(CHILD_MARK).is_some() {
        eprintln!("e2e: this test binary was executed as a plugin; the fast path is broken");
        std::process::exit(70);
    }
    let dir = tmp.join("self");
    std::fs::create_dir(&dir).unwrap();
    for name in ["host-local", "static"] {
        std::os::unix::fs::symlink(std::env::current_exe().unwrap(), dir.join(name)).unwrap();
        assert!(
            exec::in_process_plugin(name, &dir.join(name)).is_some(),
            "{name}"
        );
    }
    dir
}

/// `exec::invoke` of `name` found in `path`: stdout, or the error.
fn invoke(name: &str, args: &CmdArgs, path: &Path) -> Result<Vec<u8>, CniError> {
    let mut env = args.env.clone();
    env.insert(CHILD_MARK.into(), "1".into());
    let path = [path.to_path_buf()];
    exec::invoke(&Invocation {
        plugin_type: name,
        path: &path,
        env,
        stdin: &args.stdin,
    })
    .map_err(|e| err_of(&e))
}

#[test]
fn in_process_path_prints_the_installed_binarys_bytes() {
    if !require_root() {
        return;
    }
    let farm = Farm::shared();
    let pair = Pair::new("deleg-self");
    let tmp = TempDir::new("deleg-self");
    let me = self_path(&tmp);
    for v in ALL {
        let ipam = json!({"subnet": "10.93.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]});
        let (a, b) = (tmp.join(format!("in-{v}")), tmp.join(format!("ex-{v}")));
        let (ca, cb) = (conf(v, &a, ipam.clone()), conf(v, &b, ipam));
        let fast = invoke("host-local", &main_plugin_args(&pair, &me, &ca), &me).unwrap();
        let slow = invoke(
            "host-local",
            &main_plugin_args(&pair, farm.dir(), &cb),
            farm.dir(),
        );
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow.unwrap()).unwrap()
        );
        assert_eq!(snapshot(&a.join(NET)), snapshot(&b.join(NET)), "{v}");
        let sc = static_conf(v);
        let fast = invoke("static", &main_plugin_args(&pair, &me, &sc), &me);
        let slow = invoke(
            "static",
            &main_plugin_args(&pair, farm.dir(), &sc),
            farm.dir(),
        );
        assert_eq!(fast.unwrap(), slow.unwrap(), "static {v}");
    }
    let bad = conf(
        "0.4.0",
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.94.0.0/24",
        "rangeStart": "10.95.0.1"}]]}),
    );
    let fast = invoke("host-local", &main_plugin_args(&pair, &me, &bad), &me).unwrap_err();
    let slow = invoke(
        "host-local",
        &main_plugin_args(&pair, farm.dir(), &bad),
        farm.dir(),
    );
    assert_eq!(fast, slow.unwrap_err());
    assert_eq!(fast.code, 7);
    assert!(
        fast.msg
            .starts_with("ipam.ranges[0][0].rangeStart: rangeStart 10.95.0.1 not in")
    );
}
