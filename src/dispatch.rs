//! Picks the applet: the exact file name of argv[0] (a symlink in `CNI_PATH`), or
//! `cni-multi applet NAME ...`; also `--list`, `--version` and `--help`. No work happens before
//! the applet is known, so a plugin exec pays only for what it uses.

use crate::applets::{self, APPLETS, Applet, Run};
use crate::error::{CniError, code};
use crate::skel::{self, Env, Io};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The name of the multicall binary itself.
pub const SELF_NAME: &str = "cni-multi";

/// Exit code for an unknown applet, as a shell does for an unknown command.
const EXIT_UNKNOWN: u8 = 127;

/// Entry point: `args` is the whole argv.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let invoked = args.first().map(|a| base_name(a)).unwrap_or_default();
    if let Some(applet) = applets::find(&invoked) {
        return run_applet(applet, &args[1..]);
    }
    let rest = args.get(1..).unwrap_or_default();
    if invoked != SELF_NAME && rest.is_empty() {
        return unknown(&invoked);
    }
    let first = rest.first().and_then(|a| a.to_str()).unwrap_or("--help");
    match first {
        "applet" => match rest.get(1).and_then(|a| a.to_str()) {
            Some(name) => match applets::find(name) {
                Some(applet) => run_applet(applet, &rest[2..]),
                None => unknown(name),
            },
            None => {
                eprintln!("usage: {SELF_NAME} applet NAME [ARGS...]");
                ExitCode::from(2)
            }
        },
        "--list" | "-l" => {
            let mut out = std::io::stdout().lock();
            for a in APPLETS {
                let _ = writeln!(out, "{}", a.name);
            }
            ExitCode::SUCCESS
        }
        "--version" | "-V" => {
            println!(
                "{SELF_NAME} {} (CNI spec {})",
                env!("CARGO_PKG_VERSION"),
                crate::types::version::CURRENT
            );
            ExitCode::SUCCESS
        }
        // Used by `make readme` to regenerate README.md's applet table.
        "--applet-table" => {
            println!("{}", applets::readme_table());
            ExitCode::SUCCESS
        }
        "--help" | "-h" | "help" => {
            print!("{}", help_text());
            ExitCode::SUCCESS
        }
        // Busybox style: `cni-multi net add ...` is `cni-multi applet net add ...`.
        other => match applets::find(other) {
            Some(applet) => run_applet(applet, &rest[1..]),
            None => {
                eprintln!(
                    "{SELF_NAME}: unknown option or applet {other:?}; see '{SELF_NAME} --help'"
                );
                ExitCode::from(2)
            }
        },
    }
}

/// `--help`: usage and one line per applet.
pub fn help_text() -> String {
    let mut s = format!(
        "{SELF_NAME} {}: the CNI reference plugins and runtime tool in one executable.\n\n\
         usage: APPLET [ARGS...]            (through a symlink named after the applet)\n\
         \x20      {SELF_NAME} applet NAME [ARGS...]   (or just: {SELF_NAME} NAME [ARGS...])\n\
         \x20      {SELF_NAME} --list | --version | --help\n\napplets:\n",
        env!("CARGO_PKG_VERSION")
    );
    let width = APPLETS.iter().map(|a| a.name.len()).max().unwrap_or(0);
    for a in APPLETS {
        s.push_str(&format!("  {:width$}  {}\n", a.name, a.about));
    }
    s
}

fn base_name(arg0: &OsStr) -> String {
    Path::new(arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs a row: plugins through skel with the real process environment and stdio, or their
/// `--help` (the config keys, [`crate::keys::plugin_help`]).
fn run_applet(applet: &Applet, args: &[OsString]) -> ExitCode {
    let plugin = match applet.run {
        Run::Tool(f) => return f(args),
        Run::PluginOrTool { word, tool, .. } if args.first().is_some_and(|a| a == word) => {
            return tool(&args[1..]);
        }
        Run::PluginOrTool { plugin, .. } | Run::Plugin(plugin) => plugin,
    };
    if matches!(args.first().and_then(|a| a.to_str()), Some("--help" | "-h")) {
        print!(
            "{}",
            crate::keys::plugin_help(applet.name, applet.about, plugin)
        );
        return ExitCode::SUCCESS;
    }
    let env: Env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let io = Io {
        stdin: &mut std::io::stdin().lock(),
        stdout: &mut std::io::stdout().lock(),
        stderr: &mut std::io::stderr().lock(),
    };
    ExitCode::from(skel::run(applet.name, plugin, &env, io))
}

/// Unknown applet: a message, plus a CNI error on stdout when a runtime is calling.
fn unknown(name: &str) -> ExitCode {
    eprintln!("{SELF_NAME}: no applet named {name:?}; '{SELF_NAME} --list' shows them");
    if std::env::var_os("CNI_COMMAND").is_some() {
        let err = CniError::new(
            code::INTERNAL,
            format!("{SELF_NAME} has no applet named {name:?}"),
        );
        let _ = skel::write_json(
            &mut std::io::stdout(),
            &skel::error_json(&err, crate::types::version::CURRENT),
            true,
        );
    }
    ExitCode::from(EXIT_UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_name_is_exact_file_name() {
        assert_eq!(base_name(OsStr::new("/opt/cni/bin/bridge")), "bridge");
        assert_eq!(base_name(OsStr::new("host-local")), "host-local");
    }

    #[test]
    fn help_lists_every_applet() {
        let h = help_text();
        for a in APPLETS {
            assert!(h.contains(a.name));
        }
    }
}
