//! The per-lease DHCPv4 client state machine, pure: the driver feeds it the time and the
//! replies it received, and does what it answers (send a message, report the lease, give up).
//! No sockets, no clocks, so timers and retries are tested directly.
//!
//! States follow RFC 2131 §4.4: INIT -> SELECTING -> REQUESTING -> BOUND -> RENEWING (at T1,
//! unicast REQUEST with ciaddr) -> REBINDING (at T2, broadcast) -> INIT at expiry. Retries
//! mirror the reference daemon (`backoffRetry`): resend 4 times after 2 s ± 1 s, then after
//! 4 s ± 1 s doubling up to `resend_max`, each wait capped by `timeout`; one acquisition gives
//! up after `resend_timeout` (the reference's "no more tries"). (The reference waits `timeout`
//! inside each try and then sleeps the back-off; a first DISCOVER lost while a freshly set-up
//! link settles then costs 12 s, so the two are folded into one wait here.) Defaults when the ACK
//! lacks them: lease 1 h, T1 = lease/2, T2 = 7/8 of the lease (RFC 2131 §4.4.5).

use super::packet::{Outgoing, Reply, ReplyKind};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Milliseconds (on any monotonic-enough clock; the daemon uses Unix time so leases persist).
pub type Ms = u64;

/// Retry knobs, from the daemon's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `-timeout`: how long one send waits for its answer.
    pub timeout: Ms,
    /// `-resendmax`: the longest back-off between two sends.
    pub resend_max: Ms,
    /// `-resendtimeout`: the limit for one whole acquisition.
    pub resend_timeout: Ms,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout: 10_000,
            resend_max: 62_000,
            resend_timeout: 208_000,
        }
    }
}

/// A bound lease, as persisted and handed to the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The ACK it came from (address, mask, routes, times).
    pub ack: Reply,
    /// The server that granted it (option 54, else the sender).
    pub server: Ipv4Addr,
    /// Link-layer address of the server (or the relay that forwarded its answer).
    pub server_mac: [u8; 6],
    /// When it was granted (ms).
    pub start: Ms,
}

impl Lease {
    /// Lease length in ms (1 h when the server gave none).
    pub fn length(&self) -> Ms {
        Ms::from(self.ack.lease_secs.unwrap_or(3600)) * 1000
    }
    /// T1 (renewal) as an absolute time.
    pub fn t1(&self) -> Ms {
        self.start
            + self
                .ack
                .t1_secs
                .map_or(self.length() / 2, |s| Ms::from(s) * 1000)
    }
    /// T2 (rebinding) as an absolute time.
    pub fn t2(&self) -> Ms {
        self.start
            + self
                .ack
                .t2_secs
                .map_or(self.length() * 7 / 8, |s| Ms::from(s) * 1000)
    }
    /// Expiry as an absolute time.
    pub fn expiry(&self) -> Ms {
        self.start + self.length()
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Limited broadcast to `ff:ff:ff:ff:ff:ff`.
    Broadcast,
    /// Unicast to the server (RENEWING) through its link-layer address.
    Unicast(Ipv4Addr, [u8; 6]),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message with this transaction id.
    Send(Outgoing, u32, Dest),
    /// A new or renewed lease: persist it and answer whoever waits.
    Bound(Lease),
    /// The acquisition failed for good; the driver reports it and stops.
    Failed(String),
    /// The lease ran out without renewal; the address must no longer be used.
    Expired,
}

/// Protocol states (RFC 2131 figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing sent yet.
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST sent for an OFFER, waiting for the ACK.
    Requesting,
    /// Holding a lease until T1.
    Bound,
    /// T1 passed: unicast REQUESTs to the server.
    Renewing,
    /// T2 passed: broadcast REQUESTs to any server.
    Rebinding,
}

/// One client.
#[derive(Debug, Clone)]
pub struct Client {
    timing: Timing,
    state: State,
    xid: u32,
    seed: u32,
    /// Sends so far in this exchange (for the back-off).
    sends: u32,
    /// When to send again (or act on a timer) next.
    next: Ms,
    /// When the current acquisition gives up (INIT/SELECTING/REQUESTING only).
    give_up: Ms,
    /// The OFFER being requested.
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
    /// The current lease, if any.
    lease: Option<Lease>,
    /// An address to ask for again (a lease that expired).
    wanted: Option<Ipv4Addr>,
}

impl Client {
    /// A client that will acquire a new lease; `seed` makes xids and jitter differ per client.
    pub fn new(timing: Timing, seed: u32) -> Client {
        Client {
            timing,
            state: State::Init,
            xid: seed,
            seed: seed | 1,
            sends: 0,
            next: 0,
            give_up: 0,
            offer: None,
            lease: None,
            wanted: None,
        }
    }

    /// A client that resumes a persisted lease (BOUND, RENEWING or REBINDING by the clock;
    /// INIT asking for the same address when it already expired).
    pub fn resume(timing: Timing, seed: u32, lease: Lease, now: Ms) -> Client {
        let mut c = Client::new(timing, seed);
        if now >= lease.expiry() {
            c.wanted = Some(lease.ack.yiaddr);
            return c;
        }
        c.state = State::Bound;
        c.next = lease.t1();
        c.lease = Some(lease);
        c
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The lease held, if any.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// When [`Client::tick`] next has work to do.
    pub fn deadline(&self) -> Ms {
        self.next
    }

    /// True while the client is waiting for an answer (the driver keeps a socket open).
    pub fn expects_reply(&self) -> bool {
        !matches!(self.state, State::Bound)
    }

    /// Time passes: send, resend, change state on a timer, or give up.
    pub fn tick(&mut self, now: Ms) -> Vec<Action> {
        if now < self.next && self.state != State::Init {
            return Vec::new();
        }
        match self.state {
            State::Init => self.start_discover(now),
            State::Selecting | State::Requesting if now >= self.give_up => {
                let what = if self.state == State::Selecting {
                    "no DHCPOFFER"
                } else {
                    "no DHCPACK"
                };
                let tries = self.sends;
                self.state = State::Init;
                self.next = Ms::MAX;
                vec![Action::Failed(format!(
                    "{what} within {} ms ({tries} tries): no more tries",
                    self.timing.resend_timeout
                ))]
            }
            State::Selecting => self.resend(now, self.discover()),
            State::Requesting => self.resend(now, self.select_request()),
            State::Bound => {
                self.state = State::Renewing;
                self.sends = 0;
                self.new_xid();
                self.renew_step(now)
            }
            State::Renewing | State::Rebinding => self.renew_step(now),
        }
    }

    /// A reply arrived.
    pub fn on_reply(&mut self, r: &Reply, from_mac: [u8; 6], now: Ms) -> Vec<Action> {
        if r.xid != self.xid {
            return Vec::new();
        }
        match (self.state, r.kind) {
            (State::Selecting, ReplyKind::Offer) => {
                let Some(server) = r.server else {
                    return Vec::new();
                };
                self.offer = Some((r.yiaddr, server));
                self.state = State::Requesting;
                self.sends = 0;
                self.resend(now, self.select_request())
            }
            (State::Requesting | State::Renewing | State::Rebinding, ReplyKind::Ack) => {
                let server = r.server.or(self.offer.map(|o| o.1));
                let lease = Lease {
                    ack: r.clone(),
                    server: server.unwrap_or(Ipv4Addr::BROADCAST),
                    server_mac: from_mac,
                    start: now,
                };
                self.state = State::Bound;
                self.next = lease.t1();
                self.lease = Some(lease.clone());
                self.sends = 0;
                vec![Action::Bound(lease)]
            }
            (State::Requesting | State::Renewing | State::Rebinding, ReplyKind::Nak) => {
                // RFC 2131 §4.4.4 / §4.4.5: back to INIT; the old address is gone.
                let had = self.lease.take().is_some();
                self.state = State::Init;
                self.wanted = None;
                let mut out = if had {
                    vec![Action::Expired]
                } else {
                    Vec::new()
                };
                out.extend(self.start_discover(now));
                out
            }
            _ => Vec::new(),
        }
    }

    fn start_discover(&mut self, now: Ms) -> Vec<Action> {
        self.state = State::Selecting;
        self.sends = 0;
        self.offer = None;
        self.give_up = now + self.timing.resend_timeout;
        self.new_xid();
        self.resend(now, self.discover())
    }

    fn discover(&self) -> Outgoing {
        Outgoing::Discover {
            requested: self.wanted,
        }
    }

    fn select_request(&self) -> Outgoing {
        let (addr, server) = self.offer.expect("REQUESTING always has an offer");
        Outgoing::Request {
            requested: Some(addr),
            server: Some(server),
            ciaddr: None,
        }
    }

    /// Sends `what` now and schedules the next try after the back-off delay, at most
    /// `timeout` (an answer may arrive any time until then).
    fn resend(&mut self, now: Ms, what: Outgoing) -> Vec<Action> {
        let delay = self.backoff(self.sends).min(self.timing.timeout.max(1));
        self.sends += 1;
        self.next = (now + delay).min(self.give_up);
        vec![Action::Send(what, self.xid, Dest::Broadcast)]
    }

    /// RENEWING/REBINDING: one REQUEST with ciaddr; retry at half the time left to the next
    /// boundary, no sooner than 2 s (RFC 2131 §4.4.5 says 60 s; short test leases need less).
    fn renew_step(&mut self, now: Ms) -> Vec<Action> {
        let lease = self.lease.clone().expect("renewing always has a lease");
        if now >= lease.expiry() {
            self.lease = None;
            self.state = State::Init;
            self.wanted = Some(lease.ack.yiaddr);
            let mut out = vec![Action::Expired];
            out.extend(self.start_discover(now));
            // After expiry the client keeps trying for good (nobody waits on it).
            self.give_up = Ms::MAX;
            return out;
        }
        if self.state == State::Renewing && now >= lease.t2() {
            self.state = State::Rebinding;
        }
        let (boundary, dest) = match self.state {
            State::Renewing => (lease.t2(), Dest::Unicast(lease.server, lease.server_mac)),
            _ => (lease.expiry(), Dest::Broadcast),
        };
        self.sends += 1;
        self.next = (now + (boundary - now) / 2).max(now + 2000).min(boundary);
        let req = Outgoing::Request {
            requested: None,
            server: None,
            ciaddr: Some(lease.ack.yiaddr),
        };
        vec![Action::Send(req, self.xid, dest)]
    }

    /// The sleep after send number `n` (0-based): 4 fast ones of 2 s, then 4 s doubling to
    /// `resend_max`, each ± 1 s of jitter.
    fn backoff(&mut self, n: u32) -> Ms {
        let base: Ms = if n < 4 {
            2000
        } else {
            (4000u64 << (n - 4).min(16)).min(self.timing.resend_max.max(4000))
        };
        base - 1000 + Ms::from(self.rand() % 2000)
    }

    fn new_xid(&mut self) {
        self.xid = self.rand();
    }

    /// xorshift32: enough for xids and jitter, and reproducible in tests.
    fn rand(&mut self) -> u32 {
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.seed = x;
        x
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
