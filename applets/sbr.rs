//! `sbr`: source-based routing in the container, mirroring the reference meta plugin
//! `plugins/meta/sbr` (FEATURES.md 6.16). For each address of `CNI_IFNAME` in `prevResult`:
//! a rule `from <ip>/32|128 lookup T` with T the first table from 100 that no rule or route
//! uses, a default route via the address's gateway (or the configured `gateways` entry of its
//! family) in T, and a copy in T of the interface's main-table routes whose source or gateway
//! lies in the address's subnet or that have neither. Then the interface's main-table routes
//! are deleted (with `addSourceHints`: the subnet routes get a `src` hint instead and only
//! routes that are not link-scope are deleted). With `table` set, only the rules are added,
//! pointing at that table. Everything runs under an flock of the netns file.
//!
//! DEL deletes the rules (of `table`, or of any table) whose source is an address still on
//! the interface, and, without `table`, the interface's routes in those rules' tables.
//! Beyond the reference: DEL succeeds when the netns or the interface is gone (the reference
//! fails on a missing netns, and its lock may create a file at the netns path); CHECK verifies
//! the rules are there (the reference's CHECK does nothing); a failed ADD removes the rules
//! and table routes it made and puts back the main-table routes it deleted.

use crate::error::{ErrorList, bad_config};
use crate::keys::{Key, key};
use crate::netlink::{Family, Handle, RouteSpec, RuleSpec, is_not_found};
use crate::netns::Netns;
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, IpConfig, NetConf};
use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fs::File;
use std::net::IpAddr;

/// The applet.
pub struct Sbr;

/// The first table ID tried.
const FIRST_TABLE: u32 = 100;
const RT_SCOPE_LINK: u8 = 253;

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    table: Option<u32>,
    #[serde(default)]
    gateways: Vec<String>,
    #[serde(default)]
    add_source_hints: bool,
}

/// The static gateways, at most one per family.
#[derive(Debug, Default, PartialEq, Eq)]
struct Gateways {
    v4: Option<IpAddr>,
    v6: Option<IpAddr>,
}

impl Gateways {
    fn parse(list: &[String]) -> Result<Gateways> {
        if list.len() > 2 {
            return Err(bad_config(
                "gateways list cannot contain more than 2 entries (one IPv4, one IPv6)",
            ));
        }
        let mut g = Gateways::default();
        for s in list {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| bad_config(format!("invalid static gateway IP address: {s}")))?;
            let slot = if ip.is_ipv4() { &mut g.v4 } else { &mut g.v6 };
            if let Some(first) = slot {
                return Err(bad_config(format!(
                    "gateways list contains two addresses of one family: {first} and {ip}"
                )));
            }
            *slot = Some(ip);
        }
        Ok(g)
    }

    fn for_addr(&self, ip: &IpConfig) -> Option<IpAddr> {
        let fixed = if ip.address.addr().is_ipv4() {
            self.v4
        } else {
            self.v6
        };
        fixed.or(ip.gateway)
    }
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("table", "200", "only add rules, pointing at this table (default: a free table from 100 per address)"),
    key("gateways", r#"["192.168.1.1","fd00::1"]"#, "default gateways of the tables, one per family (default: the addresses' own)"),
    key("addSourceHints", "true", "give subnet routes a src hint instead of deleting them"),
];

impl Plugin for Sbr {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf: Config = args.config()?;
        let gateways = Gateways::parse(&conf.gateways)?;
        let prev = conf
            .net
            .prev_result()?
            .ok_or_else(|| bad_config("This plugin must be called as chained plugin"))?;
        let ips = addresses_of(&prev, &args.ifname)?;
        let ns = args.open_netns()?;
        let _lock = lock(&ns)?;
        let nl = Handle::in_netns(&ns)?;
        let mut rb = Rollback::new();
        match conf.table {
            Some(t) => add_rules(&nl, &ips, t, &mut rb),
            None => {
                let hints = conf.add_source_hints;
                route_by_source(&nl, &args.ifname, &ips, &gateways, hints, &mut rb)
            }
        }?;
        rb.commit();
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf: Config = args.config()?;
        let Some(ns) = args.netns_if_present()? else {
            return Ok(());
        };
        let _lock = lock(&ns)?;
        let nl = Handle::in_netns(&ns)?;
        tidy(&nl, &args.ifname, conf.table)
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf: Config = args.config()?;
        let Some(prev) = conf.net.prev_result()? else {
            return Ok(());
        };
        let ips = addresses_of(&prev, &args.ifname)?;
        let nl = Handle::in_netns(&args.open_netns()?)?;
        for ip in &ips {
            let src = IpNet::from(ip.address.addr());
            let rules = nl.rules(Family::of_net(&src))?;
            let found = rules
                .iter()
                .any(|r| r.src == Some(src) && conf.table.is_none_or(|t| r.table == Some(t)));
            if !found {
                bail!("no source rule for {src}");
            }
        }
        Ok(())
    }
}

/// The addresses of `ifname` in `prev` (those without an interface index count).
fn addresses_of(prev: &CniResult, ifname: &str) -> Result<Vec<IpConfig>> {
    if prev.ips.is_empty() {
        return Err(bad_config(format!(
            "No IP addresses supplied on interface: {ifname}"
        )));
    }
    Ok(prev
        .ips
        .iter()
        .filter(|ip| {
            ip.interface
                .and_then(|i| prev.interfaces.get(i))
                .is_none_or(|i| i.name == ifname)
        })
        .cloned()
        .collect())
}

/// An exclusive flock on the netns file (opened read-only: nothing is ever created there).
fn lock(ns: &Netns) -> Result<Flock<File>> {
    let file = File::open(ns.path()).with_context(|| format!("open {}", ns.path().display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("lock {}", ns.path().display()))
}

fn source_rule(ip: &IpConfig, table: u32) -> RuleSpec {
    let src = IpNet::from(ip.address.addr());
    let mut r = RuleSpec::new(Family::of_net(&src));
    r.src = Some(src);
    r.table = Some(table);
    r
}

fn add_rules<'a>(
    nl: &'a Handle,
    ips: &[IpConfig],
    table: u32,
    rb: &mut Rollback<'a>,
) -> Result<()> {
    for ip in ips {
        add_rule(nl, source_rule(ip, table), rb)?;
    }
    Ok(())
}

/// Adds `rule`, undone by the rollback.
fn add_rule<'a>(nl: &'a Handle, rule: RuleSpec, rb: &mut Rollback<'a>) -> Result<()> {
    nl.add_rule(&rule).context("failed to add rule")?;
    rb.push("source rule", move || nl.del_rule(&rule));
    Ok(())
}

/// Adds or replaces `route`, deleted by the rollback (it lives in a table of ours).
fn put_route<'a>(nl: &'a Handle, route: RouteSpec, rb: &mut Rollback<'a>) -> Result<()> {
    nl.replace_route(&route)
        .with_context(|| format!("failed to add route {}", route.describe()))?;
    rb.push("table route", move || nl.del_route(&route));
    Ok(())
}

/// Every table a rule or a route of either family uses.
fn used_tables(nl: &Handle) -> Result<BTreeSet<u32>> {
    let mut used = BTreeSet::new();
    for family in [Family::V4, Family::V6] {
        used.extend(nl.rules(family)?.iter().filter_map(|r| r.table));
        used.extend(nl.routes(family, None)?.iter().map(RouteSpec::table_id));
    }
    Ok(used)
}

/// The first table from `from` on that is not in `used`.
fn next_free(used: &BTreeSet<u32>, from: u32) -> u32 {
    (from..).find(|t| !used.contains(t)).expect("a free table")
}

/// The main-table routes of the link `index`, both families.
fn main_routes(nl: &Handle, index: u32) -> Result<Vec<RouteSpec>> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        let main = nl.routes(family, Some(libc::RT_TABLE_MAIN as u32))?;
        out.extend(main.into_iter().filter(|r| r.oif == Some(index)));
    }
    Ok(out)
}

fn route_by_source<'a>(
    nl: &'a Handle,
    ifname: &str,
    ips: &[IpConfig],
    gateways: &Gateways,
    hints: bool,
    rb: &mut Rollback<'a>,
) -> Result<()> {
    let used = used_tables(nl)?;
    let link = nl
        .link_by_name(ifname)?
        .with_context(|| format!("Cannot find network interface {ifname}"))?;
    let routes = main_routes(nl, link.index)?;
    let mut table = next_free(&used, FIRST_TABLE);
    for ip in ips {
        add_rule(nl, source_rule(ip, table), rb)?;
        if let Some(gw) = gateways.for_addr(ip) {
            let any = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            let mut r = RouteSpec::new(any.parse().expect("literal"));
            (r.gw, r.oif, r.table) = (Some(gw), Some(link.index), Some(table));
            put_route(nl, r, rb)?;
        }
        for r in routes.iter().filter(|r| belongs_to(r, &ip.address)) {
            let mut copy = r.clone();
            (copy.table, copy.onlink) = (Some(table), false);
            put_route(nl, copy, rb)?;
        }
        table = next_free(&used, table + 1);
    }
    if hints {
        return source_hints(nl, link.index, ips, &routes);
    }
    for r in routes {
        nl.del_route(&r).context("failed to delete route")?;
        rb.push("main route", move || nl.add_route(&r));
    }
    Ok(())
}

/// The reference's copy test: the route's source or gateway is in `subnet`, or it has neither.
fn belongs_to(r: &RouteSpec, subnet: &IpNet) -> bool {
    match (r.src, r.gw) {
        (None, None) => true,
        (src, gw) => {
            src.is_some_and(|s| subnet.contains(&s)) || gw.is_some_and(|g| subnet.contains(&g))
        }
    }
}

/// `addSourceHints`: subnet routes with a `src` hint in main, non-link routes deleted; both
/// best effort, as in the reference.
fn source_hints(nl: &Handle, index: u32, ips: &[IpConfig], routes: &[RouteSpec]) -> Result<()> {
    for ip in ips {
        let mut r = RouteSpec::new(ip.address.trunc());
        (r.oif, r.src, r.scope) = (Some(index), Some(ip.address.addr()), Some(RT_SCOPE_LINK));
        if let Err(e) = nl.replace_route(&r) {
            eprintln!("sbr: warning: subnet route with source hint: {e:#}");
        }
    }
    for r in routes.iter().filter(|r| r.scope != Some(RT_SCOPE_LINK)) {
        if let Err(e) = nl.del_route(r) {
            eprintln!("sbr: warning: delete route: {e:#}");
        }
    }
    Ok(())
}

/// DEL: the rules whose source is on `ifname`, and their tables' routes via it.
fn tidy(nl: &Handle, ifname: &str, table: Option<u32>) -> Result<()> {
    let Some(link) = nl.link_by_name(ifname)? else {
        return Ok(());
    };
    let addrs: Vec<IpAddr> = nl
        .addresses(Some(link.index), None)?
        .iter()
        .map(|a| a.addr.addr())
        .collect();
    let mut errors = ErrorList::new();
    let mut tables = BTreeSet::new();
    for family in [Family::V4, Family::V6] {
        let rules = errors.note(nl.rules(family)).unwrap_or_default();
        for r in rules {
            let mine = r.src.is_some_and(|s| addrs.contains(&s.addr()));
            if !mine || table.is_some_and(|t| r.table != Some(t)) {
                continue;
            }
            tables.extend(r.table);
            errors.note(ignore_missing(nl.del_rule(&r)));
        }
    }
    if table.is_none() {
        for t in tables {
            for family in [Family::V4, Family::V6] {
                // A table without routes of this family does not exist for the kernel.
                let listed = match nl.routes(family, Some(t)) {
                    Err(e) if is_not_found(&e) => Ok(Vec::new()),
                    r => r,
                };
                let routes = errors.note(listed).unwrap_or_default();
                for r in routes.iter().filter(|r| r.oif == Some(link.index)) {
                    errors.note(ignore_missing(nl.del_route(r)));
                }
            }
        }
    }
    errors.finish()
}

fn ignore_missing(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if is_not_found(&e) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_one_per_family() {
        let g = Gateways::parse(&["10.0.0.1".into(), "fd00::1".into()]).unwrap();
        assert_eq!(g.v4, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(g.v6, Some("fd00::1".parse().unwrap()));
        for bad in [
            vec!["10.0.0.1".to_string(), "10.0.0.2".into()],
            vec!["x".into()],
            vec!["10.0.0.1".into(), "fd00::1".into(), "fd00::2".into()],
        ] {
            let e = Gateways::parse(&bad).unwrap_err();
            assert_eq!(crate::error::code_of(&e), 7, "{bad:?}");
        }
    }

    #[test]
    fn table_choice_skips_used() {
        let used: BTreeSet<u32> = [100, 101, 103, 254, 255].into();
        assert_eq!(next_free(&used, FIRST_TABLE), 102);
        assert_eq!(next_free(&used, 103), 104);
    }

    #[test]
    fn routes_copied_by_source_gateway_or_neither() {
        let subnet: IpNet = "10.0.0.2/24".parse().unwrap();
        let mut r = RouteSpec::new("192.168.0.0/16".parse().unwrap());
        assert!(belongs_to(&r, &subnet));
        r.gw = Some("10.0.0.1".parse().unwrap());
        assert!(belongs_to(&r, &subnet));
        r.gw = Some("10.9.0.1".parse().unwrap());
        assert!(!belongs_to(&r, &subnet));
        r.src = Some("10.0.0.2".parse().unwrap());
        assert!(belongs_to(&r, &subnet));
    }

    #[test]
    fn help_lists_every_config_key() {
        crate::keys::assert_struct_keys::<Config>(KEYS);
    }
}
