//! THE protocol, once: the `CNI_*` environment, stdin, version gating, verb dispatch, panics
//! turned into code 999, and the encoding of results and errors on stdout. Mirrors the
//! reference's `pkg/skel` (FEATURES.md 2.1), with two deliberate differences: the same-netns
//! safety check runs *before* ADD acts rather than after, and unknown `CNI_ARGS` keys are
//! accepted.
//!
//! Everything comes in through [`Env`] and [`Io`], so the whole protocol is testable in process,
//! and the in-process delegation path reuses it unchanged.

use crate::error::{CniError, code, to_wire};
use crate::netns::{Netns, NetnsError};
use crate::types::args::CniArgs;
use crate::types::netconf::{is_valid_identifier, validate_network_name};
use crate::types::version::{self, Version};
use crate::types::{CniResult, NetConf};
use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// The process environment as the protocol sees it.
pub type Env = BTreeMap<String, String>;

/// Where a call reads and writes. stdout carries only the protocol.
pub struct Io<'a> {
    /// The network configuration.
    pub stdin: &'a mut dyn Read,
    /// Result or error JSON.
    pub stdout: &'a mut dyn Write,
    /// Free-form diagnostics.
    pub stderr: &'a mut dyn Write,
}

/// The verbs of spec 1.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Create or adjust the attachment.
    Add,
    /// Remove the attachment; must succeed when it is already gone.
    Del,
    /// Verify the attachment (0.4.0+).
    Check,
    /// Clean up attachments not listed as valid (1.1.0).
    Gc,
    /// Is the plugin ready for ADD (1.1.0)?
    Status,
    /// Which versions does the plugin speak?
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// The env vars this verb requires (FEATURES.md 1.3). STATUS follows the spec, where
    /// `CNI_PATH` is optional.
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc => &["CNI_PATH"],
            Command::Status | Command::Version => &[],
        }
    }
}

/// Everything a verb needs, already validated. Applets never read the environment themselves.
#[derive(Debug, Clone)]
pub struct CmdArgs {
    /// The verb being run.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for GC and STATUS).
    pub container_id: String,
    /// `CNI_NETNS`; may be empty on DEL.
    pub netns: String,
    /// `CNI_IFNAME` (empty for GC and STATUS).
    pub ifname: String,
    /// Parsed `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH`, split.
    pub path: Vec<PathBuf>,
    /// The configuration bytes as received.
    pub stdin: Vec<u8>,
    /// The configuration's `cniVersion` (`""` means 0.1.0).
    pub version: String,
    /// The whole environment, passed on unchanged to delegates.
    pub env: Env,
}

impl CmdArgs {
    /// Decodes the configuration into an applet's config struct. A failure is code 7 and
    /// names the field that did not fit.
    pub fn config<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.stdin).map_err(|e| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("invalid network configuration: {e}"),
            )
            .into()
        })
    }

    /// Opens `CNI_NETNS`; any failure is an error naming the path.
    pub fn open_netns(&self) -> anyhow::Result<Netns> {
        Netns::open(&self.netns)
            .map_err(|e| CniError::new(code::INVALID_ENV, format!("CNI_NETNS: {e}")).into())
    }

    /// Opens `CNI_NETNS` for DEL: `None` when it is empty or already gone.
    pub fn netns_if_present(&self) -> anyhow::Result<Option<Netns>> {
        if self.netns.is_empty() {
            return Ok(None);
        }
        match Netns::open(&self.netns) {
            Ok(ns) => Ok(Some(ns)),
            Err(NetnsError::Missing(_)) => Ok(None),
            Err(e) => Err(CniError::new(code::INVALID_ENV, format!("CNI_NETNS: {e}")).into()),
        }
    }
}

/// A CNI plugin: what an applet row of kind plugin implements. Verbs without an override
/// answer success, as nil functions do in the reference.
pub trait Plugin: Sync {
    /// ADD: returns the result, which skel encodes in the configuration's version.
    fn add(&self, args: &CmdArgs) -> anyhow::Result<CniResult>;
    /// DEL: must succeed when everything is already gone.
    fn del(&self, args: &CmdArgs) -> anyhow::Result<()>;
    /// CHECK (0.4.0+).
    fn check(&self, _args: &CmdArgs) -> anyhow::Result<()> {
        Ok(())
    }
    /// GC (1.1.0).
    fn gc(&self, _args: &CmdArgs) -> anyhow::Result<()> {
        Ok(())
    }
    /// STATUS (1.1.0).
    fn status(&self, _args: &CmdArgs) -> anyhow::Result<()> {
        Ok(())
    }
    /// Spec versions this plugin speaks.
    fn versions(&self) -> &'static [&'static str] {
        version::ALL
    }
    /// Its own configuration keys, one line each, for `--help` ([`crate::keys`]); `None`
    /// until the applet has a table.
    fn keys(&self) -> Option<&'static [crate::keys::Key]> {
        None
    }
    /// What the node must offer for it to work, for `cni-multi doctor` ([`crate::doctor`]).
    fn needs(&self) -> &'static [crate::doctor::Need] {
        &[]
    }
}

/// Runs one protocol call of `plugin` (named `name` in the about text) and returns the exit
/// code: 0 on success, 1 with error JSON on stdout otherwise.
pub fn run(name: &str, plugin: &dyn Plugin, env: &Env, io: Io<'_>) -> u8 {
    let Io {
        stdin,
        stdout,
        stderr,
    } = io;
    let cmd = env.get("CNI_COMMAND").map(String::as_str).unwrap_or("");
    if cmd.is_empty() {
        let _ = writeln!(
            stderr,
            "CNI {name} plugin (cni-multi {})\nCNI protocol versions supported: {}",
            env!("CARGO_PKG_VERSION"),
            plugin.versions().join(", ")
        );
        return 0;
    }
    crate::fault::arm(env.get(crate::fault::VAR).map(String::as_str));
    let mut version_seen = String::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        call(plugin, env, stdin, stdout, &mut version_seen)
    }));
    let err = match outcome {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => to_wire(&e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            CniError::new(
                code::INTERNAL,
                format!("internal error: {name} panicked: {what}"),
            )
        }
    };
    let _ = writeln!(stderr, "{name}: {err}");
    // An error is reported in the config's version only when that is one we know.
    let wire_version = if version_seen.is_empty() || !version::is_known(&version_seen) {
        version::CURRENT
    } else {
        &version_seen
    };
    let _ = write_json(stdout, &error_json(&err, wire_version), true);
    1
}

/// The error JSON of spec section "Error": `{cniVersion, code, msg, details?}`.
pub fn error_json(err: &CniError, cni_version: &str) -> serde_json::Value {
    let mut v = serde_json::json!({"cniVersion": cni_version, "code": err.code, "msg": err.msg});
    if !err.details.is_empty() {
        v["details"] = err.details.clone().into();
    }
    v
}

/// Writes JSON as the reference does: indented with four spaces, no trailing newline
/// (`PrintResult`); compact with a newline for VERSION.
pub fn write_json(out: &mut dyn Write, v: &impl Serialize, pretty: bool) -> std::io::Result<()> {
    if pretty {
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut *out, fmt);
        v.serialize(&mut ser).map_err(std::io::Error::other)?;
    } else {
        serde_json::to_writer(&mut *out, v).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Validates the call and runs the verb. `version_seen` receives the config's version as soon
/// as it is known, so an error can be reported in it.
fn call(
    plugin: &dyn Plugin,
    env: &Env,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    version_seen: &mut String,
) -> anyhow::Result<()> {
    let raw_cmd = env.get("CNI_COMMAND").map(String::as_str).unwrap_or("");
    let command = Command::parse(raw_cmd).ok_or_else(|| {
        CniError::new(code::INVALID_ENV, format!("unknown CNI_COMMAND: {raw_cmd}"))
    })?;
    if command == Command::Version {
        let info = serde_json::json!({"cniVersion": version::CURRENT, "supportedVersions": plugin.versions()});
        write_json(stdout, &info, false).context("writing VERSION")?;
        return Ok(());
    }
    let args = read_args(command, env, stdin)?;
    *version_seen = args.version.clone();
    gate_version(plugin, command, &args.version)?;
    if matches!(command, Command::Add | Command::Del) {
        refuse_own_netns(env, &args)?;
    }
    match command {
        Command::Add => {
            let result = plugin.add(&args)?;
            let encoded = result
                .encode(effective_version(&args.version))
                .context("encoding the result")?;
            write_json(stdout, &encoded, true).context("writing the result")?;
        }
        Command::Del => plugin.del(&args)?,
        Command::Check => plugin.check(&args)?,
        Command::Gc => plugin.gc(&args)?,
        Command::Status => plugin.status(&args)?,
        Command::Version => unreachable!("handled above"),
    }
    Ok(())
}

/// `""` means 0.1.0.
fn effective_version(v: &str) -> &str {
    if v.is_empty() { "0.1.0" } else { v }
}

/// Checks the env for `command` and reads the configuration from stdin.
fn read_args(command: Command, env: &Env, stdin: &mut dyn Read) -> anyhow::Result<CmdArgs> {
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    let missing: Vec<&str> = command
        .required_env()
        .iter()
        .copied()
        .filter(|k| get(k).is_empty())
        .collect();
    // An empty container ID is code 3 in the reference, not a missing variable.
    let missing_id = missing.contains(&"CNI_CONTAINERID");
    let missing: Vec<&str> = missing
        .into_iter()
        .filter(|k| *k != "CNI_CONTAINERID")
        .collect();
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("required env variables [{}] missing", missing.join(",")),
        )
        .into());
    }
    let per_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
    if per_attachment {
        if missing_id {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                "missing containerID (CNI_CONTAINERID)",
            )
            .into());
        }
        validate_container_id(&get("CNI_CONTAINERID"))?;
        validate_ifname(&get("CNI_IFNAME"))?;
    }
    let args = CniArgs::parse(&get("CNI_ARGS"))?;
    let path = get("CNI_PATH")
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    let mut data = Vec::new();
    stdin
        .read_to_end(&mut data)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("error reading from stdin: {e}")))?;
    let version = parse_config_head(&data)?;
    Ok(CmdArgs {
        command,
        container_id: if per_attachment {
            get("CNI_CONTAINERID")
        } else {
            String::new()
        },
        netns: if per_attachment {
            get("CNI_NETNS")
        } else {
            String::new()
        },
        ifname: if per_attachment {
            get("CNI_IFNAME")
        } else {
            String::new()
        },
        args,
        path,
        stdin: data,
        version,
        env: env.clone(),
    })
}

/// Checks that stdin is a JSON object with a valid `name`; returns its `cniVersion`.
fn parse_config_head(data: &[u8]) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_slice(data).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            format!("network configuration is not JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(CniError::new(
            code::DECODING_FAILURE,
            "network configuration is not a JSON object",
        )
        .into());
    }
    let head: NetConf = serde_json::from_value(v).map_err(|e| {
        CniError::new(
            code::INVALID_CONFIG,
            format!("invalid network configuration: {e}"),
        )
    })?;
    validate_network_name(&head.name)?;
    Ok(head.cni_version)
}

/// Version gating (FEATURES.md 2.1 steps 5 and 6).
fn gate_version(plugin: &dyn Plugin, command: Command, raw: &str) -> anyhow::Result<()> {
    let supported = plugin.versions();
    // Membership first: a malformed version ("../x") is an unsupported one, code 1 as in the
    // reference, not a decoding failure.
    if !supported.contains(&effective_version(raw)) {
        return Err(
            CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
                .with_details(format!(
                    "config is {:?}, plugin supports {:?}",
                    effective_version(raw),
                    supported
                ))
                .into(),
        );
    }
    let v = Version::parse(raw)?;
    let needed = match command {
        Command::Check => Some(Version::V0_4_0),
        Command::Gc | Command::Status => Some(Version::V1_1_0),
        _ => None,
    };
    if let Some(min) = needed
        && v < min
    {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "config version {} does not allow {} (needs >= {min})",
                effective_version(raw),
                command.as_str()
            ),
        )
        .into());
    }
    Ok(())
}

/// Refuses to act on the plugin's own netns unless `CNI_NETNS_OVERRIDE` says so.
fn refuse_own_netns(env: &Env, args: &CmdArgs) -> anyhow::Result<()> {
    let overridden = env
        .get("CNI_NETNS_OVERRIDE")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if overridden || args.netns.is_empty() {
        return Ok(());
    }
    let (Ok(target), Ok(own)) = (Netns::open(&args.netns), Netns::current()) else {
        return Ok(());
    };
    if target.same_as(&own) {
        return Err(CniError::new(
            code::INVALID_NETNS,
            "plugin's netns and netns from CNI_NETNS should not be the same",
        )
        .into());
    }
    Ok(())
}

/// Container IDs follow the spec's identifier rule.
pub fn validate_container_id(id: &str) -> anyhow::Result<()> {
    if !is_valid_identifier(id) {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("invalid characters in containerID {id:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"),
        )
        .into());
    }
    if id.len() > crate::types::netconf::MAX_NAME_LEN {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "containerID is {} bytes, longer than a file name may be ({})",
                id.len(),
                crate::types::netconf::MAX_NAME_LEN
            ),
        )
        .into());
    }
    Ok(())
}

/// Interface names as the reference checks them: 1..=15 bytes, not `.`/`..`, no `/`, `:` or
/// white space.
pub fn validate_ifname(name: &str) -> anyhow::Result<()> {
    let bad = |why: &str| -> anyhow::Result<()> {
        Err(CniError::new(
            code::INVALID_ENV,
            format!("invalid interface name {name:?}: {why}"),
        )
        .into())
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 15 {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("not allowed");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return bad("contains '/', ':' or white space");
    }
    Ok(())
}

#[cfg(test)]
#[path = "skel_tests.rs"]
mod tests;
