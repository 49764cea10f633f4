//! The two-interface pod of issue 11, through the runtime tool (`net`, one conflist per
//! network, the way Multus users attach a second network): `eth0` on a bridge with host-local
//! and the default route, `net1` a macvlan on the host's "LAN" NIC with an address from the
//! LAN's range. Both reachable (the host over the bridge, the LAN machine over the macvlan,
//! and back); detached one by one, nothing is left: no container link, no host veth, no
//! reservation in either store, no cached result.

use crate::macvlan::{lan_ipam, links_but_lo};
use crate::podnet::{addresses, host_veths, reservations};
use crate::support::lan::{Lan, link_info};
use crate::support::runtime::NetTool;
use crate::support::traffic::ping;
use crate::support::{TempDir, TestNs, require_root};
use serde_json::json;
use std::time::Duration;

#[test]
fn bridge_eth0_and_macvlan_net1_through_the_runtime_tool() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mvpod", "192.168.71");
    let ctr = TestNs::new("mvpod-ctr");
    let (pod_data, lan_data) = (TempDir::new("mvpod-pod"), TempDir::new("mvpod-lan"));
    let tool = NetTool::new("mvpod");
    tool.write(
        "10-podnet.conflist",
        &json!({"cniVersion": "1.1.0", "name": "podnet", "plugins": [{
            "type": "bridge", "bridge": "cni-pod0", "isGateway": true,
            "ipam": {"type": "host-local", "dataDir": pod_data.path(),
                     "ranges": [[{"subnet": "10.71.0.0/24"}]],
                     "routes": [{"dst": "0.0.0.0/0"}]}}]}),
    );
    tool.write(
        "20-lannet.conflist",
        &json!({"cniVersion": "1.1.0", "name": "lannet", "plugins": [{
            "type": "macvlan", "master": "lan0", "mode": "bridge",
            "ipam": lan_ipam(&lan_data, &lan)}]}),
    );
    let ns = ctr.path().to_str().unwrap().to_string();
    let id = ["--container-id", "pod1"];
    let net = |verb: &str, network: &str, ifname: &str| {
        let mut args = vec![verb, network, ns.as_str(), "-i", ifname];
        args.extend(id);
        tool.run(&lan.host, &args)
    };
    net("add", "podnet", "eth0").ok();
    net("add", "lannet", "net1").ok();

    assert_eq!(addresses(&ctr, "eth0"), ["10.71.0.2/24"]);
    assert_eq!(addresses(&ctr, "net1"), ["192.168.71.100/24"]);
    assert_eq!(link_info(&ctr, "eth0").0, "veth");
    assert_eq!(link_info(&ctr, "net1").0, "macvlan");
    let default = ctr.run(["ip", "-4", "route", "show", "default"]);
    assert!(default.contains("via 10.71.0.1 dev eth0"), "{default}");
    let within = Duration::from_secs(10);
    for (from, to) in [
        (&ctr, "10.71.0.1"),
        (&ctr, "192.168.71.1"),
        (&lan.lan, "192.168.71.100"),
        (&lan.host, "10.71.0.2"),
    ] {
        assert!(ping(from, to, within), "{} -> {to}", from.label());
    }
    net("check", "podnet", "eth0").ok();
    net("check", "lannet", "net1").ok();

    net("del", "lannet", "net1").ok();
    assert_eq!(links_but_lo(&ctr), ["eth0"], "eth0 untouched by net1's DEL");
    assert!(ping(&ctr, "10.71.0.1", within));
    net("del", "podnet", "eth0").ok();
    net("del", "podnet", "eth0").ok();
    assert!(links_but_lo(&ctr).is_empty(), "{:?}", links_but_lo(&ctr));
    assert!(host_veths(&lan.host).is_empty());
    assert!(reservations(&pod_data, "podnet").is_empty());
    assert!(reservations(&lan_data, "lannet").is_empty());
    let cached: Vec<String> = tool
        .cached_files()
        .into_iter()
        .filter(|f| f.starts_with("results/"))
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
}
