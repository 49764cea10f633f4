//! host-device's DEL matrix and failures, end to end (rig of `host_device`): DEL succeeds and
//! releases the address with the netns gone (the kernel deletes a virtual device with its
//! netns; a physical one it hands back to the initial netns, simulated here by moving it to
//! the host by hand, and DEL gives it its name back), with an empty `CNI_NETNS`, after a
//! rename inside the container (found by `prevResult`'s MAC or by the alias = `device`),
//! without `prevResult`, with the IPAM store gone. A failed ADD (at IPAM, while configuring,
//! on a name clash in the container) leaves the device on the host under its name, alias and
//! up state, IPAM released. Bad selectors are code 7 with nothing changed.

use crate::host_device::{Rig, flags};
use crate::podnet::{reservations, with_prev};
use serde_json::{Value, json};

/// ADD `c1` with `conf`; returns the result.
fn add(rig: &Rig, conf: &Value) -> Value {
    rig.ours("c1")
        .run(&rig.pair.host, "ADD", conf)
        .result()
        .clone()
}

#[test]
fn netns_gone_releases_the_address_and_the_kernel_deleted_the_veth() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("hd-gone");
    let c = rig.conf("1.1.0");
    let r = add(&rig, &c);
    assert_eq!(reservations(&rig.data, "hdnet"), ["10.60.0.10"]);
    let gone = rig.pair.container.path().to_str().unwrap().to_string();
    let Rig {
        pair, lan, data, ..
    } = rig;
    let (host, container) = (pair.host, pair.container);
    drop(container);
    let at =
        crate::podnet::Attachment::ours("host-device", "c1", std::path::Path::new(&gone), "eth0");
    at.run(&host, "DEL", &with_prev(&c, &r)).ok();
    at.run(&host, "DEL", &c).ok();
    assert!(reservations(&data, "hdnet").is_empty());
    // What is true on this kernel: a veth dies with its netns, and its peer with it. The kernel
    // tears a netns down in a workqueue, so under load that takes a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while (host.link("hd0").is_some() || lan.link("lanp").is_some())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(host.link("hd0").is_none() && lan.link("lanp").is_none());
}

#[test]
fn a_device_handed_back_by_the_kernel_gets_its_name_back() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("hd-refund");
    let mac = rig.mac();
    let c = rig.conf("1.1.0");
    let r = add(&rig, &c);
    // A physical device of a dying netns lands in the initial netns under its container
    // name, alias kept, down: what the host sees then.
    let host_pid = rig.pair.host.pid().to_string();
    rig.pair
        .container
        .ip(&["link", "set", "eth0", "netns", &host_pid]);
    let gone = rig.ours("c1").netns("/proc/self/ns/does-not-exist");
    gone.run(&rig.pair.host, "DEL", &with_prev(&c, &r)).ok();
    rig.assert_home(&mac);
    assert!(reservations(&rig.data, "hdnet").is_empty());
    gone.run(&rig.pair.host, "DEL", &c).ok();
}

#[test]
fn empty_netns_releases_the_address() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("hd-empty");
    let mac = rig.mac();
    let c = rig.conf("1.1.0");
    add(&rig, &c);
    rig.ours("c1").netns("").run(&rig.pair.host, "DEL", &c).ok();
    assert!(reservations(&rig.data, "hdnet").is_empty());
    rig.ours("c1").run(&rig.pair.host, "DEL", &c).ok();
    rig.assert_home(&mac);
}

#[test]
fn renamed_inside_the_container_still_comes_home() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("hd-renamed");
    let mac = rig.mac();
    let c = rig.conf("1.1.0");
    for with_prev_result in [true, false] {
        let r = add(&rig, &c);
        let ctr = &rig.pair.container;
        ctr.ip(&["link", "set", "eth0", "down"]);
        ctr.ip(&["link", "set", "eth0", "name", "data0"]);
        let conf = match with_prev_result {
            true => with_prev(&c, &r),
            false => c.clone(), // found by its alias, which equals `device`
        };
        rig.ours("c1").run(&rig.pair.host, "DEL", &conf).ok();
        rig.assert_home(&mac);
        rig.ours("c1").run(&rig.pair.host, "DEL", &conf).ok();
        assert!(reservations(&rig.data, "hdnet").is_empty());
    }
}

#[test]
fn no_prev_result_and_no_ipam_store() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("hd-nostore");
    let mac = rig.mac();
    let c = rig.conf("1.1.0");
    add(&rig, &c);
    rig.ours("c1").run(&rig.pair.host, "DEL", &c).ok();
    rig.assert_home(&mac);
    add(&rig, &c);
    std::fs::remove_dir_all(rig.data.path()).unwrap();
    rig.ours("c1").run(&rig.pair.host, "DEL", &c).ok();
    rig.ours("c1").run(&rig.pair.host, "DEL", &c).ok();
    rig.assert_home(&mac);
}

/// hd0 is on the host, up, with its alias `uplink`, and nothing is reserved.
fn assert_untouched(rig: &Rig, mac: &str) {
    let l = rig.pair.host.link("hd0").expect("hd0 stays on the host");
    assert_eq!(l["address"], mac);
    assert_eq!(l["ifalias"], "uplink", "{l}");
    assert!(
        flags(&l).contains(&"UP".to_string()),
        "up state restored: {l}"
    );
    assert!(reservations(&rig.data, "hdnet").is_empty());
}

#[test]
fn a_failed_add_leaves_the_device_as_it_was() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("hd-failadd");
    rig.pair.host.ip(&["link", "set", "hd0", "alias", "uplink"]);
    let mac = rig.mac();
    // Fails at IPAM: the range is empty.
    let mut full = rig.conf("1.1.0");
    full["ipam"]["ranges"] = json!([[{"subnet": "10.60.0.0/30", "rangeStart": "10.60.0.1",
        "rangeEnd": "10.60.0.1", "gateway": "10.60.0.1"}]]);
    let out = rig.ours("c1").run(&rig.pair.host, "ADD", &full);
    assert_ne!(out.code, 0, "{out}");
    assert_untouched(&rig, &mac);
    // Fails while configuring the moved device: the route's gateway is unreachable.
    let mut bad_route = rig.conf("1.1.0");
    bad_route["ipam"]["routes"] = json!([{"dst": "192.0.2.0/24", "gw": "10.99.0.1"}]);
    let out = rig.ours("c1").run(&rig.pair.host, "ADD", &bad_route);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stdout.contains("192.0.2.0/24"), "{out}");
    assert_untouched(&rig, &mac);
    assert_eq!(rig.pair.container.link_names(), ["lo"]);
    // Fails on the move: the container already has an eth0.
    let ctr = &rig.pair.container;
    ctr.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"]);
    let out = rig
        .ours("c1")
        .run(&rig.pair.host, "ADD", &rig.conf("1.1.0"));
    assert_ne!(out.code, 0, "{out}");
    assert_untouched(&rig, &mac);
    assert!(ctr.link("eth0").unwrap().get("ifalias").is_none());
}

#[test]
fn bad_selectors_are_code_7_and_change_nothing() {
    if !crate::support::require_root() {
        return;
    }
    let rig = Rig::new("hd-badsel");
    rig.pair.host.ip(&[
        "link", "add", "other0", "type", "veth", "peer", "name", "other1",
    ]);
    let mac = rig.mac();
    let base = rig.conf("1.1.0");
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let mut none = base.clone();
    none.as_object_mut().unwrap().remove("device");
    let cases = [
        (with("device", json!("nosuch0")), "is not a link"),
        (with("hwaddr", json!("02:00:00:de:ad:00")), "is not a link"),
        (with("hwaddr", json!("not-a-mac")), "hwaddr"),
        (
            with(
                "hwaddr",
                json!(rig.pair.host.link("other0").unwrap()["address"]),
            ),
            "names hd0 but",
        ),
        (none, "specify either"),
    ];
    for (c, msg) in cases {
        let out = rig.ours("c1").run(&rig.pair.host, "ADD", &c);
        out.expect_error(7);
        assert!(out.stdout.contains(msg), "{msg}: {out}");
        let l = rig.pair.host.link("hd0").unwrap();
        assert_eq!(l["address"], mac.as_str());
        assert!(flags(&l).contains(&"UP".to_string()));
        assert_eq!(rig.pair.container.link_names(), ["lo"]);
        assert!(reservations(&rig.data, "hdnet").is_empty());
    }
}
