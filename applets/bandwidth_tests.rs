//! bandwidth tests: config precedence and validation, the reference's IFB name, GC's choice of
//! IFBs; and the verbs called in process with the test thread's fresh netns as the host and a
//! second netns as the container (ADD, CHECK, rollback of a failed ADD, DEL, GC).

use super::*;
use crate::error::code_of;
use crate::netlink::Handle;
use crate::netns::Netns;
use crate::skel::{Command, Env};
use crate::tc::TBF_HANDLE;
use crate::testutil::{another_netns, fresh_netns};
use crate::types::args::CniArgs;
use serde_json::{Value, json};

fn cmd(command: Command, conf: &Value, netns: &str) -> CmdArgs {
    cmd_on("eth0", command, conf, netns)
}

fn cmd_on(ifname: &str, command: Command, conf: &Value, netns: &str) -> CmdArgs {
    CmdArgs {
        command,
        container_id: "dummy".into(),
        netns: netns.into(),
        ifname: ifname.into(),
        args: CniArgs::default(),
        path: Vec::new(),
        stdin: serde_json::to_vec(conf).unwrap(),
        version: conf["cniVersion"].as_str().unwrap_or_default().into(),
        env: Env::new(),
    }
}

fn limits(conf: Value) -> anyhow::Result<Limits> {
    load(&cmd(Command::Add, &conf, "")).map(|c| c.limits)
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}

#[test]
fn top_level_keys_win_over_the_capability() {
    let rc = json!({"bandwidth": {"ingressRate": 800, "ingressBurst": 80}});
    let l = limits(json!({"name": "n", "runtimeConfig": rc})).unwrap();
    assert_eq!(
        (l.ingress_rate, l.ingress_burst, l.egress_rate),
        (800, 80, 0)
    );
    // One top-level key, even a zero, hides the capability entirely (as the reference).
    let l = limits(json!({"name": "n", "egressRate": 0, "runtimeConfig": rc})).unwrap();
    assert!(l.is_zero());
    let l = limits(json!({"name": "n", "egressRate": 16, "egressBurst": 8})).unwrap();
    assert_eq!((l.egress(), l.ingress()), (Some((16, 8)), None));
    assert!(limits(json!({"name": "n"})).unwrap().is_zero());
}

#[test]
fn bad_limits_are_config_errors() {
    for (conf, msg) in [
        (json!({"ingressRate": 8}), "burst must also be set"),
        (json!({"egressBurst": 8}), "rate must also be set"),
        (
            json!({"egressRate": 8, "egressBurst": 8u64 * u64::from(u32::MAX)}),
            "4GB",
        ),
        (json!({"ingressRate": 7, "ingressBurst": 8}), "at least 8"),
        (
            json!({"runtimeConfig": {"bandwidth": {"ingressBurst": 8}}}),
            "rate must also be set",
        ),
        (json!({"ingressRate": -1}), "invalid network configuration"),
    ] {
        let e = limits(conf.clone()).unwrap_err();
        assert_eq!(code_of(&e), 7, "{conf}");
        assert!(format!("{e:#}").contains(msg), "{conf}: {e:#}");
    }
}

#[test]
fn del_needs_only_the_name() {
    let Some(_ns) = fresh_netns("bandwidth_del_needs_only_the_name") else {
        return;
    };
    let h = Handle::new().unwrap();
    let conf = json!({"name": "n", "ingressRate": 8});
    let net: NetConf = serde_json::from_value(conf.clone()).unwrap();
    let name = ifb_name(&net, &cmd(Command::Del, &conf, ""));
    h.create_link(&LinkSpec::new(name.as_str(), LinkKind::Ifb))
        .unwrap();
    // The limits ADD refused do not block DEL.
    Bandwidth.del(&cmd(Command::Del, &conf, "")).unwrap();
    assert!(h.link_by_name(&name).unwrap().is_none());
}

#[test]
fn ifb_name_is_the_reference_hash() {
    let net: NetConf =
        serde_json::from_value(json!({"name": "cni-plugin-bandwidth-test"})).unwrap();
    let args = cmd(Command::Add, &json!({}), "");
    assert_eq!(ifb_name(&net, &args), "bwpa8eda89404b7");
}

fn ifb(name: &str, alias: Option<&str>) -> Link {
    Link {
        index: 9,
        name: name.into(),
        kind: "ifb".into(),
        mtu: 1500,
        mac: None,
        flags: 0,
        master: None,
        link: None,
        link_netnsid: None,
        txqlen: 0,
        alias: alias.map(String::from),
        operstate: 0,
    }
}

#[test]
fn gc_picks_only_this_networks_stale_ifbs() {
    let name = hash_with_prefix(15, "bwp", "netAc1");
    let valid = vec![Attachment {
        container_id: "c2".into(),
        ifname: "eth0".into(),
    }];
    assert!(stale_ifb("netA", &ifb(&name, Some("c1/eth0")), &valid));
    assert!(!stale_ifb("netB", &ifb(&name, Some("c1/eth0")), &valid));
    assert!(!stale_ifb("netA", &ifb(&name, None), &valid), "no alias");
    assert!(
        !stale_ifb("netA", &ifb(&name, Some("c9/eth0")), &valid),
        "alias lies"
    );
    let name2 = hash_with_prefix(15, "bwp", "netAc2");
    assert!(!stale_ifb("netA", &ifb(&name2, Some("c2/eth0")), &valid));
    assert!(stale_ifb("netA", &ifb(&name2, Some("c2/eth1")), &valid));
    let veth = Link {
        kind: "veth".into(),
        ..ifb(&name, Some("c1/eth0"))
    };
    assert!(!stale_ifb("netA", &veth, &valid));
}

/// A veth `hveth0` (host, the test's netns) <-> `eth0` (container), both up; returns the
/// container netns, its path for `CNI_NETNS`, and a config for `limits`.
fn setup(test: &str, lim: Value) -> Option<(Netns, String, Value)> {
    let _home = fresh_netns(test)?;
    let cont = another_netns();
    let h = Handle::new().unwrap();
    h.create_veth("hveth0", "eth0", 1400, None, None, Some(&cont))
        .unwrap();
    h.set_up(h.link_by_name("hveth0").unwrap().unwrap().index)
        .unwrap();
    let path = format!("/proc/{}/fd/{}", std::process::id(), cont.raw_fd());
    let mut conf = json!({
        "cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth",
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [
            {"name": "hveth0"}, {"name": "eth0", "sandbox": path}]},
    });
    for (k, v) in lim.as_object().unwrap() {
        conf[k] = v.clone();
    }
    Some((cont, path, conf))
}

#[test]
fn add_check_gc_del_in_process() {
    let lim = json!({"ingressRate": 1_000_000, "ingressBurst": 80_000,
                     "egressRate": 2_000_000, "egressBurst": 160_000});
    let Some((_cont, path, conf)) = setup("bandwidth_add_check_gc_del_in_process", lim) else {
        return;
    };
    let h = Handle::new().unwrap();
    let r = Bandwidth.add(&cmd(Command::Add, &conf, &path)).unwrap();
    let ifb_name = ifb_name(
        &serde_json::from_value(conf.clone()).unwrap(),
        &cmd(Command::Add, &conf, ""),
    );
    assert_eq!(r.interfaces.len(), 3);
    assert_eq!(r.interfaces[2].name, ifb_name);
    let ifb = h.link_by_name(&ifb_name).unwrap().unwrap();
    assert_eq!((ifb.mtu, ifb.txqlen, ifb.is_up()), (1400, 0, true));
    assert_eq!(ifb.alias.as_deref(), Some("dummy/eth0"));
    assert_eq!(r.interfaces[2].mac, ifb.mac_string());
    let host = h.link_by_name("hveth0").unwrap().unwrap();
    let q = h.qdiscs(host.index).unwrap();
    assert!(
        q.iter()
            .any(|q| q.handle == TBF_HANDLE && q.tbf.unwrap().rate == 125_000)
    );
    Bandwidth.check(&cmd(Command::Check, &conf, &path)).unwrap();

    // CHECK notices a changed limit and a missing tbf.
    let mut other = conf.clone();
    other["egressRate"] = 3_000_000.into();
    let e = Bandwidth
        .check(&cmd(Command::Check, &other, &path))
        .unwrap_err();
    assert!(format!("{e:#}").contains("Rate doesn't match"), "{e:#}");
    h.del_root_qdisc(host.index).unwrap();
    let e = Bandwidth
        .check(&cmd(Command::Check, &conf, &path))
        .unwrap_err();
    assert!(format!("{e:#}").contains("hveth0"), "{e:#}");

    // GC keeps a valid attachment and removes a stale one.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "dummy", "ifname": "eth0"}]);
    Bandwidth.gc(&cmd(Command::Gc, &gc, "")).unwrap();
    assert!(h.link_by_name(&ifb_name).unwrap().is_some());
    gc["cni.dev/valid-attachments"] = json!([]);
    Bandwidth.gc(&cmd(Command::Gc, &gc, "")).unwrap();
    assert!(h.link_by_name(&ifb_name).unwrap().is_none());

    Bandwidth.del(&cmd(Command::Del, &conf, "")).unwrap();
    Bandwidth.del(&cmd(Command::Del, &conf, "")).unwrap();
}

#[test]
fn failed_add_leaves_nothing_behind() {
    let lim = json!({"ingressRate": 8000, "ingressBurst": 8000,
                     "egressRate": 8000, "egressBurst": 8000});
    let Some((_cont, path, conf)) = setup("bandwidth_failed_add_leaves_nothing_behind", lim) else {
        return;
    };
    let h = Handle::new().unwrap();
    let host = h.link_by_name("hveth0").unwrap().unwrap();
    // Someone else's ingress qdisc makes the egress step fail after the tbf and the IFB exist.
    h.add_ingress_qdisc(host.index).unwrap();
    let e = Bandwidth.add(&cmd(Command::Add, &conf, &path)).unwrap_err();
    assert!(format!("{e:#}").contains("ingress qdisc"), "{e:#}");
    assert!(
        h.qdiscs(host.index)
            .unwrap()
            .iter()
            .all(|q| q.kind != "tbf")
    );
    let kinds: Vec<String> = h.links().unwrap().into_iter().map(|l| l.kind).collect();
    assert!(!kinds.contains(&"ifb".to_string()), "{kinds:?}");
}

#[test]
fn zero_limits_pass_prev_result_through() {
    let conf = json!({"cniVersion": "0.4.0", "name": "n",
        "prevResult": {"cniVersion": "0.4.0", "interfaces": [{"name": "x"}]}});
    let r = Bandwidth.add(&cmd(Command::Add, &conf, "")).unwrap();
    assert_eq!(r.interfaces[0].name, "x");
    let r = Bandwidth
        .add(&cmd(Command::Add, &json!({"name": "n"}), ""))
        .unwrap();
    assert_eq!(r, CniResult::default());
    let conf = json!({"name": "n", "ingressRate": 8, "ingressBurst": 8});
    let e = Bandwidth.add(&cmd(Command::Add, &conf, "")).unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(format!("{e:#}").contains("chained"));
}

/// Two attachments of one container share the IFB name (the reference's hash has no ifname):
/// when ADD for eth1 fails on the existing IFB, the DEL that follows must not take eth0's.
#[test]
fn del_of_another_ifname_leaves_the_ifb_alone() {
    let lim = json!({"egressRate": 1_000_000, "egressBurst": 80_000});
    let Some((cont, path, conf)) = setup("bandwidth_del_of_another_ifname", lim) else {
        return;
    };
    let h = Handle::new().unwrap();
    h.create_veth("hveth1", "eth1", 1400, None, None, Some(&cont))
        .unwrap();
    Bandwidth.add(&cmd(Command::Add, &conf, &path)).unwrap();
    let mut conf1 = conf.clone();
    conf1["prevResult"]["interfaces"] =
        json!([{"name": "hveth1"}, {"name": "eth1", "sandbox": path}]);
    let on1 = |c| cmd_on("eth1", c, &conf1, &path);
    Bandwidth.add(&on1(Command::Add)).unwrap_err();
    Bandwidth.del(&on1(Command::Del)).unwrap();
    Bandwidth.check(&cmd(Command::Check, &conf, &path)).unwrap();
    Bandwidth.del(&cmd(Command::Del, &conf, "")).unwrap();
    let left = h.links().unwrap().into_iter().filter(|l| l.kind == "ifb");
    assert_eq!(left.count(), 0, "DEL of eth0 removes its own IFB");
}

/// `cnitool gc` sends no `cni.dev/valid-attachments`: nothing to compare with, so GC does
/// nothing and succeeds (as host-local).
#[test]
fn gc_without_valid_attachments_deletes_nothing() {
    let Some(_ns) = fresh_netns("bandwidth_gc_without_valid_attachments") else {
        return;
    };
    let h = Handle::new().unwrap();
    let conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "bandwidth"});
    let net: NetConf = serde_json::from_value(conf.clone()).unwrap();
    let name = ifb_name(&net, &cmd(Command::Gc, &conf, ""));
    h.create_link(&LinkSpec::new(name.as_str(), LinkKind::Ifb))
        .unwrap();
    let ifb = h.link_by_name(&name).unwrap().unwrap();
    h.set_alias(ifb.index, "gone/eth0").unwrap();
    Bandwidth.gc(&cmd(Command::Gc, &conf, "")).unwrap();
    assert!(h.link_by_name(&name).unwrap().is_some());
}
