use super::*;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};

fn params(broadcast: bool) -> Params {
    Params {
        client_id: b"c1/lan/eth0".to_vec(),
        mac: [2, 0, 0, 0, 0, 1],
        request: vec![1, 3, 121],
        provide: vec![(12, b"web".to_vec())],
        broadcast,
    }
}

#[test]
fn discover_carries_client_id_prl_and_provided_options() {
    let bytes = build(&params(false), Outgoing::Discover { requested: None }, 7);
    let m = Message::from_bytes(&bytes).unwrap();
    assert_eq!(m.xid(), 7);
    assert_eq!(m.chaddr(), &[2, 0, 0, 0, 0, 1]);
    assert!(!m.flags().broadcast());
    let o = m.opts();
    assert_eq!(o.msg_type(), Some(MessageType::Discover));
    let Some(DhcpOption::ClientIdentifier(cid)) = o.get(OptionCode::ClientIdentifier) else {
        panic!("no client id");
    };
    assert_eq!(cid[0], 0, "type byte 0 as the reference");
    assert_eq!(&cid[1..], b"c1/lan/eth0");
    let Some(DhcpOption::ParameterRequestList(prl)) = o.get(OptionCode::ParameterRequestList)
    else {
        panic!("no PRL");
    };
    let codes: Vec<u8> = prl.iter().map(|c| u8::from(*c)).collect();
    assert_eq!(codes, vec![1, 3, 121]);
    // option 12 on the wire, whatever dhcproto calls it
    let raw = m.to_vec().unwrap();
    assert!(raw.windows(5).any(|w| w == [12, 3, b'w', b'e', b'b']));
}

#[test]
fn broadcast_flag_only_without_an_address() {
    let d = build(&params(true), Outgoing::Discover { requested: None }, 1);
    assert!(Message::from_bytes(&d).unwrap().flags().broadcast());
    let renew = Outgoing::Request {
        requested: None,
        server: None,
        ciaddr: Some([10, 0, 0, 5].into()),
    };
    let r = Message::from_bytes(&build(&params(true), renew, 1)).unwrap();
    assert!(!r.flags().broadcast());
    assert_eq!(r.ciaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert!(r.opts().get(OptionCode::ServerIdentifier).is_none());
    assert!(r.opts().get(OptionCode::RequestedIpAddress).is_none());
}

#[test]
fn release_names_server_and_address() {
    let what = Outgoing::Release {
        ciaddr: [10, 0, 0, 5].into(),
        server: [10, 0, 0, 1].into(),
    };
    let m = Message::from_bytes(&build(&params(false), what, 3)).unwrap();
    assert_eq!(m.opts().msg_type(), Some(MessageType::Release));
    assert_eq!(m.ciaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(
        m.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier([10, 0, 0, 1].into()))
    );
}

fn ack(mac: [u8; 6]) -> Vec<u8> {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(9, z, [10, 0, 0, 5].into(), z, z, &mac);
    m.set_opcode(dhcproto::v4::Opcode::BootReply);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Ack));
    o.insert(DhcpOption::ServerIdentifier([10, 0, 0, 1].into()));
    o.insert(DhcpOption::SubnetMask([255, 255, 255, 0].into()));
    o.insert(DhcpOption::Router(vec![[10, 0, 0, 1].into()]));
    o.insert(DhcpOption::AddressLeaseTime(120));
    o.insert(DhcpOption::ClasslessStaticRoute(vec![(
        "10.9.0.0/16".parse().unwrap(),
        [10, 0, 0, 254].into(),
    )]));
    m.to_vec().unwrap()
}

#[test]
fn ack_is_parsed_for_our_mac_only() {
    let mac = [2, 0, 0, 0, 0, 1];
    let r = parse(&ack(mac), &mac).unwrap();
    assert_eq!(r.kind, ReplyKind::Ack);
    assert_eq!(r.xid, 9);
    assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(r.mask, Some([255, 255, 255, 0].into()));
    assert_eq!(r.lease_secs, Some(120));
    assert_eq!(r.classless.len(), 1);
    assert!(parse(&ack(mac), &[2, 0, 0, 0, 0, 2]).is_none());
    assert!(parse(b"garbage", &mac).is_none());
    // our own DISCOVER (a BootRequest) is not a reply
    let d = build(&params(false), Outgoing::Discover { requested: None }, 9);
    assert!(parse(&d, &mac).is_none());
}

#[test]
fn frame_round_trips_and_checksums_verify() {
    let f = frame([0, 0, 0, 0].into(), Ipv4Addr::BROADCAST, b"hello");
    assert_eq!(f.len(), 20 + 8 + 5);
    assert_eq!(checksum(&[&f[..20]]), 0, "IPv4 header checksum");
    let mut pseudo = vec![0, 0, 0, 0, 255, 255, 255, 255, 0, 17];
    pseudo.extend_from_slice(&13u16.to_be_bytes());
    assert_eq!(checksum(&[&pseudo, &f[20..]]), 0, "UDP checksum");
    // a reply to port 68 unframes; swap the ports so it is addressed to the client
    let mut reply = f.clone();
    reply[20..22].copy_from_slice(&67u16.to_be_bytes());
    reply[22..24].copy_from_slice(&68u16.to_be_bytes());
    assert_eq!(unframe(&reply), Some(&b"hello"[..]));
    assert_eq!(unframe(&f), None, "to port 67: not for the client");
    assert_eq!(unframe(&f[..10]), None);
}
