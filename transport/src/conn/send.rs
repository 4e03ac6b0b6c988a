//! Sender side of a connection: segmentation, PSN allocation, the in-flight table,
//! ACK/SACK/NACK processing, loss detection and the retransmission queue.
//!
//! Loss detection in Weir mode is time-based (RACK, RFC 8985) rather than counting duplicate
//! ACKs, because spraying reorders packets by design: a packet is declared lost once a packet
//! *sent* at least `reorder_window` after it has been delivered. In go-back-N mode the sender
//! instead rewinds to the PSN a NACK names and resends everything from there.

use alloc::collections::VecDeque;

use weir_base::{Duration, Instant};
use weir_wire::psn::lt as psn_lt;
use weir_wire::{AckExt, MsgKind, Sack};

use crate::mem::RegionId;
use crate::{RemoteRegion, WrError, WrId};

/// A message being sent (or written) and not yet fully acknowledged.
#[derive(Clone, Debug)]
pub(crate) struct OutMsg {
    pub(crate) wr: WrId,
    pub(crate) kind: MsgKind,
    pub(crate) region: RegionId,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    /// Send: tag. Write: remote offset.
    pub(crate) tag: u64,
    pub(crate) rkey: u32,
    pub(crate) notify: Option<u32>,
    /// Wire message id (per kind sequence).
    pub(crate) msg_id: u32,
    /// Bytes segmented so far.
    pub(crate) next_off: u32,
    /// Whether the (possibly empty) message has been fully segmented.
    pub(crate) segmented: bool,
    /// Packets sent and not yet acknowledged.
    pub(crate) unacked_pkts: u32,
    pub(crate) error: Option<WrError>,
}

impl OutMsg {
    pub(crate) fn done(&self) -> bool {
        self.segmented && self.unacked_pkts == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PktState {
    /// On the wire, not yet acknowledged.
    InFlight,
    /// Acknowledged (selectively); waits for the cumulative ACK to pass.
    Acked,
    /// Declared lost, queued for retransmission.
    Lost,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Pkt {
    /// Local sequence of the message (index into `out` after subtracting `out_base`).
    pub(crate) out_seq: u32,
    pub(crate) msg_off: u32,
    pub(crate) len: u32,
    pub(crate) sent_at: Instant,
    pub(crate) path: u16,
    pub(crate) retx: u16,
    pub(crate) state: PktState,
    /// Declared lost by a retransmission timeout and not resent since: restored to in flight
    /// if the timeout proves spurious ([`SendState::undo_rto`]).
    pub(crate) by_rto: bool,
    /// The first transmission's time in whole µs, wrapping (every 71 minutes): what a resent
    /// packet's repair time ([`AckOutcome::max_repair_us`]) is measured from. It sits in what
    /// would be padding, so a packet record stays 32 bytes.
    pub(crate) first_sent_us: u32,
}

const _: () = assert!(core::mem::size_of::<Pkt>() <= 32);

/// `now` in whole µs, wrapping (see [`Pkt::first_sent_us`]).
fn wrapping_us(now: Instant) -> u32 {
    (now.as_ps() / 1_000_000) as u32
}

/// A packet's fate learnt from an ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Acknowledged: it was sent on `path` at `sent_at`.
    Acked {
        path: u16,
        sent_at: Instant,
    },
    Lost {
        len: u32,
        path: u16,
    },
}

/// What an ACK did, for the congestion controller and path scoring.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AckOutcome {
    pub(crate) acked_bytes: u64,
    pub(crate) acked_pkts: u32,
    pub(crate) lost_bytes: u64,
    pub(crate) lost_pkts: u32,
    /// Cumulative ACK advanced.
    pub(crate) progress: bool,
    /// Of the packets acknowledged that had been resent, the longest time from first
    /// transmission to this ACK, µs: how long the data waited behind its loss.
    pub(crate) max_repair_us: u32,
}

/// A connection's sender. `repr(C)`: the fields every packet touches first (see `Conn`).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct SendState {
    // Scalars first, then the queues, the ones every packet uses before those of losses.
    /// Bytes of packets in state `InFlight`.
    pub(crate) in_flight: u64,
    /// Resend nothing before this (the trim backoff; a receiver that is not ready holds the
    /// connection through `Conn`'s RNR pause instead).
    pub(crate) retx_hold_until: Instant,
    /// Payload bytes posted and not yet segmented (for the credit request).
    unsegmented: u64,
    /// The echoed transmit timestamp of the ACK being processed, to tell an ACK of a
    /// retransmission from a late ACK of the original (RACK step 2).
    ack_echo: u64,
    /// Echoed timestamp of the ACK that set `rwnd_psn` (0: the handshake).
    rwnd_echo: u64,
    /// Local sequence of `out[0]`.
    pub(crate) out_base: u32,
    /// First message with bytes left to segment (index relative to `out_base`).
    seg_cursor: u32,
    /// Next wire message id per kind: of a send.
    next_send_id: u32,
    /// Next wire message id of a write.
    next_write_id: u32,
    pub(crate) snd_una: u32,
    pub(crate) snd_nxt: u32,
    /// Peer's flow-control limit: PSNs below it may be sent.
    pub(crate) rwnd_psn: u32,
    /// Packets in state `InFlight` (empty messages have zero bytes but still need timers).
    pub(crate) in_flight_pkts: u32,
    /// First PSN (offset from snd_una) whose first transmission has not been judged yet.
    rack_scan: u32,
    pub(crate) last_ecn_bytes: u32,
    /// When the ACK being processed arrived, whole µs wrapping (for repair times).
    ack_at_us: u32,
    /// RACK: send time of the most recently sent packet known delivered.
    rack_xmit: Option<Instant>,
    /// Messages not yet completed, in posting order.
    pub(crate) out: VecDeque<OutMsg>,
    /// Packets from `snd_una` to `snd_nxt`.
    pub(crate) pkts: VecDeque<Pkt>,
    /// Lost packets to resend, oldest first (entries whose state changed since are skipped).
    retx: VecDeque<u32>,
    /// Retransmitted packets in flight, by retransmission time, to judge them too.
    retx_inflight: VecDeque<u32>,
    /// Recent resends, oldest first: the transmit timestamp (ps) of the transmission each
    /// one repeated. An ACK echoing such a timestamp proves that earlier transmission
    /// arrived, so the resend was spurious ([`SendState::spurious`]).
    resent: VecDeque<u64>,
}

/// Resends remembered for spurious-retransmission detection (older ones are forgotten).
const RESENT_LOG: usize = 256;

impl SendState {
    pub(crate) fn new(initial_psn: u32, rwnd_psn: u32) -> Self {
        SendState {
            out: VecDeque::new(),
            out_base: 0,
            seg_cursor: 0,
            next_send_id: 0,
            next_write_id: 0,
            pkts: VecDeque::new(),
            snd_una: initial_psn,
            snd_nxt: initial_psn,
            rwnd_psn,
            rwnd_echo: 0,
            retx: VecDeque::new(),
            retx_hold_until: Instant::ZERO,
            in_flight: 0,
            in_flight_pkts: 0,
            rack_xmit: None,
            rack_scan: 0,
            retx_inflight: VecDeque::new(),
            last_ecn_bytes: 0,
            ack_echo: 0,
            ack_at_us: 0,
            unsegmented: 0,
            resent: VecDeque::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        wr: WrId,
        kind: MsgKind,
        region: RegionId,
        offset: u64,
        len: u32,
        tag: u64,
        remote: Option<RemoteRegion>,
        notify: Option<u32>,
    ) {
        let msg_id = match kind {
            MsgKind::Send => {
                self.next_send_id = self.next_send_id.wrapping_add(1);
                self.next_send_id.wrapping_sub(1)
            }
            MsgKind::Write => {
                self.next_write_id = self.next_write_id.wrapping_add(1);
                self.next_write_id.wrapping_sub(1)
            }
        };
        let (tag, rkey) = match remote {
            Some(r) => (r.offset, r.rkey),
            None => (tag, 0),
        };
        self.unsegmented = self.unsegmented.saturating_add(u64::from(len));
        self.out.push_back(OutMsg {
            wr,
            kind,
            region,
            offset,
            len,
            tag,
            rkey,
            notify,
            msg_id,
            next_off: 0,
            segmented: false,
            unacked_pkts: 0,
            error: None,
        });
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.out.len()
    }

    /// Whether a new packet could be segmented (ignoring windows).
    pub(crate) fn has_new_data(&self) -> bool {
        (self.seg_cursor as usize) < self.out.len()
    }

    /// Whether a retransmission is queued and allowed at `now`.
    pub(crate) fn has_retx(&mut self, now: Instant) -> bool {
        self.skip_stale_retx();
        !self.retx.is_empty() && now >= self.retx_hold_until
    }

    pub(crate) fn has_retx_queued(&mut self) -> bool {
        self.skip_stale_retx();
        !self.retx.is_empty()
    }

    fn skip_stale_retx(&mut self) {
        while let Some(&psn) = self.retx.front() {
            match self.pkt(psn) {
                Some(p) if p.state == PktState::Lost => return,
                _ => {
                    self.retx.pop_front();
                }
            }
        }
    }

    pub(crate) fn pkt(&self, psn: u32) -> Option<&Pkt> {
        let i = psn.wrapping_sub(self.snd_una);
        if psn_lt(psn, self.snd_una) || !psn_lt(psn, self.snd_nxt) {
            return None;
        }
        self.pkts.get(i as usize)
    }

    fn pkt_mut(&mut self, psn: u32) -> Option<&mut Pkt> {
        if psn_lt(psn, self.snd_una) || !psn_lt(psn, self.snd_nxt) {
            return None;
        }
        self.pkts.get_mut(psn.wrapping_sub(self.snd_una) as usize)
    }

    pub(crate) fn msg(&self, out_seq: u32) -> Option<&OutMsg> {
        self.out.get(out_seq.wrapping_sub(self.out_base) as usize)
    }

    pub(crate) fn msg_mut(&mut self, out_seq: u32) -> Option<&mut OutMsg> {
        self.out
            .get_mut(out_seq.wrapping_sub(self.out_base) as usize)
    }

    /// Payload length of the packet [`SendState::next_new`] would segment next.
    pub(crate) fn peek_new_len(&self, max_payload: u32) -> Option<u32> {
        let m = self.out.get(self.seg_cursor as usize)?;
        Some((m.len - m.next_off).min(max_payload))
    }

    /// Payload length of the packet [`SendState::next_retx`] would resend next.
    pub(crate) fn peek_retx_len(&self) -> Option<u32> {
        self.retx.iter().find_map(|&psn| {
            self.pkt(psn)
                .filter(|p| p.state == PktState::Lost)
                .map(|p| p.len)
        })
    }

    /// Wire bytes still to send, new data and queued retransmissions, counting `header`
    /// bytes per packet; an upper bound (one partial packet per message is assumed), and the
    /// count stops at `cap` so the cost is bounded.
    pub(crate) fn backlog_wire(&self, max_payload: u32, header: u64, cap: u64) -> u64 {
        let msgs = (self.out.len() as u64).saturating_sub(u64::from(self.seg_cursor));
        let pkts = self
            .unsegmented
            .div_ceil(u64::from(max_payload.max(1)))
            .saturating_add(msgs);
        let mut b = self.unsegmented.saturating_add(pkts.saturating_mul(header));
        for &psn in &self.retx {
            if b >= cap {
                break;
            }
            if let Some(p) = self.pkt(psn)
                && p.state == PktState::Lost
            {
                b = b.saturating_add(u64::from(p.len) + header);
            }
        }
        b.min(cap)
    }

    /// Segment the next new packet of at most `max_payload` bytes: returns its PSN. The caller
    /// has checked windows.
    pub(crate) fn next_new(&mut self, now: Instant, max_payload: u32, path: u16) -> Option<u32> {
        let idx = self.seg_cursor as usize;
        let out_seq = self.out_base.wrapping_add(self.seg_cursor);
        let m = self.out.get_mut(idx)?;
        let off = m.next_off;
        let len = (m.len - off).min(max_payload);
        m.next_off += len;
        m.unacked_pkts += 1;
        self.unsegmented = self.unsegmented.saturating_sub(u64::from(len));
        if m.next_off == m.len {
            m.segmented = true;
            self.seg_cursor += 1;
        }
        let psn = self.snd_nxt;
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        self.pkts.push_back(Pkt {
            out_seq,
            msg_off: off,
            len,
            sent_at: now,
            path,
            retx: 0,
            state: PktState::InFlight,
            by_rto: false,
            first_sent_us: wrapping_us(now),
        });
        self.in_flight += len as u64;
        self.in_flight_pkts += 1;
        Some(psn)
    }

    /// Pop the next lost packet to resend; marks it in flight again on `path`.
    pub(crate) fn next_retx(
        &mut self,
        now: Instant,
        pick_path: impl FnOnce(u16) -> u16,
    ) -> Option<u32> {
        self.skip_stale_retx();
        let psn = self.retx.pop_front()?;
        let p = self.pkt_mut(psn)?;
        let prior_ts = p.sent_at.as_ps();
        p.state = PktState::InFlight;
        p.retx = p.retx.saturating_add(1);
        p.sent_at = now;
        p.by_rto = false;
        p.path = pick_path(p.path);
        let len = p.len as u64;
        self.in_flight += len;
        self.in_flight_pkts += 1;
        self.retx_inflight.push_back(psn);
        self.remember_resend(prior_ts);
        Some(psn)
    }

    fn remember_resend(&mut self, prior_ts: u64) {
        if self.resent.len() >= RESENT_LOG {
            self.resent.pop_front();
        }
        self.resent.push_back(prior_ts);
    }

    /// An ACK echoing `echo` arrived: if `echo` is the timestamp of a transmission that was
    /// later repeated, that transmission reached the receiver and the repeat was unnecessary.
    /// Returns true for such a spurious resend (each is reported once). Transmit
    /// timestamps are unique per connection (`Conn::stamp`), so the echo names one
    /// transmission; the receiver echoes only packets that arrived whole.
    /// Resends of transmissions older than `horizon` are forgotten first (an original that
    /// late says nothing useful), so the log a busy connection scans per ACK stays short.
    // The DSACK equivalent behind RFC 8985 §6.2's adaptive reordering window.
    pub(crate) fn spurious(&mut self, echo: u64, horizon: Instant) -> bool {
        while self.resent.front().is_some_and(|&ts| ts < horizon.as_ps()) {
            self.resent.pop_front();
        }
        if echo == 0 {
            return false;
        }
        match self.resent.iter().position(|&ts| ts == echo) {
            Some(i) => self.resent.remove(i).is_some(),
            None => false,
        }
    }

    /// Mark an in-flight packet lost and queue it. Returns its (len, path) if it changed state.
    pub(crate) fn mark_lost(&mut self, psn: u32) -> Option<(u32, u16)> {
        let p = self.pkt_mut(psn)?;
        if p.state != PktState::InFlight {
            return None;
        }
        p.state = PktState::Lost;
        let (len, path) = (p.len, p.path);
        self.in_flight -= len as u64;
        self.in_flight_pkts -= 1;
        self.retx.push_back(psn);
        Some((len, path))
    }

    /// Go-back-N: everything in flight from `from` on is lost and resent in PSN order.
    pub(crate) fn go_back(&mut self, from: u32) -> (u64, u32) {
        let mut lost = (0u64, 0u32);
        let mut psn = if psn_lt(from, self.snd_una) {
            self.snd_una
        } else {
            from
        };
        // Resend in PSN order ahead of anything queued before.
        let mut queue = VecDeque::new();
        while psn_lt(psn, self.snd_nxt) {
            let i = psn.wrapping_sub(self.snd_una) as usize;
            if let Some(p) = self.pkts.get_mut(i) {
                if p.state == PktState::InFlight {
                    p.state = PktState::Lost;
                    let len = p.len as u64;
                    self.in_flight -= len;
                    self.in_flight_pkts -= 1;
                    lost.0 += len;
                    lost.1 += 1;
                }
                if p.state == PktState::Lost {
                    queue.push_back(psn);
                }
            }
            psn = psn.wrapping_add(1);
        }
        self.retx = queue;
        lost
    }

    /// Everything in flight is lost (retransmission timeout). Returns (bytes, packets, paths
    /// of the lost packets via callback).
    pub(crate) fn all_lost(&mut self, mut on_path: impl FnMut(u16)) -> (u64, u32) {
        let mut lost = (0u64, 0u32);
        let mut psn = self.snd_una;
        while psn_lt(psn, self.snd_nxt) {
            if let Some((len, path)) = self.mark_lost(psn) {
                lost.0 += len as u64;
                lost.1 += 1;
                on_path(path);
            }
            psn = psn.wrapping_add(1);
        }
        self.sort_retx();
        lost
    }

    /// Retransmission timeout in Weir mode: the oldest packet in flight is lost, and so is
    /// every other one sent at least `age` (a round trip plus the reordering window) before
    /// `now`, all queued in PSN order; each is marked so that [`SendState::undo_rto`] can
    /// restore it if the timeout proves spurious. Returns (bytes, packets, path of the oldest
    /// packet).
    //= https://www.rfc-editor.org/rfc/rfc8985#section-6.3
    //# Upon RTO timer expiration, RACK marks the first outstanding segment as lost (since it
    //# was sent an RTO ago); for all the other segments, RACK only marks the segment as lost
    //# if the time elapsed since the segment was transmitted is at least the sum of the
    //# recent RTT and the reordering window.
    pub(crate) fn rto_lost(&mut self, now: Instant, age: Duration) -> (u64, u32, Option<u16>) {
        let (mut bytes, mut pkts, mut oldest) = (0u64, 0u32, None);
        let mut psn = self.snd_una;
        while psn_lt(psn, self.snd_nxt) {
            let due = self
                .pkt(psn)
                .is_some_and(|p| oldest.is_none() || p.sent_at + age <= now);
            if due && let Some((len, path)) = self.mark_lost(psn) {
                bytes += u64::from(len);
                pkts += 1;
                oldest.get_or_insert(path);
                if let Some(p) = self.pkt_mut(psn) {
                    p.by_rto = true;
                }
            }
            psn = psn.wrapping_add(1);
        }
        self.sort_retx();
        (bytes, pkts, oldest)
    }

    /// Keep the retransmission queue in PSN order (stale and repeated entries dropped).
    fn sort_retx(&mut self) {
        let base = self.snd_una;
        let mut v: alloc::vec::Vec<u32> = self.retx.drain(..).collect();
        v.sort_by_key(|p| p.wrapping_sub(base));
        v.dedup();
        self.retx = v.into();
    }

    /// The last retransmission timeout was spurious (an ACK shows that packets sent before it
    /// arrived): packets it declared lost and that have not been resent yet are in flight
    /// again, to be judged by RACK as before (RFC 8985's undo of a spurious timeout, after
    /// Eifel, RFC 3522, with the echoed timestamp naming the transmission). Returns the packets
    /// restored.
    pub(crate) fn undo_rto(&mut self) -> u32 {
        let mut restored = 0;
        let mut resent = alloc::vec::Vec::new();
        for (i, p) in self.pkts.iter_mut().enumerate() {
            if p.by_rto && p.state == PktState::Lost {
                p.state = PktState::InFlight;
                p.by_rto = false;
                self.in_flight += u64::from(p.len);
                self.in_flight_pkts += 1;
                restored += 1;
                if p.retx > 0 {
                    resent.push((p.sent_at, self.snd_una.wrapping_add(i as u32)));
                }
            }
        }
        // Restored retransmissions are judged again too, oldest first, ahead of the later ones.
        resent.sort_unstable();
        for &(_, psn) in resent.iter().rev() {
            self.retx_inflight.push_front(psn);
        }
        if restored > 0 {
            // Restored first transmissions must be judged again by the RACK scan; their
            // entries in the retransmission queue are now stale and skipped.
            self.rack_scan = 0;
        }
        restored
    }

    /// Process a cumulative ACK + SACK. `on` hears about every packet newly acknowledged or
    /// newly declared lost (for path scoring). `probe` is the transmit time of the data-less
    /// tail-loss probe this ACK answers, if it answers one.
    pub(crate) fn on_ack(
        &mut self,
        ack: &AckExt,
        reorder_window: Duration,
        selective: bool,
        probe: Option<Instant>,
        now: Instant,
        on: &mut dyn FnMut(Delivery),
    ) -> AckOutcome {
        self.ack_echo = ack.echo_ts;
        self.ack_at_us = wrapping_us(now);
        let mut out = AckOutcome::default();
        // Cumulative part; an ACK beyond what was sent is forged or corrupt: ignore it.
        let cum = ack.cum_psn;
        if psn_lt(self.snd_nxt, cum) {
            return out;
        }
        // Flow control: the receiver's latest word on its window stands, a smaller one
        // included (a receiver sharing its buffer re-divides it as senders come and go: an
        // incast's first sender must not keep the whole buffer it was offered alone). An ACK
        // answering an older transmission than the one that set the window (reordered) may
        // only widen it.
        if ack.echo_ts >= self.rwnd_echo {
            self.rwnd_psn = ack.rwnd_psn;
            self.rwnd_echo = ack.echo_ts;
        } else if psn_lt(self.rwnd_psn, ack.rwnd_psn) {
            self.rwnd_psn = ack.rwnd_psn;
        }
        while psn_lt(self.snd_una, cum) {
            let Some(p) = self.pkts.pop_front() else {
                break;
            };
            self.snd_una = self.snd_una.wrapping_add(1);
            self.rack_scan = self.rack_scan.saturating_sub(1);
            if p.state != PktState::Acked {
                self.acked(&p, &mut out);
                on(Delivery::Acked {
                    path: p.path,
                    sent_at: p.sent_at,
                });
            }
            out.progress = true;
        }
        if selective {
            self.apply_sack(&ack.sack, &mut out, on);
            // The ACK says exactly which PSNs below this arrived; beyond it, nothing is known
            // (the bitmap is bounded), so loss detection must not judge those packets.
            let mut reported = if ack.sack.len == 0 || !psn_lt(cum, ack.sack.base) {
                cum.wrapping_add(1)
            } else {
                ack.sack.base.wrapping_add(ack.sack.len as u32 * 64)
            };
            if let Some(t) = probe {
                // The receiver answered a probe sent after every packet in flight: it is a
                // delivered transmission as RACK sees one (RFC 8985 §7.3: the probe's ACK lets
                // RACK judge the tail), and an ACK without a SACK bitmap then says that
                // nothing beyond `cum` had arrived when the probe did.
                if self.rack_xmit.is_none_or(|x| t > x) {
                    self.rack_xmit = Some(t);
                }
                if ack.sack.len == 0 {
                    reported = self.snd_nxt;
                }
            }
            self.detect_losses(reorder_window, reported, &mut out, on);
        }
        out
    }

    fn acked(&mut self, p: &Pkt, out: &mut AckOutcome) {
        if p.state == PktState::InFlight {
            self.in_flight -= p.len as u64;
            self.in_flight_pkts -= 1;
        }
        out.acked_bytes += p.len as u64;
        out.acked_pkts += 1;
        if p.retx > 0 {
            let repair = self.ack_at_us.wrapping_sub(p.first_sent_us);
            out.max_repair_us = out.max_repair_us.max(repair);
        }
        //= https://www.rfc-editor.org/rfc/rfc8985#section-6.2
        //# Step 2: if the segment was retransmitted, use its send time only when the ACK is
        //# known to be for the retransmission, not for a late original.
        // RFC 8985 guesses with min_RTT, which fails when queueing dominates the RTT (a late
        // original then "advances" RACK to the retransmission's send time, declaring everything
        // in flight lost, again and again). The echoed timestamp is exact: it names the
        // transmission that triggered this ACK.
        let this_transmission = p.retx == 0 || p.sent_at.as_ps() == self.ack_echo;
        if this_transmission && self.rack_xmit.is_none_or(|t| p.sent_at > t) {
            self.rack_xmit = Some(p.sent_at);
        }
        if let Some(m) = self.msg_mut(p.out_seq) {
            m.unacked_pkts = m.unacked_pkts.saturating_sub(1);
        }
    }

    fn apply_sack(&mut self, sack: &Sack, out: &mut AckOutcome, on: &mut dyn FnMut(Delivery)) {
        for (j, &word) in sack.words.iter().take(sack.len as usize).enumerate() {
            let mut w = word;
            while w != 0 {
                let bit = w.trailing_zeros();
                w &= w - 1;
                let psn = sack.base.wrapping_add(j as u32 * 64 + bit);
                let Some(p) = self.pkt(psn).copied() else {
                    continue;
                };
                if p.state == PktState::Acked {
                    continue;
                }
                self.acked(&p, out);
                on(Delivery::Acked {
                    path: p.path,
                    sent_at: p.sent_at,
                });
                if let Some(pm) = self.pkt_mut(psn) {
                    pm.state = PktState::Acked;
                }
            }
        }
    }

    /// RACK: a packet is lost when one sent at least `reorder_window` later was delivered.
    fn detect_losses(
        &mut self,
        reorder_window: Duration,
        reported: u32,
        out: &mut AckOutcome,
        on: &mut dyn FnMut(Delivery),
    ) {
        let Some(rack) = self.rack_xmit else { return };
        let limit = rack - reorder_window;
        // First transmissions are in PSN order of send time: scan forward from where we left.
        loop {
            let i = self.rack_scan as usize;
            let Some(p) = self.pkts.get(i) else { break };
            if p.retx == 0 && p.sent_at > limit && p.state == PktState::InFlight {
                break;
            }
            if !psn_lt(self.snd_una.wrapping_add(i as u32), reported) {
                break;
            }
            if p.retx == 0 && p.state == PktState::InFlight && p.sent_at + reorder_window <= rack {
                let psn = self.snd_una.wrapping_add(i as u32);
                if let Some((len, path)) = self.mark_lost(psn) {
                    out.lost_bytes += len as u64;
                    out.lost_pkts += 1;
                    on(Delivery::Lost { len, path });
                }
            }
            self.rack_scan += 1;
        }
        // Retransmissions, in the order they were resent.
        while let Some(&psn) = self.retx_inflight.front() {
            match self.pkt(psn) {
                Some(p) if p.state == PktState::InFlight => {
                    if p.sent_at + reorder_window > rack || !psn_lt(psn, reported) {
                        break;
                    }
                    self.retx_inflight.pop_front();
                    if let Some((len, path)) = self.mark_lost(psn) {
                        out.lost_bytes += len as u64;
                        out.lost_pkts += 1;
                        on(Delivery::Lost { len, path });
                    }
                }
                _ => {
                    self.retx_inflight.pop_front();
                }
            }
        }
    }

    /// Pop completed messages from the front, in posting order.
    pub(crate) fn pop_done(&mut self) -> Option<OutMsg> {
        if self.out.front().is_some_and(|m| m.done()) && self.seg_cursor > 0 {
            self.out_base = self.out_base.wrapping_add(1);
            self.seg_cursor -= 1;
            return self.out.pop_front();
        }
        None
    }

    /// Drop all state, returning the messages that were outstanding.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = OutMsg> + '_ {
        self.pkts.clear();
        self.retx.clear();
        self.retx_inflight.clear();
        self.resent.clear();
        self.in_flight = 0;
        self.in_flight_pkts = 0;
        self.seg_cursor = 0;
        self.unsegmented = 0;
        self.out.drain(..)
    }
}
