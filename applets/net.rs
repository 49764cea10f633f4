//! `net` and `cnitool`: run a network configuration against a network namespace, the way a
//! container runtime would (`add|check|del|gc|status NETWORK NETNS`). Mirrors the reference's
//! `cnitool` (FEATURES.md Part 4): the same environment (`NETCONFPATH`, `CNI_PATH`,
//! `CNI_IFNAME`, `CNI_ARGS`, `CAP_ARGS`), the whole environment passed on to the plugins with
//! the call's own `CNI_*` values winning, the same derived container ID, the same cache, errors
//! on stderr with exit status 1. Flags may replace each variable.
//!
//! Under the name `cnitool` the output is cnitool's: ADD prints the result JSON as the last
//! plugin gave it, nothing else prints. Under the name `net`, ADD prints a readable summary
//! (interfaces, addresses, routes, DNS from the result, then the netfilter rules the attachment
//! owns, read back from the kernel) or, with `--json`, the result converted to the
//! configuration's version; the other verbs confirm in one line (DEL also lists any rules of
//! the attachment still there). `gc` and `status` do not need the NETNS argument.

use crate::runtime::inject::result_in_version;
use crate::runtime::{CniConfig, NetworkConfigList, ResultCache, RuntimeConf, load_network};
use crate::skel::{Env, write_json};
use crate::types::CniResult;
use anyhow::{Context, bail};
use clap::{Arg, ArgAction, ArgMatches};
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which name the tool answers to; it decides the output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Output exactly as cnitool's.
    Cnitool,
    /// Readable output; JSON with `--json`.
    Net,
}

/// The applet row `cnitool`.
pub fn cnitool_main(args: &[OsString]) -> ExitCode {
    main_as(Flavor::Cnitool, args)
}

/// The applet row `net`.
pub fn net_main(args: &[OsString]) -> ExitCode {
    main_as(Flavor::Net, args)
}

fn main_as(flavor: Flavor, args: &[OsString]) -> ExitCode {
    // This process runs a whole list of plugins and then exits: nf_tables sockets may close
    // late, so that no plugin waits for the kernel when closing one (see `linger`).
    crate::netfilter::nftables::socket::linger();
    let env: Env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let status = run(
        flavor,
        args,
        &env,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(status)
}

/// The verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Add,
    Check,
    Del,
    Gc,
    Status,
}

/// Everything one run needs, resolved from flags and environment.
#[derive(Debug)]
struct Request {
    verb: Verb,
    network: String,
    conf_dir: PathBuf,
    cni: CniConfig,
    rt: RuntimeConf,
    json: bool,
}

/// Runs the tool with `args` (without the applet name) and `env`; returns the exit status.
pub fn run(
    flavor: Flavor,
    args: &[OsString],
    env: &Env,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let matches = match cli(flavor).try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
            let to_out = matches!(e.kind(), DisplayHelp | DisplayVersion);
            let w: &mut dyn Write = if to_out { out } else { err };
            let _ = write!(w, "{e}");
            return u8::from(!to_out);
        }
    };
    let outcome = request(&matches, env).and_then(|req| execute(flavor, &req, out));
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "{e:#}");
            1
        }
    }
}

fn cli(flavor: Flavor) -> clap::Command {
    let name = match flavor {
        Flavor::Cnitool => "cnitool",
        Flavor::Net => "net",
    };
    clap::Command::new(name)
        .no_binary_name(true)
        .bin_name(name)
        .about("Run a CNI network configuration against a network namespace")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .args(options())
        .subcommands(VERBS.iter().map(|&(verb, about, needs_netns)| {
            clap::Command::new(verb)
                .about(about)
                .arg(
                    Arg::new("network")
                        .value_name("NETWORK")
                        .required(true)
                        .help("network name (a configuration's \"name\")"),
                )
                .arg(
                    Arg::new("netns")
                        .value_name("NETNS")
                        .required(needs_netns)
                        .help("path of the network namespace"),
                )
        }))
}

/// Subcommand, help line, whether NETNS is required.
const VERBS: &[(&str, &str, bool)] = &[
    ("add", "Attach the network to the namespace", true),
    ("check", "Check the attachment", true),
    ("del", "Detach the network from the namespace", true),
    (
        "gc",
        "Delete every cached attachment of the network, then GC its plugins",
        false,
    ),
    (
        "status",
        "Ask the network's plugins whether they are ready",
        false,
    ),
];

/// The options, accepted before or after the subcommand.
fn options() -> Vec<Arg> {
    let opt = |id: &'static str, value: &'static str, help: &'static str| {
        Arg::new(id)
            .long(id)
            .value_name(value)
            .global(true)
            .help(help)
    };
    vec![
        opt(
            "conf-dir",
            "DIR",
            "configuration directory [env NETCONFPATH; default /etc/cni/net.d]",
        ),
        opt(
            "cni-path",
            "PATH",
            "plugin directories, ':'-separated [env CNI_PATH]",
        ),
        opt(
            "ifname",
            "NAME",
            "interface name in the container [env CNI_IFNAME; default eth0]",
        )
        .short('i'),
        opt("args", "K=V;..", "CNI_ARGS for the plugins [env CNI_ARGS]"),
        opt(
            "cap-args",
            "JSON",
            "capability args, a JSON object [env CAP_ARGS]",
        ),
        opt(
            "container-id",
            "ID",
            "container ID [default: cnitool- + hash of the netns path]",
        ),
        opt(
            "cache-dir",
            "DIR",
            "result cache directory [default /var/lib/cni]",
        ),
        Arg::new("json")
            .long("json")
            .global(true)
            .action(ArgAction::SetTrue)
            .help("print the result as JSON"),
    ]
}

/// A flag, else a non-empty environment variable.
fn setting(m: &ArgMatches, id: &str, env: &Env, var: &str) -> Option<String> {
    m.get_one::<String>(id)
        .cloned()
        .or_else(|| env.get(var).filter(|v| !v.is_empty()).cloned())
}

fn request(top: &ArgMatches, env: &Env) -> anyhow::Result<Request> {
    let (name, m) = top.subcommand().expect("a subcommand is required");
    let verb = match name {
        "add" => Verb::Add,
        "check" => Verb::Check,
        "del" => Verb::Del,
        "gc" => Verb::Gc,
        _ => Verb::Status,
    };
    let network = m.get_one::<String>("network").expect("required").clone();
    let netns = match m.get_one::<String>("netns") {
        Some(p) => absolute(p)?,
        None => String::new(),
    };
    let container_id = match m.get_one::<String>("container-id") {
        Some(id) => id.clone(),
        None if netns.is_empty() => String::new(),
        None => container_id(&netns),
    };
    let args = match setting(m, "args", env, "CNI_ARGS") {
        Some(a) => parse_cni_args(&a)?,
        None => Vec::new(),
    };
    let capability_args = match setting(m, "cap-args", env, "CAP_ARGS") {
        Some(c) => parse_cap_args(&c)?,
        None => Map::new(),
    };
    let path = setting(m, "cni-path", env, "CNI_PATH").unwrap_or_default();
    let cache = m
        .get_one::<String>("cache-dir")
        .map_or_else(ResultCache::default, ResultCache::new);
    let mut cni = CniConfig::new(
        path.split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
        cache,
    );
    // Plugins get the whole environment (HOME, proxies, CNI_NETNS_OVERRIDE, ...); the six
    // CNI_* values of this call are written over it.
    cni.env = env.clone();
    Ok(Request {
        verb,
        network,
        conf_dir: setting(m, "conf-dir", env, "NETCONFPATH")
            .unwrap_or_else(|| "/etc/cni/net.d".into())
            .into(),
        cni,
        rt: RuntimeConf {
            container_id,
            netns,
            ifname: setting(m, "ifname", env, "CNI_IFNAME").unwrap_or_else(|| "eth0".into()),
            args,
            capability_args,
        },
        json: m.get_flag("json"),
    })
}

fn execute(flavor: Flavor, req: &Request, out: &mut dyn Write) -> anyhow::Result<()> {
    let list = load_network(&req.conf_dir, &req.network)?;
    let (cni, rt) = (&req.cni, &req.rt);
    let done = match req.verb {
        Verb::Add => {
            let result = cni.add_network_list(&list, rt)?;
            return print_result(flavor, req, &list, &result, out);
        }
        Verb::Check => cni.check_network_list(&list, rt).map(|()| "checked"),
        Verb::Del => cni.del_network_list(&list, rt).map(|()| "deleted"),
        Verb::Gc => cni
            .gc_network_list(&list, None)
            .map(|()| "garbage-collected"),
        Verb::Status => cni.status_network_list(&list).map(|()| "ready"),
    }?;
    if flavor == Flavor::Net {
        match req.verb {
            Verb::Gc | Verb::Status => writeln!(out, "{}: {done}", list.name)?,
            _ => writeln!(out, "{} {} in {}: {done}", list.name, rt.ifname, rt.netns)?,
        }
        if req.verb == Verb::Del {
            write!(
                out,
                "{}",
                rules_section("rules left behind", &list.name, rt)
            )?;
        }
    }
    Ok(())
}

fn print_result(
    flavor: Flavor,
    req: &Request,
    list: &NetworkConfigList,
    result: &Value,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match flavor {
        // cnitool prints the result as libcni returns it: indented by four spaces, no newline.
        Flavor::Cnitool => write_json(out, result, true)?,
        Flavor::Net if req.json => {
            write_json(out, &result_in_version(result, &list.cni_version)?, true)?;
            writeln!(out)?;
        }
        Flavor::Net => {
            let decoded =
                CniResult::decode(result, &list.cni_version).context("decoding the result")?;
            writeln!(
                out,
                "{} {} in {} (container {})",
                list.name, req.rt.ifname, req.rt.netns, req.rt.container_id
            )?;
            write!(out, "{}", summary(&decoded))?;
            write!(out, "{}", rules_section("rules", &list.name, &req.rt))?;
        }
    }
    Ok(())
}

/// A readable account of a result: interfaces, addresses, routes, DNS.
pub fn summary(r: &CniResult) -> String {
    let mut s = String::new();
    if !r.interfaces.is_empty() {
        s.push_str("interfaces:\n");
    }
    for (i, f) in r.interfaces.iter().enumerate() {
        let mut line = format!("  [{i}] {}", f.name);
        if !f.mac.is_empty() {
            line.push_str(&format!(" {}", f.mac));
        }
        if f.mtu != 0 {
            line.push_str(&format!(" mtu {}", f.mtu));
        }
        let place = if f.sandbox.is_empty() {
            "host"
        } else {
            &f.sandbox
        };
        s.push_str(&format!("{line} ({place})\n"));
    }
    if !r.ips.is_empty() {
        s.push_str("addresses:\n");
    }
    for ip in &r.ips {
        s.push_str(&format!("  {}", ip.address));
        if let Some(gw) = ip.gateway {
            s.push_str(&format!(" gateway {gw}"));
        }
        if let Some(f) = ip.interface.and_then(|i| r.interfaces.get(i)) {
            s.push_str(&format!(" on {}", f.name));
        }
        s.push('\n');
    }
    if !r.routes.is_empty() {
        s.push_str("routes:\n");
    }
    for rt in &r.routes {
        s.push_str(&format!("  {}", rt.dst));
        if let Some(gw) = rt.gw {
            s.push_str(&format!(" via {gw}"));
        }
        if rt.priority != 0 {
            s.push_str(&format!(" metric {}", rt.priority));
        }
        if let Some(t) = rt.table {
            s.push_str(&format!(" table {t}"));
        }
        s.push('\n');
    }
    let dns = &r.dns;
    if !dns.is_empty() {
        s.push_str("dns:\n");
        for (what, items) in [
            ("nameservers", &dns.nameservers),
            ("search", &dns.search),
            ("options", &dns.options),
        ] {
            if !items.is_empty() {
                s.push_str(&format!("  {what} {}\n", items.join(" ")));
            }
        }
        if !dns.domain.is_empty() {
            s.push_str(&format!("  domain {}\n", dns.domain));
        }
    }
    s
}

/// `<title>:` and one indented line per netfilter rule the attachment owns in this netns (the
/// plugins ran here), read back from the kernel; empty when it owns none.
fn rules_section(title: &str, network: &str, rt: &RuntimeConf) -> String {
    let rules = crate::netfilter::describe::attachment_rules(network, &rt.ifname, &rt.container_id);
    if rules.is_empty() {
        return String::new();
    }
    let lines: String = rules.iter().map(|r| format!("  {r}\n")).collect();
    format!("{title}:\n{lines}")
}

/// cnitool's container ID: `cnitool-` and the hex of the first 10 bytes of SHA-512 of the
/// absolute netns path.
pub fn container_id(abs_netns: &str) -> String {
    let digest = Sha512::digest(abs_netns.as_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("cnitool-{hex}")
}

/// The path made absolute and cleaned lexically, as Go's `filepath.Abs` does (no symlinks
/// resolved).
fn absolute(path: &str) -> anyhow::Result<String> {
    let joined = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(path)
    };
    Ok(clean(&joined))
}

/// Go's `filepath.Clean` for an absolute path.
fn clean(p: &Path) -> String {
    let text = p.to_string_lossy();
    let mut parts: Vec<&str> = Vec::new();
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `CNI_ARGS` as cnitool reads it: `K=V` pairs split on `;`, each with a non-empty key and value.
pub fn parse_cni_args(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    s.split(';')
        .map(|pair| match pair.split('=').collect::<Vec<_>>()[..] {
            [k, v] if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid CNI_ARGS pair {pair:?}"),
        })
        .collect()
}

/// `CAP_ARGS`: a JSON object (`null` means none).
fn parse_cap_args(s: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(s).context("CAP_ARGS is not JSON")? {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => bail!("CAP_ARGS must be a JSON object, not {other}"),
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
