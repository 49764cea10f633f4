//! One thread per lease: drives a [`Client`] with the clock and the packets of a socket that
//! exists only while an exchange is under way (so an idle lease holds no fd and does not pin
//! the container's netns), persists each bound lease, and sends DHCPRELEASE when stopped.
//! Mirrors the reference's per-lease goroutine (`maintain`), including "stop maintaining when
//! the link is gone".

use super::Target;
use super::client::{Action, Client, Dest, Lease, Ms, State};
use super::packet::{self, Outgoing, Params};
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
    /// Gave up (the message says why); the thread has ended.
    Failed(String),
    /// Released or dropped; the thread has ended.
    Stopped,
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

/// The daemon's handle on one lease thread.
pub struct LeaseHandle {
    status: Mutex<Status>,
    cv: Condvar,
    stop: Mutex<Sender<Sender<()>>>,
}

impl LeaseHandle {
    /// Blocks until the lease is bound or has failed.
    pub fn wait(&self) -> Result<Granted, String> {
        let mut st = self.status.lock().unwrap();
        loop {
            match &*st {
                Status::Acquiring => st = self.cv.wait(st).unwrap(),
                Status::Bound(l) => return Ok(l.clone()),
                Status::Failed(e) => return Err(e.clone()),
                Status::Stopped => return Err("the lease was released meanwhile".into()),
            }
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.lock().unwrap().clone()
    }

    /// Asks the thread to send DHCPRELEASE and end; returns when it has (or has already).
    pub fn stop(&self) {
        let (tx, rx) = channel();
        if self.stop.lock().unwrap().send(tx).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }

    /// A handle in `status`, and the receiving end of its stop channel.
    pub fn new(status: Status) -> (Arc<LeaseHandle>, Receiver<Sender<()>>) {
        let (tx, rx) = channel();
        let h = Arc::new(LeaseHandle {
            status: Mutex::new(status),
            cv: Condvar::new(),
            stop: Mutex::new(tx),
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
    let mut w = Worker {
        set: set.clone(),
        target,
        client,
        conn: None,
        handle: h.clone(),
    };
    std::thread::Builder::new()
        .name("dhcp-lease".into())
        .stack_size(STACK)
        .spawn(move || w.run(rx))
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
}

impl Worker {
    fn run(&mut self, stop: Receiver<Sender<()>>) {
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
            actions = match self.wait(&stop) {
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
            self.handle.set(Status::Failed(msg));
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
                    self.handle
                        .set(Status::Failed(format!("DHCP on {ifname}: {msg}")));
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
        let path = format!("{}{}", self.set.hostprefix, self.target.netns);
        let ns = Netns::open(&path)?;
        let nl = Handle::in_netns(&ns)?;
        let ifname = &self.target.ifname;
        let link = nl
            .link_by_name(ifname)?
            .with_context(|| format!("no interface {ifname} in netns {path}"))?;
        if !link.is_up() {
            bring_up(&nl, &link)?;
        }
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

    fn wait(&mut self, stop: &Receiver<Sender<()>>) -> Wake {
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
