//! Receiver side of a connection: the reorder bitmap, duplicate suppression, matching of
//! sends to posted receives, direct placement, and what the next ACK/NACK says.
//!
//! Placement is direct: a packet's payload is copied to its final offset the moment it
//! arrives, whatever the order. Sends are matched to receives in message order (MPI-style:
//! message *k* takes the first posted receive whose tag matches, after messages before it);
//! payload of a send whose receive is not posted yet is held in a bounded "unexpected" buffer.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use weir_base::Instant;
use weir_wire::psn::lt as psn_lt;
use weir_wire::{MAX_SACK_WORDS, Sack};

use crate::WrId;
use crate::mem::RegionId;

/// A posted receive.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PostedRecv {
    pub(crate) wr: WrId,
    pub(crate) region: RegionId,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) tag: Option<u64>,
}

/// An incoming send message.
#[derive(Debug)]
pub(crate) struct InMsg {
    pub(crate) tag: u64,
    pub(crate) len: u32,
    pub(crate) received: u64,
    pub(crate) recv: Option<PostedRecv>,
    /// Payload that arrived before a receive was matched (`None` in virtual mode).
    pub(crate) early: Option<Vec<u8>>,
    /// Bytes reserved from the unexpected budget.
    pub(crate) reserved: u64,
    pub(crate) done: bool,
}

/// A write with notify in progress.
#[derive(Debug)]
pub(crate) struct InWrite {
    pub(crate) msg_id: u32,
    pub(crate) len: u32,
    pub(crate) received: u64,
    pub(crate) imm: u32,
}

/// The reorder bitmap: which PSNs in `[cum, cum + capacity)` have arrived.
#[derive(Debug)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    mask: u32,
}

impl Bitmap {
    fn new(capacity: u32) -> Self {
        Bitmap {
            words: vec![0; (capacity as usize).div_ceil(64)],
            mask: capacity - 1,
        }
    }
    fn get(&self, psn: u32) -> bool {
        let i = (psn & self.mask) as usize;
        self.words[i / 64] >> (i % 64) & 1 == 1
    }
    fn set(&mut self, psn: u32, on: bool) {
        let i = (psn & self.mask) as usize;
        if on {
            self.words[i / 64] |= 1 << (i % 64);
        } else {
            self.words[i / 64] &= !(1 << (i % 64));
        }
    }
}

/// A connection's receiver. `repr(C)`: the fields every packet touches first (see
/// `Conn`).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct RecvState {
    // What every data packet and every ACK reads, first.
    /// Every PSN below this arrived.
    pub(crate) cum: u32,
    /// Highest PSN seen + 1.
    pub(crate) high: u32,
    pub(crate) capacity: u32,
    /// The window ACKs advertise beyond `cum` (at most `capacity`): the connection's share of
    /// the endpoint's receive budget (`Config::rx_budget_packets`).
    pub(crate) adv: u32,
    /// Data packets since the last ACK.
    pub(crate) unacked: u32,
    pub(crate) last_psn: u32,
    pub(crate) ecn_bytes: u32,
    pub(crate) last_entropy: u16,
    /// Receiver not ready: three quarters of the unexpected budget are used, or send data was
    /// refused for lack of buffers; ACKs and NACKs say so (`Flags::RNR`) until a receive is
    /// waiting or no more than a quarter of the budget is used (`Conn::rnr_update`).
    pub(crate) starved: bool,
    /// Send an ACK at the next opportunity.
    pub(crate) ack_now: bool,
    pub(crate) ecn_echo: bool,
    /// Go-back-N: a NACK for the current gap was already sent.
    pub(crate) gbn_nacked: bool,
    /// A CNP is due (DCQCN notification point).
    pub(crate) cnp_due: bool,
    pub(crate) last_tx_ts: u64,
    pub(crate) last_arrival: Instant,
    /// When the oldest unacknowledged packet arrived.
    pub(crate) unacked_since: Option<Instant>,
    bitmap: Bitmap,
    /// Posted receives not matched yet, in posting order.
    pub(crate) posted: VecDeque<PostedRecv>,
    /// Incoming sends from `in_base` on.
    pub(crate) inbound: VecDeque<Option<InMsg>>,
    pub(crate) in_base: u32,
    /// Next send message id to match against a receive.
    pub(crate) match_next: u32,
    /// The first message id at or after `match_next` that has not arrived (a gap): messages
    /// are matched in order, so none beyond it may take a receive yet.
    pub(crate) frontier: u32,
    pub(crate) unexpected_used: u64,
    // Less used.
    /// When the last CNP was queued.
    pub(crate) last_cnp: Option<Instant>,
    /// Writes with notify being assembled.
    pub(crate) writes: Vec<InWrite>,
    /// Buffers of completed unexpected messages, reused so early data does not pay for fresh
    /// (page-faulting) memory each time. Bounded by the unexpected budget.
    pool: Vec<Vec<u8>>,
    /// INT records of the latest data packet that carried them, for the next ACK (boxed: 200
    /// bytes that only INT runs use, which every ACK would otherwise copy out of the
    /// connection).
    pub(crate) int_echo: Option<alloc::boxed::Box<weir_wire::IntList>>,
}

/// Outcome of accepting a PSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    New,
    Duplicate,
    OutOfWindow,
}

impl RecvState {
    pub(crate) fn new(initial_psn: u32, capacity: u32) -> Self {
        RecvState {
            cum: initial_psn,
            high: initial_psn,
            bitmap: Bitmap::new(capacity),
            capacity,
            adv: capacity,
            posted: VecDeque::new(),
            inbound: VecDeque::new(),
            in_base: 0,
            match_next: 0,
            frontier: 0,
            writes: Vec::new(),
            unexpected_used: 0,
            starved: false,
            pool: Vec::new(),
            unacked: 0,
            unacked_since: None,
            ack_now: false,
            last_tx_ts: 0,
            last_arrival: Instant::ZERO,
            last_psn: initial_psn,
            last_entropy: 0,
            ecn_bytes: 0,
            ecn_echo: false,
            gbn_nacked: false,
            int_echo: None,
            cnp_due: false,
            last_cnp: None,
        }
    }

    /// Classify a PSN without recording it.
    pub(crate) fn classify(&self, psn: u32) -> Arrival {
        if psn_lt(psn, self.cum) {
            Arrival::Duplicate
        } else if psn.wrapping_sub(self.cum) >= self.capacity {
            Arrival::OutOfWindow
        } else if self.bitmap.get(psn) {
            Arrival::Duplicate
        } else {
            Arrival::New
        }
    }

    /// Record a new PSN (after `classify` said `New`) and advance the cumulative point.
    pub(crate) fn record(&mut self, psn: u32) {
        self.bitmap.set(psn, true);
        if !psn_lt(psn, self.high) {
            self.high = psn.wrapping_add(1);
        }
        while self.cum != self.high && self.bitmap.get(self.cum) {
            self.bitmap.set(self.cum, false);
            self.cum = self.cum.wrapping_add(1);
        }
    }

    /// Whether PSNs above `cum` have arrived (there is a hole).
    pub(crate) fn has_hole(&self) -> bool {
        self.cum != self.high
    }

    /// Flow-control limit to advertise.
    pub(crate) fn rwnd_psn(&self) -> u32 {
        self.cum.wrapping_add(self.capacity.min(self.adv))
    }

    /// The SACK bitmap for the next ACK: the `MAX_SACK_WORDS * 64` PSNs right after `cum`
    /// (which is by definition missing). Only words up to the last set bit are carried.
    pub(crate) fn sack(&self) -> Sack {
        let mut s = Sack::default();
        if !self.has_hole() {
            return s;
        }
        let span = (MAX_SACK_WORDS * 64) as u32;
        let base = self.cum.wrapping_add(1);
        s.base = base;
        let upto = self.high.wrapping_sub(base).min(span);
        let mut len = 0u8;
        for i in 0..upto {
            if self.bitmap.get(base.wrapping_add(i)) {
                let j = (i / 64) as usize;
                s.words[j] |= 1 << (i % 64);
                len = len.max(j as u8 + 1);
            }
        }
        s.len = len;
        s
    }

    /// The incoming send message `msg_id`, creating its slot when it is within reach.
    /// `None` when the id is implausibly far ahead (forged) or already completed.
    pub(crate) fn inbound_slot(&mut self, msg_id: u32) -> Option<&mut Option<InMsg>> {
        if psn_lt(msg_id, self.in_base) {
            return None;
        }
        let i = msg_id.wrapping_sub(self.in_base) as usize;
        if i >= self.capacity as usize {
            return None;
        }
        if i >= self.inbound.len() {
            self.inbound.resize_with(i + 1, || None);
        }
        self.inbound.get_mut(i)
    }

    pub(crate) fn inbound_get(&mut self, msg_id: u32) -> Option<&mut InMsg> {
        if psn_lt(msg_id, self.in_base) {
            return None;
        }
        self.inbound
            .get_mut(msg_id.wrapping_sub(self.in_base) as usize)?
            .as_mut()
    }

    /// Forget completed messages at the front.
    pub(crate) fn trim_inbound(&mut self) {
        while let Some(Some(m)) = self.inbound.front() {
            if !m.done || psn_lt(self.match_next, self.in_base.wrapping_add(1)) {
                break;
            }
            self.inbound.pop_front();
            self.in_base = self.in_base.wrapping_add(1);
        }
    }

    /// A buffer of `len` bytes for early data, from the pool when one fits.
    pub(crate) fn early_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut v = match self.pool.iter().position(|b| b.capacity() >= len) {
            Some(i) => self.pool.swap_remove(i),
            None => Vec::new(),
        };
        v.resize(len, 0);
        v
    }

    /// Return an early-data buffer to the pool (kept while the pool stays under `budget`).
    pub(crate) fn recycle(&mut self, buf: Vec<u8>, budget: u64) {
        let pooled: usize = self.pool.iter().map(|b| b.capacity()).sum();
        if (pooled + buf.capacity()) as u64 <= budget {
            self.pool.push(buf);
        }
    }

    /// Say this receiver is not ready (`starved`); whether it was ready until now.
    pub(crate) fn xoff(&mut self) -> bool {
        !core::mem::replace(&mut self.starved, true)
    }

    /// Take the first posted receive that accepts `tag`.
    pub(crate) fn take_recv(&mut self, tag: u64) -> Option<PostedRecv> {
        let i = self
            .posted
            .iter()
            .position(|r| r.tag.is_none_or(|t| t == tag))?;
        self.posted.remove(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_advances_cum_and_reports_sack() {
        let mut r = RecvState::new(u32::MAX - 2, 64);
        assert_eq!(r.classify(u32::MAX - 2), Arrival::New);
        r.record(u32::MAX - 2);
        assert_eq!(r.cum, u32::MAX - 1);
        // hole at MAX-1, packets MAX, 0, 1 arrive (PSN wraps).
        for p in [u32::MAX, 0, 1] {
            assert_eq!(r.classify(p), Arrival::New);
            r.record(p);
        }
        assert_eq!(r.cum, u32::MAX - 1);
        assert!(r.has_hole());
        let s = r.sack();
        assert_eq!(s.base, u32::MAX);
        assert_eq!(s.words[0] & 0b111, 0b111);
        assert_eq!(r.classify(0), Arrival::Duplicate);
        assert_eq!(r.classify(u32::MAX - 5), Arrival::Duplicate);
        assert_eq!(r.classify(200), Arrival::OutOfWindow);
        r.record(u32::MAX - 1);
        assert_eq!(r.cum, 2);
        assert!(!r.has_hole());
    }
}
