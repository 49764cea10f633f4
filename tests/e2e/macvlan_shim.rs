//! macvlan `hostShim` (issue 16, src/podnet/shim.rs) on its own, without `multi`: the first
//! pod's ADD gives the new shim its address, and a failed ADD leaves no shim behind. Oracle:
//! `ip -j link`/`ip -j addr` in the fake host, the shim's state dir.

use crate::support::lan::Lan;
use crate::support::{Cni, Farm, TempDir, TestNs, require_root};
use serde_json::json;

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
