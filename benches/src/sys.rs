//! Machine facts and process controls for the benchmark: CPU pressure (PSI), core pinning,
//! SCHED_FIFO, pre-touched buffers and latency histograms.
//!
//! On a machine shared with other jobs (the project's has two cores), numbers are only
//! meaningful with the pressure reported next to them, and are best taken under `SCHED_FIFO`;
//! `docs/benchmarking.md` describes the machine and the method.

use std::io;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Real-time priority used by `--rt` (the same as `chrt -f 10`, as `docs/benchmarking.md` runs
/// the benches).
pub const RT_PRIORITY: i32 = 10;

/// `some avg10` of `/proc/pressure/cpu`: the share of the last 10 s (in %) in which at least one
/// runnable task waited for a CPU. `None` where PSI is unavailable.
pub fn cpu_pressure_some_avg10() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    parse_psi_some_avg10(&text)
}

fn parse_psi_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let field = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?;
    field.parse().ok()
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether this process already runs under a real-time policy (e.g. started with `chrt -f`).
pub fn inherited_rt() -> Option<i32> {
    // SAFETY: sched_getscheduler and sched_getparam only read the calling process's policy;
    // `param` is a plain C struct that the call fills in.
    unsafe {
        let policy = libc::sched_getscheduler(0);
        if policy == libc::SCHED_FIFO || policy == libc::SCHED_RR {
            let mut param: libc::sched_param = std::mem::zeroed();
            if libc::sched_getparam(0, &mut param) == 0 {
                return Some(param.sched_priority);
            }
        }
    }
    None
}

/// What a benchmark peer applied of `--pin` / `--rt`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedApplied {
    /// The core the process was pinned to.
    pub cpu: Option<usize>,
    /// The process runs under SCHED_FIFO at this priority (set by us or inherited).
    pub fifo: Option<i32>,
    /// Why a requested setting could not be applied.
    pub errors: Vec<String>,
}

/// Pin the calling thread (and every thread it creates afterwards) to `cpu` and/or switch it to
/// SCHED_FIFO. Failures are recorded, not fatal: the benchmark still runs.
pub fn apply_sched(cpu: Option<usize>, rt: bool) -> SchedApplied {
    let mut out = SchedApplied::default();
    if let Some(cpu) = cpu {
        let cpu = cpu % cpus().max(1);
        match pin_to(cpu) {
            Ok(()) => out.cpu = Some(cpu),
            Err(e) => out
                .errors
                .push(format!("sched_setaffinity(cpu {cpu}): {e}")),
        }
    }
    if rt {
        match set_fifo(RT_PRIORITY) {
            Ok(()) => {}
            Err(e) => out.errors.push(format!(
                "sched_setscheduler(SCHED_FIFO, {RT_PRIORITY}): {e}"
            )),
        }
    }
    out.fifo = inherited_rt();
    out
}

fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bitmask; CPU_ZERO/CPU_SET write inside it (cpu is below the
    // CPU count, far below CPU_SETSIZE); sched_setaffinity reads `size_of` bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_fifo(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sched_setscheduler reads the parameter struct we pass; pid 0 is this process.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `d` in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A buffer of `len` bytes whose every page has been written once, so that the timed part of a
/// run takes no first-touch page faults (2–3 µs per 4 KiB on the project machine).
pub fn touched_buffer(len: usize, pattern: u8) -> Vec<u8> {
    // `vec![x; n]` with x != 0 is a memset: every page is faulted in here, not later.
    vec![pattern | 1; len]
}

/// The host's UDP receive-buffer drops so far (`RcvbufErrors` in `/proc/net/snmp`, all
/// sockets of the host's network namespace); `None` where it cannot be read.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    parse_snmp_udp(
        &std::fs::read_to_string("/proc/net/snmp").ok()?,
        "RcvbufErrors",
    )
}

/// The `field` of the `Udp:` lines of `/proc/net/snmp` (a header line, then a value line).
fn parse_snmp_udp(text: &str, field: &str) -> Option<u64> {
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Latency recorder: nanoseconds in an HDR histogram (3 significant digits, up to one hour).
#[derive(Debug)]
pub struct LatencyHist {
    hist: Histogram<u64>,
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist::new()
    }
}

impl LatencyHist {
    /// An empty histogram.
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
            .unwrap_or_else(|_| unreachable!("constant bounds are valid"));
        LatencyHist { hist }
    }

    /// Record one latency (at least 1 ns).
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(ns);
    }

    /// How many were recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The value at `q` (0..=1) in microseconds; `None` when nothing was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        (self.count() > 0).then(|| self.hist.value_at_quantile(q) as f64 / 1e3)
    }

    /// The largest value recorded, in microseconds; `None` when nothing was recorded.
    pub fn max_us(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.hist.max() as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_parsing() {
        let text = "some avg10=12.34 avg60=0.69 avg300=0.70 total=5871066\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_psi_some_avg10(text), Some(12.34));
        assert_eq!(parse_psi_some_avg10("garbage"), None);
    }

    #[test]
    fn snmp_parsing() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 10 2 7 12 5 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\n\
                    UdpLite: 0 0 0 0 0\n";
        assert_eq!(parse_snmp_udp(text, "RcvbufErrors"), Some(5));
        assert_eq!(parse_snmp_udp(text, "InErrors"), Some(7));
        assert_eq!(parse_snmp_udp(text, "Nope"), None);
        assert_eq!(parse_snmp_udp("garbage", "RcvbufErrors"), None);
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = LatencyHist::new();
        assert_eq!(h.quantile_us(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile_us(0.5).expect("p50");
        let p99 = h.quantile_us(0.99).expect("p99");
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.1).contains(&p99), "{p99}");
        let max = h.max_us().expect("max");
        assert!((99.9..=100.1).contains(&max), "{max}");
    }

    #[test]
    fn touched_buffer_is_nonzero() {
        let b = touched_buffer(3 * 4096 + 5, 0);
        assert_eq!(b.len(), 3 * 4096 + 5);
        assert!(b.iter().all(|&x| x == 1));
    }
}
