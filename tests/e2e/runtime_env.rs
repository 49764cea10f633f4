//! What plugins get from the runtime tool and from each other, end to end (FEATURES.md 2.2,
//! 1.7): `net` and `cnitool` pass their whole environment on (HOME, CNI_NETNS_OVERRIDE, ...),
//! with the six `CNI_*` values of the call winning over stale ones in the caller's
//! environment, recorded by the foreign `fake-ipam` plugin; and a plugin that delegates to
//! itself, in process (`ptp` with ipam `ptp`) or through another program (`ptp` with ipam
//! `to-ptp`, a script that runs `ptp` again), gets a code 7 error naming the loop instead of
//! recursing until the stack or the process table runs out.

use crate::runtime::{Rig, cnitool_id, testdata};
use crate::support::{Cni, Farm, Outcome, Pair, require_root};
use std::collections::BTreeMap;

/// A list with one plugin, `fake-ipam`, recording its environment under `<dir>/rec`.
fn recording_list(rig: &Rig) -> String {
    let prefix = rig.dir.join("rec");
    format!(
        r#"{{"cniVersion":"1.0.0","name":"rtenv","plugins":[{{"type":"fake-ipam","fake":"record:{}"}}]}}"#,
        prefix.display()
    )
}

/// The environment `fake-ipam` recorded last.
fn recorded_env(rig: &Rig) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(rig.dir.join("rec.env")).expect("fake-ipam's env record");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_tool_passes_its_environment_with_its_own_cni_values_winning() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("env", &[]).also_path(&testdata("plugins"));
    rig.dir.write("conf/rtenv.conflist", recording_list(&rig));
    let ns = rig.netns();
    for tool in ["net", "cnitool"] {
        let out = rig
            .tool(tool, &["add", "rtenv", &ns])
            .env("HOME", "/home/rtenv")
            .env("CNI_NETNS_OVERRIDE", "1")
            .env("XTABLES_LOCKFILE", "/run/rtenv.lock")
            .env("CNI_COMMAND", "DEL")
            .env("CNI_CONTAINERID", "stale")
            .env("CNI_NETNS", "/stale")
            .run_in(&rig.pair.host);
        out.ok();
        let env = recorded_env(&rig);
        let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("<unset>");
        assert_eq!(get("HOME"), "/home/rtenv", "{tool}: {env:#?}");
        assert_eq!(get("CNI_NETNS_OVERRIDE"), "1", "{tool}: {env:#?}");
        assert_eq!(get("XTABLES_LOCKFILE"), "/run/rtenv.lock", "{tool}");
        assert_eq!(get("CNI_COMMAND"), "ADD", "{tool}: {env:#?}");
        assert_eq!(get("CNI_CONTAINERID"), cnitool_id(&ns), "{tool}");
        assert_eq!(get("CNI_NETNS"), ns, "{tool}");
        assert_eq!(get("CNI_IFNAME"), "eth0", "{tool}");
        rig.tool(tool, &["del", "rtenv", &ns])
            .run_in(&rig.pair.host)
            .ok();
    }
}

/// ADD of a ptp whose ipam is `ipam`, with `CNI_PATH` = the farm, then `testdata/plugins`.
fn add_ptp_with_ipam(label: &str, ipam: &str) -> (Pair, Outcome) {
    let pair = Pair::new(label);
    let farm = Farm::shared();
    let path = format!("{}:{}", farm.dir().display(), testdata("plugins").display());
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"loop","type":"ptp","ipam":{{"type":"{ipam}"}}}}"#
    );
    let out = Cni::new(farm, "ptp")
        .path(path)
        .command("ADD")
        .container_id("looppod")
        .netns(pair.container.path())
        .ifname("eth0")
        .config(conf)
        .run_in(&pair.host);
    (pair, out)
}

/// Panics unless `out` is a code 7 error whose message names the delegation loop of `types`.
fn assert_loop_refused(out: &Outcome, types: &str) {
    let err = out.expect_error(7);
    let msg = format!("{} {}", err["msg"], err["details"]);
    assert!(msg.contains("delegation loop"), "{out}");
    assert!(msg.contains(types), "message lacks {types:?}:\n{out}");
}

#[test]
fn a_plugin_delegating_to_itself_in_process_is_refused() {
    if !require_root() {
        return;
    }
    let (pair, out) = add_ptp_with_ipam("loop-in", "ptp");
    assert_loop_refused(&out, "ptp");
    assert_eq!(pair.container.link_names(), ["lo"], "{out}");
}

#[test]
fn a_delegation_loop_through_another_program_is_refused() {
    if !require_root() {
        return;
    }
    let (pair, out) = add_ptp_with_ipam("loop-exec", "to-ptp");
    assert_loop_refused(&out, "to-ptp");
    assert_eq!(pair.container.link_names(), ["lo"], "{out}");
}
