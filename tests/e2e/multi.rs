//! `multi`: the two-interface pod from one network config, called as kubelet calls it (one ADD
//! with `CNI_IFNAME=eth0`). `eth0` is a bridge + host-local attachment with the default route
//! and a port mapping; `net1` is a bridge-mode macvlan on the fake host's "LAN" NIC (a veth
//! whose peer is a LAN host netns), with an address from the LAN's range and a `hostShim`, so
//! the host reaches the pod's LAN address too. Oracles: `ip -j` in the container, ping from the
//! pod to the gateway and the LAN host, from the LAN host and from the host (through the shim)
//! to the pod, a TCP echo through the host port from an outside netns, the host-local stores,
//! the shim's state and the result cache; after DEL (twice) nothing is left, the shim
//! included. Also: a second attachment that fails (a master that does not exist) undoes the
//! first, DEL with the netns gone, GC of a stale container, and the runtime tool.

use crate::podnet::{addresses, reservations};
use crate::support::echo::{Ask, Servers, expect_answers};
use crate::support::ipam::tree;
use crate::support::residue::host_residue;
use crate::support::runtime::NetTool;
use crate::support::traffic::{Outside, ping};
use crate::support::{Cni, Farm, Outcome, Pair, TempDir, TestNs, require_root, tests_of};
use serde_json::{Value, json};
use std::time::Duration;

const NET: &str = "village";
const BRIDGE: &str = "cni-vil0";
const LAN_NIC: &str = "lan0";
const LAN_HOST: &str = "192.168.77.2";
const SHIM: &str = "vil-shim";
const SHIM_ADDR: &str = "192.168.77.250";

/// The fake host with its LAN and outside netns, the container, and the state dirs.
struct Rig {
    pair: Pair,
    lan: TestNs,
    outside: Outside,
    ipam: TempDir,
    cache: TempDir,
    shim_state: TempDir,
}

impl Rig {
    fn new(label: &str) -> Rig {
        let pair = Pair::new(label);
        pair.host.sh(
            "ip link set lo up && echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad \
             && echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad",
        );
        let lan = TestNs::new(&format!("{label}-lan"));
        pair.host.sh(&format!(
            "ip link add {LAN_NIC} type veth peer name lan1 && ip link set {LAN_NIC} up && \
             ip link set lan1 netns {}",
            lan.pid()
        ));
        lan.sh(&format!(
            "ip link set lo up && ip addr add {LAN_HOST}/24 dev lan1 && ip link set lan1 up"
        ));
        let outside = Outside::new(&pair.host, label);
        Rig {
            pair,
            lan,
            outside,
            ipam: TempDir::new(&format!("{label}-ipam")),
            cache: TempDir::new(&format!("{label}-cache")),
            shim_state: TempDir::new(&format!("{label}-shim")),
        }
    }

    /// The multi config: eth0 (bridge, default route, portmap) and net1 on the LAN.
    fn conf(&self, version: &str, net1_plugins: Value) -> Value {
        json!({
            "cniVersion": version, "name": NET, "type": "multi",
            "cacheDir": self.cache.path(),
            "capabilities": {"portMappings": true},
            "attachments": [
                {"ifname": "eth0", "plugins": [
                    {"type": "bridge", "bridge": BRIDGE, "isDefaultGateway": true, "ipMasq": true,
                     "ipam": {"type": "host-local", "dataDir": self.ipam.path(),
                              "ranges": [[{"subnet": "10.77.0.0/16"}]]}},
                    {"type": "portmap", "capabilities": {"portMappings": true}}]},
                {"ifname": "net1", "plugins": net1_plugins}]
        })
    }

    /// net1: a bridge-mode macvlan on the LAN NIC with a host shim, an address from the LAN's
    /// range, no gateway of its own.
    fn lan_plugins(&self) -> Value {
        json!([{"type": "macvlan", "master": LAN_NIC, "mode": "bridge",
                "hostShim": {"name": SHIM, "address": format!("{SHIM_ADDR}/24"),
                             "stateDir": self.shim_state.path()},
                "ipam": {"type": "host-local", "dataDir": self.ipam.path(),
                         "ranges": [[{"subnet": "192.168.77.0/24", "rangeStart": "192.168.77.100"}]]}}])
    }

    /// Runs `multi` as kubelet would: one call, `CNI_IFNAME=eth0`.
    fn call(&self, verb: &str, id: &str, netns: &str, conf: &Value) -> Outcome {
        Cni::new(Farm::shared(), "multi")
            .command(verb)
            .container_id(id)
            .netns(netns)
            .ifname("eth0")
            .config(conf)
            .run_in(&self.pair.host)
    }

    /// Everything the attachments can leave: host links, rules, reservations, cache files.
    fn residue(&self) -> Vec<String> {
        let mut left = host_residue(&self.pair.host, &[LAN_NIC, "out0"]);
        if self.pair.host.link(SHIM).is_some() {
            left.push(format!("host shim {SHIM}"));
        }
        left.extend(
            tree(self.shim_state.path())
                .into_iter()
                .filter(|p| !p.ends_with(".lock"))
                .map(|p| format!("shim state {p}")),
        );
        left.extend(tree(self.ipam.path()).into_iter().filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            p.contains('/') && name != "lock" && !name.starts_with("last_reserved_ip")
        }));
        left.extend(
            tree(self.cache.path())
                .into_iter()
                .filter(|p| self.cache.join(p).is_file()),
        );
        left
    }
}

fn with_port_mapping(conf: &Value) -> Value {
    let mut c = conf.clone();
    c["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 18081, "containerPort": 8080, "protocol": "tcp"}]});
    c
}

/// ADD -> traffic -> CHECK -> DEL -> DEL for one version.
fn lifecycle(version: &str) {
    if !require_root() {
        return;
    }
    let rig = Rig::new(&format!("multi-{}", version.replace('.', "")));
    let ctr = rig.pair.container.path().to_str().unwrap().to_string();
    let conf = with_port_mapping(&rig.conf(version, rig.lan_plugins()));
    let add = rig.call("ADD", "pod1", &ctr, &conf);
    let result = add.result().clone();
    check_result(&result, version, &ctr);
    let eth0 = addresses(&rig.pair.container, "eth0");
    let net1 = addresses(&rig.pair.container, "net1");
    assert!(eth0.iter().any(|a| a.starts_with("10.77.")), "{eth0:?}");
    assert!(
        net1.iter().any(|a| a.starts_with("192.168.77.1")),
        "{net1:?}"
    );
    let default = rig.pair.container.ip_json(&["route", "show", "default"]);
    assert_eq!(default[0]["dev"], "eth0", "default route: {default}");
    assert_eq!(reservations(&rig.ipam, "village-eth0").len(), 1);
    assert_eq!(reservations(&rig.ipam, "village-net1").len(), 1);

    let pod_lan = net1[0].split('/').next().unwrap().to_string();
    let within = Duration::from_secs(5);
    assert!(
        ping(&rig.pair.container, "10.77.0.1", within),
        "pod -> eth0 gateway"
    );
    assert!(
        ping(&rig.pair.container, LAN_HOST, within),
        "pod -> LAN host over net1"
    );
    assert!(
        ping(&rig.lan, &pod_lan, within),
        "LAN host -> pod's net1 address"
    );
    {
        let _servers = Servers::start(&rig.pair.container, 8080, 5353);
        let to = format!("{}:18081", rig.outside.host_v4);
        let peer = rig.outside.v4.to_string();
        expect_answers(
            "port mapping on eth0",
            &[Ask::tcp(&rig.outside.ns, &to, &peer)],
        );
    }

    if version >= "0.4.0" {
        rig.call("CHECK", "pod1", &ctr, &conf).ok();
        rig.pair.container.ip(&["link", "del", "net1"]);
        let broken = rig.call("CHECK", "pod1", &ctr, &conf);
        assert_ne!(broken.code, 0, "CHECK must notice net1 is gone");
    }
    rig.call("DEL", "pod1", &ctr, &conf).ok();
    rig.call("DEL", "pod1", &ctr, &conf).ok();
    assert_eq!(rig.residue(), Vec::<String>::new(), "left after DEL");
    assert_eq!(rig.pair.container.link_names(), ["lo"]);
}

tests_of!(lifecycle:
    lifecycle_0_3_1 = "0.3.1", lifecycle_0_4_0 = "0.4.0",
    lifecycle_1_0_0 = "1.0.0", lifecycle_1_1_0 = "1.1.0");

/// One merged result: both container interfaces, each address pointing at its own.
fn check_result(result: &Value, version: &str, ctr: &str) {
    assert_eq!(result["cniVersion"], version);
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    let by_index = |i: &Value| ifaces[i.as_u64().unwrap() as usize].clone();
    for ip in result["ips"].as_array().expect("ips") {
        let iface = by_index(&ip["interface"]);
        assert_eq!(iface["sandbox"], ctr, "{ip} -> {iface}");
        let addr = ip["address"].as_str().unwrap();
        let want = if addr.starts_with("10.77.") {
            "eth0"
        } else {
            "net1"
        };
        assert_eq!(iface["name"], want, "{addr}");
    }
    assert_eq!(result["ips"].as_array().unwrap().len(), 2, "{result}");
}

#[test]
fn failing_second_attachment_undoes_the_first() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("multi-undo");
    let ctr = rig.pair.container.path().to_str().unwrap().to_string();
    let mut no_master = rig.lan_plugins();
    no_master[0]["master"] = json!("nosuchnic0");
    let mut no_plugin = rig.lan_plugins();
    no_plugin
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "no-such-plugin"}));
    for (what, net1, needle) in [
        ("a master that does not exist", no_master, "nosuchnic0"),
        ("a plugin that does not exist", no_plugin, "no-such-plugin"),
    ] {
        let out = rig.call("ADD", "pod1", &ctr, &rig.conf("1.0.0", net1));
        assert_ne!(out.code, 0, "{what}: ADD succeeded");
        let msg = out.json.as_ref().unwrap()["msg"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            msg.contains("net1") && msg.contains(needle),
            "{what}: {msg}"
        );
        assert_eq!(
            rig.residue(),
            Vec::<String>::new(),
            "{what}: left after the failed ADD"
        );
        assert_eq!(rig.pair.container.link_names(), ["lo"], "{what}");
    }
}

#[test]
fn del_with_the_netns_gone_releases_everything() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("multi-nons");
    let ctr_ns = TestNs::new("multi-nons-ctr2");
    let ctr = ctr_ns.path().to_str().unwrap().to_string();
    let conf = rig.conf("1.1.0", rig.lan_plugins());
    rig.call("ADD", "pod1", &ctr, &conf).ok();
    drop(ctr_ns);
    // The path is gone now, as after a node reboot.
    rig.call("DEL", "pod1", &ctr, &conf).ok();
    rig.call("DEL", "pod1", "", &conf).ok();
    assert_eq!(rig.residue(), Vec::<String>::new(), "left after DEL");
}

#[test]
fn gc_removes_stale_pods_only() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("multi-gc");
    let other = TestNs::new("multi-gc-ctr2");
    let conf = rig.conf("1.1.0", rig.lan_plugins());
    let ctr1 = rig.pair.container.path().to_str().unwrap().to_string();
    let ctr2 = other.path().to_str().unwrap().to_string();
    rig.call("ADD", "pod1", &ctr1, &conf).ok();
    rig.call("ADD", "pod2", &ctr2, &conf).ok();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "pod1", "ifname": "eth0"}]);
    Cni::new(Farm::shared(), "multi")
        .command("GC")
        .config(&gc)
        .run_in(&rig.pair.host)
        .ok();
    assert_eq!(other.link_names(), ["lo"], "pod2's interfaces are gone");
    assert_eq!(reservations(&rig.ipam, "village-eth0").len(), 1);
    assert_eq!(reservations(&rig.ipam, "village-net1").len(), 1);
    let mut names = rig.pair.container.link_names();
    names.sort();
    assert_eq!(names, ["eth0", "lo", "net1"], "pod1 keeps both");
    assert!(
        rig.pair.host.link(SHIM).is_some(),
        "pod1 still uses the shim"
    );
    rig.call("DEL", "pod1", &ctr1, &conf).ok();
    assert_eq!(rig.residue(), Vec::<String>::new(), "left after DEL");
}

#[test]
fn through_the_runtime_tool_as_one_network() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("multi-net");
    let tool = NetTool::new("multi-net");
    let mut conf = rig.conf("1.1.0", rig.lan_plugins());
    conf.as_object_mut().unwrap().remove("cniVersion");
    let list = json!({"cniVersion": "1.1.0", "name": NET, "plugins": [conf]});
    tool.write("10-village.conflist", &list);
    let ctr = rig.pair.container.path().to_str().unwrap().to_string();
    let add = tool.run(&rig.pair.host, &["add", "--json", NET, &ctr]);
    add.ok();
    let mut names = rig.pair.container.link_names();
    names.sort();
    assert_eq!(names, ["eth0", "lo", "net1"]);
    tool.run(&rig.pair.host, &["check", NET, &ctr]).ok();
    tool.run(&rig.pair.host, &["status", NET]).ok();
    tool.run(&rig.pair.host, &["del", NET, &ctr]).ok();
    assert_eq!(rig.residue(), Vec::<String>::new(), "left after DEL");
    assert_eq!(tool.cached_files(), Vec::<String>::new());
}

/// A shim the user made is used (the pod's route goes through it) but never changed or
/// removed: no address added, still there after the last pod's DEL.
#[test]
fn a_users_own_shim_is_used_and_left_alone() {
    if !require_root() {
        return;
    }
    let rig = Rig::new("multi-ushim");
    rig.pair.host.sh(&format!(
        "ip link add {SHIM} link {LAN_NIC} type macvlan mode bridge && ip link set {SHIM} up"
    ));
    let ctr = rig.pair.container.path().to_str().unwrap().to_string();
    let conf = rig.conf("1.1.0", rig.lan_plugins());
    rig.call("ADD", "pod1", &ctr, &conf).ok();
    let net1 = addresses(&rig.pair.container, "net1");
    let pod_lan = net1[0].split('/').next().unwrap().to_string();
    let route = rig.pair.host.ip_json(&["route", "show", &pod_lan]);
    assert_eq!(route[0]["dev"], SHIM, "{route}");
    assert_eq!(
        addresses(&rig.pair.host, SHIM),
        Vec::<String>::new(),
        "address added to the user's shim"
    );
    rig.call("DEL", "pod1", &ctr, &conf).ok();
    assert!(
        rig.pair.host.link(SHIM).is_some(),
        "the user's shim was removed"
    );
    assert_eq!(
        rig.pair.host.ip_json(&["route", "show", &pod_lan]),
        json!([])
    );
    rig.pair.host.ip(&["link", "del", SHIM]);
    assert_eq!(rig.residue(), Vec::<String>::new());
}

/// Spec 0.1.0 and 0.2.0: a result has room for one address per family only, so the merged
/// result reports eth0's (the pod IP a runtime reads); both interfaces are still made and
/// removed. DEL without prevResult in these versions, twice.
fn legacy_lifecycle(version: &str) {
    if !require_root() {
        return;
    }
    let rig = Rig::new(&format!("multi-l{}", version.replace('.', "")));
    let ctr = rig.pair.container.path().to_str().unwrap().to_string();
    let conf = rig.conf(version, rig.lan_plugins());
    let add = rig.call("ADD", "pod1", &ctr, &conf);
    let result = add.result().clone();
    assert_eq!(result["cniVersion"], version);
    let ip4 = result["ip4"]["ip"].as_str().expect("ip4");
    assert!(ip4.starts_with("10.77."), "{result}");
    let mut names = rig.pair.container.link_names();
    names.sort();
    assert_eq!(names, ["eth0", "lo", "net1"]);
    rig.call("DEL", "pod1", &ctr, &conf).ok();
    rig.call("DEL", "pod1", &ctr, &conf).ok();
    assert_eq!(rig.residue(), Vec::<String>::new(), "left after DEL");
}

tests_of!(legacy_lifecycle: legacy_lifecycle_0_1_0 = "0.1.0", legacy_lifecycle_0_2_0 = "0.2.0");

/// The village pod with net1 on the LAN's DHCP server: dnsmasq in the LAN netns, our dhcp
/// daemon in the fake host, the macvlan's address leased over the LAN; the LAN host and the
/// host (through the shim) reach it; DEL releases the lease (dnsmasq's lease file empties).
#[test]
fn net1_leased_from_the_lans_dhcp_server() {
    use crate::dhcp::rig::{Proc, wait_for};
    if !require_root() {
        return;
    }
    let rig = Rig::new("multi-dhcp");
    let dir = TempDir::new("multi-dhcp-files");
    let leases = dir.join("dnsmasq.leases");
    let argv: Vec<String> = [
        "dnsmasq",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=lan1",
        "--bind-interfaces",
        "--no-ping",
        "--dhcp-range=192.168.77.100,192.168.77.150,255.255.255.0,2m",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("--dhcp-leasefile={}", leases.display()),
        format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
    ])
    .collect();
    let _dnsmasq = Proc::spawn(&rig.lan, &argv, &dir.join("dnsmasq.log"));
    let sock = dir.join("run/dhcp.sock");
    let daemon_argv: Vec<String> = vec![
        Farm::shared().binary().display().to_string(),
        "dhcp".into(),
        "daemon".into(),
        "-socketpath".into(),
        sock.display().to_string(),
        "-leasedir".into(),
        dir.join("leases").display().to_string(),
    ];
    let _daemon = Proc::spawn(&rig.pair.host, &daemon_argv, &dir.join("daemon.log"));
    assert!(
        wait_for(Duration::from_secs(10), || sock.exists()),
        "dhcp daemon did not start"
    );
    let mut net1 = rig.lan_plugins();
    // The LAN's server sends its router (option 3): with `priority` that default route gets a
    // metric and stays behind eth0's, as the village setup wants.
    net1[0]["ipam"] = json!({"type": "dhcp", "daemonSocketPath": sock, "priority": 100});
    let conf = rig.conf("1.1.0", net1);
    let ctr = rig.pair.container.path().to_str().unwrap().to_string();
    let result = rig.call("ADD", "pod1", &ctr, &conf).result().clone();
    check_result(&result, "1.1.0", &ctr);
    let lan_addr = addresses(&rig.pair.container, "net1");
    let pod_lan = lan_addr[0].split('/').next().unwrap().to_string();
    let last: u8 = pod_lan.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        (100..=150).contains(&last),
        "not from the LAN's pool: {pod_lan}"
    );
    let within = Duration::from_secs(5);
    assert!(
        ping(&rig.lan, &pod_lan, within),
        "LAN host -> pod's leased address"
    );
    assert!(
        ping(&rig.pair.host, &pod_lan, within),
        "host -> pod through the shim"
    );
    assert!(
        std::fs::read_to_string(&leases)
            .unwrap_or_default()
            .contains(&pod_lan)
    );
    rig.call("CHECK", "pod1", &ctr, &conf).ok();
    rig.call("DEL", "pod1", &ctr, &conf).ok();
    rig.call("DEL", "pod1", &ctr, &conf).ok();
    assert!(
        wait_for(Duration::from_secs(5), || !std::fs::read_to_string(&leases)
            .unwrap_or_default()
            .contains(&pod_lan)),
        "dnsmasq still holds the lease after DEL"
    );
    assert_eq!(rig.residue(), Vec::<String>::new(), "left after DEL");
}
