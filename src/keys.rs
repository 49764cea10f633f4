//! The configuration keys an applet reads, one line each, for `APPLET --help`.
//!
//! Each applet keeps one table ([`Key`] rows: name, a sample value, one line of meaning) next to
//! its config struct and returns it from [`crate::skel::Plugin::keys`]. serde's derive offers
//! no list of the keys a struct with `#[serde(flatten)] net: NetConf` accepts, so the table is
//! held equal to the struct by a test instead: [`assert_struct_keys`] decodes a configuration
//! holding every row's sample (so each sample is valid), then encodes it back with the same
//! derive (`#[cfg_attr(test, derive(serde::Serialize))]` on the struct: test builds only) and
//! asserts that the keys serde writes, minus the common ones, are exactly the table's. Both
//! directions of serde share the rename rules, so a field added without a row (or a row without
//! a field) fails that test. IPAM applets read their keys from the `ipam` object by hand;
//! [`assert_ipam_keys`] probes their loader instead.
//!
//! Adopting it in an applet is one step: a `KEYS` table + `fn keys` in `impl Plugin` + a
//! one-line test calling [`assert_struct_keys`] (see `applets/bridge.rs`).

use crate::skel::Plugin;

/// One configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The JSON key, as written in the configuration (`isGateway`; `ipam.subnet` for the keys
    /// an IPAM applet reads inside `ipam`).
    pub name: &'static str,
    /// A valid value in JSON (`true`, `"cni0"`, `1500`): shown in `--help`, decoded by the test.
    pub sample: &'static str,
    /// What it does, one line.
    pub about: &'static str,
}

/// A [`Key`] row.
pub const fn key(name: &'static str, sample: &'static str, about: &'static str) -> Key {
    Key {
        name,
        sample,
        about,
    }
}

/// The keys every plugin configuration may carry ([`crate::types::NetConf`]).
pub const COMMON: &[Key] = &[
    key(
        "cniVersion",
        r#""1.0.0""#,
        "spec version of this configuration",
    ),
    key(
        "cniVersions",
        r#"["1.0.0","1.1.0"]"#,
        "every spec version it supports (1.1.0)",
    ),
    key("name", r#""mynet""#, "network name"),
    key("type", r#""bridge""#, "the plugin (applet) to run"),
    key(
        "capabilities",
        r#"{"portMappings":true}"#,
        "runtime capabilities to fill into runtimeConfig",
    ),
    key(
        "ipam",
        r#"{"type":"host-local"}"#,
        "IPAM section: its type names the IPAM applet",
    ),
    key(
        "dns",
        r#"{"nameservers":["10.0.0.1"]}"#,
        "DNS settings to report",
    ),
    key("args", r#"{"cni":{"ips":["10.1.0.5"]}}"#, "structured args"),
    key(
        "prevResult",
        r#"{"cniVersion":"1.0.0"}"#,
        "the previous plugin's result (chained plugins)",
    ),
    key(
        "runtimeConfig",
        r#"{"mac":"c2:11:22:33:44:55"}"#,
        "values the runtime filled in from capabilities",
    ),
    key(
        "cni.dev/valid-attachments",
        r#"[{"containerID":"c1","ifname":"eth0"}]"#,
        "GC: attachments still in use (1.1.0)",
    ),
];

/// `APPLET --help` for a plugin: what it is, its own keys one per line, the common ones.
pub fn plugin_help(name: &str, about: &str, plugin: &dyn Plugin) -> String {
    let mut s = format!(
        "{name}: {about}\n\n\
         A CNI plugin: a runtime runs it with CNI_COMMAND (ADD, DEL, CHECK, GC, STATUS, VERSION)\n\
         and the other CNI_* variables set, and the network configuration on stdin.\n\
         Spec versions: {}\n",
        plugin.versions().join(", ")
    );
    match plugin.keys() {
        None => s.push_str("\nconfiguration keys: not listed for this applet yet\n"),
        Some([]) => s.push_str("\nconfiguration keys: none of its own\n"),
        Some(own) => {
            s.push_str("\nconfiguration keys:\n");
            s.push_str(&key_lines(own));
        }
    }
    let common: Vec<&str> = COMMON.iter().map(|k| k.name).collect();
    s.push_str(&format!("\ncommon keys: {}\n", common.join(", ")));
    s
}

/// One aligned line per key: name, meaning, sample.
pub fn key_lines(keys: &[Key]) -> String {
    let w = keys.iter().map(|k| k.name.len()).max().unwrap_or(0);
    keys.iter()
        .map(|k| format!("  {:w$}  {} (e.g. {})\n", k.name, k.about, k.sample))
        .collect()
}

/// A configuration object holding the common keys a plugin needs plus every row's sample.
#[cfg(test)]
fn sample_config(keys: &[Key]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("cniVersion".into(), "1.0.0".into());
    m.insert("name".into(), "mynet".into());
    m.insert("type".into(), "sample".into());
    for k in keys {
        let v: serde_json::Value = serde_json::from_str(k.sample)
            .unwrap_or_else(|e| panic!("sample of key {} is not JSON: {e}", k.name));
        m.insert(k.name.into(), v);
    }
    m
}

/// Panics unless `keys` names exactly the keys serde reads into `T` besides the common ones,
/// and every sample decodes. `T` derives `Serialize` in test builds for this.
#[cfg(test)]
pub fn assert_struct_keys<T>(keys: &[Key])
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    use std::collections::BTreeSet;
    let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "a key is listed twice: {names:?}"
    );
    let conf = serde_json::Value::Object(sample_config(keys));
    let decoded: T = serde_json::from_value(conf.clone())
        .unwrap_or_else(|e| panic!("the samples do not decode: {e}\n{conf:#}"));
    let encoded = serde_json::to_value(&decoded).expect("encode the config back");
    let common: BTreeSet<&str> = COMMON.iter().map(|k| k.name).collect();
    let read: BTreeSet<&str> = encoded
        .as_object()
        .expect("a config encodes as an object")
        .keys()
        .map(String::as_str)
        .filter(|k| !common.contains(k))
        .collect();
    assert_eq!(
        read, unique,
        "the KEYS table and the config struct differ (left: the struct's keys, right: the table's)"
    );
}

/// Panics unless an IPAM loader reads exactly the `ipam.*` rows of `keys` inside `ipam`: with
/// every sample present `load` succeeds; one sample replaced by a value of the wrong type (one
/// of a number, a string, a bool, an array, an object) it fails, so the key is read; and any
/// other word quoted in `sources` (the loader's code), added to `ipam` with each of those
/// values, leaves it succeeding, so no key is read that the table lacks.
#[cfg(test)]
pub fn assert_ipam_keys(
    keys: &[Key],
    sources: &[&str],
    load: impl Fn(&crate::types::NetConf) -> anyhow::Result<()>,
) {
    use serde_json::{Map, Value, json};
    let ipam_keys: Vec<(&str, Value)> = keys
        .iter()
        .map(|k| {
            let name = k.name.strip_prefix("ipam.").expect("IPAM rows are ipam.*");
            (
                name,
                serde_json::from_str(k.sample).expect("sample is JSON"),
            )
        })
        .collect();
    let run = |ipam: &Map<String, Value>| {
        let conf = json!({"cniVersion": "1.0.0", "name": "mynet", "type": "x", "ipam": ipam});
        let net = serde_json::from_value(conf).expect("NetConf decodes");
        load(&net)
    };
    let mut base: Map<String, Value> = Map::new();
    base.insert("type".into(), "x".into());
    base.extend(ipam_keys.iter().map(|(k, v)| (k.to_string(), v.clone())));
    if let Err(e) = run(&base) {
        panic!("the samples do not load: {e:#}");
    }
    let poisons = [
        json!(12345),
        json!("poison"),
        json!(true),
        json!([[1]]),
        json!({"p": 1}),
    ];
    let with = |k: &str, v: &Value| {
        let mut m = base.clone();
        m.insert(k.to_string(), v.clone());
        run(&m)
    };
    for (k, _) in &ipam_keys {
        let read = poisons.iter().any(|p| with(k, p).is_err());
        assert!(read, "ipam.{k} is in KEYS but not read");
    }
    for word in quoted_words(sources) {
        if word == "type" || base.contains_key(&word) {
            continue;
        }
        if let Some(Err(e)) = poisons.iter().map(|p| with(&word, p)).find(|r| r.is_err()) {
            panic!("ipam.{word} is read but missing from KEYS: {e:#}");
        }
    }
}

/// Every `"word"` (letters and digits, starting with a letter) in `sources`.
#[cfg(test)]
fn quoted_words(sources: &[&str]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for src in sources {
        for (i, part) in src.split('"').enumerate() {
            let word = i % 2 == 1
                && part.starts_with(|c: char| c.is_ascii_alphabetic())
                && part.chars().all(|c| c.is_ascii_alphanumeric());
            if word {
                out.insert(part.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NetConf;

    /// NetConf is encoded with the same derive: the COMMON table is held to it too.
    #[test]
    fn common_table_is_netconf() {
        let conf = serde_json::Value::Object(sample_config(COMMON));
        let net: NetConf = serde_json::from_value(conf).unwrap();
        let encoded = serde_json::to_value(&net).unwrap();
        let mut read: Vec<&str> = encoded
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want: Vec<&str> = COMMON.iter().map(|k| k.name).collect();
        read.sort();
        want.sort();
        assert_eq!(read, want);
    }

    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Demo {
        #[serde(flatten)]
        net: NetConf,
        #[serde(default)]
        is_gateway: bool,
        #[serde(default, rename = "macspoofchk")]
        mac_spoof_chk: bool,
    }

    #[test]
    fn struct_and_table_must_agree() {
        let both = [
            key("isGateway", "true", "a"),
            key("macspoofchk", "true", "b"),
        ];
        assert_struct_keys::<Demo>(&both);
        let missing = std::panic::catch_unwind(|| assert_struct_keys::<Demo>(&both[..1]));
        assert!(missing.is_err(), "a struct field without a row must fail");
        let extra = [both[0], both[1], key("mtu", "1500", "c")];
        let extra = std::panic::catch_unwind(|| assert_struct_keys::<Demo>(&extra));
        assert!(extra.is_err(), "a row without a struct field must fail");
        let bad_sample = [key("isGateway", r#""yes""#, "a"), both[1]];
        let bad = std::panic::catch_unwind(|| assert_struct_keys::<Demo>(&bad_sample));
        assert!(bad.is_err(), "a sample that does not decode must fail");
    }

    #[test]
    fn quoted_words_skip_paths_and_messages() {
        let src = r#"get(ipam, "subnet", "ipam.x"); bad("no such thing"); "rangeStart""#;
        let words: Vec<String> = quoted_words(&[src]).into_iter().collect();
        assert_eq!(words, ["rangeStart", "subnet"]);
    }

    struct Bare;
    impl Plugin for Bare {
        fn add(&self, _: &crate::skel::CmdArgs) -> anyhow::Result<crate::types::CniResult> {
            unreachable!()
        }
        fn del(&self, _: &crate::skel::CmdArgs) -> anyhow::Result<()> {
            unreachable!()
        }
    }

    #[test]
    fn help_says_when_an_applet_has_no_table_yet() {
        let h = plugin_help("bare", "about it", &Bare);
        assert!(h.starts_with("bare: about it\n"), "{h}");
        assert!(
            h.contains("configuration keys: not listed for this applet yet"),
            "{h}"
        );
        assert!(
            h.contains("common keys: cniVersion, cniVersions, name, type"),
            "{h}"
        );
    }

    #[test]
    fn every_applet_help_has_one_line_per_key() {
        for a in crate::applets::APPLETS {
            let Some(p) = a.run.plugin() else {
                continue;
            };
            let h = plugin_help(a.name, a.about, p);
            for k in p.keys().unwrap_or_default() {
                let n = h
                    .lines()
                    .filter(|l| l.split_whitespace().next() == Some(k.name));
                assert_eq!(n.count(), 1, "{}: {}\n{h}", a.name, k.name);
            }
        }
    }

    #[test]
    fn help_lists_each_key_on_its_own_line() {
        let text = key_lines(&[
            key("bridge", r#""cni0""#, "the bridge"),
            key("mtu", "0", "m"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], r#"  bridge  the bridge (e.g. "cni0")"#);
        assert!(lines[1].contains("mtu") && lines[1].contains('0'));
    }
}
