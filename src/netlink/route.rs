//! Routes: add, replace, delete, dump and parse back, including tables above 255 (through
//! `RTA_TABLE`; the header field is 8 bits) and the `RTA_METRICS` mtu/advmss. Defaults follow
//! vishvananda/netlink as the reference plugins use it: protocol `boot`, table `main`, and
//! link scope for a unicast route without a gateway (as `ip route add` picks).

use super::attr::{Attr, attr, find, ip_attr, ip_of, nest, nested, parse, u32_of};
use super::{Family, Handle};
use anyhow::{Context, ensure};
use ipnet::IpNet;
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{RtScope, RtTable, Rta, Rtm, RtmF, Rtn, Rtprot};
use neli::rtnl::{Rtmsg, RtmsgBuilder};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `RTNH_F_ONLINK` (include/uapi/linux/rtnetlink.h), in `rtm_flags`.
const RTNH_F_ONLINK: u32 = 4;
const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;
const RT_TABLE_MAIN: u32 = libc::RT_TABLE_MAIN as u32;

/// One route, as given to add/replace/delete and as parsed back from a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix (`0.0.0.0/0` for a default route).
    pub dst: IpNet,
    /// Next hop.
    pub gw: Option<IpAddr>,
    /// Output ifindex.
    pub oif: Option<u32>,
    /// Routing table (`None`: main).
    pub table: Option<u32>,
    /// Scope (`RT_SCOPE_*`); `None` lets add pick universe, or link when there is no gateway.
    pub scope: Option<u8>,
    /// Metric (`RTA_PRIORITY`).
    pub metric: Option<u32>,
    /// Path MTU (`RTAX_MTU`).
    pub mtu: Option<u32>,
    /// Advertised MSS (`RTAX_ADVMSS`).
    pub advmss: Option<u32>,
    /// Protocol (`RTPROT_*`); `None`: boot on add, any on delete.
    pub protocol: Option<u8>,
    /// Preferred source address (`RTA_PREFSRC`).
    pub src: Option<IpAddr>,
    /// Route type (`RTN_*`), `RTN_UNICAST` by default.
    pub kind: u8,
    /// The gateway is on-link even if no address says so (`RTNH_F_ONLINK`).
    pub onlink: bool,
}

impl RouteSpec {
    /// A unicast route to `dst` with everything else left to the defaults.
    pub fn new(dst: IpNet) -> RouteSpec {
        RouteSpec {
            dst,
            gw: None,
            oif: None,
            table: None,
            scope: None,
            metric: None,
            mtu: None,
            advmss: None,
            protocol: None,
            src: None,
            kind: libc::RTN_UNICAST,
            onlink: false,
        }
    }

    /// The table this route is in (main when unset).
    pub fn table_id(&self) -> u32 {
        self.table.unwrap_or(RT_TABLE_MAIN)
    }

    /// `10.0.0.0/8 via 10.1.0.1 dev ifindex 3 table 1000` (for error messages).
    pub fn describe(&self) -> String {
        let mut s = self.dst.to_string();
        if let Some(gw) = self.gw {
            let _ = write!(s, " via {gw}");
        }
        if let Some(oif) = self.oif {
            let _ = write!(s, " dev ifindex {oif}");
        }
        if let Some(t) = self.table {
            let _ = write!(s, " table {t}");
        }
        if let Some(m) = self.metric {
            let _ = write!(s, " metric {m}");
        }
        s
    }
}

/// What the message is for: add/replace fill in defaults, delete leaves wildcards.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Add,
    Delete,
}

fn route_msg(r: &RouteSpec, purpose: Purpose) -> anyhow::Result<Rtmsg> {
    let family = Family::of_net(&r.dst);
    if let Some(gw) = r.gw {
        ensure!(
            Family::of(&gw) == family,
            "gateway {gw} is not of the family of {}",
            r.dst
        );
    }
    let table = r.table_id();
    let scope = match (r.scope, purpose) {
        (Some(s), _) => s,
        (None, Purpose::Delete) => libc::RT_SCOPE_NOWHERE,
        (None, Purpose::Add) if r.gw.is_none() && r.kind == libc::RTN_UNICAST => {
            libc::RT_SCOPE_LINK
        }
        (None, Purpose::Add) => libc::RT_SCOPE_UNIVERSE,
    };
    let protocol = match (r.protocol, purpose) {
        (Some(p), _) => p,
        (None, Purpose::Add) => libc::RTPROT_BOOT,
        (None, Purpose::Delete) => libc::RTPROT_UNSPEC,
    };
    let flags = if r.onlink {
        RtmF::from_bits_retain(RTNH_F_ONLINK)
    } else {
        RtmF::empty()
    };
    Ok(RtmsgBuilder::default()
        .rtm_family(family.rt())
        .rtm_dst_len(r.dst.prefix_len())
        .rtm_src_len(0)
        .rtm_tos(0)
        // Tables above 255 do not fit: the header says "unspec" and RTA_TABLE carries the id.
        .rtm_table(RtTable::from(
            u8::try_from(table).unwrap_or(libc::RT_TABLE_UNSPEC),
        ))
        .rtm_protocol(Rtprot::from(protocol))
        .rtm_scope(RtScope::from(scope))
        .rtm_type(Rtn::from(r.kind))
        .rtm_flags(flags)
        .rtattrs(route_attrs(r, table)?.into_iter().collect())
        .build()?)
}

fn route_attrs(r: &RouteSpec, table: u32) -> anyhow::Result<Vec<Attr<Rta>>> {
    let mut attrs = vec![attr(Rta::Table, table)?];
    if r.dst.prefix_len() > 0 {
        attrs.push(ip_attr(Rta::Dst, r.dst.network())?);
    }
    if let Some(gw) = r.gw {
        attrs.push(ip_attr(Rta::Gateway, gw)?);
    }
    if let Some(oif) = r.oif {
        attrs.push(attr(Rta::Oif, oif)?);
    }
    if let Some(metric) = r.metric {
        attrs.push(attr(Rta::Priority, metric)?);
    }
    if let Some(src) = r.src {
        attrs.push(ip_attr(Rta::Prefsrc, src)?);
    }
    let mut metrics = Vec::new();
    if let Some(mtu) = r.mtu {
        metrics.push(attr(RTAX_MTU, mtu)?);
    }
    if let Some(mss) = r.advmss {
        metrics.push(attr(RTAX_ADVMSS, mss)?);
    }
    if !metrics.is_empty() {
        attrs.push(nest(Rta::Metrics, metrics)?);
    }
    Ok(attrs)
}

fn parse_route(b: &[u8]) -> anyhow::Result<Option<RouteSpec>> {
    let m: Rtmsg = parse(b)?;
    let Some(family) = Family::from_rt(*m.rtm_family()) else {
        return Ok(None);
    };
    let a = m.rtattrs();
    let unspecified = match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let dst_ip = find(a, libc::RTA_DST)
        .and_then(ip_of)
        .unwrap_or(unspecified);
    let dst = IpNet::new(dst_ip, *m.rtm_dst_len()).context("route prefix length")?;
    let metrics = match find(a, libc::RTA_METRICS) {
        Some(p) => Some(nested::<u16>(p)?),
        None => None,
    };
    let metric_of = |t| metrics.as_ref().and_then(|ms| find(ms, t)).and_then(u32_of);
    Ok(Some(RouteSpec {
        dst,
        gw: find(a, libc::RTA_GATEWAY).and_then(ip_of),
        oif: find(a, libc::RTA_OIF).and_then(u32_of),
        table: Some(
            find(a, libc::RTA_TABLE)
                .and_then(u32_of)
                .unwrap_or(u32::from(u8::from(*m.rtm_table()))),
        ),
        scope: Some(u8::from(*m.rtm_scope())),
        metric: find(a, libc::RTA_PRIORITY).and_then(u32_of),
        mtu: metric_of(RTAX_MTU),
        advmss: metric_of(RTAX_ADVMSS),
        protocol: Some(u8::from(*m.rtm_protocol())),
        src: find(a, libc::RTA_PREFSRC).and_then(ip_of),
        kind: u8::from(*m.rtm_type()),
        onlink: m.rtm_flags().bits() & RTNH_F_ONLINK != 0,
    }))
}

impl Handle {
    /// Adds a route (`CREATE|EXCL`: EEXIST if an identical one exists).
    pub fn add_route(&self, r: &RouteSpec) -> anyhow::Result<()> {
        self.route_request(
            "add",
            Rtm::Newroute,
            NlmF::CREATE | NlmF::EXCL,
            r,
            Purpose::Add,
        )
    }

    /// Adds a route or replaces the one with the same destination, table and metric.
    pub fn replace_route(&self, r: &RouteSpec) -> anyhow::Result<()> {
        self.route_request(
            "replace",
            Rtm::Newroute,
            NlmF::CREATE | NlmF::REPLACE,
            r,
            Purpose::Add,
        )
    }

    /// Deletes the route matching `r` (unset fields match anything; ESRCH if none does).
    pub fn del_route(&self, r: &RouteSpec) -> anyhow::Result<()> {
        self.route_request("delete", Rtm::Delroute, NlmF::empty(), r, Purpose::Delete)
    }

    /// One route request, its error naming `<verb> route <r>`.
    fn route_request(
        &self,
        verb: &str,
        rtm: Rtm,
        flags: NlmF,
        r: &RouteSpec,
        purpose: Purpose,
    ) -> anyhow::Result<()> {
        let op = format!("{verb} route {}", r.describe());
        self.request(&op, rtm, flags, route_msg(r, purpose)?)
    }

    /// The route the kernel would use to reach `dst` (`ip route get`): `RTM_GETROUTE` for a
    /// full-length destination; `None` when it answers with nothing.
    pub fn route_get(&self, dst: IpAddr) -> anyhow::Result<Option<RouteSpec>> {
        let family = Family::of(&dst);
        let plen = if dst.is_ipv4() { 32 } else { 128 };
        let msg = RtmsgBuilder::default()
            .rtm_family(family.rt())
            .rtm_dst_len(plen)
            .rtm_src_len(0)
            .rtm_tos(0)
            .rtm_table(RtTable::Unspec)
            .rtm_protocol(Rtprot::Unspec)
            .rtm_scope(RtScope::Universe)
            .rtm_type(Rtn::Unspec)
            .rtattrs(std::iter::once(ip_attr(Rta::Dst, dst)?).collect())
            .build()?;
        let route = self.get(
            &format!("get route to {dst}"),
            Rtm::Getroute,
            msg,
            parse_route,
        )?;
        Ok(route.flatten())
    }

    /// Routes of one family; of one table if given (filtered by the kernel), else of all
    /// tables, local and cached-free.
    pub fn routes(&self, family: Family, table: Option<u32>) -> anyhow::Result<Vec<RouteSpec>> {
        let req = || {
            let attrs = match table {
                Some(t) => vec![attr(Rta::Table, t)?],
                None => vec![],
            };
            Ok(RtmsgBuilder::default()
                .rtm_family(family.rt())
                .rtm_dst_len(0)
                .rtm_src_len(0)
                .rtm_tos(0)
                .rtm_table(RtTable::Unspec)
                .rtm_protocol(Rtprot::Unspec)
                .rtm_scope(RtScope::Universe)
                .rtm_type(Rtn::Unspec)
                .rtattrs(attrs.into_iter().collect())
                .build()?)
        };
        let op = match table {
            Some(t) => format!("list {family:?} routes of table {t}"),
            None => format!("list {family:?} routes"),
        };
        let all = self.dump(&op, Rtm::Getroute, req, parse_route)?;
        // Older kernels ignore the table filter; make the answer exact either way.
        Ok(all
            .into_iter()
            .filter(|r| table.is_none() || r.table == table)
            .collect())
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
