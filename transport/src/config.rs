//! Engine configuration.

use weir_base::{Duration, Rate};
use weir_congestion::CcConfig;
use weir_wire::Mode;

/// Configuration of an [`crate::Endpoint`]; both ends of a connection must use the same
/// [`Mode`]. Check a hand-made config with [`Config::validate`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Weir (multipath, selective) or the RoCEv2-like go-back-N baseline.
    pub mode: Mode,
    /// Largest payload per packet (path MTU minus IP/UDP and Weir headers).
    pub max_payload: u32,
    /// Number of entropy values (paths) to spray over. Go-back-N always uses one.
    pub paths: u16,
    /// Consecutive packets sent on one path before moving to the next, so the datapath can
    /// batch them (GSO). 1 = per-packet spraying.
    pub spray_burst: u16,
    /// Line rate of the local NIC, for the congestion controller.
    pub line_rate: Rate,
    /// Congestion control.
    pub cc: CcConfig,
    /// Retransmission timeout before any RTT sample.
    pub initial_rto: Duration,
    /// Lower bound of the retransmission timeout.
    pub min_rto: Duration,
    /// Upper bound of the retransmission timeout (after backoff).
    pub max_rto: Duration,
    /// Shortest reordering window of RACK loss detection: a packet counts as lost only once
    /// one sent at least this much later (or a quarter of the minimum RTT, or the recent
    /// whichever is longer) was delivered. Spraying makes packets overtake each other by up
    /// to the queueing delay of the slowest path: set it to about one switch buffer's drain
    /// time (256 KiB at 100 Gb/s: 21 µs) where paths queue that deep. Default 10 µs (host
    /// scheduling noise). The window also widens on its own when resends prove spurious.
    pub min_reorder_window: Duration,
    /// Send a tail-loss probe about two RTTs after the last packet, instead of waiting an RTO.
    pub tail_loss_probe: bool,
    /// Declare the peer dead when nothing was heard from it for this long while work is pending.
    pub peer_timeout: Duration,
    /// Idle connections send a keepalive probe this often (so a dead peer is noticed while
    /// receives are posted).
    pub keepalive: Duration,
    /// Give up a handshake after this long.
    pub handshake_timeout: Duration,
    /// Receive window in packets beyond the cumulative PSN (size of the reorder bitmap).
    pub rwnd_packets: u32,
    /// Send an ACK after this many data packets ...
    pub ack_every: u32,
    /// ... or this long after the first unacknowledged one, whichever comes first.
    pub ack_delay: Duration,
    /// Bytes of early-arriving send payload the receiver buffers before a matching receive is
    /// posted (per connection); beyond that packets are refused with a NACK (the receiver is
    /// not ready, `Flags::RNR`, until a receive waits or a quarter of this is free again) and
    /// resent once it is ready.
    pub unexpected_bytes: u64,
    /// Registered regions of this many bytes or more receive payloads of 2 KiB or more past
    /// the CPU caches (x86-64 non-temporal stores for whole cache lines, a store fence per
    /// copy; elsewhere a plain copy), smaller regions through them; 0: never. Chosen by the
    /// region's size, not the message's: more than a core's caches hold is mostly not cached
    /// when a packet lands, and a cached store first reads the line it writes from memory.
    /// Default 32 MiB: a 16-sender incast into 128 MiB of posted receives spent three times
    /// as long per byte placing payload as one stream into 8 MiB (BENCHMARKS.md,
    /// 2026-12-08; docs/transport.md, "Placement past the caches").
    pub stream_region_bytes: u64,
    /// While the receiver is not ready (an out-of-resources NACK), the sender sends no new
    /// data and resends one refused packet (or a probe) after this interval, then after
    /// twice as long each time, up to 32 times it; a receiver that only said it is not ready
    /// (no refusal) is probed every 128 times it. Default 200 µs.
    pub rnr_delay: Duration,
    /// Most requests outstanding per connection.
    pub max_outstanding: u32,
    /// Receiver side of DCQCN (the notification point): on data arriving with ECN CE, send the
    /// sender a CNP, at most one per this interval per connection (`None`: never; the ACKs'
    /// ECN echo still carries the marks). Default 4 µs, ConnectX's
    /// `np_min_time_between_cnps`
    /// (<https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters>).
    pub cnp_interval: Option<Duration>,
    /// Depth of the pacer's token bucket in bytes: when the engine wakes late, a rate-paced
    /// connection may send up to this much at once to catch up (software timers wake tens of
    /// µs late; without it a pacer loses that time on every wakeup). Default 64 KiB.
    pub pace_burst: u32,
    /// Ask for in-band network telemetry on every data packet (`Flags::INT`), echoed back in
    /// ACKs. Also on whenever the congestion controller needs it
    /// (`CongestionControl::needs_int`).
    pub request_int: bool,
    /// Connections a listener creates per second for one source IP address, with a burst of
    /// as many (a token bucket); confirms beyond it are dropped unanswered and counted
    /// (`EndpointStats::drop_rate_limited`), and the connector's handshake retry sends them
    /// again. Bounds what a peer holding the listener's secret can make it do. 0 = no limit.
    /// Default 10,000.
    pub accept_rate_per_source: u32,
    /// Packets the receive path can buffer for all connections together before it drops
    /// (a host: its socket's receive buffer, in packets); 0 = no such limit (the simulator:
    /// switch buffers model the network). When set, each connection's advertised receive
    /// window is this budget shared among the connections that received data in the last
    /// millisecond or so (their shares add up to the budget, each at least `MIN_RX_SHARE`
    /// packet), so an incast of N senders keeps
    /// at most about the budget in flight towards the host instead of N windows — a
    /// receiver-side window in the manner of ICTCP (Wu et al., "ICTCP: Incast Congestion
    /// Control for TCP in Data Center Networks", CoNEXT 2010). The handshake offers at most
    /// the whole budget.
    pub rx_budget_packets: u32,
    /// Under a receive budget, the connections granted it at once when it is too small to
    /// give each receiving connection a window of a bandwidth × delay product (0: every
    /// connection receiving shares it, however small the shares). More turns are held at once
    /// where the budget gives each such a window. The others wait in line, held by `RNR` (no
    /// new data, a probe now and then) with a packet of window for what they send unasked;
    /// a connection keeps its turn until it has nothing more to send (a packet without
    /// `MORE`), falls silent while others wait, or has received `rx_turn_bytes` while others
    /// wait. A receiver that pulls from a few senders at a time
    /// (Homa's limited overcommitment: Montazeri et al., "Homa: A Receiver-Driven Low-Latency
    /// Transport Protocol Using Network Priorities", SIGCOMM 2018; NDP's and UET's
    /// receiver-driven pull follow the same idea) keeps an incast of N senders into a small
    /// buffer from waking N senders per buffer's worth of data, which on a host costs more
    /// than the transfer (docs/transport.md, "Receive budget"). Default 1.
    pub rx_grants: u32,
    /// Bytes a connection receives in one turn before it yields to a waiting one: long
    /// enough that handing the turn over (a sender scheduled, its first packets through:
    /// 0.1–0.3 ms on a busy host) costs little — 16 MiB is 1.3 ms at 100 Gb/s. Default 16 MiB.
    pub rx_turn_bytes: u64,
    /// Sockets this endpoint receives on, at consecutive ports from its address; offered in
    /// the handshake so that peers spread their packets over them by entropy. 1 (the
    /// default) is one socket; the UDP host sets it when it bound consecutive ports.
    pub rx_ports: u8,
}

/// Smallest receive window a connection is offered under `Config::rx_budget_packets`.
pub const MIN_RX_SHARE: u32 = 1;

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Weir,
            max_payload: 8192,
            paths: 8,
            spray_burst: 8,
            line_rate: Rate::from_gbps(100),
            cc: CcConfig::default(),
            initial_rto: Duration::from_millis(5),
            min_rto: Duration::from_millis(1),
            max_rto: Duration::from_millis(200),
            min_reorder_window: Duration::from_micros(10),
            tail_loss_probe: true,
            peer_timeout: Duration::from_secs(5),
            keepalive: Duration::from_millis(500),
            handshake_timeout: Duration::from_secs(5),
            rwnd_packets: 4096,
            ack_every: 8,
            ack_delay: Duration::from_micros(50),
            unexpected_bytes: 32 << 20,
            stream_region_bytes: 32 << 20,
            rnr_delay: Duration::from_micros(200),
            max_outstanding: 4096,
            cnp_interval: Some(Duration::from_micros(4)),
            pace_burst: 64 << 10,
            request_int: false,
            accept_rate_per_source: 10_000,
            rx_budget_packets: 0,
            rx_grants: 1,
            rx_turn_bytes: 16 << 20,
            rx_ports: 1,
        }
    }
}

/// A configuration value out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "invalid transport config: {}: {}",
            self.field, self.reason
        )
    }
}

impl Config {
    /// The RoCEv2-like baseline: one path, go-back-N.
    pub fn go_back_n() -> Self {
        Config {
            mode: Mode::GoBackN,
            paths: 1,
            ..Config::default()
        }
    }

    /// Check every field; the engine only accepts validated configs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        if self.max_payload < 64 || self.max_payload > 65_000 {
            return err("max_payload", "must be within 64..=65000 bytes");
        }
        if self.paths == 0 || self.paths > 1024 {
            return err("paths", "must be within 1..=1024");
        }
        if self.spray_burst == 0 {
            return err("spray_burst", "must be at least 1");
        }
        if self.min_rto == Duration::ZERO || self.min_rto > self.max_rto {
            return err("min_rto", "must be non-zero and at most max_rto");
        }
        if self.initial_rto < self.min_rto || self.initial_rto > self.max_rto {
            return err("initial_rto", "must lie within min_rto..=max_rto");
        }
        if self.min_reorder_window > self.max_rto {
            return err("min_reorder_window", "must be at most max_rto");
        }
        if self.peer_timeout <= self.min_rto {
            return err("peer_timeout", "must exceed min_rto");
        }
        if self.keepalive == Duration::ZERO || self.keepalive >= self.peer_timeout {
            return err(
                "keepalive",
                "must be non-zero and shorter than peer_timeout",
            );
        }
        if self.handshake_timeout == Duration::ZERO {
            return err("handshake_timeout", "must be non-zero");
        }
        if !(64..=1 << 20).contains(&self.rwnd_packets) || !self.rwnd_packets.is_power_of_two() {
            return err("rwnd_packets", "must be a power of two within 64..=1048576");
        }
        if self.ack_every == 0 {
            return err("ack_every", "must be at least 1");
        }
        if self.max_outstanding == 0 {
            return err("max_outstanding", "must be at least 1");
        }
        if self.rx_grants > 0 && self.rx_turn_bytes < u64::from(self.max_payload) {
            return err(
                "rx_turn_bytes",
                "must be at least max_payload when rx_grants is set",
            );
        }
        Ok(())
    }
}

impl core::error::Error for ConfigError {}
