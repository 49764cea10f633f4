//! bridge with VLAN filtering (`vlan`, `vlanTrunk`, `preserveDefaultVlan`; FEATURES.md 6.1,
//! USER-ASKS row 11), end to end on a kernel that filters bridge VLANs: this machine's may not
//! (then every test skips and tests/vm runs them in a VM). `bridge -j vlan show` is the oracle
//! for the PVID, untagged and trunk VLANs of the host veth and of the bridge itself; real
//! traffic shows that containers in one VLAN reach each other and none in another, also
//! through a trunk port carrying tagged frames; the `<bridge>.<vlan>` gateway goes with the
//! last port in its VLAN.

use crate::podnet::{
    Attachment, VERSIONS, addresses, check_del_del, check_del_del_in, host_veths, ipam,
    reservations, result_addresses, versioned, with_prev,
};
use crate::support::bridge_vlan::{PortVlan, kernel_supports_vlan_filtering, port_vlans};
use crate::support::traffic::ping;
use crate::support::{Pair, TempDir, TestNs, require_root, skip};
use serde_json::{Value, json};
use std::time::Duration;

/// A bridge config on `br0` with host-local over 10.50.0.0/24 in `data`, plus `extra`.
fn conf(data: &TempDir, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.1.0", "name": "brvlan", "type": "bridge", "bridge": "br0",
        "ipam": ipam(data, &["10.50.0.0/24"]),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn ours(netns: &TestNs, cid: &str) -> Attachment {
    Attachment::ours("bridge", cid, netns.path(), "eth0")
}

/// The host veth of a 0.3.0+ result (`interfaces[1]`).
fn host_port(result: &Value) -> String {
    result["interfaces"][1]["name"]
        .as_str()
        .expect("interfaces[1] is the host veth")
        .to_string()
}

/// `vlan_filtering` of bridge `br` as `ip -d link` reports it.
fn vlan_filtering(host: &TestNs, br: &str) -> Value {
    host.link(br).expect("the bridge exists")["linkinfo"]["info_data"]["vlan_filtering"].clone()
}

/// Whether a test may run here; announces the skip otherwise.
macro_rules! require_vlan_filtering {
    () => {
        if !require_root() {
            return;
        }
        if !kernel_supports_vlan_filtering() {
            skip!("kernel lacks bridge VLAN filtering");
        }
    };
}

#[test]
fn access_vlan_add_check_del_del_in_every_version() {
    require_vlan_filtering!();
    for version in VERSIONS {
        let pair = Pair::new(&format!("brv-v{version}"));
        let data = TempDir::new("brv-versions");
        let c = versioned(&conf(&data, json!({"vlan": 10})), version);
        let at = ours(&pair.container, "c1");
        let result = at.run(&pair.host, "ADD", &c).result().clone();
        assert_eq!(result_addresses(&result), ["10.50.0.2/24"], "{version}");
        assert_eq!(addresses(&pair.container, "eth0"), ["10.50.0.2/24"]);
        assert_eq!(vlan_filtering(&pair.host, "br0"), 1, "{version}");
        let veths = host_veths(&pair.host);
        assert_eq!(veths.len(), 1, "{version}");
        if version >= "0.3.0" {
            assert_eq!(host_port(&result), veths[0], "{version}");
        }
        assert_eq!(
            port_vlans(&pair.host, &veths[0]),
            [PortVlan::native(10)],
            "{version}: the default VLAN 1 is gone, 10 is PVID and untagged"
        );
        assert_eq!(
            port_vlans(&pair.host, "br0"),
            [PortVlan::native(1)],
            "{version}: the bridge's own VLANs are left as the kernel made them"
        );
        check_del_del_in(version, &at, &pair.host, &c, &result);
        assert!(host_veths(&pair.host).is_empty(), "{version}");
        assert!(reservations(&data, "brvlan").is_empty(), "{version}");
        assert!(
            pair.host.link("br0").is_some(),
            "the bridge is left in place"
        );
    }
}

/// ADD with `extra`, then the host veth's VLANs must be `want`; CHECK, DEL, DEL.
fn port_gets(label: &str, extra: Value, want: &[PortVlan]) {
    let pair = Pair::new(label);
    let data = TempDir::new(label);
    let c = conf(&data, extra.clone());
    let at = ours(&pair.container, "c1");
    let result = at.run(&pair.host, "ADD", &c).result().clone();
    assert_eq!(vlan_filtering(&pair.host, "br0"), 1, "{extra}");
    assert_eq!(port_vlans(&pair.host, &host_port(&result)), want, "{extra}");
    check_del_del(&at, &pair.host, &c, &result);
    assert!(host_veths(&pair.host).is_empty() && reservations(&data, "brvlan").is_empty());
}

#[test]
fn a_trunk_without_vlan_gets_vlan_1_as_native_and_its_ids_tagged() {
    require_vlan_filtering!();
    let trunk = json!([{"minID": 100, "maxID": 102}, {"id": 200}, {"id": 101}]);
    let mut want = vec![PortVlan::native(1)];
    want.extend([100, 101, 102, 200].map(PortVlan::tagged));
    port_gets("brv-trunk", json!({"vlanTrunk": trunk}), &want);
}

#[test]
fn a_trunk_with_vlan_gets_it_as_native() {
    require_vlan_filtering!();
    let trunk = json!([{"id": 20}, {"minID": 30, "maxID": 31}]);
    let mut want = vec![PortVlan::native(10)];
    want.extend([20, 30, 31].map(PortVlan::tagged));
    port_gets(
        "brv-trunk-vlan",
        json!({"vlan": 10, "vlanTrunk": trunk}),
        &want,
    );
}

#[test]
fn preserve_default_vlan_keeps_vlan_1_untagged_beside_the_pvid() {
    require_vlan_filtering!();
    let untagged_1 = PortVlan {
        vid: 1,
        pvid: false,
        untagged: true,
    };
    let extra = json!({"vlan": 10, "preserveDefaultVlan": true});
    port_gets("brv-preserve", extra, &[untagged_1, PortVlan::native(10)]);
    let trunk = json!({"vlanTrunk": [{"id": 20}], "preserveDefaultVlan": true});
    port_gets(
        "brv-preserve-trunk",
        trunk,
        &[PortVlan::native(1), PortVlan::tagged(20)],
    );
}

#[test]
fn a_bridge_made_without_filtering_is_left_so() {
    require_vlan_filtering!();
    let pair = Pair::new("brv-existing");
    let data = TempDir::new("brv-existing");
    pair.host.ip(&["link", "add", "br0", "type", "bridge"]);
    let c = conf(&data, json!({"vlan": 10}));
    let at = ours(&pair.container, "c1");
    let result = at.run(&pair.host, "ADD", &c).result().clone();
    assert_eq!(
        vlan_filtering(&pair.host, "br0"),
        0,
        "as the reference: not changed"
    );
    assert_eq!(
        port_vlans(&pair.host, &host_port(&result)),
        [PortVlan::native(10)]
    );
    check_del_del(&at, &pair.host, &c, &result);
}

/// One container on `br0` in `host`, in its own namespace, with `extra` config keys; CHECKed
/// right after ADD. (Not again before DEL: without `isGateway` the bridge's MAC is not pinned
/// and follows its ports as they come and go, so a later CHECK of the result's bridge MAC
/// fails, in the reference as here.)
struct Member {
    ns: TestNs,
    at: Attachment,
    conf: Value,
    result: Value,
}

impl Member {
    fn join(host: &TestNs, data: &TempDir, label: &str, extra: Value) -> Member {
        let ns = TestNs::new(label);
        let at = ours(&ns, label);
        let conf = conf(data, extra);
        let result = at.run(host, "ADD", &conf).result().clone();
        at.run(host, "CHECK", &with_prev(&conf, &result)).ok();
        Member {
            ns,
            at,
            conf,
            result,
        }
    }

    fn addr(&self) -> String {
        let a = &result_addresses(&self.result)[0];
        a.split('/').next().unwrap().to_string()
    }

    fn leave(self, host: &TestNs) {
        let with = with_prev(&self.conf, &self.result);
        self.at.run(host, "DEL", &with).ok();
        self.at.run(host, "DEL", &with).ok();
        assert!(
            self.ns.link("eth0").is_none(),
            "{} left eth0",
            self.ns.label()
        );
    }
}

/// Whether `from` gets no reply from `to`: two probes, a second apart.
fn unreachable(from: &TestNs, to: &str) -> bool {
    !from
        .exec(["ping", "-c", "2", "-W", "1", to])
        .status
        .success()
}

#[test]
fn containers_reach_their_own_vlan_only_also_through_a_trunk() {
    require_vlan_filtering!();
    let host = TestNs::new("brv-traffic-host");
    let data = TempDir::new("brv-traffic");
    // One subnet for all: only the VLANs keep them apart.
    let a10 = Member::join(&host, &data, "brv-a10", json!({"vlan": 10}));
    let b10 = Member::join(&host, &data, "brv-b10", json!({"vlan": 10}));
    let c20 = Member::join(&host, &data, "brv-c20", json!({"vlan": 20}));
    let d20 = Member::join(&host, &data, "brv-d20", json!({"vlan": 20}));
    let within = Duration::from_secs(20);
    assert!(ping(&a10.ns, &b10.addr(), within), "VLAN 10 to VLAN 10");
    assert!(ping(&c20.ns, &d20.addr(), within), "VLAN 20 to VLAN 20");
    assert!(unreachable(&a10.ns, &c20.addr()), "VLAN 10 reached VLAN 20");
    assert!(unreachable(&d20.ns, &b10.addr()), "VLAN 20 reached VLAN 10");

    // A trunk port (no IPAM: L2 only) tags its own frames: on eth0.20 it is in VLAN 20.
    let trunk = TestNs::new("brv-trunk");
    let mut l2 = conf(&data, json!({"vlanTrunk": [{"id": 10}, {"id": 20}]}));
    l2.as_object_mut().unwrap().remove("ipam");
    let at = ours(&trunk, "brv-trunk");
    let result = at.run(&host, "ADD", &l2).result().clone();
    at.run(&host, "CHECK", &with_prev(&l2, &result)).ok();
    let sub = "ip link add link eth0 name eth0.20 type vlan id 20 && \
               ip addr add 10.50.0.200/24 dev eth0.20 && ip link set eth0.20 up";
    trunk.sh(sub);
    assert!(
        ping(&trunk, &c20.addr(), within),
        "trunk, tagged 20, to VLAN 20"
    );
    assert!(
        unreachable(&trunk, &a10.addr()),
        "tagged 20 reached VLAN 10"
    );
    let with = with_prev(&l2, &result);
    at.run(&host, "DEL", &with).ok();
    at.run(&host, "DEL", &with).ok();

    for m in [a10, b10, c20, d20] {
        m.leave(&host);
    }
    assert!(host_veths(&host).is_empty() && reservations(&data, "brvlan").is_empty());
}

#[test]
fn the_gateway_of_a_vlan_is_on_its_own_port_in_that_vlan_and_goes_with_its_last_user() {
    require_vlan_filtering!();
    let host = TestNs::new("brv-gw-host");
    let data = TempDir::new("brv-gw");
    let extra = json!({"vlan": 10, "isGateway": true});
    let a = Member::join(&host, &data, "brv-gw-a", extra.clone());
    let names: Vec<&str> = a.result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(
        names.contains(&"br0.10"),
        "the result lists br0.10: {names:?}"
    );
    assert_eq!(addresses(&host, "br0.10"), ["10.50.0.1/24"]);
    assert!(
        addresses(&host, "br0").is_empty(),
        "the gateway is not on the bridge"
    );
    let peer = host.link("br0.10").unwrap()["link"]
        .as_str()
        .expect("br0.10 is a veth with a named peer")
        .to_string();
    assert_eq!(host.link(&peer).unwrap()["master"], "br0");
    assert_eq!(port_vlans(&host, &peer), [PortVlan::native(10)]);
    assert!(
        ping(&a.ns, "10.50.0.1", Duration::from_secs(20)),
        "to the gateway"
    );

    // A second container reuses the gateway interface.
    let b = Member::join(&host, &data, "brv-gw-b", extra);
    assert!(ping(&b.ns, "10.50.0.1", Duration::from_secs(20)));
    assert_eq!(host_veths(&host).len(), 3, "two containers and the gateway");
    let c20 = Member::join(&host, &data, "brv-gw-c20", json!({"vlan": 20}));

    // DEL removes the gateway with the last port in its VLAN (USER-ASKS row 11), not before;
    // a port in another VLAN does not keep it.
    a.leave(&host);
    assert!(host.link("br0.10").is_some(), "b still uses the gateway");
    assert!(ping(&b.ns, "10.50.0.1", Duration::from_secs(20)));
    b.leave(&host);
    assert!(
        host.link("br0.10").is_none(),
        "the last port of VLAN 10 left"
    );
    assert_eq!(host_veths(&host).len(), 1, "only c20's port is left");
    c20.leave(&host);
    assert!(host.link("br0").is_some(), "the bridge is left in place");
    assert!(reservations(&data, "brvlan").is_empty());
}
