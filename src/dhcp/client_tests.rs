use super::*;
use crate::dhcp::packet::Reply;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

fn timing() -> Timing {
    Timing {
        timeout: 30_000,
        resend_max: 16_000,
        resend_timeout: 60_000,
    }
}

fn reply(xid: u32, kind: ReplyKind, lease: u32) -> Reply {
    Reply {
        xid,
        kind,
        yiaddr: [10, 0, 0, 5].into(),
        server: Some([10, 0, 0, 1].into()),
        mask: Some([255, 255, 255, 0].into()),
        routers: vec![[10, 0, 0, 1].into()],
        static_routes: vec![],
        classless: vec![],
        dns: vec![],
        lease_secs: Some(lease),
        t1_secs: None,
        t2_secs: None,
    }
}

fn sent(a: &[Action]) -> (Outgoing, u32, Dest) {
    match a {
        [Action::Send(o, x, d)] => (*o, *x, *d),
        other => panic!("expected one send, got {other:?}"),
    }
}

/// Runs DORA at t=0 and returns the bound client.
fn bound(lease: u32) -> Client {
    let mut c = Client::new(timing(), 42);
    let (o, xid, d) = sent(&c.tick(0));
    assert_eq!(o, Outgoing::Discover { requested: None });
    assert_eq!(d, Dest::Broadcast);
    assert_eq!(c.state(), State::Selecting);
    let (o, xid2, _) = sent(&c.on_reply(&reply(xid, ReplyKind::Offer, lease), MAC, 10));
    assert_eq!(xid, xid2, "REQUEST keeps the DISCOVER's xid");
    assert_eq!(
        o,
        Outgoing::Request {
            requested: Some([10, 0, 0, 5].into()),
            server: Some([10, 0, 0, 1].into()),
            ciaddr: None
        }
    );
    let a = c.on_reply(&reply(xid, ReplyKind::Ack, lease), MAC, 20);
    assert!(matches!(&a[..], [Action::Bound(l)] if l.start == 20 && l.server_mac == MAC));
    assert_eq!(c.state(), State::Bound);
    c
}

#[test]
fn dora_binds_and_schedules_t1() {
    let c = bound(120);
    assert_eq!(c.deadline(), 20 + 60_000);
    assert!(!c.expects_reply());
}

#[test]
fn replies_with_another_xid_are_ignored() {
    let mut c = Client::new(timing(), 42);
    let (_, xid, _) = sent(&c.tick(0));
    assert!(
        c.on_reply(&reply(xid ^ 1, ReplyKind::Offer, 60), MAC, 5)
            .is_empty()
    );
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn resends_back_off_and_give_up_within_resend_timeout() {
    let mut c = Client::new(timing(), 7);
    let mut now = 0;
    let mut sends = vec![];
    loop {
        let a = c.tick(now);
        if let [Action::Failed(msg)] = &a[..] {
            assert!(msg.contains("no more tries"), "{msg}");
            break;
        }
        if !a.is_empty() {
            sends.push(now);
        }
        now = c.deadline();
        assert!(now <= 60_000, "never past resend_timeout");
    }
    assert_eq!(now, 60_000);
    let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    // 4 fast retries: 2 s ± 1 s
    for g in &gaps[..4] {
        assert!((1000..=3000).contains(g), "{gaps:?}");
    }
    // then 4 s, 8 s, 16 s (capped at resend_max), each ± 1 s
    assert!((3000..=5000).contains(&gaps[4]), "{gaps:?}");
    assert!((7000..=9000).contains(&gaps[5]), "{gaps:?}");
    assert!(gaps[6..].iter().all(|g| *g <= 17_000), "{gaps:?}");
}

#[test]
fn timeout_caps_each_wait() {
    let mut c = Client::new(
        Timing {
            timeout: 500,
            ..timing()
        },
        3,
    );
    sent(&c.tick(0));
    assert_eq!(c.deadline(), 500);
}

#[test]
fn renews_at_t1_unicast_then_rebinds_at_t2_broadcast() {
    let mut c = bound(100);
    assert!(c.tick(30_000).is_empty(), "nothing before T1");
    let (o, _, d) = sent(&c.tick(50_020));
    assert_eq!(c.state(), State::Renewing);
    assert_eq!(d, Dest::Unicast([10, 0, 0, 1].into(), MAC));
    assert_eq!(
        o,
        Outgoing::Request {
            requested: None,
            server: None,
            ciaddr: Some([10, 0, 0, 5].into())
        }
    );
    // retries stay before T2 (87.5 s)
    let mut now = c.deadline();
    while now < 87_520 {
        assert!(now > 50_020);
        sent(&c.tick(now));
        now = c.deadline();
    }
    let (_, _, d) = sent(&c.tick(now));
    assert_eq!(c.state(), State::Rebinding);
    assert_eq!(d, Dest::Broadcast);
}

#[test]
fn ack_while_renewing_extends_the_lease() {
    let mut c = bound(100);
    let (_, xid, _) = sent(&c.tick(50_020));
    let a = c.on_reply(&reply(xid, ReplyKind::Ack, 100), MAC, 50_100);
    assert!(matches!(&a[..], [Action::Bound(l)] if l.start == 50_100));
    assert_eq!(c.state(), State::Bound);
    assert_eq!(c.deadline(), 100_100);
}

#[test]
fn expiry_restarts_discovery_for_the_same_address() {
    let mut c = bound(100);
    let mut now = 50_020;
    loop {
        let a = c.tick(now);
        if a.first() == Some(&Action::Expired) {
            assert!(matches!(
                a[1],
                Action::Send(Outgoing::Discover { requested: Some(ip) }, _, _) if ip == Ipv4Addr::new(10, 0, 0, 5)
            ));
            break;
        }
        now = c.deadline();
        assert!(now <= 100_020);
    }
    assert!(c.lease().is_none());
}

#[test]
fn nak_while_renewing_drops_the_lease() {
    let mut c = bound(100);
    let (_, xid, _) = sent(&c.tick(50_020));
    let a = c.on_reply(&reply(xid, ReplyKind::Nak, 0), MAC, 50_030);
    assert_eq!(a[0], Action::Expired);
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn resume_picks_the_state_by_the_clock() {
    let lease = bound(100).lease().unwrap().clone();
    let c = Client::resume(timing(), 1, lease.clone(), 30_000);
    assert_eq!(c.state(), State::Bound);
    assert_eq!(c.deadline(), lease.t1());
    // past T1: the first tick renews (unicast), it does not rediscover
    let mut c = Client::resume(timing(), 1, lease.clone(), 60_000);
    let (o, _, d) = sent(&c.tick(60_000));
    assert!(matches!(
        o,
        Outgoing::Request {
            ciaddr: Some(_),
            ..
        }
    ));
    assert!(matches!(d, Dest::Unicast(..)));
    // expired: discover again, asking for the old address
    let mut c = Client::resume(timing(), 1, lease, 200_000);
    let (o, _, _) = sent(&c.tick(200_000));
    assert_eq!(
        o,
        Outgoing::Discover {
            requested: Some([10, 0, 0, 5].into())
        }
    );
}
