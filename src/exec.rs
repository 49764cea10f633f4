//! Delegation: find a plugin by `type` in `CNI_PATH`, run it with the caller's environment
//! (only `CNI_COMMAND` replaced) and the complete config on stdin, and decode its result or its
//! error, keeping the delegate's code. Mirrors the reference's `pkg/invoke` (FEATURES.md 1.7,
//! 2.2).
//!
//! Loops: every delegation appends the delegate's type to [`CHAIN_VAR`] in the delegate's
//! environment, which reaches it both in process and through other programs (which pass their
//! environment on, as the reference's do). A type already in the chain, or a chain
//! [`MAX_DEPTH`] long, is refused with code 7 instead of recursing until the stack overflows.
//!
//! Fast path: when the file found is this very executable (same device and inode as
//! `/proc/self/exe`) and names one of our applets, the applet runs in process through skel,
//! with the same semantics and no fork/exec.

use crate::applets::{self, Run};
use crate::error::{CniError, code};
use crate::skel::{self, CmdArgs, Command, Env, Io, Plugin};
use crate::types::CniResult;
use anyhow::Context;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

/// A plugin call: which plugin, where to look, what to pass.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The plugin's `type` (a file name in one of `path`).
    pub plugin_type: &'a str,
    /// Directories to search, in order.
    pub path: &'a [PathBuf],
    /// The complete environment for the plugin, `CNI_COMMAND` included.
    pub env: Env,
    /// The configuration bytes for stdin.
    pub stdin: &'a [u8],
}

/// Finds `name` in `path` as the reference's `FindInPath` does: no path separators, first
/// directory that holds a regular file (symlinks followed) of that name wins.
pub fn find_in_path(name: &str, path: &[PathBuf]) -> anyhow::Result<PathBuf> {
    if name.is_empty() {
        return Err(CniError::new(code::INVALID_CONFIG, "plugin type is empty").into());
    }
    if name.contains('/') {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("invalid plugin name {name:?}: contains '/'"),
        )
        .into());
    }
    if path.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("no paths to search for plugin {name:?} (CNI_PATH is empty)"),
        )
        .into());
    }
    for dir in path {
        let candidate = dir.join(name);
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            return Ok(candidate);
        }
    }
    let dirs = path
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    Err(CniError::new(
        code::INVALID_CONFIG,
        format!("failed to find plugin {name:?} in path [{dirs}]"),
    )
    .into())
}

/// Runs the plugin and returns its stdout on success. A failing plugin's error JSON becomes a
/// [`CniError`] with the plugin's own code. The plugin's stderr goes to ours.
pub fn invoke(inv: &Invocation<'_>) -> anyhow::Result<Vec<u8>> {
    invoke_with_stderr(inv, &mut std::io::stderr())
}

/// [`invoke`], with the plugin's stderr copied to `stderr` (tests pass a buffer).
pub(crate) fn invoke_with_stderr(
    inv: &Invocation<'_>,
    stderr: &mut dyn Write,
) -> anyhow::Result<Vec<u8>> {
    let file = find_in_path(inv.plugin_type, inv.path)?;
    if let Some((name, plugin)) = in_process_plugin(inv.plugin_type, &file) {
        #[cfg(test)]
        tests::IN_PROCESS_CALLS.with(|n| n.set(n.get() + 1));
        let (mut out, mut err, mut stdin) = (Vec::new(), Vec::new(), inv.stdin);
        let io = Io {
            stdin: &mut stdin,
            stdout: &mut out,
            stderr: &mut err,
        };
        let status = skel::run(name, plugin, &inv.env, io);
        let ok = status == 0;
        let status = format!("exit status: {status}");
        return finish(inv.plugin_type, ok, out, err, status, stderr);
    }
    exec_file(&file, inv, stderr)
}

/// The applet [`invoke`] runs in process instead of executing `file` (found in `CNI_PATH` for
/// `plugin_type`): one exists when `file` is this very executable and `plugin_type` names one
/// of its plugin applets. Exposed so that tests can tell which path a call takes.
pub fn in_process_plugin(
    plugin_type: &str,
    file: &Path,
) -> Option<(&'static str, &'static dyn Plugin)> {
    if !is_this_executable(file) {
        return None;
    }
    let applet = applets::find(plugin_type)?;
    match applet.run {
        Run::Plugin(plugin) | Run::PluginOrTool { plugin, .. } => Some((applet.name, plugin)),
        Run::Tool(_) => None,
    }
}

/// ADD on a delegate: its result, decoded from whatever version it answered in.
pub fn delegate_add(plugin_type: &str, args: &CmdArgs) -> anyhow::Result<CniResult> {
    let out = delegate_raw(Command::Add, plugin_type, args)?;
    decode_result(&out, &args.version)
        .with_context(|| format!("decoding the result of {plugin_type}"))
}

/// DEL, CHECK, GC or STATUS on a delegate.
pub fn delegate(command: Command, plugin_type: &str, args: &CmdArgs) -> anyhow::Result<()> {
    delegate_raw(command, plugin_type, args).map(drop)
}

/// The environment variable holding the types of the delegates being run above a call,
/// outermost first, comma-separated.
pub const CHAIN_VAR: &str = "CNI_MULTI_DELEGATION";

/// The longest delegation chain allowed (plugin → ipam is 1).
pub const MAX_DEPTH: usize = 4;

/// Adds `plugin_type` to the delegation chain in `env`, or refuses (code 7) when it is already
/// in it or the chain is [`MAX_DEPTH`] long.
pub fn enter_delegation(plugin_type: &str, env: &mut Env) -> anyhow::Result<()> {
    let chain: Vec<&str> = env
        .get(CHAIN_VAR)
        .map(|c| c.split(',').filter(|t| !t.is_empty()).collect())
        .unwrap_or_default();
    let looped = chain.contains(&plugin_type);
    if looped || chain.len() >= MAX_DEPTH {
        let shown = chain.iter().chain([&plugin_type]).copied();
        let shown = shown.collect::<Vec<_>>().join(" -> ");
        let why = if looped {
            format!("plugin {plugin_type:?} delegates to itself")
        } else {
            format!("more than {MAX_DEPTH} nested delegations")
        };
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("delegation loop: {why} ({shown})"),
        )
        .into());
    }
    let mut next = chain.join(",");
    if !next.is_empty() {
        next.push(',');
    }
    next.push_str(plugin_type);
    env.insert(CHAIN_VAR.into(), next);
    Ok(())
}

fn delegate_raw(command: Command, plugin_type: &str, args: &CmdArgs) -> anyhow::Result<Vec<u8>> {
    let mut env = args.env.clone();
    env.insert("CNI_COMMAND".into(), command.as_str().into());
    enter_delegation(plugin_type, &mut env)
        .with_context(|| format!("{plugin_type} {}", command.as_str()))?;
    invoke(&Invocation {
        plugin_type,
        path: &args.path,
        env,
        stdin: &args.stdin,
    })
    .with_context(|| format!("{plugin_type} {}", command.as_str()))
}

/// Decodes a plugin's success output; no `cniVersion` means the config's (cni#895), and a
/// literal `null` is an empty result.
pub fn decode_result(stdout: &[u8], config_version: &str) -> anyhow::Result<CniResult> {
    let v: serde_json::Value = serde_json::from_slice(stdout).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            format!(
                "plugin output is not JSON: {e}: {:?}",
                String::from_utf8_lossy(stdout)
            ),
        )
    })?;
    if v.is_null() {
        return Ok(CniResult::default());
    }
    CniResult::decode(&v, config_version)
}

fn is_this_executable(file: &Path) -> bool {
    static SELF_ID: OnceLock<Option<(u64, u64)>> = OnceLock::new();
    let me = *SELF_ID.get_or_init(|| {
        std::fs::metadata("/proc/self/exe")
            .ok()
            .map(|m| (m.dev(), m.ino()))
    });
    me.is_some() && std::fs::metadata(file).ok().map(|m| (m.dev(), m.ino())) == me
}

/// Executes the file; retries while it is being replaced (`ETXTBSY`), as the reference does.
fn exec_file(file: &Path, inv: &Invocation<'_>, stderr: &mut dyn Write) -> anyhow::Result<Vec<u8>> {
    let mut tries = 0;
    let child = loop {
        let spawned = std::process::Command::new(file)
            .env_clear()
            .envs(&inv.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            other => break other.with_context(|| format!("exec {}", file.display()))?,
        }
    };
    let mut child = child;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin may exit without reading stdin; that is not our failure.
        if let Err(e) = stdin.write_all(inv.stdin)
            && e.kind() != ErrorKind::BrokenPipe
        {
            return Err(e).context("writing the plugin's stdin");
        }
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {}", file.display()))?;
    finish(
        inv.plugin_type,
        out.status.success(),
        out.stdout,
        out.stderr,
        out.status.to_string(),
        stderr,
    )
}

/// Turns a finished plugin run into stdout bytes or the plugin's error; copies the plugin's
/// stderr to `sink`.
fn finish(
    name: &str,
    ok: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: String,
    sink: &mut dyn Write,
) -> anyhow::Result<Vec<u8>> {
    if !stderr.is_empty() {
        let _ = sink.write_all(&stderr);
    }
    if ok {
        return Ok(stdout);
    }
    let text = String::from_utf8_lossy(&stdout);
    if text.trim().is_empty() {
        let err = String::from_utf8_lossy(&stderr);
        let msg = if err.trim().is_empty() {
            format!("plugin {name} failed with no error message: {status}")
        } else {
            format!("plugin {name} failed: {:?}: {status}", err.trim())
        };
        return Err(CniError::new(code::INTERNAL, msg).into());
    }
    #[derive(serde::Deserialize)]
    struct Wire {
        #[serde(default)]
        code: u32,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_str::<Wire>(&text) {
        Ok(w) => Err(CniError {
            code: w.code,
            msg: w.msg,
            details: w.details,
        }
        .into()),
        Err(e) => Err(CniError::new(
            code::INTERNAL,
            format!(
                "plugin {name} failed but its error could not be parsed ({e}): {:?}",
                text.trim()
            ),
        )
        .into()),
    }
}

#[cfg(test)]
#[path = "exec_tests.rs"]
mod tests;
