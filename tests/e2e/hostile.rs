//! Hostile and odd input (issue 15): each case gets a clear CNI error with the right code and
//! changes nothing, neither on disk (the dataDir and its surroundings are compared before and
//! after) nor in the kernel (the fake host's and the container's links, addresses and rules).
//! Cases: container ids and network names with `/`, `..`, 300 characters; interface names over
//! 15 bytes or with `/`; `CNI_NETNS` that is a file, a directory, or a vanished
//! `/proc/<pid>/ns/net`; a 10 MB config; deeply nested JSON; IPAM ranges that overlap, are
//! empty or span /0; a `dataDir` that is a symlink to elsewhere. Undecodable JSON is code 6
//! (decoding failure), as the spec and the reference have it; a bad value is code 7.
//! A NUL can reach a plugin only inside the JSON (a network name); the kernel's execve takes C
//! strings, so no runtime can put one into an environment variable.

use crate::support::ipam::tree;
use crate::support::{Cni, Farm, Outcome, Pair, TempDir, TestNs, require_root};
use serde_json::{Value, json};
use std::path::Path;

/// The fake host, the container, a temp dir for state, and the snapshot to compare with.
struct Rig {
    pair: Pair,
    tmp: TempDir,
}

impl Rig {
    fn new(label: &str) -> Rig {
        let pair = Pair::new(label);
        pair.host.sh("ip link set lo up");
        Rig {
            pair,
            tmp: TempDir::new(label),
        }
    }

    fn data(&self) -> String {
        self.tmp.join("data").to_str().unwrap().to_string()
    }

    /// A bridge + host-local config with its store in the temp dir.
    fn bridge(&self) -> Value {
        json!({"cniVersion": "1.1.0", "name": "hostile", "type": "bridge", "bridge": "cni-hostile0",
               "isGateway": true, "ipMasq": true,
               "ipam": {"type": "host-local", "subnet": "10.71.0.0/24", "dataDir": self.data()}})
    }

    /// Everything a failed call must leave as it was.
    fn state(&self) -> String {
        let mut s = String::new();
        for ns in [&self.pair.host, &self.pair.container] {
            s += &ns.run(["ip", "-o", "link"]);
            s += &ns.run(["ip", "-o", "addr"]);
            s += &ns.run(["nft", "list", "ruleset"]);
            let rules = ns.run(["iptables-save", "-t", "nat"]);
            s += &rules
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n");
        }
        s += &format!("{:?}", tree(self.tmp.path()));
        s
    }

    fn call(
        &self,
        plugin: &str,
        verb: &str,
        id: &str,
        ifname: &str,
        netns: &str,
        conf: &[u8],
    ) -> Outcome {
        Cni::new(Farm::shared(), plugin)
            .command(verb)
            .container_id(id)
            .ifname(ifname)
            .netns(netns)
            .stdin(conf.to_vec())
            .run_in(&self.pair.host)
    }

    /// The call must fail with `code` and change nothing.
    fn refused(&self, what: &str, code: u64, req: Req<'_>) {
        let Req(plugin, id, ifname, netns, conf) = req;
        let before = self.state();
        let out = self.call(plugin, "ADD", id, ifname, netns, conf);
        assert_eq!(
            out.error_code(),
            Some(code),
            "{what}: expected code {code}:\n{out}"
        );
        let msg = out.json.as_ref().unwrap()["msg"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!msg.is_empty(), "{what}: an error without a message");
        assert!(!out.stderr.contains("panicked"), "{what}: panicked:\n{out}");
        assert_eq!(self.state(), before, "{what}: something changed");
    }

    fn ctr(&self) -> String {
        self.pair.container.path().to_str().unwrap().to_string()
    }
}

/// One ADD: plugin, container id, ifname, netns path, stdin.
struct Req<'a>(&'a str, &'a str, &'a str, &'a str, &'a [u8]);

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn hostile_ids_names_and_ifnames() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hostile-names");
    let ctr = rig.ctr();
    let conf = bytes(&rig.bridge());
    let long = "a".repeat(300);
    for id in [
        "../../etc",
        "a/b",
        "..",
        ".",
        &long,
        "id with space",
        "id\u{7f}",
    ] {
        rig.refused(
            &format!("container id {id:?}"),
            4,
            Req("bridge", id, "eth0", &ctr, &conf),
        );
    }
    for ifname in ["eth0/../x", "a/b", "sixteen-bytes-xx", &long, "..", "eth 0"] {
        rig.refused(
            &format!("ifname {ifname:?}"),
            4,
            Req("bridge", "c1", ifname, &ctr, &conf),
        );
    }
    for name in [
        "../escape",
        "a/b",
        "..",
        &long,
        "-dash-first",
        "sp ace",
        "nul\u{0}byte",
    ] {
        let mut c = rig.bridge();
        c["name"] = name.into();
        rig.refused(
            &format!("network name {name:?}"),
            7,
            Req("bridge", "c1", "eth0", &ctr, &bytes(&c)),
        );
    }
}

#[test]
fn netns_that_is_not_a_netns() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hostile-netns");
    let conf = bytes(&rig.bridge());
    let file = rig.tmp.write("not-a-netns", "x");
    let dir = rig.tmp.join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let gone = {
        let ns = TestNs::new("hostile-gone");
        let p = ns.path().to_str().unwrap().to_string();
        drop(ns);
        p
    };
    let own = format!("/proc/{}/ns/net", std::process::id());
    for (what, netns) in [
        ("a regular file", file.to_str().unwrap()),
        ("a directory", dir.to_str().unwrap()),
        ("a vanished process's netns", gone.as_str()),
        ("a path that never existed", "/nonexistent/ns"),
    ] {
        rig.refused(
            &format!("CNI_NETNS {what}"),
            4,
            Req("bridge", "c1", "eth0", netns, &conf),
        );
    }
    // The plugin's own netns (the fake host) as the container's: refused before anything is done.
    let host_ns = format!("/proc/{}/ns/net", rig.pair.host.pid());
    let _ = own;
    let out = rig.call("bridge", "ADD", "c1", "eth0", &host_ns, &conf);
    assert!(
        out.error_code().is_some(),
        "the host's own netns as the container's:\n{out}"
    );
}

#[test]
fn huge_and_deep_configs() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hostile-size");
    let ctr = rig.ctr();
    // 10 MB: an unknown key holding a long string. Valid JSON; read, parsed, the key ignored.
    let mut big = rig.bridge();
    big["padding"] = "x".repeat(10 << 20).into();
    let out = rig.call("bridge", "ADD", "big", "eth0", &ctr, &bytes(&big));
    assert_eq!(
        out.code, 0,
        "a 10 MB config with an unknown key:\n{}",
        out.stderr
    );
    rig.call("bridge", "DEL", "big", "eth0", &ctr, &bytes(&big))
        .ok();
    // Deeply nested JSON: refused as bad config, never a stack overflow.
    for depth in [200, 100_000] {
        let nested = format!(
            "{{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"type\":\"bridge\",\"x\":{}1{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        rig.refused(
            &format!("nesting {depth}"),
            6,
            Req("bridge", "c1", "eth0", &ctr, nested.as_bytes()),
        );
    }
    rig.refused(
        "not JSON",
        6,
        Req("bridge", "c1", "eth0", &ctr, b"\xff\xfe{"),
    );
    rig.refused("empty stdin", 6, Req("bridge", "c1", "eth0", &ctr, b""));
}

#[test]
fn bad_ipam_ranges() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hostile-ranges");
    let ctr = rig.ctr();
    let data = rig.data();
    let cases = [
        (
            "overlapping ranges",
            json!([[{"subnet": "10.72.0.0/24"}], [{"subnet": "10.72.0.128/25"}]]),
        ),
        (
            "overlap in one set",
            json!([[{"subnet": "10.72.0.0/24"}, {"subnet": "10.72.0.0/25"}]]),
        ),
        ("an empty set", json!([[]])),
        ("no ranges", json!([])),
        ("a /0", json!([[{"subnet": "0.0.0.0/0"}]])),
        ("an IPv6 /0", json!([[{"subnet": "::/0"}]])),
        ("a /32 with no room", json!([[{"subnet": "10.72.1.1/32"}]])),
        (
            "start after end",
            json!([[{"subnet": "10.72.2.0/24", "rangeStart": "10.72.2.200", "rangeEnd": "10.72.2.10"}]]),
        ),
        (
            "start outside",
            json!([[{"subnet": "10.72.3.0/24", "rangeStart": "10.9.9.9"}]]),
        ),
    ];
    for (what, ranges) in cases {
        let c = json!({"cniVersion": "1.1.0", "name": "hostile", "type": "bridge",
                       "ipam": {"type": "host-local", "dataDir": data, "ranges": ranges}});
        let before = rig.state();
        let out = rig.call("host-local", "ADD", "c1", "eth0", &ctr, &bytes(&c));
        assert_ne!(out.code, 0, "{what}: accepted:\n{out}");
        assert!(out.error_code().is_some(), "{what}: no CNI error:\n{out}");
        assert!(!out.stderr.contains("panicked"), "{what}: panicked:\n{out}");
        assert_eq!(rig.state(), before, "{what}: something changed");
    }
}

#[test]
fn data_dir_that_is_a_symlink_elsewhere() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hostile-symlink");
    let ctr = rig.ctr();
    let elsewhere = TempDir::new("hostile-elsewhere");
    let link = rig.tmp.join("data");
    std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
    let conf = bytes(&rig.bridge());
    rig.refused(
        "dataDir a symlink",
        7,
        Req("host-local", "c1", "eth0", &ctr, &conf),
    );
    assert_eq!(
        tree(elsewhere.path()),
        Vec::<String>::new(),
        "wrote through the symlink"
    );
    // The network directory as a symlink, too.
    std::fs::remove_file(&link).unwrap();
    std::fs::create_dir(&link).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), link.join("hostile")).unwrap();
    rig.refused(
        "network dir a symlink",
        7,
        Req("host-local", "c1", "eth0", &ctr, &conf),
    );
    assert_eq!(
        tree(elsewhere.path()),
        Vec::<String>::new(),
        "wrote through the symlink"
    );
    let _ = Path::new("/");
}
