//! Test oracle for the privileged tests: the real `iptables-save`, `nft`, ... run with
//! `nsenter` inside the netns of the calling test thread (or another one), never the host's.

use crate::netns::Netns;
use std::process::Command;

/// The path of the calling thread's netns as seen from any process.
pub fn here() -> String {
    format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        nix::unistd::gettid()
    )
}

/// The path of an open netns as seen from any process.
pub fn path_of(ns: &Netns) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), ns.raw_fd())
}

/// Runs `argv` inside the netns at `ns`; returns success and stdout + stderr.
pub fn try_run(ns: &str, argv: &[&str]) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .arg("--")
        .args(argv)
        .output()
        .expect("run nsenter");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `argv` inside the netns at `ns` and returns its stdout; panics on failure.
pub fn run(ns: &str, argv: &[&str]) -> String {
    let (ok, text) = try_run(ns, argv);
    assert!(ok, "{argv:?} failed: {text}");
    text
}

/// The user chains and rules of `<tool> -t nat` here, without comments and built-in chains.
pub fn nat_state(save_tool: &str) -> Vec<String> {
    run(&here(), &[save_tool, "-t", "nat"])
        .lines()
        .filter(|l| l.starts_with("-A") || l.starts_with(":CNI"))
        .map(str::to_string)
        .collect()
}

/// True when `tool` can run here.
pub fn have(tool: &str) -> bool {
    crate::netfilter::iptables::find_in_path(tool).is_some()
        && crate::netfilter::iptables::find_in_path("nsenter").is_some()
}
