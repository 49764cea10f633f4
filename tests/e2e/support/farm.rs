//! The `CNI_PATH` farm: the built binary installed by the project's own `install.sh` into a temp
//! dir (so every e2e run also tests the installer), one symlink per applet, exactly as a runtime
//! would find the reference plugins in `/opt/cni/bin`. Plugins are executed through those
//! symlinks, so argv[0] dispatch is what runs.

use super::tempdir::TempDir;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A directory holding `cni-multi` and one symlink per applet.
#[derive(Debug)]
pub struct Farm {
    dir: TempDir,
}

static SHARED: OnceLock<Farm> = OnceLock::new();

/// The binary cargo built for this test run.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cni-multi"))
}

/// The repository's `install.sh`.
pub fn install_script() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh"))
}

/// Runs `install.sh ARGS...` and returns its output, whatever the exit status.
pub fn run_install<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(install_script())
        .args(args)
        .output()
        .expect("run install.sh")
}

/// The lines of `cni-multi --list` of the built binary: every applet name.
pub fn applet_names() -> Vec<String> {
    let out = Command::new(binary())
        .arg("--list")
        .output()
        .expect("run cni-multi --list");
    assert!(out.status.success(), "cni-multi --list failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8 --list")
        .lines()
        .map(String::from)
        .collect()
}

impl Farm {
    /// A private farm (for tests that change it), installed with
    /// `install.sh --prefix <tmp> --binary <built binary>`.
    pub fn new(label: &str) -> Farm {
        let dir = TempDir::new(&format!("farm-{label}"));
        let out = run_install([
            OsStr::new("--prefix"),
            dir.path().as_os_str(),
            OsStr::new("--binary"),
            binary().as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "install.sh failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Farm { dir }
    }

    /// The farm shared by every test in this process: installed once, read-only afterwards,
    /// removed when the process exits.
    pub fn shared() -> &'static Farm {
        SHARED.get_or_init(|| {
            extern "C" fn remove_shared() {
                if let Some(farm) = SHARED.get() {
                    let _ = std::fs::remove_dir_all(farm.dir());
                }
            }
            // Statics are never dropped, so the dir is removed by an exit hook instead.
            // SAFETY: `remove_shared` is a plain extern "C" fn with no preconditions.
            unsafe { libc::atexit(remove_shared) };
            Farm::new("shared")
        })
    }

    /// The directory: the value for `CNI_PATH`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/<name>`: the symlink a runtime would exec for network type `name`.
    pub fn applet(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `<dir>/cni-multi`: the installed copy of the binary.
    pub fn binary(&self) -> PathBuf {
        self.dir.join("cni-multi")
    }
}
