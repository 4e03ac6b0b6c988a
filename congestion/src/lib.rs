//! The congestion-control interface of Weir, and its algorithms.
//!
//! Contract (sans-IO): a [`CongestionControl`] never reads a clock, opens a socket or spawns a
//! thread. The transport feeds it every signal it has, one flat [`Feedback`] record per event,
//! plus [`Sent`] notifications and its own timer ([`CongestionControl::next_timeout`] /
//! [`CongestionControl::on_timeout`]); the controller answers with [`Limits`]: a window in bytes
//! and/or a pacing rate, and optionally a hint to move the flow to another path. Output is
//! always positive and finite whatever the input (a property test checks this).
//!
//! One instance serves one connection; a [`CcFactory`] builds it from a [`CcConfig`] and the
//! facts in [`PathInfo`]. Built-ins are dispatched through the [`Builtin`] enum so the per-ACK
//! path has no virtual call; user policies will come through `Box<dyn CongestionControl>`.
//! The built-ins are described once, in [`registry::BUILTINS`] (name, summary, citation,
//! parameters, how to configure each): [`ALGORITHMS`], [`CcConfig::from_named`] and
//! `weir cc` all read it.
//!
//! Feature `testing` adds `testing`, a packet-level model of flows sharing one bottleneck
//! (its own sender, ACKs, RTO and recovery) for scenario tests and `weir cc run`; it is not
//! part of the production library. Feature `toml` adds `toml_file`, `[cc]` tables in TOML.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

use core::fmt;

use weir_base::{Duration, Instant, Rate};

pub mod dcqcn;
mod dcqcn_params;
pub mod fixed;
pub mod hpcc;
pub mod nscc;
pub mod params;
pub mod rccc;
pub mod registry;
pub mod swift;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timely;
#[cfg(feature = "toml")]
pub mod toml_file;

pub use dcqcn::{Dcqcn, DcqcnParams};
pub use fixed::{Fixed, FixedParams};
pub use hpcc::{Hpcc, HpccParams};
pub use nscc::{Nscc, NsccParams};
pub use params::{ParamError, ParamSpec, Params, Unit};
pub use rccc::{CreditScheduler, Rccc, RcccParams};
pub use registry::AlgorithmInfo;
pub use swift::{Swift, SwiftParams};
pub use timely::{Timely, TimelyParams};

/// A packet the transport just put on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Bytes on the wire for this packet (payload + headers).
    pub bytes: u32,
    /// Path (entropy index) it was sent on.
    pub path: u16,
    /// Whether it is a retransmission.
    pub retransmit: bool,
    /// Bytes in flight after sending it.
    pub in_flight: u64,
}

/// Why a packet was reported lost or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossKind {
    /// Detected from SACK holes / reordering threshold (fast retransmit).
    Detected,
    /// A switch trimmed it in the fabric.
    Trimmed,
    /// The last-hop switch trimmed it (receiver incast).
    TrimmedLastHop,
    /// The receiver had no room (not a network congestion signal).
    ReceiverNoResources,
}

/// One INT record (per hop) as the CC sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HopTelemetry {
    /// Egress queue length in bytes.
    pub qlen: u64,
    /// Egress link rate.
    pub rate: Rate,
    /// Bytes transmitted by the egress port so far (wrapping counter).
    pub tx_bytes: u64,
    /// Switch timestamp.
    pub ts: Instant,
}

/// Everything the transport learnt from one feedback event (an ACK, NACK, CNP, loss detection
/// or retransmission timeout). Fields that do not apply are zero / `None` / empty.
#[derive(Clone, Copy, Debug, Default)]
pub struct Feedback<'a> {
    /// Bytes newly acknowledged (cumulatively or selectively) by this event.
    pub acked_bytes: u64,
    /// Packets newly acknowledged.
    pub acked_packets: u32,
    /// Of the newly reported bytes, how many arrived with ECN CE.
    pub ecn_bytes: u64,
    /// A congestion notification packet (CNP) arrived.
    pub cnp: bool,
    /// Round-trip time sample, if this event carried one.
    pub rtt: Option<Duration>,
    /// Part of `rtt` spent in the receiving host (ACK delay), when the receiver reported it.
    pub host_delay: Option<Duration>,
    /// INT records echoed by the receiver, one per hop.
    pub hops: &'a [HopTelemetry],
    /// A loss or NACK, and its kind.
    pub loss: Option<LossKind>,
    /// Bytes of the lost / NACKed packets.
    pub lost_bytes: u64,
    /// A retransmission timeout fired.
    pub rto: bool,
    /// Path (entropy index) the feedback concerns.
    pub path: u16,
    /// Bytes still in flight after this event.
    pub in_flight: u64,
}

/// Ask to move the flow off a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathHint {
    /// The path that looks congested.
    pub avoid: u16,
}

/// What the controller allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes in flight (`None`: not window-limited).
    pub window: Option<u64>,
    /// Pacing rate (`None`: not rate-limited).
    pub rate: Option<Rate>,
    /// Optional path steering hint.
    pub path_hint: Option<PathHint>,
}

/// Facts about the connection a controller is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathInfo {
    /// Largest payload per packet.
    pub mtu: u32,
    /// Line rate of the local NIC.
    pub line_rate: Rate,
    /// Base (unloaded) round-trip time, if known.
    pub base_rtt: Option<Duration>,
    /// Number of paths the connection sprays over.
    pub paths: u16,
}

/// A congestion controller for one connection. See the crate documentation for the contract.
pub trait CongestionControl: fmt::Debug + Send {
    /// A packet was sent.
    fn on_sent(&mut self, now: Instant, sent: &Sent);
    /// Feedback arrived (ACK/SACK/NACK/ECN/CNP/RTT/INT/loss/RTO).
    fn on_feedback(&mut self, now: Instant, fb: &Feedback<'_>);
    /// The controller's own timer (see [`CongestionControl::next_timeout`]) expired.
    fn on_timeout(&mut self, now: Instant);
    /// When the controller wants [`CongestionControl::on_timeout`] called, if ever.
    fn next_timeout(&self) -> Option<Instant>;
    /// Current window and/or rate.
    fn limits(&self) -> Limits;
    /// Short algorithm name for logs and reports.
    fn name(&self) -> &'static str;
    /// Whether the law needs in-band network telemetry ([`Feedback::hops`]). A transport whose
    /// path carries no INT must refuse such a controller at start-up with a clear error,
    /// not run it blind.
    fn needs_int(&self) -> bool {
        false
    }
}

/// Which built-in controller to run, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CcConfig {
    /// DCQCN-style ECN/CNP rate control.
    Dcqcn(DcqcnParams),
    /// TIMELY: RTT-gradient rate control.
    Timely(TimelyParams),
    /// Swift: delay-target window control.
    Swift(SwiftParams),
    /// HPCC: INT-driven window control.
    Hpcc(HpccParams),
    /// NSCC (UEC): delay + ECN window control with QuickAdapt.
    Nscc(NsccParams),
    /// RCCC (UEC): receiver-paced credit for last-hop incast; turns on the transport's
    /// credit mode.
    Rccc(RcccParams),
    /// A constant window (and optional constant rate); for tests and lossless baselines, and
    /// the transport's default.
    Fixed {
        /// Window in bytes; 0: the path's bandwidth × RTT ([`fixed::AUTO_RTT`]).
        window: u64,
        /// Optional pacing rate.
        rate: Option<Rate>,
    },
}

impl Default for CcConfig {
    fn default() -> Self {
        CcConfig::Fixed {
            window: 0,
            rate: None,
        }
    }
}

/// Why a configuration could not be built.
#[derive(Clone, Debug, PartialEq)]
pub enum CcError {
    /// No built-in of that name.
    UnknownAlgorithm(params::heapless_name::Name),
    /// A parameter was refused.
    Param(ParamError),
}

impl From<ParamError> for CcError {
    fn from(e: ParamError) -> Self {
        CcError::Param(e)
    }
}

impl fmt::Display for CcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CcError::UnknownAlgorithm(n) => write!(
                f,
                "unknown algorithm `{}` (built-ins: {})",
                n.as_str(),
                ALGORITHMS.join(", ")
            ),
            CcError::Param(e) => write!(f, "{e}"),
        }
    }
}

/// Names of the built-in algorithms, as [`CcConfig::by_name`] takes them: those of
/// [`registry::BUILTINS`], in its order.
pub const ALGORITHMS: &[&str] = &registry::NAMES;

impl CcConfig {
    /// The built-in `name` (case-insensitive) with its published defaults.
    pub fn by_name(name: &str) -> Option<CcConfig> {
        registry::find(name).map(AlgorithmInfo::defaults)
    }

    /// The built-in `algorithm` (case-insensitive) with `overrides` applied to its published
    /// defaults, by parameter name in the units of its [`ParamSpec`]s (what a TOML `[cc]`
    /// table or `weir cc run --set` gives). Unknown algorithms, unknown names and
    /// out-of-range values are errors naming the offender.
    pub fn from_named(algorithm: &str, overrides: &[(&str, f64)]) -> Result<CcConfig, CcError> {
        let Some(info) = registry::find(algorithm) else {
            return Err(CcError::UnknownAlgorithm(params::heapless_name::Name::new(
                algorithm,
            )));
        };
        Ok(info.configure(overrides)?)
    }

    /// The algorithm's entry in [`registry::BUILTINS`]: its summary, citation, parameters.
    pub fn info(&self) -> &'static AlgorithmInfo {
        match self {
            CcConfig::Dcqcn(_) => &registry::DCQCN,
            CcConfig::Timely(_) => &registry::TIMELY,
            CcConfig::Swift(_) => &registry::SWIFT,
            CcConfig::Hpcc(_) => &registry::HPCC,
            CcConfig::Nscc(_) => &registry::NSCC,
            CcConfig::Rccc(_) => &registry::RCCC,
            CcConfig::Fixed { .. } => &registry::FIXED,
        }
    }

    /// The algorithm's name (one of [`ALGORITHMS`]).
    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// Whether the configured law needs in-band network telemetry (see
    /// [`CongestionControl::needs_int`]).
    pub fn needs_int(&self) -> bool {
        self.info().needs_int
    }

    /// The value of parameter `name` in the unit of its [`ParamSpec`], `None` if the
    /// algorithm has no such parameter.
    pub fn get(&self, name: &str) -> Option<f64> {
        match *self {
            CcConfig::Dcqcn(p) => p.get(name),
            CcConfig::Timely(p) => p.get(name),
            CcConfig::Swift(p) => p.get(name),
            CcConfig::Hpcc(p) => p.get(name),
            CcConfig::Nscc(p) => p.get(name),
            CcConfig::Rccc(p) => p.get(name),
            CcConfig::Fixed { window, rate } => FixedParams {
                window,
                rate: rate.unwrap_or(Rate::ZERO),
            }
            .get(name),
        }
    }

    /// Every parameter with its value, in display order.
    pub fn values(&self) -> impl Iterator<Item = (&'static ParamSpec, f64)> {
        self.info()
            .specs
            .iter()
            .map(|s| (s, self.get(s.name).unwrap_or(f64::NAN)))
    }
}

macro_rules! from_params {
    ($($params:ident => $variant:ident),* $(,)?) => {
        $(
            impl From<$params> for CcConfig {
                fn from(p: $params) -> Self {
                    CcConfig::$variant(p)
                }
            }
        )*
    };
}

from_params!(
    DcqcnParams => Dcqcn,
    TimelyParams => Timely,
    SwiftParams => Swift,
    HpccParams => Hpcc,
    NsccParams => Nscc,
    RcccParams => Rccc,
);

impl From<FixedParams> for CcConfig {
    fn from(p: FixedParams) -> Self {
        CcConfig::Fixed {
            window: p.window,
            rate: (p.rate > Rate::ZERO).then_some(p.rate),
        }
    }
}

/// Builds one controller per connection.
pub trait CcFactory: Send + Sync {
    /// A fresh controller for a connection described by `path`.
    fn build(&self, now: Instant, path: &PathInfo) -> Builtin;
}

impl CcFactory for CcConfig {
    fn build(&self, now: Instant, path: &PathInfo) -> Builtin {
        match *self {
            CcConfig::Dcqcn(p) => Builtin::Dcqcn(Dcqcn::new(now, path, p)),
            CcConfig::Timely(p) => Builtin::Timely(Timely::new(now, path, p)),
            CcConfig::Swift(p) => Builtin::Swift(Swift::new(now, path, p)),
            CcConfig::Hpcc(p) => Builtin::Hpcc(Hpcc::new(now, path, p)),
            CcConfig::Nscc(p) => Builtin::Nscc(Nscc::new(now, path, p)),
            CcConfig::Rccc(p) => Builtin::Rccc(Rccc::new(now, path, p)),
            CcConfig::Fixed { window, rate } => Builtin::Fixed(Fixed::for_path(window, rate, path)),
        }
    }
}

impl Builtin {
    /// Hot reload: apply `cfg` to a running controller. New parameters for the same
    /// algorithm take effect from the next event with the controller's state kept (returns
    /// `true`); a different algorithm, or one without in-place reload, is rebuilt fresh for
    /// `path` at `now` (returns `false`).
    pub fn reconfigure(&mut self, now: Instant, path: &PathInfo, cfg: &CcConfig) -> bool {
        match (&mut *self, cfg) {
            (Builtin::Dcqcn(c), CcConfig::Dcqcn(p)) => c.set_params(*p),
            (Builtin::Timely(c), CcConfig::Timely(p)) => c.set_params(*p),
            (Builtin::Swift(c), CcConfig::Swift(p)) => c.set_params(*p),
            (Builtin::Hpcc(c), CcConfig::Hpcc(p)) => c.set_params(*p),
            (Builtin::Nscc(c), CcConfig::Nscc(p)) => c.set_params(*p),
            (Builtin::Rccc(c), CcConfig::Rccc(p)) => c.set_params(now, path, *p),
            (Builtin::Fixed(c), CcConfig::Fixed { window, rate }) => {
                *c = Fixed::for_path(*window, *rate, path)
            }
            _ => {
                *self = cfg.build(now, path);
                return false;
            }
        }
        true
    }
}

/// Enum dispatch over the built-in controllers (no virtual call on the per-ACK path).
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the controller is stored inline in per-path state so the per-ACK path has no \
              pointer chase; boxing the large variant would undo what the enum is for"
)]
pub enum Builtin {
    /// DCQCN.
    Dcqcn(Dcqcn),
    /// TIMELY.
    Timely(Timely),
    /// Swift.
    Swift(Swift),
    /// HPCC.
    Hpcc(Hpcc),
    /// NSCC.
    Nscc(Nscc),
    /// RCCC (sender side; the transport reaches its credit account through this variant).
    Rccc(Rccc),
    /// Fixed window.
    Fixed(Fixed),
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Builtin::Dcqcn($c) => $e,
            Builtin::Timely($c) => $e,
            Builtin::Swift($c) => $e,
            Builtin::Hpcc($c) => $e,
            Builtin::Nscc($c) => $e,
            Builtin::Rccc($c) => $e,
            Builtin::Fixed($c) => $e,
        }
    };
}

impl CongestionControl for Builtin {
    fn on_sent(&mut self, now: Instant, sent: &Sent) {
        dispatch!(self, c => c.on_sent(now, sent))
    }
    fn on_feedback(&mut self, now: Instant, fb: &Feedback<'_>) {
        dispatch!(self, c => c.on_feedback(now, fb))
    }
    fn on_timeout(&mut self, now: Instant) {
        dispatch!(self, c => c.on_timeout(now))
    }
    fn next_timeout(&self) -> Option<Instant> {
        dispatch!(self, c => c.next_timeout())
    }
    fn limits(&self) -> Limits {
        dispatch!(self, c => c.limits())
    }
    fn name(&self) -> &'static str {
        dispatch!(self, c => c.name())
    }
    fn needs_int(&self) -> bool {
        dispatch!(self, c => c.needs_int())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_is_built_by_name_and_names_itself() {
        let path = PathInfo {
            mtu: 4096,
            line_rate: Rate::from_gbps(100),
            base_rtt: None,
            paths: 8,
        };
        for &name in ALGORITHMS {
            let cfg = CcConfig::by_name(name).expect(name);
            assert_eq!(cfg.name(), name);
            assert_eq!(CcConfig::by_name(&name.to_ascii_uppercase()), Some(cfg));
            let cc = cfg.build(Instant::ZERO, &path);
            assert_eq!(cc.name(), name);
            assert_eq!(cc.needs_int(), cfg.needs_int(), "{name}");
            let l = cc.limits();
            assert!(l.window.is_some() || l.rate.is_some(), "{name}: {l:?}");
        }
        assert_eq!(CcConfig::by_name("fixed"), Some(CcConfig::default()));
        assert_eq!(CcConfig::by_name("cubic"), None);
    }
}

#[cfg(test)]
mod named_tests {
    use super::*;

    #[test]
    fn overrides_apply_and_errors_name_the_key() {
        let cfg = CcConfig::from_named("Swift", &[]).expect("defaults");
        assert_eq!(cfg, CcConfig::by_name("swift").expect("swift"));
        let CcConfig::Fixed { window, rate } =
            CcConfig::from_named("fixed", &[("window", 65536.0), ("rate", 25.0)]).expect("ok")
        else {
            panic!("not fixed")
        };
        assert_eq!((window, rate), (65536, Some(Rate::from_gbps(25))));
        let e = CcConfig::from_named("dcqcn", &[("rpg_time_rest", 1.0)]).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "unknown parameter `rpg_time_rest` for dcqcn"
        );
        let e = CcConfig::from_named("hpcc", &[("eta", 7.0)]).unwrap_err();
        assert!(alloc::format!("{e}").starts_with("`eta` = 7 is out of range"));
        let e = CcConfig::from_named("bbr", &[]).unwrap_err();
        assert!(alloc::format!("{e}").starts_with("unknown algorithm `bbr`"));
    }
}
