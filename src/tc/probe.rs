//! Can this kernel run qdisc X? Adds one to a link the caller owns (in a throwaway netns:
//! [`crate::netns::Netns::scratch`]) and removes it again; the request makes the kernel load the
//! qdisc's module, as the bandwidth plugin's would. Shared by `cni-multi doctor` and tests.

use super::{Psched, TC_H_ROOT, Tbf, create, tcmsg};
use crate::netlink::attr::{attr, nest};
use crate::netlink::probe::Outcome;
use crate::netlink::{Handle, errno_of};
use neli::consts::rtnl::{Rtm, Tca};

/// The qdiscs the applets use (bandwidth: `tbf`, `ingress`; `htb` for shapers to come).
pub const QDISCS: &[&str] = &["tbf", "ingress", "htb"];

/// `TCA_HTB_INIT` (include/uapi/linux/pkt_sched.h).
const TCA_HTB_INIT: u16 = 2;
/// `TC_HTB_PROTOVER`.
const HTB_PROTOVER: u32 = 3;

/// Adds a qdisc of `kind` to `ifindex` (in the netns of `nl`) and deletes it again.
pub fn probe_qdisc(nl: &Handle, ifindex: u32, kind: &str) -> Outcome {
    let added = match kind {
        "tbf" => nl.add_tbf(ifindex, &Tbf::from_bits(8_000_000, 80_000, &Psched::read())),
        "ingress" => nl.add_ingress_qdisc(ifindex),
        "htb" => add_htb(nl, ifindex),
        other => return Outcome::Failed(format!("no probe for qdisc {other:?}")),
    };
    match added {
        Ok(()) => {
            let _ = match kind {
                "ingress" => nl.del_ingress_qdisc(ifindex),
                _ => nl.del_root_qdisc(ifindex),
            };
            Outcome::Present
        }
        // An unknown qdisc kind is ENOENT ("Specified qdisc kind is unknown").
        Err(e) if errno_of(&e) == Some(libc::ENOENT) => {
            Outcome::Missing(format!("kernel lacks qdisc {kind} (module sch_{kind})"))
        }
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

/// A root `htb` (`1:`) with default class 0.
fn add_htb(nl: &Handle, ifindex: u32) -> anyhow::Result<()> {
    nl.request(
        &format!("add htb on ifindex {ifindex}"),
        Rtm::Newqdisc,
        create(),
        htb_payload(ifindex)?,
    )
}

/// `RTM_NEWQDISC` body of a root htb: `struct tc_htb_glob` {version, rate2quantum, defcls,
/// debug, direct_pkts}.
fn htb_payload(ifindex: u32) -> anyhow::Result<neli::rtnl::Tcmsg> {
    let mut glob = [0u8; 20];
    glob[0..4].copy_from_slice(&HTB_PROTOVER.to_ne_bytes());
    glob[4..8].copy_from_slice(&10u32.to_ne_bytes());
    let attrs = [
        attr(Tca::Kind, "htb")?,
        nest(Tca::Options, vec![attr(TCA_HTB_INIT, glob)?])?,
    ];
    Ok(tcmsg(ifindex, super::TBF_HANDLE, TC_H_ROOT, 0)
        .rtattrs(attrs.into_iter().collect())
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fresh_netns;

    #[test]
    fn qdiscs_of_this_kernel_are_found_and_removed() {
        let Some(_ns) = fresh_netns("qdiscs_of_this_kernel_are_found_and_removed") else {
            return;
        };
        let nl = Handle::new().unwrap();
        let lo = nl.link_by_name("lo").unwrap().unwrap();
        for kind in QDISCS {
            assert_eq!(probe_qdisc(&nl, lo.index, kind), Outcome::Present, "{kind}");
            let left: Vec<String> = nl
                .qdiscs(lo.index)
                .unwrap()
                .into_iter()
                .map(|q| q.kind)
                .filter(|k| k == kind)
                .collect();
            assert!(left.is_empty(), "{kind} left behind");
        }
    }
}
