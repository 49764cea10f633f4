//! tc messages byte by byte (laid out by hand from `pkt_sched.h`, `tc_act/tc_mirred.h`), the
//! reference's tbf arithmetic on its own test vectors, and the operations against the live
//! kernel in a fresh netns, checked through our dumps and through `tc -j` as the oracle.

use super::*;
use crate::netlink::attr::to_bytes;
use crate::netlink::{LinkKind, LinkSpec, is_exists, is_not_found};
use crate::testutil::fresh_netns;
use serde_json::Value;
use std::process::Command;

fn ne32(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

/// rtattr header: length (header included, padding excluded), type.
fn rta(len: usize, ty: u16) -> Vec<u8> {
    let mut v = (len as u16).to_ne_bytes().to_vec();
    v.extend(ty.to_ne_bytes());
    v
}

/// tcmsg: family, 3 pad bytes, ifindex, handle, parent, info.
fn tcmsg_bytes(ifindex: u32, handle: u32, parent: u32, info: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0];
    for w in [ifindex, handle, parent, info] {
        v.extend(ne32(w));
    }
    v
}

fn qopt(rate32: u32, limit: u32, buffer: u32) -> Vec<u8> {
    let mut v = vec![0, 1, 0, 0, 0, 0, 0, 0]; // cell_log 0, linklayer ethernet, rest 0
    v.extend(ne32(rate32));
    v.extend([0; 12]); // peakrate
    v.extend(ne32(limit));
    v.extend(ne32(buffer));
    v.extend(ne32(0)); // mtu
    v
}

#[test]
fn tbf_numbers_match_the_reference() {
    let clock = Psched::default();
    // Vectors from the reference's bandwidth_linux_test.go.
    let t = Tbf::from_bits(16, 8, &clock);
    assert_eq!((t.rate, t.limit), (2, 1));
    let t = Tbf::from_bits(8000, 80, &clock);
    assert_eq!((t.rate, t.limit), (1000, 35));
    // 1 Mbit/s with a 10 kB bucket: 80 ms of tokens = 1 250 000 ticks of 64 ns.
    let t = Tbf::from_bits(1_000_000, 80_000, &clock);
    assert_eq!(
        t,
        Tbf {
            rate: 125_000,
            limit: 3125 + 10_000,
            buffer: 1_250_000
        }
    );
}

/// A bucket worth more than 2^32 ticks (containerd's burst of `MaxUint32` bits at 1 Mbit/s):
/// Go on amd64 converts float64 to uint32 through int64 and keeps the low 32 bits, so the
/// reference's buffer wraps instead of saturating. Derivation, as `ifb_creator.go` computes:
/// rate 125 000 B/s, burst 536 870 911 B; usec = 536870911 * 1e6 / 125000 = 4 294 967 288;
/// ticks = 4294967288 * 15.625 = 67 108 863 875, whose low 32 bits are 2 684 354 435;
/// limit = uint32(125000 * 25000 / 1e6) + 536870911 = 3125 + 536870911 = 536 874 036.
#[test]
fn tbf_buffer_wraps_like_go_on_amd64() {
    let t = Tbf::from_bits(1_000_000, 4_294_967_295, &Psched::default());
    assert_eq!(
        t,
        Tbf {
            rate: 125_000,
            limit: 536_874_036,
            buffer: 2_684_354_435
        }
    );
    assert_eq!(Psched::default().ticks(u32::MAX), 2_684_354_544);
    // Go's uint32 addition wraps: 4e9 queued + 536 870 911 burst = 4 536 870 911 - 2^32.
    let t = Tbf::from_bits(1_280_000_000_000, 4_294_967_295, &Psched::default());
    assert_eq!((t.limit, t.buffer), (241_903_615, 52_421));
    // A queue over 2^32 bytes (1e12 B/s for 25 ms) wraps too: 2.5e10 mod 2^32, plus 1.
    let t = Tbf::from_bits(8_000_000_000_000, 8, &Psched::default());
    assert_eq!((t.limit, t.buffer), (3_525_163_521, 0));
}

#[test]
fn psched_is_read_like_iproute2() {
    let p = Psched::parse("000003e8 00000040 000f4240 3b9aca00\n").unwrap();
    assert_eq!(p, Psched::default());
    assert_eq!(p.ticks(80_000), 1_250_000);
    // Nanosecond clock_res: the t2us multiplier is ignored, the factor is 1000.
    let p = Psched::parse("000003e8 00000040 3b9aca00 3b9aca00").unwrap();
    assert_eq!(p.ticks_per_usec, 1000.0);
    for bad in ["", "1 2", "000003e8 00000000 000f4240", "zz 40 f4240"] {
        assert_eq!(Psched::parse(bad), None, "{bad:?}");
    }
    let live = Psched::read();
    assert!(live.ticks_per_usec > 0.0);
}

#[test]
fn tbf_message_bytes() {
    let tbf = Tbf {
        rate: 125_000,
        limit: 13_125,
        buffer: 1_250_000,
    };
    let mut want = tcmsg_bytes(7, 0x0001_0000, 0xFFFF_FFFF, 0);
    want.extend(rta(8, 1));
    want.extend(b"tbf\0");
    want.extend(rta(4 + 40, 2)); // TCA_OPTIONS
    want.extend(rta(40, 1)); // TCA_TBF_PARMS
    want.extend(qopt(125_000, 13_125, 1_250_000));
    assert_eq!(to_bytes(&tbf_payload(7, &tbf).unwrap()).unwrap(), want);
}

#[test]
fn tbf_message_bytes_with_rate64() {
    let tbf = Tbf {
        rate: 5_000_000_000,
        limit: 7,
        buffer: 9,
    };
    let mut want = tcmsg_bytes(3, 0x0001_0000, 0xFFFF_FFFF, 0);
    want.extend(rta(8, 1));
    want.extend(b"tbf\0");
    want.extend(rta(4 + 40 + 12, 2));
    want.extend(rta(40, 1));
    want.extend(qopt(u32::MAX, 7, 9)); // saturated, as iproute2 does
    want.extend(rta(12, 4)); // TCA_TBF_RATE64
    want.extend(5_000_000_000u64.to_ne_bytes());
    let bytes = to_bytes(&tbf_payload(3, &tbf).unwrap()).unwrap();
    assert_eq!(bytes, want);
    // And it reads back, as a dump of it would.
    let parsed = parse_qdisc(&bytes).unwrap();
    assert_eq!((parsed.kind.as_str(), parsed.tbf), ("tbf", Some(tbf)));
    let zero = Tbf { rate: 0, ..tbf };
    assert!(tbf_payload(3, &zero).is_err());
}

#[test]
fn ingress_message_bytes() {
    let mut want = tcmsg_bytes(9, 0xFFFF_0000, 0xFFFF_FFF1, 0);
    want.extend(rta(12, 1));
    want.extend(b"ingress\0");
    assert_eq!(to_bytes(&ingress_payload(9).unwrap()).unwrap(), want);
}

#[test]
fn redirect_filter_message_bytes() {
    // prio 1 << 16 | htons(ETH_P_ALL)
    let info = 0x0001_0000 | u32::from(0x0003u16.to_be());
    let mut want = tcmsg_bytes(4, 0, 0xFFFF_0000, info);
    want.extend(rta(8, 1));
    want.extend(b"u32\0");
    let mut mirred = ne32(0).to_vec(); // index
    mirred.extend(ne32(0)); // capab
    mirred.extend(4i32.to_ne_bytes()); // action: TC_ACT_STOLEN
    mirred.extend([0; 8]); // refcnt, bindcnt
    mirred.extend(1i32.to_ne_bytes()); // eaction: TCA_EGRESS_REDIR
    mirred.extend(ne32(12)); // ifindex
    let mut act = rta(11, 1); // TCA_ACT_KIND "mirred\0" (7 bytes, padded to 8)
    act.extend(b"mirred\0\0");
    act.extend(rta(4 + 32, 2)); // TCA_ACT_OPTIONS
    act.extend(rta(32, 2)); // TCA_MIRRED_PARMS, 28 bytes
    act.extend(mirred);
    let mut sel = vec![1, 0, 1, 0]; // TC_U32_TERMINAL, offshift, nkeys 1, pad
    sel.extend([0; 12]); // offmask, off, offoff, hoff, hmask
    sel.extend([0; 16]); // one key: mask 0, val 0, off 0, offmask 0
    let mut opts = rta(8, 1); // TCA_U32_CLASSID 1:1
    opts.extend(ne32(0x0001_0001));
    opts.extend(rta(36, 5)); // TCA_U32_SEL
    opts.extend(sel);
    opts.extend(rta(4 + 4 + act.len(), 7)); // TCA_U32_ACT
    opts.extend(rta(4 + act.len(), 1)); // action order 1
    opts.extend(act);
    want.extend(rta(4 + opts.len(), 2));
    want.extend(opts);
    let bytes = to_bytes(&redirect_payload(4, 12).unwrap()).unwrap();
    assert_eq!(bytes, want);
    let f = parse_filter(&bytes).unwrap();
    assert_eq!((f.prio, f.protocol, f.kind.as_str()), (1, ETH_P_ALL, "u32"));
    let want_info = U32Info {
        classid: Some(0x0001_0001),
        match_all: true,
        redirect_to: Some(12),
    };
    assert_eq!(f.u32, Some(want_info));
}

/// `tc -j ARGS` in the calling thread's netns.
fn tc_json(args: &[&str]) -> Value {
    let ns = format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        nix::unistd::gettid()
    );
    let out = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .args(["tc", "-j"])
        .args(args)
        .output()
        .expect("run nsenter tc (util-linux and iproute2 are needed for this oracle)");
    assert!(
        out.status.success(),
        "tc -j {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

/// A veth pair `th0`/`tc0` and an IFB `tifb0`, all up, in the test's own fresh netns.
fn links(h: &Handle) -> (u32, u32) {
    h.create_veth("th0", "tc0", 0, None, None, None).unwrap();
    let ifb = LinkSpec {
        up: true,
        txqlen: Some(0),
        ..LinkSpec::new("tifb0", LinkKind::Ifb)
    };
    h.create_link(&ifb).unwrap();
    let index = |n| h.link_by_name(n).unwrap().unwrap().index;
    h.set_up(index("th0")).unwrap();
    (index("th0"), index("tifb0"))
}

#[test]
fn tbf_on_a_link_is_seen_by_tc_and_by_us() {
    let Some(_ns) = fresh_netns("tbf_on_a_link_is_seen_by_tc_and_by_us") else {
        return;
    };
    let h = Handle::new().unwrap();
    let (veth, ifb) = links(&h);
    let tbf = Tbf::from_bits(1_000_000, 80_000, &Psched::read());
    h.add_tbf(veth, &tbf).unwrap();
    let big = Tbf::from_bits(40_000_000_000, 8_000_000, &Psched::read());
    h.add_tbf(ifb, &big).unwrap();
    assert!(is_exists(&h.add_tbf(veth, &tbf).unwrap_err()));

    let ours = h.qdiscs(veth).unwrap();
    let root = ours.iter().find(|q| q.parent == TC_H_ROOT).unwrap();
    assert_eq!((root.kind.as_str(), root.handle), ("tbf", TBF_HANDLE));
    assert_eq!(root.tbf, Some(tbf), "the kernel keeps exactly what we sent");
    let on_ifb = h.qdiscs(ifb).unwrap();
    assert_eq!(on_ifb[0].tbf, Some(big), "RATE64 round trip");

    let seen = tc_json(&["qdisc", "show", "dev", "th0"]);
    let root = &seen.as_array().unwrap()[0];
    assert_eq!(root["kind"], "tbf");
    assert_eq!(root["handle"], "1:");
    assert_eq!(root["options"]["rate"], 125_000);
    assert_eq!(root["options"]["burst"], 10_000);
    assert_eq!(root["options"]["lat"], 25_000);
    let seen = tc_json(&["qdisc", "show", "dev", "tifb0"]);
    assert_eq!(seen[0]["options"]["rate"], 5_000_000_000u64);

    h.del_root_qdisc(veth).unwrap();
    assert!(h.qdiscs(veth).unwrap().iter().all(|q| q.kind != "tbf"));
    assert!(is_not_found(&h.del_root_qdisc(veth).unwrap_err()));
}

#[test]
fn ingress_redirect_is_seen_by_tc_and_by_us() {
    let Some(_ns) = fresh_netns("ingress_redirect_is_seen_by_tc_and_by_us") else {
        return;
    };
    let h = Handle::new().unwrap();
    let (veth, ifb) = links(&h);
    assert!(h.filters(veth, INGRESS_HANDLE).unwrap().is_empty());
    h.add_ingress_qdisc(veth).unwrap();
    assert!(is_exists(&h.add_ingress_qdisc(veth).unwrap_err()));
    h.add_redirect_filter(veth, ifb).unwrap();

    let q = h.qdiscs(veth).unwrap();
    let ingress = q.iter().find(|q| q.kind == "ingress").unwrap();
    assert_eq!(
        (ingress.handle, ingress.parent),
        (INGRESS_HANDLE, TC_H_INGRESS)
    );
    let filters = h.filters(veth, INGRESS_HANDLE).unwrap();
    let node = filters
        .iter()
        .find(|f| f.u32.as_ref().is_some_and(|u| u.match_all))
        .expect("the key node");
    assert_eq!((node.prio, node.protocol), (REDIRECT_PRIO, ETH_P_ALL));
    assert_eq!(node.u32.as_ref().unwrap().redirect_to, Some(ifb));
    assert_eq!(node.u32.as_ref().unwrap().classid, Some(REDIRECT_CLASSID));

    let seen = tc_json(&["filter", "show", "dev", "th0", "parent", "ffff:"]);
    let node = seen
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["options"]["actions"].is_array())
        .expect("tc shows the node with its action");
    assert_eq!(node["protocol"], "all");
    assert_eq!(node["pref"], 1);
    assert_eq!(node["options"]["flowid"], "1:1");
    let act = &node["options"]["actions"][0];
    assert_eq!(act["kind"], "mirred");
    assert_eq!(act["mirred_action"], "redirect");
    assert_eq!(act["direction"], "egress");
    assert_eq!(act["to_dev"], "tifb0");
    assert_eq!(act["control_action"]["type"], "stolen");
    assert_eq!(node["options"]["actions"].as_array().unwrap().len(), 1);

    h.del_ingress_qdisc(veth).unwrap();
    assert!(h.filters(veth, INGRESS_HANDLE).unwrap().is_empty());
    let e = h.del_ingress_qdisc(veth).unwrap_err();
    assert!(is_not_found(&e), "{e:#}");
}
