//! Unit tests of the bridge applet's pure parts: config keys and their checks, `vlanTrunk`
//! collection (the reference's `collectVlanTrunk` cases), gateway and default-route
//! computation. The kernel side is tested end to end in tests/e2e/bridge.rs.

use super::*;
use crate::types::IpConfig;
use crate::types::args::CniArgs;

fn args_with(stdin: &str) -> CmdArgs {
    CmdArgs {
        command: Command::Add,
        container_id: "c1".into(),
        netns: "/proc/self/ns/net".into(),
        ifname: "eth0".into(),
        args: CniArgs::default(),
        path: vec![],
        stdin: stdin.as_bytes().to_vec(),
        version: "1.0.0".into(),
        env: Default::default(),
    }
}

fn load(json: &str) -> Result<Config> {
    Config::load(&args_with(json))
}

fn err_of(json: &str) -> String {
    format!("{:#}", load(json).unwrap_err())
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Config>(KEYS);
}

#[test]
fn defaults_and_every_key() {
    let c = load(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#).unwrap();
    assert_eq!(c.bridge, "cni0");
    assert!(!c.is_gateway() && !c.ip_masq && !c.vlan_filtering() && c.mtu == 0);
    let c = load(
        r#"{"name":"n","type":"bridge","bridge":"br9","isGateway":false,"isDefaultGateway":true,
            "forceAddress":true,"ipMasq":true,"ipMasqBackend":"nftables","mtu":1400,
            "hairpinMode":true,"promiscMode":false,"vlan":7,"vlanTrunk":[{"id":9}],
            "preserveDefaultVlan":true,"macspoofchk":true,"enabledad":true,
            "disableContainerInterface":true,"portIsolation":true}"#,
    )
    .unwrap();
    assert_eq!((c.bridge.as_str(), c.mtu, c.vlan), ("br9", 1400, 7));
    assert!(c.is_gateway(), "isDefaultGateway implies isGateway");
    assert!(c.force_address && c.ip_masq && c.hairpin_mode && c.preserve_default_vlan);
    assert!(c.mac_spoof_chk && c.enable_dad && c.disable_container_interface && c.port_isolation);
    assert_eq!(c.ip_masq_backend.as_deref(), Some("nftables"));
    assert_eq!(c.trunk, [9]);
    assert!(c.vlan_filtering());
}

#[test]
fn invalid_vlans_and_names_are_config_errors() {
    for (json, msg) in [
        (
            r#"{"vlan":4095}"#,
            "invalid VLAN ID 4095 (must be between 0 and 4094)",
        ),
        (
            r#"{"vlan":-1}"#,
            "invalid VLAN ID -1 (must be between 0 and 4094)",
        ),
        (r#"{"bridge":""}"#, "invalid bridge name \"\""),
        (
            r#"{"bridge":"a-name-that-is-too-long"}"#,
            "invalid bridge name",
        ),
        (r#"{"mtu":"big"}"#, "invalid network configuration"),
    ] {
        let e = load(json).unwrap_err();
        assert_eq!(crate::error::code_of(&e), 7, "{json}");
        assert!(format!("{e:#}").contains(msg), "{json}: {e:#}");
    }
}

/// The cases of the reference's bridge_test.go "vlanTrunk" table.
#[test]
fn vlan_trunk_collection() {
    let trunk = |t: &str| load(&format!(r#"{{"vlanTrunk":{t}}}"#)).map(|c| c.trunk);
    assert_eq!(
        trunk(r#"[{"id":101},{"minID":200,"maxID":203},{"id":101}]"#).unwrap(),
        [101, 200, 201, 202, 203]
    );
    assert_eq!(trunk(r#"[{"minID":5,"maxID":5,"id":3}]"#).unwrap(), [3, 5]);
    assert!(trunk("[]").unwrap().is_empty());
    assert!(
        load(r#"{"vlanTrunk":[]}"#).unwrap().vlan_filtering(),
        "an empty trunk still asks for filtering"
    );
    for (t, msg) in [
        (r#"[{"id":0}]"#, "incorrect trunk id parameter"),
        (r#"[{"id":4095}]"#, "incorrect trunk id parameter"),
        (
            r#"[{"minID":0,"maxID":10}]"#,
            "incorrect trunk minID parameter",
        ),
        (
            r#"[{"minID":1,"maxID":4095}]"#,
            "incorrect trunk maxID parameter",
        ),
        (
            r#"[{"minID":10,"maxID":5}]"#,
            "minID is greater than maxID in trunk parameter",
        ),
        (
            r#"[{"maxID":5}]"#,
            "minID and maxID should be configured simultaneously, minID is missing",
        ),
        (
            r#"[{"minID":5}]"#,
            "minID and maxID should be configured simultaneously, maxID is missing",
        ),
    ] {
        assert_eq!(err_of(&format!(r#"{{"vlanTrunk":{t}}}"#)), msg, "{t}");
    }
}

#[test]
fn add_refuses_contradictions() {
    let c = load(r#"{"ipam":{"type":"host-local"},"disableContainerInterface":true}"#).unwrap();
    assert_eq!(
        format!("{}", c.check_add().unwrap_err()),
        "cannot use IPAM when DisableContainerInterface flag is set"
    );
    let c = load(r#"{"hairpinMode":true,"promiscMode":true}"#).unwrap();
    assert_eq!(
        format!("{}", c.check_add().unwrap_err()),
        "cannot set hairpin mode and promiscuous mode at the same time"
    );
    assert!(
        load(r#"{"disableContainerInterface":true}"#)
            .unwrap()
            .check_add()
            .is_ok()
    );
}

fn ipc(addr: &str, gw: Option<&str>) -> IpConfig {
    IpConfig {
        interface: None,
        address: addr.parse().unwrap(),
        gateway: gw.map(|g| g.parse().unwrap()),
    }
}

fn ipam(ips: Vec<IpConfig>, routes: Vec<Route>) -> CniResult {
    CniResult {
        ips,
        routes,
        ..Default::default()
    }
}

#[test]
fn gateways_are_computed_and_default_routes_added_once_per_family() {
    let conf = load(r#"{"isDefaultGateway":true}"#).unwrap();
    let mut r = CniResult::default();
    let ips = vec![
        ipc("10.1.0.5/16", None),
        ipc("10.2.0.5/24", Some("10.2.0.254")),
        ipc("fd00::5/64", None),
    ];
    let gws = apply_ipam(&mut r, ipam(ips, vec![]), &conf).unwrap();
    let gws: Vec<String> = gws.iter().map(ToString::to_string).collect();
    assert_eq!(gws, ["10.1.0.1/16", "10.2.0.254/24", "fd00::1/64"]);
    assert!(r.ips.iter().all(|i| i.interface == Some(2)));
    let routes: Vec<String> = r
        .routes
        .iter()
        .map(|x| format!("{} via {}", x.dst, x.gw.unwrap()))
        .collect();
    assert_eq!(routes, ["0.0.0.0/0 via 10.1.0.1", "::/0 via fd00::1"]);
}

#[test]
fn ipam_default_route_with_gateway_is_kept_and_no_gateway_without_is_gateway() {
    let conf = load(r#"{"isDefaultGateway":true}"#).unwrap();
    let mut r = CniResult::default();
    let own = Route::new(
        "0.0.0.0/0".parse().unwrap(),
        Some("10.1.0.9".parse().unwrap()),
    );
    apply_ipam(
        &mut r,
        ipam(vec![ipc("10.1.0.5/16", None)], vec![own.clone()]),
        &conf,
    )
    .unwrap();
    assert_eq!(r.routes, [own]);

    let conf = load("{}").unwrap();
    let mut r = CniResult::default();
    let gws = apply_ipam(&mut r, ipam(vec![ipc("10.1.0.5/16", None)], vec![]), &conf).unwrap();
    assert!(gws.is_empty() && r.routes.is_empty());
    assert_eq!(
        r.ips[0].gateway, None,
        "no gateway invented without isGateway"
    );
}

#[test]
fn first_host_of_subnets() {
    assert_eq!(
        first_host(&"10.1.2.3/16".parse().unwrap()).to_string(),
        "10.1.0.1"
    );
    assert_eq!(
        first_host(&"fd00:1::9/64".parse().unwrap()).to_string(),
        "fd00:1::1"
    );
    assert_eq!(operstate_name(6), "up");
    assert_eq!(operstate_name(2), "down");
    assert_eq!(operstate_name(0), "unknown");
}

#[test]
fn unsupported_vlan_filtering_is_explained() {
    let e: anyhow::Error = netlink::NlError {
        op: "create bridge link cni0".into(),
        errno: libc::EOPNOTSUPP,
        ext_ack: None,
    }
    .into();
    assert_eq!(
        format!("{:#}", port::vlan_hint(e)),
        "vlan and vlanTrunk need bridge VLAN filtering, which this kernel lacks \
         (CONFIG_BRIDGE_VLAN_FILTERING): create bridge link cni0: Operation not supported (os error 95)"
    );
    let other = port::vlan_hint(anyhow::anyhow!("boom"));
    assert_eq!(format!("{other:#}"), "boom");
}
