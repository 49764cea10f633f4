//! `dhcp` IPAM: the plugin side asks the `dhcp daemon` (same applet, argument `daemon`) for a
//! lease over its unix socket and turns it into a result, as the reference's
//! `plugins/ipam/dhcp` (FEATURES.md 6.12). Keys: `ipam.daemonSocketPath`, `request`,
//! `provide`, `priority`. Differences on purpose (USER-ASKS row 8): DEL succeeds when the
//! daemon is unreachable, CHECK only reads the daemon's lease, STATUS answers code 50 when the
//! daemon is not there, and option 121 (and 33) are requested by default. Ours too: a DHCPv6
//! IA_NA lease alongside the DHCPv4 one whenever the link's routers advertise DHCPv6 (RA with
//! the M flag; `ipv6: true` always, `ipv6: false` never; `ipv4: false` for a v6-only link),
//! given `ipv6PrefixLength` (default 64), since DHCPv6 carries no prefix.
//! The daemon, the protocol and the DHCP client live in `src/dhcp/`.

use crate::dhcp::client::Lease;
use crate::dhcp::{self, CallError, Request, Target};
use crate::error::{CniError, bad_config, code};
use crate::ipam::config::ipam_section;
use crate::keys::{Key, key};
use crate::skel::{CmdArgs, Plugin};
use crate::types::{CniResult, IpConfig, NetConf, Route};
use anyhow::Context;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::Value;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

/// The dhcp applet (plugin side).
pub struct Dhcp;

/// `dhcp daemon [flags]`.
pub fn daemon_main(args: &[OsString]) -> ExitCode {
    dhcp::daemon::main(args)
}

#[derive(Debug, Deserialize)]
struct Conf {
    #[serde(flatten)]
    net: NetConf,
}

/// The `ipam` keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DhcpIpam {
    #[serde(default)]
    daemon_socket_path: Option<String>,
    #[serde(default)]
    request: Vec<RequestOpt>,
    #[serde(default)]
    provide: Vec<ProvideOpt>,
    #[serde(default)]
    priority: u32,
    /// Ours: lease an IPv4 address (DHCPv4); default true.
    #[serde(default = "yes")]
    ipv4: bool,
    /// Ours: lease an IPv6 address (DHCPv6 IA_NA) too: always, never, or (unset) when a
    /// router on the link advertises DHCPv6.
    #[serde(default)]
    ipv6: Option<bool>,
    /// Ours: prefix length put on the DHCPv6 address (DHCPv6 carries none); default 64.
    #[serde(default = "sixty_four")]
    ipv6_prefix_length: u8,
}

fn yes() -> bool {
    true
}

fn sixty_four() -> u8 {
    64
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestOpt {
    option: String,
    #[serde(default)]
    skip_default: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProvideOpt {
    option: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    from_arg: Option<String>,
}

/// Options asked for unless a `request` entry says `skipDefault`: the reference's subnet mask
/// and router, plus classless (121) and classful (33) static routes.
const DEFAULT_REQUEST: [u8; 4] = [1, 3, 121, 33];

/// Its configuration keys (inside `ipam`), one line each, for `--help`; a test holds this table
/// equal to what the loader reads ([`crate::keys`]).
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("ipam.daemonSocketPath", r#""/run/cni/dhcp.sock""#, "the daemon's socket (default /run/cni/dhcp.sock)"),
    key("ipam.request", r#"[{"option":"121","skipDefault":false}]"#, "DHCP options to request; skipDefault drops the default list (1, 3, 121, 33)"),
    key("ipam.provide", r#"[{"option":"12","fromArg":"K8S_POD_NAME"}]"#, "DHCP options to send: a value, or fromArg (a CNI_ARGS key)"),
    key("ipam.priority", "100", "metric of every route the lease gives"),
    key("ipam.ipv4", "true", "lease an IPv4 address (DHCPv4; default true)"),
    key("ipam.ipv6", "true", "lease an IPv6 address too (DHCPv6 IA_NA): true always, false never; unset: when a router on the link advertises DHCPv6 (RA M flag)"),
    key("ipam.ipv6PrefixLength", "64", "prefix length put on the DHCPv6 address (default 64)"),
];

impl Plugin for Dhcp {
    fn keys(&self) -> Option<&'static [Key]> {
        Some(KEYS)
    }

    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult> {
        let (socket, ipam, targets) = load(args)?;
        // DHCPv4 and DHCPv6 leases are acquired at the same time.
        let answers: Vec<_> = std::thread::scope(|s| {
            let calls: Vec<_> = targets
                .into_iter()
                .map(|target| {
                    let socket = &socket;
                    let optional = target.auto;
                    (
                        s.spawn(move || call(socket, &Request::Allocate { target })),
                        optional,
                    )
                })
                .collect();
            calls.into_iter().map(|(c, o)| (c.join(), o)).collect()
        });
        let mut result = CniResult::default();
        for (a, optional) in answers {
            let a = match a.map_err(|_| anyhow::anyhow!("DHCP call panicked"))? {
                Ok(a) => a,
                // DHCPv6 nobody asked for: a failure (logged by the daemon) leaves IPv4 alone.
                Err(_) if optional => continue,
                Err(e) => return Err(e.into_cni()),
            };
            if let Some(l) = &a.lease {
                let r = to_result(l, ipam.priority)?;
                result.ips.extend(r.ips);
                result.routes.extend(r.routes);
            }
            if let Some(l6) = &a.lease6 {
                let net = Ipv6Net::new(l6.addr, ipam.ipv6_prefix_length.min(128))
                    .context("ipv6PrefixLength")?;
                result.ips.push(IpConfig {
                    interface: None,
                    address: IpNet::V6(net),
                    gateway: None,
                });
            }
        }
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (socket, _, targets) = load(args)?;
        let mut errors = crate::error::ErrorList::new();
        for target in targets {
            match call(&socket, &Request::Release { target }) {
                // No daemon: nothing holds the lease in memory; it expires at the server, and
                // a lease file left behind is dropped at the daemon's next start (netns gone).
                Ok(_) | Err(CallError::Unreachable(_)) => {}
                Err(e) => {
                    errors.note::<()>(Err(e.into()));
                }
            }
        }
        errors.finish()
    }

    fn check(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (socket, _, targets) = load(args)?;
        let prev = Conf::net(args)?
            .prev_result()?
            .ok_or_else(|| bad_config("Required prevResult missing"))?;
        for target in targets {
            let target_auto = target.auto;
            let a = call(&socket, &Request::Lookup { target }).map_err(CallError::into_cni)?;
            let addr = match (a.lease, a.lease6) {
                (Some(l), _) => IpAddr::V4(l.ack.yiaddr),
                (None, Some(l6)) => IpAddr::V6(l6.addr),
                (None, None) if target_auto => continue,
                (None, None) => {
                    anyhow::bail!("the DHCP daemon holds no lease for {}", args.ifname)
                }
            };
            if !prev.ips.iter().any(|ip| ip.address.addr() == addr) {
                anyhow::bail!("the lease's address {addr} is not in prevResult");
            }
        }
        Ok(())
    }

    fn status(&self, args: &CmdArgs) -> anyhow::Result<()> {
        let (socket, _) = socket_and_keys(&Conf::net(args)?)?;
        call(&socket, &Request::Ping).map_err(|e| {
            anyhow::Error::from(CniError::new(code::PLUGIN_NOT_AVAILABLE, format!("{e}")))
        })?;
        Ok(())
    }
}

impl Conf {
    fn net(args: &CmdArgs) -> anyhow::Result<NetConf> {
        Ok(args.config::<Conf>()?.net)
    }
}

fn call(socket: &std::path::Path, req: &Request) -> Result<dhcp::Response, CallError> {
    dhcp::call(socket, req)
}

fn socket_and_keys(net: &NetConf) -> anyhow::Result<(PathBuf, DhcpIpam)> {
    let section = Value::Object(ipam_section(net)?.clone());
    let ipam: DhcpIpam =
        serde_json::from_value(section).map_err(|e| bad_config(format!("ipam: {e}")))?;
    let socket = ipam
        .daemon_socket_path
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| dhcp::DEFAULT_SOCKET.into());
    Ok((socket.into(), ipam))
}

/// The socket, the keys, and one target per family asked for (v4 first).
fn load(args: &CmdArgs) -> anyhow::Result<(PathBuf, DhcpIpam, Vec<Target>)> {
    let net = Conf::net(args)?;
    let (socket, ipam) = socket_and_keys(&net)?;
    let netns = if args.netns.is_empty() {
        String::new()
    } else {
        std::path::absolute(&args.netns)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| args.netns.clone())
    };
    let target = Target {
        container_id: args.container_id.clone(),
        network: net.name.clone(),
        ifname: args.ifname.clone(),
        netns,
        request: request_list(&ipam.request)?,
        provide: provide_list(&ipam.provide, args)?,
        v6: false,
        auto: false,
    };
    let mut targets = Vec::new();
    if ipam.ipv4 {
        targets.push(target.clone());
    }
    match ipam.ipv6 {
        Some(false) => {}
        Some(true) => targets.push(Target { v6: true, ..target }),
        None => targets.push(Target {
            v6: true,
            auto: ipam.ipv4,
            ..target
        }),
    }
    if targets.is_empty() {
        return Err(bad_config("ipam: ipv4 and ipv6 are both false"));
    }
    Ok((socket, ipam, targets))
}

/// An option name the reference accepts, or a decimal code.
fn option_code(name: &str) -> anyhow::Result<u8> {
    Ok(match name {
        "dhcp-client-identifier" => 61,
        "subnet-mask" => 1,
        "routers" => 3,
        "host-name" => 12,
        "user-class" => 77,
        "vendor-class-identifier" => 60,
        n => n
            .parse()
            .map_err(|_| bad_config(format!("ipam: unknown DHCP option {n:?}")))?,
    })
}

fn request_list(req: &[RequestOpt]) -> anyhow::Result<Vec<u8>> {
    let mut out: Vec<u8> = if req.iter().any(|r| r.skip_default) {
        Vec::new()
    } else {
        DEFAULT_REQUEST.to_vec()
    };
    for r in req {
        let c = option_code(&r.option)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// `provide`: the value, then CNI_ARGS `fromArg` (which wins, as in the reference).
fn provide_list(prov: &[ProvideOpt], args: &CmdArgs) -> anyhow::Result<Vec<(u8, String)>> {
    let mut out = Vec::new();
    for p in prov {
        let code = option_code(&p.option)?;
        let from_arg = p.from_arg.as_deref().and_then(|k| args.args.get(k));
        if let Some(v) = from_arg.map(str::to_string).or_else(|| p.value.clone()) {
            if v.len() > 255 {
                return Err(bad_config(format!(
                    "ipam.provide: option {code} value longer than 255 bytes"
                )));
            }
            out.retain(|(c, _)| *c != code);
            out.push((code, v));
        }
    }
    Ok(out)
}

/// The lease as a result: `yiaddr/mask`, the first router as gateway, and routes from option
/// 121 alone when present, else option 33 plus a default route via the first router.
fn to_result(lease: &Lease, priority: u32) -> anyhow::Result<CniResult> {
    let ack = &lease.ack;
    let mask = ack.mask.context("the DHCP ACK has no subnet mask")?;
    let prefix = u32::from(mask).leading_ones() as u8;
    let net = Ipv4Net::new(ack.yiaddr, prefix).context("bad subnet mask")?;
    let gateway = ack.routers.first().copied();
    let mut routes = Vec::new();
    if !ack.classless.is_empty() {
        for (dst, gw) in &ack.classless {
            let mut r = Route::new(IpNet::V4(*dst), None);
            if gw.is_unspecified() {
                r.scope = Some(253);
            } else {
                r.gw = Some(IpAddr::V4(*gw));
            }
            routes.push(r);
        }
    } else {
        for (dst, gw) in &ack.static_routes {
            let dst = Ipv4Net::new(*dst, 32).expect("/32 is valid");
            routes.push(Route::new(IpNet::V4(dst), Some(IpAddr::V4(*gw))));
        }
        if let Some(gw) = gateway {
            let any = Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is valid");
            routes.push(Route::new(IpNet::V4(any), Some(IpAddr::V4(gw))));
        }
    }
    for r in &mut routes {
        r.priority = priority;
    }
    Ok(CniResult {
        ips: vec![IpConfig {
            interface: None,
            address: IpNet::V4(net),
            gateway: gateway.map(IpAddr::V4),
        }],
        routes,
        ..Default::default()
    })
}

#[cfg(test)]
#[path = "dhcp_tests.rs"]
mod tests;
