//! Test oracle: iproute2's JSON view (`ip -j ...`) of the calling thread's netns or of a given
//! [`Netns`], entered with `nsenter` by path. Test threads sit in unnamed namespaces made by
//! `unshare`, so `ip -n NAME` cannot reach them; `/proc/<pid>/task/<tid>/ns/net` can.

use crate::netns::Netns;
use serde_json::Value;
use std::process::Command;

/// `ip -j ARGS` in the calling thread's netns.
pub fn ip(args: &[&str]) -> Value {
    let path = format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        nix::unistd::gettid()
    );
    run(&path, args)
}

/// `ip -j ARGS` inside `ns`.
pub fn ip_in(ns: &Netns, args: &[&str]) -> Value {
    run(
        &format!("/proc/{}/fd/{}", std::process::id(), ns.raw_fd()),
        args,
    )
}

fn run(ns_path: &str, args: &[&str]) -> Value {
    let out = Command::new("nsenter")
        .arg(format!("--net={ns_path}"))
        .args(["ip", "-j"])
        .args(args)
        .output()
        .expect("run nsenter ip (util-linux and iproute2 are needed for this oracle)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ip -j {args:?} failed: {stderr}");
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Value::Array(vec![]);
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("ip -j {args:?}: bad JSON: {e}"))
}

/// The `flags` list of one `ip -j link` entry, as strings.
pub fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}
