//! One worker per DHCPv6 lease: acquire (SOLICIT..REPLY), persist, park until T1 (on the
//! daemon's timer thread, [`super::park`]), RENEW until T2, REBIND until the valid lifetime
//! ends, then acquire again; RELEASE when stopped. The
//! socket exists only during an exchange, as for DHCPv4 (`lease.rs`). Unlike DHCPv4 this is a
//! plain loop over the blocking exchanges of [`super::v6`], not a separate state machine.

use super::Target;
use super::lease::{
    Failure, Granted, LeaseHandle, PARK_ABOVE, STACK, Settings, Status, hash, now_ms,
};
use super::store::Record;
use super::v6::{self, Ident, Lease6, Sock6};
use anyhow::{Context, Result};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// Starts the thread for `target` (a fresh acquisition, or `resume`).
pub fn spawn(set: &Settings, target: Target, resume: Option<Lease6>) -> Result<Arc<LeaseHandle>> {
    let status = match &resume {
        Some(l) => Status::Bound(Granted::V6(l.clone())),
        None => Status::Acquiring,
    };
    let (h, rx) = LeaseHandle::new(status);
    let w = Worker6 {
        set: set.clone(),
        target,
        handle: h.clone(),
        stop: rx,
        stopped: RefCell::new(None),
        xid: 0,
    };
    std::thread::Builder::new()
        .name("dhcp6-lease".into())
        .stack_size(STACK)
        .spawn(move || w.run(resume))
        .context("start DHCPv6 lease thread")?;
    Ok(h)
}

struct Worker6 {
    set: Settings,
    target: Target,
    handle: Arc<LeaseHandle>,
    stop: Receiver<Sender<()>>,
    stopped: RefCell<Option<Sender<()>>>,
    xid: u32,
}

impl Worker6 {
    fn run(mut self, mut lease: Option<Lease6>) {
        let key = self.target.key();
        self.xid = hash(&key) ^ now_ms() as u32;
        let mut first = lease.is_none();
        loop {
            if self.is_stopped() {
                self.release(lease.as_ref(), &key);
                return;
            }
            if let Some(t1) = lease.as_ref().map(Lease6::t1_at)
                && t1 > now_ms() + PARK_ABOVE
            {
                let h = self.handle.clone();
                match h.park(t1, (self, lease), |(w, l)| w.run(l)) {
                    Ok(()) => return,
                    // A stop is queued: the top of the loop finds it.
                    Err((w, l)) => (self, lease) = (w, l),
                }
                continue;
            }
            let next = match &lease {
                None => self.acquire(),
                Some(l) => match self.sleep_until(l.t1_at()) {
                    true => continue,
                    false => self.extend(l),
                },
            };
            if self.is_stopped() {
                let held = next.ok().or(lease);
                self.release(held.as_ref(), &key);
                return;
            }
            match next {
                Ok(l) => {
                    let rec = Record {
                        target: self.target.clone(),
                        lease: None,
                        lease6: Some(l.clone()),
                    };
                    if let Err(e) = self.set.store.save(&rec) {
                        eprintln!("dhcp daemon: {e:#}");
                    }
                    self.handle.set(Status::Bound(Granted::V6(l.clone())));
                    lease = Some(l);
                    first = false;
                }
                Err(e) if first => {
                    let ifname = &self.target.ifname;
                    self.handle.set(Status::Failed(Failure {
                        msg: format!("DHCPv6 on {ifname}: {e:#}"),
                        no_answer: e.downcast_ref::<v6::NoAnswer>().is_some(),
                    }));
                    return;
                }
                Err(e) => {
                    eprintln!("dhcp daemon: {key}: {e:#}");
                    if lease.as_ref().is_some_and(|l| now_ms() >= l.expiry())
                        || e.to_string().contains("no interface")
                    {
                        let _ = self.set.store.remove(&key);
                        self.handle.set(Status::Stopped);
                        return;
                    }
                }
            }
        }
    }

    /// Waits on the stop channel until `at`; true when a stop arrived.
    fn sleep_until(&self, at: u64) -> bool {
        let now = now_ms();
        if now >= at {
            return false;
        }
        match self.stop.recv_timeout(Duration::from_millis(at - now)) {
            Ok(done) => {
                *self.stopped.borrow_mut() = Some(done);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::park();
                false
            }
        }
    }

    fn is_stopped(&self) -> bool {
        if self.stopped.borrow().is_some() {
            return true;
        }
        if let Ok(done) = self.stop.try_recv() {
            *self.stopped.borrow_mut() = Some(done);
            return true;
        }
        false
    }

    fn open(&self) -> Result<(Sock6, Ident)> {
        let (ns, link) = super::lease::container_link(&self.set, &self.target)?;
        let ifname = &self.target.ifname;
        let mac = link.mac.unwrap_or_default();
        let sock = Sock6::open(&ns, ifname, link.index)?;
        Ok((sock, Ident::new(mac, &self.target.client_id())))
    }

    fn acquire(&mut self) -> Result<Lease6> {
        let (s, id) = self.open()?;
        self.xid = self.xid.wrapping_add(2);
        v6::acquire(&s, &self.set.timing, &id, self.xid, &|| self.is_stopped())
    }

    /// RENEW until T2, then REBIND until expiry.
    fn extend(&mut self, l: &Lease6) -> Result<Lease6> {
        let (s, id) = self.open()?;
        for (rebind, until) in [(false, l.t2_at()), (true, l.expiry())] {
            let mut timing = self.set.timing;
            timing.resend_timeout = until.saturating_sub(now_ms()).max(1000);
            self.xid = self.xid.wrapping_add(2);
            match v6::extend(&s, &timing, &id, self.xid, l, rebind, &|| self.is_stopped()) {
                Ok(n) => return Ok(n),
                Err(e) if self.is_stopped() => return Err(e),
                Err(e) => eprintln!("dhcp daemon: {}: {e:#}", self.target.key()),
            }
        }
        anyhow::bail!("DHCPv6 lease {} expired without renewal", l.addr)
    }

    fn release(&self, lease: Option<&Lease6>, key: &str) {
        if let Some(l) = lease {
            match self.open() {
                Ok((s, id)) => {
                    if let Err(e) = v6::release(&s, &id, self.xid.wrapping_add(1), l) {
                        eprintln!("dhcp daemon: {key}: release: {e:#}");
                    }
                }
                Err(e) => eprintln!("dhcp daemon: {key}: release: {e:#}"),
            }
        }
        let _ = self.set.store.remove(key);
        self.handle.set(Status::Stopped);
        if let Some(done) = self.stopped.borrow_mut().take() {
            let _ = done.send(());
        }
    }
}
