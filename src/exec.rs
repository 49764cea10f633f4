//! Delegation: find a plugin by `type` in `CNI_PATH`, run it with the caller's environment
//! (only `CNI_COMMAND` replaced) and the complete config on stdin, and decode its result or its
//! error, keeping the delegate's code. Mirrors the reference's `pkg/invoke` (FEATURES.md 1.7,
//! 2.2).
//!
//! Fast path: when the file found is this very executable (same device and inode as
//! `/proc/self/exe`) and names one of our applets, the applet runs in process through skel,
//! with the same semantics and no fork/exec.

use crate::applets::{self, Run};
use crate::error::{CniError, code};
use crate::skel::{self, CmdArgs, Command, Env, Io};
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
/// [`CniError`] with the plugin's own code.
pub fn invoke(inv: &Invocation<'_>) -> anyhow::Result<Vec<u8>> {
    let file = find_in_path(inv.plugin_type, inv.path)?;
    if is_this_executable(&file)
        && let Some(applet) = applets::find(inv.plugin_type)
        && let Run::Plugin(plugin) = applet.run
    {
        let (mut out, mut stdin) = (Vec::new(), inv.stdin);
        let status = skel::run(
            applet.name,
            plugin,
            &inv.env,
            Io {
                stdin: &mut stdin,
                stdout: &mut out,
                stderr: &mut std::io::stderr(),
            },
        );
        return finish(
            inv.plugin_type,
            status == 0,
            out,
            Vec::new(),
            status.to_string(),
        );
    }
    exec_file(&file, inv)
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

fn delegate_raw(command: Command, plugin_type: &str, args: &CmdArgs) -> anyhow::Result<Vec<u8>> {
    let mut env = args.env.clone();
    env.insert("CNI_COMMAND".into(), command.as_str().into());
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
fn exec_file(file: &Path, inv: &Invocation<'_>) -> anyhow::Result<Vec<u8>> {
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
    )
}

/// Turns a finished plugin run into stdout bytes or the plugin's error.
fn finish(
    name: &str,
    ok: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: String,
) -> anyhow::Result<Vec<u8>> {
    if !stderr.is_empty() {
        let _ = std::io::stderr().write_all(&stderr);
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
mod tests {
    use super::*;

    #[test]
    fn find_rejects_separators_and_empty_path() {
        assert!(
            format!(
                "{}",
                find_in_path("a/b", &[PathBuf::from("/bin")]).unwrap_err()
            )
            .contains("contains '/'")
        );
        assert_eq!(
            crate::error::code_of(&find_in_path("sh", &[]).unwrap_err()),
            4
        );
        assert!(find_in_path("", &[PathBuf::from("/bin")]).is_err());
    }

    #[test]
    fn find_takes_the_first_directory_and_skips_directories() {
        let path = [
            PathBuf::from("/nonexistent"),
            PathBuf::from("/usr"),
            PathBuf::from("/bin"),
        ];
        assert_eq!(find_in_path("sh", &path).unwrap(), PathBuf::from("/bin/sh"));
        let e = find_in_path("bin", &[PathBuf::from("/usr")]).unwrap_err();
        assert!(format!("{e}").contains("failed to find plugin \"bin\""));
    }

    #[test]
    fn failing_plugin_error_keeps_its_code() {
        let out = br#"{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"later"}"#.to_vec();
        let e = finish("x", false, out, Vec::new(), "exit status: 1".into()).unwrap_err();
        let c = crate::error::cni_error_of(&e).unwrap();
        assert_eq!(
            (c.code, c.msg.as_str(), c.details.as_str()),
            (11, "busy", "later")
        );
    }

    #[test]
    fn failing_plugin_without_json_is_explained() {
        let e = finish(
            "x",
            false,
            Vec::new(),
            b"segfault\n".to_vec(),
            "signal: 11".into(),
        )
        .unwrap_err();
        assert!(format!("{e}").contains("\"segfault\""), "{e}");
        let e = finish(
            "x",
            false,
            b"oops".to_vec(),
            Vec::new(),
            "exit status: 1".into(),
        )
        .unwrap_err();
        assert!(format!("{e}").contains("could not be parsed"), "{e}");
    }

    #[test]
    fn null_output_is_an_empty_result() {
        assert_eq!(
            decode_result(b"null", "1.0.0").unwrap(),
            CniResult::default()
        );
        assert_eq!(
            crate::error::code_of(&decode_result(b"{", "1.0.0").unwrap_err()),
            6
        );
    }

    #[test]
    fn foreign_plugin_is_executed_with_the_given_env() {
        let dir = std::env::temp_dir().join(format!("cni-multi-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("echo-env");
        std::fs::write(
            &script,
            "#!/bin/sh\ncat >/dev/null\necho \"{\\\"cmd\\\":\\\"$CNI_COMMAND\\\"}\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut env = Env::new();
        env.insert("CNI_COMMAND".into(), "ADD".into());
        let path = [dir.clone()];
        let out = invoke(&Invocation {
            plugin_type: "echo-env",
            path: &path,
            env,
            stdin: b"{}",
        })
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), r#"{"cmd":"ADD"}"#);
    }
}
