//! The event queue: a monotone priority queue keyed by `(time, seq)`.
//!
//! Contract: events pop in time order; events at the same instant pop in the order they were
//! pushed (`seq` is a per-queue counter), so a run is a pure function of its inputs. There is
//! no global state: each simulation owns its queue.

use std::collections::BinaryHeap;

use weir_base::{Instant, Scheduled};

/// What happens at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ev {
    /// Packet `pkt` has fully arrived at `node` (serialisation and propagation done).
    Arrive { node: u32, pkt: u32 },
    /// Output port `port` of `node` finished serialising its packet.
    PortFree { node: u32, port: u16 },
    /// Host `host`'s endpoint timer, armed for `at` (stale when the host re-armed since).
    Timer { host: u32, at: Instant },
    /// A PFC PAUSE (`on`) or RESUME frame reaches output port `port` of `node`.
    Pause { node: u32, port: u16, on: bool },
    /// Job `job` starts.
    JobStart { job: u32 },
    /// Message `msg`'s start time has come (its dependencies were delivered).
    Start { msg: u32 },
    /// Intra-server transfer of message `msg` is delivered.
    NvDone { msg: u32 },
    /// Take a time-series sample.
    Sample,
    /// Fault event `idx` of the scenario happens.
    Fault { idx: u32 },
}

/// A queued event: due time in ps, push order, the event.
type Entry = Scheduled<u64, Ev>;

/// log2 of a slot's width in ps (65.5 ns: about one 4 KB frame at 400 Gb/s).
const SLOT_BITS: u32 = 16;
/// log2 of the slots in the wheel (4,096 slots: a 268 µs horizon).
const WHEEL_BITS: u32 = 12;
const SLOTS: u64 = 1 << WHEEL_BITS;
const MASK: u64 = SLOTS - 1;

/// Deterministic future-event list: a timing wheel (a calendar queue, Brown 1988,
/// https://doi.org/10.1145/63039.63045) of 65.5 ns slots over a 268 µs horizon, plus a binary
/// heap for events beyond it; a bitmap finds the next occupied slot. Later slots are unsorted
/// vectors (push is O(1) within the horizon).
///
/// When the wheel reaches a slot, its vector is sorted once (ascending `Ord` of
/// [`Scheduled`], which is reversed, so the earliest event is last) and popped from the back;
/// events pushed into the slot while it is being drained (rare: nearly every delay is longer
/// than a slot) go to a small heap, and each pop takes the earlier of the two heads. At 8,192
/// hosts a slot holds ~10⁴ events: a binary heap of that many entries paid O(log k) scattered
/// moves per pop (`sift_down_to_bottom` was 12 % of the profile), where one sort of a
/// contiguous vector streams through memory.
#[derive(Debug)]
pub(crate) struct EventQueue {
    /// Events of the current slot, sorted so the earliest is last.
    cur: Vec<Entry>,
    /// Events pushed for the current slot (or an earlier time) after it was loaded.
    late: BinaryHeap<Entry>,
    cur_slot: u64,
    wheel: Vec<Vec<Entry>>,
    /// Bit `b` of word `b / 64` set: `wheel[b]` is not empty.
    occupied: Vec<u64>,
    /// Events at or beyond `cur_slot + SLOTS`.
    far: BinaryHeap<Entry>,
    last: u64,
    len: usize,
    seq: u64,
}

impl Default for EventQueue {
    fn default() -> Self {
        EventQueue {
            cur: Vec::new(),
            late: BinaryHeap::new(),
            cur_slot: 0,
            wheel: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: vec![0; (SLOTS / 64) as usize],
            far: BinaryHeap::new(),
            last: 0,
            len: 0,
            seq: 0,
        }
    }
}

impl EventQueue {
    /// Schedule `ev` at `at` (a time before the last popped one counts as that time).
    pub(crate) fn push(&mut self, at: Instant, ev: Ev) {
        self.seq = self.seq.wrapping_add(1);
        let e = Entry {
            at: at.as_ps().max(self.last),
            seq: self.seq,
            ev,
        };
        self.len += 1;
        self.place(e);
    }

    fn place(&mut self, e: Entry) {
        let slot = e.at >> SLOT_BITS;
        if slot <= self.cur_slot {
            self.late.push(e);
        } else if slot - self.cur_slot < SLOTS {
            let b = (slot & MASK) as usize;
            self.wheel[b].push(e);
            self.occupied[b / 64] |= 1 << (b % 64);
        } else {
            self.far.push(e);
        }
    }

    /// The earliest event (ties in push order).
    pub(crate) fn pop(&mut self) -> Option<(Instant, Ev)> {
        loop {
            // `Ord` is reversed: the greater entry is the earlier one.
            let e = match (self.cur.last(), self.late.peek()) {
                (Some(c), Some(l)) if l > c => self.late.pop(),
                (Some(_), _) => self.cur.pop(),
                (None, Some(_)) => self.late.pop(),
                (None, None) => {
                    if !self.advance() {
                        return None;
                    }
                    continue;
                }
            };
            if let Some(e) = e {
                self.len -= 1;
                self.last = e.at;
                return Some((Instant::from_ps(e.at), e.ev));
            }
        }
    }

    /// The current slot is drained: move to the next occupied slot (of the wheel or the far
    /// heap), load it and sort it. False when nothing is pending.
    fn advance(&mut self) -> bool {
        let next_wheel = self.next_occupied();
        let next_far = self.far.peek().map(|e| e.at >> SLOT_BITS);
        let slot = match (next_wheel, next_far) {
            (Some(w), Some(f)) => w.min(f),
            (Some(w), None) => w,
            (None, Some(f)) => f,
            (None, None) => return false,
        };
        self.cur_slot = slot;
        if next_wheel == Some(slot) {
            let b = (slot & MASK) as usize;
            self.occupied[b / 64] &= !(1 << (b % 64));
            // `cur` is empty: trade buffers with the slot, and free a large one left behind
            // (keep small allocations, free bursts).
            std::mem::swap(&mut self.cur, &mut self.wheel[b]);
            if self.wheel[b].capacity() > 64 {
                self.wheel[b] = Vec::new();
            }
        }
        // Far events that the moved horizon now covers join the wheel (or this slot).
        while self
            .far
            .peek()
            .is_some_and(|e| (e.at >> SLOT_BITS) - self.cur_slot < SLOTS)
        {
            if let Some(e) = self.far.pop() {
                if e.at >> SLOT_BITS == self.cur_slot {
                    self.cur.push(e);
                } else {
                    self.place(e);
                }
            }
        }
        self.cur.sort_unstable();
        true
    }

    /// The first occupied wheel slot after the current one, as an absolute slot number.
    fn next_occupied(&self) -> Option<u64> {
        let start = ((self.cur_slot + 1) & MASK) as usize;
        let words = self.occupied.len();
        let (w0, bit0) = (start / 64, start % 64);
        for k in 0..=words {
            let w = (w0 + k) % words;
            let mut bits = self.occupied[w];
            if k == 0 {
                bits &= !0u64 << bit0;
            }
            if k == words {
                bits &= (1u64 << bit0).wrapping_sub(1);
            }
            if bits != 0 {
                let b = (w * 64 + bits.trailing_zeros() as usize) as u64;
                let ahead = b.wrapping_sub(self.cur_slot + 1) & MASK;
                return Some(self.cur_slot + 1 + ahead);
            }
        }
        None
    }

    /// The event `k` places after the next one to pop, when it is in the current slot's sorted
    /// run (events pushed since the slot was loaded are not seen). A hint: the simulator
    /// prefetches the state upcoming events will touch.
    pub(crate) fn peek_ahead(&self, k: usize) -> Option<Ev> {
        let n = self.cur.len();
        (k < n).then(|| self.cur[n - 1 - k].ev)
    }

    /// Pending events.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_push_order() {
        let mut q = EventQueue::default();
        let t = Instant::from_nanos;
        q.push(t(5), Ev::Timer { host: 0, at: t(5) });
        q.push(t(1), Ev::Timer { host: 1, at: t(1) });
        q.push(t(5), Ev::Timer { host: 2, at: t(5) });
        q.push(t(1), Ev::Timer { host: 3, at: t(1) });
        let order: Vec<u32> = std::iter::from_fn(|| q.pop())
            .map(|(_, e)| match e {
                Ev::Timer { host, .. } => host,
                _ => u32::MAX,
            })
            .collect();
        assert_eq!(order, [1, 3, 0, 2]);
        assert!(q.pop().is_none());
    }

    #[test]
    fn matches_a_sorted_reference_under_random_monotone_use() {
        let mut q = EventQueue::default();
        let mut rng = weir_base::Rng::new(9);
        let mut reference: Vec<(u64, u64, u32)> = Vec::new(); // (time, seq, id)
        let (mut now, mut seq, mut id) = (0u64, 0u64, 0u32);
        for round in 0..20_000 {
            let pushes = rng.below(3);
            for _ in 0..pushes {
                let dt = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(10),
                    2 => rng.below(1 << 20),
                    _ => rng.below(1 << 40),
                };
                seq += 1;
                id += 1;
                q.push(Instant::from_ps(now + dt), Ev::JobStart { job: id });
                reference.push((now + dt, seq, id));
            }
            if round % 2 == 0 || pushes == 0 {
                reference.sort_unstable();
                let want = if reference.is_empty() {
                    None
                } else {
                    Some(reference.remove(0))
                };
                let got = q.pop();
                match (want, got) {
                    (None, None) => {}
                    (Some((t, _, i)), Some((at, Ev::JobStart { job }))) => {
                        assert_eq!((t, i), (at.as_ps(), job));
                        now = t;
                    }
                    (w, g) => panic!("{w:?} vs {g:?}"),
                }
            }
            assert_eq!(q.len(), reference.len());
        }
    }
}
