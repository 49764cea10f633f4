//! Tests of host-local config merging and the shared parsers.

use super::*;
use crate::error::code_of;

fn net(json: &str) -> NetConf {
    serde_json::from_str(json).unwrap()
}

fn load(json: &str, cni_args: &str) -> anyhow::Result<HostLocalConfig> {
    HostLocalConfig::load(&net(json), &CniArgs::parse(cni_args).unwrap())
}

fn err(json: &str) -> String {
    let e = load(json, "").unwrap_err();
    assert_eq!(code_of(&e), 7, "{e:#}");
    format!("{e:#}")
}

#[test]
fn sources_merge_in_reference_order() {
    let c = load(
        r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local",
            "subnet":"10.2.0.0/24","gateway":"10.2.0.254",
            "ranges":[[{"subnet":"10.3.0.0/24"}],[{"subnet":"2001:db8::/64"}]],
            "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.2.0.9"},{"dst":"::/0","gw":""}],
            "dataDir":"/tmp/x","resolvConf":"/etc/r.conf"},
            "runtimeConfig":{"ipRanges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.50"}]]}}"#,
        "",
    )
    .unwrap();
    let sets: Vec<String> = c.range_sets.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        sets,
        [
            "10.1.0.50-10.1.0.254",
            "10.2.0.1-10.2.0.254",
            "10.3.0.1-10.3.0.254",
            "2001:db8::1-2001:db8::ffff:ffff:ffff:ffff"
        ]
    );
    assert_eq!(
        c.set_labels,
        [
            "runtimeConfig.ipRanges[0]",
            "ipam.subnet",
            "ipam.ranges[0]",
            "ipam.ranges[1]"
        ]
    );
    assert_eq!(
        c.range_sets[1].ranges()[0].gateway.to_string(),
        "10.2.0.254"
    );
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.routes[1].gw.unwrap().to_string(), "10.2.0.9");
    assert_eq!(c.routes[2].gw, None);
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/r.conf")));
}

#[test]
fn defaults() {
    let c = load(
        r#"{"name":"n","ipam":{"type":"host-local","subnet":"10.2.0.0/24"}}"#,
        "",
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/cni/networks"));
    assert!(c.routes.is_empty() && c.resolv_conf.is_none() && c.requested.is_empty());
}

#[test]
fn requested_addresses_in_reference_order() {
    let json = r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local",
        "ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"2001:db8::/64"}]]},
        "args":{"cni":{"ips":["2001:db8::9/64","10.1.0.7"]}},
        "runtimeConfig":{"ips":["10.1.0.7/24"]}}"#;
    let c = load(json, "IgnoreUnknown=1;IP=10.1.0.5").unwrap();
    let got: Vec<(String, String)> = c
        .requested
        .iter()
        .map(|r| (r.source.clone(), r.ip.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("CNI_ARGS IP".to_string(), "10.1.0.5".to_string()),
            ("args.cni.ips[0]".into(), "2001:db8::9".into()),
            ("args.cni.ips[1]".into(), "10.1.0.7".into()),
        ],
        "runtimeConfig.ips[0] repeats args.cni.ips[1] and is dropped"
    );
    let e = c.requests_per_set().unwrap_err();
    assert_eq!(code_of(&e), 7);
    assert!(
        format!("{e}").starts_with(
            "args.cni.ips[1]: requested IP address 10.1.0.7 falls in range set ipam.ranges[0]"
        ),
        "{e}"
    );
    let c = load(json.replace("\"10.1.0.7\"", "\"10.1.0.8\"").as_str(), "").unwrap();
    assert!(
        c.requests_per_set().is_err(),
        "10.1.0.7 (runtimeConfig) and 10.1.0.8 both in set 0"
    );
    let c = load(json.replace(",\"10.1.0.7\"", "").as_str(), "").unwrap();
    let per_set = c.requests_per_set().unwrap();
    assert_eq!(
        per_set,
        vec![
            Some("10.1.0.7".parse().unwrap()),
            Some("2001:db8::9".parse().unwrap())
        ]
    );
    let e = load(json, "IP=nonsense").unwrap_err();
    assert_eq!(code_of(&e), 4);
    assert!(format!("{e}").contains("CNI_ARGS IP: invalid IP address \"nonsense\""));
}

#[test]
fn errors_name_the_field() {
    let head = r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local","#;
    let cases = [
        (
            r#""ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"x"}]]}}"#,
            r#"ipam.ranges[0][1].subnet: invalid CIDR "x""#,
        ),
        (
            r#""ranges":[[{"rangeStart":"10.0.0.1"}]]}}"#,
            "ipam.ranges[0][0].subnet: missing",
        ),
        (
            r#""ranges":[[{"subnet":"10.0.0.0/24","rangeEnd":"10.0.0.300"}]]}}"#,
            "ipam.ranges[0][0].rangeEnd: invalid IP address",
        ),
        (
            r#""ranges":[[{"subnet":"10.0.0.0/24","gateway":5}]]}}"#,
            "ipam.ranges[0][0].gateway: expected a string",
        ),
        (
            r#""ranges":[{"subnet":"10.0.0.0/24"}]}}"#,
            "ipam.ranges[0]: expected an array of ranges",
        ),
        (
            r#""ranges":"10.0.0.0/24"}}"#,
            "ipam.ranges: expected an array of range sets",
        ),
        (r#""ranges":[[]]}}"#, "ipam.ranges[0]: empty range set"),
        (
            r#""subnet":"10.0.0.0/24","rangeStart":"10.0.1.1"}}"#,
            "ipam.rangeStart: rangeStart 10.0.1.1 not in network 10.0.0.0/24",
        ),
        (
            r#""ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.0.0/16"}]]}}"#,
            "ipam.ranges[1]: range set 10.0.0.1-10.0.255.254 overlaps with ipam.ranges[0]",
        ),
        (
            r#""ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"2001:db8::/64"}]]}}"#,
            "ipam.ranges[0]: mixed address families",
        ),
        (
            r#""routes":[{"dst":"nope"}],"subnet":"10.0.0.0/24"}}"#,
            "ipam.routes[0]: ",
        ),
        (r#""dataDir":""}}"#, "ipam: no IP ranges specified"),
    ];
    for (tail, want) in cases {
        let got = err(&format!("{head}{tail}"));
        assert!(got.contains(want), "want {want:?} in {got:?}");
    }
    assert!(err(r#"{"name":"n"}"#).contains("IPAM config missing 'ipam' key"));
}

#[test]
fn old_versions_allow_one_set_per_family() {
    let two_v4 = r#""ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/24"}]]}}"#;
    let e = err(&format!(r#"{{"cniVersion":"0.2.0","name":"n",{two_v4}"#));
    assert!(
        e.contains("cniVersion 0.2.0 does not support more than one address per family"),
        "{e}"
    );
    assert!(
        load(
            &format!(r#"{{"cniVersion":"0.3.1","name":"n",{two_v4}"#),
            ""
        )
        .is_ok()
    );
    let dual = r#"{"cniVersion":"0.2.0","name":"n","ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"2001:db8::/64"}]]}}"#;
    assert!(load(dual, "").is_ok());
}

#[test]
fn resolv_conf_lines() {
    let dns = parse_resolv_conf(
        "# comment\n; other comment\nnameserver 10.0.0.1\nnameserver  2001:db8::53 \ndomain example.com\n\
         search a.example b.example\nsearch c.example\noptions ndots:2 edns0\nlonely\nsortlist 1.2.3.4\n",
    );
    assert_eq!(dns.nameservers, ["10.0.0.1", "2001:db8::53"]);
    assert_eq!(dns.domain, "example.com");
    assert_eq!(dns.search, ["a.example", "b.example", "c.example"]);
    assert_eq!(dns.options, ["ndots:2", "edns0"]);
    let e = read_resolv_conf(std::path::Path::new("/nonexistent/resolv.conf")).unwrap_err();
    assert!(format!("{e:#}").contains("ipam.resolvConf"));
}

#[test]
fn address_parsers() {
    assert_eq!(
        parse_ip("::ffff:10.0.0.1", "f").unwrap().to_string(),
        "10.0.0.1"
    );
    assert_eq!(
        parse_ip_or_cidr("10.0.0.5/24", "f").unwrap().to_string(),
        "10.0.0.5"
    );
    assert_eq!(
        parse_cidr("10.0.0.5/24", "f").unwrap().to_string(),
        "10.0.0.5/24"
    );
    assert_eq!(
        format!("{}", parse_cidr("10.0.0.5", "x.y").unwrap_err()),
        "x.y: invalid CIDR \"10.0.0.5\""
    );
}
