//! Property fuzzing of every parser that takes outside input (issue 15), on stable Rust with
//! proptest: each case is a seed from `testdata/` (real configs, conflists, results of every
//! version, cache files, iptables dumps, nf_tables messages) put through a list of mutations,
//! structure-aware ones on the JSON (a value replaced by another type, an extreme number, a
//! hostile string, a key removed or added, deep nesting) and byte-level ones (flips, inserts,
//! deletions, splices of two seeds). proptest supplies the fixed-seed case stream and, on a
//! failure, shrinks the mutation list to the smallest that still fails.
//!
//! Each target checks properties, not only "no panic":
//! - conflists: an error is a code-7 CNI error; a parsed list survives re-encoding unchanged;
//! - results of every version: an encodable result decodes back to itself (encode -> decode ->
//!   encode is a fixed point in every version, and 1.0.0 <-> 1.1.0 loses nothing);
//! - `CNI_ARGS`: parse -> to_env -> parse is the identity, an error is code 4;
//! - capability args: a plugin's `runtimeConfig` holds exactly the capabilities it declares;
//! - host-local's config: an error is a CNI error with code 7 (or 4 for `CNI_ARGS`);
//! - host-local's store files and the runtime cache files: what parses, round-trips;
//! - iptables-save text and nf_tables netlink replies we read back: never a panic.
//!
//! `cargo test` runs [`DEFAULT_CASES`] cases per target (seconds in all);
//! `CNI_MULTI_FUZZ_CASES=N` (`make fuzz`) runs N. A failing input found once is kept as a file
//! under `testdata/fuzz/<target>/` and replayed by [`regressions_replay`].

use crate::error::code_of;
use crate::ipam::config::HostLocalConfig;
use crate::ipam::store::Reservation;
use crate::netfilter::iptables::rules::Saved;
use crate::netfilter::nftables::{expr, wire};
use crate::runtime::cache::CacheEntry;
use crate::runtime::config::{NetworkConfigList, PluginConf};
use crate::runtime::inject::runtime_config;
use crate::types::args::CniArgs;
use crate::types::version::ALL;
use crate::types::{CniResult, NetConf};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Cases per target in a plain `cargo test`.
const DEFAULT_CASES: u32 = 1500;

/// Every input run, across targets, for the figure printed at the end of each target.
static RUN: AtomicU64 = AtomicU64::new(0);

fn cases() -> u32 {
    std::env::var("CNI_MULTI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// Every file under `testdata/<dir>` (recursively), as bytes.
fn seeds(dirs: &[&str]) -> Vec<Vec<u8>> {
    fn walk(p: &Path, out: &mut Vec<Vec<u8>>) {
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.path());
            for e in entries {
                walk(&e.path(), out);
            }
        } else if let Ok(b) = std::fs::read(p) {
            out.push(b);
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(&testdata(d), &mut out);
    }
    assert!(!out.is_empty(), "no seeds under {dirs:?}");
    out
}

/// A target's property over one input: `Err` says what broke.
type Property = fn(&[u8]) -> Result<(), String>;

/// One mutation; numbers pick positions and choices modulo what the input offers.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace a JSON value (the n-th, depth first) with a nasty one.
    JsonValue(usize, usize),
    /// Remove the n-th object key.
    JsonRemove(usize),
    /// Add a key with a nasty value to the n-th object.
    JsonAdd(usize, usize, usize),
    /// Wrap the n-th value in `depth` arrays.
    JsonNest(usize, u16),
    /// Flip bit `b` of the byte at n.
    Flip(usize, u8),
    /// Insert a byte.
    Insert(usize, u8),
    /// Delete a run of bytes.
    Delete(usize, usize),
    /// Replace a run with a run of another seed.
    Splice(usize, usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::JsonValue(a, b)),
        1 => any::<usize>().prop_map(Mutation::JsonRemove),
        1 => (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(a, b, c)| Mutation::JsonAdd(a, b, c)),
        1 => (any::<usize>(), 1u16..300).prop_map(|(a, d)| Mutation::JsonNest(a, d)),
        1 => (any::<usize>(), 0u8..8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(a, b)| Mutation::Delete(a, b)),
        1 => (any::<usize>(), any::<usize>(), any::<usize>(), 1usize..64)
            .prop_map(|(a, b, c, d)| Mutation::Splice(a, b, c, d)),
    ]
}

/// Values no well-behaved runtime sends.
fn nasty(n: usize) -> Value {
    let long = "x".repeat(300);
    let all = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1e308),
        json!(-0.5),
        json!(""),
        json!("../../etc/passwd"),
        json!(long),
        json!("nul\u{0}inside"),
        json!("0.0.0.0/0"),
        json!("::/0"),
        json!("10.0.0.1/33"),
        json!("ff:ff:ff:ff:ff:ff"),
        json!("é\u{202e}ünïcode"),
        json!([]),
        json!({}),
        json!([[]]),
        json!({"type": "host-local"}),
        json!("1.1.0"),
        json!("0.1.0"),
        json!("9.9.9"),
    ];
    all[n % all.len()].clone()
}

/// The n-th value of `v`, depth first, for editing.
fn nth_mut(v: &mut Value, n: &mut usize) -> Option<*mut Value> {
    if *n == 0 {
        return Some(v as *mut Value);
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().find_map(|c| nth_mut(c, n)),
        Value::Object(o) => o.values_mut().find_map(|c| nth_mut(c, n)),
        _ => None,
    }
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

fn with_nth(v: &mut Value, n: usize, f: impl FnOnce(&mut Value)) {
    let mut i = n % count(v);
    if let Some(p) = nth_mut(v, &mut i) {
        // SAFETY: the pointer comes from a live `&mut` into `v`, used once, before `v` is
        // touched again.
        f(unsafe { &mut *p });
    }
}

/// `seed` put through `muts`; JSON mutations apply while the input still parses as JSON.
fn mutate(seed: &[u8], others: &[Vec<u8>], muts: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for m in muts {
        let json_edit = |bytes: &mut Vec<u8>, f: &dyn Fn(&mut Value)| {
            if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
                f(&mut v);
                *bytes = serde_json::to_vec(&v).unwrap_or_default();
            }
        };
        match *m {
            Mutation::JsonValue(n, k) => {
                json_edit(&mut bytes, &|v| with_nth(v, n, |x| *x = nasty(k)));
            }
            Mutation::JsonRemove(n) => json_edit(&mut bytes, &|v| {
                with_nth(v, n, |x| {
                    if let Value::Object(o) = x
                        && let Some(k) = o.keys().nth(n % o.len().max(1)).cloned()
                    {
                        o.remove(&k);
                    }
                })
            }),
            Mutation::JsonAdd(n, key, k) => json_edit(&mut bytes, &|v| {
                const KEYS: [&str; 10] = [
                    "cniVersion",
                    "name",
                    "type",
                    "ipam",
                    "prevResult",
                    "runtimeConfig",
                    "capabilities",
                    "dataDir",
                    "ranges",
                    "args",
                ];
                with_nth(v, n, |x| {
                    if let Value::Object(o) = x {
                        o.insert(KEYS[key % KEYS.len()].into(), nasty(k));
                    }
                })
            }),
            Mutation::JsonNest(n, depth) => json_edit(&mut bytes, &|v| {
                with_nth(v, n, |x| {
                    for _ in 0..depth {
                        *x = Value::Array(vec![x.take()]);
                    }
                })
            }),
            Mutation::Flip(n, b) if !bytes.is_empty() => {
                let i = n % bytes.len();
                bytes[i] ^= 1 << b;
            }
            Mutation::Insert(n, c) => {
                let i = n % (bytes.len() + 1);
                bytes.insert(i, c);
            }
            Mutation::Delete(n, len) if !bytes.is_empty() => {
                let i = n % bytes.len();
                let end = (i + len).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Splice(n, other, from, len) if !others.is_empty() => {
                let o = &others[other % others.len()];
                if !o.is_empty() {
                    let f = from % o.len();
                    let piece = &o[f..(f + len).min(o.len())];
                    let i = n % (bytes.len() + 1);
                    bytes.splice(i..i, piece.iter().copied());
                }
            }
            _ => {}
        }
    }
    bytes
}

/// Runs `property` on `cases() / cost` mutated seeds of `dirs` (`cost`: how many inputs' work
/// one case of this target does), with a fixed seed per target.
fn fuzz(target: &str, dirs: &[&str], cost: u32, property: Property) {
    let corpus = seeds(dirs);
    let n = (cases() / cost).max(1);
    let mut config = Config::with_cases(n);
    config.rng_seed = RngSeed::Fixed(target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }));
    config.failure_persistence = None;
    let mut runner = TestRunner::new(config);
    let strategy = (0..corpus.len(), proptest::collection::vec(mutation(), 0..6));
    let result = runner.run(&strategy, |(i, muts)| {
        let input = mutate(&corpus[i], &corpus, &muts);
        RUN.fetch_add(1, Ordering::Relaxed);
        property(&input).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("fuzz target {target}: {e}");
    }
    eprintln!(
        "fuzz {target}: {n} cases, no failure ({} inputs so far in this process)",
        RUN.load(Ordering::Relaxed)
    );
}

/// A CNI error code other than the expected one is a property failure.
fn expect_code(e: &anyhow::Error, codes: &[u32], what: &str) -> Result<(), String> {
    let c = code_of(e);
    if codes.contains(&c) {
        Ok(())
    } else {
        Err(format!(
            "{what}: error code {c} (want one of {codes:?}): {e:#}"
        ))
    }
}

fn prop_conflist(input: &[u8]) -> Result<(), String> {
    match NetworkConfigList::from_bytes(input) {
        Err(e) => expect_code(&e, &[7], "conflist"),
        Ok(list) => {
            let plugins: Vec<Value> = list
                .plugins
                .iter()
                .map(|p| Value::Object(p.raw().clone()))
                .collect();
            let mut again = Map::new();
            again.insert("name".into(), list.name.clone().into());
            again.insert("cniVersion".into(), list.cni_version.clone().into());
            for (k, v) in [
                ("disableCheck", list.disable_check),
                ("disableGC", list.disable_gc),
                ("loadOnlyInlinedPlugins", list.load_only_inlined_plugins),
            ] {
                again.insert(k.into(), v.into());
            }
            if !plugins.is_empty() {
                again.insert("plugins".into(), plugins.into());
            }
            let bytes = serde_json::to_vec(&again).unwrap();
            let second =
                NetworkConfigList::from_bytes(&bytes).map_err(|e| format!("re-parse: {e:#}"))?;
            if (second.name, second.cni_version, second.plugins)
                != (list.name, list.cni_version, list.plugins)
            {
                return Err("a re-encoded list parses differently".into());
            }
            Ok(())
        }
    }
}

fn prop_result(input: &[u8]) -> Result<(), String> {
    let Ok(v) = serde_json::from_slice::<Value>(input) else {
        return Ok(());
    };
    for from in ALL.iter().chain(&[""]) {
        let Ok(r) = CniResult::decode(&v, from) else {
            continue;
        };
        for to in ALL {
            let Ok(enc) = r.to_value(to) else { continue };
            let back = CniResult::decode(&enc, to)
                .map_err(|e| format!("{from}->{to}: own output does not decode: {e:#}"))?;
            let again = back
                .to_value(to)
                .map_err(|e| format!("{from}->{to}: re-encode: {e:#}"))?;
            if again != enc {
                return Err(format!(
                    "{from}->{to}: encode/decode is not stable:\n{enc}\n{again}"
                ));
            }
            if to.starts_with("1.") && back != r && *to == "1.1.0" {
                return Err(format!("{from}->1.1.0 lost something: {r:?} vs {back:?}"));
            }
        }
    }
    Ok(())
}

fn prop_cni_args(input: &[u8]) -> Result<(), String> {
    let s = String::from_utf8_lossy(input);
    match CniArgs::parse(&s) {
        Err(e) => expect_code(&e.into(), &[4], "CNI_ARGS"),
        Ok(a) => {
            let again = CniArgs::parse(&a.to_env()).map_err(|e| format!("re-parse: {e}"))?;
            if again != a {
                return Err(format!("{s:?}: parse/to_env/parse changed it"));
            }
            Ok(())
        }
    }
}

fn prop_capabilities(input: &[u8]) -> Result<(), String> {
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(input) else {
        return Ok(());
    };
    let caps = match v.get("runtimeConfig") {
        Some(Value::Object(m)) => m.clone(),
        _ => v.clone(),
    };
    let Ok(plugin) = PluginConf::from_value(Value::Object(v)) else {
        return Ok(());
    };
    let rc = runtime_config(&plugin, &caps);
    let declared: Vec<&str> = plugin.capabilities().collect();
    for (k, val) in &rc {
        if !declared.contains(&k.as_str()) || caps.get(k) != Some(val) {
            return Err(format!("runtimeConfig got {k} without declaring it"));
        }
    }
    Ok(())
}

fn prop_host_local_config(input: &[u8]) -> Result<(), String> {
    let Ok(net) = serde_json::from_slice::<NetConf>(input) else {
        return Ok(());
    };
    // skel refuses an unknown version (code 1) before any applet parses its config.
    if !crate::types::version::is_known(&net.cni_version) && !net.cni_version.is_empty() {
        return Ok(());
    }
    for args in ["", "IP=10.1.2.3", "IP=nonsense;K8S_POD_NAME=x"] {
        let args = CniArgs::parse(args).unwrap();
        if let Err(e) = HostLocalConfig::load(&net, &args) {
            expect_code(&e, &[4, 7], "host-local config")?;
        }
    }
    Ok(())
}

fn prop_store_file(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    let ip = "10.1.2.3".parse().unwrap();
    let r = Reservation::parse(ip, &text);
    // What the store would write for that owner reads back as exactly that owner.
    if let Some(ifname) = &r.ifname {
        let clean = |s: &str| !s.is_empty() && s.trim() == s && !s.contains(['\r', '\n']);
        if clean(&r.container_id) && clean(ifname) {
            let again = Reservation::parse(ip, &Reservation::content(&r.container_id, ifname));
            if !again.is_exactly(&r.container_id, ifname) {
                return Err(format!("{text:?}: store file round trip changed the owner"));
            }
        }
    } else if !r.is_legacy_of(&r.container_id) {
        return Err(format!("{text:?}: an id-only file is not read as legacy"));
    }
    Ok(())
}

fn prop_cache_file(input: &[u8]) -> Result<(), String> {
    if let Ok(e) = CacheEntry::from_bytes(input) {
        let again = CacheEntry::from_bytes(&e.to_bytes()).map_err(|x| format!("re-parse: {x}"))?;
        if again != e {
            return Err("a cache entry changed in a write/read round trip".into());
        }
    }
    Ok(())
}

fn prop_dumps(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    for table in ["nat", "filter"] {
        let _ = Saved::parse(&text, table);
    }
    let _ = wire::parse_replies(input);
    let _ = wire::parse_attrs(input);
    let _ = expr::decode_list(input);
    Ok(())
}

const CONFIG_SEEDS: &[&str] = &["config", "netconf"];

#[test]
fn fuzz_conflists() {
    fuzz("conflists", CONFIG_SEEDS, 1, prop_conflist);
}

#[test]
fn fuzz_results_of_every_version() {
    fuzz("results", &["results"], 4, prop_result);
}

#[test]
fn fuzz_cni_args() {
    fuzz("cni-args", &["fuzz/seeds/cni-args"], 1, prop_cni_args);
}

#[test]
fn fuzz_capability_args() {
    fuzz(
        "capabilities",
        &["fuzz/seeds/capabilities", "netconf"],
        1,
        prop_capabilities,
    );
}

#[test]
fn fuzz_host_local_configs() {
    fuzz(
        "host-local-config",
        &["config/host-local", "config/static"],
        1,
        prop_host_local_config,
    );
}

#[test]
fn fuzz_store_files() {
    fuzz("store-files", &["fuzz/seeds/store"], 1, prop_store_file);
}

#[test]
fn fuzz_cache_files() {
    fuzz("cache-files", &["cache"], 1, prop_cache_file);
}

#[test]
fn fuzz_netfilter_dumps() {
    fuzz(
        "netfilter-dumps",
        &["fuzz/seeds/dumps", "netfilter"],
        1,
        prop_dumps,
    );
}

/// Every file under `testdata/fuzz/<target>/` is an input that once failed: each must pass now.
#[test]
fn regressions_replay() {
    let targets: [(&str, Property); 8] = [
        ("conflists", prop_conflist),
        ("results", prop_result),
        ("cni-args", prop_cni_args),
        ("capabilities", prop_capabilities),
        ("host-local-config", prop_host_local_config),
        ("store-files", prop_store_file),
        ("cache-files", prop_cache_file),
        ("netfilter-dumps", prop_dumps),
    ];
    for (target, property) in targets {
        let dir = testdata(&format!("fuzz/regressions/{target}"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let input = std::fs::read(e.path()).unwrap();
            if let Err(why) = property(&input) {
                panic!("regression {}: {why}", e.path().display());
            }
        }
    }
}
