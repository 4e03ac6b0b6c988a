//! The endpoint: connection table, demultiplexing, the handshake's listening side, and the
//! public sans-IO interface (see the crate documentation for the calling order).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::ptr::NonNull;

use weir_base::{Duration, Instant, Rng};
use weir_congestion::{CcConfig, CreditScheduler, RcccParams};
use weir_wire::{CloseExt, Common, Ecn, Ext, Flags, Header, IntList, Opcode, PayloadMode};

use crate::config::{Config, ConfigError};
use crate::conn::paths::PathStats;
use crate::conn::recv::PostedRecv;
use crate::conn::{CLOSE_NORMAL, CLOSE_REFUSED, Conn, Ctx, DATA_HEADER, RxTurn, State};
use crate::deadlines::Deadlines;
use crate::handshake;
use crate::mem::{Memory, RegionId};
use crate::stats::{ConnStats, EndpointStats};
use crate::{
    ConnId, Event, Payload, PostError, RxMeta, Transmit, TxMeta, WorkRequest, WrError, WrId,
};

/// Connection ids are `generation << INDEX_BITS | (slot + 1)`; 0 never names a connection.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Most packets waiting in the stateless queue (SYN-ACK cookies, refusals, closes of
/// forgotten connections); more are dropped and counted (`EndpointStats::drop_stateless_full`).
/// Each entry answers one received packet, and the queue is drained after every input.
const MAX_STATELESS: usize = 4096;
/// Most connections the credit scheduler serves at once (RCCC receiver side).
const MAX_CREDIT_FLOWS: usize = 1 << 16;
/// Cache lines of a connection [`Endpoint::prefetch_handle`] asks for.
const PREFETCH_CONN_LINES: usize = 12;

/// A transport endpoint: one local address, many connections. See the crate documentation for
/// the calling order.
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    local: SocketAddr,
    rng: Rng,
    mem: Memory,
    stats: EndpointStats,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    generation: u32,
    /// (peer address, peer's connection id) → our connection id, for duplicate SYNs.
    by_peer: BTreeMap<(SocketAddr, u32), u32>,
    /// Ids of the connections in a graceful close, in slot order (the order a scan of all
    /// connections would meet them), so the per-poll check visits only those.
    closing: Vec<u32>,
    listening: bool,
    /// When not empty, the `user_data` values a SYN may carry with the secret its MAC must
    /// be keyed with (see [`Endpoint::admit`]); other SYNs are dropped unanswered, except
    /// those carrying a key of `open`.
    admitted: BTreeMap<u64, u128>,
    /// Keys a SYN may carry without a MAC while others are admitted
    /// ([`Endpoint::admit_open_range`]): first key → last key of each range.
    open: BTreeMap<u64, u64>,
    /// This endpoint's key for SYN-ACK cookies (`crate::handshake::cookie`).
    cookie_key: u128,
    /// Connections closed gracefully that linger to repeat their CLOSE (`Conn::linger`).
    lingering: usize,
    /// Receive budget sharing (`Config::rx_budget_packets`).
    rx_budget: RxBudget,
    /// Turns of the receive budget (`Config::rx_grants`).
    rx_turns: RxTurns,
    /// Connection-creation token buckets per source address (`Config::accept_rate_per_source`).
    accept_buckets: BTreeMap<core::net::IpAddr, handshake::Bucket>,
    events: VecDeque<Event>,
    /// Connections that may have something to send, round-robin.
    ready: VecDeque<u32>,
    /// Every connection's next deadline ([`Conn::deadline`]) by slot, in a heap: the
    /// earliest is `poll_timeout`'s answer in O(1), and `handle_timeout` visits only the
    /// connections due. A connection is re-armed after every input that may move its
    /// deadline (`Endpoint::rearm`, called by `mark_ready` and after transmitting).
    timers: Deadlines,
    /// Scratch list of the slots due in `handle_timeout`.
    due: Vec<u32>,
    /// Packets not tied to a live connection (refusals, closes).
    stateless: VecDeque<(SocketAddr, Header)>,
    next_wr: u64,
    /// RCCC receiver side: paces CREDITs at the local link rate over every connection whose
    /// peer asks for credit (the last hop is shared by all of them).
    credit: CreditScheduler,
}

impl Endpoint {
    /// A new endpoint at `local` (used only in reports). `seed` drives every random choice
    /// (connection tokens, initial PSNs, entropy): seed it from the OS for real use, from the
    /// scenario for simulation.
    pub fn new(config: Config, local: SocketAddr, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        //= uet-htsim htsim/sim/uec.cpp#UecSink::_mtus_per_pull
        //# Credit is granted 4 packets per pull, the default of the UEC specification.
        let rate = credit_rate(&config);
        let params = match config.cc {
            CcConfig::Rccc(p) => p,
            _ => RcccParams::default(),
        };
        let pull = params.pull_bytes(u64::from(config.max_payload) + DATA_HEADER);
        // The cookie key comes from its own stream, so drawing it moves no other random choice.
        let mut keys = Rng::new(seed ^ 0x636f_6f6b_6965_6b65);
        let cookie_key = u128::from(keys.next_u64()) << 64 | u128::from(keys.next_u64());
        let rx_turns = RxTurns::new(&config);
        Ok(Endpoint {
            config,
            local,
            rng: Rng::new(seed),
            mem: Memory::streaming_from(config.stream_region_bytes),
            stats: EndpointStats::default(),
            conns: Vec::new(),
            free: Vec::new(),
            generation: 1,
            by_peer: BTreeMap::new(),
            closing: Vec::new(),
            timers: Deadlines::default(),
            due: Vec::new(),
            listening: false,
            admitted: BTreeMap::new(),
            open: BTreeMap::new(),
            cookie_key,
            accept_buckets: BTreeMap::new(),
            rx_budget: RxBudget::default(),
            rx_turns,
            lingering: 0,
            events: VecDeque::new(),
            ready: VecDeque::new(),
            stateless: VecDeque::new(),
            next_wr: 0,
            credit: CreditScheduler::new(rate, pull, MAX_CREDIT_FLOWS),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The local address given at creation.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accept incoming connections (or stop accepting new ones).
    pub fn listen(&mut self, on: bool) {
        self.listening = on;
    }

    /// Admit SYNs whose `user_data` is `key` and whose MAC is keyed with `secret` (see
    /// [`Endpoint::connect_authenticated`]). Once any key is admitted, every other SYN (no
    /// MAC, a wrong one, another `user_data`) is dropped and counted in
    /// `EndpointStats::drop_unauthenticated` before any state or reply exists: an application
    /// that hands its peers the secret out of band (the NCCL plugin's listen handle) makes its
    /// listener unreachable to anyone without it, so a SYN flood costs a parse, a map lookup
    /// and a SipHash per datagram and reflects nothing. With no key admitted, every SYN is
    /// answered (the default). Admitting a key again replaces its secret.
    pub fn admit(&mut self, key: u64, secret: u128) {
        self.open.remove(&key);
        self.admitted.insert(key, secret);
    }

    /// Let SYNs carrying `key` through the admission check without a MAC. Alone it changes
    /// nothing (with no key admitted every SYN passes); beside authenticated keys it keeps
    /// one listener open to unauthenticated connectors while the others stay closed to all
    /// but their secret's holders (an engine serving several clients: an NCCL plugin's
    /// authenticated listen comms and a communicator's plain one). Undone by
    /// [`Endpoint::revoke`].
    pub fn admit_open(&mut self, key: u64) {
        self.admit_open_range(key, key);
    }

    /// [`Endpoint::admit_open`] for every key from `first` to `last` (inclusive; nothing if
    /// `last < first`): a listener that tells its connectors apart by the key they pass (a
    /// communicator's rank `r` connects with `first + r`) holds one entry, not one per key.
    /// Ranges must not overlap; one with the same first key replaces it. Undone by
    /// [`Endpoint::revoke`]`(first)`.
    pub fn admit_open_range(&mut self, first: u64, last: u64) {
        if last < first {
            return;
        }
        self.admitted.remove(&first);
        self.open.insert(first, last);
    }

    /// Stop admitting `key`, or the open range that starts at it (see [`Endpoint::admit`]).
    pub fn revoke(&mut self, key: u64) {
        self.admitted.remove(&key);
        self.open.remove(&key);
    }

    /// Start connecting to `remote`; [`Event::Connected`] follows (or
    /// [`Event::ConnectionLost`] with [`crate::ConnError::HandshakeTimeout`]). `user_data` is
    /// delivered to the acceptor in [`Event::Accepted`]. Requests may be posted at once; they
    /// are sent when the handshake completes.
    pub fn connect(&mut self, now: Instant, remote: SocketAddr, user_data: u64) -> ConnId {
        self.connect_inner(now, remote, user_data, None)
    }

    /// [`Endpoint::connect`] to a listener that admits `user_data` with `secret`
    /// ([`Endpoint::admit`]): the SYN carries a MAC keyed with the secret over all its
    /// fields, never the secret itself.
    pub fn connect_authenticated(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        user_data: u64,
        secret: u128,
    ) -> ConnId {
        self.connect_inner(now, remote, user_data, Some(secret))
    }

    fn connect_inner(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        user_data: u64,
        secret: Option<u128>,
    ) -> ConnId {
        let id = self.alloc_id();
        let nonce = self.nonce();
        let psn = self.rng.next_u32();
        let entropy = self.rng.below(self.config.paths as u64) as u16;
        let mut c = Conn::new(
            now,
            &self.config,
            id,
            remote,
            nonce,
            psn,
            entropy,
            State::SynSent,
        );
        c.user_data = user_data;
        c.rwnd_offer = self.rwnd_offer();
        if let Some(secret) = secret {
            c.syn_mac = handshake::syn_mac(secret, id, &c.handshake_ext(&self.config, 0));
        }
        self.insert(c);
        ConnId(id)
    }

    /// Register `len` bytes at `ptr`. With `remote_write`, peers may write into it using the
    /// key from [`Endpoint::rkey`].
    ///
    /// # Safety
    /// The memory must stay valid (allocated, not moved, not freed) until
    /// [`Endpoint::deregister`] returns, and the application must not access bytes of an
    /// outstanding request until it completes, nor bytes of a remotely writable region while a
    /// peer may write them.
    pub unsafe fn register(&mut self, ptr: NonNull<u8>, len: u64, remote_write: bool) -> RegionId {
        let rkey = self.rkey_for_next(remote_write);
        self.mem.insert(Some(ptr), len, rkey)
    }

    /// Register a virtual region of `len` bytes: no memory, payload lengths only (simulator).
    pub fn register_virtual(&mut self, len: u64, remote_write: bool) -> RegionId {
        let rkey = self.rkey_for_next(remote_write);
        self.mem.insert(None, len, rkey)
    }

    /// Remove a region. Returns false if it was not registered. A connection with an
    /// outstanding request on the region (a send or write not yet acknowledged, a posted or
    /// partly filled receive) fails with [`crate::ConnError::LocalAccess`], its requests completing
    /// with that error, as an RDMA queue pair does when a memory region in use is
    /// deregistered: such a request could never finish, and a caller waiting for it would
    /// hang. Costs one look at every connection (deregistration is rare).
    pub fn deregister(&mut self, now: Instant, id: RegionId) -> bool {
        if !self.mem.remove(id) {
            return false;
        }
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            if c.state != State::Failed && c.uses_region(id) {
                c.local_access_error(&mut self.events, now);
                self.stats.conn_failed += 1;
                self.mark_ready(idx);
            }
        }
        true
    }

    /// The key peers use to write into `id` (0 when not remotely writable or unknown).
    pub fn rkey(&self, id: RegionId) -> u32 {
        self.mem.get(id).map_or(0, |r| r.rkey)
    }

    /// Post a work request on `conn`.
    pub fn post(&mut self, now: Instant, conn: ConnId, wr: WorkRequest) -> Result<WrId, PostError> {
        let max_outstanding = self.config.max_outstanding as usize;
        let idx = self.index(conn.0).ok_or(PostError::UnknownConnection)?;
        let c = self.conns[idx]
            .as_mut()
            .ok_or(PostError::UnknownConnection)?;
        if c.state == State::Failed || c.closing().is_some() {
            return Err(PostError::NotConnected);
        }
        let (region, offset, len) = match wr {
            WorkRequest::Send {
                region,
                offset,
                len,
                ..
            }
            | WorkRequest::Recv {
                region,
                offset,
                len,
                ..
            }
            | WorkRequest::Write {
                region,
                offset,
                len,
                ..
            } => (region, offset, len),
        };
        if self.mem.get(region).is_none() {
            return Err(PostError::UnknownRegion);
        }
        if !self.mem.check(region, offset, len) {
            return Err(PostError::OutOfBounds);
        }
        if c.send.outstanding() + c.recv.posted.len() >= max_outstanding {
            return Err(PostError::QueueFull);
        }
        let id = WrId(self.next_wr);
        c.wake(now, &self.config);
        match wr {
            WorkRequest::Send { tag, .. } => {
                let len = u32::try_from(len).map_err(|_| PostError::TooLong)?;
                c.send.push(
                    id,
                    weir_wire::MsgKind::Send,
                    region,
                    offset,
                    len,
                    tag,
                    None,
                    None,
                );
            }
            WorkRequest::Write { remote, notify, .. } => {
                let len = u32::try_from(len).map_err(|_| PostError::TooLong)?;
                c.send.push(
                    id,
                    weir_wire::MsgKind::Write,
                    region,
                    offset,
                    len,
                    0,
                    Some(remote),
                    notify,
                );
            }
            WorkRequest::Recv { tag, .. } => {
                c.recv.posted.push_back(PostedRecv {
                    wr: id,
                    region,
                    offset,
                    len,
                    tag,
                });
                let mut ctx = Ctx {
                    config: &self.config,
                    mem: &self.mem,
                    events: &mut self.events,
                    rx_share: u32::MAX,
                    credit: &mut self.credit,
                };
                c.match_pending(&mut ctx);
            }
        }
        self.next_wr += 1;
        self.mark_ready(idx);
        Ok(id)
    }

    /// Close `conn`: outstanding requests complete with [`WrError::Closed`], the peer is told,
    /// [`Event::Closed`] follows and the id becomes invalid.
    pub fn close(&mut self, now: Instant, conn: ConnId) {
        self.close_with(now, conn, CLOSE_NORMAL);
    }

    /// Close an accepted connection the application will not serve (its accept queue is
    /// full, or nobody accepted it in time): as [`Endpoint::close`], but the peer's
    /// connection fails with [`crate::ConnError::Refused`] rather than closing normally.
    pub fn reject(&mut self, now: Instant, conn: ConnId) {
        self.close_with(now, conn, CLOSE_REFUSED);
    }

    fn close_with(&mut self, now: Instant, conn: ConnId, reason: u32) {
        let _ = now;
        let Some(idx) = self.index(conn.0) else {
            return;
        };
        let Some(mut c) = self.conns[idx].take() else {
            return;
        };
        c.flush_requests(WrError::Closed, &mut self.events);
        if c.state != State::Failed {
            if c.state == State::Established {
                self.push_stateless(c.peer, close_header(&c, reason));
            }
            self.events.push_back(Event::Closed { conn });
        }
        self.forget(idx, c);
    }

    /// Close `conn` gracefully: refuse new requests at once (`PostError::NotConnected`), keep
    /// sending and retransmitting what was posted, acknowledge what arrived, and close (as
    /// [`Endpoint::close`] does) once every outgoing message is acknowledged. Receives still
    /// posted then complete with `WrError::Closed`. If the peer does not acknowledge within
    /// `Config::peer_timeout`, the close happens anyway and what is left completes with
    /// `WrError::Closed`. A connection that is not established closes at once.
    pub fn close_graceful(&mut self, now: Instant, conn: ConnId) {
        let Some(idx) = self.index(conn.0) else {
            return;
        };
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        if c.state != State::Established {
            self.close(now, conn);
            return;
        }
        if c.closing().is_none() {
            c.set_closing(now + self.config.peer_timeout);
            let slot = |id: u32| id & INDEX_MASK;
            let at = self.closing.partition_point(|&x| slot(x) < slot(conn.0));
            self.closing.insert(at, conn.0);
        }
        self.finish_closing(now);
        self.mark_ready(idx);
    }

    /// Close the gracefully closing connections that are drained or past their deadline.
    fn finish_closing(&mut self, now: Instant) {
        let mut i = 0;
        while let Some(&id) = self.closing.get(i) {
            let done = self.conn(ConnId(id)).is_some_and(|c| {
                c.closing()
                    .is_some_and(|t| now >= t || c.drained() || c.state == State::Failed)
            });
            if done {
                self.finish_close(now, ConnId(id));
            } else {
                i += 1;
            }
        }
    }

    /// A graceful close is over: drained (every outgoing message acknowledged) it closes for
    /// the application as [`Endpoint::close`] does, but the connection lingers to repeat its
    /// CLOSE (`Conn::linger`), as a lost one would leave an idle peer waiting for its peer
    /// timeout; past its deadline, or failed, it closes outright.
    fn finish_close(&mut self, now: Instant, conn: ConnId) {
        let Some(idx) = self.index(conn.0) else {
            return;
        };
        let drained = self.conns[idx]
            .as_ref()
            .is_some_and(|c| c.state == State::Established && c.drained());
        if !drained {
            // `forget` takes it off the list.
            self.close(now, conn);
            return;
        }
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        c.flush_requests(WrError::Closed, &mut self.events);
        self.events.push_back(Event::Closed { conn });
        c.linger(now, CLOSE_NORMAL);
        self.lingering += 1;
        self.closing.retain(|&x| x != conn.0);
        self.mark_ready(idx);
    }

    /// Close every connection (see [`Endpoint::close`]), e.g. before shutting down.
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<u32> = self.conns.iter().flatten().map(|c| c.id).collect();
        for id in ids {
            self.close(now, ConnId(id));
        }
    }

    /// A datagram arrived. Malformed, forged, stale or unexpected datagrams are dropped and
    /// counted in [`Endpoint::stats`]; nothing here panics on any input.
    pub fn handle(&mut self, now: Instant, meta: RxMeta, datagram: &[u8]) {
        self.stats.rx_packets += 1;
        let mode = if meta.virtual_payload {
            PayloadMode::Virtual
        } else {
            PayloadMode::Bytes
        };
        let Ok(mut pkt) = weir_wire::parse(datagram, mode) else {
            self.stats.drop_malformed += 1;
            return;
        };
        // The hop that delivered the packet adds its record to a packet that asks for INT
        // (a full list stays as it is: the first hops are the ones kept).
        if let Some(hop) = meta.int_hop
            && pkt.header.common.opcode == Opcode::Data
            && pkt.header.common.flags.contains(Flags::INT)
        {
            let _ = pkt.header.int.push(hop);
        }
        let c = &pkt.header.common;
        if c.opcode == Opcode::Syn {
            self.on_syn(now, meta.from, &pkt.header);
            return;
        }
        let Some(idx) = self.index(c.dst_conn) else {
            self.stats.drop_unknown_conn += 1;
            return;
        };
        let Some(conn) = self.conns[idx].as_mut() else {
            self.stats.drop_unknown_conn += 1;
            return;
        };
        if meta.from.ip() != conn.peer.ip() {
            self.stats.drop_wrong_peer += 1;
            return;
        }
        if c.token != conn.local_nonce {
            self.stats.drop_bad_token += 1;
            return;
        }
        if conn.state == State::SynSent && !matches!(c.opcode, Opcode::SynAck | Opcode::Close) {
            self.stats.drop_handshake += 1;
            return;
        }
        let was = conn.state;
        let budget = self.config.rx_budget_packets;
        let turns = budget > 0
            && self.config.rx_grants > 0
            && conn.state == State::Established
            && matches!(c.opcode, Opcode::Data | Opcode::Probe);
        let rx_share = if turns {
            let data = c.opcode == Opcode::Data;
            // What the sender has queued is read from its newest packets only: a late one
            // (reordered, duplicated, resent) tells of an older state.
            let fresh = !data || !weir_wire::psn::lt(c.psn, conn.recv.high);
            let more = c.flags.contains(Flags::MORE);
            let arrival = Arrival {
                wire_bytes: if data {
                    u64::from(c.payload_len) + DATA_HEADER
                } else {
                    0
                },
                more: fresh.then_some(more),
            };
            self.rx_turns
                .arrive(now, conn, &self.config, &mut self.stats, arrival)
        } else if budget > 0 && c.opcode == Opcode::Data {
            self.rx_budget.share(
                now,
                &mut conn.rx_epoch_seen,
                &mut conn.rx_share_rank,
                budget,
            )
        } else {
            u32::MAX
        };
        let mut ctx = Ctx {
            config: &self.config,
            mem: &self.mem,
            events: &mut self.events,
            rx_share,
            credit: &mut self.credit,
        };
        conn.on_packet(now, meta.ecn, &pkt, meta.virtual_payload, &mut ctx);
        if was != State::Failed && conn.state == State::Failed {
            self.stats.conn_failed += 1;
        }
        self.mark_ready(idx);
        if turns {
            self.rx_fill(now);
        }
    }

    /// Turns of the receive budget (`Config::rx_grants`): take the turn from connections gone,
    /// failed or silent (no data) for `TURN_SILENCE` × `rnr_delay` while others wait, then
    /// grant free turns to the first in line, each told at once (an ACK without `RNR` and with
    /// its share: the XON that lets it send). A turn granted and not yet used has its XON
    /// repeated after `rnr_delay` (it may have been lost). Runs after every data packet or
    /// probe of a connection under turns, and at `RxTurns::deadline` from `handle_timeout`
    /// (the next silence or repeat due), so nothing waits for some waiter's probe.
    fn rx_fill(&mut self, now: Instant) {
        if !self.rx_turns.check && self.rx_turns.waiting.is_empty() {
            return;
        }
        self.rx_turns.check = false;
        let budget = self.config.rx_budget_packets;
        let rnr = self.config.rnr_delay;
        let silence = rnr.saturating_mul(TURN_SILENCE);
        let mut i = 0;
        while let Some(&id) = self.rx_turns.granted.get(i) {
            let idx = self.index(id);
            let others_wait = !self.rx_turns.waiting.is_empty();
            let (keep, tell) = match idx.and_then(|x| self.conns[x].as_mut()) {
                Some(c) if c.state == State::Established && c.rx_turn == RxTurn::Granted => {
                    let unused = c.rx_turn_bytes == 0;
                    let quiet = now.saturating_since(c.rx_heard.max(c.rx_granted_at));
                    if others_wait && quiet >= silence {
                        self.stats.rx_turns_silent += 1;
                        // Heard since the grant: it was sending and stopped (descheduled),
                        // back in line. Never heard: its XON may be lost twice or it has
                        // nothing after all; it rejoins the line with its next probe.
                        self.rx_turns.wait(c, budget, !unused);
                        (false, true)
                    } else if unused && !c.rx_xon_repeated && quiet >= rnr {
                        c.rx_xon_repeated = true;
                        c.recv.ack_now = true;
                        (true, true)
                    } else {
                        (true, false)
                    }
                }
                _ => (false, true),
            };
            if !keep {
                self.rx_turns.granted.swap_remove(i);
            } else {
                i += 1;
            }
            if let Some(x) = idx
                && tell
            {
                self.mark_ready(x);
            }
        }
        while (self.rx_turns.granted.len() as u32) < self.rx_turns.turns {
            let Some(id) = self.rx_turns.waiting.pop_front() else {
                break;
            };
            let Some(idx) = self.index(id) else { continue };
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            c.rx_in_line = false;
            if c.state != State::Established || c.rx_turn != RxTurn::Waiting {
                continue;
            }
            self.rx_turns.grant(now, c, &mut self.stats);
            c.recv.adv = self.rx_turns.granted_share(budget);
            c.recv.ack_now = true;
            self.mark_ready(idx);
        }
        self.rx_turns.deadline = self.rx_next_look(rnr, silence);
    }

    /// When `rx_fill` must look again on its own: the first repeat of an unused XON due
    /// (`rnr_delay` after the grant), or, while someone waits, the first turn's silence
    /// running out.
    fn rx_next_look(&self, rnr: Duration, silence: Duration) -> Option<Instant> {
        let waiting = !self.rx_turns.waiting.is_empty();
        self.rx_turns
            .granted
            .iter()
            .filter_map(|&id| self.index(id).and_then(|x| self.conns[x].as_ref()))
            .filter_map(|c| {
                let heard = c.rx_heard.max(c.rx_granted_at);
                let repeat = (c.rx_turn_bytes == 0 && !c.rx_xon_repeated).then(|| heard + rnr);
                let quiet = waiting.then(|| heard + silence);
                repeat.into_iter().chain(quiet).min()
            })
            .min()
    }

    /// A SYN: a connector's first one (token 0) or its confirm (token = our cookie).
    /// Authenticated when keys are admitted; answered with exactly one SYN-ACK of the same
    /// size, never repeated by us (the connector retransmits); state is created only for a
    /// confirm carrying a valid cookie. See `docs/transport.md`, "Connection set-up".
    fn on_syn(&mut self, now: Instant, from: SocketAddr, h: &Header) {
        let Ext::Handshake(hs) = h.ext else {
            self.stats.drop_malformed += 1;
            return;
        };
        if h.common.dst_conn != 0 || !self.listening {
            self.stats.drop_handshake += 1;
            return;
        }
        let src_conn = h.common.src_conn;
        if !self.admitted.is_empty() {
            let ud = hs.user_data;
            let ok = self
                .open
                .range(..=ud)
                .next_back()
                .is_some_and(|(_, &last)| ud <= last)
                || self.admitted.get(&hs.user_data).is_some_and(|&secret| {
                    handshake::syn_mac(secret, src_conn, &hs) == hs.echo_nonce
                });
            if !ok {
                self.stats.drop_unauthenticated += 1;
                return;
            }
        }
        // The connection this attempt already made: its SYN-ACK was lost, answer again.
        if let Some(&id) = self.by_peer.get(&(from, src_conn)) {
            if let Some(idx) = self.index(id)
                && let Some(c) = self.conns[idx].as_mut()
                && c.peer_nonce == hs.nonce
                && c.state == State::Established
            {
                c.need_synack = true;
                self.mark_ready(idx);
                return;
            }
            self.stats.drop_handshake += 1;
            return;
        }
        if hs.mode != self.config.mode {
            // Refuse explicitly so the connector fails fast instead of timing out.
            self.stats.drop_handshake += 1;
            let ext = Ext::Close(CloseExt {
                reason: CLOSE_REFUSED,
            });
            self.push_stateless(from, answer(Opcode::Close, src_conn, hs.nonce, ext));
            return;
        }
        let epoch = handshake::epoch(now);
        let cookie = handshake::cookie(self.cookie_key, from, src_conn, &hs, epoch);
        let token = h.common.token;
        let valid = token != 0
            && (token == cookie
                || token
                    == handshake::cookie(
                        self.cookie_key,
                        from,
                        src_conn,
                        &hs,
                        epoch.wrapping_sub(1),
                    ));
        if !valid {
            if token != 0 {
                self.stats.drop_bad_cookie += 1;
            }
            // A first SYN, or a confirm whose cookie expired: answer with a cookie and keep
            // nothing.
            self.stats.cookies_sent += 1;
            let header = answer(
                Opcode::SynAck,
                src_conn,
                hs.nonce,
                Ext::Handshake(weir_wire::HandshakeExt {
                    nonce: cookie,
                    echo_nonce: hs.nonce,
                    user_data: 0,
                    initial_psn: 0,
                    max_payload: self.config.max_payload,
                    paths: self.config.paths,
                    mode: self.config.mode,
                    rwnd_pkts: self.rwnd_offer(),
                    rx_ports: self.config.rx_ports,
                }),
            );
            self.push_stateless(from, header);
            return;
        }
        let rate = self.config.accept_rate_per_source;
        if rate > 0 && !handshake::take(&mut self.accept_buckets, from.ip(), rate, now) {
            self.stats.drop_rate_limited += 1;
            return;
        }
        // A confirm with a valid cookie: the connector receives at `from` and (when keys are
        // admitted) holds the secret. The connection starts established, with the cookie as
        // its token, and its SYN-ACK tells the connector our connection id.
        let id = self.alloc_id();
        let psn = self.rng.next_u32();
        let entropy = self.rng.below(self.config.paths as u64) as u16;
        let mut c = Conn::new(
            now,
            &self.config,
            id,
            from,
            token,
            psn,
            entropy,
            State::Established,
        );
        c.user_data = hs.user_data;
        c.rwnd_offer = self.rwnd_offer();
        c.apply_handshake(&self.config, src_conn, &hs);
        c.need_synack = true;
        self.by_peer.insert((from, src_conn), id);
        self.events.push_back(Event::Accepted {
            conn: ConnId(id),
            peer: from,
            user_data: hs.user_data,
        });
        self.insert(c);
    }

    /// The next datagram to send: its header is written into `header` (at least
    /// [`weir_wire::MAX_HEADER_LEN`] bytes), its payload described by the returned
    /// [`Transmit`].
    pub fn poll_transmit(&mut self, now: Instant, header: &mut [u8]) -> Option<Transmit> {
        self.finish_closing(now);
        if let Some((to, h)) = self.stateless.pop_front() {
            let header_len = h.emit(header).ok()?;
            self.stats.tx_packets += 1;
            return Some(Transmit {
                meta: TxMeta {
                    to,
                    entropy: 0,
                    ecn: Ecn::NotEct,
                },
                header_len,
                payload: Payload::None,
            });
        }
        // Paced credit grants go ahead of data: they are what keeps the last hop busy.
        while let Some(g) = self.credit.poll(now) {
            let live = self
                .index(g.flow)
                .filter(|&i| matches!(&self.conns[i], Some(c) if c.state == State::Established));
            let Some(idx) = live else {
                self.credit.remove(g.flow);
                continue;
            };
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            let sent = c.credit_packet(g.total, header);
            self.rearm(idx);
            if let Some(t) = sent {
                self.stats.tx_packets += 1;
                self.stats.credit_grants += 1;
                self.stats.credit_bytes_granted += g.bytes;
                return Some(t);
            }
        }
        while let Some(&idx) = self.ready.front() {
            let Some(c) = self.conns.get_mut(idx as usize).and_then(|c| c.as_mut()) else {
                self.ready.pop_front();
                continue;
            };
            let sent = c.poll_transmit(now, &self.config, &self.mem, header);
            let burst_done = c.paths_burst_done();
            if sent.is_none() {
                c.in_ready = false;
            }
            self.rearm(idx as usize);
            match sent {
                Some(t) => {
                    self.stats.tx_packets += 1;
                    // Serve a connection for a whole spray burst so the datapath can batch,
                    // then move it to the back.
                    if burst_done {
                        self.ready.pop_front();
                        self.ready.push_back(idx);
                    }
                    return Some(t);
                }
                None => {
                    self.ready.pop_front();
                }
            }
        }
        None
    }

    /// The bytes of a [`Payload::Region`] descriptor returned by `poll_transmit` (valid until
    /// the next call that takes `&mut self`). `None` for other payloads, or when the region was
    /// deregistered meanwhile (the datapath then drops the packet).
    pub fn payload(&self, payload: &Payload) -> Option<&[u8]> {
        match *payload {
            Payload::Region {
                region,
                offset,
                len,
            } => self.mem.bytes(region, offset, len as usize),
            _ => None,
        }
    }

    /// A hint for a driver that knows what comes next (a simulator running thousands of
    /// endpoints, whose state is cold at every packet): ask the CPU to fetch the connection
    /// state [`Endpoint::handle`] will touch for `datagram`, so the miss overlaps other work.
    /// Changes nothing observable.
    pub fn prefetch_handle(&self, datagram: &[u8]) {
        // `dst_conn`: big-endian, at offset 8 of the common header (`weir_wire::common`).
        if let Some(b) = datagram.get(8..12) {
            let id = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            if let Some(slot) = (id & INDEX_MASK).checked_sub(1) {
                self.prefetch_slot(slot as usize);
            }
        }
    }

    /// As [`Endpoint::prefetch_handle`], for the connection [`Endpoint::poll_transmit`] would
    /// serve first. With `queue_only`, fetch only the head of the ready queue (call again
    /// with `false` later: the connection's slot is read from it).
    pub fn prefetch_transmit(&self, queue_only: bool) {
        if queue_only {
            let (a, b) = self.ready.as_slices();
            if let Some(x) = a.first().or(b.first()) {
                weir_base::prefetch::lines(x, 1);
            }
        } else if let Some(&idx) = self.ready.front() {
            self.prefetch_slot(idx as usize);
        }
    }

    /// The first stage of the prefetch hints: the endpoint's own fields that
    /// [`Endpoint::prefetch_handle`], [`Endpoint::prefetch_transmit`] and
    /// [`Endpoint::prefetch_timeout`] read (call one of those later, once these are cached).
    pub fn prefetch_state(&self) {
        use weir_base::prefetch::lines;
        lines(&self.conns, 1);
        lines(&self.ready, 1);
        lines(&self.events, 1);
        lines(&self.stats, 1);
        lines(&self.credit, 1);
        self.timers.prefetch_state();
    }

    /// As [`Endpoint::prefetch_handle`], for [`Endpoint::handle_timeout`]: with `first`, the
    /// timer heap's root; then the connection it names.
    pub fn prefetch_timeout(&self, first: bool) {
        match self.timers.first_slot() {
            Some(_) if first => self.timers.prefetch(usize::MAX),
            Some(slot) => self.prefetch_slot(slot as usize),
            None => {}
        }
    }

    fn prefetch_slot(&self, slot: usize) {
        if let Some(c) = self.conns.get(slot) {
            weir_base::prefetch::lines(c, PREFETCH_CONN_LINES);
        }
        self.timers.prefetch(slot);
    }

    /// The earliest time at which [`Endpoint::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        #[cfg(debug_assertions)]
        for c in self.conns.iter().flatten() {
            debug_assert_eq!(
                c.armed,
                c.deadline(),
                "connection {:#x}: timer not re-armed",
                c.id
            );
        }
        let first = self.timers.first();
        first
            .into_iter()
            .chain(self.credit.next_timeout())
            .chain(self.rx_turns.deadline)
            .min()
    }

    /// Timers due at `now` fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The connections due, in slot order (the order of the scan this replaces).
        let mut due = core::mem::take(&mut self.due);
        self.timers.due(now, &mut due);
        due.sort_unstable();
        for &idx in &due {
            let idx = idx as usize;
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            if c.deadline().is_some_and(|t| t <= now) {
                let was = c.state;
                c.on_timeout(now, &self.config, &mut self.events);
                if was != State::Failed && c.state == State::Failed {
                    self.stats.conn_failed += 1;
                }
                if c.linger_done {
                    if let Some(c) = self.conns[idx].take() {
                        self.forget(idx, c);
                    }
                    continue;
                }
                self.mark_ready(idx);
            }
        }
        self.due = due;
        self.finish_closing(now);
        if self.rx_turns.deadline.is_some_and(|t| t <= now) {
            self.rx_turns.check = true;
            self.rx_fill(now);
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Endpoint counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// Counters of one connection.
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        self.conn(conn).map(|c| c.stats())
    }

    /// Hot reload of congestion control: connections made from now on use `cc`, and every
    /// live connection switches to it at once — keeping its controller's state when only the
    /// parameters of the same algorithm change, starting a fresh controller otherwise.
    /// Returns (connections that kept their state, connections given a fresh controller).
    /// A `cc` that needs INT also turns INT requests on for data sent from now on.
    pub fn set_cc(&mut self, now: Instant, cc: weir_congestion::CcConfig) -> (usize, usize) {
        self.config.cc = cc;
        // The credit this endpoint meters as a receiver follows the new configuration too.
        self.credit.set_rate(credit_rate(&self.config));
        let (mut kept, mut fresh) = (0, 0);
        for c in self.conns.iter_mut().flatten() {
            if c.reconfigure_cc(now, &cc) {
                kept += 1;
            } else {
                fresh += 1;
            }
        }
        for idx in 0..self.conns.len() {
            self.rearm(idx);
        }
        (kept, fresh)
    }

    /// The congestion controller of `conn`: its name and current limits.
    pub fn congestion(&self, conn: ConnId) -> Option<(&'static str, weir_congestion::Limits)> {
        self.conn(conn).map(|c| c.congestion())
    }

    /// Per-path counters of one connection.
    pub fn path_stats(&self, conn: ConnId) -> Option<Vec<PathStats>> {
        self.conn(conn).map(|c| c.paths.stats().to_vec())
    }

    /// The peer of a connection.
    pub fn peer(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conn(conn).map(|c| c.peer)
    }

    /// Number of connections in the table (any state: live, half-open, failed and not yet
    /// closed), not counting those closed gracefully that only linger to repeat their CLOSE.
    /// O(1): every slot not on the free list holds one.
    pub fn connections(&self) -> usize {
        self.conns.len() - self.free.len() - self.lingering
    }

    // ---------------------------------------------------------------------------------------

    fn conn(&self, conn: ConnId) -> Option<&Conn> {
        self.conns.get(self.index(conn.0)?)?.as_ref()
    }

    /// Slot of connection id `id`, if it names a live connection.
    fn index(&self, id: u32) -> Option<usize> {
        let slot = (id & INDEX_MASK).checked_sub(1)? as usize;
        match self.conns.get(slot) {
            Some(Some(c)) if c.id == id => Some(slot),
            _ => None,
        }
    }

    fn alloc_id(&mut self) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                (self.conns.len() - 1) as u32
            }
        };
        self.generation = (self.generation + 1) & ((1 << (32 - INDEX_BITS)) - 1);
        (self.generation << INDEX_BITS) | (slot + 1)
    }

    fn insert(&mut self, c: Conn) {
        let slot = ((c.id & INDEX_MASK) - 1) as usize;
        self.conns[slot] = Some(c);
        self.mark_ready(slot);
    }

    fn forget(&mut self, idx: usize, c: Conn) {
        if c.lingering {
            self.lingering -= 1;
        }
        if c.closing().is_some() {
            self.closing.retain(|&id| id != c.id);
        }
        self.by_peer.remove(&(c.peer, c.peer_id));
        self.credit.remove(c.id);
        if c.rx_turn == RxTurn::Granted {
            self.rx_turns.end_turn(c.id);
        }
        if c.armed.is_some() {
            self.timers.set(idx as u32, None);
        }
        self.free.push(idx as u32);
    }

    /// The receive window a new connection's handshake offers: `Config::rwnd_packets`, or
    /// under a receive budget (`Config::rx_budget_packets`) the budget shared with the
    /// connections already open, and at most a sixteenth of it: N connections made one after
    /// another for an incast would otherwise start with the whole budget, half of it, a third…
    /// (about 3.4 budgets for 16), all sent at once when they start together. The first ACK
    /// then gives each its share among those actually receiving (the window may shrink), one
    /// round trip in.
    fn rwnd_offer(&self) -> u32 {
        let budget = self.config.rx_budget_packets;
        if budget == 0 {
            return self.config.rwnd_packets;
        }
        let n = u32::try_from(self.connections())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        (budget / n)
            .min(budget / 16)
            .max(crate::config::MIN_RX_SHARE)
            .min(self.config.rwnd_packets)
    }

    /// Queue a packet that answers one received packet outside any connection.
    fn push_stateless(&mut self, to: SocketAddr, h: Header) {
        if self.stateless.len() >= MAX_STATELESS {
            self.stats.drop_stateless_full += 1;
            return;
        }
        self.stateless.push_back((to, h));
    }

    /// Put connection `idx` in the timer set under its current deadline.
    fn rearm(&mut self, idx: usize) {
        let Some(Some(c)) = self.conns.get_mut(idx) else {
            return;
        };
        let t = c.deadline();
        if t != c.armed {
            self.timers.set(idx as u32, t);
            c.armed = t;
        }
    }

    /// Connection `idx` changed: re-arm its timer and queue it for transmission.
    fn mark_ready(&mut self, idx: usize) {
        self.rearm(idx);
        if let Some(Some(c)) = self.conns.get_mut(idx)
            && !c.in_ready
        {
            c.in_ready = true;
            self.ready.push_back(idx as u32);
        }
    }

    fn nonce(&mut self) -> u64 {
        loop {
            let n = self.rng.next_u64();
            if n != 0 {
                return n;
            }
        }
    }

    /// A remote key for the region about to be inserted: its slot in the low 16 bits (so
    /// lookups are direct), random bits above (so keys are not guessable).
    fn rkey_for_next(&mut self, remote_write: bool) -> u32 {
        if !remote_write {
            return 0;
        }
        let slot = self.mem.next_slot();
        if slot > 0xffff {
            return 0;
        }
        let high = (self.rng.next_u32() | 1) << 16;
        high | slot
    }
}

/// How long a connection holding a turn of the receive budget may stay silent while others
/// wait, in `rnr_delay`s (a sender descheduled, or one whose last packets were lost).
const TURN_SILENCE: u64 = 4;

/// Turns of the receive budget (`Config::rx_grants`): at most that many connections hold
/// one (more where the budget holds more full windows), sharing the budget but for an eighth
/// kept for what the others send unasked (a packet of window each: a lone small message, the
/// first packet of a long one, probes).
///
/// Nobody is kept "on deck" (ready with a packet of window before its turn, so that its host
/// has it awake when the turn comes, as Homa overcommits to hide grant latency): tried, a
/// sender on deck sends a packet per round trip and the receiver answers each, and on a busy
/// 2-core host that cost more than the hand-over it saved (about 180 µs a turn, 3 % of a
/// 16 MiB turn; `EndpointStats::rx_turn_start_us`).
#[derive(Debug, Default)]
struct RxTurns {
    /// Ids of the connections holding a turn.
    granted: Vec<u32>,
    /// Ids of those waiting for one, first in line first; a connection has at most one entry
    /// (`Conn::rx_in_line`), and one that left the line is skipped when its entry is reached.
    waiting: VecDeque<u32>,
    /// A turn may have come free (a connection left one): `Endpoint::rx_fill` should look.
    check: bool,
    /// When `Endpoint::rx_fill` must run next without a packet: a turn's silence or an XON's
    /// repeat due (`Endpoint::poll_timeout` includes it).
    deadline: Option<Instant>,
    /// Turns held at once: `Config::rx_grants`, or more where the budget gives each a window
    /// of a bandwidth × delay product (`fixed::AUTO_RTT` at the line rate): a buffer that
    /// holds full windows for all its senders needs no turns. From the configuration, once.
    turns: u32,
}

/// A packet of a connection under turns, as `RxTurns::arrive` sees it.
#[derive(Clone, Copy, Debug)]
struct Arrival {
    /// Wire bytes of a data packet (payload and header): what a turn counts; 0 for a probe.
    wire_bytes: u64,
    /// Its `MORE` flag, if it is the newest the sender sent (`None`: a late packet, which
    /// tells nothing of what the sender has queued now).
    more: Option<bool>,
}

impl RxTurns {
    /// The window of a connection without a turn.
    fn unscheduled(budget: u32) -> u32 {
        (budget / 16).max(crate::config::MIN_RX_SHARE)
    }

    /// The window of a connection holding a turn.
    fn granted_share(&self, budget: u32) -> u32 {
        let n = u32::try_from(self.granted.len()).unwrap_or(u32::MAX).max(1);
        ((budget - budget / 8) / n).max(crate::config::MIN_RX_SHARE)
    }

    /// Turns for `config` (`RxTurns::turns`), none held yet.
    fn new(config: &Config) -> Self {
        let budget = config.rx_budget_packets;
        let bdp = config
            .line_rate
            .bytes_in(weir_congestion::fixed::AUTO_RTT)
            .div_ceil(u64::from(config.max_payload))
            .max(1);
        let full = u64::from(budget - budget / 8) / bdp;
        RxTurns {
            turns: config
                .rx_grants
                .max(u32::try_from(full).unwrap_or(u32::MAX)),
            ..RxTurns::default()
        }
    }

    /// A data packet or a probe from `conn`: its turn begins, goes on or ends, and the window
    /// its ACKs advertise is returned.
    fn arrive(
        &mut self,
        now: Instant,
        conn: &mut Conn,
        config: &Config,
        stats: &mut EndpointStats,
        a: Arrival,
    ) -> u32 {
        let budget = config.rx_budget_packets;
        if a.wire_bytes > 0 {
            conn.rx_heard = now;
        }
        match (conn.rx_turn, a.more) {
            (RxTurn::Granted, more) => {
                if conn.rx_turn_bytes == 0 && a.wire_bytes > 0 {
                    let waited = now.saturating_since(conn.rx_granted_at);
                    stats.rx_turn_start_us += waited.as_nanos() / 1000;
                }
                conn.rx_turn_bytes = conn.rx_turn_bytes.saturating_add(a.wire_bytes);
                if more == Some(false) {
                    // Nothing after this: the turn goes to the next.
                    self.end_turn(conn.id);
                    conn.rx_turn = RxTurn::Idle;
                } else if conn.rx_turn_bytes >= config.rx_turn_bytes && !self.waiting.is_empty() {
                    self.end_turn(conn.id);
                    stats.rx_turns_yielded += 1;
                    self.wait(conn, budget, true);
                } else {
                    return self.granted_share(budget);
                }
            }
            (RxTurn::Idle | RxTurn::Waiting, Some(false)) => {
                // Nothing more to send: out of line (its entry, if any, is skipped).
                conn.rx_turn = RxTurn::Idle;
            }
            (RxTurn::Idle, Some(true)) => {
                // A free turn goes to the first in line: a newcomer takes one only when
                // nobody waits (`Endpoint::rx_fill` serves the line right after).
                if self.waiting.is_empty() && (self.granted.len() as u32) < self.turns {
                    self.grant(now, conn, stats);
                    conn.rx_turn_bytes = a.wire_bytes;
                    return self.granted_share(budget);
                }
                self.wait(conn, budget, true);
                self.check = true;
            }
            (RxTurn::Waiting, Some(true)) if !conn.rx_in_line => {
                // Taken back from a turn it never used: its probe puts it back in line.
                self.waiting.push_back(conn.id);
                conn.rx_in_line = true;
            }
            (RxTurn::Idle | RxTurn::Waiting, _) => {}
        }
        Self::unscheduled(budget)
    }

    /// `id` leaves its turn.
    fn end_turn(&mut self, id: u32) {
        if let Some(i) = self.granted.iter().position(|&g| g == id) {
            self.granted.swap_remove(i);
        }
        self.check = true;
    }

    /// Waiting for a turn: not ready (`RNR`) from the next ACK, which goes at once; in line
    /// unless `in_line` is false (it joins with its next packet that says more).
    fn wait(&mut self, conn: &mut Conn, budget: u32, in_line: bool) {
        conn.rx_turn = RxTurn::Waiting;
        conn.recv.ack_now = true;
        conn.recv.adv = Self::unscheduled(budget);
        if in_line && !conn.rx_in_line {
            self.waiting.push_back(conn.id);
            conn.rx_in_line = true;
        }
    }

    fn grant(&mut self, now: Instant, conn: &mut Conn, stats: &mut EndpointStats) {
        conn.rx_turn = RxTurn::Granted;
        conn.rx_turn_bytes = 0;
        conn.rx_granted_at = now;
        conn.rx_xon_repeated = false;
        self.granted.push(conn.id);
        stats.rx_turns += 1;
    }
}

/// Who shares the receive budget (`Config::rx_budget_packets`): the connections that
/// received data in the current epoch (2^30 ps, about 1.07 ms) or the one before.
#[derive(Debug, Default)]
struct RxBudget {
    epoch: u64,
    /// Receiving connections in the current epoch and in the previous one.
    active: (u32, u32),
}

impl RxBudget {
    /// A data packet for a connection that last received in epoch `seen` (+1; 0: never):
    /// count it among this epoch's receivers, and return its share of `budget` in packets.
    /// The shares add up to the budget (`rank` spreads the remainder: Σ ⌊(B + i)/n⌋ over
    /// i < n is B), except that none is below `MIN_RX_SHARE`.
    fn share(&mut self, now: Instant, seen: &mut u64, rank: &mut u32, budget: u32) -> u32 {
        let epoch = now.as_ps() >> 30;
        if epoch != self.epoch {
            let prev = if epoch == self.epoch + 1 {
                self.active.0
            } else {
                0
            };
            self.active = (0, prev);
            self.epoch = epoch;
        }
        if *seen != epoch + 1 {
            *seen = epoch + 1;
            *rank = self.active.0;
            self.active.0 += 1;
        }
        let active = self.active.0.max(self.active.1).max(1);
        (budget.saturating_add(*rank % active) / active).max(crate::config::MIN_RX_SHARE)
    }
}

/// A stateless answer to a SYN from connection `dst_conn`: no connection of ours (`src_conn`
/// 0), the SYN's nonce as token.
fn answer(opcode: Opcode, dst_conn: u32, token: u64, ext: Ext) -> Header {
    control_header(opcode, 0, dst_conn, token, ext)
}

/// A control packet outside a connection's own transmit path (no PSN, entropy or payload).
fn control_header(opcode: Opcode, src_conn: u32, dst_conn: u32, token: u64, ext: Ext) -> Header {
    Header {
        common: Common {
            opcode,
            flags: Flags::empty(),
            src_conn,
            dst_conn,
            psn: 0,
            entropy: 0,
            payload_len: 0,
            token,
        },
        ext,
        int: IntList::new(),
    }
}

fn close_header(c: &Conn, reason: u32) -> Header {
    let ext = Ext::Close(CloseExt { reason });
    control_header(Opcode::Close, c.id, c.peer_id, c.peer_nonce, ext)
}

/// The rate a receiver meters credit at: its RCCC `link_rate` when it runs RCCC with one set,
/// else its line rate.
fn credit_rate(config: &Config) -> weir_base::Rate {
    match config.cc {
        CcConfig::Rccc(p) if p.link_rate.bps() > 0 => p.link_rate,
        _ => config.line_rate,
    }
}
