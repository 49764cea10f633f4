//! The token bucket filter (`tbf`) the bandwidth plugin puts on a link, and the tick arithmetic
//! behind it. The numbers are computed exactly as the reference's `ifb_creator.go` does with
//! vishvananda/netlink (`buffer`, `limit`, `time2Tick`, 25 ms latency), so a CHECK of ours
//! accepts a qdisc the reference made and the other way round.
//!
//! Wire layout (`include/uapi/linux/pkt_sched.h`): `TCA_OPTIONS { TCA_TBF_PARMS: tc_tbf_qopt,
//! TCA_TBF_RATE64: u64 (only when the byte rate does not fit 32 bits) }`. No rate table
//! (`TCA_TBF_RTAB`) is sent: the ratespec says `linklayer ethernet`, and since Linux 3.11 the
//! kernel reads the rate table only to guess the link layer when that field is unset. The
//! reference sends none either.

use crate::netlink::attr::{Attr, attr, find, nested, u32_of};
use anyhow::ensure;

/// The latency the reference's TBF is sized for (`latencyInMillis`), in microseconds.
pub const LATENCY_USEC: f64 = 25_000.0;
/// `TIME_UNITS_PER_SEC`: tc times are in microseconds.
const USEC_PER_SEC: f64 = 1_000_000.0;

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// `sizeof(struct tc_ratespec)`.
const RATESPEC_LEN: usize = 12;
/// `sizeof(struct tc_tbf_qopt)`: rate, peakrate, limit, buffer, mtu.
pub(crate) const QOPT_LEN: usize = 2 * RATESPEC_LEN + 12;

/// The kernel's packet-scheduler clock as `/proc/net/psched` advertises it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psched {
    /// Scheduler ticks per microsecond.
    pub ticks_per_usec: f64,
}

impl Default for Psched {
    /// What every kernel since 2.6.31 advertises (`000003e8 00000040 000f4240 ...`): 64 ns ticks.
    fn default() -> Psched {
        Psched {
            ticks_per_usec: 1000.0 / 64.0,
        }
    }
}

impl Psched {
    /// Reads `/proc/net/psched`, falling back to [`Psched::default`] when it cannot be read.
    pub fn read() -> Psched {
        std::fs::read_to_string("/proc/net/psched")
            .ok()
            .and_then(|s| Psched::parse(&s))
            .unwrap_or_default()
    }

    /// Parses the four hex words of `/proc/net/psched` as iproute2's `tc_core_init` does.
    pub fn parse(s: &str) -> Option<Psched> {
        let words: Vec<u64> = s
            .split_whitespace()
            .take(3)
            .map(|w| u64::from_str_radix(w, 16).ok())
            .collect::<Option<_>>()?;
        let [mut t2us, us2t, clock_res] = words[..] else {
            return None;
        };
        if us2t == 0 {
            return None;
        }
        // Nanosecond-resolution kernels advertise a multiplier of 1000 for the sake of old
        // iproute2 binaries; it really is 1 (iproute2 and vishvananda/netlink both undo it).
        if clock_res == 1_000_000_000 {
            t2us = us2t;
        }
        let clock_factor = clock_res as f64 / USEC_PER_SEC;
        Some(Psched {
            ticks_per_usec: t2us as f64 / us2t as f64 * clock_factor,
        })
    }

    /// Microseconds to ticks (`time2Tick`), wrapping past 32 bits as the reference does.
    pub fn ticks(&self, usec: u32) -> u32 {
        go_uint32(usec as f64 * self.ticks_per_usec)
    }
}

/// Go's `uint32(x)` for a float64 as compiled for amd64: truncated to int64 by `CVTTSD2SQ`,
/// then the low 32 bits. So a value past 2^32 wraps where Rust's `as u32` saturates; a value
/// outside int64 (or NaN) becomes the instruction's "integer indefinite" `i64::MIN`, i.e. 0.
fn go_uint32(x: f64) -> u32 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if x.is_nan() || !(-TWO_63..TWO_63).contains(&x) {
        return 0;
    }
    x as i64 as u32
}

/// A token bucket filter as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Rate in bytes per second.
    pub rate: u64,
    /// Bytes that may wait in the queue.
    pub limit: u32,
    /// Bucket size as the time to send it at `rate`, in scheduler ticks.
    pub buffer: u32,
}

impl Tbf {
    /// The reference's TBF for a rate in bit/s and a burst in bits: rate/8 bytes/s, a bucket
    /// of burst/8 bytes, and a queue of 25 ms at that rate plus the bucket. `rate_bits` must
    /// be at least 8. Every step wraps at 32 bits as the reference's does on amd64.
    pub fn from_bits(rate_bits: u64, burst_bits: u64, clock: &Psched) -> Tbf {
        let rate = rate_bits / 8;
        // The reference truncates the burst to 32 bits; config validation keeps it below that.
        let burst = (burst_bits / 8) as u32;
        let usec = go_uint32(burst as f64 * USEC_PER_SEC / rate as f64);
        let queued = go_uint32(rate as f64 * LATENCY_USEC / USEC_PER_SEC);
        Tbf {
            rate,
            limit: queued.wrapping_add(burst),
            buffer: clock.ticks(usec),
        }
    }
}

/// `struct tc_tbf_qopt` for `tbf`: the rate (saturated to 32 bits: the real value then goes in
/// `TCA_TBF_RATE64`), no peak rate, no MTU.
pub(crate) fn qopt_bytes(tbf: &Tbf) -> [u8; QOPT_LEN] {
    let mut b = [0u8; QOPT_LEN];
    // tc_ratespec: cell_log u8, linklayer u8, overhead u16, cell_align i16, mpu u16, rate u32.
    b[1] = TC_LINKLAYER_ETHERNET;
    let rate32 = u32::try_from(tbf.rate).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&rate32.to_ne_bytes());
    // Peak rate (bytes 12..24) stays zero.
    b[24..28].copy_from_slice(&tbf.limit.to_ne_bytes());
    b[28..32].copy_from_slice(&tbf.buffer.to_ne_bytes());
    b
}

/// The `TCA_OPTIONS` children of a `tbf` qdisc.
pub(crate) fn options(tbf: &Tbf) -> anyhow::Result<Vec<Attr<u16>>> {
    ensure!(tbf.rate > 0, "tbf rate must not be zero");
    let mut opts = vec![attr(TCA_TBF_PARMS, qopt_bytes(tbf))?];
    if tbf.rate > u64::from(u32::MAX) {
        opts.push(attr(TCA_TBF_RATE64, tbf.rate)?);
    }
    Ok(opts)
}

/// Reads a dumped `tbf`'s `TCA_OPTIONS` payload back.
pub(crate) fn parse_options(p: &[u8]) -> anyhow::Result<Tbf> {
    let opts = nested::<u16>(p)?;
    let parms = find(&opts, TCA_TBF_PARMS)
        .filter(|q| q.len() >= QOPT_LEN)
        .ok_or_else(|| anyhow::anyhow!("tbf options without TCA_TBF_PARMS"))?;
    let word = |at: usize| u32_of(&parms[at..]).unwrap_or(0);
    let rate64 = find(&opts, TCA_TBF_RATE64)
        .and_then(|r| Some(u64::from_ne_bytes(r.get(..8)?.try_into().ok()?)));
    Ok(Tbf {
        rate: rate64.unwrap_or(u64::from(word(8))),
        limit: word(24),
        buffer: word(28),
    })
}
