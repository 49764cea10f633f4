use super::*;
use crate::dhcp::packet::{Reply, ReplyKind};

fn lease(classless: Vec<(Ipv4Net, Ipv4Addr)>, classful: Vec<(Ipv4Addr, Ipv4Addr)>) -> Lease {
    Lease {
        ack: Reply {
            xid: 1,
            kind: ReplyKind::Ack,
            yiaddr: [10, 0, 0, 5].into(),
            server: Some([10, 0, 0, 1].into()),
            mask: Some([255, 255, 255, 0].into()),
            routers: vec![[10, 0, 0, 1].into(), [10, 0, 0, 2].into()],
            static_routes: classful,
            classless,
            dns: vec![],
            lease_secs: Some(60),
            t1_secs: None,
            t2_secs: None,
        },
        server: [10, 0, 0, 1].into(),
        server_mac: [0; 6],
        start: 0,
    }
}

#[test]
fn classless_routes_win_over_router_and_classful() {
    let l = lease(
        vec![
            ("10.9.0.0/16".parse().unwrap(), [10, 0, 0, 254].into()),
            ("10.0.1.0/24".parse().unwrap(), Ipv4Addr::UNSPECIFIED),
        ],
        vec![([192, 168, 1, 1].into(), [10, 0, 0, 3].into())],
    );
    let r = to_result(&l, 0).unwrap();
    assert_eq!(r.ips[0].address, "10.0.0.5/24".parse::<IpNet>().unwrap());
    assert_eq!(r.ips[0].gateway, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(r.routes.len(), 2);
    assert_eq!(r.routes[0].gw, Some("10.0.0.254".parse().unwrap()));
    assert_eq!(r.routes[1].gw, None);
    assert_eq!(r.routes[1].scope, Some(253), "router 0.0.0.0 means on-link");
}

#[test]
fn classful_routes_plus_default_via_first_router_with_priority() {
    let l = lease(
        vec![],
        vec![([192, 168, 1, 1].into(), [10, 0, 0, 3].into())],
    );
    let r = to_result(&l, 300).unwrap();
    let dsts: Vec<String> = r.routes.iter().map(|r| r.dst.to_string()).collect();
    assert_eq!(dsts, ["192.168.1.1/32", "0.0.0.0/0"]);
    assert_eq!(r.routes[1].gw, Some("10.0.0.1".parse().unwrap()));
    assert!(r.routes.iter().all(|r| r.priority == 300));
}

#[test]
fn ack_without_mask_is_an_error() {
    let mut l = lease(vec![], vec![]);
    l.ack.mask = None;
    assert!(to_result(&l, 0).is_err());
}

#[test]
fn request_list_defaults_and_skip_default() {
    let r = |o: &str, skip| RequestOpt {
        option: o.into(),
        skip_default: skip,
    };
    assert_eq!(request_list(&[]).unwrap(), vec![1, 3, 121, 33]);
    assert_eq!(
        request_list(&[r("host-name", false)]).unwrap(),
        vec![1, 3, 121, 33, 12]
    );
    assert_eq!(request_list(&[r("42", true)]).unwrap(), vec![42]);
    assert!(request_list(&[r("nope", false)]).is_err());
}

#[test]
fn provide_value_then_from_arg_wins() {
    let args = CmdArgs {
        command: crate::skel::Command::Add,
        container_id: "c".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: crate::types::args::CniArgs::parse("K8S_POD_NAME=web-0").unwrap(),
        path: vec![],
        stdin: vec![],
        version: "1.0.0".into(),
        env: Default::default(),
    };
    let p = |v: Option<&str>, a: Option<&str>| ProvideOpt {
        option: "host-name".into(),
        value: v.map(Into::into),
        from_arg: a.map(Into::into),
    };
    let got = provide_list(&[p(Some("x"), Some("K8S_POD_NAME"))], &args).unwrap();
    assert_eq!(got, vec![(12, "web-0".to_string())]);
    let got = provide_list(&[p(Some("x"), Some("MISSING"))], &args).unwrap();
    assert_eq!(got, vec![(12, "x".to_string())]);
    let long = "a".repeat(256);
    assert!(provide_list(&[p(Some(&long), None)], &args).is_err());
}

#[test]
fn help_lists_every_config_key() {
    let sources = [include_str!("dhcp.rs")];
    crate::keys::assert_ipam_keys(KEYS, &sources, |net| socket_and_keys(net).map(drop));
}
