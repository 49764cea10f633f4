//! The runtime tool as a test drives it: `net` from the farm, run inside a fake host netns with
//! its own configuration directory (`--conf-dir`) and result cache (`--cache-dir`) in temp
//! dirs, and the farm as `--cni-path`, so the plugins run the way a runtime runs a network
//! (libcni: each plugin in list order, `prevResult` chained, capability args injected, the
//! result cached) — in process, since the farm's applets are this very executable.

use super::{Cni, Farm, Outcome, TempDir, TestNs};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A configuration directory and a cache directory for `net`, both removed on drop.
#[derive(Debug)]
pub struct NetTool {
    conf: TempDir,
    cache: TempDir,
}

impl NetTool {
    /// Two fresh temp dirs labelled `label`.
    pub fn new(label: &str) -> NetTool {
        NetTool {
            conf: TempDir::new(&format!("{label}-netd")),
            cache: TempDir::new(&format!("{label}-cache")),
        }
    }

    /// Writes `conf` (a `.conf` or `.conflist` object) as `file` in the configuration dir.
    pub fn write(&self, file: &str, conf: &Value) -> PathBuf {
        self.conf.write(file, conf.to_string())
    }

    /// The configuration directory (`--conf-dir`).
    pub fn conf_dir(&self) -> &Path {
        self.conf.path()
    }

    /// The result cache directory (`--cache-dir`).
    pub fn cache_dir(&self) -> &Path {
        self.cache.path()
    }

    /// Every regular file in the cache, relative to it, sorted.
    pub fn cached_files(&self) -> Vec<String> {
        super::ipam::tree(self.cache.path())
            .into_iter()
            .filter(|p| self.cache.join(p).is_file())
            .collect()
    }

    /// The cached result of an attachment (libcni's `results/<net>-<id>-<ifname>`), if any.
    pub fn cached_result(&self, network: &str, id: &str, ifname: &str) -> Option<Value> {
        let file = self.cache.join(format!("results/{network}-{id}-{ifname}"));
        let text = std::fs::read_to_string(file).ok()?;
        let entry: Value = serde_json::from_str(&text).expect("cache file is JSON");
        Some(entry["result"].clone())
    }

    /// `net ARGS... --conf-dir <conf> --cache-dir <cache> --cni-path <farm>`, not yet run
    /// (add `.arg(..)`s, then [`Cni::run_in`] a host).
    pub fn cmd(&self, args: &[&str]) -> Cni {
        let farm = Farm::shared();
        let mut cni = Cni::new(farm, "net");
        for a in args {
            cni = cni.arg(*a);
        }
        cni.arg("--conf-dir")
            .arg(self.conf.path())
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--cni-path")
            .arg(farm.dir())
    }

    /// Runs `net ARGS...` (see [`NetTool::cmd`]) inside `host`.
    pub fn run(&self, host: &TestNs, args: &[&str]) -> Outcome {
        self.cmd(args).run_in(host)
    }
}
