use super::*;

const V4: &str = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
const DUAL: &str = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";

fn conf(extra: Value) -> Conf {
    let mut c = json!({"name": "cni-flannel", "type": "flannel"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    serde_json::from_value(c).unwrap()
}

#[test]
fn defaults_are_upstreams() {
    let c = conf(json!({}));
    assert_eq!(c.subnet_file, Path::new("/run/flannel/subnet.env"));
    assert_eq!(c.data_dir, Path::new("/var/lib/cni/flannel"));
}

/// The saved file upstream's own test expects for an IPv4 lease.
#[test]
fn ipv4_delegate_is_upstreams() {
    let env = parse_subnet_env(V4).unwrap();
    let d = build_delegate(&conf(json!({})), &env).unwrap();
    let expected = json!({
        "ipMasq": false,
        "ipam": {"routes": [{"dst": "10.1.0.0/16"}], "ranges": [[{"subnet": "10.1.17.0/24"}]], "type": "host-local"},
        "isGateway": true, "mtu": 1472, "name": "cni-flannel", "type": "bridge"
    });
    assert_eq!(Value::Object(d), expected);
}

#[test]
fn dual_stack_has_a_range_set_and_a_route_per_family() {
    let env = parse_subnet_env(DUAL).unwrap();
    let d = build_delegate(&conf(json!({"cniVersion": "1.0.0"})), &env).unwrap();
    assert_eq!(
        d["ipam"]["ranges"],
        json!([[{"subnet": "10.1.17.0/24"}], [{"subnet": "fc00::/64"}]])
    );
    assert_eq!(
        d["ipam"]["routes"],
        json!([{"dst": "10.1.0.0/16"}, {"dst": "fc00::/48"}])
    );
    assert_eq!(d["cniVersion"], "1.0.0");
}

#[test]
fn user_delegate_and_ipam_win_where_upstreams_do() {
    let env = parse_subnet_env(&V4.replace("IPMASQ=true", "IPMASQ=false")).unwrap();
    let c = conf(json!({
        "delegate": {"hairpinMode": true, "isDefaultGateway": true, "mtu": 1400},
        "ipam": {"dataDir": "/x", "routes": [{"dst": "192.0.2.0/24"}], "ranges": "ignored"},
        "runtimeConfig": {"portMappings": []}
    }));
    let d = build_delegate(&c, &env).unwrap();
    assert_eq!(d["mtu"], 1400);
    assert_eq!(
        d["ipMasq"], true,
        "flanneld does not masquerade: the bridge must"
    );
    assert_eq!(
        (&d["hairpinMode"], &d["isGateway"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(d["runtimeConfig"], json!({"portMappings": []}));
    assert_eq!(d["ipam"]["dataDir"], "/x");
    assert_eq!(
        d["ipam"]["routes"],
        json!([{"dst": "192.0.2.0/24"}, {"dst": "10.1.0.0/16"}])
    );
    assert_eq!(d["ipam"]["ranges"], json!([[{"subnet": "10.1.17.0/24"}]]));
}

#[test]
fn other_delegate_types_get_no_is_gateway() {
    let env = parse_subnet_env(V4).unwrap();
    let d = build_delegate(&conf(json!({"delegate": {"type": "ptp"}})), &env).unwrap();
    assert!(!d.contains_key("isGateway"));
    assert_eq!(d["type"], "ptp");
}

#[test]
fn forbidden_delegate_keys_are_code_7() {
    let env = parse_subnet_env(V4).unwrap();
    for bad in [
        json!({"name": "x"}),
        json!({"ipam": {}}),
        json!({"type": 3}),
    ] {
        let err = build_delegate(&conf(json!({ "delegate": bad })), &env).unwrap_err();
        let cni = err.downcast_ref::<CniError>().unwrap();
        assert_eq!(cni.code, code::INVALID_CONFIG, "{bad}");
    }
}

#[test]
fn missing_variables_are_named() {
    let err = parse_subnet_env("FLANNEL_MTU=1450\n").unwrap_err();
    assert_eq!(
        err,
        "missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_IPMASQ"
    );
    let err = parse_subnet_env("FLANNEL_MTU=big\n").unwrap_err();
    assert!(err.starts_with("FLANNEL_MTU=\"big\""), "{err}");
    let err = parse_subnet_env("FLANNEL_SUBNET=10.1.17.1\n").unwrap_err();
    assert!(err.starts_with("FLANNEL_SUBNET"), "{err}");
}

#[test]
fn networks_are_deduplicated_and_ipv6_only_is_enough() {
    let env = parse_subnet_env(
        "FLANNEL_NETWORK=10.1.0.0/16,192.168.0.0/16,10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
    )
    .unwrap();
    assert_eq!(env.networks.len(), 2);
    assert_eq!(env.ipmasq, Some(false));
    let v6 = parse_subnet_env(
        "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
    )
    .unwrap();
    assert_eq!(v6.subnet, None);
    assert_eq!(v6.ipv6_subnet.unwrap().to_string(), "fc00::/64");
}

#[test]
fn missing_file_is_try_again_and_names_it() {
    let err = load_subnet_env(Path::new("/nonexistent/subnet.env")).unwrap_err();
    let cni = err.downcast_ref::<CniError>().unwrap();
    assert_eq!(cni.code, code::TRY_AGAIN_LATER);
    assert!(cni.msg.contains("/nonexistent/subnet.env"), "{}", cni.msg);
}

#[test]
fn help_lists_every_config_key() {
    crate::keys::assert_struct_keys::<Conf>(KEYS);
}
