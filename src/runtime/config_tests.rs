//! Loading rules of FEATURES.md 1.2 and 3.2 against the fixtures in `testdata/netconf/`.

use super::*;
use crate::runtime::test_support::{TempDir, testdata};

fn list(name: &str) -> anyhow::Result<NetworkConfigList> {
    NetworkConfigList::from_file(&testdata(&format!("netconf/lists/{name}.conflist")))
}

fn err_text(r: anyhow::Result<NetworkConfigList>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn basic_list_keeps_unknown_keys_and_reads_capabilities() {
    let l = list("ok-basic").unwrap();
    assert_eq!(
        (l.name.as_str(), l.cni_version.as_str()),
        ("basic", "1.0.0")
    );
    assert!(!l.disable_check && !l.disable_gc && !l.load_only_inlined_plugins);
    assert_eq!(l.plugins.len(), 2);
    assert_eq!(l.plugins[0].plugin_type(), "bridge");
    assert_eq!(
        l.plugins[0].raw()["x-vendor"],
        serde_json::json!({"keep": [1, 2]})
    );
    assert_eq!(l.plugins[0].raw()["ipam"]["subnet"], "10.1.0.0/16");
    let caps: Vec<&str> = l.plugins[1].capabilities().collect();
    assert_eq!(caps, vec!["portMappings"]);
    let file = std::fs::read(testdata("netconf/lists/ok-basic.conflist")).unwrap();
    assert_eq!(l.bytes, file, "the cache stores the file's own bytes");
}

#[test]
fn cni_versions_pick_the_highest_we_implement() {
    assert_eq!(list("ok-versions").unwrap().cni_version, "1.1.0");
    assert_eq!(list("ok-versions-only-list").unwrap().cni_version, "1.0.0");
    let above_only =
        br#"{"name":"n","cniVersion":"1.0.0","cniVersions":["3.0.0"],"plugins":[{"type":"x"}]}"#;
    assert_eq!(
        NetworkConfigList::from_bytes(above_only)
            .unwrap()
            .cni_version,
        "1.0.0"
    );
    let none_usable = br#"{"name":"n","cniVersions":["3.0.0"],"plugins":[{"type":"x"}]}"#;
    assert_eq!(
        NetworkConfigList::from_bytes(none_usable)
            .unwrap()
            .cni_version,
        ""
    );
    let no_list = br#"{"name":"n","cniVersion":"2.0.0","plugins":[{"type":"x"}]}"#;
    assert_eq!(
        NetworkConfigList::from_bytes(no_list).unwrap().cni_version,
        "2.0.0"
    );
}

#[test]
fn unparsable_version_entry_is_an_error() {
    let e = err_text(list("bad-version-entry"));
    assert!(
        e.contains("invalid cniVersions entry banana at index 1"),
        "{e}"
    );
    let bad_main =
        br#"{"name":"n","cniVersion":"x.y","cniVersions":["1.0.0"],"plugins":[{"type":"x"}]}"#;
    let e = err_text(NetworkConfigList::from_bytes(bad_main));
    assert!(e.contains("invalid cniVersion x.y"), "{e}");
    let not_string = br#"{"name":"n","cniVersions":["1.0.0", 1],"plugins":[{"type":"x"}]}"#;
    let e = err_text(NetworkConfigList::from_bytes(not_string));
    assert!(
        e.contains("invalid type for cniVersions index 1: number"),
        "{e}"
    );
}

#[test]
fn booleans_accept_strings_in_any_case() {
    let l = list("ok-string-bools").unwrap();
    assert!(l.disable_check && !l.disable_gc && l.load_only_inlined_plugins);
    let e = err_text(list("bad-bool-value"));
    assert!(e.contains("invalid value \"yes\" for disableCheck"), "{e}");
    let e = err_text(NetworkConfigList::from_bytes(
        br#"{"name":"n","disableGC":1,"plugins":[{"type":"x"}]}"#,
    ));
    assert!(e.contains("invalid type number for disableGC"), "{e}");
}

#[test]
fn list_shape_errors_use_the_reference_wording() {
    for (file, want) in [
        ("bad-no-name", "error parsing configuration list: no name"),
        (
            "bad-empty-plugins",
            "error parsing configuration list: no plugins in list",
        ),
        (
            "bad-plugin-no-type",
            "failed to parse plugin config 1: error parsing configuration: missing 'type'",
        ),
        (
            "bad-inlined-no-plugins",
            "`loadOnlyInlinedPlugins` is true, and no 'plugins' key",
        ),
    ] {
        let r = list(file);
        assert_eq!(crate::error::code_of(r.as_ref().unwrap_err()), 7, "{file}");
        let e = err_text(r);
        assert!(e.contains(want), "{file}: {e}");
    }
    let e = err_text(NetworkConfigList::from_bytes(
        br#"{"name":"n","plugins":{}}"#,
    ));
    assert!(e.contains("invalid 'plugins' type object"), "{e}");
    let e = err_text(NetworkConfigList::from_bytes(br#"{"name":5}"#));
    assert!(e.contains("invalid name type number"), "{e}");
}

#[test]
fn absent_plugins_come_from_the_side_directory_or_fail() {
    let no_key = NetworkConfigList::from_bytes(br#"{"name":"side","cniVersion":"1.0.0"}"#).unwrap();
    assert!(no_key.plugins.is_empty());
    let d = TempDir::new("conf-side");
    let f = d.write("x.conflist", r#"{"name":"side","cniVersion":"1.0.0"}"#);
    let e = format!("{:#}", NetworkConfigList::from_file(&f).unwrap_err());
    assert_eq!(e, "no plugin configs found");
    d.write("side/a.conf", r#"{"type":"loopback"}"#);
    let l = NetworkConfigList::from_file(&f).unwrap();
    assert_eq!(l.plugins[0].plugin_type(), "loopback");
}

#[test]
fn plugin_objects_are_type_checked() {
    assert!(PluginConf::from_bytes(br#"{"type":"x","capabilities":{"a":true}}"#).is_ok());
    for bad in [
        r#"{"type":""}"#,
        r#"{"name":"x"}"#,
        r#"{"type":7}"#,
        r#"{"type":"x","capabilities":{"a":"yes"}}"#,
        r#"[]"#,
        r#"{"type":"x""#,
    ] {
        let e = PluginConf::from_bytes(bad.as_bytes()).unwrap_err();
        assert!(
            format!("{e}").starts_with("error parsing configuration: "),
            "{bad}: {e}"
        );
    }
    let p = PluginConf::from_bytes(br#"{"type":"bridge","name":"n"}"#).unwrap();
    assert_eq!(p.describe(), r#"type="bridge" name="n""#);
    let p = PluginConf::from_bytes(br#"{"type":"bridge"}"#).unwrap();
    assert_eq!(p.describe(), r#"type="bridge""#);
}

#[test]
fn load_network_prefers_sorted_conflists_and_appends_side_plugins() {
    let dir = testdata("netconf/dir");
    let a = load_network(&dir, "a").unwrap();
    assert_eq!(
        a.plugins[0].plugin_type(),
        "bridge",
        "10-a wins over 30-a-again"
    );
    let b = load_network(&dir, "b").unwrap();
    let types: Vec<&str> = b.plugins.iter().map(PluginConf::plugin_type).collect();
    assert_eq!(
        types,
        vec!["ptp", "portmap", "tuning"],
        "side *.conf sorted, .json ignored"
    );
}

#[test]
fn load_network_falls_back_to_single_plugin_files() {
    let dir = testdata("netconf/dir");
    let c = load_network(&dir, "c").unwrap();
    assert_eq!((c.name.as_str(), c.cni_version.as_str()), ("c", "0.4.0"));
    assert_eq!(c.plugins.len(), 1);
    assert_eq!(c.plugins[0].raw()["bridge"], "c0");
    let wrapped: serde_json::Value = serde_json::from_slice(&c.bytes).unwrap();
    assert_eq!(wrapped["plugins"][0]["ipam"]["type"], "host-local");
    assert_eq!(load_network(&dir, "d").unwrap().cni_version, "0.3.1");
}

#[test]
fn not_found_and_no_configs_are_told_apart() {
    let dir = testdata("netconf/dir");
    let e = load_network(&dir, "zzz").unwrap_err();
    assert_eq!(
        e.downcast_ref::<LoadError>(),
        Some(&LoadError::NotFound {
            dir: dir.clone(),
            name: "zzz".into()
        })
    );
    assert_eq!(
        e.to_string(),
        format!(
            "no net configuration with name \"zzz\" in {}",
            dir.display()
        )
    );
    let empty = TempDir::new("conf-empty");
    let e = load_network(empty.path(), "x").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("no net configurations found in {}", empty.path().display())
    );
    let missing = empty.path().join("nope");
    assert!(matches!(
        load_network(&missing, "x")
            .unwrap_err()
            .downcast_ref::<LoadError>(),
        Some(LoadError::NoConfigsFound { .. })
    ));
    // Conflists only, none matching: NotFound, not NoConfigsFound.
    let only_lists = TempDir::new("conf-lists");
    only_lists.write("a.conflist", r#"{"name":"a","plugins":[{"type":"x"}]}"#);
    assert!(matches!(
        load_network(only_lists.path(), "b")
            .unwrap_err()
            .downcast_ref::<LoadError>(),
        Some(LoadError::NotFound { .. })
    ));
}

#[test]
fn a_broken_conflist_aborts_the_search_even_if_a_later_one_matches() {
    let d = TempDir::new("conf-broken");
    d.write("00-broken.conflist", r#"{"name":"#);
    d.write(
        "10-good.conflist",
        r#"{"name":"good","plugins":[{"type":"x"}]}"#,
    );
    let e = load_network(d.path(), "good").unwrap_err();
    assert!(
        format!("{e:#}").starts_with("error parsing configuration list"),
        "{e:#}"
    );
    // A broken file sorted after the match is never read.
    let d2 = TempDir::new("conf-broken-late");
    d2.write(
        "10-good.conflist",
        r#"{"name":"good","plugins":[{"type":"x"}]}"#,
    );
    d2.write("20-broken.conflist", r#"{"name":"#);
    assert_eq!(load_network(d2.path(), "good").unwrap().name, "good");
    assert!(load_network(d2.path(), "other").is_err());
}

#[test]
fn conf_files_match_extensions_exactly_and_skip_directories() {
    let d = TempDir::new("conf-files");
    for f in [
        "b.conf",
        "a.conf",
        "c.conf.bak",
        "d.json",
        "e.conflist",
        "noext",
    ] {
        d.write(f, "{}");
    }
    std::fs::create_dir(d.path().join("dir.conf")).unwrap();
    let names: Vec<String> = conf_files(d.path(), &[".conf", ".json"])
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["a.conf", "b.conf", "d.json"]);
}
