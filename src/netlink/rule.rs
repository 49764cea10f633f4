//! Policy routing rules (`ip rule`): add, delete, dump, for IPv4 and IPv6. The reference's
//! sbr plugin and the vrf/bridge helpers use these through vishvananda/netlink's `RuleAdd`.
//! Tables above 255 go in `FRA_TABLE`; the header's table field is 8 bits.

use super::attr::{Attr, attr, find, ip_attr, ip_of, parse, str_of, u32_of};
use super::{Family, Handle};
use anyhow::{Context, bail, ensure};
use ipnet::IpNet;
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{FrAct, Frattr, RtTable, Rtm};
use neli::rtnl::{Fibmsg, FibmsgBuilder};
use std::fmt::Write as _;

// include/uapi/linux/fib_rules.h
const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_IIFNAME: u16 = 3;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FRA_OIFNAME: u16 = 17;

/// One rule. On delete, unset fields match any rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Address family.
    pub family: Family,
    /// Priority (`None` on add: the kernel picks one below the last rule).
    pub priority: Option<u32>,
    /// Table to look up (required on add).
    pub table: Option<u32>,
    /// Source prefix (`from`).
    pub src: Option<IpNet>,
    /// Destination prefix (`to`).
    pub dst: Option<IpNet>,
    /// Incoming interface name (`iif`).
    pub iif: Option<String>,
    /// Outgoing interface name (`oif`).
    pub oif: Option<String>,
    /// Firewall mark (`fwmark`).
    pub mark: Option<u32>,
    /// Mask for `mark` (the kernel uses 0xffffffff when a mark comes without one).
    pub mask: Option<u32>,
}

impl RuleSpec {
    /// A rule of `family` with nothing set.
    pub fn new(family: Family) -> RuleSpec {
        RuleSpec {
            family,
            priority: None,
            table: None,
            src: None,
            dst: None,
            iif: None,
            oif: None,
            mark: None,
            mask: None,
        }
    }

    /// `prio 100 from 10.0.0.0/24 lookup 100` (for error messages).
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.family);
        if let Some(p) = self.priority {
            let _ = write!(s, " prio {p}");
        }
        if let Some(n) = self.src {
            let _ = write!(s, " from {n}");
        }
        if let Some(n) = self.dst {
            let _ = write!(s, " to {n}");
        }
        if let Some(i) = &self.iif {
            let _ = write!(s, " iif {i}");
        }
        if let Some(o) = &self.oif {
            let _ = write!(s, " oif {o}");
        }
        if let Some(m) = self.mark {
            let _ = write!(s, " fwmark {m:#x}");
        }
        if let Some(t) = self.table {
            let _ = write!(s, " lookup {t}");
        }
        s
    }
}

fn rule_msg(r: &RuleSpec) -> anyhow::Result<Fibmsg> {
    for net in [r.src, r.dst].into_iter().flatten() {
        ensure!(
            Family::of_net(&net) == r.family,
            "{net} is not an {:?} prefix",
            r.family
        );
    }
    let mut attrs: Vec<Attr<Frattr>> = Vec::new();
    if let Some(p) = r.priority {
        attrs.push(attr(Frattr::from(FRA_PRIORITY), p)?);
    }
    if let Some(t) = r.table {
        attrs.push(attr(Frattr::from(FRA_TABLE), t)?);
    }
    if let Some(n) = r.src {
        attrs.push(ip_attr(Frattr::from(FRA_SRC), n.network())?);
    }
    if let Some(n) = r.dst {
        attrs.push(ip_attr(Frattr::from(FRA_DST), n.network())?);
    }
    if let Some(i) = &r.iif {
        attrs.push(attr(Frattr::from(FRA_IIFNAME), i.as_str())?);
    }
    if let Some(o) = &r.oif {
        attrs.push(attr(Frattr::from(FRA_OIFNAME), o.as_str())?);
    }
    if let Some(m) = r.mark {
        attrs.push(attr(Frattr::from(FRA_FWMARK), m)?);
    }
    if let Some(m) = r.mask {
        attrs.push(attr(Frattr::from(FRA_FWMASK), m)?);
    }
    let table = r.table.unwrap_or(0);
    Ok(FibmsgBuilder::default()
        .fib_family(r.family.rt())
        .fib_dst_len(r.dst.map_or(0, |n| n.prefix_len()))
        .fib_src_len(r.src.map_or(0, |n| n.prefix_len()))
        .fib_tos(0)
        .fib_table(RtTable::from(
            u8::try_from(table).unwrap_or(libc::RT_TABLE_UNSPEC),
        ))
        .fib_action(if r.table.is_some() {
            FrAct::FrActToTbl
        } else {
            FrAct::Unspec
        })
        .rtattrs(attrs.into_iter().collect())
        .build()?)
}

fn parse_rule(b: &[u8]) -> anyhow::Result<Option<RuleSpec>> {
    let m: Fibmsg = parse(b)?;
    let Some(family) = Family::from_rt(*m.fib_family()) else {
        return Ok(None);
    };
    let a = m.rtattrs();
    let prefix = |t, len| -> anyhow::Result<Option<IpNet>> {
        match find(a, t).and_then(ip_of) {
            Some(ip) => Ok(Some(IpNet::new(ip, len).context("rule prefix length")?)),
            None => Ok(None),
        }
    };
    let header_table = u32::from(u8::from(*m.fib_table()));
    Ok(Some(RuleSpec {
        family,
        priority: Some(find(a, FRA_PRIORITY).and_then(u32_of).unwrap_or(0)),
        table: Some(find(a, FRA_TABLE).and_then(u32_of).unwrap_or(header_table)),
        src: prefix(FRA_SRC, *m.fib_src_len())?,
        dst: prefix(FRA_DST, *m.fib_dst_len())?,
        iif: find(a, FRA_IIFNAME).map(str_of),
        oif: find(a, FRA_OIFNAME).map(str_of),
        mark: find(a, FRA_FWMARK).and_then(u32_of),
        mask: find(a, FRA_FWMASK).and_then(u32_of),
    }))
}

impl Handle {
    /// Adds a rule (`CREATE|EXCL`: EEXIST if an identical one exists).
    pub fn add_rule(&self, r: &RuleSpec) -> anyhow::Result<()> {
        if r.table.is_none() {
            bail!("add rule {}: a table is required", r.describe());
        }
        self.request(
            &format!("add rule {}", r.describe()),
            Rtm::Newrule,
            NlmF::CREATE | NlmF::EXCL,
            rule_msg(r)?,
        )
    }

    /// Deletes the first rule matching `r` (ENOENT if none does).
    pub fn del_rule(&self, r: &RuleSpec) -> anyhow::Result<()> {
        self.request(
            &format!("delete rule {}", r.describe()),
            Rtm::Delrule,
            NlmF::empty(),
            rule_msg(r)?,
        )
    }

    /// Every rule of one family, the kernel's default ones included.
    pub fn rules(&self, family: Family) -> anyhow::Result<Vec<RuleSpec>> {
        // With strict checking a rule dump request must carry no attributes and a zero header.
        let req = || rule_msg(&RuleSpec::new(family));
        self.dump(
            &format!("list {family:?} rules"),
            Rtm::Getrule,
            req,
            parse_rule,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::is_exists;
    use crate::netlink::is_not_found;
    use crate::netlink::oracle::ip;
    use crate::testutil::fresh_netns;

    fn sbr_rule(family: Family, src: &str) -> RuleSpec {
        RuleSpec {
            priority: Some(1000),
            table: Some(100),
            src: Some(src.parse().unwrap()),
            ..RuleSpec::new(family)
        }
    }

    #[test]
    fn rule_message_bytes() {
        let r = RuleSpec {
            table: Some(1000),
            ..sbr_rule(Family::V4, "10.1.0.0/24")
        };
        let expected = [
            2, 0, 24, 0, 0, 0, 0, 1, 0, 0, 0,
            0, // fib_rule_hdr: AF_INET, dst/0, src/24, tos, table unspec, action to-tbl
            8, 0, 6, 0, 0xe8, 0x03, 0, 0, // FRA_PRIORITY 1000
            8, 0, 15, 0, 0xe8, 0x03, 0, 0, // FRA_TABLE 1000
            8, 0, 2, 0, 10, 1, 0, 0, // FRA_SRC 10.1.0.0
        ];
        assert_eq!(
            crate::netlink::attr::to_bytes(&rule_msg(&r).unwrap()).unwrap(),
            expected
        );
        assert!(rule_msg(&sbr_rule(Family::V6, "10.0.0.0/8")).is_err());
    }

    #[test]
    fn rules_v4_and_v6() {
        let Some(_ns) = fresh_netns("rules_v4_and_v6") else {
            return;
        };
        let h = Handle::new().unwrap();
        let v4 = RuleSpec {
            iif: Some("lo".into()),
            mark: Some(0x10),
            mask: Some(0xff),
            ..sbr_rule(Family::V4, "10.1.0.0/24")
        };
        let v6 = RuleSpec {
            oif: Some("lo".into()),
            table: Some(1000),
            ..sbr_rule(Family::V6, "fd00:22::5/128")
        };
        h.add_rule(&v4).unwrap();
        h.add_rule(&v6).unwrap();
        assert!(is_exists(&h.add_rule(&v4).unwrap_err()));
        assert!(h.add_rule(&RuleSpec::new(Family::V4)).is_err());

        let got4 = h.rules(Family::V4).unwrap();
        assert!(got4.contains(&v4), "{got4:?}");
        assert!(
            got4.iter()
                .any(|r| r.priority == Some(32766) && r.table == Some(254)),
            "main rule listed"
        );
        assert!(got4.iter().all(|r| r.family == Family::V4));
        assert!(h.rules(Family::V6).unwrap().contains(&v6));

        let j = ip(&["rule", "show"]);
        let j4 = j
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["priority"] == 1000)
            .expect("ip sees v4 rule");
        assert_eq!(
            (&j4["src"], &j4["srclen"], &j4["table"]),
            (&"10.1.0.0".into(), &24.into(), &"100".into())
        );
        assert_eq!(
            (&j4["iif"], &j4["fwmark"], &j4["fwmask"]),
            (&"lo".into(), &"0x10".into(), &"0xff".into())
        );
        let j = ip(&["-6", "rule", "show"]);
        let j6 = j
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["priority"] == 1000)
            .expect("ip sees v6 rule");
        assert_eq!(
            (&j6["src"], &j6["table"], &j6["oif"]),
            (&"fd00:22::5".into(), &"1000".into(), &"lo".into())
        );

        h.del_rule(&v4).unwrap();
        h.del_rule(&v6).unwrap();
        assert!(!h.rules(Family::V4).unwrap().contains(&v4));
        assert!(
            !h.rules(Family::V6)
                .unwrap()
                .iter()
                .any(|r| r.priority == Some(1000))
        );
        assert!(is_not_found(&h.del_rule(&v4).unwrap_err()));
    }
}
