//! Multipath spraying with per-path scoring.
//!
//! Each connection sprays over `n` entropy values (paths). Packets go out in bursts of
//! `burst` consecutive packets per path (so a datapath can batch them), round-robin over the
//! paths. Every path carries a penalty score: a loss detected on it adds 4, a retransmission
//! timeout 15 (the cap), an ECN echo 1; delivered packets pay it back one point per
//! `DECAY_EVERY` acknowledgements. Paths whose score exceeds `AVOID_ABOVE` are skipped (a dead
//! path stops being used within a few packets); when every path is penalised the least
//! penalised one is used. Every `PROBE_EVERY` packets one skipped path (in turn) carries a
//! single probe packet; a probe that is delivered brings its path back to the threshold, so a
//! healed path returns to service after one successful probe and a path that still loses is
//! pushed out again by its next loss. This is the "bitmap" EV scheme of the UEC htsim
//! (`uec_mp.cpp`), with REPS's idea of recycling paths that deliver.

//= uet-htsim htsim/sim/uec_mp.cpp#UecMpBitmap::processEv
//# Bitmap: penalise an EV by 1 on an ECN echo, 4 on a NACK, and 15 (the cap) on a timeout;
//# skip penalised EVs and decay the penalty.

use alloc::vec;
use alloc::vec::Vec;

use weir_base::Instant;

const CAP: u8 = 15;
const AVOID_ABOVE: u8 = 6;
const DECAY_EVERY: u32 = 16;
const PROBE_EVERY: u64 = 256;

/// Penalty events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Penalty {
    Ecn,
    Loss,
    Timeout,
}

/// Per-path counters, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Packets sent on this path (including retransmissions).
    pub sent: u64,
    /// Packets acknowledged that were sent on this path.
    pub delivered: u64,
    /// Losses attributed to this path.
    pub lost: u64,
    /// Current penalty score (0 = healthy, 15 = looks dead).
    pub penalty: u8,
}

/// One path's record: [`PathStats`] and the acknowledgements since its last decay, in 32
/// bytes (the count takes what would be padding), so that scoring an acknowledged packet
/// touches one cache line, not one here and one in a second array.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    sent: u64,
    delivered: u64,
    lost: u64,
    penalty: u8,
    /// Acknowledgements since the last decay (below `DECAY_EVERY`).
    since_decay: u8,
}

const _: () = assert!(core::mem::size_of::<Slot>() <= 32 && DECAY_EVERY <= u8::MAX as u32);

impl Slot {
    fn stats(&self) -> PathStats {
        PathStats {
            sent: self.sent,
            delivered: self.delivered,
            lost: self.lost,
            penalty: self.penalty,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Paths {
    slots: Vec<Slot>,
    current: u16,
    left_in_burst: u16,
    burst: u16,
    sent_total: u64,
    probe_cursor: u16,
    /// The path of the last tail-loss probe.
    tlp_path: u16,
    /// When each path last became penalised (its score rose past `AVOID_ABOVE`): only a packet
    /// sent after that (a probe) proves it healed. Apart from `slots`, as it is read only for
    /// a penalised path.
    avoided_at: Vec<Instant>,
}

impl Paths {
    pub(crate) fn new(n: u16, burst: u16, start: u16) -> Self {
        let n = n.max(1);
        Paths {
            slots: vec![Slot::default(); n as usize],
            current: start % n,
            left_in_burst: burst.max(1),
            burst: burst.max(1),
            sent_total: 0,
            probe_cursor: 0,
            tlp_path: start % n,
            avoided_at: vec![Instant::ZERO; n as usize],
        }
    }

    pub(crate) fn burst_done(&self) -> bool {
        self.left_in_burst == 0
    }

    pub(crate) fn len(&self) -> u16 {
        self.slots.len() as u16
    }

    /// The path for the next new packet.
    pub(crate) fn next(&mut self) -> u16 {
        if self.sent_total % PROBE_EVERY == PROBE_EVERY - 1
            && let Some(p) = self.next_probe()
        {
            self.sent(p);
            return p;
        }
        if self.left_in_burst == 0 || self.penalised(self.current) {
            self.current = self.pick_after(self.current);
            self.left_in_burst = self.burst;
        }
        self.left_in_burst -= 1;
        self.sent(self.current);
        self.current
    }

    /// The next penalised path to probe, round-robin; `None` when all are healthy (or all are
    /// penalised: then every packet already goes to the least penalised).
    fn next_probe(&mut self) -> Option<u16> {
        let n = self.len();
        if (0..n).all(|p| self.penalised(p)) {
            return None;
        }
        for k in 1..=n {
            let p = (self.probe_cursor + k) % n;
            if self.penalised(p) {
                self.probe_cursor = p;
                return Some(p);
            }
        }
        None
    }

    /// A path for a tail-loss probe: the next healthy path after the last probe's, so a
    /// second probe does not follow the first into a dead path. Probes carry no data and are
    /// not scored, so they leave the spray's bursts and counters alone.
    pub(crate) fn for_tail_probe(&mut self) -> u16 {
        self.tlp_path = self.pick_after(self.tlp_path);
        self.tlp_path
    }

    /// A path for retransmitting a packet first sent on `orig`: a healthy path other than it
    /// when one exists.
    pub(crate) fn for_retransmit(&mut self, orig: u16) -> u16 {
        let p = self.pick_after(orig);
        self.sent(p);
        p
    }

    /// A packet sent on `path` at `sent_at` was acknowledged.
    pub(crate) fn delivered(&mut self, path: u16, sent_at: Instant) {
        let i = path as usize;
        let Some(penalty) = self.slots.get(i).map(|s| s.penalty) else {
            return;
        };
        // A delivered packet sent on a skipped path since it was skipped (a probe) makes it
        // usable again. One sent before says nothing of its health now: on a path that loses
        // a third of its packets, the two thirds that arrive would otherwise lift it back into
        // the spray at every ACK. With every path penalised there is nowhere better to go (one
        // physical path under all the entropies, or a congested last hop): any delivery counts.
        let restore = penalty > AVOID_ABOVE
            && (self.avoided_at.get(i).is_some_and(|&t| sent_at >= t)
                || self.slots.iter().all(|x| x.penalty > AVOID_ABOVE));
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        s.delivered += 1;
        if restore {
            s.penalty = AVOID_ABOVE;
        }
        s.since_decay += 1;
        if u32::from(s.since_decay) >= DECAY_EVERY {
            s.since_decay = 0;
            s.penalty = s.penalty.saturating_sub(1);
        }
    }

    /// Score a loss, timeout or ECN mark against `path`, found at `now`.
    pub(crate) fn penalize(&mut self, path: u16, what: Penalty, now: Instant) {
        let Some(s) = self.slots.get_mut(path as usize) else {
            return;
        };
        let was_avoided = s.penalty > AVOID_ABOVE;
        let add = match what {
            Penalty::Ecn => 1,
            Penalty::Loss => 4,
            Penalty::Timeout => CAP,
        };
        if what != Penalty::Ecn {
            s.lost += 1;
        }
        s.penalty = (s.penalty + add).min(CAP);
        if !was_avoided
            && s.penalty > AVOID_ABOVE
            && let Some(t) = self.avoided_at.get_mut(path as usize)
        {
            *t = now;
        }
    }

    pub(crate) fn stats(&self) -> Vec<PathStats> {
        self.slots.iter().map(Slot::stats).collect()
    }

    fn sent(&mut self, path: u16) {
        self.sent_total += 1;
        if let Some(s) = self.slots.get_mut(path as usize) {
            s.sent += 1;
        }
    }

    fn penalised(&self, p: u16) -> bool {
        self.slots[p as usize].penalty > AVOID_ABOVE
    }

    /// The next path after `from` in round-robin order that is not penalised; when all are
    /// penalised, the least penalised.
    fn pick_after(&self, from: u16) -> u16 {
        let n = self.len();
        if n == 1 {
            return 0;
        }
        let mut best = (from + 1) % n;
        for k in 1..=n {
            let p = (from + k) % n;
            if !self.penalised(p) && (p != from || k == n) {
                return p;
            }
            if self.slots[p as usize].penalty < self.slots[best as usize].penalty {
                best = p;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sprays_in_bursts() {
        let mut p = Paths::new(4, 2, 0);
        let seq: Vec<u16> = (0..8).map(|_| p.next()).collect();
        assert_eq!(seq, [0, 0, 1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn dead_paths_are_avoided_probed_and_recover() {
        let t = |us: u64| Instant::from_nanos(us * 1000);
        let mut p = Paths::new(4, 8, 0);
        p.penalize(2, Penalty::Timeout, t(10));
        p.penalize(3, Penalty::Timeout, t(10));
        let used: Vec<u16> = (0..200).map(|_| p.next()).collect();
        assert!(!used.contains(&2) && !used.contains(&3));
        let used: Vec<u16> = (0..2048).map(|_| p.next()).collect();
        let probes = |x| used.iter().filter(|&&u| u == x).count();
        // One probe every PROBE_EVERY packets, alternating between the two dead paths.
        assert!(
            (3..=5).contains(&probes(2)) && (3..=5).contains(&probes(3)),
            "{} {}",
            probes(2),
            probes(3)
        );
        // A packet sent before path 3 was avoided, delivered now, says nothing of its health.
        p.delivered(3, t(9));
        let used: Vec<u16> = (0..64).map(|_| p.next()).collect();
        assert!(!used.contains(&3), "{used:?}");
        // A delivered probe (sent since) brings it back into rotation.
        p.delivered(3, t(20));
        let used: Vec<u16> = (0..64).map(|_| p.next()).collect();
        let count = |x| used.iter().filter(|&&u| u == x).count();
        assert!(count(3) >= 8 && count(2) <= 1, "{used:?}");
    }

    #[test]
    fn retransmit_avoids_original() {
        let mut p = Paths::new(3, 1, 0);
        assert_ne!(p.for_retransmit(1), 1);
        let mut single = Paths::new(1, 4, 0);
        assert_eq!(single.for_retransmit(0), 0);
    }
}
