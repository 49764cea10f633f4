//! 200 containers on the default pod network (bridge + host-local with ipMasq, portmap with
//! one TCP mapping each, bandwidth), each in its own netns, added and then deleted through the
//! runtime tool, for both netfilter backends. After the ADDs the kernel holds one DNAT rule per
//! container and family, one IFB and two tbfs each; after the DELs nothing is left in
//! iptables, nft or tc (beyond the shared skeleton, see support/residue.rs), in host-local's
//! store or in the result cache. Prints how long the 200 ADDs and DELs took.

use crate::chain::{NET, cap_args, plugins, residue};
use crate::support::runtime::NetTool;
use crate::support::tc::qdiscs;
use crate::support::{TempDir, TestNs, require_root, skip};
use serde_json::json;
use std::time::Instant;

const N: usize = 200;

fn many(backend: &str) {
    if !require_root() {
        return;
    }
    if !crate::chain::have_tools() {
        skip!("needs nft, iptables-save, ip6tables-save and tc as oracles");
    }
    let label = format!("chain-many-{backend}");
    let host = TestNs::new(&label);
    host.sh("ip link set lo up");
    let ctrs: Vec<TestNs> = (0..N)
        .map(|i| TestNs::new(&format!("{label}-{i}")))
        .collect();
    let (ipam, tool) = (TempDir::new(&label), NetTool::new(&label));
    let list = json!({"cniVersion": "1.1.0", "name": NET,
                      "plugins": plugins(backend, &ipam, None)});
    tool.write("10-chain.conflist", &list);
    let run = |verb: &str, i: usize| {
        let netns = ctrs[i].path().to_str().unwrap();
        let id = format!("many-{i}");
        let port = 20000 + i;
        let caps = cap_args(json!([{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]));
        let caps = caps.to_string();
        let args = [verb, NET, netns, "--container-id", &id, "--cap-args", &caps];
        tool.run(&host, &args).ok();
    };
    let start = Instant::now();
    (0..N).for_each(|i| run("add", i));
    let added = start.elapsed();
    expect_state_of_n(&host, backend);
    let start = Instant::now();
    (0..N).for_each(|i| run("del", i));
    let deleted = start.elapsed();
    eprintln!("full chain, {backend}: {N} ADDs in {added:?}, {N} DELs in {deleted:?}");
    assert_eq!(
        residue(&host, &ipam, None),
        Vec::<String>::new(),
        "{backend}"
    );
    assert_eq!(tool.cached_files(), Vec::<String>::new(), "{backend}");
}

/// One DNAT rule per container and family, one IFB and two tbfs per container.
fn expect_state_of_n(host: &TestNs, backend: &str) {
    let dnat = if backend == "iptables" {
        let saved =
            host.run(["iptables-save", "-t", "nat"]) + &host.run(["ip6tables-save", "-t", "nat"]);
        saved.lines().filter(|l| l.contains("-j DNAT")).count()
    } else {
        let rules = host.run(["nft", "list", "ruleset"]);
        rules.lines().filter(|l| l.contains(" dnat ")).count()
    };
    assert_eq!(dnat, 2 * N, "{backend}: DNAT rules");
    let ifbs = host.ip_json(&["link", "show", "type", "ifb"]);
    assert_eq!(ifbs.as_array().unwrap().len(), N, "{backend}: IFBs");
    let tbfs = qdiscs(host).iter().filter(|q| q.ends_with(" tbf")).count();
    assert_eq!(tbfs, 2 * N, "{backend}: tbfs");
}

#[test]
fn two_hundred_containers_nftables() {
    many("nftables");
}

#[test]
fn two_hundred_containers_iptables() {
    many("iptables");
}
