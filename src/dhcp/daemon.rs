//! `dhcp daemon [flags]`: the reference's flags (`-pidfile`, `-hostprefix`, `-socketpath`,
//! `-broadcast`, `-timeout`, `-resendmax`, `-resendtimeout`) plus `-leasedir`, `-v6probe` and
//! `-v6recheck` (see [`super::ra`] and [`Daemon::start`]); systemd socket
//! activation (exactly one inherited listener); leases resumed from the lease directory at
//! start; SIGINT/SIGTERM remove the socket and the pidfile and exit, leaving the lease files
//! so the next start keeps renewing them. One short thread per connection (see the protocol
//! in the module above); a lease has a thread only during an exchange, else it waits on the
//! timer thread of [`super::park`].

use super::client::Timing;
use super::lease::{self, Failure, Granted, LeaseHandle, Settings, Status};
use super::store::Store;
use super::{Request, Response, Target};
use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, Signal};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The daemon's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Flags {
    /// `-pidfile` (absolute).
    pub pidfile: Option<PathBuf>,
    /// `-hostprefix`.
    pub hostprefix: String,
    /// `-socketpath`.
    pub socketpath: PathBuf,
    /// `-broadcast`.
    pub broadcast: bool,
    /// `-timeout`, `-resendmax`, `-resendtimeout`.
    pub timing: Timing,
    /// `-leasedir` (ours).
    pub leasedir: PathBuf,
    /// `-v6probe` (ours): how long an allocation with `auto` DHCPv6 listens for a Router
    /// Advertisement (ms; 0: never probe, no DHCPv6 unless asked for).
    pub v6probe: u64,
    /// `-v6recheck` (ours): how long a network's verdict holds before a background probe
    /// renews it (ms).
    pub v6recheck: u64,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            pidfile: None,
            hostprefix: String::new(),
            socketpath: super::DEFAULT_SOCKET.into(),
            broadcast: false,
            timing: Timing::default(),
            leasedir: super::DEFAULT_LEASE_DIR.into(),
            v6probe: 2000,
            v6recheck: VERDICT_TTL,
        }
    }
}

/// Parses Go-style flags: `-name value`, `-name=value`, `--name`, booleans without a value.
pub fn parse_flags(args: &[OsString]) -> Result<Flags> {
    let mut f = Flags::default();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--").or(arg.strip_prefix('-')) else {
            bail!("unexpected argument {arg:?}");
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        if name == "broadcast" {
            f.broadcast = inline.as_deref().is_none_or(|v| v == "true" || v == "1");
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .with_context(|| format!("flag -{name} needs a value"))?,
        };
        match name.as_str() {
            "pidfile" => {
                if !value.starts_with('/') {
                    bail!("-pidfile {value:?} must be an absolute path");
                }
                f.pidfile = Some(value.into());
            }
            "hostprefix" => f.hostprefix = value,
            "socketpath" => f.socketpath = value.into(),
            "leasedir" => f.leasedir = value.into(),
            "timeout" => f.timing.timeout = go_duration(&value)?,
            "resendmax" => f.timing.resend_max = go_duration(&value)?,
            "resendtimeout" => f.timing.resend_timeout = go_duration(&value)?,
            "v6probe" => f.v6probe = go_duration(&value)?,
            "v6recheck" => f.v6recheck = go_duration(&value)?,
            _ => bail!("unknown flag -{name}"),
        }
    }
    Ok(f)
}

/// A Go `time.Duration` string (`10s`, `1m30s`, `500ms`, `2h`) in milliseconds.
pub fn go_duration(s: &str) -> Result<u64> {
    let bad = || anyhow::anyhow!("invalid duration {s:?}");
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_end] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return Err(bad()),
        };
        total += n * ms;
        rest = &rest[unit_end..];
    }
    Ok(total as u64)
}

/// Entry point of `dhcp daemon`.
pub fn main(args: &[OsString]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhcp daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[OsString]) -> Result<()> {
    let flags = parse_flags(args)?;
    // One malloc arena: a hundred mostly idle lease threads would otherwise each touch one of
    // up to 8 x cores arenas, which is most of the daemon's RSS.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // Block the stop signals before any thread exists, so every thread inherits the mask and
    // only the main thread's sigwait sees them.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block().context("block SIGINT/SIGTERM")?;
    let (listener, owned) = listen(&flags)?;
    if let Some(p) = &flags.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("write pidfile {}", p.display()))?;
    }
    let d = Arc::new(Daemon::start(&flags)?);
    std::thread::Builder::new()
        .name("dhcp-accept".into())
        .spawn(move || serve(listener, d))
        .context("start accept thread")?;
    let sig = stop.wait().context("wait for a signal")?;
    eprintln!("dhcp daemon: {sig}: shutting down");
    if let Some(sock) = owned {
        let _ = std::fs::remove_file(sock);
    }
    if let Some(p) = &flags.pidfile {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// The listener: inherited from systemd (`LISTEN_PID`/`LISTEN_FDS`, fd 3) or bound at
/// `hostprefix + socketpath` (parent 0700, a stale socket replaced). The path is returned
/// when we created it, to remove it at shutdown.
fn listen(flags: &Flags) -> Result<(UnixListener, Option<PathBuf>)> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let fds: u32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if pid_ok && fds > 0 {
        if fds != 1 {
            bail!("socket activation passed {fds} sockets; exactly one is supported");
        }
        // SAFETY: systemd hands fd 3 to this process as the listening socket.
        let l = unsafe { UnixListener::from_raw_fd(3) };
        return Ok((l, None));
    }
    let path = PathBuf::from(format!(
        "{}{}",
        flags.hostprefix,
        flags.socketpath.display()
    ));
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove stale socket {}", path.display()));
        }
        _ => {}
    }
    let l = UnixListener::bind(&path).with_context(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    Ok((l, Some(path)))
}

fn serve(listener: UnixListener, d: Arc<Daemon>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let d = d.clone();
        let spawned = std::thread::Builder::new()
            .name("dhcp-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || d.handle(conn));
        if let Err(e) = spawned {
            eprintln!("dhcp daemon: cannot start a connection thread: {e}");
        }
    }
}

/// How long a network's "is DHCPv6 offered" verdict is trusted before probing again, unless
/// `-v6recheck` says otherwise.
pub const VERDICT_TTL: u64 = 10 * 60 * 1000;

/// The daemon's state: one handle per client id.
pub struct Daemon {
    set: Settings,
    leases: Mutex<HashMap<String, Arc<LeaseHandle>>>,
    v6probe: u64,
    v6recheck: u64,
    /// Per network name: did its routers say DHCPv6 (M flag)?
    verdicts: Arc<Mutex<HashMap<String, Verdict>>>,
}

impl Daemon {
    /// Opens the lease directory and resumes every lease whose netns still exists.
    pub fn start(flags: &Flags) -> Result<Daemon> {
        let store = Store::open(&flags.leasedir)?;
        let set = Settings {
            timing: flags.timing,
            broadcast: flags.broadcast,
            hostprefix: flags.hostprefix.clone(),
            store,
        };
        let d = Daemon {
            set,
            leases: Mutex::new(HashMap::new()),
            v6probe: flags.v6probe,
            v6recheck: flags.v6recheck,
            verdicts: Arc::new(Mutex::new(HashMap::new())),
        };
        for rec in d.set.store.load_all() {
            let cid = rec.target.key();
            let ns = format!("{}{}", d.set.hostprefix, rec.target.netns);
            if !std::path::Path::new(&ns).exists() {
                eprintln!("dhcp daemon: {cid}: netns {ns} is gone; dropping its lease");
                let _ = d.set.store.remove(&cid);
                continue;
            }
            let h = match (rec.lease, rec.lease6) {
                (Some(l), _) => lease::spawn(&d.set, rec.target, Some(l))?,
                (None, Some(l6)) => super::lease6::spawn(&d.set, rec.target, Some(l6))?,
                (None, None) => continue,
            };
            d.leases.lock().unwrap().insert(cid, h);
        }
        Ok(d)
    }

    fn handle(&self, conn: UnixStream) {
        let mut line = String::new();
        let mut reader = BufReader::new(&conn);
        let resp = match reader.read_line(&mut line) {
            Ok(_) => match serde_json::from_str::<Request>(&line) {
                Ok(req) => self.answer(req),
                Err(e) => Response {
                    error: Some(format!("bad request: {e}")),
                    ..Default::default()
                },
            },
            Err(e) => Response {
                error: Some(format!("read request: {e}")),
                ..Default::default()
            },
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        let _ = (&conn).write_all(&out);
    }

    /// Serves one request.
    pub fn answer(&self, req: Request) -> Response {
        let r = match req {
            Request::Allocate { target } => self.allocate(target),
            Request::Release { target } => {
                self.release(&target);
                Ok(None)
            }
            Request::Lookup { target } => Ok(self.lookup(&target)),
            Request::Ping => Ok(None),
        };
        match r {
            Ok(Some(Granted::V4(l))) => Response {
                lease: Some(l),
                ..Default::default()
            },
            Ok(Some(Granted::V6(l))) => Response {
                lease6: Some(l),
                ..Default::default()
            },
            Ok(None) => Response::default(),
            Err(f) => Response {
                error: Some(f.msg),
                code: f.no_answer.then_some(crate::error::code::TRY_AGAIN_LATER),
                ..Default::default()
            },
        }
    }

    fn allocate(&self, target: Target) -> Result<Option<Granted>, Failure> {
        let cid = target.key();
        let live =
            |h: &Arc<LeaseHandle>| !matches!(h.status(), Status::Failed(_) | Status::Stopped);
        if target.auto
            && !self.leases.lock().unwrap().get(&cid).is_some_and(live)
            && !self.dhcpv6_offered(&target)
        {
            return Ok(None);
        }
        let h = {
            let mut map = self.leases.lock().unwrap();
            match map.get(&cid) {
                Some(h) if live(h) => h.clone(),
                _ => {
                    let h = if target.v6 {
                        super::lease6::spawn(&self.set, target, None)
                    } else {
                        lease::spawn(&self.set, target, None)
                    }
                    .map_err(|e| Failure::hard(format!("{e:#}")))?;
                    map.insert(cid.clone(), h.clone());
                    h
                }
            }
        };
        let r = h.wait();
        if r.is_err() {
            let mut map = self.leases.lock().unwrap();
            if map.get(&cid).is_some_and(|cur| Arc::ptr_eq(cur, &h)) {
                map.remove(&cid);
            }
        }
        r.map(Some)
    }

    fn release(&self, target: &Target) {
        let cid = target.key();
        let h = self.leases.lock().unwrap().remove(&cid);
        if let Some(h) = h {
            h.stop();
        }
        // Also when the worker had ended (its lease expired and no server answered since):
        // then nobody else removes the file.
        let _ = self.set.store.remove(&cid);
    }

    fn lookup(&self, target: &Target) -> Option<Granted> {
        let map = self.leases.lock().unwrap();
        match map.get(&target.key())?.status() {
            Status::Bound(l) => Some(l),
            _ => None,
        }
    }

    /// Whether the target's network hands out addresses by DHCPv6: the remembered verdict
    /// (one past [`VERDICT_TTL`] still answers, while a probe in the background renews it),
    /// else a Router Solicitation on the target's interface ([`super::ra`]). A probe that
    /// cannot run (interface gone, IPv6 off on it) says no and is not remembered.
    fn dhcpv6_offered(&self, target: &Target) -> bool {
        if self.v6probe == 0 {
            return false;
        }
        let now = lease::now_ms();
        let stale = {
            let mut v = self.verdicts.lock().unwrap();
            match v.get_mut(&target.network) {
                Some(known) if known.until > now || known.refreshing => return known.managed,
                Some(known) => {
                    known.refreshing = true;
                    Some(known.managed)
                }
                None => None,
            }
        };
        let (set, verdicts) = (self.set.clone(), self.verdicts.clone());
        let (wait, ttl) = (self.v6probe, self.v6recheck);
        match stale {
            Some(managed) => {
                let t = target.clone();
                let spawned = std::thread::Builder::new()
                    .name("dhcp-ra-probe".into())
                    .stack_size(lease::STACK)
                    .spawn(move || probe_and_remember(&set, &verdicts, wait, ttl, &t));
                if spawned.is_err() {
                    self.verdicts.lock().unwrap().remove(&target.network);
                }
                managed
            }
            None => probe_and_remember(&set, &verdicts, wait, ttl, target),
        }
    }
}

/// What a network's routers said, and until when that is trusted.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    until: u64,
    managed: bool,
    /// A background probe is renewing it.
    refreshing: bool,
}

/// Probes `target`'s link for `wait` ms and remembers the network's verdict for `ttl` ms.
fn probe_and_remember(
    set: &Settings,
    verdicts: &Mutex<HashMap<String, Verdict>>,
    wait: u64,
    ttl: u64,
    target: &Target,
) -> bool {
    let verdict = match probe(set, target, wait) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("dhcp daemon: {}: no DHCPv6: {e:#}", target.client_id());
            let mut v = verdicts.lock().unwrap();
            if let Some(known) = v.get_mut(&target.network) {
                known.refreshing = false;
            }
            return false;
        }
    };
    eprintln!(
        "dhcp daemon: network {:?}: {}",
        target.network,
        match verdict {
            Some(a) if a.managed => "a router advertises DHCPv6 (M flag): IPv4 and IPv6",
            Some(_) => "a router advertises no DHCPv6 (no M flag): IPv4 only",
            None => "no router advertisement: IPv4 only",
        }
    );
    let managed = verdict.is_some_and(|a| a.managed);
    let known = Verdict {
        until: lease::now_ms() + ttl,
        managed,
        refreshing: false,
    };
    verdicts
        .lock()
        .unwrap()
        .insert(target.network.clone(), known);
    managed
}

fn probe(set: &Settings, target: &Target, wait: u64) -> Result<Option<super::ra::Advert>> {
    let (ns, link) = lease::container_link(set, target)?;
    let key = format!("net.ipv6.conf.{}.disable_ipv6", target.ifname);
    match crate::sysctl::read_in(&ns, &key) {
        Ok(v) if v.trim() == "0" => {}
        _ => bail!("IPv6 is off on {}", target.ifname),
    }
    let nl = crate::netlink::Handle::in_netns(&ns)?;
    super::ra::probe(&ns, &nl, &link, Duration::from_millis(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_parse_like_go() {
        let f = parse_flags(&os(&[
            "-socketpath",
            "/tmp/x.sock",
            "--broadcast",
            "-timeout=2s",
            "-resendmax",
            "1m",
            "-resendtimeout",
            "1m30s",
            "-pidfile=/run/p",
            "-hostprefix",
            "/host",
            "-v6probe",
            "500ms",
            "-v6recheck=1m",
        ]))
        .unwrap();
        assert_eq!((f.v6probe, f.v6recheck), (500, 60_000));
        assert_eq!(f.socketpath, PathBuf::from("/tmp/x.sock"));
        assert!(f.broadcast);
        assert_eq!(f.timing.timeout, 2000);
        assert_eq!(f.timing.resend_max, 60_000);
        assert_eq!(f.timing.resend_timeout, 90_000);
        assert_eq!(f.pidfile, Some(PathBuf::from("/run/p")));
        assert_eq!(f.hostprefix, "/host");
        assert_eq!(parse_flags(&[]).unwrap(), Flags::default());
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse_flags(&os(&["-pidfile", "rel/p"])).is_err());
        assert!(parse_flags(&os(&["-nope", "1"])).is_err());
        assert!(parse_flags(&os(&["-timeout"])).is_err());
        assert!(parse_flags(&os(&["-timeout", "10"])).is_err());
        assert!(parse_flags(&os(&["stray"])).is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("500ms").unwrap(), 500);
        assert_eq!(go_duration("1h").unwrap(), 3_600_000);
        assert_eq!(go_duration("1.5s").unwrap(), 1500);
        assert!(go_duration("").is_err());
        assert!(go_duration("s").is_err());
    }

    #[test]
    fn release_removes_the_file_of_a_lease_whose_worker_has_ended() {
        let dir = std::env::temp_dir().join(format!("dhcp-release-{}", std::process::id()));
        let flags = Flags {
            leasedir: dir.clone(),
            ..Flags::default()
        };
        let d = Daemon::start(&flags).unwrap();
        let target = Target {
            container_id: "c".into(),
            network: "lan".into(),
            ifname: "eth0".into(),
            netns: "/nonexistent".into(),
            request: vec![],
            provide: vec![],
            v6: false,
            auto: false,
        };
        let rec = super::super::store::Record {
            target: target.clone(),
            lease: None,
            lease6: None,
        };
        d.set.store.save(&rec).unwrap();
        // an ended worker: its stop channel has no receiver
        let (h, rx) = LeaseHandle::new(Status::Failed(Failure::hard("gone".into())));
        drop(rx);
        d.leases.lock().unwrap().insert(target.key(), h);
        assert_eq!(d.set.store.load_all().len(), 1);
        assert_eq!(d.answer(Request::Release { target }), Response::default());
        assert!(d.set.store.load_all().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
