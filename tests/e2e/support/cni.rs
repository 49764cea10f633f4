//! The CNI call builder: execs a plugin the way a runtime does (libcni's `invoke.ExecPlugin`):
//! the `CNI_*` variables in a clean environment, the network configuration on stdin, and the
//! result or error JSON read from stdout. The program runs inside a [`TestNs`] standing in for
//! the host (`nsenter --net=<host>`), never in the machine's namespace.

use super::farm::Farm;
use super::netns::TestNs;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The only variable besides the builder's own that the plugin sees (it execs iptables-restore).
pub const STD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a call may take before it is killed and the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One plugin call, built step by step and run with [`Cni::run_in`] (any number of times).
#[derive(Debug, Clone)]
pub struct Cni {
    program: PathBuf,
    argv: Vec<OsString>,
    env: BTreeMap<String, String>,
    stdin: Vec<u8>,
    timeout: Duration,
}

/// What a call did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit code; 128 + N when killed by signal N.
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// stdout parsed as JSON, when it is JSON.
    pub json: Option<serde_json::Value>,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Cni {
    /// Calls applet `applet` through its symlink in `farm`, with `CNI_PATH` set to the farm.
    pub fn new(farm: &Farm, applet: &str) -> Cni {
        Cni::at(farm.applet(applet)).path(farm.dir())
    }

    /// Calls any program (a reference plugin, a test script) with nothing set yet.
    pub fn at(program: impl Into<PathBuf>) -> Cni {
        Cni {
            program: program.into(),
            argv: Vec::new(),
            env: BTreeMap::new(),
            stdin: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `CNI_COMMAND` (ADD, DEL, CHECK, GC, STATUS, VERSION).
    pub fn command(self, verb: &str) -> Cni {
        self.env("CNI_COMMAND", verb)
    }

    /// `CNI_CONTAINERID`.
    pub fn container_id(self, id: &str) -> Cni {
        self.env("CNI_CONTAINERID", id)
    }

    /// `CNI_NETNS`, usually `pair.container.path()`.
    pub fn netns(self, path: impl AsRef<Path>) -> Cni {
        let p = path
            .as_ref()
            .to_str()
            .expect("UTF-8 netns path")
            .to_string();
        self.env("CNI_NETNS", &p)
    }

    /// `CNI_IFNAME`.
    pub fn ifname(self, name: &str) -> Cni {
        self.env("CNI_IFNAME", name)
    }

    /// `CNI_ARGS` (`K=V;K2=V2`).
    pub fn args(self, args: &str) -> Cni {
        self.env("CNI_ARGS", args)
    }

    /// `CNI_PATH` (set to the farm by [`Cni::new`]).
    pub fn path(self, path: impl AsRef<Path>) -> Cni {
        let p = path.as_ref().to_str().expect("UTF-8 CNI_PATH").to_string();
        self.env("CNI_PATH", &p)
    }

    /// Any other variable.
    pub fn env(mut self, key: &str, value: &str) -> Cni {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Removes a variable set earlier (e.g. to test a missing `CNI_PATH`).
    pub fn unset(mut self, key: &str) -> Cni {
        self.env.remove(key);
        self
    }

    /// The network configuration on stdin: a `serde_json::Value`, or any text.
    pub fn config(self, json: impl fmt::Display) -> Cni {
        self.stdin(json.to_string())
    }

    /// Raw stdin bytes (for malformed input).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cni {
        self.stdin = bytes.into();
        self
    }

    /// A command-line argument (for tool applets; plugins get none from a runtime).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Cni {
        self.argv.push(arg.into());
        self
    }

    /// Runs the call under another program (`strace -f -o LOG`, `timeout 5`): `wrapper`'s first
    /// word becomes the program, its other words and then the original program come first in
    /// argv; environment and stdin are unchanged.
    pub fn under<I, S>(mut self, wrapper: I) -> Cni
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut words: Vec<OsString> = wrapper.into_iter().map(Into::into).collect();
        assert!(!words.is_empty(), "an empty wrapper");
        let program = std::mem::replace(&mut self.program, PathBuf::from(words.remove(0)));
        words.push(program.into_os_string());
        words.append(&mut self.argv);
        self.argv = words;
        self
    }

    /// How long the call may run before it is killed and the test panics.
    pub fn timeout(mut self, limit: Duration) -> Cni {
        self.timeout = limit;
        self
    }

    /// Execs the program inside `host` and waits for it.
    pub fn run_in(&self, host: &TestNs) -> Outcome {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", host.path().display()))
            .arg("--")
            .arg(&self.program)
            .args(&self.argv)
            .env_clear()
            .env("PATH", STD_PATH)
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn nsenter for {}: {e}", self.program.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let input = self.stdin.clone();
        // Feed and drain on threads: a plugin that ignores stdin or floods stdout must not deadlock us.
        let writer = std::thread::spawn(move || {
            let mut stdin = stdin;
            let _ = stdin.write_all(&input);
        });
        let out = drain(child.stdout.take().expect("piped stdout"));
        let err = drain(child.stderr.take().expect("piped stderr"));
        let status = wait_with_deadline(&mut child, self.timeout).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {:?} timed out after {:?}",
                self.program.display(),
                self.env,
                self.timeout
            )
        });
        let _ = writer.join();
        let stdout = out.join().expect("stdout reader");
        let stderr = err.join().expect("stderr reader");
        let json = serde_json::from_str(&stdout).ok();
        Outcome {
            code: exit_code(status),
            stdout,
            json,
            stderr,
        }
    }
}

impl Cni {
    /// Execs the program inside `host`, SIGKILLs it after `delay` unless it has ended, and
    /// returns its exit code (128 + 9 when the kill landed); `None` if it did not end at all.
    /// Output is discarded.
    pub fn run_killed_after(&self, host: &TestNs, delay: Duration) -> Option<i32> {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", host.path().display()))
            .arg("--")
            .arg(&self.program)
            .args(&self.argv)
            .env_clear()
            .env("PATH", STD_PATH)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn nsenter for {}: {e}", self.program.display()));
        if wait_with_deadline(&mut child, delay).is_none() {
            let _ = child.kill();
        }
        wait_with_deadline(&mut child, self.timeout).map(exit_code)
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for plugin") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

impl Outcome {
    /// Panics (showing the whole outcome) unless the call exited 0.
    pub fn ok(&self) -> &Outcome {
        assert_eq!(self.code, 0, "expected success, got:\n{self}");
        self
    }

    /// The result JSON of a successful call; panics on failure or when stdout is not JSON.
    pub fn result(&self) -> &serde_json::Value {
        self.ok();
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("expected a JSON result, got:\n{self}"))
    }

    /// The `code` of an error JSON on stdout, if there is one.
    pub fn error_code(&self) -> Option<u64> {
        self.json.as_ref()?.get("code")?.as_u64()
    }

    /// Panics unless the call failed with an error JSON carrying `code`; returns that JSON.
    pub fn expect_error(&self, code: u64) -> &serde_json::Value {
        assert_ne!(
            self.code, 0,
            "expected error code {code}, got success:\n{self}"
        );
        assert_eq!(
            self.error_code(),
            Some(code),
            "expected error code {code}, got:\n{self}"
        );
        self.json.as_ref().expect("checked above")
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit code: {}", self.code)?;
        writeln!(f, "stdout: {}", self.stdout.trim_end())?;
        write!(f, "stderr: {}", self.stderr.trim_end())
    }
}
