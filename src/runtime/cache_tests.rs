//! Cache format compatibility with libcni (a hand-written libcni file in `testdata/cache/`),
//! tolerant reads, atomic writes and attachment listing.

use super::*;
use crate::runtime::test_support::{TempDir, testdata};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

const SAMPLE_CID: &str = "cnitool-7d2a1f0e9c3b5a4d6e8f";

fn sample_bytes() -> Vec<u8> {
    std::fs::read(testdata(&format!("cache/results/sample-{SAMPLE_CID}-eth0"))).unwrap()
}

#[test]
fn libcni_file_parses_into_its_fields() {
    let e = CacheEntry::from_bytes(&sample_bytes()).unwrap();
    assert_eq!(e.kind, KIND_V1);
    assert_eq!(
        (e.container_id.as_str(), e.if_name.as_str()),
        (SAMPLE_CID, "eth0")
    );
    assert_eq!(
        (e.network_name.as_str(), e.netns.as_str()),
        ("sample", "/var/run/netns/sample")
    );
    assert_eq!(
        e.config,
        std::fs::read(testdata("cache/sample.conflist")).unwrap()
    );
    assert_eq!(
        e.cni_args,
        vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web&db".into())
        ]
    );
    assert_eq!(e.capability_args["portMappings"][0]["hostPort"], 8080);
    assert_eq!(e.result["ips"][0]["address"], "10.88.0.5/16");
}

#[test]
fn our_encoding_is_byte_identical_to_libcni() {
    let sample = sample_bytes();
    let e = CacheEntry::from_bytes(&sample).unwrap();
    assert_eq!(
        String::from_utf8(e.to_bytes()).unwrap(),
        String::from_utf8(sample.clone()).unwrap()
    );
    let d = TempDir::new("cache-compat");
    let cache = ResultCache::new(d.path());
    cache.write(&e).unwrap();
    let written =
        std::fs::read(d.path().join(format!("results/sample-{SAMPLE_CID}-eth0"))).unwrap();
    assert_eq!(written, sample);
}

#[test]
fn omitempty_fields_are_left_out() {
    let e = CacheEntry {
        kind: KIND_V1.into(),
        container_id: "c".into(),
        config: b"{}".to_vec(),
        if_name: "eth0".into(),
        network_name: "n".into(),
        ..CacheEntry::default()
    };
    assert_eq!(
        String::from_utf8(e.to_bytes()).unwrap(),
        r#"{"kind":"cniCacheV1","containerId":"c","config":"e30=","ifName":"eth0","networkName":"n"}"#
    );
    let nulls = br#"{"kind":"cniCacheV1","containerId":"c","config":null,"ifName":"eth0","networkName":"n","cniArgs":null,"capabilityArgs":null,"result":null}"#;
    let back = CacheEntry::from_bytes(nulls).unwrap();
    assert_eq!(
        back,
        CacheEntry {
            config: Vec::new(),
            ..e
        }
    );
}

#[test]
fn go_html_escaping_is_reproduced() {
    let e = CacheEntry {
        kind: KIND_V1.into(),
        netns: "<a>&\u{2028}\"\n".into(),
        ..CacheEntry::default()
    };
    let text = String::from_utf8(e.to_bytes()).unwrap();
    assert!(
        text.contains(r#""netns":"\u003ca\u003e\u0026\u2028\"\n""#),
        "{text}"
    );
    assert_eq!(
        CacheEntry::from_bytes(text.as_bytes()).unwrap().netns,
        e.netns
    );
}

#[test]
fn read_result_takes_v1_and_legacy_files() {
    let cache = ResultCache::new(testdata("cache"));
    let r = cache
        .read_result("sample", SAMPLE_CID, "eth0")
        .unwrap()
        .unwrap();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][2]["sandbox"], "/var/run/netns/sample");
    let legacy = cache.read_result("legacy", "abc", "eth0").unwrap().unwrap();
    assert_eq!(legacy["ips"][0]["version"], "4");
    assert_eq!(cache.read_result("missing", "abc", "eth0").unwrap(), None);
    assert_eq!(
        cache.read_result("other", "abc", "net1").unwrap(),
        None,
        "v1 without result"
    );
}

#[test]
fn empty_and_corrupt_files_are_errors_not_results() {
    let d = TempDir::new("cache-corrupt");
    let cache = ResultCache::new(d.path());
    d.write("results/n-c-eth0", "");
    let e = cache.read_result("n", "c", "eth0").unwrap_err();
    assert!(e.to_string().contains("is empty"), "{e}");
    d.write("results/n-c-eth0", "{\"kind\":\"cniCacheV1\",\"res");
    assert!(
        cache
            .read_result("n", "c", "eth0")
            .unwrap_err()
            .to_string()
            .contains("corrupt")
    );
    d.write("results/n-c-eth0", "[1]");
    assert!(cache.read_result("n", "c", "eth0").is_err());
}

#[test]
fn read_entry_checks_the_kind() {
    let cache = ResultCache::new(testdata("cache"));
    let e = cache
        .read_entry("sample", SAMPLE_CID, "eth0")
        .unwrap()
        .unwrap();
    assert_eq!(e.netns, "/var/run/netns/sample");
    let err = cache.read_entry("future", "abc", "eth1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "read cached network \"future\" config has wrong kind: cniCacheV2"
    );
    assert!(cache.read_entry("legacy", "abc", "eth0").is_err());
    assert_eq!(cache.read_entry("nothing", "abc", "eth0").unwrap(), None);
}

#[test]
fn write_is_atomic_private_and_replaces_whole_files() {
    let d = TempDir::new("cache-write");
    let cache = ResultCache::new(d.path().join("deep/cni"));
    let mut e = CacheEntry {
        kind: KIND_V1.into(),
        container_id: "c1".into(),
        if_name: "eth0".into(),
        network_name: "n".into(),
        result: json!({"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]})
            .as_object()
            .unwrap()
            .clone(),
        ..CacheEntry::default()
    };
    cache.write(&e).unwrap();
    e.result = json!({"cniVersion":"1.1.0"}).as_object().unwrap().clone();
    cache.write(&e).unwrap();
    let dir = cache.results_dir();
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["n-c1-eth0"], "no temp file is left behind");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let file = dir.join("n-c1-eth0");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        cache.read_result("n", "c1", "eth0").unwrap().unwrap(),
        json!({"cniVersion":"1.1.0"})
    );
    cache.remove("n", "c1", "eth0").unwrap();
    cache.remove("n", "c1", "eth0").unwrap();
    assert!(!file.exists());
}

#[test]
fn a_failed_write_leaves_no_temp_file() {
    let d = TempDir::new("cache-fail");
    let cache = ResultCache::new(d.path());
    // A directory where the file should go makes the rename fail.
    std::fs::create_dir_all(d.path().join("results/n-c-eth0/x")).unwrap();
    let e = CacheEntry {
        kind: KIND_V1.into(),
        container_id: "c".into(),
        if_name: "eth0".into(),
        network_name: "n".into(),
        ..CacheEntry::default()
    };
    assert!(cache.write(&e).is_err());
    let names: Vec<_> = std::fs::read_dir(cache.results_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["n-c-eth0"]);
}

#[test]
fn path_parts_must_be_plain_names() {
    let cache = ResultCache::default();
    assert_eq!(
        cache.path("n", "c", "eth0").unwrap(),
        PathBuf::from("/var/lib/cni/results/n-c-eth0")
    );
    for (n, c, i) in [
        ("", "c", "eth0"),
        ("n", "", "eth0"),
        ("n", "c", ""),
        ("n", "../x", "eth0"),
        ("n", "c", ".."),
    ] {
        let e = cache.path(n, c, i).unwrap_err().to_string();
        assert!(
            e.starts_with("cache file path requires network name"),
            "{e}"
        );
    }
}

#[test]
fn attachments_are_listed_as_libcni_does() {
    let cache = ResultCache::new(testdata("cache"));
    let all: Vec<(String, String, String)> = cache
        .attachments("")
        .unwrap()
        .into_iter()
        .map(|e| (e.network_name, e.container_id, e.if_name))
        .collect();
    assert_eq!(
        all,
        vec![
            ("other".into(), "abc".into(), "net1".into()),
            ("sample".into(), SAMPLE_CID.into(), "eth0".into()),
        ],
        "sorted; legacy, non-v1 and nameless files skipped"
    );
    let abc = cache.attachments("abc").unwrap();
    assert_eq!(abc.len(), 1);
    assert_eq!(abc[0].netns, "/var/run/netns/x");
    assert_eq!(abc[0].config, b"{}");
    assert!(cache.attachments("zzz").unwrap().is_empty());
    assert_eq!(cache.cached_attachments("sample").unwrap().len(), 1);
    assert!(
        ResultCache::new("/nonexistent/cni")
            .attachments("")
            .unwrap()
            .is_empty()
    );
}

/// A writer killed between writing its temporary file and renaming it leaves
/// `.<name>.tmp-<pid>-<n>`; the next write or the DEL of that attachment removes it, and a
/// live writer's file stays.
#[test]
fn orphaned_temp_files_are_swept_by_write_and_remove() {
    let tmp = TempDir::new("cache-orphans");
    let cache = ResultCache::new(tmp.path());
    let entry = CacheEntry::from_bytes(&sample_bytes()).unwrap();
    cache.write(&entry).unwrap();
    let results = cache.results_dir();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let name = format!("sample-{SAMPLE_CID}-eth0");
    let orphan = results.join(format!(".{name}.tmp-{dead}-0"));
    let live = results.join(format!(".{name}.tmp-{}-99", std::process::id()));
    std::fs::write(&orphan, b"{").unwrap();
    std::fs::write(&live, b"{").unwrap();
    cache.write(&entry).unwrap();
    assert!(!orphan.exists() && live.exists());
    std::fs::write(&orphan, b"{").unwrap();
    std::fs::remove_file(&live).unwrap();
    cache.remove("sample", SAMPLE_CID, "eth0").unwrap();
    let left: Vec<_> = std::fs::read_dir(&results).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
