//! The whole binary under mutated input (issue 15): every plugin applet in the APPLETS table
//! (found through `cni-multi --list` and a VERSION probe, so an applet added later is covered
//! without touching this file) run with mutated stdin (seed configs from `testdata/` and a
//! minimal config of its own type, mutated byte-wise and value-wise) and mutated environment
//! (verbs, container ids, ifnames, `CNI_ARGS`, netns paths). Each run must end with exit 0, or
//! with an error JSON carrying a spec code on stdout; never a panic (skel turns one into code
//! 999 with "panicked" in the message), a signal, a hang, or non-JSON.
//!
//! Containment: a fuzzed config can name any path (`dataDir: "/etc"`) and any link, so every
//! run happens in a throwaway fake host netns AND chrooted into a temp dir holding only the
//! binary, its shared libraries and a fresh /proc, in a private mount namespace. Kernel objects
//! die with the netns, files with the temp dir.
//!
//! Default: 24 inputs per applet; `CNI_MULTI_LONG=1` (`make reliability`): 2000;
//! `CNI_MULTI_FUZZ_RUNS=N`: N.

use crate::support::farm::{applet_names, binary};
use crate::support::{Pair, TempDir, require_root};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A root directory holding the binary (as /cni-multi) and its shared libraries.
fn jail(tmp: &TempDir) -> PathBuf {
    let root = tmp.join("root");
    for d in ["proc", "run", "tmp", "etc", "var/lib/cni", "bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(binary(), root.join("cni-multi")).unwrap();
    let ldd = Command::new("ldd").arg(binary()).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = lib {
            let dest = root.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dest).unwrap();
        }
    }
    root
}

/// Seed configurations: every JSON file under testdata/config and testdata/netconf.
fn seeds() -> Vec<Vec<u8>> {
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
    for d in ["config", "netconf", "results"] {
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(d),
            &mut out,
        );
    }
    out
}

fn mutate(rng: &mut Rng, seed: &[u8], applet: &str) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(seed).unwrap_or(serde_json::json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), applet.into());
        let nasty = [
            serde_json::json!(null),
            serde_json::json!(-1),
            serde_json::json!(u64::MAX),
            serde_json::json!("../../x"),
            serde_json::json!("x".repeat(300)),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!("1.1.0"),
            serde_json::json!("0.1.0"),
        ];
        for _ in 0..rng.below(3) {
            let keys: Vec<String> = o.keys().cloned().collect();
            if keys.is_empty() {
                break;
            }
            let k = rng.pick(&keys).clone();
            if k != "type" {
                o.insert(k, rng.pick(&nasty).clone());
            }
        }
    }
    let mut bytes = serde_json::to_vec(&v).unwrap();
    for _ in 0..rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let i = rng.below(bytes.len());
        match rng.below(3) {
            0 => bytes[i] ^= 1 << rng.below(8),
            1 => bytes.insert(i, rng.next() as u8),
            _ => {
                bytes.remove(i);
            }
        }
    }
    bytes
}

/// What one run did.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    timed_out: bool,
}

fn run_jailed(
    host: &Path,
    root: &Path,
    applet: &str,
    env: &[(String, String)],
    stdin: &[u8],
) -> Run {
    let script = format!(
        "mount -t proc proc {r}/proc && exec chroot {r} /cni-multi applet {applet}",
        r = root.display()
    );
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", host.display()))
        .args([
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut timed_out = false;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        timed_out,
    }
}

/// Applets that speak the CNI protocol (a VERSION call answers with supported versions).
fn plugin_applets(host: &Path, root: &Path) -> Vec<String> {
    let env = [("CNI_COMMAND".to_string(), "VERSION".to_string())];
    applet_names()
        .into_iter()
        .filter(|a| {
            let r = run_jailed(host, root, a, &env, b"{\"cniVersion\":\"1.0.0\"}");
            serde_json::from_slice::<serde_json::Value>(&r.stdout)
                .is_ok_and(|v| v.get("supportedVersions").is_some())
        })
        .collect()
}

#[test]
fn every_applet_survives_mutated_input() {
    if !require_root() {
        return;
    }
    let long = std::env::var("CNI_MULTI_LONG").is_ok_and(|v| v == "1");
    let per_applet = std::env::var("CNI_MULTI_FUZZ_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long { 2000 } else { 24 });
    let pair = Pair::new("fuzzbin");
    let tmp = TempDir::new("fuzzbin");
    let root = jail(&tmp);
    let host = pair.host.path().to_path_buf();
    let ctr = pair.container.path().to_str().unwrap().to_string();
    let applets = plugin_applets(&host, &root);
    assert!(
        applets.len() >= 8,
        "too few plugin applets found: {applets:?}"
    );
    let seeds = seeds();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let verbs = [
        "ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "add", "", "NOPE",
    ];
    let ids = [
        "c1",
        "",
        "../../etc",
        "x".repeat(300).leak() as &str,
        "c-2.b_3",
    ];
    let ifnames = ["eth0", "", "a/b", "sixteen-bytes-xx", "net1", "lo"];
    let netns = [
        ctr.as_str(),
        "",
        "/proc/1/ns/net",
        "/nonexistent",
        "/etc/passwd",
        "/proc/self/ns/net",
    ];
    let args = [
        "",
        "IgnoreUnknown=1",
        "IP=10.9.9.9",
        "MAC=zz",
        "a",
        "K8S_POD_NAME=x;IP=1.2.3.4/24",
    ];
    let mut total = 0;
    for applet in &applets {
        for i in 0..per_applet {
            let seed = rng.pick(&seeds).clone();
            let stdin = mutate(&mut rng, &seed, applet);
            let env: Vec<(String, String)> = [
                ("CNI_COMMAND", *rng.pick(&verbs)),
                ("CNI_CONTAINERID", *rng.pick(&ids)),
                ("CNI_IFNAME", *rng.pick(&ifnames)),
                ("CNI_NETNS", *rng.pick(&netns)),
                ("CNI_ARGS", *rng.pick(&args)),
                ("CNI_PATH", "/"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let r = run_jailed(&host, &root, applet, &env, &stdin);
            total += 1;
            let case = format!(
                "{applet} #{i} env {env:?} stdin {:?}",
                String::from_utf8_lossy(&stdin)
                    .chars()
                    .take(400)
                    .collect::<String>()
            );
            assert!(!r.timed_out, "{case}: hung");
            let code = r
                .code
                .unwrap_or_else(|| panic!("{case}: killed by a signal; stderr {}", r.stderr));
            assert!(
                !r.stderr.contains("panicked"),
                "{case}: panicked: {}",
                r.stderr
            );
            if code != 0 {
                let err: serde_json::Value =
                    serde_json::from_slice(&r.stdout).unwrap_or_else(|e| {
                        panic!(
                            "{case}: exit {code}, stdout not JSON ({e}): {:?}",
                            String::from_utf8_lossy(&r.stdout)
                        )
                    });
                let c = err["code"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{case}: no code in {err}"));
                // 999 is the spec's (and the reference's) code for any other failure; a panic is
                // 999 too, with skel's "panicked" text.
                let msg = err["msg"].as_str().unwrap_or_default();
                assert!(
                    !(c == 999 && msg.contains("panicked")),
                    "{case}: panicked: {err}"
                );
                assert!(
                    err["msg"].as_str().is_some_and(|m| !m.is_empty()),
                    "{case}: {err}"
                );
            }
        }
    }
    eprintln!(
        "fuzz_binary: {total} runs over {} applets, 0 panics, 0 signals, 0 hangs, 0 non-JSON errors",
        applets.len()
    );
}
