//! flannel, end to end: a subnet.env as flanneld writes it (IPv4, IPv6, dual stack), ADD ->
//! CHECK -> DEL -> DEL in every spec version with the saved delegate file as upstream's;
//! DEL after subnet.env is gone; DEL of a container ADDed by the upstream plugin (its saved
//! file written by hand, the attachment made by the reference bridge); and two fake nodes
//! joined the way flanneld's vxlan backend joins them (flannel.1, a route per remote
//! subnet, static neigh and fdb entries), whose pods ping each other.

use crate::podnet::{
    Attachment, REF_VERSION, VERSIONS, addresses, check_del_del_in, host_veths, result_addresses,
};
use crate::support::traffic::ping;
use crate::support::{Pair, TempDir, TestNs, kernel_supports, require_root, skip};
use serde_json::{Value, json};
use std::time::Duration;

const V4_ENV: &str = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
const V6_ENV: &str = "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
const DUAL_ENV: &str = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

/// A flannel config reading `dir/subnet.env`, saving to `dir/flannel`, host-local in
/// `dir/ipam` (so nothing touches the machine's /var/lib/cni).
fn conf(dir: &TempDir, version: &str) -> Value {
    json!({
        "cniVersion": version, "name": "cni-flannel", "type": "flannel",
        "subnetFile": dir.join("subnet.env"), "dataDir": dir.join("flannel"),
        "ipam": {"dataDir": dir.join("ipam")},
        "delegate": {"bridge": "cni0", "hairpinMode": true}
    })
}

fn saved(dir: &TempDir, cid: &str) -> Option<Value> {
    let bytes = std::fs::read(dir.join("flannel").join(cid)).ok()?;
    Some(serde_json::from_slice(&bytes).expect("saved delegate config is JSON"))
}

/// host-local's reservations for network cni-flannel under `dir/ipam`.
fn held(dir: &TempDir) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir.join("ipam").join("cni-flannel")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
        .collect();
    out.sort();
    out
}

fn lifecycle(env: &str, want: &[&str], label: &str) {
    if !require_root() {
        return;
    }
    for version in VERSIONS {
        let pair = Pair::new(&format!("fl-{label}-{version}"));
        let dir = TempDir::new("flannel");
        dir.write("subnet.env", env);
        let c = conf(&dir, version);
        let at = Attachment::ours("flannel", "ctr-1", pair.container.path(), "eth0");
        let result = at.run(&pair.host, "ADD", &c).result().clone();
        assert_eq!(result["cniVersion"], version);
        assert_eq!(result_addresses(&result), want, "{version}");
        assert_eq!(addresses(&pair.container, "eth0"), want, "{version}");
        let s = saved(&dir, "ctr-1").expect("ADD saves the delegate config");
        assert_eq!(
            (
                &s["type"],
                &s["name"],
                &s["isGateway"],
                &s["ipMasq"],
                &s["mtu"]
            ),
            (
                &json!("bridge"),
                &json!("cni-flannel"),
                &json!(true),
                &json!(false),
                &json!(1450)
            )
        );
        assert_eq!(s["cniVersion"], version);
        let link = pair.container.link("eth0").unwrap();
        assert_eq!(link["mtu"], 1450, "{version}");
        check_routes(&pair.container, env);
        check_del_del_in(version, &at, &pair.host, &c, &result);
        assert!(saved(&dir, "ctr-1").is_none(), "DEL removes the saved file");
        assert!(host_veths(&pair.host).is_empty(), "{version}");
        assert!(held(&dir).is_empty(), "{version}");
    }
}

/// The routes to the flannel networks go through the bridge's gateway.
fn check_routes(ctr: &TestNs, env: &str) {
    if env.contains("FLANNEL_NETWORK=") {
        let r = ctr.ip_json(&["-4", "route", "show", "10.1.0.0/16"]);
        assert_eq!(r[0]["gateway"], "10.1.17.1", "{r}");
    }
    if env.contains("FLANNEL_IPV6_NETWORK=") {
        let r = ctr.ip_json(&["-6", "route", "show", "fc00::/48"]);
        assert_eq!(r[0]["gateway"], "fc00::1", "{r}");
    }
}

#[test]
fn ipv4_add_check_del_del_in_every_version() {
    lifecycle(V4_ENV, &["10.1.17.2/24"], "v4");
}

#[test]
fn ipv6_add_check_del_del_in_every_version() {
    lifecycle(V6_ENV, &["fc00::2/64"], "v6");
}

#[test]
fn dual_stack_add_check_del_del_in_every_version() {
    lifecycle(DUAL_ENV, &["10.1.17.2/24", "fc00::2/64"], "dual");
}

#[test]
fn del_works_after_subnet_env_is_gone() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fl-gone");
    let dir = TempDir::new("flannel-gone");
    dir.write("subnet.env", V4_ENV);
    let c = conf(&dir, "1.0.0");
    let at = Attachment::ours("flannel", "ctr-gone", pair.container.path(), "eth0");
    at.run(&pair.host, "ADD", &c).ok();
    std::fs::remove_file(dir.join("subnet.env")).unwrap();
    let add = Attachment::ours("flannel", "ctr-other", pair.container.path(), "eth1");
    let err = add.run(&pair.host, "ADD", &c).expect_error(11).clone();
    assert!(err["msg"].as_str().unwrap().contains("subnet.env"), "{err}");
    at.run(&pair.host, "DEL", &c).ok();
    assert!(host_veths(&pair.host).is_empty());
    assert!(pair.container.link("eth0").is_none());
    assert!(held(&dir).is_empty());
    at.run(&pair.host, "DEL", &c).ok();
}

#[test]
fn incomplete_subnet_env_names_the_variable_and_status_says_50() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fl-bad");
    let dir = TempDir::new("flannel-bad");
    dir.write(
        "subnet.env",
        "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\n",
    );
    let c = conf(&dir, "1.1.0");
    let at = Attachment::ours("flannel", "ctr-bad", pair.container.path(), "eth0");
    let err = at.run(&pair.host, "ADD", &c).expect_error(7).clone();
    let msg = err["msg"].as_str().unwrap();
    assert!(
        msg.contains("FLANNEL_MTU") && msg.contains("FLANNEL_IPMASQ"),
        "{msg}"
    );
    assert!(saved(&dir, "ctr-bad").is_none());
    assert!(host_veths(&pair.host).is_empty());
    at.run(&pair.host, "STATUS", &c).expect_error(50);
    dir.write("subnet.env", V4_ENV);
    at.run(&pair.host, "STATUS", &c).ok();
}

/// A container ADDed by upstream flannel: its saved file (the delegate config as Go's
/// `json.Marshal` writes it: keys sorted, no spaces, no cniVersion when the network config
/// had none) and the attachment the reference bridge made from it. Our DEL undoes both.
#[test]
fn del_of_a_container_added_by_upstream_flannel() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fl-interop");
    let dir = TempDir::new("flannel-interop");
    dir.write("subnet.env", V4_ENV);
    let ipam_dir_s = dir.join("ipam").display().to_string();
    let upstream = format!(
        r#"{{"bridge":"cni0","cniVersion":"{REF_VERSION}","ipMasq":false,"ipam":{{"dataDir":"{ipam_dir_s}","ranges":[[{{"subnet":"10.1.17.0/24"}}]],"routes":[{{"dst":"10.1.0.0/16"}}],"type":"host-local"}},"isGateway":true,"mtu":1450,"name":"cni-flannel","type":"bridge"}}"#
    );
    let Some(theirs) = Attachment::reference("bridge", "ctr-up", pair.container.path(), "eth0")
    else {
        skip!("the reference bridge plugin is not installed (containernetworking-plugins)");
    };
    let delegate: Value = serde_json::from_str(&upstream).unwrap();
    theirs.run(&pair.host, "ADD", &delegate).ok();
    dir.write("flannel/ctr-up", &upstream);
    assert_eq!(held(&dir), ["10.1.17.2"]);
    assert_eq!(host_veths(&pair.host).len(), 1);
    let ours = Attachment::ours("flannel", "ctr-up", pair.container.path(), "eth0");
    ours.run(&pair.host, "DEL", &conf(&dir, REF_VERSION)).ok();
    assert!(host_veths(&pair.host).is_empty());
    assert!(pair.container.link("eth0").is_none());
    assert!(held(&dir).is_empty());
    assert!(saved(&dir, "ctr-up").is_none());
}

/// One fake node: a host netns with an underlay address on `u0`, flanneld's vxlan device
/// `flannel.1` (VNI 1, port 8472, no learning) holding `<subnet>.0/32`, and a subnet.env.
struct Node {
    host: TestNs,
    pod: TestNs,
    dir: TempDir,
    underlay: &'static str,
    subnet: &'static str,
}

impl Node {
    fn new(label: &str, underlay: &'static str, subnet: &'static str) -> Node {
        let dir = TempDir::new(label);
        dir.write(
            "subnet.env",
            format!(
                "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET={subnet}.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
            ),
        );
        let pair = Pair::new(label);
        Node {
            host: pair.host,
            pod: pair.container,
            dir,
            underlay,
            subnet,
        }
    }

    fn vxlan_up(&self) {
        self.host.sh(&format!(
            "ip link set lo up && ip addr add {u}/24 dev u0 && ip link set u0 up && \
             ip link add flannel.1 type vxlan id 1 local {u} dev u0 dstport 8472 nolearning && \
             ip addr add {s}.0/32 dev flannel.1 && ip link set flannel.1 up && \
             sysctl -qw net.ipv4.ip_forward=1",
            u = self.underlay,
            s = self.subnet
        ));
    }

    /// What flanneld does when it learns of `peer`'s lease.
    fn learn(&self, peer: &Node) {
        let mac = peer.host.link("flannel.1").unwrap()["address"]
            .as_str()
            .unwrap()
            .to_string();
        self.host.sh(&format!(
            "ip route add {s}.0/24 via {s}.0 dev flannel.1 onlink && \
             ip neigh add {s}.0 lladdr {mac} dev flannel.1 nud permanent && \
             bridge fdb append {mac} dev flannel.1 dst {u} self permanent",
            s = peer.subnet,
            u = peer.underlay
        ));
    }
}

#[test]
fn pods_on_two_vxlan_nodes_reach_each_other() {
    if !require_root() {
        return;
    }
    if !kernel_supports("vxlan") {
        skip!("kernel lacks vxlan");
    }
    let a = Node::new("fl-node-a", "192.168.77.1", "10.1.1");
    let b = Node::new("fl-node-b", "192.168.77.2", "10.1.2");
    a.host.ip(&[
        "link",
        "add",
        "u0",
        "type",
        "veth",
        "peer",
        "name",
        "u0",
        "netns",
        &b.host.pid().to_string(),
    ]);
    a.vxlan_up();
    b.vxlan_up();
    a.learn(&b);
    b.learn(&a);
    for n in [&a, &b] {
        let at = Attachment::ours("flannel", "pod", n.pod.path(), "eth0");
        let r = at
            .run(&n.host, "ADD", &conf(&n.dir, "1.1.0"))
            .result()
            .clone();
        assert_eq!(result_addresses(&r), [format!("{}.2/24", n.subnet)]);
    }
    assert!(
        ping(&a.pod, "10.1.2.2", Duration::from_secs(10)),
        "pod a -> pod b"
    );
    assert!(
        ping(&b.pod, "10.1.1.2", Duration::from_secs(10)),
        "pod b -> pod a"
    );
    for n in [&a, &b] {
        let at = Attachment::ours("flannel", "pod", n.pod.path(), "eth0");
        at.run(&n.host, "DEL", &conf(&n.dir, "1.1.0")).ok();
        assert!(host_veths(&n.host).is_empty());
    }
}

/// The delegate is our own bridge (and its host-local): both run inside the flannel process,
/// `strace -f` sees one execve.
#[test]
fn the_delegate_runs_in_process() {
    if !require_root() {
        return;
    }
    if !std::path::Path::new("/usr/bin/strace").is_file() {
        skip!("strace not installed");
    }
    let pair = Pair::new("fl-inproc");
    let dir = TempDir::new("flannel-inproc");
    dir.write("subnet.env", V4_ENV);
    let log = dir.join("strace.log");
    let c = conf(&dir, "1.1.0");
    let out = crate::support::Cni::new(crate::support::Farm::shared(), "flannel")
        .command("ADD")
        .container_id("inproc")
        .netns(pair.container.path())
        .ifname("eth0")
        .config(&c)
        .under([
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=execve",
            "-o",
            log.to_str().unwrap(),
        ])
        .run_in(&pair.host);
    assert_eq!(result_addresses(out.result()), ["10.1.17.2/24"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let execs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("execve(") && !l.contains("resumed>"))
        .collect();
    assert_eq!(execs.len(), 1, "only flannel itself: {execs:#?}");
    assert!(execs[0].contains("/flannel\""), "{execs:?}");
    Attachment::ours("flannel", "inproc", pair.container.path(), "eth0")
        .run(&pair.host, "DEL", &c)
        .ok();
}

/// GC runs the delegate built from the current subnet.env with the runtime's list: host-local
/// releases what no valid attachment holds.
#[test]
fn gc_reaches_host_local_through_the_delegate() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fl-gc");
    let second = TestNs::new("fl-gc-ctr2");
    let dir = TempDir::new("flannel-gc");
    dir.write("subnet.env", V4_ENV);
    let c = conf(&dir, "1.1.0");
    let keep = Attachment::ours("flannel", "keep", pair.container.path(), "eth0");
    let stale = Attachment::ours("flannel", "stale", second.path(), "eth0");
    keep.run(&pair.host, "ADD", &c).ok();
    stale.run(&pair.host, "ADD", &c).ok();
    assert_eq!(held(&dir), ["10.1.17.2", "10.1.17.3"]);
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    keep.run(&pair.host, "GC", &gc).ok();
    assert_eq!(
        held(&dir),
        ["10.1.17.2"],
        "the stale reservation is released"
    );
    keep.run(&pair.host, "DEL", &c).ok();
    stale.run(&pair.host, "DEL", &c).ok();
    assert!(held(&dir).is_empty());
}

/// A delegate ADD that fails (an MTU no veth takes) is undone: the delegate's DEL runs, the
/// saved file goes, nothing is left in the host or the IPAM store.
#[test]
fn a_failed_delegate_add_leaves_nothing() {
    if !require_root() {
        return;
    }
    let pair = Pair::new("fl-fail");
    let dir = TempDir::new("flannel-fail");
    dir.write("subnet.env", V4_ENV);
    let mut c = conf(&dir, "1.1.0");
    c["delegate"]["mtu"] = json!(70000);
    let at = Attachment::ours("flannel", "ctr-fail", pair.container.path(), "eth0");
    let out = at.run(&pair.host, "ADD", &c);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        saved(&dir, "ctr-fail").is_none(),
        "the saved file is removed"
    );
    assert!(host_veths(&pair.host).is_empty());
    assert!(pair.container.link("eth0").is_none());
    assert!(held(&dir).is_empty());
    at.run(&pair.host, "DEL", &c).ok();
}
