//! The libcni operations against `testdata/plugins/fake`, a shell plugin that logs every call
//! (verb, env, stdin) and answers as its config says, run through a temp `CNI_PATH`.

use super::*;
use crate::runtime::test_support::{TempDir, testdata};
use serde_json::json;

struct Rig {
    dir: TempDir,
    cni: CniConfig,
    log: PathBuf,
}

/// One logged plugin call.
#[derive(Debug)]
struct Call {
    tag: String,
    cmd: String,
    cid: String,
    netns: String,
    ifname: String,
    args: String,
    path: String,
    conf: Value,
}

fn rig() -> Rig {
    let dir = TempDir::new("ops");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(testdata("plugins/fake"), bin.join("fake")).unwrap();
    let mut cni = CniConfig::new(vec![bin], ResultCache::new(dir.path().join("cache")));
    if let Ok(path) = std::env::var("PATH") {
        cni.env.insert("PATH".into(), path);
    }
    Rig {
        log: dir.path().join("calls.log"),
        dir,
        cni,
    }
}

impl Rig {
    /// A result file for plugin `tag` to print on ADD.
    fn result_file(&self, tag: &str, result: Value) -> String {
        let p = self
            .dir
            .write(&format!("results/{tag}.json"), &result.to_string());
        p.display().to_string()
    }

    /// A list whose plugins are `fake` instances logging to this rig's log.
    fn list(&self, name: &str, version: &str, plugins: Value, extra: Value) -> NetworkConfigList {
        let mut plugins = plugins;
        for p in plugins.as_array_mut().unwrap() {
            p["type"] = p.get("type").cloned().unwrap_or(json!("fake"));
            p["logFile"] = json!(self.log.display().to_string());
        }
        let mut l = json!({"name": name, "cniVersion": version, "plugins": plugins});
        for (k, v) in extra.as_object().unwrap() {
            l[k] = v.clone();
        }
        NetworkConfigList::from_bytes(&serde_json::to_vec(&l).unwrap()).unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(8, '|').collect();
                Call {
                    tag: f[0].into(),
                    cmd: f[1].into(),
                    cid: f[2].into(),
                    netns: f[3].into(),
                    ifname: f[4].into(),
                    args: f[5].into(),
                    path: f[6].into(),
                    conf: serde_json::from_str(f[7]).unwrap(),
                }
            })
            .collect()
    }

    fn cache_file(&self, net: &str, cid: &str, ifname: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("cache/results/{net}-{cid}-{ifname}"))
    }
}

fn seq(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {}", c.cmd, c.tag))
        .collect()
}

fn rt(cid: &str, ifname: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: cid.into(),
        netns: format!("/var/run/netns/{cid}"),
        ifname: ifname.into(),
        args: vec![("IgnoreUnknown".into(), "1".into()), ("K8S_POD_NAME".into(), "web".into())],
        capability_args: json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"mac":"c2:11:22:33:44:55"})
            .as_object()
            .unwrap()
            .clone(),
    }
}

/// Three chained plugins a, b, c with distinct results; a asks for portMappings.
fn abc(r: &Rig, version: &str, fail: Value) -> (NetworkConfigList, [Value; 3]) {
    let results = ["a", "b", "c"]
        .map(|t| json!({"cniVersion": version, "interfaces": [{"name": format!("if-{t}")}]}));
    let mut plugins = json!([
        {"tag":"a","cniVersion":"0.3.1","capabilities":{"portMappings":true,"mac":false},"resultFile":r.result_file("a", results[0].clone())},
        {"tag":"b","name":"bee","resultFile":r.result_file("b", results[1].clone())},
        {"tag":"c","resultFile":r.result_file("c", results[2].clone())},
    ]);
    for (i, f) in fail.as_array().unwrap().iter().enumerate() {
        for (k, v) in f.as_object().unwrap() {
            plugins[i][k] = v.clone();
        }
    }
    (r.list("net", version, plugins, json!({})), results)
}

fn no_fail() -> Value {
    json!([{}, {}, {}])
}

#[test]
fn add_runs_in_order_chains_results_and_caches_the_final_one() {
    let r = rig();
    let (list, results) = abc(&r, "1.1.0", no_fail());
    let out = r.cni.add_network_list(&list, &rt("c1", "eth0")).unwrap();
    assert_eq!(out, results[2]);
    let calls = r.calls();
    assert_eq!(seq(&calls), ["ADD a", "ADD b", "ADD c"]);
    assert_eq!(calls[0].conf.get("prevResult"), None);
    assert_eq!(calls[1].conf["prevResult"], results[0]);
    assert_eq!(calls[2].conf["prevResult"], results[1]);
    let a = &calls[0];
    assert_eq!(
        (a.cid.as_str(), a.netns.as_str(), a.ifname.as_str()),
        ("c1", "/var/run/netns/c1", "eth0")
    );
    assert_eq!(a.args, "IgnoreUnknown=1;K8S_POD_NAME=web");
    assert_eq!(a.path, r.cni.path[0].display().to_string());
    assert_eq!(
        (a.conf["name"].as_str(), a.conf["cniVersion"].as_str()),
        (Some("net"), Some("1.1.0"))
    );
    assert_eq!(
        a.conf["runtimeConfig"],
        json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
    );
    assert_eq!(calls[1].conf.get("runtimeConfig"), None);
    let entry = r
        .cni
        .cache
        .read_entry("net", "c1", "eth0")
        .unwrap()
        .unwrap();
    assert_eq!(Value::Object(entry.result), results[2]);
    assert_eq!(entry.config, list.bytes);
    assert_eq!(entry.netns, "/var/run/netns/c1");
    assert_eq!(entry.cni_args.len(), 2);
    assert_eq!(entry.capability_args["mac"], "c2:11:22:33:44:55");
}

#[test]
fn del_runs_in_reverse_with_the_cached_result_then_forgets_it() {
    let r = rig();
    let (list, results) = abc(&r, "1.0.0", no_fail());
    let rt = rt("c1", "eth0");
    r.cni.add_network_list(&list, &rt).unwrap();
    r.calls();
    r.cni.del_network_list(&list, &rt).unwrap();
    let calls = r.calls();
    assert_eq!(seq(&calls), ["DEL c", "DEL b", "DEL a"]);
    assert!(calls.iter().all(|c| c.conf["prevResult"] == results[2]));
    assert_eq!(
        calls[2].conf["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(!r.cache_file("net", "c1", "eth0").exists());
    r.cni.del_network_list(&list, &rt).unwrap();
    let again = r.calls();
    assert_eq!(seq(&again), ["DEL c", "DEL b", "DEL a"]);
    assert!(again.iter().all(|c| c.conf.get("prevResult").is_none()));
}

#[test]
fn del_failure_stops_keeps_the_cache_and_the_plugins_code() {
    let r = rig();
    let (list, _) = abc(&r, "1.0.0", json!([{}, {"failOn":"DEL","failCode":11}, {}]));
    let rt = rt("c1", "eth0");
    r.cni.add_network_list(&list, &rt).unwrap();
    r.calls();
    let e = r.cni.del_network_list(&list, &rt).unwrap_err();
    assert_eq!(code_of(&e), 11);
    assert_eq!(
        format!("{e:#}"),
        r#"plugin type="fake" name="bee" failed (delete): fake b failed"#
    );
    assert_eq!(seq(&r.calls()), ["DEL c", "DEL b"]);
    assert!(
        r.cache_file("net", "c1", "eth0").exists(),
        "kept for a retry"
    );
}

#[test]
fn failed_add_undoes_the_plugins_before_it() {
    let r = rig();
    let (list, results) = abc(&r, "1.1.0", json!([{}, {}, {"failOn":"ADD","failCode":7}]));
    let e = r
        .cni
        .add_network_list(&list, &rt("c1", "eth0"))
        .unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert_eq!(
        format!("{e:#}"),
        r#"plugin type="fake" failed (add): fake c failed"#
    );
    let calls = r.calls();
    assert_eq!(seq(&calls), ["ADD a", "ADD b", "ADD c", "DEL b", "DEL a"]);
    assert_eq!(calls[3].conf["prevResult"], results[1]);
    assert!(!r.cache_file("net", "c1", "eth0").exists());
}

#[test]
fn a_failing_undo_is_reported_and_does_not_stop_the_others() {
    let r = rig();
    let (list, _) = abc(
        &r,
        "1.1.0",
        json!([{}, {"failOn":"DEL","failCode":5}, {"failOn":"ADD","failCode":7}]),
    );
    let e = r
        .cni
        .add_network_list(&list, &rt("c1", "eth0"))
        .unwrap_err();
    assert_eq!(code_of(&e), 7, "the ADD failure's code");
    let text = format!("{e:#}");
    assert!(
        text.contains("fake c failed; undoing the earlier plugins also failed: "),
        "{text}"
    );
    assert!(
        text.contains(r#"plugin type="fake" name="bee" failed (delete): fake b failed"#),
        "{text}"
    );
    assert_eq!(
        seq(&r.calls()),
        ["ADD a", "ADD b", "ADD c", "DEL b", "DEL a"]
    );
}

#[test]
fn a_result_without_version_gets_the_lists_and_garbage_is_code_6() {
    let r = rig();
    let list = r.list(
        "bare",
        "1.0.0",
        json!([{"tag":"x"}, {"tag":"y"}]),
        json!({}),
    );
    let out = r.cni.add_network_list(&list, &rt("c1", "eth0")).unwrap();
    assert_eq!(out, json!({"cniVersion":"1.0.0"}));
    assert_eq!(
        r.calls()[1].conf["prevResult"],
        json!({"cniVersion":"1.0.0"})
    );
    let junk = r.result_file("junk", json!("just a string"));
    let list = r.list(
        "junk",
        "1.0.0",
        json!([{"tag":"x","resultFile":junk}]),
        json!({}),
    );
    let e = r
        .cni
        .add_network_list(&list, &rt("c1", "eth0"))
        .unwrap_err();
    assert_eq!(code_of(&e), 6, "{e:#}");
}

#[test]
fn missing_plugin_and_bad_attachment_parameters_fail_before_anything_runs() {
    let r = rig();
    let list = r.list(
        "n",
        "1.0.0",
        json!([{"tag":"a"}, {"type":"nope"}]),
        json!({}),
    );
    let e = r
        .cni
        .add_network_list(&list, &rt("c1", "eth0"))
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.starts_with(r#"plugin type="nope" failed (add): failed to find plugin "nope""#),
        "{text}"
    );
    assert_eq!(seq(&r.calls()), ["ADD a", "DEL a"]);
    let e = r.cni.add_network_list(&list, &rt("", "eth0")).unwrap_err();
    assert_eq!(
        (code_of(&e), e.to_string()),
        (3, "missing containerID".into())
    );
    assert_eq!(
        code_of(
            &r.cni
                .del_network_list(&list, &rt("a/b", "eth0"))
                .unwrap_err()
        ),
        4
    );
    assert_eq!(
        code_of(
            &r.cni
                .add_network_list(&list, &rt("c1", "eth0:1"))
                .unwrap_err()
        ),
        4
    );
    assert!(r.calls().is_empty());
}

#[test]
fn check_uses_the_cached_result_and_returns_the_plugins_error_as_is() {
    let r = rig();
    let (list, results) = abc(
        &r,
        "0.4.0",
        json!([{}, {"failOn":"CHECK","failCode":101}, {}]),
    );
    let rt = rt("c1", "eth0");
    r.cni.add_network_list(&list, &rt).unwrap();
    r.calls();
    let e = r.cni.check_network_list(&list, &rt).unwrap_err();
    assert_eq!((code_of(&e), e.to_string()), (101, "fake b failed".into()));
    let calls = r.calls();
    assert_eq!(seq(&calls), ["CHECK a", "CHECK b"]);
    assert_eq!(calls[0].conf["prevResult"], results[2]);
    let (quiet, _) = abc(&r, "0.4.0", json!([{}, {"failOn":"CHECK"}, {}]));
    let quiet = NetworkConfigList {
        disable_check: true,
        ..quiet
    };
    r.cni.check_network_list(&quiet, &rt).unwrap();
    assert!(r.calls().is_empty());
}

#[test]
fn versions_before_0_4_0_have_no_check_and_no_prev_result_on_del() {
    let r = rig();
    let (list, _) = abc(&r, "0.3.1", no_fail());
    let rt = rt("c1", "eth0");
    r.cni.add_network_list(&list, &rt).unwrap();
    r.calls();
    let e = r.cni.check_network_list(&list, &rt).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"configuration version "0.3.1" does not support the CHECK command"#
    );
    r.cni.del_network_list(&list, &rt).unwrap();
    let calls = r.calls();
    assert_eq!(seq(&calls), ["DEL c", "DEL b", "DEL a"]);
    assert!(calls.iter().all(|c| c.conf.get("prevResult").is_none()));
    assert!(!r.cache_file("net", "c1", "eth0").exists());
    r.cni.status_network_list(&list).unwrap();
    assert!(r.calls().is_empty(), "STATUS is a no-op before 1.1.0");
}

#[test]
fn an_empty_or_corrupt_cache_never_blocks_del() {
    for junk in ["", "{\"kind\":\"cniCacheV1\",", "[]"] {
        let r = rig();
        let (list, _) = abc(&r, "1.1.0", no_fail());
        let rt = rt("c1", "eth0");
        r.cni.add_network_list(&list, &rt).unwrap();
        r.calls();
        std::fs::write(r.cache_file("net", "c1", "eth0"), junk).unwrap();
        let e = r.cni.check_network_list(&list, &rt).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to get network \"net\" cached result"),
            "{e}"
        );
        r.cni.del_network_list(&list, &rt).unwrap();
        let calls = r.calls();
        assert_eq!(seq(&calls), ["DEL c", "DEL b", "DEL a"], "{junk:?}");
        assert!(calls.iter().all(|c| c.conf.get("prevResult").is_none()));
        assert!(!r.cache_file("net", "c1", "eth0").exists());
    }
}

#[test]
fn two_networks_on_one_container_keep_separate_cache_entries() {
    let r = rig();
    let one = r.list("one", "1.1.0", json!([{"tag":"1","resultFile":r.result_file("1", json!({"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/24"}]}))}]), json!({}));
    let two = r.list("two", "1.1.0", json!([{"tag":"2","resultFile":r.result_file("2", json!({"cniVersion":"1.1.0","ips":[{"address":"10.2.0.2/24"}]}))}]), json!({}));
    r.cni.add_network_list(&one, &rt("c1", "eth0")).unwrap();
    r.cni.add_network_list(&two, &rt("c1", "net1")).unwrap();
    assert!(
        r.cache_file("one", "c1", "eth0").exists() && r.cache_file("two", "c1", "net1").exists()
    );
    let listed: Vec<_> = r
        .cni
        .cache
        .attachments("c1")
        .unwrap()
        .into_iter()
        .map(|e| (e.network_name, e.if_name))
        .collect();
    assert_eq!(
        listed,
        [
            ("one".to_string(), "eth0".to_string()),
            ("two".into(), "net1".into())
        ]
    );
    r.calls();
    r.cni.del_network_list(&one, &rt("c1", "eth0")).unwrap();
    assert!(
        !r.cache_file("one", "c1", "eth0").exists() && r.cache_file("two", "c1", "net1").exists()
    );
    r.cni.del_network_list(&two, &rt("c1", "net1")).unwrap();
    let calls = r.calls();
    assert_eq!(
        calls[1].conf["prevResult"]["ips"][0]["address"],
        "10.2.0.2/24"
    );
    assert_eq!(calls[1].ifname, "net1");
}

#[test]
fn gc_deletes_stale_cached_attachments_then_gcs_every_plugin() {
    let r = rig();
    let (list, _) = abc(&r, "1.1.0", no_fail());
    let other = r.list("other", "1.1.0", json!([{"tag":"o"}]), json!({}));
    for (cid, ifname) in [("keep", "eth0"), ("stale", "eth0"), ("keep", "net1")] {
        r.cni.add_network_list(&list, &rt(cid, ifname)).unwrap();
    }
    r.cni
        .add_network_list(&other, &rt("stale", "eth1"))
        .unwrap();
    r.calls();
    let valid = vec![Attachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    }];
    r.cni
        .gc_network_list(
            &list,
            Some(&GcArgs {
                valid_attachments: valid,
            }),
        )
        .unwrap();
    let calls = r.calls();
    assert_eq!(
        seq(&calls),
        [
            "DEL c", "DEL b", "DEL a", "DEL c", "DEL b", "DEL a", "GC a", "GC b", "GC c"
        ]
    );
    let stale: Vec<_> = calls[..6]
        .iter()
        .map(|c| (c.cid.as_str(), c.ifname.as_str()))
        .collect();
    assert_eq!(stale[0], ("keep", "net1"), "sorted by cache file name");
    assert_eq!(stale[3], ("stale", "eth0"));
    assert_eq!(calls[3].netns, "/var/run/netns/stale", "the cached netns");
    assert_eq!(
        calls[3].args, "IgnoreUnknown=1;K8S_POD_NAME=web",
        "the cached args"
    );
    assert_eq!(
        calls[5].conf["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    let gc = &calls[6];
    assert_eq!(
        (
            gc.cid.as_str(),
            gc.netns.as_str(),
            gc.ifname.as_str(),
            gc.args.as_str()
        ),
        ("", "", "", "")
    );
    let want = json!([{"containerID":"keep","ifname":"eth0"}]);
    assert_eq!(
        (
            &gc.conf["cni.dev/valid-attachments"],
            &gc.conf["cni.dev/attachments"]
        ),
        (&want, &want)
    );
    assert!(r.cache_file("net", "keep", "eth0").exists());
    assert!(
        !r.cache_file("net", "stale", "eth0").exists()
            && !r.cache_file("net", "keep", "net1").exists()
    );
    assert!(
        r.cache_file("other", "stale", "eth1").exists(),
        "another network's attachment"
    );
}

#[test]
fn gc_gathers_errors_and_keeps_going() {
    let r = rig();
    let (list, _) = abc(
        &r,
        "1.1.0",
        json!([{"failOn":"GC","failCode":11}, {"failOn":"DEL","failCode":5}, {}]),
    );
    r.cni.add_network_list(&list, &rt("x", "eth0")).unwrap();
    r.calls();
    let e = r.cni.gc_network_list(&list, None).unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.starts_with("2 errors: failed to delete stale attachment x eth0: "),
        "{text}"
    );
    assert!(
        text.contains("failed to GC plugin fake: fake a failed"),
        "{text}"
    );
    let calls = r.calls();
    assert_eq!(seq(&calls), ["DEL c", "DEL b", "GC a", "GC b", "GC c"]);
    assert!(
        calls[2].conf.get("cni.dev/valid-attachments").is_none(),
        "no args, no key"
    );
    assert!(
        r.cache_file("net", "x", "eth0").exists(),
        "a failed DEL keeps the cache"
    );
}

#[test]
fn gc_honours_disable_gc_and_skips_plugin_gc_before_1_1_0() {
    let r = rig();
    let (list, _) = abc(&r, "1.0.0", no_fail());
    r.cni.add_network_list(&list, &rt("x", "eth0")).unwrap();
    r.calls();
    let off = NetworkConfigList {
        disable_gc: true,
        ..list.clone()
    };
    r.cni.gc_network_list(&off, None).unwrap();
    assert!(r.calls().is_empty());
    r.cni.gc_network_list(&list, None).unwrap();
    assert_eq!(seq(&r.calls()), ["DEL c", "DEL b", "DEL a"]);
}

#[test]
fn status_stops_at_the_first_failure_with_its_code() {
    let r = rig();
    let (list, _) = abc(
        &r,
        "1.1.0",
        json!([{}, {"failOn":"STATUS","failCode":50}, {}]),
    );
    let e = r.cni.status_network_list(&list).unwrap_err();
    assert_eq!((code_of(&e), e.to_string()), (50, "fake b failed".into()));
    let calls = r.calls();
    assert_eq!(seq(&calls), ["STATUS a", "STATUS b"]);
    assert_eq!(calls[0].cid, "");
    assert_eq!(calls[0].conf.get("runtimeConfig"), None);
    let (ok, _) = abc(&r, "1.1.0", no_fail());
    r.cni.status_network_list(&ok).unwrap();
    assert_eq!(r.calls().len(), 3);
}
