//! Where idle leases wait: one timer thread for the whole daemon instead of one sleeping thread
//! per lease. A lease worker with nothing to do until T1 hands itself over as a closure due at
//! T1 and its thread ends; the timer thread starts a fresh thread for it when it is due (or
//! at once, when the daemon must release it early). A hundred bound leases so cost a hundred
//! small heap objects, not a hundred stacks and per-thread allocator caches (the reference
//! keeps one goroutine per lease). After threads have gone, the timer thread hands freed heap
//! back to the kernel, so the daemon's RSS follows the leases it holds now, not its peak.

use super::client::Ms;
use super::lease::{STACK, now_ms};
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// What a parked lease does when it is due: run its worker again (on a fresh thread).
pub type Resume = Box<dyn FnOnce() + Send>;

/// A parked lease's place in the queue: due time and a unique number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(Ms, u64);

#[derive(Default)]
struct Queue {
    due: BTreeMap<Ticket, Resume>,
    next_id: u64,
    /// Threads ended since the last heap trim.
    dirty: bool,
}

struct Timer {
    queue: Mutex<Queue>,
    cv: Condvar,
}

/// Settle time before trimming the heap: long enough for the threads that just parked to end.
const TRIM_AFTER: Duration = Duration::from_millis(200);

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
        }));
        if let Err(e) = std::thread::Builder::new()
            .name("dhcp-timer".into())
            .stack_size(STACK)
            .spawn(move || t.run())
        {
            // Without it nothing parked would wake: the daemon cannot keep leases.
            eprintln!("dhcp daemon: cannot start the timer thread: {e}");
            std::process::abort();
        }
        t
    })
}

/// Parks `resume` until `at` (ms since the epoch).
pub fn park(at: Ms, resume: Resume) -> Ticket {
    let t = timer();
    let mut q = t.queue.lock().unwrap();
    q.next_id += 1;
    let ticket = Ticket(at, q.next_id);
    q.due.insert(ticket, resume);
    q.dirty = true;
    t.cv.notify_one();
    ticket
}

/// Takes a parked closure back before it is due (None when it already ran).
pub fn unpark(ticket: Ticket) -> Option<Resume> {
    timer().queue.lock().unwrap().due.remove(&ticket)
}

/// Runs `f` on a new lease thread; a thread that cannot start is retried a second later.
pub fn start(f: Resume) {
    let slot = std::sync::Arc::new(Mutex::new(Some(f)));
    let mine = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("dhcp-lease".into())
        .stack_size(STACK)
        .spawn(move || {
            if let Some(f) = mine.lock().unwrap().take() {
                f()
            }
        });
    if let Err(e) = spawned {
        eprintln!("dhcp daemon: cannot start a lease thread ({e}); retrying in 1 s");
        if let Some(f) = slot.lock().unwrap().take() {
            park(now_ms() + 1000, f);
        }
    }
}

impl Timer {
    fn run(&self) {
        let mut q = self.queue.lock().unwrap();
        loop {
            let now = now_ms();
            let first = q.due.keys().next().copied();
            match first {
                Some(t) if t.0 <= now => {
                    let f = q.due.remove(&t).expect("first key is present");
                    drop(q);
                    start(f);
                    q = self.queue.lock().unwrap();
                }
                _ => {
                    let until_due = first.map_or(Duration::from_secs(3600), |t| {
                        Duration::from_millis(t.0 - now)
                    });
                    let wait = if q.dirty {
                        until_due.min(TRIM_AFTER)
                    } else {
                        until_due
                    };
                    let (g, res) = self.cv.wait_timeout(q, wait).unwrap();
                    q = g;
                    if res.timed_out() && q.dirty {
                        q.dirty = false;
                        trim_heap();
                    }
                }
            }
        }
    }
}

/// Returns free heap pages to the kernel (glibc keeps them otherwise).
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn parked_work_runs_when_due_and_unparked_work_never() {
        let (tx, rx) = channel();
        let tx2 = tx.clone();
        let soon = park(now_ms() + 50, Box::new(move || tx.send("due").unwrap()));
        let later = park(
            now_ms() + 60_000,
            Box::new(move || tx2.send("later").unwrap()),
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("due"));
        assert!(unpark(soon).is_none(), "already ran");
        let f = unpark(later).expect("still parked");
        f();
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok("later"));
    }
}
