//! The default pod network end to end: `loopback` on `lo`, then the chain bridge (+ host-local,
//! ipMasq) -> portmap -> bandwidth -> tuning on `eth0`, for cniVersion 0.3.1, 0.4.0, 1.0.0 and
//! 1.1.0 and both netfilter backends (bridge's `ipMasqBackend` and portmap's `backend`).
//!
//! Two drivers run the same lifecycle: the runtime tool (`net add/check/del` with its own
//! conf and cache dirs; it runs our plugins in process, chaining `prevResult` and injecting
//! `portMappings` and `bandwidth` as capability args), and the test itself calling each
//! plugin through its farm symlink, chaining the results by hand. The oracles are independent
//! of the plugins: real TCP and UDP through the host port (from an outside netns, from the
//! fake host via 127.0.0.1, from the container to its own host port) and masqueraded traffic
//! out; `tc -j` for the limits; `ip -j` and `/proc/sys` for tuning (and, by hand, the values
//! restored once tuning's DEL ran); the result checked against the links it names; CHECK
//! passes, and fails once a piece is removed (the tbf or the DNAT rule). After DEL (twice)
//! nothing is left: see [`residue`].

use crate::podnet::{addresses, reservations};
use crate::support::echo::{Ask, Servers, expect_answers, tcp_ask};
use crate::support::ipam::tree;
use crate::support::residue::host_residue;
use crate::support::runtime::NetTool;
use crate::support::tc::{root_qdisc, tc_json};
use crate::support::traffic::Outside;
use crate::support::{Cni, Farm, Outcome, Pair, TempDir, TestNs, require_root, skip};
use serde_json::{Value, json};
use std::cell::RefCell;

pub(crate) const NET: &str = "chainnet";
pub(crate) const BRIDGE: &str = "cni-chain0";
const VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const MAC: &str = "02:42:0a:42:00:99";
/// The limits, in bit/s and bits: generous enough not to slow the echo traffic.
const INGRESS: (u64, u64) = (8_000_000, 400_000);
const EGRESS: (u64, u64) = (16_000_000, 800_000);

/// The chain's plugins after loopback, in order: bridge, portmap, bandwidth and, unless
/// `tuning_dir` is `None`, tuning. `hairpinMode`: br_netfilter (loaded here, and on by default
/// in every new netns then) DNATs a container's connection to its own host port at the bridge
/// and bridges it back out of the port it came in on.
pub(crate) fn plugins(backend: &str, ipam: &TempDir, tuning_dir: Option<&TempDir>) -> Vec<Value> {
    let mut p = vec![
        json!({"type": "bridge", "bridge": BRIDGE, "isDefaultGateway": true,
               "ipMasq": true, "ipMasqBackend": backend, "hairpinMode": true,
               "ipam": {"type": "host-local", "dataDir": ipam.path(),
                        "ranges": [[{"subnet": "10.66.0.0/16"}], [{"subnet": "fd66::/64"}]]}}),
        json!({"type": "portmap", "backend": backend, "capabilities": {"portMappings": true}}),
        json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
    ];
    if let Some(dir) = tuning_dir {
        p.push(
            json!({"type": "tuning", "dataDir": dir.path(), "mac": MAC, "mtu": 1400,
                      "txQLen": 77, "promisc": true, "allmulti": true,
                      "sysctl": {"net.ipv4.conf.IFNAME.log_martians": "1"}}),
        );
    }
    p
}

/// The capability args a runtime passes: `portMappings` and both limits.
pub(crate) fn cap_args(port_mappings: Value) -> Value {
    json!({
        "portMappings": port_mappings,
        "bandwidth": {"ingressRate": INGRESS.0, "ingressBurst": INGRESS.1,
                      "egressRate": EGRESS.0, "egressBurst": EGRESS.1}
    })
}

/// One TCP and one UDP mapping to the echo servers.
fn mappings() -> Value {
    json!([{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"},
           {"hostPort": 15353, "containerPort": 5353, "protocol": "udp"}])
}

/// One run of the lifecycle.
struct Case<'a> {
    rig: &'a Rig,
    version: &'a str,
    backend: &'a str,
    id: String,
    list: Value,
}

impl Case<'_> {
    fn what(&self) -> String {
        format!("{} {}", self.backend, self.version)
    }

    fn has_check(&self) -> bool {
        self.version != "0.3.1"
    }
}

/// The fake host (with an outside netns hanging off it), the container, echo servers in both,
/// and the plugins' state dirs.
struct Rig {
    pair: Pair,
    outside: Outside,
    _servers: (Servers, Servers),
    ipam: TempDir,
    tuning: TempDir,
}

impl Rig {
    fn new(label: &str) -> Rig {
        let pair = Pair::new(label);
        // No DAD on the bridge's gateway addresses, so IPv6 works at once.
        pair.host.sh(
            "ip link set lo up && echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad \
             && echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad",
        );
        let outside = Outside::new(&pair.host, label);
        let servers = (
            Servers::start(&pair.container, 8080, 5353),
            Servers::start(&outside.ns, 9090, 9053),
        );
        Rig {
            pair,
            outside,
            _servers: servers,
            ipam: TempDir::new(&format!("{label}-ipam")),
            tuning: TempDir::new(&format!("{label}-tuning")),
        }
    }
}

/// Runs the chain for a [`Case`]: ADD returns the final result (in the case's version).
trait Driver {
    fn add(&self, c: &Case) -> Value;
    fn check(&self, c: &Case, result: &Value) -> Outcome;
    /// `first` is the DEL that finds everything in place.
    fn del(&self, c: &Case, result: &Value, first: bool);
}

/// The runtime tool, with the two networks written to its conf dir.
struct Runtime(NetTool);

impl Runtime {
    fn net(&self, c: &Case, verb: &str, network: &str, ifname: &str) -> Outcome {
        let netns = c.rig.pair.container.path().to_str().unwrap();
        let caps = cap_args(mappings()).to_string();
        let mut args = vec![
            verb,
            network,
            netns,
            "--container-id",
            &c.id,
            "--ifname",
            ifname,
        ];
        args.extend(["--cap-args", &caps]);
        if verb == "add" {
            args.push("--json");
        }
        self.0.run(&c.rig.pair.host, &args)
    }
}

impl Driver for Runtime {
    fn add(&self, c: &Case) -> Value {
        let lo = json!({"cniVersion": c.version, "name": "cni-loopback", "type": "loopback"});
        self.0.write("99-loopback.conf", &lo);
        self.0.write("10-chain.conflist", &c.list);
        self.net(c, "add", "cni-loopback", "lo").ok();
        let result = self.net(c, "add", NET, "eth0").result().clone();
        let cached = self.0.cached_result(NET, &c.id, "eth0").expect("cached");
        assert_eq!(cached["cniVersion"], c.version, "as tuning gave it");
        result
    }

    fn check(&self, c: &Case, _: &Value) -> Outcome {
        self.net(c, "check", "cni-loopback", "lo").ok();
        self.net(c, "check", NET, "eth0")
    }

    fn del(&self, c: &Case, _: &Value, _: bool) {
        self.net(c, "del", NET, "eth0").ok();
        self.net(c, "del", "cni-loopback", "lo").ok();
        assert_eq!(self.0.cached_files(), Vec::<String>::new(), "{}", c.what());
    }
}

/// Each plugin through its farm symlink, the test chaining `prevResult` and injecting
/// `runtimeConfig` as libcni does; remembers eth0 as it was before tuning.
struct ByHand {
    untuned: RefCell<Option<Tuned>>,
}

impl ByHand {
    fn call(c: &Case, plugin: &Value, verb: &str, prev: Option<&Value>, ifname: &str) -> Outcome {
        let mut conf = plugin.clone();
        conf["cniVersion"] = json!(c.version);
        conf["name"] = c.list["name"].clone();
        let caps = cap_args(mappings());
        for (cap, on) in plugin["capabilities"].as_object().into_iter().flatten() {
            if on == true && caps.get(cap).is_some() {
                conf["runtimeConfig"][cap] = caps[cap].clone();
            }
        }
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        Cni::new(Farm::shared(), plugin["type"].as_str().unwrap())
            .command(verb)
            .container_id(&c.id)
            .netns(c.rig.pair.container.path())
            .ifname(ifname)
            .config(conf)
            .run_in(&c.rig.pair.host)
    }

    fn plugins<'a>(c: &'a Case) -> &'a Vec<Value> {
        c.list["plugins"].as_array().unwrap()
    }
}

const LOOPBACK: fn() -> Value = || json!({"type": "loopback"});

impl Driver for ByHand {
    fn add(&self, c: &Case) -> Value {
        Self::call(c, &LOOPBACK(), "ADD", None, "lo").ok();
        let mut prev: Option<Value> = None;
        for p in Self::plugins(c) {
            if p["type"] == "tuning" {
                *self.untuned.borrow_mut() = Some(tuned(&c.rig.pair.container));
            }
            let out = Self::call(c, p, "ADD", prev.as_ref(), "eth0");
            prev = Some(out.result().clone());
        }
        prev.unwrap()
    }

    fn check(&self, c: &Case, result: &Value) -> Outcome {
        Self::call(c, &LOOPBACK(), "CHECK", None, "lo").ok();
        let mut last = None;
        for p in Self::plugins(c) {
            let out = Self::call(c, p, "CHECK", Some(result), "eth0");
            if out.code != 0 {
                return out;
            }
            last = Some(out);
        }
        last.unwrap()
    }

    fn del(&self, c: &Case, result: &Value, first: bool) {
        // libcni hands DEL the cached result from 0.4.0 on.
        let prev = c.has_check().then_some(result);
        for p in Self::plugins(c).iter().rev() {
            Self::call(c, p, "DEL", prev, "eth0").ok();
            if p["type"] == "tuning" && first {
                let before = self.untuned.borrow().clone().expect("ADD saw eth0");
                let after = tuned(&c.rig.pair.container);
                // Sysctls are not restored (they die with the netns), as in the reference.
                assert_eq!(after.link, before.link, "{}: tuning DEL restores", c.what());
            }
        }
        Self::call(c, &LOOPBACK(), "DEL", None, "lo").ok();
    }
}

/// What tuning changes on eth0: (MAC, MTU, txqlen, PROMISC, ALLMULTI), and log_martians.
#[derive(Debug, Clone, PartialEq)]
struct Tuned {
    link: (String, u64, u64, bool, bool),
    log_martians: String,
}

fn tuned(ctr: &TestNs) -> Tuned {
    let l = ctr.link("eth0").expect("eth0 in the container");
    let flag = |f: &str| l["flags"].as_array().unwrap().iter().any(|x| x == f);
    let martians = ctr.run(["cat", "/proc/sys/net/ipv4/conf/eth0/log_martians"]);
    Tuned {
        link: (
            l["address"].as_str().unwrap().to_string(),
            l["mtu"].as_u64().unwrap(),
            l["txqlen"].as_u64().unwrap(),
            flag("PROMISC"),
            flag("ALLMULTI"),
        ),
        log_martians: martians.trim().to_string(),
    }
}

/// The final result names what exists, in the requested version, with every plugin's part:
/// bridge's interfaces, addresses and routes, bandwidth's IFB, tuning's MAC. Returns the names
/// of the host veth and the IFB.
fn expect_result(c: &Case, r: &Value) -> (String, String) {
    let (what, host, ctr) = (c.what(), &c.rig.pair.host, &c.rig.pair.container);
    assert_eq!(r["cniVersion"], c.version, "{what}: {r}");
    let ifs = r["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifs.len(), 4, "{what}: bridge, host veth, eth0, IFB: {r}");
    assert_eq!(ifs[0]["name"], BRIDGE, "{what}");
    let veth = ifs[1]["name"].as_str().unwrap().to_string();
    assert_eq!(host.link(&veth).expect("host veth")["master"], BRIDGE);
    assert_eq!(ifs[2]["name"], "eth0");
    assert_eq!(
        ifs[2]["sandbox"],
        c.rig.pair.container.path().to_str().unwrap()
    );
    assert_eq!(ifs[2]["mac"], MAC, "{what}: tuning's MAC in the result");
    let ifb = ifs[3]["name"].as_str().unwrap().to_string();
    assert!(ifb.starts_with("bwp"), "{what}: {r}");
    assert_eq!(
        host.link(&ifb).expect("IFB")["linkinfo"]["info_kind"],
        "ifb"
    );
    let mut ips: Vec<&str> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["interface"], 2, "{what}: {r}");
            let v6 = i["address"].as_str().unwrap().contains(':');
            let gw = if v6 { "fd66::1" } else { "10.66.0.1" };
            assert_eq!(i["gateway"], gw, "{what}: {r}");
            if c.version < "1.0.0" {
                assert_eq!(i["version"], if v6 { "6" } else { "4" }, "{what}: {r}");
            }
            i["address"].as_str().unwrap()
        })
        .collect();
    ips.sort();
    let mut held = addresses(ctr, "eth0");
    held.sort();
    assert_eq!(ips, held, "{what}: the result's addresses are eth0's");
    let routes: Vec<&Value> = r["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["dst"])
        .collect();
    assert_eq!(routes, ["0.0.0.0/0", "::/0"], "{what}: {r}");
    (veth, ifb)
}

/// `tc -j`: a tbf at the ingress rate on the host veth, its ingress redirected to the IFB,
/// a tbf at the egress rate there.
fn expect_limits(c: &Case, veth: &str, ifb: &str) {
    let host = &c.rig.pair.host;
    let q = root_qdisc(host, veth);
    assert_eq!(
        (q["kind"].as_str(), q["options"]["rate"].as_u64()),
        (Some("tbf"), Some(INGRESS.0 / 8)),
        "{}",
        c.what()
    );
    let q = root_qdisc(host, ifb);
    assert_eq!(
        (q["kind"].as_str(), q["options"]["rate"].as_u64()),
        (Some("tbf"), Some(EGRESS.0 / 8)),
        "{}",
        c.what()
    );
    let filters = tc_json(host, &["filter", "show", "dev", veth, "parent", "ffff:"]);
    let to_dev = filters
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f["options"]["actions"][0]["to_dev"].as_str());
    assert_eq!(to_dev, Some(ifb), "{}", c.what());
}

/// Port-forwarded traffic from everywhere, and masqueraded traffic out.
fn expect_traffic(c: &Case) {
    let (out, host, ctr) = (&c.rig.outside.ns, &c.rig.pair.host, &c.rig.pair.container);
    expect_answers(
        &c.what(),
        &[
            Ask::tcp(out, "198.51.100.1:18080", "198.51.100.2"),
            Ask::tcp(out, "[2001:db8:51::1]:18080", "2001:db8:51::2"),
            Ask::udp(out, "198.51.100.1:15353", "198.51.100.2"),
            Ask::udp(out, "[2001:db8:51::1]:15353", "2001:db8:51::2"),
            Ask::tcp(host, "127.0.0.1:18080", "10.66.0.1"),
            Ask::tcp(ctr, "10.66.0.1:18080", "10.66.0.1"),
            Ask::tcp(ctr, "198.51.100.1:18080", "10.66.0.1"),
            Ask::tcp(ctr, "[fd66::1]:18080", "fd66::1"),
            Ask::udp(ctr, "10.66.0.1:15353", "10.66.0.1"),
            Ask::tcp(ctr, "198.51.100.2:9090", "198.51.100.1"),
            Ask::tcp(ctr, "[2001:db8:51::2]:9090", "2001:db8:51::1"),
        ],
    );
}

/// Removes one piece the chain made: the ingress tbf, or (1.0.0) the IPv4 DNAT rules.
fn break_a_piece(c: &Case, veth: &str) -> &'static str {
    let host = &c.rig.pair.host;
    if c.version != "1.0.0" {
        host.run(["tc", "qdisc", "del", "dev", veth, "root"]);
        return "the tbf";
    }
    if c.backend == "iptables" {
        let nat = host.run(["iptables-save", "-t", "nat"]);
        let chain = nat
            .lines()
            .find_map(|l| l.strip_prefix(":CNI-DN-"))
            .expect("a DNAT chain");
        let chain = format!("CNI-DN-{}", chain.split(' ').next().unwrap());
        host.run(["iptables", "-t", "nat", "-F", &chain]);
    } else {
        let rules = host.run([
            "nft",
            "-a",
            "list",
            "chain",
            "ip",
            "cni_hostport",
            "hostports",
        ]);
        for l in rules
            .lines()
            .filter(|l| l.contains(&format!("\"{}\"", c.id)))
        {
            let handle = l.rsplit("# handle ").next().unwrap().trim();
            host.run([
                "nft",
                "delete",
                "rule",
                "ip",
                "cni_hostport",
                "hostports",
                "handle",
                handle,
            ]);
        }
    }
    "the DNAT rules"
}

/// Everything the chain could leave: in the fake host (see
/// [`host_residue`]: veths but the outside's, IFBs, netfilter beyond the shared skeleton,
/// qdiscs), host-local reservations, tuning backups.
pub(crate) fn residue(host: &TestNs, ipam: &TempDir, tuning: Option<&TempDir>) -> Vec<String> {
    let mut left = host_residue(host, &["out0"]);
    let held = reservations(ipam, NET).into_iter();
    left.extend(held.map(|a| format!("host-local {a}")));
    if let Some(dir) = tuning {
        left.extend(tree(dir.path()).into_iter().map(|f| format!("tuning {f}")));
    }
    left
}

pub(crate) fn have_tools() -> bool {
    ["nft", "iptables-save", "ip6tables-save", "tc"]
        .iter()
        .all(|t| {
            std::process::Command::new(t)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// ADD, every oracle, CHECK (and CHECK after a piece is gone), DEL twice, no residue.
fn lifecycle(c: &Case, driver: &dyn Driver) {
    let what = c.what();
    let result = driver.add(c);
    let (veth, ifb) = expect_result(c, &result);
    let lo = c.rig.pair.container.link("lo").unwrap();
    assert!(
        lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{what}: lo up"
    );
    let now = tuned(&c.rig.pair.container);
    assert_eq!(now.link, (MAC.into(), 1400, 77, true, true), "{what}");
    assert_eq!(now.log_martians, "1", "{what}");
    assert_eq!(
        tree(c.rig.tuning.path()),
        [format!("{}_eth0.json", c.id)],
        "{what}"
    );
    expect_limits(c, &veth, &ifb);
    expect_traffic(c);
    if c.has_check() {
        driver.check(c, &result).ok();
        let piece = break_a_piece(c, &veth);
        let out = driver.check(c, &result);
        assert_ne!(out.code, 0, "{what}: CHECK passed without {piece}:\n{out}");
    }
    driver.del(c, &result, true);
    assert!(
        tcp_ask(&c.rig.outside.ns, "198.51.100.1:18080").is_err(),
        "{what}: forwarded after DEL"
    );
    driver.del(c, &result, false);
    let left = residue(&c.rig.pair.host, &c.rig.ipam, Some(&c.rig.tuning));
    assert_eq!(left, Vec::<String>::new(), "{what}: left behind");
}

fn every_version(backend: &str, label: &str, driver: &dyn Driver) {
    if !require_root() {
        return;
    }
    if !have_tools() {
        skip!("needs nft, iptables-save, ip6tables-save and tc as oracles");
    }
    let rig = Rig::new(label);
    for version in VERSIONS {
        let c = Case {
            rig: &rig,
            version,
            backend,
            id: format!("{label}-{}", version.replace('.', "")),
            list: json!({"cniVersion": version, "name": NET,
                         "plugins": plugins(backend, &rig.ipam, Some(&rig.tuning))}),
        };
        lifecycle(&c, driver);
    }
}

#[test]
fn runtime_tool_iptables() {
    every_version(
        "iptables",
        "chain-rt-ipt",
        &Runtime(NetTool::new("chain-rt-ipt")),
    );
}

#[test]
fn runtime_tool_nftables() {
    every_version(
        "nftables",
        "chain-rt-nft",
        &Runtime(NetTool::new("chain-rt-nft")),
    );
}

#[test]
fn plugin_by_plugin_iptables() {
    every_version(
        "iptables",
        "chain-bh-ipt",
        &ByHand {
            untuned: RefCell::new(None),
        },
    );
}

#[test]
fn plugin_by_plugin_nftables() {
    every_version(
        "nftables",
        "chain-bh-nft",
        &ByHand {
            untuned: RefCell::new(None),
        },
    );
}
