//! SIGKILL at every step of ADD (issue 15): the default chain (bridge + host-local + portmap +
//! bandwidth + tuning) through the runtime tool, on both netfilter backends. The process kills
//! itself right at step N (`CNI_MULTI_FAULT_STEP`, see src/fault.rs: every rollback push and
//! every IPAM reservation is a step, counted across the chain), for N = 1, 2, ... until an ADD
//! gets through; and, besides, after random delays with a real SIGKILL from outside. After each
//! kill, DEL (twice) must succeed and leave nothing: no link in the fake host or the container,
//! no address reservation, no rule, no qdisc, no cache file, no tuning backup.
//!
//! The default run kills at every step once per backend plus a few random kills;
//! `CNI_MULTI_LONG=1` (`make reliability`) adds 200 random kills per backend.

use crate::chain::{cap_args, plugins};
use crate::support::ipam::tree;
use crate::support::residue::host_residue;
use crate::support::runtime::NetTool;
use crate::support::{Pair, TempDir, require_root};
use serde_json::json;
use std::time::{Duration, Instant};

const NET: &str = "killnet";

/// The fake host and container, the chain's state dirs and the runtime tool's dirs.
struct Rig {
    pair: Pair,
    ipam: TempDir,
    tuning: TempDir,
    tool: NetTool,
}

impl Rig {
    fn new(label: &str, backend: &'static str) -> Rig {
        let pair = Pair::new(label);
        pair.host.sh(
            "ip link set lo up && echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad \
             && echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad",
        );
        let rig = Rig {
            pair,
            ipam: TempDir::new(&format!("{label}-ipam")),
            tuning: TempDir::new(&format!("{label}-tuning")),
            tool: NetTool::new(label),
        };
        let mut list = plugins(backend, &rig.ipam, Some(&rig.tuning));
        // The chain test's bridge name is shared; give this rig its own.
        list[0]["bridge"] = json!("cni-kill0");
        let conflist = json!({"cniVersion": "1.1.0", "name": NET, "plugins": list});
        rig.tool.write("10-kill.conflist", &conflist);
        rig
    }

    fn net(&self, verb: &str, fault_step: Option<u32>) -> crate::support::Outcome {
        let netns = self.pair.container.path().to_str().unwrap();
        let mut cmd = self
            .tool
            .cmd(&[verb, NET, netns, "--container-id", "killme"]);
        cmd = cmd.arg("--cap-args").arg(caps());
        if let Some(n) = fault_step {
            cmd = cmd.env(cni_multi::fault::VAR, &n.to_string());
        }
        cmd.run_in(&self.pair.host)
    }

    /// DEL twice, then everything that is left (empty: nothing).
    fn del_and_residue(&self, what: &str) -> Vec<String> {
        for round in ["first", "second"] {
            let del = self.net("del", None);
            assert_eq!(del.code, 0, "{what}: {round} DEL failed:\n{del}");
        }
        let mut left = host_residue(&self.pair.host, &[]);
        left.extend(
            self.pair
                .container
                .link_names()
                .into_iter()
                .filter(|n| n != "lo")
                .map(|n| format!("container link {n}")),
        );
        for (dir, label) in [(&self.ipam, "ipam"), (&self.tuning, "tuning")] {
            left.extend(tree(dir.path()).into_iter().filter_map(|p| {
                let name = p.rsplit('/').next().unwrap_or(&p).to_string();
                let file = dir.join(&p).is_file();
                let skeleton = name == "lock" || name.starts_with("last_reserved_ip");
                (file && !skeleton).then(|| format!("{label} file {p}"))
            }));
        }
        left.extend(
            self.tool
                .cached_files()
                .into_iter()
                .map(|f| format!("cache file {f}")),
        );
        left
    }
}

/// The capability args of every call: two port mappings and both bandwidth limits.
fn caps() -> String {
    cap_args(
        json!([{"hostPort": 18090, "containerPort": 8080, "protocol": "tcp"},
                    {"hostPort": 15390, "containerPort": 5353, "protocol": "udp"}]),
    )
    .to_string()
}

/// Kills ADD at step 1, 2, ... until one ADD completes; DEL after each. Returns how many
/// steps the chain's ADD has.
fn kill_at_every_step(backend: &'static str) -> u32 {
    let rig = Rig::new(&format!("kill-{backend}"), backend);
    for n in 1..200 {
        let add = rig.net("add", Some(n));
        let what = format!("{backend}: killed at step {n}");
        match add.code {
            137 => {}
            0 => {
                let left = rig.del_and_residue(&format!("{backend}: completed ADD"));
                assert_eq!(left, Vec::<String>::new(), "{backend}: after a whole ADD");
                return n - 1;
            }
            _ => panic!("{what}: ADD neither died nor succeeded:\n{add}"),
        }
        let left = rig.del_and_residue(&what);
        assert_eq!(left, Vec::<String>::new(), "{what}: left after DEL");
    }
    panic!("{backend}: ADD never completed in 200 steps");
}

fn every_step(backend: &'static str) {
    if !require_root() {
        return;
    }
    let steps = kill_at_every_step(backend);
    // bridge, host-local (two families), portmap, bandwidth and tuning each take steps.
    assert!(steps >= 8, "{backend}: only {steps} steps were counted");
    eprintln!("kill_steps: {backend}: {steps} steps, each killed once, 0 residue");
}

#[test]
fn sigkill_at_every_step_of_add_iptables() {
    every_step("iptables");
}

#[test]
fn sigkill_at_every_step_of_add_nftables() {
    every_step("nftables");
}

/// Kills a running ADD from outside after a random delay (up to about its duration), then
/// DELs; `rounds` times. Returns (kills that landed mid-ADD, ADDs that finished first).
fn random_kills(backend: &'static str, rounds: u32, seed: u64) -> (u32, u32) {
    let rig = Rig::new(&format!("rkill-{backend}"), backend);
    let mut rng = seed;
    let full = {
        let t = Instant::now();
        rig.net("add", None).ok();
        let d = t.elapsed();
        assert_eq!(rig.del_and_residue("warm-up"), Vec::<String>::new());
        d
    };
    let (mut killed, mut finished) = (0, 0);
    for i in 0..rounds {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_micros(rng % (full.as_micros() as u64 + 1));
        let add = rig.net_killed_after("add", delay);
        match add {
            Some(137) => killed += 1,
            Some(0) => finished += 1,
            other => panic!("{backend} round {i}: ADD ended with {other:?}"),
        }
        let what = format!("{backend}: round {i}, SIGKILL after {delay:?}");
        assert_eq!(rig.del_and_residue(&what), Vec::<String>::new(), "{what}");
    }
    (killed, finished)
}

impl Rig {
    /// Starts `net VERB` and SIGKILLs it after `delay` unless it ended; its exit code
    /// (128 + signal when killed).
    fn net_killed_after(&self, verb: &str, delay: Duration) -> Option<i32> {
        let netns = self.pair.container.path().to_str().unwrap();
        self.tool
            .cmd(&[verb, NET, netns, "--container-id", "killme"])
            .arg("--cap-args")
            .arg(caps())
            .run_killed_after(&self.pair.host, delay)
    }
}

fn random(backend: &'static str) {
    if !require_root() {
        return;
    }
    let long = std::env::var("CNI_MULTI_LONG").is_ok_and(|v| v == "1");
    let rounds = if long { 200 } else { 12 };
    let (killed, finished) = random_kills(backend, rounds, 0x9e37_79b9_7f4a_7c15);
    eprintln!(
        "kill_steps: {backend}: {rounds} random SIGKILLs, {killed} mid-ADD, {finished} after it; 0 DEL failures, 0 residue"
    );
}

#[test]
fn random_sigkills_during_add_iptables() {
    random("iptables");
}

#[test]
fn random_sigkills_during_add_nftables() {
    random("nftables");
}

/// A DEL killed at a random point is completed by the next DEL.
#[test]
fn killed_del_is_completed_by_the_next_del() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("kill-del", "nftables");
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..6 {
        rig.net("add", None).ok();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_micros(rng % 40_000);
        let code = rig.net_killed_after("del", delay);
        assert!(
            matches!(code, Some(0) | Some(137)),
            "round {i}: DEL ended with {code:?}"
        );
        let what = format!("round {i}: DEL killed after {delay:?}");
        assert_eq!(rig.del_and_residue(&what), Vec::<String>::new(), "{what}");
    }
}
