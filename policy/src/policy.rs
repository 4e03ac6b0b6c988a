//! [`BpfPolicy`]: a verified eBPF program driving one flow through the
//! [`CongestionControl`] trait, and [`ParamHandle`], its hot-reloadable parameters.
//!
//! Contract (on top of the trait's): a program can neither crash nor stall the engine.
//!
//! * Every event runs the program at most once, and the program has no loops (verifier), so
//!   an event costs at most the verified longest path.
//! * A run that fails (rbpf reports an error), returns non-zero, or produces no limit at all is
//!   a *fault*: it is counted ([`BpfPolicy::faults`]), its message kept
//!   ([`BpfPolicy::last_fault`]), and the last good [`Limits`] stay in force.
//! * Outputs are sanitised, never trusted: a window is `None` for 0 and otherwise clamped to
//!   [1, [`MAX_WINDOW`]] bytes; a rate is `None` for 0 and otherwise clamped to [1 bit/s, line
//!   rate]; a timer at or before the latest event time is dropped (so a program cannot make
//!   the engine spin on an expired timer); a path hint outside [1, 65536] is dropped. Before the
//!   first good run the flow is paced at line rate.
//! * Parameters come from a [`ParamHandle`] the engine keeps: a write there is seen by every
//!   flow sharing the handle at its next event (one atomic load per event; the copy into the
//!   flow's context happens only when the generation changed).
//!
//! Times given to the program are picoseconds ([`Instant::as_ps`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use weir_base::{Instant, Rate};
use weir_congestion::{CongestionControl, Feedback, Limits, LossKind, PathHint, PathInfo, Sent};

use crate::abi::{
    ABI_VERSION, Context, Hop, MAX_HOPS, MAX_PARAMS, STATE_BYTES, event, fb_flags, loss,
};
use crate::program::Program;

/// Largest window a program may set, in bytes (1 TiB).
pub const MAX_WINDOW: u64 = 1 << 40;

/// Why parameters could not be set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// More values than the context holds.
    #[error("{0} parameters given, at most {MAX_PARAMS} are supported")]
    TooMany(usize),
    /// An index past [`MAX_PARAMS`].
    #[error("parameter index {0} is out of range (at most {MAX_PARAMS} parameters)")]
    Index(usize),
    /// A name the program does not declare.
    #[error("unknown parameter `{0}`")]
    Unknown(String),
}

/// Shared, hot-reloadable parameters (see the module documentation).
#[derive(Clone)]
pub struct ParamHandle {
    inner: Arc<ParamCell>,
}

struct ParamCell {
    /// Bumped (under the lock, after the write) on every change.
    generation: AtomicU64,
    values: Mutex<ParamValues>,
}

#[derive(Clone, Copy)]
struct ParamValues {
    values: [u64; MAX_PARAMS],
    len: usize,
}

impl ParamHandle {
    /// Parameters `values[0..]`; the rest are 0.
    pub fn new(values: &[u64]) -> Result<ParamHandle, ParamError> {
        let handle = ParamHandle {
            inner: Arc::new(ParamCell {
                generation: AtomicU64::new(1),
                values: Mutex::new(ParamValues {
                    values: [0; MAX_PARAMS],
                    len: 0,
                }),
            }),
        };
        handle.store(values)?;
        Ok(handle)
    }

    /// The program's declared defaults, then `pairs` by the names it declares.
    pub fn named(program: &Program, pairs: &[(&str, u64)]) -> Result<ParamHandle, ParamError> {
        let handle = ParamHandle::new(program.param_defaults())?;
        for &(name, value) in pairs {
            handle.set_named(program, name, value)?;
        }
        Ok(handle)
    }

    /// Replaces all values (the rest become 0).
    pub fn store(&self, values: &[u64]) -> Result<(), ParamError> {
        if values.len() > MAX_PARAMS {
            return Err(ParamError::TooMany(values.len()));
        }
        self.update(|p| {
            p.values = [0; MAX_PARAMS];
            p.values[..values.len()].copy_from_slice(values);
            p.len = values.len();
        });
        Ok(())
    }

    /// Sets parameter `index`.
    pub fn set(&self, index: usize, value: u64) -> Result<(), ParamError> {
        if index >= MAX_PARAMS {
            return Err(ParamError::Index(index));
        }
        self.update(|p| {
            p.values[index] = value;
            p.len = p.len.max(index + 1);
        });
        Ok(())
    }

    /// Sets the parameter `program` calls `name`.
    pub fn set_named(&self, program: &Program, name: &str, value: u64) -> Result<(), ParamError> {
        let index = program
            .param_index(name)
            .ok_or_else(|| ParamError::Unknown(name.to_string()))?;
        self.set(index, value)
    }

    /// The current values (as many as were set).
    pub fn values(&self) -> Vec<u64> {
        let p = *self.lock();
        p.values[..p.len].to_vec()
    }

    /// Changes so far (starts at 1).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ParamValues> {
        self.inner
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut ParamValues)) {
        let mut p = self.lock();
        f(&mut p);
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// Copies the values into `ctx` if they changed since generation `seen`; returns the
    /// generation now in `ctx`.
    fn sync(&self, ctx: &mut Context, seen: u64) -> u64 {
        let now = self.generation();
        if now == seen {
            return seen;
        }
        let p = self.lock();
        // Read again under the lock: writers bump it while holding the lock.
        let now = self.generation();
        ctx.params = p.values;
        ctx.n_params = p.len as u32;
        ctx.params_gen = now as u32;
        now
    }
}

impl fmt::Debug for ParamHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamHandle")
            .field("generation", &self.generation())
            .field("values", &self.values())
            .finish()
    }
}

/// Counters of one flow's policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyStats {
    /// Program runs (including INIT).
    pub runs: u64,
    /// Faulty runs (see the module documentation).
    pub faults: u64,
}

/// A congestion controller whose law is a verified eBPF [`Program`]. See the module
/// documentation for the guarantees.
pub struct BpfPolicy {
    program: Program,
    params: ParamHandle,
    seen_generation: u64,
    ctx: Box<Context>,
    line: u64,
    limits: Limits,
    timer: Option<Instant>,
    /// Latest event time.
    now: Instant,
    stats: PolicyStats,
    last_fault: Option<String>,
}

impl BpfPolicy {
    /// A controller for one flow described by `path`, running `program` with `params`. Runs
    /// the program's INIT event at `now`.
    pub fn new(program: &Program, params: &ParamHandle, now: Instant, path: &PathInfo) -> Self {
        let line = path.line_rate.bps().max(1);
        let mut ctx = Box::new(Context::zeroed());
        ctx.abi_version = ABI_VERSION;
        ctx.line_rate_bps = line;
        ctx.base_rtt_ps = path.base_rtt.map_or(0, |d| d.as_ps());
        ctx.mtu = path.mtu;
        ctx.paths = path.paths;
        let mut policy = BpfPolicy {
            program: program.clone(),
            params: params.clone(),
            seen_generation: 0,
            ctx,
            line,
            limits: Limits {
                window: None,
                rate: Some(Rate::from_bps(line)),
                path_hint: None,
            },
            timer: None,
            now,
            stats: PolicyStats::default(),
            last_fault: None,
        };
        policy.run(now, event::INIT);
        policy
    }

    /// Faulty runs so far.
    pub fn faults(&self) -> u64 {
        self.stats.faults
    }

    /// The latest fault's message.
    pub fn last_fault(&self) -> Option<&str> {
        self.last_fault.as_deref()
    }

    /// Counters.
    pub fn stats(&self) -> PolicyStats {
        self.stats
    }

    /// The flow's state bytes as the program left them.
    pub fn state(&self) -> &[u8; STATE_BYTES] {
        &self.ctx.state
    }

    /// The program this flow runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Runs the program for one event whose fields are already in the context.
    fn run(&mut self, now: Instant, kind: u32) {
        self.seen_generation = self.params.sync(&mut self.ctx, self.seen_generation);
        self.ctx.event = kind;
        self.ctx.now_ps = now.as_ps();
        self.stats.runs += 1;
        match self.program.run(&mut self.ctx) {
            Ok(0) => self.take_outputs(now),
            Ok(code) => self.fault(format!("the program returned {code}")),
            Err(e) => self.fault(e.to_string()),
        }
        self.now = self.now.max(now);
        if self.timer.is_some_and(|t| t <= self.now) {
            self.timer = None;
        }
    }

    fn fault(&mut self, message: String) {
        self.stats.faults += 1;
        self.last_fault = Some(message);
    }

    /// Reads and sanitises the outputs of a successful run.
    fn take_outputs(&mut self, now: Instant) {
        let c = &self.ctx;
        let window = (c.out_window != 0).then(|| c.out_window.min(MAX_WINDOW));
        let rate = (c.out_rate_bps != 0).then(|| Rate::from_bps(c.out_rate_bps.min(self.line)));
        if window.is_none() && rate.is_none() {
            self.fault("the program set neither a window nor a rate".to_string());
            return;
        }
        let path_hint = (1..=65_536).contains(&c.out_path_hint).then(|| PathHint {
            avoid: (c.out_path_hint - 1) as u16,
        });
        let seen = self.now.max(now);
        self.timer = (c.out_timer_ps > seen.as_ps()).then(|| Instant::from_ps(c.out_timer_ps));
        self.limits = Limits {
            window,
            rate,
            path_hint,
        };
    }
}

impl CongestionControl for BpfPolicy {
    fn on_sent(&mut self, now: Instant, sent: &Sent) {
        let c = &mut self.ctx;
        c.sent_bytes = u64::from(sent.bytes);
        c.sent_in_flight = sent.in_flight;
        c.sent_path = sent.path;
        c.sent_retransmit = u8::from(sent.retransmit);
        self.run(now, event::SENT);
    }

    fn on_feedback(&mut self, now: Instant, fb: &Feedback<'_>) {
        let c = &mut self.ctx;
        c.fb_acked_bytes = fb.acked_bytes;
        c.fb_ecn_bytes = fb.ecn_bytes;
        c.fb_rtt_ps = fb.rtt.map_or(0, |d| d.as_ps());
        c.fb_host_delay_ps = fb.host_delay.map_or(0, |d| d.as_ps());
        c.fb_lost_bytes = fb.lost_bytes;
        c.fb_in_flight = fb.in_flight;
        c.fb_acked_packets = fb.acked_packets;
        let mut flags = 0;
        if fb.cnp {
            flags |= fb_flags::CNP;
        }
        if fb.rto {
            flags |= fb_flags::RTO;
        }
        if fb.rtt.is_some() {
            flags |= fb_flags::RTT;
        }
        if fb.host_delay.is_some() {
            flags |= fb_flags::HOST_DELAY;
        }
        c.fb_flags = flags;
        c.fb_path = fb.path;
        c.fb_loss = match fb.loss {
            None => loss::NONE,
            Some(LossKind::Detected) => loss::DETECTED,
            Some(LossKind::Trimmed) => loss::TRIMMED,
            Some(LossKind::TrimmedLastHop) => loss::TRIMMED_LAST_HOP,
            Some(LossKind::ReceiverNoResources) => loss::RECEIVER_NO_RESOURCES,
        };
        let n = fb.hops.len().min(MAX_HOPS);
        for (slot, hop) in c.hops.iter_mut().zip(&fb.hops[..n]) {
            *slot = Hop {
                qlen: hop.qlen,
                rate_bps: hop.rate.bps(),
                tx_bytes: hop.tx_bytes,
                ts_ps: hop.ts.as_ps(),
            };
        }
        c.fb_n_hops = n as u8;
        c.fb_hops_total = u32::try_from(fb.hops.len()).unwrap_or(u32::MAX);
        self.run(now, event::FEEDBACK);
    }

    fn on_timeout(&mut self, now: Instant) {
        self.run(now, event::TIMEOUT);
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.timer
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn name(&self) -> &'static str {
        "ebpf"
    }
}

impl fmt::Debug for BpfPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpfPolicy")
            .field("program", &self.program)
            .field("limits", &self.limits)
            .field("timer", &self.timer)
            .field("stats", &self.stats)
            .field("last_fault", &self.last_fault)
            .finish_non_exhaustive()
    }
}
