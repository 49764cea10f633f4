//! host-device on real PCI network functions: the VM rig's e1000 NICs (tests/vm runs this
//! module inside the VM, where `CNI_E2E_VM` is set; elsewhere every test skips, as moving this
//! machine's own NIC is out of the question). A NIC is moved into a fake host netns with its
//! own sysfs mount and handed to a container by `pciBusID` and by `runtimeConfig.deviceID`;
//! CHECK, DEL (back under its own name, alias cleared), DEL again; a frame crosses the QEMU hub
//! from the second NIC to the container's address; and with the container netns gone the
//! kernel hands the function back to the initial netns (under its container name, alias set),
//! where DEL gives it its name back and host-local releases the address.

use crate::podnet::{reservations, result_addresses, with_prev};
use crate::support::traffic::ping;
use crate::support::{Cni, Farm, Outcome, TempDir, TestNs, require_root, skip};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// Set by tests/vm/guest.sh: this process runs inside the VM (in its initial netns).
fn in_vm() -> bool {
    std::env::var_os("CNI_E2E_VM").is_some()
}

/// `(PCI address, netdev name)` of every PCI function with a netdev in this netns, sorted.
fn pci_netdevs() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for dev in std::fs::read_dir("/sys/bus/pci/devices")
        .into_iter()
        .flatten()
        .flatten()
    {
        for n in std::fs::read_dir(dev.path().join("net"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let pci = dev.file_name().to_string_lossy().into_owned();
            found.push((pci, n.file_name().to_string_lossy().into_owned()));
        }
    }
    found.sort();
    found
}

/// `ip ARGS` in this process's netns (the VM's initial one); panics on failure.
fn own_ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The link with MAC `mac` in this netns (`ip -j link`), if any.
fn own_link_by_mac(mac: &str) -> Option<Value> {
    let links: Value = serde_json::from_str(&own_ip(&["-j", "link", "show"])).unwrap();
    links
        .as_array()?
        .iter()
        .find(|l| l["address"] == mac)
        .cloned()
}

/// Wherever the NIC ended up (these namespaces or this one), on drop it is renamed back to
/// `name`, its alias cleared, and returned here for the next test.
struct Home<'a> {
    name: String,
    mac: String,
    nss: Vec<&'a TestNs>,
}

impl Drop for Home<'_> {
    fn drop(&mut self) {
        let fix = |cur: &str| {
            format!(
                "ip link set {cur} down; ip link set {cur} name {0}; ip link set {0} alias ''",
                self.name
            )
        };
        for ns in &self.nss {
            let links = ns.ip_json(&["link", "show"]);
            let found = links
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["address"] == self.mac);
            if let Some(cur) = found.and_then(|l| l["ifname"].as_str()) {
                let back = format!("{}; ip link set {} netns 1", fix(cur), self.name);
                let _ = ns.exec(["sh", "-c", &back]);
            }
        }
        if let Some(cur) =
            own_link_by_mac(&self.mac).and_then(|l| l["ifname"].as_str().map(String::from))
        {
            let _ = Command::new("sh").args(["-c", &fix(&cur)]).status();
        }
    }
}

/// Moves the NIC `name` into `host`; the ticket searches `nss` (and this netns) on drop.
fn setup<'a>(host: &TestNs, name: &str, nss: Vec<&'a TestNs>) -> Home<'a> {
    let mac = own_link_by_mac_name(name);
    own_ip(&["link", "set", name, "down"]);
    own_ip(&["link", "set", name, "netns", host.path().to_str().unwrap()]);
    Home {
        name: name.to_string(),
        mac,
        nss,
    }
}

fn own_link_by_mac_name(name: &str) -> String {
    let l: Value = serde_json::from_str(&own_ip(&["-j", "link", "show", "dev", name])).unwrap();
    l[0]["address"].as_str().unwrap().to_string()
}

/// host-device called inside `host`'s mount namespace (its own sysfs).
fn call(host: &TestNs, ctr_path: &str, verb: &str, conf: &Value) -> Outcome {
    let mnt = format!("--mount={}", host.mount_path().display());
    Cni::new(Farm::shared(), "host-device")
        .command(verb)
        .container_id("c1")
        .netns(ctr_path)
        .ifname("eth0")
        .config(conf)
        .under(["nsenter", mnt.as_str(), "--"])
        .run_in(host)
}

/// The NICs, or the reason to skip: only the VM may move them.
fn nics() -> Option<Vec<(String, String)>> {
    if !in_vm() {
        return None;
    }
    let nics = pci_netdevs();
    assert!(!nics.is_empty(), "the VM has e1000 PCI NICs");
    Some(nics)
}

fn static_conf(key: &str, value: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "pcinet", "type": "host-device",
        "ipam": {"type": "static", "addresses": [{"address": "10.61.0.5/24"}]}});
    c[key] = value;
    c
}

#[test]
fn moves_a_pci_function_by_pci_bus_id_and_device_id() {
    if !require_root() {
        return;
    }
    let Some(nics) = nics() else {
        skip!("kernel lacks a PCI network device free to move (this test runs in tests/vm)");
    };
    let (pci, name) = nics[0].clone();
    let host = TestNs::with_mounts("hdpci-host", "mount -t sysfs sysfs /sys");
    let ctr = TestNs::new("hdpci-ctr");
    let home = setup(&host, &name, vec![&ctr, &host]);
    let ctr_path = ctr.path().to_str().unwrap().to_string();
    for c in [
        static_conf("pciBusID", json!(pci)),
        static_conf("runtimeConfig", json!({"deviceID": pci})),
    ] {
        let r = call(&host, &ctr_path, "ADD", &c).result().clone();
        assert_eq!(
            r["interfaces"],
            json!([{"name": "eth0", "mac": home.mac, "sandbox": ctr_path}])
        );
        let l = ctr
            .link("eth0")
            .expect("the PCI function's netdev is eth0 in the container");
        assert_eq!(
            (&l["ifalias"], &l["address"]),
            (&json!(name), &json!(home.mac))
        );
        assert_eq!(result_addresses(&r), ["10.61.0.5/24"]);
        assert!(host.link(&name).is_none());
        let with = with_prev(&c, &r);
        for verb in ["CHECK", "DEL", "DEL"] {
            call(&host, &ctr_path, verb, &with).ok();
        }
        let l = host
            .link(&name)
            .expect("back on the host under its own name");
        assert!(l.get("ifalias").is_none(), "{l}");
        assert_eq!(ctr.link_names(), ["lo"]);
    }
}

#[test]
fn a_frame_crosses_the_hub_to_the_container() {
    if !require_root() {
        return;
    }
    let Some(nics) = nics() else {
        skip!("kernel lacks two PCI network devices free to move (this test runs in tests/vm)");
    };
    assert!(nics.len() >= 2, "the VM has two e1000 NICs: {nics:?}");
    let ((pci, name), (_, other)) = (nics[0].clone(), nics[1].clone());
    let host = TestNs::with_mounts("hdpci2-host", "mount -t sysfs sysfs /sys");
    let (ctr, lan) = (TestNs::new("hdpci2-ctr"), TestNs::new("hdpci2-lan"));
    let _home = setup(&host, &name, vec![&ctr, &host]);
    let _lan_home = setup(&lan, &other, vec![&lan]);
    lan.ip(&["addr", "add", "10.61.0.1/24", "dev", &other]);
    lan.ip(&["link", "set", &other, "up"]);
    let ctr_path = ctr.path().to_str().unwrap().to_string();
    let c = static_conf("pciBusID", json!(pci));
    let r = call(&host, &ctr_path, "ADD", &c).result().clone();
    assert!(
        ping(&lan, "10.61.0.5", Duration::from_secs(30)),
        "LAN -> container over e1000"
    );
    call(&host, &ctr_path, "DEL", &with_prev(&c, &r)).ok();
    assert!(host.link(&name).is_some());
}

#[test]
fn netns_gone_the_kernel_returns_the_function_and_del_renames_it() {
    if !require_root() {
        return;
    }
    let Some(nics) = nics() else {
        skip!("kernel lacks a PCI network device free to move (this test runs in tests/vm)");
    };
    let (pci, name) = nics[0].clone();
    let data = TempDir::new("hdpci-gone");
    let host = TestNs::with_mounts("hdpci3-host", "mount -t sysfs sysfs /sys");
    let ctr = TestNs::new("hdpci3-ctr");
    let home = setup(&host, &name, vec![&host]);
    let ctr_path = ctr.path().to_str().unwrap().to_string();
    let range = json!([[{"subnet": "10.61.0.0/24"}]]);
    let c = json!({"cniVersion": "1.1.0", "name": "pcinet", "type": "host-device", "pciBusID": pci,
        "ipam": {"type": "host-local", "dataDir": data.path(), "ranges": range}});
    let r = call(&host, &ctr_path, "ADD", &c).result().clone();
    let with = with_prev(&c, &r);
    drop(ctr);
    // The kernel moves a physical device of a dying netns to the initial one (this one).
    let mut back = None;
    for _ in 0..100 {
        back = own_link_by_mac(&home.mac);
        if back.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = back.expect("the function is back in the initial netns");
    assert_eq!(back["ifalias"], name.as_str(), "it keeps the alias: {back}");
    call(&host, &ctr_path, "DEL", &with).ok();
    assert!(
        reservations(&data, "pcinet").is_empty(),
        "the address is released"
    );
    // DEL run where the device landed (a plugin on a real node runs there) renames it.
    let in_init = Cni::new(Farm::shared(), "host-device")
        .command("DEL")
        .container_id("c1")
        .netns(&ctr_path)
        .ifname("eth0")
        .config(&with)
        .under(["nsenter", "--net=/proc/1/ns/net", "--"]);
    in_init.run_in(&host).ok();
    let l = own_link_by_mac(&home.mac).expect("still here");
    assert_eq!(l["ifname"], name.as_str(), "{l}");
    assert!(l.get("ifalias").is_none(), "{l}");
    in_init.run_in(&host).ok();
}
