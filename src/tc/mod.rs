//! Traffic control over rtnetlink: the qdiscs and the filter the bandwidth plugin installs
//! (FEATURES.md 6.13, DEPS.md 1.5). A root `tbf` shapes what a link sends; an `ingress` qdisc
//! plus a match-all `u32` filter with a `mirred` redirect hands what a link receives to an IFB,
//! whose own root `tbf` shapes it. These are the calls the reference makes through
//! vishvananda/netlink (`QdiscAdd`, `FilterAdd`, `QdiscList`), as typed operations on
//! [`Handle`]; neli knows `tcmsg` but nothing below `TCA_OPTIONS`, so that part is ours
//! ([`tbf`], [`filter`]).

mod filter;
pub mod probe;
mod tbf;
#[cfg(test)]
mod tests;

pub use filter::U32Info;
pub use tbf::{LATENCY_USEC, Psched, Tbf};

use crate::netlink::Handle;
use crate::netlink::attr::{attr, kind_of, nest, parse, str_of};
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Rtm, Tca};
use neli::rtnl::{Tcmsg, TcmsgBuilder};

/// `TC_H_ROOT`: the parent of a link's root qdisc.
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
/// `TC_H_INGRESS`: the parent of a link's ingress qdisc.
pub const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
/// `ffff:`: the handle of the ingress qdisc, and the parent of its filters.
pub const INGRESS_HANDLE: u32 = 0xFFFF_0000;
/// `1:`: the handle the reference gives its root tbf.
pub const TBF_HANDLE: u32 = 0x0001_0000;
/// `1:1`: the class id the reference's redirect filter carries (`flowid 1:1`).
pub const REDIRECT_CLASSID: u32 = 0x0001_0001;
/// Priority of the redirect filter.
pub const REDIRECT_PRIO: u16 = 1;
/// `ETH_P_ALL`: a filter for every protocol.
pub const ETH_P_ALL: u16 = 0x0003;

/// One qdisc as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    /// The link it sits on.
    pub ifindex: u32,
    /// Its handle (`1:` is `0x0001_0000`).
    pub handle: u32,
    /// Its parent ([`TC_H_ROOT`], [`TC_H_INGRESS`], or a class).
    pub parent: u32,
    /// `TCA_KIND` (`tbf`, `ingress`, `noqueue`, ...).
    pub kind: String,
    /// The parameters, when it is a `tbf`.
    pub tbf: Option<Tbf>,
}

/// One filter as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Its handle (`800::800` is `0x8000_0800`).
    pub handle: u32,
    /// Priority (`pref`).
    pub prio: u16,
    /// Ethernet protocol it applies to (host order; [`ETH_P_ALL`] for all).
    pub protocol: u16,
    /// `TCA_KIND` (`u32`, ...).
    pub kind: String,
    /// What a `u32` node says.
    pub u32: Option<U32Info>,
}

/// A `tcmsg` for one object on `ifindex`.
fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> TcmsgBuilder {
    TcmsgBuilder::default()
        .tcm_family(libc::AF_UNSPEC as u8)
        .tcm_ifindex(ifindex as i32)
        .tcm_handle(handle)
        .tcm_parent(parent)
        .tcm_info(info)
}

/// `RTM_NEWQDISC` body: a root `tbf` with handle `1:` on `ifindex`.
pub(crate) fn tbf_payload(ifindex: u32, tbf: &Tbf) -> anyhow::Result<Tcmsg> {
    let attrs = [
        attr(Tca::Kind, "tbf")?,
        nest(Tca::Options, tbf::options(tbf)?)?,
    ];
    Ok(tcmsg(ifindex, TBF_HANDLE, TC_H_ROOT, 0)
        .rtattrs(attrs.into_iter().collect())
        .build()?)
}

/// `RTM_NEWQDISC` body: the `ingress` qdisc (`ffff:`) on `ifindex`.
pub(crate) fn ingress_payload(ifindex: u32) -> anyhow::Result<Tcmsg> {
    Ok(tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0)
        .rtattrs([attr(Tca::Kind, "ingress")?].into_iter().collect())
        .build()?)
}

/// `RTM_NEWTFILTER` body: under the ingress qdisc of `ifindex`, prio 1, every protocol, a
/// match-all `u32` with a `mirred` egress redirect to `to_ifindex`.
pub(crate) fn redirect_payload(ifindex: u32, to_ifindex: u32) -> anyhow::Result<Tcmsg> {
    // tcm_info carries the priority in the upper half and the protocol, in network order, in
    // the lower half (TC_H_MAKE(prio << 16, htons(proto))).
    let info = u32::from(REDIRECT_PRIO) << 16 | u32::from(ETH_P_ALL.to_be());
    let attrs = [
        attr(Tca::Kind, "u32")?,
        nest(
            Tca::Options,
            filter::redirect_options(REDIRECT_CLASSID, to_ifindex)?,
        )?,
    ];
    Ok(tcmsg(ifindex, 0, INGRESS_HANDLE, info)
        .rtattrs(attrs.into_iter().collect())
        .build()?)
}

fn parse_qdisc(b: &[u8]) -> anyhow::Result<Qdisc> {
    let m: Tcmsg = parse(b)?;
    let mut q = Qdisc {
        ifindex: *m.tcm_ifindex() as u32,
        handle: *m.tcm_handle(),
        parent: *m.tcm_parent(),
        kind: String::new(),
        tbf: None,
    };
    let mut options = None;
    for a in m.rtattrs().iter() {
        match kind_of(a) {
            libc::TCA_KIND => q.kind = str_of(a.rta_payload().as_ref()),
            libc::TCA_OPTIONS => options = Some(a.rta_payload().as_ref()),
            _ => {}
        }
    }
    if let (Some(p), "tbf") = (options, q.kind.as_str()) {
        q.tbf = Some(tbf::parse_options(p)?);
    }
    Ok(q)
}

fn parse_filter(b: &[u8]) -> anyhow::Result<Filter> {
    let m: Tcmsg = parse(b)?;
    let info = *m.tcm_info();
    let mut f = Filter {
        handle: *m.tcm_handle(),
        prio: (info >> 16) as u16,
        protocol: u16::from_be(info as u16),
        kind: String::new(),
        u32: None,
    };
    let mut options = None;
    for a in m.rtattrs().iter() {
        match kind_of(a) {
            libc::TCA_KIND => f.kind = str_of(a.rta_payload().as_ref()),
            libc::TCA_OPTIONS => options = Some(a.rta_payload().as_ref()),
            _ => {}
        }
    }
    if let (Some(p), "u32") = (options, f.kind.as_str()) {
        f.u32 = Some(filter::parse_u32_options(p)?);
    }
    Ok(f)
}

fn create() -> NlmF {
    NlmF::CREATE | NlmF::EXCL
}

impl Handle {
    /// Adds a root `tbf` (handle `1:`) to `ifindex`; EEXIST if it has a root qdisc of its own.
    pub fn add_tbf(&self, ifindex: u32, tbf: &Tbf) -> anyhow::Result<()> {
        let op = format!(
            "add tbf (rate {} B/s, limit {} B, buffer {} ticks) on ifindex {ifindex}",
            tbf.rate, tbf.limit, tbf.buffer
        );
        self.request(&op, Rtm::Newqdisc, create(), tbf_payload(ifindex, tbf)?)
    }

    /// Adds the `ingress` qdisc to `ifindex`; EEXIST if it has one.
    pub fn add_ingress_qdisc(&self, ifindex: u32) -> anyhow::Result<()> {
        let op = format!("add ingress qdisc on ifindex {ifindex}");
        self.request(&op, Rtm::Newqdisc, create(), ingress_payload(ifindex)?)
    }

    /// Adds, under the ingress qdisc of `ifindex`, the filter redirecting everything it
    /// receives to the egress of `to_ifindex`.
    pub fn add_redirect_filter(&self, ifindex: u32, to_ifindex: u32) -> anyhow::Result<()> {
        let op = format!("add u32 redirect filter ifindex {ifindex} -> ifindex {to_ifindex}");
        let body = redirect_payload(ifindex, to_ifindex)?;
        self.request(&op, Rtm::Newtfilter, create(), body)
    }

    /// Deletes the root qdisc of `ifindex` (the kernel puts its default back); ENOENT (see
    /// [`crate::netlink::is_not_found`]) when there is only the default.
    pub fn del_root_qdisc(&self, ifindex: u32) -> anyhow::Result<()> {
        let op = format!("delete root qdisc of ifindex {ifindex}");
        let body = tcmsg(ifindex, 0, TC_H_ROOT, 0).build()?;
        self.request(&op, Rtm::Delqdisc, NlmF::empty(), body)
    }

    /// Deletes the ingress qdisc of `ifindex`, and with it its filters; ENOENT when there is
    /// none.
    pub fn del_ingress_qdisc(&self, ifindex: u32) -> anyhow::Result<()> {
        let op = format!("delete ingress qdisc of ifindex {ifindex}");
        // Handle 0, not ffff:: once it is gone the kernel compares a given handle with the
        // placeholder's and answers EINVAL instead of ENOENT.
        let body = tcmsg(ifindex, 0, TC_H_INGRESS, 0).build()?;
        self.request(&op, Rtm::Delqdisc, NlmF::empty(), body)
    }

    /// The qdiscs of `ifindex` (the kernel dumps every link's; we keep this one's).
    pub fn qdiscs(&self, ifindex: u32) -> anyhow::Result<Vec<Qdisc>> {
        let req = || Ok(tcmsg(0, 0, 0, 0).build()?);
        let op = format!("dump qdiscs of ifindex {ifindex}");
        self.dump(&op, Rtm::Getqdisc, req, |b| {
            let q = parse_qdisc(b)?;
            Ok((q.ifindex == ifindex).then_some(q))
        })
    }

    /// The filters attached to `parent` (a qdisc handle such as [`INGRESS_HANDLE`]) on
    /// `ifindex`; empty when there is no such qdisc.
    pub fn filters(&self, ifindex: u32, parent: u32) -> anyhow::Result<Vec<Filter>> {
        let req = || Ok(tcmsg(ifindex, 0, parent, 0).build()?);
        let op = format!("dump filters of ifindex {ifindex} parent {parent:#x}");
        self.dump(&op, Rtm::Gettfilter, req, |b| parse_filter(b).map(Some))
    }
}
