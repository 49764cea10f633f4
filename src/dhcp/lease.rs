//! One worker per lease: drives a [`Client`] with the clock and the packets of a socket that
//! exists only while an exchange is under way (so an idle lease holds no fd and does not pin
//! the container's netns), persists each bound lease, and sends DHCPRELEASE when stopped.
//! The worker has a thread only while it has something to do: bound until T1, it parks on the
//! daemon's one timer thread ([`super::park`]). Mirrors the reference's per-lease goroutine
//! (`maintain`), including "stop maintaining when the link is gone".

use super::Target;
use super::client::{Action, Client, Dest, Lease, Ms, State};
use super::packet::{self, Outgoing, Params};
use super::park::{self, Ticket};
use super::rawsock::RawSock;
use super::store::{Record, Store};
use crate::netlink::Handle;
use crate::netns::Netns;
use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Stack of a lease thread: the work is shallow, and RSS counts only touched pages anyway.
pub const STACK: usize = 256 * 1024;
/// How often a thread waiting for a packet also looks at its control channel.
const SLICE: Duration = Duration::from_millis(100);

/// Milliseconds since the Unix epoch (lease times persist across restarts).
pub fn now_ms() -> Ms {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Ms)
        .unwrap_or(0)
}

/// What a waiting Allocate sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No lease yet.
    Acquiring,
    /// Holding this lease.
    Bound(Granted),
    /// Gave up; the thread has ended.
    Failed(Failure),
    /// Released or dropped; the thread has ended.
    Stopped,
}

/// Why an acquisition gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What happened, for the plugin's error.
    pub msg: String,
    /// No server answered within the limits: worth trying again later (CNI code 11), unlike
    /// a missing interface or netns.
    pub no_answer: bool,
}

impl Failure {
    /// A failure that no retry mends.
    pub fn hard(msg: String) -> Failure {
        Failure {
            msg,
            no_answer: false,
        }
    }
}

/// A bound lease of either family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granted {
    /// DHCPv4.
    V4(Lease),
    /// DHCPv6.
    V6(super::v6::Lease6),
}

/// Settings every lease shares (from the daemon's flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Retry timing.
    pub timing: super::client::Timing,
    /// `-broadcast`.
    pub broadcast: bool,
    /// `-hostprefix`, put before every netns path.
    pub hostprefix: String,
    /// Lease files.
    pub store: Store,
}

/// The daemon's handle on one lease worker.
pub struct LeaseHandle {
    status: Mutex<Status>,
    cv: Condvar,
    stop: Mutex<Sender<Sender<()>>>,
    parked: Mutex<Parked>,
}

/// Whether the worker waits on the timer thread.
enum Parked {
    /// It has (or is about to get) a thread of its own.
    Running,
    /// It waits on the timer thread under this ticket.
    At(Ticket),
    /// A stop was sent: the worker must not park again.
    Stopping,
}

impl LeaseHandle {
    /// Blocks until the lease is bound or has failed.
    pub fn wait(&self) -> Result<Granted, Failure> {
        let mut st = self.status.lock().unwrap();
        loop {
            match &*st {
                Status::Acquiring => st = self.cv.wait(st).unwrap(),
                Status::Bound(l) => return Ok(l.clone()),
                Status::Failed(e) => return Err(e.clone()),
                Status::Stopped => {
                    return Err(Failure::hard("the lease was released meanwhile".into()));
                }
            }
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.lock().unwrap().clone()
    }

    /// Asks the worker to send DHCPRELEASE and end (waking it when parked); returns when it
    /// has (or has already).
    pub fn stop(&self) {
        let (tx, rx) = channel();
        if self.stop.lock().unwrap().send(tx).is_err() {
            return;
        }
        let was = std::mem::replace(&mut *self.parked.lock().unwrap(), Parked::Stopping);
        if let Parked::At(ticket) = was
            && let Some(resume) = park::unpark(ticket)
        {
            park::start(resume);
        }
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }

    /// Parks `worker` until `at`, when the timer thread runs `run(worker)` on a new thread;
    /// refused (the worker handed back) once a stop was sent, so the caller goes on to read its
    /// stop channel: the message is queued before the flag is set, so it is there.
    pub fn park<W: Send + 'static>(&self, at: Ms, worker: W, run: fn(W)) -> Result<(), W> {
        let mut p = self.parked.lock().unwrap();
        if matches!(*p, Parked::Stopping) {
            return Err(worker);
        }
        *p = Parked::At(park::park(at, Box::new(move || run(worker))));
        Ok(())
    }

    /// A handle in `status`, and the receiving end of its stop channel.
    pub fn new(status: Status) -> (Arc<LeaseHandle>, Receiver<Sender<()>>) {
        let (tx, rx) = channel();
        let h = Arc::new(LeaseHandle {
            status: Mutex::new(status),
            cv: Condvar::new(),
            stop: Mutex::new(tx),
            parked: Mutex::new(Parked::Running),
        });
        (h, rx)
    }

    /// Publishes a new status and wakes the waiters.
    pub fn set(&self, s: Status) {
        *self.status.lock().unwrap() = s;
        self.cv.notify_all();
    }
}

/// Starts a thread for `target`: a fresh acquisition, or the resumption of `resume`.
pub fn spawn(set: &Settings, target: Target, resume: Option<Lease>) -> Result<Arc<LeaseHandle>> {
    let status = match &resume {
        Some(l) => Status::Bound(Granted::V4(l.clone())),
        None => Status::Acquiring,
    };
    let (h, rx) = LeaseHandle::new(status);
    let seed = (now_ms() as u32) ^ hash(&target.client_id());
    let client = match resume {
        Some(l) => Client::resume(set.timing, seed, l, now_ms()),
        None => Client::new(set.timing, seed),
    };
    let w = Worker {
        set: set.clone(),
        target,
        client,
        conn: None,
        handle: h.clone(),
        stop: rx,
        stop_pending: None,
    };
    std::thread::Builder::new()
        .name("dhcp-lease".into())
        .stack_size(STACK)
        .spawn(move || w.run())
        .context("start lease thread")?;
    Ok(h)
}

/// FNV-1a, for xid seeds.
pub fn hash(s: &str) -> u32 {
    s.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    })
}

/// An open exchange: the socket in the container's netns and the message parameters.
struct Conn {
    sock: RawSock,
    params: Params,
}

struct Worker {
    set: Settings,
    target: Target,
    client: Client,
    conn: Option<Conn>,
    handle: Arc<LeaseHandle>,
    stop: Receiver<Sender<()>>,
    /// A stop read while deciding whether to park.
    stop_pending: Option<Sender<()>>,
}

/// Idle for less than this, a worker keeps its thread rather than park.
pub const PARK_ABOVE: Ms = 2000;

impl Worker {
    fn run(mut self) {
        let cid = self.target.client_id();
        let mut actions = self.client.tick(now_ms());
        loop {
            if let Err(e) = self.perform(actions) {
                self.finish_failed(&cid, e);
                return;
            }
            if matches!(self.handle.status(), Status::Failed(_)) {
                return;
            }
            let wake = match self.idle_until() {
                Some(due) if due > now_ms() + PARK_ABOVE => {
                    self.conn = None;
                    let h = self.handle.clone();
                    match h.park(due, self, Worker::run) {
                        Ok(()) => return,
                        Err(me) => self = me,
                    }
                    self.wait()
                }
                _ => self.wait(),
            };
            actions = match wake {
                Wake::Stop(done) => {
                    self.release(&cid);
                    let _ = done.send(());
                    // Only now: closing the packet socket waits for an RCU grace period.
                    self.conn = None;
                    return;
                }
                Wake::Reply(payload, mac) => match packet::parse(&payload, &self.mac()) {
                    Some(r) => self.client.on_reply(&r, mac, now_ms()),
                    None => Vec::new(),
                },
                Wake::Tick => self.client.tick(now_ms()),
            };
        }
    }

    /// Bound with no exchange: a failure means the container (netns or link) is gone, so the
    /// lease is dropped; during an acquisition it is the answer to the waiting ADD.
    fn finish_failed(&mut self, cid: &str, e: anyhow::Error) {
        let msg = format!("{e:#}");
        if self.client.lease().is_some() {
            eprintln!("dhcp daemon: {cid}: stop maintaining the lease: {msg}");
            let _ = self.set.store.remove(cid);
            self.handle.set(Status::Stopped);
        } else {
            self.handle.set(Status::Failed(Failure::hard(msg)));
        }
    }

    fn mac(&self) -> [u8; 6] {
        self.conn.as_ref().map(|c| c.params.mac).unwrap_or_default()
    }

    fn perform(&mut self, actions: Vec<Action>) -> Result<()> {
        for a in actions {
            match a {
                Action::Send(what, xid, dest) => self.send(what, xid, dest)?,
                Action::Bound(lease) => {
                    // Answer first, then persist (an fsync) and close the packet socket (which
                    // waits for an RCU grace period): neither is on the ADD's path.
                    self.handle.set(Status::Bound(Granted::V4(lease.clone())));
                    let rec = Record {
                        target: self.target.clone(),
                        lease: Some(lease),
                        lease6: None,
                    };
                    if let Err(e) = self.set.store.save(&rec) {
                        eprintln!("dhcp daemon: {e:#}");
                    }
                    self.conn = None;
                }
                Action::Failed(msg) => {
                    let ifname = &self.target.ifname;
                    self.conn = None;
                    self.handle.set(Status::Failed(Failure {
                        msg: format!("DHCP on {ifname}: {msg}"),
                        no_answer: true,
                    }));
                }
                Action::Expired => {
                    eprintln!(
                        "dhcp daemon: {}: lease expired without renewal",
                        self.target.client_id()
                    );
                    self.handle.set(Status::Acquiring);
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, what: Outgoing, xid: u32, dest: Dest) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(self.open()?);
        }
        let conn = self.conn.as_ref().expect("just opened");
        let payload = packet::build(&conn.params, what, xid);
        let src = match what {
            Outgoing::Request {
                ciaddr: Some(a), ..
            }
            | Outgoing::Release { ciaddr: a, .. } => a,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let (dst, mac) = match dest {
            Dest::Broadcast => (Ipv4Addr::BROADCAST, [0xff; 6]),
            Dest::Unicast(ip, mac) => (ip, mac),
        };
        if let Err(e) = conn.sock.send(src, dst, mac, &payload) {
            // A lost send is a lost packet: the retry schedule covers it.
            eprintln!("dhcp daemon: {}: {e:#}", self.target.client_id());
        }
        Ok(())
    }

    /// Opens the container's netns by path, finds the interface (setting it up if down) and
    /// opens the socket there.
    fn open(&self) -> Result<Conn> {
        let (ns, link) = container_link(&self.set, &self.target)?;
        let ifname = &self.target.ifname;
        let mac = link
            .mac
            .with_context(|| format!("{ifname} has no Ethernet address"))?;
        let sock = RawSock::open(&ns, link.index)?;
        let params = Params {
            client_id: self.target.client_id().into_bytes(),
            mac,
            request: self.target.request.clone(),
            provide: self
                .target
                .provide
                .iter()
                .map(|(c, v)| (*c, v.as_bytes().to_vec()))
                .collect(),
            broadcast: self.set.broadcast,
        };
        Ok(Conn { sock, params })
    }

    /// When the worker has nothing to do but wait for the clock: until when.
    fn idle_until(&mut self) -> Option<Ms> {
        if let Ok(done) = self.stop.try_recv() {
            self.stop_pending = Some(done);
            return None;
        }
        let idle = self.conn.is_none() || !self.client.expects_reply();
        idle.then(|| self.client.deadline())
    }

    fn wait(&mut self) -> Wake {
        if let Some(done) = self.stop_pending.take() {
            return Wake::Stop(done);
        }
        let stop = &self.stop;
        loop {
            let now = now_ms();
            let due = self.client.deadline();
            if now >= due {
                return Wake::Tick;
            }
            let left = Duration::from_millis(due - now);
            match &self.conn {
                Some(c) if self.client.expects_reply() => {
                    if let Ok(done) = stop.try_recv() {
                        return Wake::Stop(done);
                    }
                    if let Ok(Some((p, mac))) = c.sock.recv(left.min(SLICE)) {
                        return Wake::Reply(p, mac);
                    }
                }
                _ => match stop.recv_timeout(left) {
                    Ok(done) => return Wake::Stop(done),
                    Err(RecvTimeoutError::Timeout) => {}
                    // The daemon dropped the handle: it is shutting down.
                    Err(RecvTimeoutError::Disconnected) => std::thread::park(),
                },
            }
        }
    }

    /// DEL: DHCPRELEASE (errors only logged, as the reference), then forget the lease.
    fn release(&mut self, cid: &str) {
        if let Some(lease) = self.client.lease().cloned() {
            let held = matches!(
                self.client.state(),
                State::Bound | State::Renewing | State::Rebinding
            );
            if held {
                let what = Outgoing::Release {
                    ciaddr: lease.ack.yiaddr,
                    server: lease.server,
                };
                let dest = Dest::Unicast(lease.server, lease.server_mac);
                if let Err(e) = self.send(what, self.client_xid(), dest) {
                    eprintln!("dhcp daemon: {cid}: release: {e:#}");
                }
            }
        }
        if let Err(e) = self.set.store.remove(cid) {
            eprintln!("dhcp daemon: {cid}: {e:#}");
        }
        self.handle.set(Status::Stopped);
    }

    fn client_xid(&self) -> u32 {
        hash(&self.target.client_id()) ^ now_ms() as u32
    }
}

/// The target's netns and interface there, set up if it was down.
pub fn container_link(set: &Settings, target: &Target) -> Result<(Netns, crate::netlink::Link)> {
    let path = format!("{}{}", set.hostprefix, target.netns);
    let ns = Netns::open(&path)?;
    let nl = Handle::in_netns(&ns)?;
    let ifname = &target.ifname;
    let link = nl
        .link_by_name(ifname)?
        .with_context(|| format!("no interface {ifname} in netns {path}"))?;
    if !link.is_up() {
        bring_up(&nl, &link)?;
    }
    Ok((ns, link))
}

/// Sets `link` up and waits (up to 2 s) for it to run: frames sent before the carrier is up
/// (a veth whose peer just came up) are dropped, and the first resend is `timeout` away.
pub fn bring_up(nl: &Handle, link: &crate::netlink::Link) -> Result<()> {
    nl.set_up(link.index)
        .with_context(|| format!("set {} up", link.name))?;
    for _ in 0..40 {
        match nl.link_by_index(link.index)? {
            Some(l) if l.flags & libc::IFF_RUNNING as u32 != 0 => return Ok(()),
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
            None => anyhow::bail!("{} disappeared", link.name),
        }
    }
    Ok(())
}

enum Wake {
    Stop(Sender<()>),
    Reply(Vec<u8>, [u8; 6]),
    Tick,
}
