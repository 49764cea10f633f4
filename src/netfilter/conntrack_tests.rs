//! Tests of the ctnetlink flush: the message bytes, and in a fresh netns a real UDP flow
//! seen in `/proc/net/nf_conntrack`, flushed by port (both by the kernel's filtered flush
//! and by the dump-and-delete fallback), then gone, while a flow to another port stays.

use super::*;
use crate::netfilter::oracle::{self, here, run};
use crate::testutil::fresh_netns;
use std::net::UdpSocket;

/// The filtered flush, byte by byte against `linux/netfilter/nfnetlink_conntrack.h`.
#[test]
fn flush_message_bytes() {
    let got = flush_message(IpFamily::V4, PROTO_UDP, 8080, 7);
    #[rustfmt::skip]
    let want: Vec<u8> = [
        // nlmsghdr: len 64, type (CTNETLINK << 8) | CT_DELETE, flags REQUEST|ACK, seq 7, pid 0
        &[64, 0, 0, 0, 0x02, 0x01, 0x05, 0x00, 7, 0, 0, 0, 0, 0, 0, 0][..],
        &[2, 0, 0, 0],                       // nfgenmsg: AF_INET, v0, res_id 0
        &[24, 0, 1, 0x80],                   // CTA_TUPLE_ORIG (nested)
        &[20, 0, 2, 0x80],                   //   CTA_TUPLE_PROTO (nested)
        &[5, 0, 1, 0, 17, 0, 0, 0],          //     CTA_PROTO_NUM = 17
        &[6, 0, 3, 0, 0x1f, 0x90, 0, 0],     //     CTA_PROTO_DST_PORT = 8080 (BE)
        &[20, 0, 25, 0x80],                  // CTA_FILTER (nested)
        &[8, 0, 1, 0, 0x28, 0, 0, 0],        //   ORIG_FLAGS = PROTO_NUM|PROTO_DST_PORT
        &[8, 0, 2, 0, 0, 0, 0, 0],           //   REPLY_FLAGS = 0
    ]
    .concat();
    assert_eq!(got, want);
    assert_eq!(
        flush_message(IpFamily::V6, PROTO_UDP, 1, 1)[16],
        libc::AF_INET6 as u8
    );
}

/// UDP flows to 127.0.0.1:`port` from a fresh socket each (conntrack only tracks in a netns
/// whose ruleset needs it: a `ct state` match does).
fn make_flows(ports: &[u16]) {
    run(&here(), &["ip", "link", "set", "lo", "up"]);
    run(
        &here(),
        &[
            "nft",
            "add table ip cnitest; add chain ip cnitest o { type filter hook output priority 0; }; add rule ip cnitest o ct state new counter",
        ],
    );
    for &p in ports {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"x", ("127.0.0.1", p)).unwrap();
    }
}

fn udp_flows_to(port: u16) -> usize {
    let text = std::fs::read_to_string("/proc/thread-self/net/nf_conntrack").unwrap_or_default();
    let needle = format!("dport={port} ");
    // The original direction is what comes before the second `src=`.
    text.lines()
        .filter(|l| l.contains(" udp "))
        .filter(|l| {
            l.split("src=")
                .nth(1)
                .is_some_and(|orig| orig.contains(&needle))
        })
        .count()
}

fn ready(test: &str) -> bool {
    let ok = oracle::have("nft") && std::path::Path::new("/proc/net/nf_conntrack").exists();
    if !ok {
        println!("skipped: {test} needs nft and /proc/net/nf_conntrack");
    }
    ok
}

#[test]
fn kernel_flush_removes_only_that_port() {
    let Some(_ns) = fresh_netns("kernel_flush_removes_only_that_port") else {
        return;
    };
    if !ready("kernel_flush_removes_only_that_port") {
        return;
    }
    make_flows(&[40001, 40001, 40002]);
    assert_eq!(udp_flows_to(40001), 2);
    assert_eq!(udp_flows_to(40002), 1);
    let mut ct = Conntrack::new().unwrap();
    ct.delete_by_dport(IpFamily::V4, PROTO_UDP, 40001).unwrap();
    assert_eq!(udp_flows_to(40001), 0);
    assert_eq!(udp_flows_to(40002), 1);
    // The other family and protocol are left alone.
    ct.delete_by_dport(IpFamily::V6, PROTO_UDP, 40002).unwrap();
    ct.delete_by_dport(IpFamily::V4, 6, 40002).unwrap();
    assert_eq!(udp_flows_to(40002), 1);
    flush_udp_ports(&[(IpFamily::V4, 40002)]);
    assert_eq!(udp_flows_to(40002), 0);
}

#[test]
fn fallback_dump_and_delete() {
    let Some(_ns) = fresh_netns("fallback_dump_and_delete") else {
        return;
    };
    if !ready("fallback_dump_and_delete") {
        return;
    }
    make_flows(&[40011, 40011, 40012]);
    let mut ct = Conntrack::new().unwrap();
    assert_eq!(
        ct.dump_and_delete(IpFamily::V4, PROTO_UDP, 40011).unwrap(),
        2
    );
    assert_eq!(udp_flows_to(40011), 0);
    assert_eq!(udp_flows_to(40012), 1);
    assert_eq!(
        ct.dump_and_delete(IpFamily::V4, PROTO_UDP, 40011).unwrap(),
        0
    );
}
