//! `bridge`: attaches the container to a Linux bridge on the host through a veth pair, with
//! optional gateway addresses on the bridge, masquerading, VLANs, hairpin, port isolation and
//! a MAC spoof check. Mirrors the reference bridge plugin (FEATURES.md 6.1): same keys, same
//! result (`[bridge, host veth, container veth]`, `ips` pointing at the container veth), same
//! kernel objects and nftables layout.
//!
//! Beyond the reference (USER-ASKS rows 2, 3, 9, 20): DEL releases IPAM first, keeps going
//! past failures and removes masquerading even when the link is already gone; GC forwards to
//! IPAM and removes the masquerading of stale attachments; CHECK runs IPAM CHECK only when
//! there is IPAM (an L2-only bridge passes) and also checks the masquerade rules; DEL removes
//! the `<bridge>.<vlan>` gateway interface once no port carries its VLAN (USER-ASKS row 11;
//! the reference never does). The bridge itself is left in place, as in the reference.

use crate::doctor::{Need, Probe};
use crate::error::bad_config;
use crate::exec::delegate;
use crate::ipam::configure::configure_iface;
use crate::keys::{Key, key};
use crate::netfilter::nftables::Nft;
use crate::netfilter::spoofcheck::{self, SpoofCheck};
use crate::netlink::{self, Family, Handle, Link, LinkKind, LinkSpec};
use crate::netns::Netns;
use crate::podnet::{self, check};
use crate::rollback::Rollback;
use crate::skel::{CmdArgs, Command, Plugin};
use crate::sysctl;
use crate::types::{CniResult, Interface, NetConf, Route};
use crate::veth::{VethRequest, setup_veth};
use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// The applet.
pub struct Bridge;

/// The bridge plugin's configuration.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    vlan: i64,
    #[serde(default)]
    vlan_trunk: Option<Vec<port::VlanTrunk>>,
    #[serde(default)]
    preserve_default_vlan: bool,
    #[serde(default, rename = "macspoofchk")]
    mac_spoof_chk: bool,
    #[serde(default, rename = "enabledad")]
    enable_dad: bool,
    #[serde(default)]
    disable_container_interface: bool,
    #[serde(default)]
    port_isolation: bool,
    /// `vlanTrunk` flattened: sorted, unique ids.
    #[serde(skip)]
    trunk: Vec<u16>,
}

/// What DEL reads: only the keys it acts on, so a config ADD refuses (a bad bridge name or
/// VLAN) still releases IPAM and removes what an earlier config made.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelConfig {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default, rename = "macspoofchk")]
    mac_spoof_chk: bool,
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    vlan: i64,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
}

fn default_bridge() -> String {
    "cni0".into()
}

/// Its configuration keys, one line each, for `--help`; a test holds this table equal to what
/// the parser reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("bridge", r#""cni0""#, "the host bridge to attach to; made if missing (default cni0)"),
    key("isGateway", "true", "give the bridge the gateway address; the container routes via it"),
    key("isDefaultGateway", "true", "isGateway, and a default route via the bridge"),
    key("forceAddress", "true", "replace a bridge address of the same family that differs"),
    key("ipMasq", "true", "masquerade traffic leaving the container's subnet"),
    key("ipMasqBackend", r#""nftables""#, "iptables or nftables (default: iptables unless only nftables works)"),
    key("mtu", "1500", "MTU of the veth pair (default: the kernel's)"),
    key("hairpinMode", "true", "let traffic leave and re-enter the same bridge port"),
    key("promiscMode", "true", "put the bridge in promiscuous mode"),
    key("vlan", "100", "VLAN id of the container's port (untagged)"),
    key("vlanTrunk", r#"[{"id":101},{"minID":200,"maxID":210}]"#, "tagged VLANs on the container's port"),
    key("preserveDefaultVlan", "true", "keep VLAN 1 on the port when vlan or vlanTrunk is set"),
    key("macspoofchk", "true", "drop frames from the container with another source MAC (nftables)"),
    key("enabledad", "true", "run duplicate address detection on the container interface"),
    key("disableContainerInterface", "true", "leave the container interface down"),
    key("portIsolation", "true", "isolate the port from the bridge's other isolated ports"),
];

/// What the node must offer, for `cni-multi doctor`.
const NEEDS: &[Need] = &[
    Need::always(Probe::Link("veth")),
    Need::always(Probe::Link("bridge")),
    Need::when("ipMasq", Probe::Netfilter),
    Need::when("macspoofchk", Probe::NfTables),
];

impl Plugin for Bridge {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn needs(&self) -> &'static [Need] {
        NEEDS
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        conf.check_add()?;
        let mac = podnet::container_mac(&conf.net, args)?;
        let ns = args.open_netns()?;
        let (host, cont) = (Handle::new()?, Handle::in_netns(&ns)?);
        let mut rb = Rollback::new();
        let br = ensure_bridge(&host, &conf)?;
        let pair = add_port(&host, &cont, &ns, &conf, &br, args, mac, &mut rb)?;
        if conf.mac_spoof_chk {
            add_spoof_check(args, &pair.host.name, &pair.container, &mut rb)?;
        }
        let mut result = base_result(&br, &pair.host, &pair.container, args);
        if let Some(ipam) = podnet::ipam_type(&conf.net) {
            let sides = Sides {
                host: &host,
                cont: &cont,
                ns: &ns,
            };
            add_layer3(ipam, args, &conf, &sides, &br, &mut result, &mut rb)?;
        } else if !conf.disable_container_interface {
            cont.set_up(pair.container.index)
                .with_context(|| format!("failed to set {} up", args.ifname))?;
        }
        if !conf.disable_container_interface {
            wait_port_up(&host, &pair.host)?;
        }
        refresh_macs(&host, &mut result, br.index, pair.host.index)?;
        podnet::override_dns(&mut result, &conf.net.dns);
        rb.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let conf: DelConfig = args.config()?;
        let mut errors = crate::error::ErrorList::new();
        errors.note(podnet::release_ipam(args, &conf.net));
        let (link, firewall) = podnet::remove_container_link_with(args, |link_nets| {
            let mut errors = crate::error::ErrorList::new();
            if conf.mac_spoof_chk {
                let sc = spoof_check(args);
                let removed = Nft::new().and_then(|mut nft| spoofcheck::teardown(&mut nft, &sc));
                // Without nf_tables here there is no spoof check to remove.
                if removed.is_err() && Nft::usable() {
                    errors.note(removed);
                }
            }
            if conf.ip_masq && podnet::ipam_type(&conf.net).is_some() {
                errors.note(podnet::teardown_masq(&conf.net, args, link_nets));
            }
            errors.finish()
        });
        errors.note(link);
        errors.note(firewall);
        let gateway = conf.is_gateway || conf.is_default_gateway;
        errors.note(port::release_vlan_gateway(&conf.bridge, conf.vlan, gateway));
        errors.finish()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let ns = args.open_netns()?;
        if let Some(ipam) = podnet::ipam_type(&conf.net) {
            delegate(Command::Check, ipam, args)?;
        }
        let prev = check::prev_result(&conf.net, "bridge")?;
        let host = Handle::new()?;
        let br = validate_bridge(&host, &prev, &conf)?;
        let cont = Handle::in_netns(&ns)?;
        let cont_link =
            check::validate_container_veth(&cont, check::container_interface(&prev, args)?)?;
        validate_host_veth(&host, &prev, &conf, &br, &cont_link)?;
        check::validate_interface_ips(&cont, &args.ifname, &prev.ips)?;
        check::validate_routes(&cont, &prev.routes)?;
        if conf.ip_masq && podnet::ipam_type(&conf.net).is_some() {
            let nets = podnet::result_nets(&prev);
            podnet::check_masq(conf.ip_masq_backend.as_deref(), &conf.net, args, &nets)?;
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        podnet::gc(args, &Config::load(args)?.net)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        podnet::status(args, &Config::load(args)?.net)
    }
}

impl Config {
    /// Decodes stdin and checks the keys every verb relies on.
    fn load(args: &CmdArgs) -> Result<Config> {
        let mut c: Config = args.config()?;
        if !(0..=4094).contains(&c.vlan) {
            return Err(bad_config(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                c.vlan
            )));
        }
        c.trunk = port::collect_vlan_trunk(c.vlan_trunk.as_deref().unwrap_or_default())?;
        if !netlink::kinds::valid_ifname(&c.bridge) {
            return Err(bad_config(format!("invalid bridge name {:?}", c.bridge)));
        }
        Ok(c)
    }

    /// The combinations ADD refuses.
    fn check_add(&self) -> Result<()> {
        if podnet::ipam_type(&self.net).is_some() && self.disable_container_interface {
            return Err(bad_config(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        if self.hairpin_mode && self.promisc_mode {
            return Err(bad_config(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        Ok(())
    }

    /// `isDefaultGateway` implies `isGateway`.
    fn is_gateway(&self) -> bool {
        self.is_gateway || self.is_default_gateway
    }

    /// VLAN filtering is needed when a VLAN or a trunk is configured.
    fn vlan_filtering(&self) -> bool {
        self.vlan != 0 || self.vlan_trunk.is_some()
    }
}

/// Creates the bridge unless it exists (EEXIST from a concurrent ADD is fine), checks that it
/// is a bridge, sets promiscuous mode if asked, stops it accepting RAs and sets it up.
fn ensure_bridge(host: &Handle, conf: &Config) -> Result<Link> {
    let name = &conf.bridge;
    if host.link_by_name(name)?.is_none() {
        let kind = LinkKind::Bridge {
            vlan_filtering: conf.vlan_filtering().then_some(true),
            vlan_default_pvid: None,
            mcast_snooping: None,
        };
        let spec = LinkSpec {
            mtu: (conf.mtu != 0).then_some(conf.mtu),
            ..LinkSpec::new(name.as_str(), kind)
        };
        match host.create_link(&spec) {
            Err(e) if netlink::is_exists(&e) => {}
            r => r
                .map_err(port::vlan_hint)
                .with_context(|| format!("failed to create bridge {name:?}"))?,
        }
    }
    let br = host
        .link_by_name(name)?
        .with_context(|| format!("bridge {name:?} vanished after creation"))?;
    if br.kind != "bridge" {
        bail!("{name:?} already exists but is not a bridge");
    }
    if conf.promisc_mode {
        host.set_promisc(br.index, true)
            .with_context(|| format!("could not set promiscuous mode on {name:?}"))?;
    }
    // We own the routes of this interface. Best effort: IPv6 may be off on the host.
    let _ = sysctl::write(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
    host.set_up(br.index)
        .with_context(|| format!("failed to set bridge {name:?} up"))?;
    Ok(br)
}

/// Creates the veth pair and makes its host end a port of the bridge; pushes the pair's
/// removal onto `rb`.
#[allow(clippy::too_many_arguments)]
fn add_port<'a>(
    host: &'a Handle,
    cont: &Handle,
    ns: &Netns,
    conf: &Config,
    br: &Link,
    args: &CmdArgs,
    mac: Option<[u8; 6]>,
    rb: &mut Rollback<'a>,
) -> Result<crate::veth::VethPair> {
    let req = VethRequest {
        ifname: &args.ifname,
        host_name: None,
        mtu: conf.mtu,
        container_mac: mac,
    };
    let pair = setup_veth(host, cont, ns, &req)?;
    let index = pair.host.index;
    rb.push(format!("delete veth {}", pair.host.name), move || {
        host.delete_link(index)
    });
    let vlan = u16::try_from(conf.vlan).expect("checked at load");
    let opts = port::PortOpts {
        hairpin: conf.hairpin_mode,
        isolated: conf.port_isolation,
        vlan,
        trunk: &conf.trunk,
        preserve_default_vlan: conf.preserve_default_vlan,
    };
    port::join_bridge(host, br, &pair.host, &opts)?;
    Ok(pair)
}

fn spoof_check(args: &CmdArgs) -> SpoofCheck<'_> {
    SpoofCheck {
        container_id: &args.container_id,
        ifname: &args.ifname,
    }
}

/// Lets only the container's MAC into the bridge from its port; pushes the removal.
fn add_spoof_check<'a>(
    args: &'a CmdArgs,
    host_veth: &str,
    container: &Link,
    rb: &mut Rollback<'a>,
) -> Result<()> {
    let mac = container.mac.context("container veth has no MAC address")?;
    let mut nft = Nft::new()?;
    spoofcheck::setup(&mut nft, &spoof_check(args), host_veth, &mac)?;
    rb.push("remove spoof check", move || {
        spoofcheck::teardown(&mut Nft::new()?, &spoof_check(args))
    });
    Ok(())
}

/// The L2 result: bridge, host veth, container veth.
fn base_result(br: &Link, host: &Link, cont: &Link, args: &CmdArgs) -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: br.name.clone(),
                mac: br.mac_string(),
                ..Default::default()
            },
            Interface {
                name: host.name.clone(),
                mac: host.mac_string(),
                ..Default::default()
            },
            Interface {
                name: cont.name.clone(),
                mac: cont.mac_string(),
                sandbox: args.netns.clone(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// Index of the container veth in the result's interfaces.
const CONTAINER_IFACE: usize = 2;

/// Takes IPAM's addresses, routes and DNS into `result` (`calcGateways`): every address
/// belongs to the container veth; with `isGateway` a missing gateway is the subnet's first
/// address; with `isDefaultGateway` each family gets a default route via its gateway unless
/// IPAM gave one. Returns the gateway addresses (with the subnet's prefix) for the bridge;
/// a gateway of the other family than its address is a config error.
fn apply_ipam(result: &mut CniResult, ipam: CniResult, conf: &Config) -> Result<Vec<IpNet>> {
    result.ips = ipam.ips;
    result.routes = ipam.routes;
    result.dns = ipam.dns;
    let mut gateways = Vec::new();
    let mut default_done = [false, false];
    for ip in &mut result.ips {
        ip.interface = Some(CONTAINER_IFACE);
        if ip.gateway.is_none() && conf.is_gateway() {
            ip.gateway = Some(first_host(&ip.address));
        }
        let family = usize::from(ip.address.addr().is_ipv6());
        if conf.is_default_gateway && !default_done[family] {
            let default = IpNet::new(unspecified(&ip.address), 0).expect("prefix 0");
            let present = result
                .routes
                .iter()
                .any(|r| r.dst == default && r.gw.is_some());
            if !present {
                result.routes.push(Route::new(default, ip.gateway));
            }
            default_done[family] = true;
        }
        if let (true, Some(gw)) = (conf.is_gateway(), ip.gateway) {
            let gw = IpNet::new(gw, ip.address.prefix_len()).map_err(|_| {
                bad_config(format!(
                    "gateway {gw} is not of the family of {}",
                    ip.address
                ))
            })?;
            gateways.push(gw);
        }
    }
    Ok(gateways)
}

/// The host and the container, as the ADD steps reach them.
struct Sides<'a> {
    host: &'a Handle,
    cont: &'a Handle,
    ns: &'a Netns,
}

/// The L3 part of ADD: IPAM (released again on a later failure), addresses and routes in the
/// container, gateways on the bridge, masquerading (removed again on a later failure).
fn add_layer3<'a>(
    ipam: &'a str,
    args: &'a CmdArgs,
    conf: &'a Config,
    sides: &Sides<'_>,
    br: &Link,
    result: &mut CniResult,
    rb: &mut Rollback<'a>,
) -> Result<()> {
    let ipam_result = podnet::ipam_add(args, ipam, rb)?;
    let gateways = apply_ipam(result, ipam_result, conf)?;
    container_sysctls(sides.ns, &args.ifname, conf.enable_dad);
    configure_iface(sides.cont, sides.ns, &args.ifname, result)?;
    if conf.is_gateway() {
        add_gateways(sides.host, br, &gateways, conf, result)?;
    }
    if conf.ip_masq {
        let backend = conf.ip_masq_backend.as_deref();
        podnet::setup_masq(backend, &conf.net, args, podnet::result_nets(result), rb)?;
    }
    Ok(())
}

/// The subnet's network address + 1 (`calcGatewayIP`).
fn first_host(net: &IpNet) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => std::net::Ipv4Addr::from(u32::from(a).wrapping_add(1)).into(),
        IpAddr::V6(a) => std::net::Ipv6Addr::from(u128::from(a).wrapping_add(1)).into(),
    }
}

fn unspecified(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(_) => IpAddr::from([0u8; 4]),
        IpNet::V6(_) => IpAddr::from([0u8; 16]),
    }
}

/// Best effort, as the reference: DAD off unless `enabledad`, gratuitous ARP on up.
fn container_sysctls(ns: &Netns, ifname: &str, enable_dad: bool) {
    let _ = ns.run(|| {
        if enable_dad {
            let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/enhanced_dad"), "1");
            let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_dad"), "1");
        } else {
            let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
        }
        let _ = sysctl::write(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
    });
}

/// `isGateway`: the gateway addresses go on the bridge (or on the `<bridge>.<vlan>` gateway
/// interface when `vlan` is set), the bridge MAC is pinned, forwarding is turned on.
fn add_gateways(
    host: &Handle,
    br: &Link,
    gateways: &[IpNet],
    conf: &Config,
    result: &mut CniResult,
) -> Result<()> {
    if gateways.is_empty() {
        return Ok(());
    }
    let target = if conf.vlan != 0 {
        let vlan = u16::try_from(conf.vlan).expect("checked at load");
        let gw_if = port::ensure_vlan_interface(host, br, vlan, conf.preserve_default_vlan)?;
        result.interfaces.push(Interface {
            name: gw_if.name.clone(),
            mac: gw_if.mac_string(),
            ..Default::default()
        });
        gw_if
    } else {
        br.clone()
    };
    for gw in gateways {
        ensure_addr(host, &target, gw, conf.force_address)?;
    }
    pin_mac(host, br)?;
    podnet::enable_forwarding(gateways.iter().map(IpNet::addr))
        .context("failed to enable forwarding")
}

/// Sets the bridge's MAC to itself, as read before the port joined; otherwise it takes the
/// lowest MAC of its ports and changes as they come and go. A bridge whose last port left
/// reads as all zeros (which cannot be set): then its current MAC is pinned.
fn pin_mac(host: &Handle, br: &Link) -> Result<()> {
    let mac = match br.mac.filter(|m| m != &[0; 6]) {
        Some(m) => Some(m),
        None => host.link_by_index(br.index)?.and_then(|l| l.mac),
    };
    match mac {
        Some(m) => host
            .set_mac(br.index, m)
            .context("could not set bridge's mac"),
        None => Ok(()),
    }
}

/// Puts `gw` on `link` unless it is there. Another IPv4 address, or an overlapping IPv6
/// one, is an error, or is removed with `forceAddress`.
fn ensure_addr(host: &Handle, link: &Link, gw: &IpNet, force: bool) -> Result<()> {
    let name = &link.name;
    for a in host.addresses(Some(link.index), Some(Family::of_net(gw)))? {
        if a.addr == *gw {
            return Ok(());
        }
        let clash =
            gw.addr().is_ipv4() || a.addr.contains(&gw.addr()) || gw.contains(&a.addr.addr());
        if !clash || a.scope != 0 {
            continue;
        }
        if !force {
            bail!("{name:?} already has an IP address different from {gw}");
        }
        host.del_address(link.index, a.addr)
            .with_context(|| format!("could not remove IP address from {name:?}"))?;
    }
    match host.add_address(link.index, *gw, false) {
        Err(e) if netlink::is_exists(&e) => Ok(()),
        r => r.with_context(|| format!("could not add IP address {gw} to {name:?}")),
    }
}

/// Waits until the host veth is operationally up (a bridge port ready to forward); polls
/// quickly at first, giving up after about as long as the reference (2.55 s).
fn wait_port_up(host: &Handle, port: &Link) -> Result<()> {
    const SLEEPS_MS: [u64; 11] = [0, 1, 2, 5, 10, 20, 50, 100, 350, 1000, 1000];
    let mut state = port.operstate;
    for ms in SLEEPS_MS {
        std::thread::sleep(Duration::from_millis(ms));
        let l = host
            .link_by_index(port.index)?
            .with_context(|| format!("host veth {} vanished", port.name))?;
        state = l.operstate;
        if state == IF_OPER_UP {
            return Ok(());
        }
    }
    bail!("bridge port in error state: {}", operstate_name(state))
}

const IF_OPER_UP: u8 = 6;

/// RFC 2863 state names, as vishvananda/netlink prints them.
fn operstate_name(s: u8) -> &'static str {
    match s {
        1 => "not-present",
        2 => "down",
        3 => "lower-layer-down",
        4 => "testing",
        5 => "dormant",
        6 => "up",
        _ => "unknown",
    }
}

/// The bridge's and the host veth's MACs may have changed since they were read.
fn refresh_macs(host: &Handle, result: &mut CniResult, br: u32, port: u32) -> Result<()> {
    for (i, index) in [(0, br), (1, port)] {
        if let Some(l) = host.link_by_index(index)? {
            result.interfaces[i].mac = l.mac_string();
        }
    }
    Ok(())
}

/// CHECK: the bridge named in the config is in `prev`, is a bridge with the listed MAC and
/// the configured promiscuous mode.
fn validate_bridge(host: &Handle, prev: &CniResult, conf: &Config) -> Result<Link> {
    let name = &conf.bridge;
    let Some(iface) = prev.interfaces.iter().find(|i| &i.name == name) else {
        bail!("CNI created bridge {name} in host namespace was not found");
    };
    if !iface.sandbox.is_empty() {
        bail!("Interface {name} should not be in sandbox");
    }
    let Some(link) = host.link_by_name(name)? else {
        bail!("Interface name {name} not found");
    };
    if link.kind != "bridge" {
        bail!("Interface {name} does not have link type of bridge");
    }
    check::check_mac(&link, iface)?;
    if link.is_promisc() != conf.promisc_mode {
        bail!(
            "Bridge interface {name} configured Promisc Mode {} doesn't match current state: {}",
            conf.promisc_mode,
            link.is_promisc()
        );
    }
    Ok(link)
}

/// CHECK: one of `prev`'s host interfaces is a veth whose peer is the container veth and whose
/// master is the bridge.
fn validate_host_veth(
    host: &Handle,
    prev: &CniResult,
    conf: &Config,
    br: &Link,
    cont: &Link,
) -> Result<()> {
    for iface in prev
        .interfaces
        .iter()
        .filter(|i| i.name != conf.bridge && i.sandbox.is_empty())
    {
        let Some(link) = host.link_by_name(&iface.name)? else {
            continue;
        };
        let is_ours = link.kind == "veth"
            && link.link == Some(cont.index)
            && cont.link == Some(link.index)
            && link.master == Some(br.index);
        if is_ours {
            return check::check_mac(&link, iface);
        }
    }
    bail!("CNI veth created for bridge {} was not found", conf.bridge)
}

#[path = "bridge_port.rs"]
mod port;

#[cfg(test)]
#[path = "bridge_tests.rs"]
mod tests;
