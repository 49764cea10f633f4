//! The chained master's choice, the MTU bound, and (privileged) a stacked link born in the
//! container netns under a temporary name while the host has a link called `CNI_IFNAME`,
//! undone by the rollback guard.

use super::*;
use crate::netlink::MacvlanMode;
use crate::testutil::{another_netns, fresh_netns};
use crate::types::args::CniArgs;

fn args(netns: &str) -> CmdArgs {
    CmdArgs {
        command: Command::Add,
        container_id: "c1".into(),
        netns: netns.into(),
        ifname: "net1".into(),
        args: CniArgs::default(),
        path: vec![],
        stdin: vec![],
        version: "1.0.0".into(),
        env: Default::default(),
    }
}

fn prev(ifaces: &[(&str, &str)]) -> CniResult {
    CniResult {
        interfaces: ifaces
            .iter()
            .map(|(name, sandbox)| Interface {
                name: name.to_string(),
                sandbox: sandbox.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn chained_master_is_the_one_interface_on_the_masters_side() {
    let a = args("/run/netns/c1");
    let host_and_cont = prev(&[("vlan100", ""), ("eth0", "/run/netns/c1")]);
    assert_eq!(
        chained_master(&host_and_cont, &a, false).unwrap(),
        "vlan100"
    );
    assert_eq!(chained_master(&host_and_cont, &a, true).unwrap(), "eth0");
    // The reference ipvlan's rule: a single named interface, wherever it is.
    let single = prev(&[("eth5", "/run/netns/other")]);
    assert_eq!(chained_master(&single, &a, false).unwrap(), "eth5");
    for bad in [
        prev(&[]),
        prev(&[("br0", ""), ("veth1", ""), ("eth0", "/run/netns/c1")]),
        prev(&[("", "")]),
    ] {
        let e = chained_master(&bad, &a, false).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7);
        assert!(e.to_string().starts_with("chained master failure"), "{e}");
    }
    // The interface being created is never its own master.
    let own = prev(&[("net1", "/run/netns/c1"), ("x", "/run/netns/c1"), ("y", "")]);
    assert_eq!(chained_master(&own, &a, true).unwrap(), "x");
}

#[test]
fn find_master_names_what_is_missing() {
    let Some(_ns) = fresh_netns("find_master_names_what_is_missing") else {
        return;
    };
    let nl = Handle::new().unwrap();
    let a = args("");
    let none = LowerConf::default();
    let e = find_master(&none, None, &a, &nl).unwrap_err();
    assert_eq!(crate::error::code_of(&e), 7);
    assert!(e.to_string().contains("no default route"), "{e}");
    let named = LowerConf {
        master: "nosuch0".into(),
        ..Default::default()
    };
    let e = find_master(&named, None, &a, &nl).unwrap_err();
    assert_eq!(crate::error::code_of(&e), 7);
    assert_eq!(
        e.to_string(),
        "failed to lookup master \"nosuch0\": not found on the host"
    );
    nl.create_veth("fm0", "fm1", 0, None, None, None).unwrap();
    let fm0 = nl.link_by_name("fm0").unwrap().unwrap();
    nl.set_up(fm0.index).unwrap();
    nl.add_address(fm0.index, "10.78.0.2/24".parse().unwrap(), true)
        .unwrap();
    let default = crate::netlink::RouteSpec {
        gw: Some("10.78.0.1".parse().unwrap()),
        ..crate::netlink::RouteSpec::new("0.0.0.0/0".parse().unwrap())
    };
    nl.add_route(&default).unwrap();
    assert_eq!(find_master(&none, None, &a, &nl).unwrap().name, "fm0");
    let chained = prev(&[("fm1", "")]);
    assert_eq!(
        find_master(&none, Some(&chained), &a, &nl).unwrap().name,
        "fm1"
    );
}

#[test]
fn created_in_the_container_despite_a_host_namesake_and_rolled_back() {
    let Some(host_ns) = fresh_netns("created_in_the_container_despite_a_host_namesake") else {
        return;
    };
    let cont_ns = another_netns();
    let (host, cont) = (Handle::new().unwrap(), Handle::in_netns(&cont_ns).unwrap());
    host.create_veth("net1", "peer1", 0, None, None, None)
        .unwrap();
    let master = host.link_by_name("net1").unwrap().unwrap();
    let sides = Sides {
        host: &host,
        cont: &cont,
        ns: &cont_ns,
    };
    let kind = LinkKind::Macvlan {
        mode: MacvlanMode::Bridge,
        bc_queue_len: None,
    };
    let tmp = temp_name().unwrap();
    let mac = Some([2, 0x42, 0, 0, 0, 1]);
    let spec = stacked_spec(&tmp, kind, master.index, 1400, mac, Some(cont_ns.raw_fd()));
    {
        let mut rb = Rollback::new();
        let link = create_renamed(&sides, &spec, "net1", &mut rb).unwrap();
        assert_eq!(link.name, "net1");
        let seen = cont.link_details("net1").unwrap().unwrap();
        assert_eq!((seen.link.mtu, seen.link.mac), (1400, mac));
        assert_eq!(seen.link.kind, "macvlan");
        assert!(cont.link_by_name(&tmp).unwrap().is_none());
        assert!(host.link_by_name(&tmp).unwrap().is_none());
        let iface = container_interface(&link, &args("/x"));
        assert_eq!(
            (iface.mac.as_str(), iface.sandbox.as_str()),
            ("02:42:00:00:00:01", "/x")
        );
        // Dropped uncommitted: the link goes.
    }
    assert!(cont.link_by_name("net1").unwrap().is_none());
    assert!(
        host.link_by_name("net1").unwrap().is_some(),
        "the host's namesake stays"
    );
    let _ = host_ns;
}
