//! Throwaway network namespaces for end-to-end tests, in the spirit of the reference's
//! `testutils.NewNS`, but held by a child process instead of a bind mount: `unshare --net` runs a
//! tiny shell that reports ready and then blocks on its stdin, and the namespace is reached as
//! `/proc/<pid>/ns/net`. Nothing is named or mounted, so nothing can collide or be left behind:
//! drop kills the holder and anything else left running inside (also while a failing test
//! unwinds), and if the whole test process dies
//! its end of the stdin pipe closes, the holder exits and the kernel frees the namespace.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// One throwaway network namespace, alive as long as this value.
#[derive(Debug)]
pub struct TestNs {
    label: String,
    holder: Child,
    path: PathBuf,
}

/// A "host" namespace (where plugins run, as a runtime would run them) and a "container" one.
#[derive(Debug)]
pub struct Pair {
    /// Stands in for the machine: plugins are executed inside it.
    pub host: TestNs,
    /// The sandbox handed to plugins as `CNI_NETNS`.
    pub container: TestNs,
}

impl Pair {
    /// Two fresh namespaces labelled `<label>-host` and `<label>-ctr`.
    pub fn new(label: &str) -> Pair {
        Pair {
            host: TestNs::new(&format!("{label}-host")),
            container: TestNs::new(&format!("{label}-ctr")),
        }
    }
}

impl TestNs {
    /// Creates a fresh, empty netns (only a down `lo`). Panics if that is impossible (not root).
    pub fn new(label: &str) -> TestNs {
        TestNs::spawn(label, &["--net"], "true")
    }

    /// A fresh netns whose holder also has a private mount namespace, prepared by the shell
    /// script `setup` (e.g. tmpfs over `/run`) before it reports ready; reach it with
    /// [`TestNs::mount_path`]. For programs, like a container runtime, that keep state in fixed
    /// paths of the machine.
    pub fn with_mounts(label: &str, setup: &str) -> TestNs {
        TestNs::spawn(
            label,
            &["--net", "--mount", "--propagation", "private"],
            setup,
        )
    }

    fn spawn(label: &str, unshare: &[&str], setup: &str) -> TestNs {
        let script = format!("{setup} && echo ready && exec cat >/dev/null");
        let mut holder = Command::new("unshare")
            .args(unshare)
            .args(["--", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `unshare --net` (util-linux) for {label}: {e}"));
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("piped stdout")).read_line(&mut line);
        if line.trim_end() != "ready" {
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = holder.kill();
            let _ = holder.wait();
            panic!("could not create netns {label}: {}", err.trim());
        }
        let path = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
        TestNs {
            label: label.to_string(),
            holder,
            path,
        }
    }

    /// `/proc/<pid>/ns/net`: what to pass as `CNI_NETNS` or to `nsenter --net=`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `/proc/<pid>/ns/mnt`: the holder's mount namespace (private with [`TestNs::with_mounts`]).
    pub fn mount_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.holder.id()))
    }

    /// The pid of the process holding the namespace.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// The label given at creation (for messages).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The namespace's inode number (what `readlink /proc/<pid>/ns/net` shows as `net:[N]`).
    pub fn inode(&self) -> u64 {
        netns_inode(&self.path)
    }

    /// Runs `argv` inside the namespace (`nsenter --net=<path> -- argv...`) and returns its output,
    /// whatever the exit status.
    pub fn exec<I, S>(&self, argv: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn nsenter into {}: {e}", self.label))
    }

    /// Like [`TestNs::exec`], but panics (with stderr) unless the command succeeds; returns stdout.
    pub fn run<I, S>(&self, argv: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let argv: Vec<_> = argv
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.exec(&argv);
        if !out.status.success() {
            panic!(
                "in netns {}: {:?} failed ({}): {}",
                self.label,
                argv,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).expect("command output is UTF-8")
    }

    /// Runs a shell script inside the namespace; panics unless it succeeds; returns stdout.
    pub fn sh(&self, script: &str) -> String {
        self.run(["sh", "-c", script])
    }

    /// `ip ARGS...` inside the namespace; panics unless it succeeds; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        self.run(std::iter::once("ip").chain(args.iter().copied()))
    }

    /// The oracle: `ip -j ARGS...` inside the namespace, parsed. Empty output is an empty array.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(["ip", "-j"].into_iter().chain(args.iter().copied()));
        if out.trim().is_empty() {
            return serde_json::Value::Array(Vec::new());
        }
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ip -j {args:?} gave bad JSON ({e}): {out}"))
    }

    /// The link named `name` with details (`ip -j -d link show`), or `None` if there is none.
    pub fn link(&self, name: &str) -> Option<serde_json::Value> {
        let links = self.ip_json(&["-d", "link", "show"]);
        links
            .as_array()?
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    /// Names of all links in the namespace, in kernel order.
    pub fn link_names(&self) -> Vec<String> {
        let links = self.ip_json(&["link", "show"]);
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // Anything a test started inside (a daemon, a stray `sleep`) would keep the namespace
        // alive after the holder exits, so it goes first. Never the test's own namespace.
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let own = id(Path::new("/proc/self/ns/net"));
        if let Some(ns) = id(&self.path).filter(|&ns| Some(ns) != own) {
            for pid in pids_in_netns(ns) {
                if pid != self.holder.id() {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Every process whose netns is `(dev, ino)`.
fn pids_in_netns(ns: (u64, u64)) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let m = std::fs::metadata(format!("/proc/{pid}/ns/net"));
            m.is_ok_and(|m| (m.dev(), m.ino()) == ns)
        })
        .collect()
}

/// The inode of the netns at `path` (e.g. `/proc/self/ns/net`): equal inodes, same namespace.
pub fn netns_inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}
