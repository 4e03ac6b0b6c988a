//! One connection (a packet delivery context): handshake state, timers, and the glue between
//! the sender ([`send`]), the receiver ([`recv`]), RTT estimation, path scoring and the
//! congestion controller.

pub(crate) mod paths;
pub(crate) mod recv;
pub(crate) mod rtt;
pub(crate) mod send;
pub(crate) mod timer;

use alloc::collections::VecDeque;
use core::net::SocketAddr;

use weir_base::{Duration, Instant};
use weir_congestion::{
    Builtin, CcFactory, CongestionControl, CreditScheduler, Feedback, HopTelemetry, LossKind,
    PathInfo, Sent,
};
use weir_wire::{
    AckExt, CloseExt, Common, CreditExt, CreditReqExt, DataExt, Ecn, Ext, Flags, HandshakeExt,
    Header, IntList, Mode, MsgKind, NackExt, NackReason, Opcode, Parsed, ProbeExt,
};

use crate::config::Config;
use crate::mem::Memory;
use crate::stats::ConnStats;
use crate::{
    Completion, CompletionKind, ConnError, ConnId, Event, Payload, Transmit, TxMeta, WrError, WrId,
};
use paths::{Paths, Penalty};
use recv::{Arrival, InMsg, InWrite, PostedRecv, RecvState};
use rtt::RttEstimator;
use send::{Delivery, SendState};
use timer::{Timer, TimerTable};

/// Close reason code: normal close.
pub(crate) const CLOSE_NORMAL: u32 = 0;
/// Close reason code: connection refused (mode or parameter mismatch).
pub(crate) const CLOSE_REFUSED: u32 = 1;
/// Close reason code: a write violated the target's access rights.
pub(crate) const CLOSE_ACCESS: u32 = 2;

/// A CLOSE that carries an error is repeated this many times, after 1, 2 and 4 intervals
/// (`Conn::close_interval`), as TCP repeats an unacknowledged FIN.
const CLOSE_RESENDS: u8 = 3;

/// Shortest tail-loss probe timeout: below this, scheduling noise on a host looks like loss.
const MIN_PTO: Duration = Duration::from_micros(10);
/// RACK's reordering window multiplier never exceeds this (the window is capped at SRTT too).
const REO_MULT_MAX: u32 = 16;
/// Loss episodes without a spurious resend after which the multiplier steps back down (RFC
/// 8985 §6.2 resets it after 16 recoveries).
const REO_DECAY: u32 = 16;
/// The probe timeout is at most (1 + this) smoothed RTTs.
const PTO_MULT_MAX: u32 = 3;
/// Probes without a spurious one after which the probe timeout narrows a step.
const PTO_DECAY: u32 = 8;
/// The backoff after consecutive trims doubles at most this many times.
const TRIM_BACKOFF_MAX: u32 = 6;
/// Tail-loss probes sent before waiting for the retransmission timeout.
const MAX_TLP: u8 = 2;
/// Wire bytes of a data packet's header (no INT hops are present when it is sent): what a
/// packet costs in RCCC credit on top of its payload.
pub(crate) const DATA_HEADER: u64 = (weir_wire::COMMON_LEN + weir_wire::DATA_EXT_LEN) as u64;

/// The sender's side of receiver-not-ready flow control (`Flags::RNR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RnrBlock {
    /// Transmit timestamp of the newest refused packet: an ACK ends the block only when it
    /// echoes this or a later transmission and carries no `RNR`.
    refused_ts: u64,
    /// When the next probe may go: one refused packet resent (or, with none, a PROBE), so a
    /// lost window update cannot stall the connection.
    probe_at: Instant,
    /// When the block began.
    since: Instant,
    /// The receiver refused data in this block (not only said it is not ready): resends wait
    /// for `probe_at` too, one per probe, instead of going as soon as they are found lost.
    refused: bool,
    /// Probes sent in this block: each waits twice as long as the one before, up to
    /// `RNR_PROBE_BACKOFF` doublings of `rnr_delay` (a sender waiting its turn at a busy
    /// receiver — `Config::rx_grants` — may wait several turns).
    probes: u8,
    /// Echoed timestamp of the ACK that began the block: without a refusal, an ACK without
    /// `RNR` answering this or a later transmission ends it (the receiver's echo follows the
    /// packet that arrived last, which reordering can make older than other `RNR` echoes).
    start_ts: u64,
}

/// Most doublings of `rnr_delay` between probes of one receiver-not-ready block with
/// refusals.
const RNR_PROBE_BACKOFF: u8 = 5;
/// The same without refusals: the receiver will say when it is ready, and a probe only
/// guards against losing that ACK.
const RNR_WAIT_BACKOFF: u8 = 7;
/// Doublings of `rnr_delay` before the first probe of a block without refusals.
const RNR_FIRST_WAIT_PROBE: u8 = 3;

impl RnrBlock {
    /// The next probe's time after one goes at `now`.
    fn probed(&mut self, now: Instant, config: &Config) {
        let cap = if self.refused {
            RNR_PROBE_BACKOFF
        } else {
            RNR_WAIT_BACKOFF
        };
        self.probes = self.probes.saturating_add(1);
        let shift = self.probes.min(cap);
        self.probe_at = now + config.rnr_delay.saturating_mul(1 << shift);
    }

    /// Whether an ACK without `RNR` answering the transmission stamped `echo_ts` ends it.
    fn cleared_by(&self, echo_ts: u64) -> bool {
        echo_ts
            >= if self.refused {
                self.refused_ts
            } else {
                self.start_ts
            }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// We sent a SYN (or its confirm, with the acceptor's cookie) and wait for the SYN-ACK
    /// that carries the acceptor's connection id.
    SynSent,
    Established,
    /// Failed or closed by the peer; waits for the application to close it.
    Failed,
}

/// One connection. `repr(C)`, fields in the order given: the fields every packet touches
/// come first, so the leading cache lines that `Endpoint::prefetch_handle` and
/// `Endpoint::prefetch_transmit` ask for (12 of them) hold them, and the handshake and close
/// state is last. At thousands of hosts every connection is cold in cache when its packet
/// arrives; with the compiler's order the slot check (`id`, `peer`, `local_nonce`, `state`)
/// read lines beyond those prefetched.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Conn {
    // Line 0: what every input and every transmission reads first (the slot check, the
    // state, the flags that say what to send). `armed` comes first: its tag is the niche of
    // `Option<Conn>` (the endpoint's slot check), which must be in this line too.
    /// The deadline under which the endpoint's timer set holds this connection (what
    /// [`Conn::deadline`] returned when it was last re-armed).
    pub(crate) armed: Option<Instant>,
    pub(crate) id: u32,
    pub(crate) peer_id: u32,
    pub(crate) state: State,
    /// Packets of the current burst on one path, so the endpoint can keep serving this
    /// connection while it produces a batch.
    pub(crate) in_ready: bool,
    /// A SYN waits to go out.
    pub(crate) need_syn: bool,
    /// A SYN-ACK waits to go out.
    pub(crate) need_synack: bool,
    tlp_pending: bool,
    probe_pending: bool,
    tlps: u8,
    /// The peer's receive sockets (`HandshakeExt::rx_ports`).
    pub(crate) peer_rx_ports: u8,
    max_payload: u32,
    /// Its place among the connections receiving in that epoch (which of them get the
    /// remainder when the budget does not divide evenly).
    pub(crate) rx_share_rank: u32,
    pub(crate) local_nonce: u64,
    pub(crate) peer_nonce: u64,
    pub(crate) last_heard: Instant,
    /// The last transmit timestamp given out: timestamps are unique per connection, so an
    /// echoed one names exactly one transmission.
    last_stamp: Instant,
    next_pace: Instant,
    // Lines 1–3: the rest of the per-packet scalars.
    /// When the last retransmission timeout fired, until the first ACK of new data after it
    /// tells whether it was spurious (that ACK echoes a transmission sent before it).
    rto_fired: Option<Instant>,
    /// Receiver side of RCCC: repeat this cumulative credit at once (the peer's request shows
    /// it missed the CREDIT that carried it).
    credit_echo: Option<u64>,
    /// The endpoint's receive epoch (+1) in which this connection last received data:
    /// counts it once per epoch among the receiving connections (`Config::rx_budget_packets`).
    pub(crate) rx_epoch_seen: u64,
    rto_backoff: u32,
    /// Tail-loss probe timeout multiplier: raised when a probe proves spurious (the original
    /// was only late, e.g. the peer's host was descheduled), lowered after `PTO_DECAY` probes
    /// without one.
    pto_mult: u32,
    pub(crate) peer: SocketAddr,
    nacks: VecDeque<(u32, NackReason, u64)>,
    /// The receiver refused data for lack of buffers (RNR): no new data until it says it is
    /// ready again.
    rnr: Option<RnrBlock>,
    /// Transmit timestamp of the last tail-loss probe, until an ACK echoing it arrives.
    tlp_sent: Option<Instant>,
    /// Trimmed NACKs since the last ACK of new data.
    trim_streak: u32,
    /// RACK's reordering window multiplier (RFC 8985 §6.2): raised when a resend proves
    /// spurious, lowered again after `REO_DECAY` loss episodes without one.
    reo_mult: u32,
    retries: u32,
    /// A graceful close finished: the application was told `Closed`, and the connection is
    /// kept only to repeat its CLOSE (a lost one would leave an idle peer unaware that the
    /// connection ended, until its peer timeout failed it), then forgotten.
    pub(crate) lingering: bool,
    /// The last repeat went out one interval ago: forget the lingering connection.
    pub(crate) linger_done: bool,
    // Then the per-packet state, most used first: timers, the sender, the receiver (within the
    // lines `Endpoint::prefetch_handle` asks for), counters, the controller, paths, RTT.
    /// Every deadline of this connection (RTO, TLP, delayed ACK, keepalive, …).
    timers: TimerTable,
    pub(crate) send: SendState,
    pub(crate) recv: RecvState,
    pub(crate) stats: ConnStats,
    cc: Builtin,
    pub(crate) paths: Paths,
    rtt: RttEstimator,
    // Cold: handshake, close, reload and rarely changed state.
    /// What the congestion controller was built for (kept for hot reloads).
    path_info: PathInfo,
    pub(crate) user_data: u64,
    /// Connector: the MAC its SYNs carry (`handshake::syn_mac`); 0 when unauthenticated.
    pub(crate) syn_mac: u64,
    initial_psn: u32,
    /// The receive window our handshake offers (`Endpoint::rwnd_offer`).
    pub(crate) rwnd_offer: u32,
    /// SYN / SYN-ACK resends so far (the `HandshakeRetry` interval doubles per try).
    hs_tries: u32,
    /// When the last SYN / SYN-ACK left (for an RTT sample from the handshake).
    hs_sent_at: Option<Instant>,
    /// When `reo_mult` was last raised (at most once per round trip).
    reo_raised_at: Option<Instant>,
    /// Loss episodes since the last spurious resend (for the decay).
    reo_quiet: u32,
    /// Probes sent since the last spurious one (for the decay).
    pto_quiet: u32,
    /// Echoed timestamp of the ACK that last ended an RNR block: an RNR NACK for a packet
    /// sent before it is stale (reordered) and does not block again.
    rnr_cleared_ts: u64,
    /// Tell the peer why this connection failed: a CLOSE with this reason is pending.
    close_reason: Option<u32>,
    /// The reason code this (failed) connection closes with; repeated to a peer that keeps
    /// talking, in case the CLOSE was lost.
    close_code: Option<u32>,
    /// CLOSEs with an error still to repeat on a timer (`CLOSE_RESENDS`): an idle peer sends
    /// nothing that would draw one (idle connections do not probe), so a lost CLOSE would
    /// leave it unaware that its connection ended.
    close_resends: u8,
    /// Where this connection stands in the endpoint's turns of its receive budget
    /// (`Config::rx_grants`).
    pub(crate) rx_turn: RxTurn,
    /// Bytes received in the current turn.
    pub(crate) rx_turn_bytes: u64,
    /// When the current turn was granted.
    pub(crate) rx_granted_at: Instant,
    /// When data last arrived (a turn's silence is counted from it: probes do not hold one).
    pub(crate) rx_heard: Instant,
    /// It has an entry in the endpoint's line of those waiting for a turn.
    pub(crate) rx_in_line: bool,
    /// The XON of the current turn was repeated (it was not used within `rnr_delay`).
    pub(crate) rx_xon_repeated: bool,
}

/// A connection's place in its endpoint's turns of the receive budget (`Config::rx_grants`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RxTurn {
    /// Not sending, as far as the receiver knows (its last packet said nothing more): the
    /// window of a packet for what it sends unasked.
    Idle,
    /// Has more to send and waits in line (`RNR`).
    Waiting,
    /// Holds a turn: a share of the budget.
    Granted,
}

/// Everything a connection needs from its endpoint while handling an input.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) mem: &'a Memory,
    pub(crate) events: &'a mut VecDeque<Event>,
    /// This connection's share of the receive budget, packets (`Config::rx_budget_packets`;
    /// `u32::MAX` when there is none): the window the next ACKs advertise.
    pub(crate) rx_share: u32,
    /// The endpoint's credit scheduler (RCCC receiver side, shared by all connections).
    pub(crate) credit: &'a mut CreditScheduler,
}

impl Conn {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        now: Instant,
        config: &Config,
        id: u32,
        peer: SocketAddr,
        local_nonce: u64,
        initial_psn: u32,
        entropy_start: u16,
        state: State,
    ) -> Self {
        let paths = if config.mode == Mode::GoBackN {
            1
        } else {
            config.paths
        };
        let path_info = PathInfo {
            mtu: config.max_payload,
            line_rate: config.line_rate,
            base_rtt: None,
            paths,
        };
        let mut c = Conn {
            id,
            peer,
            peer_id: 0,
            local_nonce,
            peer_nonce: 0,
            state,
            user_data: 0,
            initial_psn,
            max_payload: config.max_payload,
            send: SendState::new(initial_psn, initial_psn),
            recv: RecvState::new(0, config.rwnd_packets),
            cc: config.cc.build(now, &path_info),
            path_info,
            rtt: RttEstimator::new(),
            paths: Paths::new(paths, config.spray_burst, entropy_start),
            stats: ConnStats::default(),
            last_heard: now,
            hs_tries: 0,
            hs_sent_at: None,
            timers: TimerTable::default(),
            rto_backoff: 0,
            rto_fired: None,
            last_stamp: Instant::ZERO,
            reo_mult: 1,
            reo_raised_at: None,
            reo_quiet: 0,
            trim_streak: 0,
            rnr: None,
            rnr_cleared_ts: 0,
            pto_mult: 1,
            pto_quiet: 0,
            retries: 0,
            tlps: 0,
            tlp_pending: false,
            tlp_sent: None,
            probe_pending: false,
            next_pace: now,
            need_syn: state == State::SynSent,
            need_synack: false,
            syn_mac: 0,
            rx_epoch_seen: 0,
            rx_share_rank: 0,
            rwnd_offer: config.rwnd_packets,
            peer_rx_ports: 1,
            close_reason: None,
            close_code: None,
            close_resends: 0,
            rx_turn: RxTurn::Idle,
            rx_turn_bytes: 0,
            rx_granted_at: now,
            rx_heard: now,
            rx_in_line: false,
            rx_xon_repeated: false,
            lingering: false,
            linger_done: false,
            nacks: VecDeque::new(),
            credit_echo: None,
            in_ready: false,
            armed: None,
        };
        let retry = now + c.hs_interval(config);
        let t = &mut c.timers;
        if state == State::SynSent {
            t.set(Timer::HandshakeRetry, retry);
            t.set(Timer::HandshakeExpiry, now + config.handshake_timeout);
        }
        t.set(Timer::Keepalive, now + config.keepalive);
        t.set(Timer::PeerTimeout, now + config.peer_timeout);
        c
    }

    /// Start a graceful close that must end by `at` (see `Endpoint::close_graceful`).
    pub(crate) fn set_closing(&mut self, at: Instant) {
        self.timers.set(Timer::Closing, at);
    }

    /// A graceful close is under way ([`crate::Endpoint::close_graceful`]): no new requests;
    /// the close happens once every outgoing message is acknowledged and every received packet
    /// acknowledged, or at this deadline (the `Closing` timer, never stopped once set).
    pub(crate) fn closing(&self) -> Option<Instant> {
        self.timers.get(Timer::Closing)
    }

    /// Whether the current spray burst is used up (the endpoint then serves another
    /// connection).
    pub(crate) fn paths_burst_done(&self) -> bool {
        self.paths.burst_done()
    }

    /// Counters, with the current smoothed RTT.
    pub(crate) fn stats(&self) -> ConnStats {
        ConnStats {
            srtt_ps: self.rtt.srtt().map_or(0, |d| d.as_ps()),
            ..self.stats
        }
    }

    /// Hot reload of the congestion controller (see `Builtin::reconfigure`).
    pub(crate) fn reconfigure_cc(&mut self, now: Instant, cfg: &weir_congestion::CcConfig) -> bool {
        let kept = self.cc.reconfigure(now, &self.path_info, cfg);
        if !matches!(self.cc, Builtin::Rccc(_)) {
            // No credit to wait for any more: a pending credit stall must not fail the
            // connection at the peer timeout.
            self.timers.stop(Timer::CreditStall);
        }
        kept
    }

    pub(crate) fn congestion(&self) -> (&'static str, weir_congestion::Limits) {
        (self.cc.name(), self.cc.limits())
    }

    pub(crate) fn handle(&self) -> ConnId {
        ConnId(self.id)
    }

    /// Parameters from the peer's SYN (server side) or SYN-ACK (client side).
    pub(crate) fn apply_handshake(&mut self, config: &Config, peer_id: u32, hs: &HandshakeExt) {
        self.peer_id = peer_id;
        self.peer_nonce = hs.nonce;
        self.peer_rx_ports = hs.rx_ports;
        self.max_payload = config.max_payload.min(hs.max_payload.max(64));
        // Receives posted while connecting stay posted.
        let posted = core::mem::take(&mut self.recv.posted);
        self.recv = RecvState::new(hs.initial_psn, config.rwnd_packets);
        self.recv.posted = posted;
        self.timers.stop(Timer::AckDelay);
        self.send.rwnd_psn = self.initial_psn.wrapping_add(hs.rwnd_pkts.max(1));
    }

    /// The peer's receive socket for packets of `entropy`: its ports are consecutive from
    /// `peer` (`HandshakeExt::rx_ports`).
    fn peer_port(&self, entropy: u16) -> SocketAddr {
        if self.peer_rx_ports <= 1 {
            return self.peer;
        }
        let off = entropy % u16::from(self.peer_rx_ports);
        match self.peer.port().checked_add(off) {
            Some(p) => SocketAddr::new(self.peer.ip(), p),
            None => self.peer,
        }
    }

    pub(crate) fn handshake_ext(&self, config: &Config, echo_nonce: u64) -> HandshakeExt {
        HandshakeExt {
            nonce: self.local_nonce,
            echo_nonce,
            user_data: self.user_data,
            initial_psn: self.initial_psn,
            max_payload: config.max_payload,
            paths: self.paths.len(),
            mode: config.mode,
            rwnd_pkts: self.rwnd_offer,
            rx_ports: config.rx_ports,
        }
    }

    /// Graceful close: nothing left to send or to acknowledge.
    pub(crate) fn drained(&self) -> bool {
        self.send.outstanding() == 0 && self.recv.unacked_since.is_none() && !self.recv.ack_now
    }

    /// Whether anything is outstanding in either direction.
    pub(crate) fn has_work(&self) -> bool {
        self.send.outstanding() > 0 || !self.recv.posted.is_empty() || !self.recv.inbound.is_empty()
    }

    /// A request is about to be posted. On an idle connection, liveness tracking starts
    /// again: the peer has the peer timeout from now to be heard from, and keepalives resume.
    pub(crate) fn wake(&mut self, now: Instant, config: &Config) {
        if self.state != State::Established || self.has_work() {
            return;
        }
        if now.saturating_since(self.last_heard) >= config.keepalive {
            self.last_heard = now;
            self.timers.set(Timer::Keepalive, now);
        } else {
            self.timers.set(Timer::Keepalive, now + config.keepalive);
        }
        self.timers
            .set(Timer::PeerTimeout, now + config.peer_timeout);
    }

    // ---------------------------------------------------------------------------------------
    // Input.

    /// A packet for this connection passed the token check.
    pub(crate) fn on_packet(
        &mut self,
        now: Instant,
        ecn: Ecn,
        pkt: &Parsed<'_>,
        virt: bool,
        ctx: &mut Ctx<'_>,
    ) {
        self.last_heard = now;
        self.timers
            .set(Timer::PeerTimeout, now + ctx.config.peer_timeout);
        if self.state == State::Failed {
            // The peer has not heard why we failed (our CLOSE was lost): say it again.
            if self.close_code.is_some() && pkt.header.common.opcode != Opcode::Close {
                self.close_reason = self.close_code;
            }
            return;
        }
        let h = &pkt.header;
        match (h.common.opcode, &h.ext) {
            (Opcode::SynAck, Ext::Handshake(hs)) => {
                if self.state == State::SynSent {
                    self.handshake_rtt(now);
                }
                self.on_synack(h, hs, ctx)
            }
            (Opcode::Data, Ext::Data(d)) if self.state == State::Established => {
                if h.common.flags.contains(Flags::INT) && !h.int.as_slice().is_empty() {
                    match &mut self.recv.int_echo {
                        Some(b) => **b = h.int,
                        None => self.recv.int_echo = Some(alloc::boxed::Box::new(h.int)),
                    }
                }
                self.on_data(now, &h.common, d, pkt.payload, virt, ecn, ctx)
            }
            (Opcode::Ack, Ext::Ack(a)) if self.state == State::Established => {
                self.on_ack(now, &h.common, a, h.int.as_slice(), ctx)
            }
            (Opcode::Nack, Ext::Nack(n)) if self.state == State::Established => {
                self.on_nack(now, n, ctx)
            }
            (Opcode::Probe, Ext::Probe(p)) => {
                if ctx.rx_share != u32::MAX {
                    self.recv.adv = ctx.rx_share;
                }
                self.recv.last_tx_ts = p.tx_ts;
                self.recv.last_arrival = now;
                self.recv.last_entropy = h.common.entropy;
                self.recv.ack_now = true;
            }
            (Opcode::Cnp, _) => {
                self.stats.cnps_received += 1;
                let fb = Feedback {
                    cnp: true,
                    path: h.common.entropy,
                    in_flight: self.send.in_flight,
                    ..Feedback::default()
                };
                self.cc.on_feedback(now, &fb);
            }
            (Opcode::Credit, Ext::Credit(g)) if self.state == State::Established => {
                self.stats.credits_received += 1;
                if let Builtin::Rccc(r) = &mut self.cc {
                    r.on_credit(now, g.credit);
                }
            }
            (Opcode::CreditReq, Ext::CreditReq(q)) if self.state == State::Established => {
                //= uet-htsim htsim/sim/uec.cpp#UecPullPacer
                //# The receiver's pull pacer meters credit to its active senders at its own
                //# link rate.
                // Every endpoint serves credit, whatever its own controller: the requester
                // is the one that chose RCCC.
                self.stats.credit_reqs_received += 1;
                if ctx.credit.set_demand(self.id, q.demand) {
                    if let Some(g) = ctx.credit.granted(self.id)
                        && q.granted < g
                    {
                        self.credit_echo = Some(g);
                    }
                } else {
                    self.stats.credit_refused += 1;
                }
            }
            (Opcode::Close, Ext::Close(c)) => {
                let reason = match c.reason {
                    CLOSE_REFUSED => ConnError::Refused,
                    CLOSE_ACCESS => ConnError::RemoteAccess,
                    _ => ConnError::PeerClosed,
                };
                self.fail(reason, ctx.events, now);
            }
            _ => {}
        }
    }

    /// Whether an outstanding request reads or writes `region`: a send or write not yet
    /// acknowledged, a posted receive, or a matched receive still being filled.
    pub(crate) fn uses_region(&self, region: crate::mem::RegionId) -> bool {
        self.send.out.iter().any(|m| m.region == region)
            || self.recv.posted.iter().any(|r| r.region == region)
            || self
                .recv
                .inbound
                .iter()
                .flatten()
                .any(|m| !m.done && m.recv.is_some_and(|r| r.region == region))
    }

    /// A region an outstanding request uses was deregistered: fail as an RDMA queue pair
    /// does on a local protection error, and tell the peer (a CLOSE with the refused code,
    /// which it reports as `Refused`), whose half of the messages can no longer complete.
    pub(crate) fn local_access_error(&mut self, events: &mut VecDeque<Event>, now: Instant) {
        if self.state == State::Failed {
            return;
        }
        if self.state == State::Established {
            self.close_reason = Some(CLOSE_REFUSED);
            self.close_code = Some(CLOSE_REFUSED);
        }
        self.fail(ConnError::LocalAccess, events, now);
    }

    /// The handshake's round trip is the first RTT sample (unless the SYN or SYN-ACK was
    /// sent more than once, which would make it ambiguous), so the first tail-loss probe is
    /// timed from a measurement, not from `initial_rto`.
    fn handshake_rtt(&mut self, now: Instant) {
        if self.hs_tries == 0
            && let Some(sent) = self.hs_sent_at.take()
        {
            self.rtt.sample(now.saturating_since(sent));
        }
    }

    fn on_synack(&mut self, h: &Header, hs: &HandshakeExt, ctx: &mut Ctx<'_>) {
        match self.state {
            State::SynSent if hs.echo_nonce == self.local_nonce && hs.nonce != 0 => {
                if hs.mode != ctx.config.mode {
                    return;
                }
                if h.common.src_conn == 0 {
                    // The acceptor's cookie: confirm at once with it as our token. The retry
                    // timer keeps running, so a lost confirm (or its lost answer) is repeated.
                    self.peer_nonce = hs.nonce;
                    self.need_syn = true;
                    return;
                }
                // The acceptor made the connection (its nonce is the cookie we confirmed).
                self.apply_handshake(ctx.config, h.common.src_conn, hs);
                self.state = State::Established;
                self.need_syn = false;
                ctx.events.push_back(Event::Connected {
                    conn: self.handle(),
                });
            }
            // Answers to repeated confirms: nothing to do.
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_data(
        &mut self,
        now: Instant,
        c: &Common,
        d: &DataExt,
        payload: &[u8],
        virt: bool,
        ecn: Ecn,
        ctx: &mut Ctx<'_>,
    ) {
        self.recv.adv = ctx.rx_share;
        let r = &mut self.recv;
        r.last_psn = c.psn;
        r.last_entropy = c.entropy;
        if c.flags.contains(Flags::TRIMMED) {
            self.stats.rx_trimmed += 1;
            if r.classify(c.psn) == Arrival::New {
                self.nacks.push_back((c.psn, NackReason::Trimmed, d.tx_ts));
            }
            return;
        }
        // ACKs echo only packets that arrived whole: an echoed timestamp tells the sender that
        // transmission was delivered (spurious-retransmission detection relies on it).
        let arrival = r.classify(c.psn);
        // A duplicate does not displace an echo still waiting for its ACK: when an original
        // and its resend arrive in one batch (the receiver was descheduled), the ACK must
        // name the original, which is what proves the resend spurious (a DSACK's role).
        if arrival != Arrival::Duplicate || (r.unacked == 0 && !r.ack_now) {
            r.last_tx_ts = d.tx_ts;
            r.last_arrival = now;
        }
        match arrival {
            Arrival::Duplicate => {
                self.stats.rx_duplicates += 1;
                r.ack_now = true;
                return;
            }
            Arrival::OutOfWindow => {
                self.stats.rx_out_of_window += 1;
                r.ack_now = true;
                return;
            }
            Arrival::New => {}
        }
        if ctx.config.mode == Mode::GoBackN && c.psn != r.cum {
            //= https://doi.org/10.1145/3230543.3230557#background
            //# An InfiniBand/RoCE receiver discards an out-of-order packet and sends a
            //# negative acknowledgement (NACK); the sender then goes back to it (go-back-N).
            self.stats.rx_out_of_order_dropped += 1;
            if !r.gbn_nacked {
                r.gbn_nacked = true;
                self.nacks
                    .push_back((r.cum, NackReason::OutOfSequence, d.tx_ts));
            }
            return;
        }
        let plen = c.payload_len as u64;
        let placed = match d.kind {
            MsgKind::Send => self.place_send(c, d, payload, virt, ctx),
            MsgKind::Write => self.place_write(c, d, payload, virt, ctx),
        };
        match placed {
            Placement::Placed => {}
            Placement::NoResources => {
                self.stats.rx_no_resources += 1;
                if self.recv.xoff() {
                    self.stats.rnr_sent += 1;
                }
                self.nacks
                    .push_back((c.psn, NackReason::OutOfResources, d.tx_ts));
                return;
            }
            Placement::Inconsistent => {
                self.stats.rx_inconsistent += 1;
                return;
            }
            Placement::AccessError => {
                // Not recorded: every copy of the packet is refused again, so the writer
                // learns of the error even if a NACK is lost (it must never see an ACK).
                self.stats.rx_access_errors += 1;
                self.nacks
                    .push_back((c.psn, NackReason::AccessError, d.tx_ts));
                return;
            }
        }
        let r = &mut self.recv;
        let cum_before = r.cum;
        r.record(c.psn);
        if r.cum != cum_before {
            r.gbn_nacked = false;
        }
        self.stats.rx_data_packets += 1;
        if ecn == Ecn::Ce {
            r.ecn_bytes = r.ecn_bytes.wrapping_add(plen as u32);
            self.stats.rx_ecn_bytes += plen;
            r.ecn_echo = true;
            r.ack_now = true;
            //= https://doi.org/10.1145/2785956.2787484#section-3.2
            //# NP: on a CE-marked packet, send a CNP unless one went to this flow within the
            //# last N µs.
            //= https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters#notification-point
            //# np_min_time_between_cnps: if an ECN-marked packet arrives within this period
            //# after a CNP, no CNP is sent.
            if let Some(iv) = ctx.config.cnp_interval
                && r.last_cnp.is_none_or(|t| now.saturating_since(t) >= iv)
            {
                r.cnp_due = true;
                r.last_cnp = Some(now);
            }
        }
        r.unacked += 1;
        if r.unacked_since.is_none() {
            r.unacked_since = Some(now);
            self.timers.set(Timer::AckDelay, now + ctx.config.ack_delay);
        }
        //= RFC 5681 §4.2
        //# An immediate ACK SHOULD be generated when a segment arrives that fills in all or part
        //# of a gap in the sequence space.
        // (Part of a gap leaves a hole, which acks at once already; a packet that closes the
        // last hole moves `cum` over the packets buffered behind it.) Without this the sender's
        // tail-loss probe could fire first and resend a delivered packet.
        let filled_gap = r.cum.wrapping_sub(cum_before) > 1;
        // At least one ACK per half of the window advertised: with a small share of a receive
        // budget (an incast), a sender whose whole window is `ack_every` or less would
        // otherwise wait `ack_delay` for every window.
        let ack_every = ctx.config.ack_every.min((r.capacity.min(r.adv) / 2).max(1));
        if r.unacked >= ack_every || c.flags.contains(Flags::ACK_REQ) || r.has_hole() || filled_gap
        {
            r.ack_now = true;
        }
    }

    fn place_send(
        &mut self,
        c: &Common,
        d: &DataExt,
        payload: &[u8],
        virt: bool,
        ctx: &mut Ctx<'_>,
    ) -> Placement {
        let r = &mut self.recv;
        let Some(slot) = r.inbound_slot(d.msg_id) else {
            return Placement::Inconsistent;
        };
        let new = slot.is_none();
        match slot {
            Some(m) if m.tag != d.tag || m.len != d.msg_len || m.done => {
                return Placement::Inconsistent;
            }
            Some(_) => {}
            None => {
                *slot = Some(InMsg {
                    tag: d.tag,
                    len: d.msg_len,
                    received: 0,
                    recv: None,
                    early: None,
                    reserved: 0,
                    done: false,
                });
            }
        }
        // Messages are matched in order; a new one may now be matchable.
        if new {
            self.match_new(d.msg_id, ctx);
        }
        let budget = ctx.config.unexpected_bytes;
        let r = &mut self.recv;
        if weir_wire::psn::lt(d.msg_id, r.in_base) {
            // Completed while matching: an empty message needs nothing more.
            return Placement::Placed;
        }
        let plen = c.payload_len as u64;
        let Some((recv, unreserved, len)) = r.inbound_get(d.msg_id).map(|m| {
            (
                m.recv,
                m.recv.is_none() && m.reserved == 0 && m.len > 0,
                m.len,
            )
        }) else {
            return Placement::Inconsistent;
        };
        match recv {
            Some(recv) => {
                self.stats.rx_streamed_bytes +=
                    write_clipped(ctx.mem, &recv, d.msg_offset as u64, payload, virt);
            }
            None => {
                if unreserved {
                    if r.unexpected_used + len as u64 > budget {
                        return Placement::NoResources;
                    }
                    r.unexpected_used += len as u64;
                    // Past three quarters of the budget the receiver says it is not ready
                    // (XOFF), so that what is in flight still fits in the rest.
                    if r.unexpected_used > budget - budget / 4 && r.xoff() {
                        r.ack_now = true;
                        self.stats.rnr_sent += 1;
                    }
                    let buf = (!virt).then(|| r.early_buffer(len as usize));
                    if let Some(m) = r.inbound_get(d.msg_id) {
                        m.reserved = len as u64;
                        m.early = buf;
                    }
                }
                if let Some(buf) = r.inbound_get(d.msg_id).and_then(|m| m.early.as_mut()) {
                    let off = d.msg_offset as usize;
                    if let Some(dst) = buf.get_mut(off..off + payload.len()) {
                        dst.copy_from_slice(payload);
                    }
                }
            }
        }
        let Some(m) = r.inbound_get(d.msg_id) else {
            return Placement::Inconsistent;
        };
        m.received += plen;
        if m.received >= len as u64 && m.recv.is_some() {
            self.complete_recv(d.msg_id, ctx);
        }
        Placement::Placed
    }

    fn place_write(
        &mut self,
        c: &Common,
        d: &DataExt,
        payload: &[u8],
        virt: bool,
        ctx: &mut Ctx<'_>,
    ) -> Placement {
        let Some((region, _)) = ctx.mem.by_rkey(d.rkey) else {
            return Placement::AccessError;
        };
        let Some(dst) = d.tag.checked_add(d.msg_offset as u64) else {
            return Placement::AccessError;
        };
        // Every packet carries the whole write's extent (remote offset `tag`, `msg_len`): check
        // it all, so that no packet of a write that overruns the region is placed (InfiniBand
        // checks the whole extent against the memory key at the first packet; with spraying,
        // any packet may arrive first).
        if !ctx.mem.check(region, d.tag, u64::from(d.msg_len)) {
            return Placement::AccessError;
        }
        let plen = c.payload_len as u64;
        let ok = if virt || payload.len() as u64 != plen {
            ctx.mem.check(region, dst, plen)
        } else {
            let placed = ctx.mem.write(region, dst, payload);
            if placed == Some(true) {
                self.stats.rx_streamed_bytes += plen;
            }
            placed.is_some()
        };
        if !ok {
            return Placement::AccessError;
        }
        if d.notify {
            let r = &mut self.recv;
            let i = match r.writes.iter().position(|w| w.msg_id == d.msg_id) {
                Some(i) => i,
                None => {
                    if r.writes.len() >= r.capacity as usize {
                        return Placement::NoResources;
                    }
                    r.writes.push(InWrite {
                        msg_id: d.msg_id,
                        len: d.msg_len,
                        received: 0,
                        imm: d.imm,
                    });
                    r.writes.len() - 1
                }
            };
            let w = &mut r.writes[i];
            w.received += plen;
            if w.received >= w.len as u64 {
                let w = r.writes.swap_remove(i);
                ctx.events.push_back(Event::Completion(Completion {
                    conn: ConnId(self.id),
                    wr: WrId(u64::MAX),
                    kind: CompletionKind::WriteReceived { imm: w.imm },
                    len: w.len as u64,
                    tag: 0,
                    status: Ok(()),
                }));
                self.rnr_update(ctx.config);
            }
        }
        Placement::Placed
    }

    /// Match known messages, in order, to posted receives (MPI rules), oldest first (after a
    /// receive was posted): each message not yet matched takes the first posted receive whose
    /// tag accepts it; a message no posted receive accepts stays unexpected without blocking
    /// later messages. Matching stops at the first message not known yet (none of its packets
    /// arrived), since it may claim a receive before any later message. Invariant on return:
    /// no unmatched message before that gap has a matching posted receive.
    pub(crate) fn match_pending(&mut self, ctx: &mut Ctx<'_>) {
        self.match_from(self.recv.match_next, ctx);
    }

    /// Message `id` arrived (its first packet). Only when it fills the gap at the frontier can
    /// anything newly match — it and the messages buffered behind it, in order; the ones
    /// before it were tried against the current receives already (the invariant of
    /// [`Conn::match_pending`]). So each message is tried once per change of the posted
    /// receives, not once per packet of every message.
    fn match_new(&mut self, id: u32, ctx: &mut Ctx<'_>) {
        if id == self.recv.frontier {
            self.match_from(id, ctx);
        }
    }

    /// Try messages `start`, `start + 1`, … up to the first that has not arrived, which
    /// becomes the frontier.
    fn match_from(&mut self, start: u32, ctx: &mut Ctx<'_>) {
        let mut id = start;
        while self.recv.inbound_get(id).is_some() {
            if !self.recv.posted.is_empty() {
                self.try_match(id, ctx);
            }
            id = id.wrapping_add(1);
        }
        self.recv.frontier = id;
        self.advance_matched();
        self.rnr_update(ctx.config);
    }

    /// The peer said it is not ready, answering the transmission stamped `echo_ts`: stop new
    /// data (counted once per pause), unless that transmission is older than the ACK that
    /// last ended a pause (a reordered old answer). A refusal (`refused`) also puts the next
    /// probe `rnr_delay` from now; an ACK leaves a running pause's probe time alone.
    fn rnr_block(&mut self, now: Instant, echo_ts: u64, refused: bool, config: &Config) {
        if echo_ts <= self.rnr_cleared_ts {
            return;
        }
        let probe_at = now + config.rnr_delay;
        if self.rnr.is_none() {
            self.stats.rnr_pauses += 1;
        }
        // A refusal is retried after `rnr_delay`; a receiver that only said it is not ready
        // answers with an XON when it is, so a probe is a guard against losing that ACK and
        // starts at the backoff's end.
        let b = self.rnr.get_or_insert(RnrBlock {
            refused_ts: echo_ts,
            probe_at: if refused {
                probe_at
            } else {
                now + config.rnr_delay.saturating_mul(1 << RNR_FIRST_WAIT_PROBE)
            },
            since: now,
            refused,
            probes: if refused { 0 } else { RNR_FIRST_WAIT_PROBE },
            start_ts: echo_ts,
        });
        b.refused_ts = b.refused_ts.max(echo_ts);
        if refused {
            if !b.refused {
                // Refused resends back off from `rnr_delay`, as in a block that began so.
                b.probes = 0;
                b.refused = true;
                b.probe_at = probe_at;
            } else {
                // A refusal of a probe does not undo its backoff.
                b.probe_at = b.probe_at.max(probe_at);
            }
        }
    }

    /// Receiver not ready (`RecvState::starved`) ends once data can be placed again: a posted
    /// receive waits unmatched, or no more than a quarter of the unexpected budget is used
    /// (it began at three quarters, or at a refusal: the hysteresis lets an application that
    /// fell behind catch up on what it holds before the sender refills it, and keeps the flag
    /// from flapping). The ACK saying so goes at once (XON, a window update).
    fn rnr_update(&mut self, config: &Config) {
        let r = &mut self.recv;
        if !r.starved {
            return;
        }
        let budget = config.unexpected_bytes;
        if (!r.posted.is_empty() || r.unexpected_used <= budget / 4)
            && r.writes.len() < r.capacity as usize
        {
            r.starved = false;
            r.ack_now = true;
        }
    }

    /// Give message `id` the first posted receive that takes its tag, if it has none yet.
    fn try_match(&mut self, id: u32, ctx: &mut Ctx<'_>) {
        let r = &mut self.recv;
        let Some((tag, matched)) = r.inbound_get(id).map(|m| (m.tag, m.recv.is_some())) else {
            return;
        };
        if matched {
            return;
        }
        let Some(recv) = r.take_recv(tag) else {
            return;
        };
        let Some(m) = r.inbound_get(id) else { return };
        m.recv = Some(recv);
        let early = m.early.take();
        let reserved = core::mem::take(&mut m.reserved);
        let complete = m.received >= m.len as u64;
        if let Some(buf) = early {
            self.stats.rx_streamed_bytes += write_clipped(ctx.mem, &recv, 0, &buf, false);
            r.recycle(buf, ctx.config.unexpected_bytes);
        }
        r.unexpected_used -= reserved;
        if complete {
            self.complete_recv(id, ctx);
        }
    }

    /// Every message before `match_next` has a receive; drop the completed head.
    fn advance_matched(&mut self) {
        let r = &mut self.recv;
        while r
            .inbound_get(r.match_next)
            .is_some_and(|m| m.recv.is_some())
        {
            r.match_next = r.match_next.wrapping_add(1);
        }
        r.trim_inbound();
    }

    fn complete_recv(&mut self, msg_id: u32, ctx: &mut Ctx<'_>) {
        let r = &mut self.recv;
        let Some(m) = r.inbound_get(msg_id) else {
            return;
        };
        let Some(recv) = m.recv else { return };
        if m.done {
            return;
        }
        m.done = true;
        let len = m.len as u64;
        let status = if len > recv.len {
            Err(WrError::Truncated {
                message: len,
                buffer: recv.len,
            })
        } else {
            Ok(())
        };
        ctx.events.push_back(Event::Completion(Completion {
            conn: ConnId(self.id),
            wr: recv.wr,
            kind: CompletionKind::Recv,
            len,
            tag: m.tag,
            status,
        }));
        r.trim_inbound();
    }

    fn on_ack(
        &mut self,
        now: Instant,
        c: &Common,
        a: &AckExt,
        hops: &[weir_wire::IntHop],
        ctx: &mut Ctx<'_>,
    ) {
        self.stats.acks_received += 1;
        if !hops.is_empty() {
            self.stats.int_acks_received += 1;
        }
        // Receiver-not-ready flow control: an ACK with `RNR` stops new data (unless it answers
        // a transmission older than the ACK that last ended a block: reordered); one without
        // it, answering a transmission no older than the last refused one, ends the block (an
        // older ACK may only have been reordered behind the refusal).
        if c.flags.contains(Flags::RNR) {
            self.rnr_block(now, a.echo_ts, false, ctx.config);
        } else if self.rnr.is_none() {
            // Ready: an `RNR` answer to an older transmission, reordered behind this, is
            // stale.
            self.rnr_cleared_ts = self.rnr_cleared_ts.max(a.echo_ts);
        } else if let Some(b) = self.rnr
            && b.cleared_by(a.echo_ts)
        {
            self.rnr = None;
            self.rnr_cleared_ts = a.echo_ts;
            let us = now.saturating_since(b.since).as_nanos() / 1000;
            self.stats.rnr_paused_us += us;
            self.stats.rnr_max_pause_us = self.stats.rnr_max_pause_us.max(us);
        }
        let selective = ctx.config.mode == Mode::Weir;
        let horizon = now.saturating_sub(self.rto(ctx.config).saturating_mul(4));
        if selective && self.send.spurious(a.echo_ts, horizon) {
            self.spurious_resend(now);
        }
        // An ACK echoing the tail-loss probe answers it (timestamps are unique per connection).
        let probe = self
            .tlp_sent
            .filter(|t| a.echo_ts != 0 && a.echo_ts == t.as_ps());
        if probe.is_some() {
            self.tlp_sent = None;
        }
        let reorder_window = self.reorder_window(ctx.config);
        let Conn { send, paths, .. } = self;
        let mut on = |d| match d {
            Delivery::Acked { path, sent_at } => paths.delivered(path, sent_at),
            Delivery::Lost { path, .. } => paths.penalize(path, Penalty::Loss, now),
        };
        let mut outcome = send.on_ack(a, reorder_window, selective, probe, now, &mut on);
        if outcome.acked_pkts > 0
            && let Some(fired) = self.rto_fired.take()
            && a.echo_ts != 0
            && a.echo_ts < fired.as_ps()
        {
            // The first ACK of new data after a retransmission timeout was triggered by a
            // packet sent before it: the originals were not all lost (a stalled host or a late
            // ACK path, not a dead network). Put back in flight what the timeout declared lost
            // and has not been resent, and let RACK judge it with this ACK.
            let restored = send.undo_rto();
            if restored > 0 {
                self.stats.spurious_rtos += 1;
                self.stats.lost_packets =
                    self.stats.lost_packets.saturating_sub(u64::from(restored));
                let again = send.on_ack(a, reorder_window, selective, probe, now, &mut on);
                outcome.lost_bytes += again.lost_bytes;
                outcome.lost_pkts += again.lost_pkts;
            }
        }
        self.stats.lost_packets += u64::from(outcome.lost_pkts);
        self.stats.max_repair_us = self
            .stats
            .max_repair_us
            .max(u64::from(outcome.max_repair_us));
        if probe.is_some() && outcome.lost_pkts == 0 {
            // The probe's answer revealed no loss: the originals (or their ACKs) were only
            // late, e.g. the peer's host was descheduled. The probe timeout is short for this
            // path: widen it one smoothed RTT, up to `PTO_MULT_MAX`.
            self.stats.spurious_probes += 1;
            self.pto_mult = (self.pto_mult + 1).min(PTO_MULT_MAX);
            self.pto_quiet = 0;
        }
        if outcome.lost_pkts > 0 {
            // One more loss episode without a spurious resend: the window decays back.
            self.reo_quiet += 1;
            if self.reo_quiet >= REO_DECAY {
                self.reo_quiet = 0;
                self.reo_mult = (self.reo_mult - 1).max(1);
            }
        }
        // RTT from the echoed timestamp of the packet that triggered this ACK — only when the
        // ACK acknowledges something new: an old, duplicated or replayed ACK says nothing about
        // the current round trip.
        let (rtt, host_delay) = if outcome.acked_pkts > 0 {
            self.rtt_sample(now, a.echo_ts, a.rx_delay_ns)
        } else {
            (None, None)
        };
        // ECN: the count is cumulative; take the difference, ignoring absurd jumps.
        let delta = a.ecn_bytes.wrapping_sub(self.send.last_ecn_bytes);
        let ecn_bytes = if delta < 1 << 31 {
            self.send.last_ecn_bytes = a.ecn_bytes;
            delta as u64
        } else {
            0
        };
        if c.flags.contains(Flags::ECN_ECHO) {
            self.paths.penalize(c.entropy, Penalty::Ecn, now);
        }
        let mut tel = [HopTelemetry::default(); weir_wire::MAX_INT_HOPS];
        for (t, h) in tel.iter_mut().zip(hops) {
            *t = HopTelemetry {
                qlen: h.qlen as u64,
                rate: weir_base::Rate::from_mbps(h.rate_mbps as u64),
                tx_bytes: h.tx_bytes,
                ts: Instant::from_nanos(h.ts_ns),
            };
        }
        let fb = Feedback {
            acked_bytes: outcome.acked_bytes,
            acked_packets: outcome.acked_pkts,
            ecn_bytes,
            rtt,
            host_delay,
            hops: &tel[..hops.len().min(tel.len())],
            loss: (outcome.lost_pkts > 0).then_some(LossKind::Detected),
            lost_bytes: outcome.lost_bytes,
            path: c.entropy,
            in_flight: self.send.in_flight,
            ..Feedback::default()
        };
        self.cc.on_feedback(now, &fb);
        if outcome.acked_pkts > 0 {
            self.trim_streak = 0;
        }
        if outcome.progress || outcome.acked_pkts > 0 {
            self.rto_backoff = 0;
            self.retries = 0;
            self.tlps = 0;
            self.timers.stop(Timer::Rto);
            self.timers.stop(Timer::Tlp);
            self.arm_timers(now, ctx.config);
        }
        self.complete_sends(ctx.events);
    }

    fn on_nack(&mut self, now: Instant, n: &NackExt, ctx: &mut Ctx<'_>) {
        self.stats.acks_received += 1;
        match n.reason {
            NackReason::OutOfSequence => {
                let (bytes, pkts) = self.send.go_back(n.nack_psn);
                self.stats.lost_packets += pkts as u64;
                let fb = Feedback {
                    loss: Some(LossKind::Detected),
                    lost_bytes: bytes,
                    in_flight: self.send.in_flight,
                    ..Feedback::default()
                };
                self.cc.on_feedback(now, &fb);
            }
            NackReason::Trimmed | NackReason::TrimmedLastHop => {
                if let Some((len, path)) = self.send.mark_lost(n.nack_psn) {
                    self.stats.lost_packets += 1;
                    self.paths.penalize(path, Penalty::Loss, now);
                    let kind = if n.reason == NackReason::Trimmed {
                        LossKind::Trimmed
                    } else {
                        LossKind::TrimmedLastHop
                    };
                    let (rtt, _) = self.rtt_sample(now, n.echo_ts, 0);
                    let fb = Feedback {
                        loss: Some(kind),
                        lost_bytes: len as u64,
                        rtt,
                        path,
                        in_flight: self.send.in_flight,
                        ..Feedback::default()
                    };
                    self.cc.on_feedback(now, &fb);
                    self.trim_backoff(now, ctx.config);
                }
            }
            NackReason::OutOfResources => {
                self.stats.rnr_nacks += 1;
                // No new data until the receiver is ready; refused packets wait `rnr_delay`
                // and then go one at a time as probes. A NACK for a packet sent before the
                // ACK that last ended a block is a reordered old one and blocks nothing.
                self.rnr_block(now, n.echo_ts, true, ctx.config);
                let lost = self.send.mark_lost(n.nack_psn).is_some();
                // The peer answered: not a network loss, so the loss timers start over.
                self.timers.stop(Timer::Rto);
                self.timers.stop(Timer::Tlp);
                self.arm_timers(now, ctx.config);
                if lost {
                    let fb = Feedback {
                        loss: Some(LossKind::ReceiverNoResources),
                        in_flight: self.send.in_flight,
                        ..Feedback::default()
                    };
                    self.cc.on_feedback(now, &fb);
                }
            }
            NackReason::AccessError => {
                //= IBTA RoCEv2 / InfiniBand spec vol. 1, 9.7.5.2.4 (remote access error)
                //# The requester completes the work request with a remote access error and the
                //# queue pair enters the error state.
                if let Some(p) = self.send.pkt(n.nack_psn).copied()
                    && let Some(m) = self.send.msg_mut(p.out_seq)
                {
                    m.error = Some(WrError::RemoteAccess);
                    self.close_reason = Some(CLOSE_ACCESS);
                    self.close_code = Some(CLOSE_ACCESS);
                    self.fail(ConnError::RemoteAccess, ctx.events, now);
                }
            }
            NackReason::PsnOutOfWindow | NackReason::Truncated => {}
        }
    }

    fn rtt_sample(
        &mut self,
        now: Instant,
        echo_ts: u64,
        rx_delay_ns: u32,
    ) -> (Option<Duration>, Option<Duration>) {
        if echo_ts == 0 || echo_ts > now.as_ps() {
            return (None, None);
        }
        let rtt = now.saturating_since(Instant::from_ps(echo_ts));
        if rtt > Duration::from_secs(60) {
            return (None, None);
        }
        self.rtt.sample(rtt);
        let host = Duration::from_nanos(rx_delay_ns as u64);
        (Some(rtt), (rx_delay_ns > 0).then_some(host.min(rtt)))
    }

    fn complete_sends(&mut self, events: &mut VecDeque<Event>) {
        while let Some(m) = self.send.pop_done() {
            let kind = match m.kind {
                MsgKind::Send => CompletionKind::Send,
                MsgKind::Write => CompletionKind::Write,
            };
            events.push_back(Event::Completion(Completion {
                conn: ConnId(self.id),
                wr: m.wr,
                kind,
                len: m.len as u64,
                tag: if m.kind == MsgKind::Send { m.tag } else { 0 },
                status: m.error.map_or(Ok(()), Err),
            }));
        }
    }

    /// Fail the connection: every outstanding request completes with an error, then
    /// `ConnectionLost` (or `Closed` when the peer closed an idle connection).
    pub(crate) fn fail(&mut self, reason: ConnError, events: &mut VecDeque<Event>, now: Instant) {
        if self.state == State::Failed {
            return;
        }
        let had_work = self.has_work();
        self.state = State::Failed;
        if self.close_code.is_some() {
            self.close_resends = CLOSE_RESENDS;
            self.timers
                .set(Timer::Keepalive, now + self.close_interval());
        }
        self.flush_requests(WrError::ConnectionLost(reason), events);
        if reason == ConnError::PeerClosed && !had_work {
            events.push_back(Event::Closed {
                conn: self.handle(),
            });
        } else {
            events.push_back(Event::ConnectionLost {
                conn: self.handle(),
                peer: self.peer,
                reason,
            });
        }
    }

    /// Complete every outstanding request with `err`.
    pub(crate) fn flush_requests(&mut self, err: WrError, events: &mut VecDeque<Event>) {
        let conn = self.handle();
        let fail = |wr, kind, len, tag| {
            Event::Completion(Completion {
                conn,
                wr,
                kind,
                len,
                tag,
                status: Err(err),
            })
        };
        for m in self.send.drain() {
            let kind = if m.kind == MsgKind::Send {
                CompletionKind::Send
            } else {
                CompletionKind::Write
            };
            let status = Err(m.error.unwrap_or(err));
            events.push_back(Event::Completion(Completion {
                conn,
                wr: m.wr,
                kind,
                len: m.len as u64,
                // A write's `tag` field holds its remote offset: report 0, as on success.
                tag: if m.kind == MsgKind::Send { m.tag } else { 0 },
                status,
            }));
        }
        for m in self.recv.inbound.drain(..).flatten() {
            if let Some(r) = m.recv.filter(|_| !m.done) {
                events.push_back(fail(r.wr, CompletionKind::Recv, 0, m.tag));
            }
        }
        for r in self.recv.posted.drain(..) {
            events.push_back(fail(r.wr, CompletionKind::Recv, 0, r.tag.unwrap_or(0)));
        }
        self.recv.unexpected_used = 0;
        self.timers.stop(Timer::Rto);
        self.timers.stop(Timer::Tlp);
    }

    // ---------------------------------------------------------------------------------------
    // Output.

    fn reorder_window(&self, config: &Config) -> Duration {
        //= https://www.rfc-editor.org/rfc/rfc8985#section-6.2
        //# RACK.reo_wnd = RACK.min_RTT / 4 (when reordering has been observed).
        // (Paraphrased: with DSACK-driven adaptation the window is min(reo_wnd_mult ×
        // min_RTT/4, SRTT).)
        let base = self.rtt.min_rtt().map_or(config.min_reorder_window, |m| {
            m.div(4).max(config.min_reorder_window)
        });
        // RFC 8985 caps the widened window at SRTT; under spraying one path's queue can delay
        // a packet by more than the smoothed RTT (whose samples come mostly from the faster
        // paths), so the cap here is the retransmission timeout: waiting longer than that
        // would only let the timeout fire first.
        let wnd = base.saturating_mul(u64::from(self.reo_mult));
        if self.reo_mult > 1 {
            wnd.min(self.rto(config).max(base))
        } else {
            wnd
        }
    }

    /// An ACK proved a resend unnecessary (its earlier transmission arrived).
    fn spurious_resend(&mut self, now: Instant) {
        self.stats.spurious_retransmits += 1;
        // RFC 8985 §6.2 (paraphrased): on a DSACK, raise reo_wnd_mult by one, at most once per
        // round trip.
        let round = self.rtt.srtt().unwrap_or(MIN_PTO);
        if self.reo_raised_at.is_none_or(|t| now >= t + round) {
            self.reo_raised_at = Some(now);
            self.reo_mult = (self.reo_mult + 1).min(REO_MULT_MAX);
        }
        self.reo_quiet = 0;
    }

    /// A trimmed NACK arrived. With the window at its floor of one packet, the window no
    /// longer limits anything (the NACK frees it at once, a base RTT after the send, since
    /// trimmed headers travel at priority), so N senders into one port keep offering N packets
    /// per base RTT however full the port is. From the first trim without an ACK of delivered
    /// data since, the connection waits before sending again: one smoothed RTT, doubling per
    /// further trim (binary exponential backoff) up to 64×, at most half the RTO.
    fn trim_backoff(&mut self, now: Instant, config: &Config) {
        self.trim_streak = self.trim_streak.saturating_add(1);
        let collapsed = self
            .cc
            .limits()
            .window
            .is_some_and(|w| w <= u64::from(self.max_payload));
        if !collapsed {
            return;
        }
        let srtt = self.rtt.srtt().unwrap_or(MIN_PTO);
        let hold = srtt
            .saturating_mul(1 << (self.trim_streak - 1).min(TRIM_BACKOFF_MAX))
            .min(self.rto(config).div(2));
        let until = now + hold;
        if until > self.send.retx_hold_until {
            self.send.retx_hold_until = until;
            self.stats.trim_backoffs += 1;
        }
    }

    /// A unique transmit timestamp at or after `now` (one picosecond past the last when
    /// several packets leave at the same instant).
    fn stamp(&mut self, now: Instant) -> Instant {
        let t = if now > self.last_stamp {
            now
        } else {
            Instant::from_ps(self.last_stamp.as_ps().saturating_add(1))
        };
        self.last_stamp = t;
        t
    }

    fn rto(&self, config: &Config) -> Duration {
        let base = self.rtt.rto_base().unwrap_or(config.initial_rto);
        let base = base.max(config.min_rto).min(config.max_rto);
        base.saturating_mul(1 << self.rto_backoff.min(16))
            .min(config.max_rto)
    }

    fn pto(&self, config: &Config) -> Duration {
        //= https://www.rfc-editor.org/rfc/rfc8985#section-7.2
        //# PTO = 2 * SRTT (plus the peer's delayed-ACK allowance when one packet is in flight).
        // The last packet of every message carries ACK_REQ, so the receiver does not delay the
        // ACK that would answer a probe: no delayed-ACK allowance is needed.
        // A probe that proved spurious (its original arrived) widens the timeout by one smoothed
        // RTT per step, up to 2 more; PTO_DECAY probes without one narrow it a step again.
        match self.rtt.srtt() {
            Some(s) => s.saturating_mul(1 + u64::from(self.pto_mult)).max(MIN_PTO),
            None => config.initial_rto,
        }
        .min(self.rto(config))
    }

    /// (Re-)arm the loss timers after sending or after progress.
    fn arm_timers(&mut self, now: Instant, config: &Config) {
        let outstanding = self.send.in_flight_pkts > 0 || self.send.has_retx_queued();
        // Blocked by the receiver (RNR) with nothing in the network: the RNR probe, not a loss
        // timer, is what runs.
        if !outstanding || (self.rnr.is_some() && self.send.in_flight_pkts == 0) {
            self.timers.stop(Timer::Rto);
            self.timers.stop(Timer::Tlp);
            return;
        }
        if !self.timers.is_set(Timer::Rto) {
            self.timers.set(Timer::Rto, now + self.rto(config));
        }
        // (RFC 8985 §7.2 arms the probe timer after sending new data.) Armed at the end of data
        // and whenever the window holds new data back: if what is in flight was all lost, no
        // ACK will come to open the window, and the probe's ACK lets RACK declare the rest lost
        // within two round trips instead of a timeout.
        if config.tail_loss_probe
            && config.mode == Mode::Weir
            && !self.timers.is_set(Timer::Tlp)
            && self.tlps < MAX_TLP
            && (!self.send.has_new_data() || self.window_blocked())
        {
            self.timers.set(Timer::Tlp, now + self.pto(config));
        }
    }

    /// New data waits for the congestion or the receiver's window.
    fn window_blocked(&self) -> bool {
        !weir_wire::psn::lt(self.send.snd_nxt, self.send.rwnd_psn)
            || !self.window_allows(self.max_payload)
    }

    /// Whether the congestion window lets a packet of `len` bytes go. A collapsed window
    /// always admits one packet (nothing in flight), so a connection can never stall behind
    /// its own window.
    fn window_allows(&self, len: u32) -> bool {
        //= https://www.rfc-editor.org/rfc/rfc5681#section-3.1
        //# Furthermore, upon a timeout ... cwnd MUST be set to no more than the loss window,
        //# LW, which equals 1 full-sized segment (regardless of the value of IW).
        // After a timeout one packet goes until an ACK comes back, whatever the controller's
        // window: a network that lost everything is probed before the window is resent, and a
        // spurious timeout (a late ACK) is recognised before it costs a window of duplicates.
        if self.rto_fired.is_some() {
            return self.send.in_flight_pkts == 0;
        }
        let limits = self.cc.limits();
        let cwnd = limits.window.unwrap_or(u64::MAX);
        self.send.in_flight == 0 || self.send.in_flight + len as u64 <= cwnd
    }

    fn pacing_allows(&self, now: Instant) -> bool {
        now >= self.next_pace
    }

    fn paced(&mut self, now: Instant, bytes: usize, config: &Config) {
        if let Some(rate) = self.cc.limits().rate {
            // A pacer woken late may catch up on at most `pace_burst` bytes of missed sending
            // time; beyond that the time is lost, as in a token bucket of that depth.
            let floor = now.saturating_sub(rate.serialization_time(u64::from(config.pace_burst)));
            let start = self.next_pace.max(floor);
            self.next_pace = start + rate.serialization_time(bytes as u64);
        }
    }

    /// The next packet of this connection, if any may go out at `now`.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        config: &Config,
        mem: &Memory,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let t = self.transmit_inner(now, config, mem, buf)?;
        if self.has_work() {
            self.timers.set(Timer::Keepalive, now + config.keepalive);
        }
        Some(t)
    }

    fn transmit_inner(
        &mut self,
        now: Instant,
        config: &Config,
        mem: &Memory,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        match self.state {
            State::SynSent if self.need_syn => {
                self.need_syn = false;
                self.hs_sent_at = Some(now);
                let ext = self.handshake_ext(config, self.syn_mac);
                return self.control(Opcode::Syn, Flags::empty(), Ext::Handshake(ext), 0, buf);
            }
            State::Established if self.need_synack => {
                // Our SYN-ACK, once per confirm received (the connector retransmits).
                self.need_synack = false;
                let ext = self.handshake_ext(config, self.peer_nonce);
                return self.control(Opcode::SynAck, Flags::empty(), Ext::Handshake(ext), 0, buf);
            }
            State::Established => {}
            State::Failed => {
                let reason = self.close_reason.take()?;
                return self.control(
                    Opcode::Close,
                    Flags::empty(),
                    Ext::Close(CloseExt { reason }),
                    0,
                    buf,
                );
            }
            _ => return None,
        }
        if let Some((psn, reason, echo_ts)) = self.nacks.pop_front() {
            self.stats.nacks_sent += 1;
            let ext = NackExt {
                cum_psn: self.recv.cum,
                nack_psn: psn,
                reason,
                echo_ts,
            };
            let e = self.recv.last_entropy;
            let mut flags = Flags::empty();
            flags.set(Flags::RNR, self.not_ready());
            return self.control(Opcode::Nack, flags, Ext::Nack(ext), e, buf);
        }
        if self.recv.cnp_due {
            self.recv.cnp_due = false;
            self.stats.cnps_sent += 1;
            let e = self.recv.last_entropy;
            return self.control(Opcode::Cnp, Flags::empty(), Ext::None, e, buf);
        }
        if self.recv.ack_now {
            return self.ack(now, buf);
        }
        if let Some(total) = self.credit_echo.take() {
            return self.credit_packet(total, buf);
        }
        if let Some(t) = self.credit_request(now, buf) {
            return Some(t);
        }
        // The receiver refused data for lack of buffers (RNR): no new data until it says it is
        // ready, and until then one packet per `rnr_delay` (a refused one, else a PROBE), as an
        // RC queue pair retries after an RNR NAK, rather than feed it a window to refuse.
        // Without a refusal (the receiver only said it is not ready, e.g. it has given its
        // buffer to other senders for now), what was lost of the window it allowed is resent
        // as found lost; only new data waits.
        let rnr_wait = self
            .rnr
            .filter(|b| b.refused)
            .map(|b| b.probe_at)
            .filter(|&t| now < t);
        let hold = self
            .send
            .retx_hold_until
            .max(rnr_wait.unwrap_or(Instant::ZERO));
        let held = now < hold;
        let data_waiting = self.send.has_new_data() || self.send.has_retx_queued();
        if data_waiting && held {
            self.timers.set(Timer::Blocked, hold);
        } else if data_waiting && !self.pacing_allows(now) {
            self.timers.set(Timer::Blocked, self.next_pace);
        }
        if !held && self.pacing_allows(now) {
            if self.send.has_retx(now)
                && self.window_allows(self.max_payload)
                && self.credit_allows(SendState::peek_retx_len)
            {
                let ts = self.stamp(now);
                let paths = &mut self.paths;
                if let Some(psn) = self.send.next_retx(ts, |orig| paths.for_retransmit(orig)) {
                    self.stats.retransmits += 1;
                    if let Some(b) = &mut self.rnr
                        && b.refused
                    {
                        b.probed(now, config);
                    }
                    return self.data(now, psn, true, false, config, mem, buf);
                }
            }
            if let Some(b) = &mut self.rnr {
                // Blocked with nothing refused left to resend and nothing in flight: a PROBE
                // asks for the receiver's state, in case its window update was lost.
                if data_waiting && self.send.in_flight_pkts == 0 && !self.send.has_retx_queued() {
                    if now >= b.probe_at {
                        b.probed(now, config);
                        self.probe_pending = true;
                    } else {
                        self.timers.set(Timer::Blocked, b.probe_at);
                    }
                }
            } else if self.send.has_new_data()
                && weir_wire::psn::lt(self.send.snd_nxt, self.send.rwnd_psn)
                && self.window_allows(self.max_payload)
                && self.credit_allows(|s| s.peek_new_len(self.max_payload))
            {
                let path = self.paths.next();
                let ts = self.stamp(now);
                if let Some(psn) = self.send.next_new(ts, self.max_payload, path) {
                    self.stats.data_packets += 1;
                    let len = self.send.pkt(psn).map_or(0, |p| p.len);
                    self.stats.data_bytes += len as u64;
                    return self.data(now, psn, false, false, config, mem, buf);
                }
            }
        }
        // The `CreditStall` timer, set while data waits for credit, counts each stall once and
        // fails the connection after `peer_timeout`.
        if data_waiting && !held && !self.timers.is_set(Timer::CreditStall) && self.credit_starved()
        {
            self.stats.credit_stalls += 1;
            self.timers
                .set(Timer::CreditStall, now + config.peer_timeout);
        }
        // The tail-loss probe carries no data: it asks for an ACK, which tells RACK what of
        // the tail arrived (`SendState::on_ack`), and what it finds lost is resent at once.
        // RFC 8985 §7.3 resends the last segment instead, saving one round trip when exactly
        // that segment was lost, but on a host a probe fires whenever the peer is descheduled
        // for two round trips, and the resend is then a duplicate; on a congested receiver
        // (incast) it is one more full packet into the queue that is dropping. A probe is a
        // header, needs no window or credit, and takes the next path of the spray.
        if self.tlp_pending {
            self.tlp_pending = false;
            if self.send.in_flight_pkts > 0 {
                self.stats.tlp_probes += 1;
                let ts = self.stamp(now);
                self.tlp_sent = Some(ts);
                let ext = ProbeExt { tx_ts: ts.as_ps() };
                let entropy = self.paths.for_tail_probe();
                let flags = self.probe_flags();
                return self.control(Opcode::Probe, flags, Ext::Probe(ext), entropy, buf);
            }
        }
        if self.probe_pending {
            self.probe_pending = false;
            let ext = ProbeExt {
                tx_ts: self.stamp(now).as_ps(),
            };
            let flags = self.probe_flags();
            return self.control(Opcode::Probe, flags, Ext::Probe(ext), 0, buf);
        }
        None
    }

    /// Something is queued to send (new data or retransmissions), whatever the windows allow:
    /// `Flags::MORE` on what goes out.
    fn has_more(&mut self) -> bool {
        self.send.has_new_data() || self.send.has_retx_queued()
    }

    fn probe_flags(&mut self) -> Flags {
        let mut flags = Flags::ACK_REQ;
        flags.set(Flags::MORE, self.has_more());
        flags
    }

    /// A CREDIT carrying `total` cumulative bytes (a paced grant from the endpoint's
    /// scheduler, or a repeat).
    pub(crate) fn credit_packet(&mut self, total: u64, buf: &mut [u8]) -> Option<Transmit> {
        if self.credit_echo.is_some_and(|e| e <= total) {
            self.credit_echo = None;
        }
        self.stats.credits_sent += 1;
        let ext = Ext::Credit(CreditExt { credit: total });
        let e = self.recv.last_entropy;
        self.control(Opcode::Credit, Flags::empty(), ext, e, buf)
    }

    /// RCCC sender: a CREDIT_REQ if the controller wants one now.
    fn credit_request(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let Builtin::Rccc(r) = &self.cc else {
            return None;
        };
        let cap = r.request_cap();
        let backlog = self.send.backlog_wire(self.max_payload, DATA_HEADER, cap);
        let blocked = self.credit_starved();
        let Builtin::Rccc(r) = &mut self.cc else {
            return None;
        };
        let q = r.poll_request(now, backlog, blocked)?;
        self.stats.credit_reqs_sent += 1;
        let ext = Ext::CreditReq(CreditReqExt {
            demand: q.demand,
            granted: q.granted,
        });
        self.control(Opcode::CreditReq, Flags::empty(), ext, 0, buf)
    }

    /// Whether the packet whose payload length `len` reads from the send state (`None`: there
    /// is none) has the credit it needs. Under any controller but RCCC: always, and `len` is
    /// not evaluated, so their data path pays nothing for credit.
    fn credit_allows(&self, len: impl FnOnce(&SendState) -> Option<u32>) -> bool {
        match &self.cc {
            Builtin::Rccc(r) => {
                len(&self.send).is_some_and(|l| r.allows(DATA_HEADER + u64::from(l)))
            }
            _ => true,
        }
    }

    /// RCCC: the next packet to send (a retransmission first) lacks credit.
    fn credit_starved(&self) -> bool {
        if !matches!(self.cc, Builtin::Rccc(_)) {
            return false;
        }
        let next = self
            .send
            .peek_retx_len()
            .or_else(|| self.send.peek_new_len(self.max_payload));
        next.is_some() && !self.credit_allows(|_| next)
    }

    /// Whether ACKs and NACKs say not ready (`Flags::RNR`): short of buffers, or waiting in
    /// line for a turn of the endpoint's receive budget (`Config::rx_grants`).
    fn not_ready(&self) -> bool {
        self.recv.starved || self.rx_turn == RxTurn::Waiting
    }

    fn ack(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let not_ready = self.not_ready();
        let r = &mut self.recv;
        let mut flags = Flags::empty();
        if r.ecn_echo {
            flags = flags.union(Flags::ECN_ECHO);
        }
        if not_ready {
            flags = flags.union(Flags::RNR);
        }
        let held = now
            .saturating_since(r.last_arrival)
            .as_nanos()
            .min(u32::MAX as u64) as u32;
        let ext = AckExt {
            cum_psn: r.cum,
            sack: if self.state == State::Established {
                r.sack()
            } else {
                Default::default()
            },
            rwnd_psn: r.rwnd_psn(),
            ecn_bytes: r.ecn_bytes,
            rx_delay_ns: held,
            echo_ts: r.last_tx_ts,
        };
        r.ack_now = false;
        r.ecn_echo = false;
        r.unacked = 0;
        r.unacked_since = None;
        self.timers.stop(Timer::AckDelay);
        let int = r
            .int_echo
            .as_deref_mut()
            .map_or_else(IntList::new, |x| core::mem::replace(x, IntList::new()));
        self.stats.acks_sent += 1;
        let e = r.last_entropy;
        self.control_with_int(Opcode::Ack, flags, Ext::Ack(ext), e, int, buf)
    }

    fn control(
        &mut self,
        opcode: Opcode,
        flags: Flags,
        ext: Ext,
        entropy: u16,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        self.control_with_int(opcode, flags, ext, entropy, IntList::new(), buf)
    }

    fn control_with_int(
        &mut self,
        opcode: Opcode,
        flags: Flags,
        ext: Ext,
        entropy: u16,
        int: IntList,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let header = Header {
            common: Common {
                opcode,
                flags,
                src_conn: self.id,
                dst_conn: if opcode == Opcode::Syn {
                    0
                } else {
                    self.peer_id
                },
                psn: self.send.snd_nxt,
                entropy,
                payload_len: 0,
                // The peer's nonce; for a SYN, 0 until the acceptor's cookie arrives, then the
                // cookie (which becomes the acceptor's nonce).
                token: self.peer_nonce,
            },
            ext,
            int,
        };
        let header_len = header.emit(buf).ok()?;
        Some(Transmit {
            meta: TxMeta {
                // Handshake packets (entropy 0) go to the peer's first port.
                to: self.peer_port(entropy),
                entropy,
                ecn: Ecn::NotEct,
            },
            header_len,
            payload: Payload::None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        now: Instant,
        psn: u32,
        retx: bool,
        probe: bool,
        config: &Config,
        mem: &Memory,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let more = self.has_more();
        let p = *self.send.pkt(psn)?;
        let m = self.send.msg(p.out_seq)?;
        let mut flags = Flags::empty();
        flags.set(Flags::RETX, retx);
        // Ask for an immediate ACK at the end of a message and on probes, so completions and
        // tail losses are learnt about one RTT later, not one ack_delay later.
        let last = p.msg_off + p.len == m.len;
        flags.set(Flags::ACK_REQ, probe || last);
        flags.set(Flags::INT, config.request_int || self.cc.needs_int());
        flags.set(Flags::MORE, more);
        let header = Header {
            common: Common {
                opcode: Opcode::Data,
                flags,
                src_conn: self.id,
                dst_conn: self.peer_id,
                psn,
                entropy: p.path,
                payload_len: p.len,
                token: self.peer_nonce,
            },
            ext: Ext::Data(DataExt {
                msg_id: m.msg_id,
                msg_len: m.len,
                msg_offset: p.msg_off,
                kind: m.kind,
                notify: m.notify.is_some(),
                tag: m.tag,
                rkey: m.rkey,
                imm: m.notify.unwrap_or(0),
                tx_ts: p.sent_at.as_ps(),
            }),
            int: IntList::new(),
        };
        let header_len = header.emit(buf).ok()?;
        let payload = if p.len == 0 {
            Payload::None
        } else if mem.is_virtual(m.region) {
            Payload::Virtual(p.len)
        } else {
            Payload::Region {
                region: m.region,
                offset: m.offset + p.msg_off as u64,
                len: p.len,
            }
        };
        let wire_bytes = header_len + p.len as usize;
        self.paced(now, wire_bytes, config);
        self.timers.stop(Timer::CreditStall);
        let sent = Sent {
            bytes: wire_bytes as u32,
            path: p.path,
            retransmit: retx,
            in_flight: self.send.in_flight,
        };
        self.cc.on_sent(now, &sent);
        self.arm_timers(now, config);
        Some(Transmit {
            meta: TxMeta {
                to: self.peer_port(p.path),
                entropy: p.path,
                ecn: Ecn::Ect0,
            },
            header_len,
            payload,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Timers.

    /// The earliest time this connection needs `on_timeout`.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::SynSent => self.timers.next_of(&Timer::HANDSHAKE),
            State::Established => {
                let t = self.timers.next_of(&Timer::ESTABLISHED);
                t.into_iter().chain(self.cc.next_timeout()).min()
            }
            // A failed connection's only timer: the repeats of its CLOSE (and a lingering one's
            // end).
            State::Failed if self.close_resends > 0 || (self.lingering && !self.linger_done) => {
                self.timers.get(Timer::Keepalive)
            }
            State::Failed => None,
        }
    }

    /// A graceful close finished (the application has `Closed`): send the CLOSE with `reason`
    /// now and repeat it `CLOSE_RESENDS` times, then let the endpoint forget the connection.
    pub(crate) fn linger(&mut self, now: Instant, reason: u32) {
        self.state = State::Failed;
        self.close_code = Some(reason);
        self.close_reason = Some(reason);
        self.close_resends = CLOSE_RESENDS;
        self.lingering = true;
        self.timers
            .set(Timer::Keepalive, now + self.close_interval());
    }

    /// Spacing of the CLOSE repeats: four smoothed RTTs, at least 1 ms.
    fn close_interval(&self) -> Duration {
        self.rtt
            .srtt()
            .map_or(Duration::ZERO, |s| s.saturating_mul(4))
            .max(Duration::from_millis(1))
    }

    fn hs_interval(&self, config: &Config) -> Duration {
        config
            .initial_rto
            .saturating_mul(1 << self.hs_tries.min(10))
            .min(config.max_rto)
    }

    /// Fire the timers due at `now`.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        config: &Config,
        events: &mut VecDeque<Event>,
    ) {
        match self.state {
            State::SynSent => {
                if self.timers.is_expired(Timer::HandshakeExpiry, now) {
                    self.fail(ConnError::HandshakeTimeout, events, now);
                    return;
                }
                if self.timers.is_expired(Timer::HandshakeRetry, now) {
                    self.hs_tries += 1;
                    let at = now + self.hs_interval(config);
                    self.timers.set(Timer::HandshakeRetry, at);
                    self.need_syn = true;
                }
            }
            State::Established => self.established_timeout(now, config, events),
            State::Failed => {
                if !self.timers.is_expired(Timer::Keepalive, now) {
                    return;
                }
                if self.close_resends > 0 {
                    self.close_reason = self.close_code;
                    self.close_resends -= 1;
                    let step = 1 << (CLOSE_RESENDS - self.close_resends);
                    if self.close_resends > 0 || self.lingering {
                        self.timers.set(
                            Timer::Keepalive,
                            now + self.close_interval().saturating_mul(step),
                        );
                    } else {
                        self.timers.stop(Timer::Keepalive);
                    }
                } else if self.lingering {
                    self.timers.stop(Timer::Keepalive);
                    self.linger_done = true;
                }
            }
        }
    }

    fn established_timeout(&mut self, now: Instant, config: &Config, events: &mut VecDeque<Event>) {
        let silent = now.saturating_since(self.last_heard);
        let busy = self.has_work();
        if !busy {
            // An idle connection neither probes nor times out: with nothing outstanding there
            // is nothing to lose, and tens of thousands of idle connections (NCCL keeps one
            // per peer and channel) would otherwise cost the engine a keepalive each per
            // interval. Liveness starts again with the next request (`Conn::wake`), as on an
            // RDMA reliable connection, which is silent when idle.
            self.timers.stop(Timer::Keepalive);
            self.timers.stop(Timer::PeerTimeout);
        } else if silent >= config.peer_timeout {
            let retries = self.retries;
            self.fail(
                ConnError::PeerTimeout {
                    silent_for: silent,
                    retries,
                },
                events,
                now,
            );
            return;
        }
        // RCCC: a peer that answers (so it is not silent) but grants no credit for as long as
        // the peer timeout, e.g. one that drops CREDIT_REQ, would otherwise hold the sender
        // forever.
        if let Some(at) = self.timers.get(Timer::CreditStall)
            && now >= at
        {
            self.fail(
                ConnError::CreditStarved {
                    waited_for: now.saturating_since(at) + config.peer_timeout,
                },
                events,
                now,
            );
            return;
        }
        if let Some(since) = self.recv.unacked_since
            && now >= since + config.ack_delay
        {
            self.recv.ack_now = true;
        }
        if self.cc.next_timeout().is_some_and(|t| now >= t) {
            self.cc.on_timeout(now);
        }
        if self.timers.is_expired(Timer::Blocked, now) {
            self.timers.stop(Timer::Blocked);
        }
        if self.timers.is_expired(Timer::Tlp, now) {
            self.timers.stop(Timer::Tlp);
            if self.send.in_flight_pkts > 0 && self.tlps < MAX_TLP {
                self.tlps += 1;
                self.tlp_pending = true;
                self.pto_quiet += 1;
                if self.pto_quiet >= PTO_DECAY {
                    self.pto_quiet = 0;
                    self.pto_mult = (self.pto_mult - 1).max(1);
                }
            }
        }
        if self.timers.is_expired(Timer::Rto, now) {
            self.timers.stop(Timer::Rto);
            self.timers.stop(Timer::Tlp);
            self.stats.rto_events += 1;
            self.retries += 1;
            self.rto_backoff += 1;
            let age = self.rtt.srtt().unwrap_or(Duration::ZERO) + self.reorder_window(config);
            let Conn { send, paths, .. } = self;
            let (bytes, pkts) = if config.mode == Mode::GoBackN {
                // A lost last packet, which no later packet can reveal, waits for the timeout.
                //= https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html#nccl-ib-timeout
                //# NCCL_IB_TIMEOUT: the InfiniBand verbs timeout is 4.096 µs × 2^timeout.
                //= https://doi.org/10.1145/3230543.3230557#background
                //# Go-back-N: the sender retransmits every packet sent after the last
                //# acknowledged one.
                send.all_lost(|path| paths.penalize(path, Penalty::Timeout, now))
            } else {
                // Everything in flight for longer than a round trip (and the oldest packet) is
                // lost and resent in PSN order: when a whole window vanished, no later ACK can
                // reveal it, and counting it in flight would hold the retransmissions behind a
                // collapsed window. A timeout on a host may
                // be a scheduling stall rather than a loss: the first ACK after it then echoes
                // an older transmission and the timeout is undone (`SendState::undo_rto`).
                // Only the oldest packet's path is blamed: a window lost to an incast says
                // nothing about the paths it was sprayed over.
                let (bytes, pkts, oldest) = send.rto_lost(now, age);
                if let Some(path) = oldest {
                    paths.penalize(path, Penalty::Timeout, now);
                }
                self.rto_fired = Some(now);
                (bytes, pkts)
            };
            self.stats.lost_packets += pkts as u64;
            let fb = Feedback {
                rto: true,
                lost_bytes: bytes,
                in_flight: self.send.in_flight,
                ..Feedback::default()
            };
            self.cc.on_feedback(now, &fb);
            self.arm_timers(now, config);
        }
        if self.timers.is_expired(Timer::Keepalive, now) {
            self.probe_pending = true;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    Placed,
    NoResources,
    Inconsistent,
    AccessError,
}

/// Copy `bytes` to `recv`'s buffer at message offset `off`, discarding whatever falls beyond
/// the receive buffer (the receive then completes as truncated). Returns the bytes placed
/// past the caches (`Memory::write`).
fn write_clipped(mem: &Memory, recv: &PostedRecv, off: u64, bytes: &[u8], virt: bool) -> u64 {
    if virt || off >= recv.len || bytes.is_empty() {
        return 0;
    }
    let n = (recv.len - off).min(bytes.len() as u64) as usize;
    match mem.write(recv.region, recv.offset + off, &bytes[..n]) {
        Some(true) => n as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// Bytes of a connection that `Endpoint::prefetch_handle` and `prefetch_transmit` ask for
    /// (`PREFETCH_CONN_LINES` cache lines).
    const PREFETCHED: usize = 12 * 64;

    /// The layout `Conn`'s `repr(C)` order is for: `Option<Conn>` (an endpoint slot) costs
    /// nothing over `Conn` and its niche is `armed`'s tag, at offset 0 (with the compiler's
    /// choice of niche elsewhere, every slot check read a cold line at the end), the slot check
    /// and the per-packet scalars are in the first four lines, and the sender and the hot head
    /// of the receiver lie within the prefetched lines.
    #[test]
    fn per_packet_fields_lead() {
        assert_eq!(size_of::<Option<Conn>>(), size_of::<Conn>());
        assert_eq!(offset_of!(Conn, armed), 0);
        for off in [
            offset_of!(Conn, id),
            offset_of!(Conn, state),
            offset_of!(Conn, local_nonce),
            offset_of!(Conn, peer),
            offset_of!(Conn, nacks),
            offset_of!(Conn, rnr),
        ] {
            assert!(off < 4 * 64, "{off}");
        }
        assert!(offset_of!(Conn, send) + size_of::<SendState>() <= PREFETCHED);
        assert!(offset_of!(Conn, recv) + offset_of!(RecvState, inbound) < PREFETCHED);
        assert!(size_of::<TimerTable>() <= 88);
    }
}
