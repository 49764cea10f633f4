//! cluster-ipam against a real etcd (Debian's etcd-server 3.4, see `etcd_rig`): three fake
//! nodes allocating 300 addresses concurrently from one pool while the raft leader is killed
//! halfway (no duplicate, 300 keys by etcdctl), etcd down (ADD fails leaving nothing, DEL fails loudly
//! and succeeds later), GC per node, exclude and STATUS, every spec version, and TLS with
//! client certificates.

use crate::etcd_rig::{Etcd, Pki};
use crate::podnet::VERSIONS;
use crate::support::{Cni, Farm, Outcome, TempDir, TestNs, require_root};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const IPS: &str = "/cni-multi/ipam/pool/ips/";

/// A network config whose IPAM is cluster-ipam over `endpoints`, as node `node`.
fn conf(endpoints: &[String], node: &str, subnet: &str, extra: Value) -> Value {
    let mut ipam = json!({
        "type": "cluster-ipam", "etcdEndpoints": endpoints, "nodeName": node,
        "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        ipam[k] = v.clone();
    }
    json!({"cniVersion": "1.1.0", "name": "pool", "type": "bridge", "ipam": ipam})
}

fn call(etcd: &Etcd, ctr: &TestNs, verb: &str, cid: &str, c: &Value) -> Outcome {
    Cni::new(Farm::shared(), "cluster-ipam")
        .command(verb)
        .container_id(cid)
        .netns(ctr.path())
        .ifname("eth0")
        .config(c)
        .run_in(&etcd.ns)
}

fn address(out: &Outcome) -> String {
    out.result()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `count` ADDs split over three nodes with two workers each, all at once; `done` counts the
/// finished ones.
fn allocate_concurrently(
    eps: &[String],
    etcd: &Etcd,
    ctr: &TestNs,
    count: usize,
    done: &AtomicUsize,
) -> Vec<String> {
    let per = count / 6;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|w| {
                s.spawn(move || {
                    let node = format!("node{}", w % 3);
                    let c = conf(eps, &node, "10.60.0.0/22", json!({}));
                    (0..per)
                        .map(|k| {
                            let cid = format!("ctr-{}", w * per + k);
                            let a = address(&call(etcd, ctr, "ADD", &cid, &c));
                            done.fetch_add(1, Ordering::SeqCst);
                            a
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn three_nodes_allocate_300_without_duplicates_while_the_leader_is_killed() {
    if !require_root() {
        return;
    }
    let mut etcd = Etcd::start("cipam-300", 3);
    let ctr = TestNs::new("cipam-300-ctr");
    // Every node lists the leader first: killing it halfway forces an election and a failover.
    let leader = etcd.leader();
    let mut eps = etcd.endpoints();
    eps.swap(0, leader);
    let done = AtomicUsize::new(0);
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            while done.load(Ordering::SeqCst) < 150 {
                std::thread::sleep(Duration::from_millis(10));
            }
            etcd.sigkill_member(leader);
        });
        allocate_concurrently(&eps, &etcd, &ctr, 300, &done)
    });
    etcd.kill_member(leader);
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(got.len(), 300);
    assert_eq!(unique.len(), 300, "an address was handed out twice");
    let keys = etcd.keys(IPS);
    assert_eq!(keys.len(), 300, "one key per allocation");
    let from_keys: BTreeSet<String> = keys
        .iter()
        .map(|k| format!("{}/22", k.trim_start_matches(IPS)))
        .collect();
    assert_eq!(from_keys, got.iter().cloned().collect());
    assert_ne!(etcd.leader(), leader, "a new leader was elected");
    let one = etcd.etcdctl(&["get", "--print-value-only", &keys[0]]);
    let owner: Value = serde_json::from_str(one.trim()).unwrap();
    assert!(
        owner["node"].as_str().unwrap().starts_with("node"),
        "{owner}"
    );
    assert_eq!(owner["ifname"], "eth0");
}

#[test]
fn etcd_down_add_fails_leaving_nothing_and_del_fails_until_it_is_back() {
    if !require_root() {
        return;
    }
    let mut etcd = Etcd::start("cipam-down", 3);
    let ctr = TestNs::new("cipam-down-ctr");
    let c = conf(&etcd.endpoints(), "n1", "10.61.0.0/24", json!({}));
    assert_eq!(address(&call(&etcd, &ctr, "ADD", "c1", &c)), "10.61.0.2/24");
    etcd.kill_all();
    let err = call(&etcd, &ctr, "ADD", "c2", &c).expect_error(11).clone();
    assert!(
        err["msg"].as_str().unwrap().contains("etcd unavailable"),
        "{err}"
    );
    assert!(
        err["msg"].as_str().unwrap().contains("127.0.0.3:2379"),
        "{err}"
    );
    call(&etcd, &ctr, "DEL", "c1", &c).expect_error(11);
    call(&etcd, &ctr, "STATUS", "", &c).expect_error(50);
    etcd.restart_all();
    assert_eq!(
        etcd.keys(IPS),
        [format!("{IPS}10.61.0.2")],
        "the failed ADD left nothing"
    );
    call(&etcd, &ctr, "DEL", "c1", &c).ok();
    assert!(etcd.keys(IPS).is_empty());
    call(&etcd, &ctr, "DEL", "c1", &c).ok();
    call(&etcd, &ctr, "STATUS", "", &c).ok();
}

#[test]
fn no_quorum_is_status_50() {
    if !require_root() {
        return;
    }
    let mut etcd = Etcd::start("cipam-quorum", 3);
    let ctr = TestNs::new("cipam-quorum-ctr");
    let c = conf(&etcd.endpoints(), "n1", "10.62.0.0/24", json!({}));
    call(&etcd, &ctr, "STATUS", "", &c).ok();
    etcd.kill_member(1);
    etcd.kill_member(2);
    let err = call(&etcd, &ctr, "STATUS", "", &c).expect_error(50).clone();
    assert!(err["msg"].as_str().unwrap().contains("etcd"), "{err}");
}

#[test]
fn gc_releases_only_this_nodes_stale_allocations() {
    if !require_root() {
        return;
    }
    let etcd = Etcd::start("cipam-gc", 1);
    let ctr = TestNs::new("cipam-gc-ctr");
    let eps = etcd.endpoints();
    let n1 = conf(&eps, "n1", "10.63.0.0/24", json!({}));
    let n2 = conf(&eps, "n2", "10.63.0.0/24", json!({}));
    for (cid, c) in [("a", &n1), ("b", &n1), ("c", &n2)] {
        call(&etcd, &ctr, "ADD", cid, c).ok();
    }
    call(&etcd, &ctr, "GC", "", &n1).ok();
    assert_eq!(
        etcd.keys(IPS).len(),
        3,
        "no valid-attachments list: nothing released"
    );
    let mut gc = n1.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
    call(&etcd, &ctr, "GC", "", &gc).ok();
    let owners: Vec<String> = etcd
        .keys(IPS)
        .iter()
        .map(|k| {
            let v = etcd.etcdctl(&["get", "--print-value-only", k]);
            serde_json::from_str::<Value>(v.trim()).unwrap()["containerID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        owners,
        ["a", "c"],
        "b released; n2's c is not n1's to collect"
    );
}

#[test]
fn exclude_is_never_handed_out_and_a_full_pool_is_status_50() {
    if !require_root() {
        return;
    }
    let etcd = Etcd::start("cipam-full", 1);
    let ctr = TestNs::new("cipam-full-ctr");
    let c = conf(
        &etcd.endpoints(),
        "n1",
        "10.64.0.0/29",
        json!({"exclude": ["10.64.0.2/31"]}),
    );
    let got: Vec<String> = ["x", "y", "z"]
        .iter()
        .map(|cid| address(&call(&etcd, &ctr, "ADD", cid, &c)))
        .collect();
    assert_eq!(got, ["10.64.0.4/29", "10.64.0.5/29", "10.64.0.6/29"]);
    let full = call(&etcd, &ctr, "ADD", "w", &c);
    assert_ne!(full.code, 0, "{full}");
    call(&etcd, &ctr, "STATUS", "", &c).expect_error(50);
    let mut want = c.clone();
    want["runtimeConfig"] = json!({"ips": ["10.64.0.3"]});
    call(&etcd, &ctr, "ADD", "w", &want).expect_error(7);
    call(&etcd, &ctr, "DEL", "y", &c).ok();
    call(&etcd, &ctr, "STATUS", "", &c).ok();
    assert_eq!(etcd.keys(IPS).len(), 2);
}

#[test]
fn add_check_del_del_in_every_version() {
    if !require_root() {
        return;
    }
    let etcd = Etcd::start("cipam-ver", 1);
    let ctr = TestNs::new("cipam-ver-ctr");
    for version in VERSIONS {
        let mut c = conf(&etcd.endpoints(), "n1", "10.65.0.0/24", json!({}));
        c["cniVersion"] = json!(version);
        let out = call(&etcd, &ctr, "ADD", "v", &c);
        let r = out.result().clone();
        let addr = if version < "0.3.0" {
            r["ip4"]["ip"].clone()
        } else {
            r["ips"][0]["address"].clone()
        };
        // Round robin from this node's last reservation, as host-local.
        let addr = addr.as_str().unwrap().trim_end_matches("/24");
        assert!(addr.starts_with("10.65.0."), "{version}: {r}");
        assert_eq!(etcd.keys(IPS), [format!("{IPS}{addr}")], "{version}");
        if version >= "0.4.0" {
            let mut with = c.clone();
            with["prevResult"] = r.clone();
            call(&etcd, &ctr, "CHECK", "v", &with).ok();
            call(&etcd, &ctr, "CHECK", "other", &with).expect_error(999);
        }
        call(&etcd, &ctr, "DEL", "v", &c).ok();
        assert!(etcd.keys(IPS).is_empty(), "{version}");
        call(&etcd, &ctr, "DEL", "v", &c).ok();
    }
}

#[test]
fn tls_with_client_certificates_and_failover() {
    if !require_root() {
        return;
    }
    let pki_dir = TempDir::new("cipam-pki");
    let pki = Pki::new(&pki_dir);
    let etcd = Etcd::start_tls("cipam-tls", 1, &pki);
    let ctr = TestNs::new("cipam-tls-ctr");
    // A dead endpoint first: the client fails over to the live one.
    let eps = vec!["https://127.0.0.7:2379".to_string(), etcd.endpoint(0)];
    let tls = json!({"etcdCACert": pki.ca, "etcdCert": pki.client.0, "etcdKey": pki.client.1});
    let mut c = conf(&eps, "n1", "10.66.0.0/24", tls);
    let resolv = pki_dir.write(
        "resolv.conf",
        "nameserver 10.66.0.53\nsearch cluster.local\n",
    );
    c["ipam"]["resolvConf"] = json!(resolv);
    let added = call(&etcd, &ctr, "ADD", "t1", &c);
    assert_eq!(address(&added), "10.66.0.2/24");
    assert_eq!(added.result()["dns"]["nameservers"], json!(["10.66.0.53"]));
    assert_eq!(etcd.keys(IPS), [format!("{IPS}10.66.0.2")]);
    let anonymous = conf(&eps, "n1", "10.66.0.0/24", json!({"etcdCACert": pki.ca}));
    let refused = call(&etcd, &ctr, "ADD", "t2", &anonymous);
    assert_ne!(refused.code, 0, "no client certificate: {refused}");
    let wrong_ca = conf(
        &eps,
        "n1",
        "10.66.0.0/24",
        json!({"etcdCACert": pki.client.0, "etcdCert": pki.client.0, "etcdKey": pki.client.1}),
    );
    let untrusted = call(&etcd, &ctr, "ADD", "t3", &wrong_ca);
    assert!(
        untrusted.stdout.contains("certificate") || untrusted.stdout.contains("TLS"),
        "{untrusted}"
    );
    assert_eq!(etcd.keys(IPS).len(), 1, "refused calls left nothing");
    call(&etcd, &ctr, "DEL", "t1", &c).ok();
    assert!(etcd.keys(IPS).is_empty());
}
