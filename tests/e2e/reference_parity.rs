//! Kernel objects equal to the reference's: each case builds the same network twice, with our
//! applets and with the reference v1.1.1 binaries in /usr/lib/cni, each in its own throwaway
//! host and container netns (same network name, container ID and ifname), then compares what
//! the kernel holds after ADD and again after DEL: links (`ip -d -j link`), addresses, routes,
//! sysctls, iptables/ip6tables/nft rules and tc, and the result as a runtime of the version
//! reads it (snapshot.rs normalises names, MACs, indexes).
//!
//! Every difference must be a row of the one table in docs/differences.md whose `cases`
//! column names the case and whose `keys` pattern matches the fact, and every such row must
//! match at least one difference of that case: the table, nothing more, nothing less.

#[path = "reference_parity/snapshot.rs"]
mod snapshot;

use crate::support::{Cni, Farm, Pair, TempDir, TestNs, reference_plugin, require_root, skip};
use regex_lite::Regex;
use serde_json::{Value, json};
use snapshot::{Facts, Names};

const TABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/differences.md");
const REF_DIR: &str = "/usr/lib/cni";

/// One row of docs/differences.md, as the comparison uses it.
#[derive(Debug)]
struct Allowed {
    id: String,
    cases: Vec<String>,
    keys: Vec<Regex>,
}

/// The rows with a `keys` pattern (the others are behaviours tested elsewhere).
fn allowed() -> Vec<Allowed> {
    let text = std::fs::read_to_string(TABLE).expect("docs/differences.md");
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells = cells(line);
        assert_eq!(
            cells.len(),
            6,
            "docs/differences.md: a row needs 6 cells: {line}"
        );
        let ticks = |c: &str| -> Vec<String> {
            c.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let keys = ticks(&cells[5]);
        if keys.is_empty() {
            continue;
        }
        rows.push(Allowed {
            id: ticks(&cells[0]).concat(),
            cases: ticks(&cells[4]),
            keys: keys
                .iter()
                .map(|k| Regex::new(k).unwrap_or_else(|e| panic!("bad pattern {k}: {e}")))
                .collect(),
        });
    }
    rows
}

/// The cells of a table row; `\|` inside a cell is a `|` of its text.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().strip_prefix('|').unwrap_or(line);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push(chars.next().unwrap())
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// One side of a case: ours or the reference's, in its own namespaces and IPAM store.
struct Side {
    ours: bool,
    pair: Pair,
    data: TempDir,
    names: Names,
}

impl Side {
    fn new(case: &str, ours: bool) -> Side {
        let who = if ours { "ours" } else { "ref" };
        Side {
            ours,
            pair: Pair::new(&format!("par-{case}-{who}")),
            data: TempDir::new(&format!("par-{case}-{who}")),
            names: Names::default(),
        }
    }

    fn call(&self, plugin: &Value, version: &str, verb: &str, case: &str, ifname: &str) -> Cni {
        let ty = plugin["type"].as_str().unwrap();
        let mut conf = plugin.clone();
        conf["cniVersion"] = json!(version);
        conf["name"] = json!("parity");
        if conf["ipam"]["type"] == "host-local" {
            conf["ipam"]["dataDir"] = json!(self.data.path());
        }
        let cni = if self.ours {
            Cni::new(Farm::shared(), ty)
        } else {
            Cni::at(format!("{REF_DIR}/{ty}")).path(REF_DIR)
        };
        cni.command(verb)
            .container_id(&format!("parity-{case}"))
            .netns(self.pair.container.path())
            .ifname(ifname)
            .config(conf)
    }

    /// Runs the chain's ADD (each plugin gets the previous result), then returns the facts.
    fn add(&mut self, chain: &[Value], version: &str, case: &str, ifname: &str) -> Value {
        let mut prev: Option<Value> = None;
        for p in chain {
            let mut p = p.clone();
            if let Some(r) = &prev {
                p["prevResult"] = r.clone();
            }
            let out = self
                .call(&p, version, "ADD", case, ifname)
                .run_in(&self.pair.host);
            prev = Some(out.result().clone());
        }
        prev.expect("a chain has a plugin")
    }

    fn del(&mut self, chain: &[Value], version: &str, case: &str, ifname: &str, last: &Value) {
        for p in chain.iter().rev() {
            let mut p = p.clone();
            if version >= "0.4.0" {
                p["prevResult"] = last.clone();
            }
            let out = self
                .call(&p, version, "DEL", case, ifname)
                .run_in(&self.pair.host);
            out.ok();
        }
    }

    /// The kernel state of both namespaces once it is at rest: no address in DAD, no link
    /// state change pending, and two readings half a second apart equal (at most 10 s).
    fn facts(&mut self, phase: &str) -> Facts {
        let mut last = Facts::new();
        for _ in 0..20 {
            let busy =
                snapshot::settling(&self.pair.host) || snapshot::settling(&self.pair.container);
            let now = self.read(phase);
            if !busy && now == last {
                break;
            }
            last = now;
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        last
    }

    fn read(&mut self, phase: &str) -> Facts {
        let netns = self.pair.container.path().display().to_string();
        let mut f = Facts::new();
        for (side, ns) in [("host", &self.pair.host), ("ctr", &self.pair.container)] {
            let ns: &TestNs = ns;
            for (k, v) in snapshot::kernel(ns, side, &mut self.names, &netns) {
                f.insert(format!("{phase} {k}"), v);
            }
        }
        f
    }
}

/// The keys whose values differ, each as `key: ours=.. ref=..`.
fn differences(ours: &Facts, reference: &Facts) -> Vec<(String, String)> {
    let mut keys: Vec<&String> = ours.keys().chain(reference.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| ours.get(*k) != reference.get(*k))
        .map(|k| {
            let show = |f: &Facts| f.get(k).cloned().unwrap_or_else(|| "(none)".into());
            (
                k.clone(),
                format!("ours={} ref={}", show(ours), show(reference)),
            )
        })
        .collect()
}

/// Builds `chain` with both, compares, and holds the differences to the table.
fn compare(case: &str, chain: &[Value], version: &str, ifname: &str) {
    let needed = chain.iter().map(|p| p["type"].as_str().unwrap());
    for ty in needed.chain(["host-local"]) {
        assert!(
            reference_plugin(ty).is_some(),
            "reference {ty} not in {REF_DIR} (make deps installs containernetworking-plugins)"
        );
    }
    let (mut ours, mut theirs) = (Side::new(case, true), Side::new(case, false));
    let mut facts = [Facts::new(), Facts::new()];
    for (i, side) in [&mut ours, &mut theirs].into_iter().enumerate() {
        let result = side.add(chain, version, case, ifname);
        let netns = side.pair.container.path().display().to_string();
        facts[i].extend(side.facts("add"));
        for (k, v) in snapshot::result(&result, version, &mut side.names, &netns) {
            facts[i].insert(format!("add {k}"), v);
        }
        side.del(chain, version, case, ifname, &result);
        facts[i].extend(side.facts("del"));
    }
    let diffs = differences(&facts[0], &facts[1]);
    let rows: Vec<Allowed> = allowed()
        .into_iter()
        .filter(|r| r.cases.iter().any(|c| c == case))
        .collect();
    let unexplained: Vec<String> = diffs
        .iter()
        .filter(|(k, _)| !rows.iter().any(|r| r.keys.iter().any(|re| re.is_match(k))))
        .map(|(k, v)| format!("  {k}: {v}"))
        .collect();
    let unused: Vec<&str> = rows
        .iter()
        .filter(|r| {
            !diffs
                .iter()
                .any(|(k, _)| r.keys.iter().any(|re| re.is_match(k)))
        })
        .map(|r| r.id.as_str())
        .collect();
    assert!(
        unexplained.is_empty() && unused.is_empty(),
        "{case}: differences from the reference not in docs/differences.md:\n{}\n\
         rows of docs/differences.md for {case} that no longer differ: {unused:?}",
        unexplained.join("\n")
    );
}

fn host_local(subnets: &[&str]) -> Value {
    let ranges: Vec<Value> = subnets.iter().map(|s| json!([{ "subnet": s }])).collect();
    json!({"type": "host-local", "ranges": ranges})
}

fn bridge(extra: Value, subnets: &[&str]) -> Value {
    let mut b = json!({"type": "bridge", "bridge": "cnipar0"});
    if !subnets.is_empty() {
        b["ipam"] = host_local(subnets);
    }
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn ptp(subnets: &[&str]) -> Value {
    json!({"type": "ptp", "ipMasq": true, "ipam": host_local(subnets)})
}

const V4: &str = "10.77.0.0/24";
const V6: &str = "fd77::/64";

#[test]
fn bridge_v4_gateway() {
    if !require_root() {
        return;
    }
    let b = bridge(json!({"isGateway": true, "ipMasq": true}), &[V4]);
    compare("bridge-v4", &[b], "1.0.0", "eth0");
}

#[test]
fn bridge_v6_gateway() {
    if !require_root() {
        return;
    }
    let b = bridge(json!({"isGateway": true}), &[V6]);
    compare("bridge-v6", &[b], "1.0.0", "eth0");
}

#[test]
fn bridge_dual_default_gateway() {
    if !require_root() {
        return;
    }
    let extra = json!({"isDefaultGateway": true, "ipMasq": true, "hairpinMode": true});
    compare("bridge-dual", &[bridge(extra, &[V4, V6])], "1.0.0", "eth0");
}

#[test]
fn bridge_layer2_only() {
    if !require_root() {
        return;
    }
    compare("bridge-l2", &[bridge(json!({}), &[])], "1.0.0", "eth0");
}

#[test]
fn bridge_vlan() {
    if !require_root() {
        return;
    }
    let probe = TestNs::new("par-vlan-probe");
    let ok = probe
        .exec([
            "ip",
            "link",
            "add",
            "vf0",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .status
        .success();
    if !ok {
        skip!("kernel lacks bridge VLAN filtering");
    }
    let b = bridge(json!({"vlan": 100, "isGateway": true}), &[V4]);
    compare("bridge-vlan", &[b], "1.0.0", "eth0");
}

#[test]
fn ptp_dual() {
    if !require_root() {
        return;
    }
    compare("ptp-dual", &[ptp(&[V4, V6])], "1.0.0", "eth0");
}

#[test]
fn loopback_1_0_0() {
    if !require_root() {
        return;
    }
    compare("loopback", &[json!({"type": "loopback"})], "1.0.0", "lo");
}

#[test]
fn loopback_0_2_0() {
    if !require_root() {
        return;
    }
    compare(
        "loopback-0.2.0",
        &[json!({"type": "loopback"})],
        "0.2.0",
        "lo",
    );
}

#[test]
fn portmap_after_bridge() {
    if !require_root() {
        return;
    }
    let pm = json!({"type": "portmap", "snat": true,
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]}});
    let b = bridge(json!({"isGateway": true, "ipMasq": true}), &[V4, V6]);
    compare("portmap", &[b, pm], "1.0.0", "eth0");
}

#[test]
fn bandwidth_after_ptp() {
    if !require_root() {
        return;
    }
    let bw = json!({"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 100_000,
        "egressRate": 4_000_000, "egressBurst": 50_000});
    compare("bandwidth", &[ptp(&[V4]), bw], "1.0.0", "eth0");
}

#[test]
fn tuning_after_ptp() {
    if !require_root() {
        return;
    }
    let t = json!({"type": "tuning", "mtu": 1400, "promisc": true, "allmulti": true,
        "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}});
    compare("tuning", &[ptp(&[V4]), t], "1.0.0", "eth0");
}

#[test]
fn bridge_v4_no_gateway() {
    if !require_root() {
        return;
    }
    let b = bridge(json!({"isGateway": false}), &[V4]);
    compare("bridge-nogw", &[b], "1.0.0", "eth0");
}

#[test]
fn bridge_with_ipam_dns() {
    if !require_root() {
        return;
    }
    let dir = TempDir::new("par-dns");
    let resolv = dir.write(
        "resolv.conf",
        "nameserver 10.77.0.53\nsearch example.test\n",
    );
    let mut b = bridge(json!({"isGateway": true}), &[V4]);
    b["ipam"]["resolvConf"] = json!(resolv);
    compare("bridge-dns", &[b], "1.0.0", "eth0");
}

#[test]
fn portmap_ipv4_only() {
    if !require_root() {
        return;
    }
    let pm = json!({"type": "portmap", "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 8081, "containerPort": 81, "protocol": "tcp"}]}});
    let b = bridge(json!({"isGateway": true}), &[V4]);
    compare("portmap-v4", &[b, pm], "1.0.0", "eth0");
}

#[test]
fn loopback_0_4_0() {
    if !require_root() {
        return;
    }
    compare(
        "loopback-0.4.0",
        &[json!({"type": "loopback"})],
        "0.4.0",
        "lo",
    );
}
