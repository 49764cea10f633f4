//! host-device, end to end: a veth end `hd0` in the fake host stands in for the NIC, its
//! peer in a "LAN" netns. ADD -> CHECK -> DEL -> DEL in every spec version (the device in the
//! container as `eth0` with the alias `hd0`, back on the host after DEL, addresses released);
//! the selectors `device`, `hwaddr`, `kernelpath` (the host gets its own sysfs mount, as sysfs
//! shows the devices of the netns it was mounted in) and `runtimeConfig.deviceID`; L2 only;
//! a fixed IP per pod (static, host-local with `CNI_ARGS IP=` and `runtimeConfig.ips`) reached
//! from the LAN; CHECK noticing a changed MAC; GC and STATUS; interop with the reference
//! plugin both ways. The DEL matrix and failed ADDs are in `host_device_del`.

use crate::podnet::{
    Attachment, REF_VERSION, VERSIONS, addresses, check_del_del_in, reservations, result_addresses,
    versioned, with_prev,
};
use crate::support::traffic::ping;
use crate::support::{Cni, Farm, Pair, TempDir, TestNs, require_root};
use serde_json::{Value, json};
use std::time::Duration;

/// A fake host holding `hd0` (up), its peer `lanp` = 10.60.0.1/24 in `lan`, a container.
pub struct Rig {
    /// Host and container.
    pub pair: Pair,
    /// The far end of the device's wire.
    pub lan: TestNs,
    /// host-local's store.
    pub data: TempDir,
}

impl Rig {
    /// The rig with a plain fake host.
    pub fn new(label: &str) -> Rig {
        Rig::wire(Pair::new(label), label)
    }

    /// The rig whose host has its own sysfs mount (for `kernelpath` and PCI lookups); run
    /// plugins there with [`Rig::sysfs_cni`].
    pub fn with_sysfs(label: &str) -> Rig {
        Rig::with_host_setup(label, "mount -t sysfs sysfs /sys")
    }

    /// The rig whose host has a private mount namespace prepared by `setup` (a shell script).
    pub fn with_host_setup(label: &str, setup: &str) -> Rig {
        let pair = Pair {
            host: TestNs::with_mounts(&format!("{label}-host"), setup),
            container: TestNs::new(&format!("{label}-ctr")),
        };
        Rig::wire(pair, label)
    }

    fn wire(pair: Pair, label: &str) -> Rig {
        let lan = TestNs::new(&format!("{label}-lan"));
        let pid = lan.pid().to_string();
        pair.host
            .ip(&["link", "add", "hd0", "type", "veth", "peer", "name", "lanp"]);
        pair.host.ip(&["link", "set", "lanp", "netns", &pid]);
        pair.host.ip(&["link", "set", "hd0", "up"]);
        lan.ip(&["addr", "add", "10.60.0.1/24", "dev", "lanp"]);
        lan.ip(&["link", "set", "lanp", "up"]);
        Rig {
            pair,
            lan,
            data: TempDir::new(label),
        }
    }

    /// Our applet for container `cid` as `eth0`.
    pub fn ours(&self, cid: &str) -> Attachment {
        Attachment::ours("host-device", cid, self.pair.container.path(), "eth0")
    }

    /// A call of our applet inside the host's mount namespace (its own sysfs).
    pub fn sysfs_cni(&self, verb: &str, cid: &str, conf: &Value) -> crate::support::Outcome {
        let mnt = format!("--mount={}", self.pair.host.mount_path().display());
        Cni::new(Farm::shared(), "host-device")
            .command(verb)
            .container_id(cid)
            .netns(self.pair.container.path())
            .ifname("eth0")
            .config(conf)
            .under(["nsenter", mnt.as_str(), "--"])
            .run_in(&self.pair.host)
    }

    /// `{"type":"host-device","device":"hd0"}` with host-local on 10.60.0.0/24 (from .10).
    pub fn conf(&self, version: &str) -> Value {
        let range = json!([[{"subnet": "10.60.0.0/24", "rangeStart": "10.60.0.10"}]]);
        versioned(
            &json!({
                "name": "hdnet", "type": "host-device", "device": "hd0",
                "ipam": {"type": "host-local", "dataDir": self.data.path(), "ranges": range}
            }),
            version,
        )
    }

    /// The device's MAC on the host (before ADD / after DEL).
    pub fn mac(&self) -> String {
        let l = self.pair.host.link("hd0").expect("hd0 on the host");
        l["address"].as_str().unwrap().to_string()
    }

    /// Panics unless `hd0` is back on the host with no alias, and not in the container.
    pub fn assert_home(&self, mac: &str) {
        let l = self.pair.host.link("hd0").expect("hd0 is back on the host");
        assert_eq!(l["address"], mac);
        assert!(l.get("ifalias").is_none(), "alias cleared: {l}");
        assert!(self.pair.container.link("eth0").is_none());
        assert_eq!(self.pair.container.link_names(), ["lo"]);
    }

    /// Panics unless the container has `eth0` (alias `hd0`, up, `mac`) and the host no `hd0`.
    pub fn assert_moved(&self, mac: &str) {
        let l = self
            .pair
            .container
            .link("eth0")
            .expect("eth0 in the container");
        assert_eq!(l["ifalias"], "hd0");
        assert_eq!(l["address"], mac);
        assert!(flags(&l).contains(&"UP".to_string()), "{l}");
        assert!(self.pair.host.link("hd0").is_none());
    }
}

/// The `flags` of an `ip -j link` object.
pub fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let rig = Rig::new(&format!("hd-v{version}"));
        let (c, mac) = (rig.conf(version), rig.mac());
        let at = rig.ours("c1");
        let r = at.run(&rig.pair.host, "ADD", &c).result().clone();
        assert_eq!(result_addresses(&r), ["10.60.0.10/24"], "{version}");
        rig.assert_moved(&mac);
        assert_eq!(addresses(&rig.pair.container, "eth0"), ["10.60.0.10/24"]);
        if version >= "0.3.0" {
            let sandbox = rig.pair.container.path().to_str().unwrap();
            let want = json!([{"name": "eth0", "mac": mac, "sandbox": sandbox}]);
            assert_eq!(r["interfaces"], want, "{version}");
            assert_eq!(r["ips"][0]["interface"], 0);
        }
        check_del_del_in(version, &at, &rig.pair.host, &c, &r);
        rig.assert_home(&mac);
        assert!(reservations(&rig.data, "hdnet").is_empty(), "{version}");
    }
}

#[test]
fn selected_by_hwaddr_kernelpath_and_device_id() {
    if !require_root() {
        return;
    }
    let rig = Rig::with_sysfs("hd-select");
    let mac = rig.mac();
    let base = rig.conf("1.1.0");
    let by = |key: &str, v: Value| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove("device");
        c[key] = v;
        c
    };
    for c in [
        by("hwaddr", json!(mac.to_uppercase())),
        by("kernelpath", json!("/sys/devices/virtual/net/hd0")),
        by("device", json!("hd0")),
    ] {
        let r = rig.sysfs_cni("ADD", "c1", &c).result().clone();
        rig.assert_moved(&mac);
        rig.sysfs_cni("CHECK", "c1", &with_prev(&c, &r)).ok();
        rig.sysfs_cni("DEL", "c1", &with_prev(&c, &r)).ok();
        rig.assert_home(&mac);
    }
    // A veth is neither a PCI function nor an auxiliary device: a clear code 7, nothing moved.
    let c = by("runtimeConfig", json!({"deviceID": "hd0"}));
    let out = rig.sysfs_cni("ADD", "c1", &c);
    out.expect_error(7);
    assert!(
        out.stdout.contains("neither a PCI nor an auxiliary"),
        "{out}"
    );
    let c = by("runtimeConfig", json!({"deviceID": "0000:ff:1f.7"}));
    rig.sysfs_cni("ADD", "c1", &c).expect_error(7);
    assert!(rig.pair.host.link("hd0").is_some() && reservations(&rig.data, "hdnet").is_empty());
    // kernelpath must point into /sys/devices.
    let c = by("kernelpath", json!("/sys/class/net/hd0"));
    rig.sysfs_cni("ADD", "c1", &c).expect_error(7);
    rig.assert_home(&mac);
}

/// A fake `/sys/bus` in the host's mount namespace: PCI functions 0000:00:0a.0 (`net/hd0`),
/// 0000:00:0c.0 (`virtio3/net/hd0`), 0000:00:0b.0 bound to vfio-pci (no netdev), and the
/// auxiliary device mlx5_core.sf.2 (`net/hd0`), as SR-IOV device plugins hand them over.
const FAKE_BUS: &str = "mount -t sysfs sysfs /sys && mount -t tmpfs bus /sys/bus && \
    cd /sys/bus && mkdir -p pci/devices/0000:00:0a.0/net/hd0 \
    pci/devices/0000:00:0c.0/virtio3/net/hd0 pci/devices/0000:00:0b.0 \
    auxiliary/devices/mlx5_core.sf.2/net/hd0 && \
    ln -s ../../../../devices/pci0000:00/drivers/vfio-pci pci/devices/0000:00:0b.0/driver";

#[test]
fn pci_auxiliary_and_dpdk_through_a_fake_bus() {
    if !require_root() {
        return;
    }
    let rig = Rig::with_host_setup("hd-bus", FAKE_BUS);
    let mac = rig.mac();
    let base = rig.conf("1.1.0");
    let by = |key: &str, v: Value| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove("device");
        c[key] = v;
        c
    };
    let device_id = |id: &str| by("runtimeConfig", json!({"deviceID": id}));
    for c in [
        by("pciBusID", json!("0000:00:0a.0")),
        by("pciBusID", json!("0000:00:0c.0")),
        device_id("0000:00:0a.0"),
        device_id("mlx5_core.sf.2"),
    ] {
        let r = rig.sysfs_cni("ADD", "c1", &c).result().clone();
        rig.assert_moved(&mac);
        assert_eq!(r["interfaces"][0]["mac"], mac.as_str());
        rig.sysfs_cni("CHECK", "c1", &with_prev(&c, &r)).ok();
        rig.sysfs_cni("DEL", "c1", &with_prev(&c, &r)).ok();
        rig.assert_home(&mac);
    }
    // DPDK: nothing moves, the addresses are reported (not applied) and released on DEL.
    for c in [
        by("pciBusID", json!("0000:00:0b.0")),
        device_id("0000:00:0b.0"),
    ] {
        let r = rig.sysfs_cni("ADD", "c1", &c).result().clone();
        let sandbox = rig.pair.container.path().to_str().unwrap();
        assert_eq!(
            r["interfaces"],
            json!([{"name": "eth0", "sandbox": sandbox}])
        );
        let got = result_addresses(&r);
        assert_eq!(got.len(), 1, "{r}");
        assert_eq!(
            reservations(&rig.data, "hdnet"),
            [got[0].trim_end_matches("/24")]
        );
        rig.assert_home(&mac);
        for verb in ["CHECK", "DEL", "DEL"] {
            rig.sysfs_cni(verb, "c1", &with_prev(&c, &r)).ok();
        }
        assert!(reservations(&rig.data, "hdnet").is_empty());
    }
}

#[test]
fn layer_2_only_without_ipam() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hd-l2");
    let mac = rig.mac();
    let c = versioned(
        &json!({"name": "hdnet", "type": "host-device", "device": "hd0"}),
        "1.0.0",
    );
    let at = rig.ours("c1");
    let r = at.run(&rig.pair.host, "ADD", &c).result().clone();
    let sandbox = rig.pair.container.path().to_str().unwrap();
    assert_eq!(
        r,
        json!({"cniVersion": "1.0.0",
               "interfaces": [{"name": "eth0", "mac": mac, "sandbox": sandbox}]})
    );
    rig.assert_moved(&mac);
    assert!(addresses(&rig.pair.container, "eth0").is_empty());
    check_del_del_in("1.0.0", &at, &rig.pair.host, &c, &r);
    rig.assert_home(&mac);
}

#[test]
fn fixed_ip_per_pod_reached_from_the_lan() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hd-fixed");
    let mac = rig.mac();
    let mut fixed_static = rig.conf("1.1.0");
    fixed_static["ipam"] = json!({"type": "static", "addresses": [{"address": "10.60.0.50/24"}]});
    let mut rt_ips = rig.conf("1.1.0");
    rt_ips["capabilities"] = json!({"ips": true});
    rt_ips["runtimeConfig"] = json!({"ips": ["10.60.0.78/24"]});
    let cases = [
        (fixed_static, "", "10.60.0.50"),
        (rig.conf("1.1.0"), "IP=10.60.0.77", "10.60.0.77"),
        (rt_ips, "", "10.60.0.78"),
    ];
    for (c, args, ip) in cases {
        let call = |verb: &str, conf: &Value| {
            Cni::new(Farm::shared(), "host-device")
                .command(verb)
                .container_id("c1")
                .netns(rig.pair.container.path())
                .ifname("eth0")
                .args(args)
                .config(conf)
                .run_in(&rig.pair.host)
        };
        let r = call("ADD", &c).result().clone();
        assert_eq!(result_addresses(&r), [format!("{ip}/24")]);
        assert!(
            ping(&rig.lan, ip, Duration::from_secs(10)),
            "LAN -> {ip} through the moved device"
        );
        let with = with_prev(&c, &r);
        for verb in ["CHECK", "DEL", "DEL"] {
            call(verb, &with).ok();
        }
        rig.assert_home(&mac);
        assert!(reservations(&rig.data, "hdnet").is_empty());
    }
}

#[test]
fn check_notices_a_changed_mac_and_gc_status_reach_ipam() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hd-check");
    let mac = rig.mac();
    let c = rig.conf("1.1.0");
    let at = rig.ours("c1");
    let r = at.run(&rig.pair.host, "ADD", &c).result().clone();
    let with = with_prev(&c, &r);
    at.run(&rig.pair.host, "CHECK", &with).ok();
    rig.pair
        .container
        .ip(&["link", "set", "eth0", "address", "02:00:00:00:60:60"]);
    let out = at.run(&rig.pair.host, "CHECK", &with);
    assert!(out.stdout.contains("doesn't match"), "{out}");
    rig.pair
        .container
        .ip(&["link", "set", "eth0", "address", &mac]);
    at.run(&rig.pair.host, "CHECK", &with).ok();
    let cni = |verb: &str, conf: &Value| {
        Cni::new(Farm::shared(), "host-device")
            .command(verb)
            .config(conf)
            .run_in(&rig.pair.host)
    };
    cni("STATUS", &c).ok();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    cni("GC", &gc).ok();
    assert!(
        reservations(&rig.data, "hdnet").is_empty(),
        "GC reached host-local"
    );
    at.run(&rig.pair.host, "DEL", &with).ok();
    rig.assert_home(&mac);
}

#[test]
fn interop_with_the_reference_both_ways() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("hd-interop");
    let Some(theirs) =
        Attachment::reference("host-device", "c1", rig.pair.container.path(), "eth0")
    else {
        crate::support::skip!("reference host-device is not installed");
    };
    let mac = rig.mac();
    let c = rig.conf(REF_VERSION);
    for (adder, deleter) in [(&theirs, &rig.ours("c1")), (&rig.ours("c1"), &theirs)] {
        let r = adder.run(&rig.pair.host, "ADD", &c).result().clone();
        rig.assert_moved(&mac);
        let got = result_addresses(&r);
        assert!(got.len() == 1 && got[0].starts_with("10.60.0."), "{got:?}");
        assert_eq!(addresses(&rig.pair.container, "eth0"), got);
        let with = with_prev(&c, &r);
        deleter.run(&rig.pair.host, "CHECK", &with).ok();
        deleter.run(&rig.pair.host, "DEL", &with).ok();
        // v1.1.1's DEL leaves the alias (= its own name) set; newer ones clear it, as we do.
        if rig
            .pair
            .host
            .link("hd0")
            .is_some_and(|l| l["ifalias"] == "hd0")
        {
            rig.pair.host.ip(&["link", "set", "hd0", "alias", ""]);
        }
        rig.assert_home(&mac);
        assert!(reservations(&rig.data, "hdnet").is_empty());
    }
}
