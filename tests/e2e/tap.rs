//! tap, end to end in a fake host and container netns: ADD -> CHECK -> DEL -> DEL in every
//! spec version with owner, group, multiQueue, MTU and MAC read back by `ip -d -j link` and
//! by the container's own sysfs (`owner`, `group`, `tun_flags`); L2 only; a bridge inside the
//! container; traffic: a reader attached to the tap (as a VMM would) sees the ARP request the
//! container sends for a neighbour, and the carrier comes up; failures (bad owner, SELinux
//! context without SELinux, missing bridge, name taken) are code 7 or leave nothing; the DEL
//! matrix (netns gone, link gone, no prevResult, IPAM store gone, a non-tap `eth0` kept).
//! The reference v1.1.1 in /usr/lib/cni has no tap plugin (it came in v1.3), so there is no
//! interop test.

use crate::podnet::{
    Attachment, VERSIONS, addresses, check_del_del_in, reservations, result_addresses, versioned,
    with_prev,
};
use crate::support::traffic::in_netns;
use crate::support::{Pair, TempDir, TestNs, require_root};
use serde_json::{Value, json};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

fn conf(data: &TempDir, extra: Value) -> Value {
    let range = json!([[{"subnet": "10.70.0.0/24"}]]);
    let mut c = json!({"name": "tapnet", "type": "tap",
        "ipam": {"type": "host-local", "dataDir": data.path(), "ranges": range}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn ours(ctr: &TestNs) -> Attachment {
    Attachment::ours("tap", "c1", ctr.path(), "eth0")
}

/// `ip -d -j link show eth0`'s tun `info_data`.
fn tun_info(ctr: &TestNs) -> Value {
    let l = ctr.link("eth0").expect("eth0 in the container");
    assert_eq!(l["linkinfo"]["info_kind"], "tun", "{l}");
    l["linkinfo"]["info_data"].clone()
}

/// `owner group tun_flags` of eth0 from a sysfs mounted inside the container's netns.
fn sysfs_tun(ctr: &TestNs) -> String {
    let script =
        "mount -t sysfs none /sys && cd /sys/class/net/eth0 && echo $(cat owner group tun_flags)";
    ctr.run(["unshare", "--mount", "sh", "-c", script])
        .trim()
        .to_string()
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let pair = Pair::new(&format!("tap-v{version}"));
        let data = TempDir::new("tap-versions");
        let extra = json!({"owner": 4242, "group": 4343, "multiQueue": true, "mtu": 1400,
            "mac": "02:00:00:00:70:01"});
        let c = versioned(&conf(&data, extra), version);
        let at = ours(&pair.container);
        let r = at.run(&pair.host, "ADD", &c).result().clone();
        assert_eq!(result_addresses(&r), ["10.70.0.2/24"], "{version}");
        let info = tun_info(&pair.container);
        let want = json!({"type": "tap", "pi": false, "vnet_hdr": true, "multi_queue": true,
            "persist": true, "user": 4242, "group": 4343});
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&info[k], v, "{k} in {info}");
        }
        // IFF_TAP | IFF_MULTI_QUEUE | IFF_PERSIST | IFF_NO_PI | IFF_VNET_HDR
        assert_eq!(sysfs_tun(&pair.container), "4242 4343 0x5902");
        let l = pair.container.link("eth0").unwrap();
        assert_eq!(
            (&l["mtu"], &l["address"]),
            (&json!(1400), &json!("02:00:00:00:70:01"))
        );
        assert_eq!(addresses(&pair.container, "eth0"), ["10.70.0.2/24"]);
        let arp = pair
            .container
            .run(["sysctl", "-n", "net.ipv4.conf.eth0.arp_notify"]);
        assert_eq!(arp.trim(), "1");
        if version >= "0.3.0" {
            let sandbox = pair.container.path().to_str().unwrap();
            let want = json!([{"name": "eth0", "mac": "02:00:00:00:70:01", "sandbox": sandbox}]);
            assert_eq!(r["interfaces"], want);
        }
        check_del_del_in(version, &at, &pair.host, &c, &r);
        assert_eq!(pair.container.link_names(), ["lo"]);
        assert!(reservations(&data, "tapnet").is_empty());
        assert_eq!(pair.host.link_names(), ["lo"], "nothing on the host");
    }
}

#[test]
fn layer_2_only_and_mac_from_cni_args_and_runtime_config() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("tap-l2");
    let c = versioned(
        &json!({"name": "tapnet", "type": "tap", "mac": "02:00:00:00:70:01",
                "runtimeConfig": {"mac": "02:00:00:00:70:03"}}),
        "1.0.0",
    );
    let at = ours(&pair.container);
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    assert_eq!(r["interfaces"][0]["mac"], "02:00:00:00:70:03");
    assert!(r.get("ips").is_none());
    let info = tun_info(&pair.container);
    assert!(
        info.get("user").is_none() && info["multi_queue"] == false,
        "{info}"
    );
    let l = pair.container.link("eth0").unwrap();
    assert!(l["flags"].as_array().unwrap().contains(&json!("UP")));
    check_del_del_in("1.0.0", &at, &pair.host, &c, &r);
    let mut c = c;
    c.as_object_mut().unwrap().remove("runtimeConfig");
    let r = crate::support::Cni::new(crate::support::Farm::shared(), "tap")
        .command("ADD")
        .container_id("c1")
        .netns(pair.container.path())
        .ifname("eth0")
        .args("IgnoreUnknown=1;MAC=02:00:00:00:70:02")
        .config(&c)
        .run_in(&pair.host)
        .result()
        .clone();
    assert_eq!(r["interfaces"][0]["mac"], "02:00:00:00:70:02");
    at.run(&pair.host, "DEL", &c).ok();
    assert_eq!(pair.container.link_names(), ["lo"]);
}

#[test]
fn a_bridge_inside_the_container() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("tap-bridge");
    let data = TempDir::new("tap-bridge");
    let c = versioned(&conf(&data, json!({"bridge": "br0"})), "1.1.0");
    let at = ours(&pair.container);
    let out = at.run(&pair.host, "ADD", &c);
    out.expect_error(7);
    assert!(
        out.stdout.contains("bridge \\\"br0\\\" does not exist"),
        "{out}"
    );
    assert_eq!(pair.container.link_names(), ["lo"]);
    assert!(reservations(&data, "tapnet").is_empty());
    pair.container.ip(&["link", "add", "br0", "type", "bridge"]);
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    let l = pair.container.link("eth0").unwrap();
    assert_eq!(l["master"], "br0", "{l}");
    check_del_del_in("1.1.0", &at, &pair.host, &c, &r);
    assert_eq!(pair.container.link_names(), ["lo", "br0"]);
}

/// Attaches to the tap `eth0` in `ctr` as a VMM would (`TUNSETIFF`, non-blocking reads).
fn attach(ctr: &TestNs) -> OwnedFd {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: i16,
        pad: [u8; 22],
    }
    in_netns(ctr, || {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("open /dev/net/tun");
        let mut req = IfReq {
            name: [0; 16],
            flags: 0x0002 | 0x1000 | 0x0100, // IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE
            pad: [0; 22],
        };
        req.name[..4].copy_from_slice(b"eth0");
        // SAFETY: a properly sized ifreq, alive for the call.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), 0x4004_54ca, &mut req as *mut IfReq) };
        assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        // SAFETY: fcntl on an fd we own.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        OwnedFd::from(f)
    })
}

#[test]
fn a_reader_on_the_tap_sees_the_containers_arp_request() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("tap-traffic");
    let data = TempDir::new("tap-traffic");
    let c = versioned(&conf(&data, json!({"multiQueue": true})), "1.1.0");
    let at = ours(&pair.container);
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    let mac = r["interfaces"][0]["mac"].as_str().unwrap().to_string();
    let fd = attach(&pair.container);
    let l = pair.container.link("eth0").unwrap();
    assert!(
        l["flags"].as_array().unwrap().contains(&json!("LOWER_UP")),
        "carrier: {l}"
    );
    let mut tap = std::fs::File::from(fd);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        pair.container
            .exec(["ping", "-c", "1", "-W", "1", "10.70.0.9"]);
        let mut buf = [0u8; 2048];
        while let Ok(n) = tap.read(&mut buf) {
            let f = &buf[..n];
            // Ethernet: ARP (0x0806), request (1), target protocol address 10.70.0.9.
            if n >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 1] && f[38..42] == [10, 70, 0, 9]
            {
                seen = Some(f[6..12].to_vec());
            }
        }
    }
    let src = seen.expect("an ARP request for 10.70.0.9 came out of the tap");
    let src: Vec<String> = src.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(src.join(":"), mac);
    drop(tap);
    at.run(&pair.host, "DEL", &with_prev(&c, &r)).ok();
    assert_eq!(pair.container.link_names(), ["lo"]);
}

#[test]
fn bad_config_and_a_taken_name_leave_nothing() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("tap-bad");
    let data = TempDir::new("tap-bad");
    let at = ours(&pair.container);
    let mut cases = vec![
        (conf(&data, json!({"owner": "root"})), "owner"),
        (conf(&data, json!({"group": -5})), "group"),
        (conf(&data, json!({"mac": "nope"})), "nope"),
    ];
    if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        cases.push((
            conf(
                &data,
                json!({"selinuxContext": "system_u:system_r:container_t:s0"}),
            ),
            "SELinux is not enabled",
        ));
    }
    for (c, msg) in cases {
        let out = at.run(&pair.host, "ADD", &versioned(&c, "1.1.0"));
        out.expect_error(7);
        assert!(out.stdout.contains(msg), "{msg}: {out}");
        assert_eq!(pair.container.link_names(), ["lo"]);
        assert!(reservations(&data, "tapnet").is_empty());
    }
    pair.container
        .ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"]);
    let c = versioned(&conf(&data, json!({})), "1.1.0");
    let out = at.run(&pair.host, "ADD", &c);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stdout.contains("rename"), "{out}");
    assert_eq!(pair.container.link_names(), ["lo", "x0", "eth0"]);
    assert!(reservations(&data, "tapnet").is_empty());
    // DEL leaves a link of another kind alone.
    at.run(&pair.host, "DEL", &c).ok();
    assert!(pair.container.link("eth0").is_some());
}

#[test]
fn del_is_total() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("tap-del");
    let data = TempDir::new("tap-del");
    let c = versioned(&conf(&data, json!({})), "1.1.0");
    let at = ours(&pair.container);
    // Link gone, then no prevResult.
    let r = at.run(&pair.host, "ADD", &c).result().clone();
    pair.container.ip(&["link", "del", "eth0"]);
    at.run(&pair.host, "DEL", &with_prev(&c, &r)).ok();
    assert!(reservations(&data, "tapnet").is_empty());
    at.run(&pair.host, "ADD", &c).ok();
    at.run(&pair.host, "DEL", &c).ok();
    assert_eq!(pair.container.link_names(), ["lo"]);
    // IPAM store gone.
    at.run(&pair.host, "ADD", &c).ok();
    std::fs::remove_dir_all(data.path()).unwrap();
    at.run(&pair.host, "DEL", &c).ok();
    assert_eq!(pair.container.link_names(), ["lo"]);
    // Netns gone, and empty.
    let other = TestNs::new("tap-del-2");
    let gone = other.path().to_str().unwrap().to_string();
    let at2 = ours(&other);
    at2.run(&pair.host, "ADD", &c).ok();
    drop(other);
    at2.netns(&gone).run(&pair.host, "DEL", &c).ok();
    at2.netns("").run(&pair.host, "DEL", &c).ok();
    assert!(reservations(&data, "tapnet").is_empty());
}

#[test]
fn gc_and_status_reach_ipam() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("tap-gc");
    let data = TempDir::new("tap-gc");
    let c = versioned(&conf(&data, json!({})), "1.1.0");
    ours(&pair.container).run(&pair.host, "ADD", &c).ok();
    let cni = |verb: &str, conf: &Value| {
        crate::support::Cni::new(crate::support::Farm::shared(), "tap")
            .command(verb)
            .config(conf)
            .run_in(&pair.host)
    };
    cni("STATUS", &c).ok();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    cni("GC", &gc).ok();
    assert_eq!(reservations(&data, "tapnet"), ["10.70.0.2"]);
    gc["cni.dev/valid-attachments"] = json!([]);
    cni("GC", &gc).ok();
    assert!(reservations(&data, "tapnet").is_empty());
    ours(&pair.container).run(&pair.host, "DEL", &c).ok();
    assert_eq!(pair.container.link_names(), ["lo"]);
}
