//! The runtime tool end to end (FEATURES.md Parts 3 and 4): `net` and `cnitool` from the farm,
//! run inside a fake host netns against a container netns, with `NETCONFPATH` holding conflists
//! from `testdata/netconf/runtime/` (`@DIR@` replaced by the test's temp dir, where host-local's
//! `dataDir`, tuning's backups and the result cache live). Every verb over a chain of our
//! plugins, checked against the kernel, the host-local store and the cache; libcni's cache
//! format read back for DEL and GC; an empty cache file that must not block DEL; two networks
//! (bridge on eth0, ptp on net1) on one container, attached and detached one by one. Bad input
//! and the in-process proof are in `runtime_bad.rs`.

use crate::support::{Cni, Farm, Outcome, Pair, TempDir};
use serde_json::Value;
use sha2::{Digest, Sha512};
use std::path::{Path, PathBuf};

/// The MTU of a fresh `lo`.
pub const LO_MTU: u64 = 65536;

/// A fake host and a container, a temp dir with `conf/`, and the `CNI_PATH` to use.
pub struct Rig {
    /// host: where the tool runs; container: the netns attached.
    pub pair: Pair,
    /// `conf/` (NETCONFPATH), `cache/`, `ipam/` (host-local), `tuning/`, `fake.log`.
    pub dir: TempDir,
    cni_path: String,
}

impl Rig {
    /// A rig whose conf dir holds the named templates of `testdata/netconf/runtime/`.
    pub fn new(label: &str, templates: &[&str]) -> Rig {
        let dir = TempDir::new(&format!("rt-{label}"));
        for t in templates {
            let text = std::fs::read_to_string(testdata(&format!("netconf/runtime/{t}")))
                .unwrap_or_else(|e| panic!("template {t}: {e}"));
            dir.write(
                format!("conf/{t}"),
                text.replace("@DIR@", dir.path().to_str().expect("UTF-8 temp dir")),
            );
        }
        Rig {
            pair: Pair::new(&format!("rt-{label}")),
            dir,
            cni_path: Farm::shared().dir().display().to_string(),
        }
    }

    /// Appends a directory to `CNI_PATH` (after the farm, so the farm wins).
    pub fn also_path(mut self, dir: &Path) -> Rig {
        self.cni_path = format!("{}:{}", self.cni_path, dir.display());
        self
    }

    /// The call of tool `applet` (`net` or `cnitool`) with `args`, not yet run: `CNI_PATH`,
    /// `NETCONFPATH` and `--cache-dir` set.
    pub fn tool(&self, applet: &str, args: &[&str]) -> Cni {
        let cache = self.dir.join("cache");
        let call = Cni::new(Farm::shared(), applet)
            .path(&self.cni_path)
            .env("NETCONFPATH", self.dir.join("conf").to_str().unwrap())
            .arg("--cache-dir")
            .arg(cache);
        args.iter().fold(call, |c, a| c.arg(*a))
    }

    /// `net ARGS...` in the fake host.
    pub fn net(&self, args: &[&str]) -> Outcome {
        self.tool("net", args).run_in(&self.pair.host)
    }

    /// The container netns path, as the tool's NETNS argument.
    pub fn netns(&self) -> String {
        self.pair.container.path().display().to_string()
    }

    /// The addresses host-local holds for `network`.
    pub fn reservations(&self, network: &str) -> Vec<String> {
        files(&self.dir.join("ipam").join(network))
            .into_iter()
            .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// What host-local recorded for `ip` of `network` (`<id>\r\n<ifname>`).
    pub fn reservation(&self, network: &str, ip: &str) -> String {
        std::fs::read_to_string(self.dir.join("ipam").join(network).join(ip)).unwrap_or_default()
    }

    /// The names of the result cache files.
    pub fn cache_files(&self) -> Vec<String> {
        files(&self.dir.join("cache/results"))
    }

    /// One cache file, parsed.
    pub fn cache(&self, network: &str, id: &str, ifname: &str) -> Value {
        let p = self
            .dir
            .join(format!("cache/results/{network}-{id}-{ifname}"));
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_slice(&bytes).expect("cache JSON")
    }

    /// Whether the container's `lo` is up (loopback's doing) and its MTU (tuning's).
    pub fn lo_state(&self) -> (bool, u64) {
        let lo = self.pair.container.link("lo").expect("lo");
        let up = lo["flags"].as_array().unwrap().iter().any(|f| f == "UP");
        (up, lo["mtu"].as_u64().unwrap())
    }

    /// The veths in the fake host.
    pub fn host_veths(&self) -> Vec<String> {
        let links = self.pair.host.ip_json(&["-d", "link", "show"]);
        let links = links.as_array().unwrap().iter();
        links
            .filter(|l| l["linkinfo"]["info_kind"] == "veth")
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// The container's IPv4 addresses of `ifname` (`address/prefix`), none when it is absent.
    pub fn container_addrs(&self, ifname: &str) -> Vec<String> {
        if self.pair.container.link(ifname).is_none() {
            return Vec::new();
        }
        let addrs = self.pair.container.ip_json(&["-4", "addr", "show", ifname]);
        addrs[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    /// The lines the `fake` plugin logged: (tag, verb, container, netns, ifname, args, stdin).
    pub fn fake_log(&self) -> Vec<FakeCall> {
        let text = std::fs::read_to_string(self.dir.join("fake.log")).unwrap_or_default();
        text.lines().map(FakeCall::parse).collect()
    }
}

/// One call the `fake` test plugin logged.
#[derive(Debug, Clone)]
pub struct FakeCall {
    /// CNI_COMMAND.
    pub verb: String,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS.
    pub netns: String,
    /// CNI_ARGS.
    pub args: String,
    /// The config it got.
    pub stdin: Value,
}

impl FakeCall {
    fn parse(line: &str) -> FakeCall {
        let f: Vec<&str> = line.splitn(8, '|').collect();
        assert_eq!(f.len(), 8, "fake log line: {line}");
        FakeCall {
            verb: f[1].into(),
            container_id: f[2].into(),
            netns: f[3].into(),
            args: f[5].into(),
            stdin: serde_json::from_str(f[7]).expect("fake stdin JSON"),
        }
    }
}

/// `<repo>/testdata/<rel>`.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata")).join(rel)
}

/// The sorted names in `dir` (none when it does not exist).
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// cnitool's container ID for a netns path: `cnitool-` + hex of SHA-512's first 10 bytes.
pub fn cnitool_id(netns: &str) -> String {
    let digest = Sha512::digest(netns.as_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("cnitool-{hex}")
}

#[test]
fn every_verb_over_a_chain_of_our_plugins() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("verbs", &["chain.conflist"]);
    let ns = rig.netns();
    let id = cnitool_id(&ns);
    assert_eq!(rig.lo_state(), (false, LO_MTU));
    let status = rig.net(&["status", "rtchain"]);
    assert_eq!(status.ok().stdout, "rtchain: ready\n");

    let add = rig.net(&["add", "rtchain", &ns, "-i", "lo"]);
    assert!(
        add.ok().stdout.contains("10.91.0.2/24 gateway 10.91.0.1"),
        "{add}"
    );
    assert!(add.stdout.contains(&format!("(container {id})")), "{add}");
    assert_eq!(rig.lo_state(), (true, 9000), "loopback and tuning ran");
    assert_eq!(rig.reservations("rtchain"), ["10.91.0.2"]);
    assert_eq!(
        rig.reservation("rtchain", "10.91.0.2"),
        format!("{id}\r\nlo")
    );
    assert_eq!(rig.cache_files(), [format!("rtchain-{id}-lo")]);
    let cache = rig.cache("rtchain", &id, "lo");
    assert_eq!(cache["kind"], "cniCacheV1");
    assert_eq!(cache["containerId"], id.as_str());
    assert_eq!(cache["netns"], ns.as_str());
    assert_eq!(cache["result"]["cniVersion"], "1.1.0");
    assert_eq!(cache["result"]["ips"][0]["address"], "10.91.0.2/24");

    let check = rig.net(&["check", "rtchain", &ns, "-i", "lo"]);
    assert_eq!(check.ok().stdout, format!("rtchain lo in {ns}: checked\n"));
    rig.pair.container.ip(&["link", "set", "lo", "down"]);
    let broken = rig.net(&["check", "rtchain", &ns, "-i", "lo"]);
    assert_eq!(broken.code, 1, "CHECK must see lo down:\n{broken}");
    assert!(broken.stderr.contains("loopback"), "{broken}");
    rig.pair.container.ip(&["link", "set", "lo", "up"]);

    for _ in 0..2 {
        let del = rig.net(&["del", "rtchain", &ns, "-i", "lo"]);
        assert_eq!(del.ok().stdout, format!("rtchain lo in {ns}: deleted\n"));
        assert_eq!(rig.lo_state(), (false, LO_MTU), "restored by DEL");
        assert!(rig.reservations("rtchain").is_empty());
        assert!(rig.cache_files().is_empty());
        assert!(
            files(&rig.dir.join("tuning")).is_empty(),
            "tuning backup left"
        );
    }
}

#[test]
fn gc_deletes_every_cached_attachment_of_the_network() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("gc", &["chain.conflist"]);
    let (ns, other) = (rig.netns(), crate::support::TestNs::new("rt-gc-other"));
    let other_ns = other.path().display().to_string();
    rig.net(&["add", "rtchain", &ns, "-i", "lo"]).ok();
    rig.net(&[
        "add",
        "rtchain",
        &other_ns,
        "-i",
        "lo",
        "--container-id",
        "two",
    ])
    .ok();
    assert_eq!(rig.reservations("rtchain").len(), 2);
    assert_eq!(rig.cache_files().len(), 2);
    let gc = rig.net(&["gc", "rtchain"]);
    assert_eq!(gc.ok().stdout, "rtchain: garbage-collected\n");
    assert!(rig.reservations("rtchain").is_empty(), "GC's DELs ran");
    assert!(rig.cache_files().is_empty());
    assert_eq!(rig.lo_state(), (false, LO_MTU));
    let up = other.link("lo").unwrap()["flags"].to_string();
    assert!(!up.contains("\"UP\""), "the other container's lo: {up}");
    assert_eq!(rig.net(&["gc", "rtchain"]).code, 0, "GC of nothing");
}

#[test]
fn cnitool_prints_the_result_as_libcni_returns_it() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("cnitool", &["chain.conflist"]);
    let ns = rig.netns();
    // The interface from the environment, as cnitool reads it.
    let cnitool = |args: &[&str]| {
        let call = rig.tool("cnitool", args).env("CNI_IFNAME", "lo");
        call.run_in(&rig.pair.host)
    };
    let add = cnitool(&["add", "rtchain", &ns]).ok().clone();
    let result = add.json.as_ref().expect("the result JSON");
    assert_eq!(result["cniVersion"], "1.1.0", "{add}");
    assert_eq!(result["ips"][0]["address"], "10.91.0.2/24", "{add}");
    assert!(
        add.stdout.starts_with("{\n    \""),
        "indented by four spaces"
    );
    let id = cnitool_id(&ns);
    assert_eq!(rig.cache_files(), [format!("rtchain-{id}-lo")]);
    assert_eq!(
        rig.reservation("rtchain", "10.91.0.2"),
        format!("{id}\r\nlo")
    );
    for verb in ["check", "del", "status", "gc"] {
        let out = cnitool(&[verb, "rtchain", &ns]);
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{verb}: {out}");
    }
    assert!(rig.reservations("rtchain").is_empty());
    assert!(rig.cache_files().is_empty());
}

/// The libcni cache file of `testdata/cache/libcni-rtrec.in` for container `id` in `netns`.
fn libcni_cache(id: &str, netns: &str) -> String {
    std::fs::read_to_string(testdata("cache/libcni-rtrec.in"))
        .unwrap()
        .replace("@ID@", id)
        .replace("@NETNS@", netns)
}

#[test]
fn del_uses_a_cache_file_written_by_libcni() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("libcni-del", &["recorded.conflist"]).also_path(&testdata("plugins"));
    let ns = rig.netns();
    let att = ["rtrec", ns.as_str(), "--container-id", "podlike"];
    rig.net(&[&["add"][..], &att].concat()).ok();
    assert_eq!(rig.reservations("rtrec"), ["10.92.0.2"]);
    // libcni's file (a 1.0.0 runtime's result) replaces ours.
    let file = rig.dir.join("cache/results/rtrec-podlike-eth0");
    std::fs::write(&file, libcni_cache("podlike", &ns)).unwrap();

    rig.net(&[&["del"][..], &att, &["--args", "A=b"]].concat())
        .ok();
    let del = rig.fake_log().pop().expect("the fake plugin's DEL");
    assert_eq!(del.verb, "DEL");
    let prev = &del.stdin["prevResult"];
    assert_eq!(
        prev["cniVersion"], "1.1.0",
        "converted to the list's version"
    );
    assert_eq!(prev["ips"][0]["address"], "10.92.0.77/24", "{prev}");
    assert_eq!(prev["routes"][0]["dst"], "192.0.2.0/24", "{prev}");
    assert_eq!(prev["interfaces"][0]["mac"], "c2:5e:07:91:ab:cd", "{prev}");
    assert_eq!(
        del.args, "A=b",
        "DEL takes the caller's args, not the cached ones"
    );
    assert!(rig.reservations("rtrec").is_empty());
    assert!(rig.cache_files().is_empty(), "removed after DEL");
}

#[test]
fn gc_deletes_an_attachment_known_only_from_a_libcni_cache_file() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("libcni-gc", &["recorded.conflist"]).also_path(&testdata("plugins"));
    let ns = rig.netns();
    rig.dir.write(
        "cache/results/rtrec-fromlibcni-eth0",
        libcni_cache("fromlibcni", &ns),
    );
    rig.net(&["gc", "rtrec"]).ok();
    let log = rig.fake_log();
    let verbs: Vec<&str> = log.iter().map(|c| c.verb.as_str()).collect();
    assert_eq!(verbs, ["DEL", "GC"], "{log:#?}");
    let del = &log[0];
    assert_eq!(del.container_id, "fromlibcni");
    assert_eq!(del.netns, ns, "the cached netns");
    assert_eq!(
        del.args, "IgnoreUnknown=1;K8S_POD_NAME=web&db",
        "the cached args"
    );
    assert_eq!(
        del.stdin["prevResult"]["ips"][0]["address"],
        "10.92.0.77/24"
    );
    assert!(log[1].stdin.get("cni.dev/valid-attachments").is_none());
    assert!(rig.cache_files().is_empty());
}

#[test]
fn an_empty_cache_file_does_not_block_del() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("empty-cache", &["recorded.conflist"]).also_path(&testdata("plugins"));
    let ns = rig.netns();
    rig.net(&["add", "rtrec", &ns, "--container-id", "c1"]).ok();
    assert!(rig.lo_state().0, "lo up after ADD");
    std::fs::write(rig.dir.join("cache/results/rtrec-c1-eth0"), "").unwrap();
    rig.net(&["del", "rtrec", &ns, "--container-id", "c1"]).ok();
    let del = rig.fake_log().pop().unwrap();
    assert_eq!(del.verb, "DEL");
    assert!(del.stdin.get("prevResult").is_none(), "{:?}", del.stdin);
    assert!(rig.reservations("rtrec").is_empty());
    assert!(!rig.lo_state().0, "lo down after DEL");
    assert!(rig.cache_files().is_empty(), "the empty file is removed");
}

#[test]
fn two_networks_on_one_container_keep_results_and_cache_per_interface() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("two-nets", &["bridge.conflist", "ptp.conflist"]);
    let ns = rig.netns();
    let bridge = [
        "rtbridge",
        ns.as_str(),
        "-i",
        "eth0",
        "--container-id",
        "pod1",
    ];
    let ptp = ["rtptp", ns.as_str(), "-i", "net1", "--container-id", "pod1"];
    let verb = |v: &str, att: &[&str]| rig.net(&[&[v][..], att].concat());
    assert!(verb("add", &bridge).ok().stdout.contains("10.94.0.2/24"));
    assert!(verb("add", &ptp).ok().stdout.contains("10.95.0.2/24"));
    assert_eq!(rig.container_addrs("eth0"), ["10.94.0.2/24"]);
    assert_eq!(rig.container_addrs("net1"), ["10.95.0.2/24"]);
    assert_eq!(
        rig.pair.container.link("eth0").unwrap()["mtu"],
        1400,
        "tuning"
    );
    assert_eq!(rig.host_veths().len(), 2);
    assert_eq!(rig.reservation("rtbridge", "10.94.0.2"), "pod1\r\neth0");
    assert_eq!(rig.reservation("rtptp", "10.95.0.2"), "pod1\r\nnet1");
    assert_eq!(rig.cache_files(), ["rtbridge-pod1-eth0", "rtptp-pod1-net1"]);
    for (net, ifname, ip) in [
        ("rtbridge", "eth0", "10.94.0.2/24"),
        ("rtptp", "net1", "10.95.0.2/24"),
    ] {
        let result = &rig.cache(net, "pod1", ifname)["result"];
        assert_eq!(result["ips"][0]["address"], ip, "{result}");
        let i = result["ips"][0]["interface"].as_u64().unwrap() as usize;
        assert_eq!(result["interfaces"][i]["name"], ifname, "{result}");
    }
    for ip in ["10.94.0.2", "10.95.0.2"] {
        rig.pair.host.run(["ping", "-c", "1", "-W", "2", ip]);
    }
    verb("check", &bridge).ok();
    verb("check", &ptp).ok();

    verb("del", &bridge).ok();
    assert!(rig.pair.container.link("eth0").is_none());
    assert_eq!(
        rig.container_addrs("net1"),
        ["10.95.0.2/24"],
        "net1 untouched"
    );
    assert_eq!(rig.host_veths().len(), 1);
    assert!(rig.reservations("rtbridge").is_empty());
    assert_eq!(rig.reservations("rtptp"), ["10.95.0.2"]);
    assert_eq!(rig.cache_files(), ["rtptp-pod1-net1"]);
    verb("check", &ptp).ok();
    rig.pair
        .host
        .run(["ping", "-c", "1", "-W", "2", "10.95.0.2"]);
    let gone = verb("check", &bridge);
    assert_eq!(gone.code, 1, "CHECK of the detached network:\n{gone}");

    verb("del", &ptp).ok();
    assert_eq!(rig.pair.container.link_names(), ["lo"]);
    assert!(rig.host_veths().is_empty());
    assert!(rig.reservations("rtptp").is_empty());
    assert!(rig.cache_files().is_empty());
}
