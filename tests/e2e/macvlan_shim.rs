//! macvlan `hostShim` (issue 16, src/podnet/shim.rs) on its own, without `multi`: a failed ADD
//! leaves no shim behind. Oracle: `ip -j link` in the fake host, the shim's state dir.

use crate::support::ipam::tree;
use crate::support::lan::Lan;
use crate::support::{Cni, Farm, TempDir, TestNs, require_root};
use serde_json::json;

/// The shim is created, then giving it its address fails (the kernel refuses a multicast
/// address as an interface address): the ADD fails and nothing of it is left, the shim it
/// created included.
#[test]
fn failed_add_after_creating_the_shim_removes_it() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mvshim-fail", "192.168.63");
    let ctr = TestNs::new("mvshim-fail-ctr");
    let state = TempDir::new("mvshim-fail-state");
    let c = json!({
        "cniVersion": "1.1.0", "name": "shimnet", "type": "macvlan", "master": "lan0",
        "mode": "bridge",
        "hostShim": {"name": "mvs-fail", "address": "ff02::250/64", "stateDir": state.path()},
    });
    let out = Cni::new(Farm::shared(), "macvlan")
        .command("ADD")
        .container_id("c1")
        .netns(ctr.path())
        .ifname("eth0")
        .config(&c)
        .run_in(&lan.host);
    assert!(out.error_code().is_some(), "ADD must fail: {out:?}");
    assert!(
        lan.host.link("mvs-fail").is_none(),
        "the shim was left behind"
    );
    let ctr_links: Vec<String> = ctr.link_names().into_iter().filter(|n| n != "lo").collect();
    assert!(ctr_links.is_empty(), "left in the container: {ctr_links:?}");
    let files: Vec<String> = tree(state.path())
        .into_iter()
        .filter(|p| !p.ends_with(".lock"))
        .collect();
    assert!(files.is_empty(), "shim state left: {files:?}");
}

/// The first pod's ADD creates the shim and gives it the configured address (so pods reach
/// the host at it); its DEL removes the shim again.
#[test]
fn first_add_gives_the_new_shim_its_address() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("mvshim-addr", "192.168.64");
    let ctr = TestNs::new("mvshim-addr-ctr");
    let state = TempDir::new("mvshim-addr-state");
    let c = json!({
        "cniVersion": "1.1.0", "name": "shimnet", "type": "macvlan", "master": "lan0",
        "mode": "bridge",
        "hostShim": {"name": "mvs-addr", "address": "192.168.64.250/24", "stateDir": state.path()},
    });
    let call = |verb: &str| {
        Cni::new(Farm::shared(), "macvlan")
            .command(verb)
            .container_id("c1")
            .netns(ctr.path())
            .ifname("eth0")
            .config(&c)
            .run_in(&lan.host)
    };
    call("ADD").ok();
    let addrs = lan.host.sh("ip -j addr show dev mvs-addr");
    assert!(
        addrs.contains("\"192.168.64.250\""),
        "the new shim lacks its address: {addrs}"
    );
    call("DEL").ok();
    assert!(
        lan.host.link("mvs-addr").is_none(),
        "the shim outlived its last pod"
    );
}
