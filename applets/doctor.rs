//! `doctor`: tells an operator which applets can work on this node and why not, and whether the
//! configurations installed in the conf dir can (exit 0) or cannot (exit 1, naming each
//! configuration and what it lacks). The work is in `src/doctor/`; this is the command line.
//! The reference has no such command.

use crate::doctor::{self, DEFAULT_CNI_PATH, DEFAULT_CONF_DIR, DHCP_SOCKET, Options, STATE_DIRS};
use clap::{Arg, ArgAction};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The applet row `doctor`.
pub fn main(args: &[OsString]) -> ExitCode {
    let cni_path = std::env::var_os("CNI_PATH");
    let out = &mut std::io::stdout().lock();
    let err = &mut std::io::stderr().lock();
    ExitCode::from(run(args, cni_path, out, err))
}

fn cli() -> clap::Command {
    clap::Command::new("doctor")
        .no_binary_name(true)
        .bin_name("cni-multi doctor")
        .about(
            "Which applets can work on this node, and why not; exit 0 when every configuration \
             in the conf dir can work, 1 otherwise",
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("print the report as JSON"),
        )
        .arg(
            Arg::new("cni-path")
                .long("cni-path")
                .value_name("DIRS")
                .help("plugin directories, ':'-separated [default: $CNI_PATH, else /opt/cni/bin]"),
        )
        .arg(
            Arg::new("conf-dir")
                .long("conf-dir")
                .value_name("DIR")
                .default_value(DEFAULT_CONF_DIR)
                .help("configuration directory (.conf, .conflist, .json)"),
        )
}

/// Parses `args`, runs doctor, prints; returns the exit status.
fn run(
    args: &[OsString],
    env_path: Option<OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let m = match cli().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) {
                let _ = write!(out, "{e}");
                return 0;
            }
            let _ = write!(err, "{e}");
            return 2;
        }
    };
    let path: OsString = m
        .get_one::<String>("cni-path")
        .map(OsString::from)
        .or(env_path.filter(|p| !p.is_empty()))
        .unwrap_or_else(|| DEFAULT_CNI_PATH.into());
    let opts = Options {
        cni_path: std::env::split_paths(&path)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        conf_dir: PathBuf::from(m.get_one::<String>("conf-dir").expect("has a default")),
        dhcp_socket: PathBuf::from(DHCP_SOCKET),
        state_dirs: STATE_DIRS.iter().map(PathBuf::from).collect(),
    };
    let report = doctor::run(&opts);
    let _ = if m.get_flag("json") {
        serde_json::to_writer_pretty(&mut *out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write!(out, "{}", doctor::table(&report))
    };
    for c in report.configs.iter().filter(|c| !c.problems.is_empty()) {
        let net = c.network.as_deref().unwrap_or("?");
        for p in &c.problems {
            let _ = writeln!(err, "doctor: {} (network {net}): {p}", c.file);
        }
    }
    u8::from(!report.ok)
}
