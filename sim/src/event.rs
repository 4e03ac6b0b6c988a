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
    /// Host `host`'s endpoint timer, armed for the event's time (stale when the host re-armed
    /// since).
    Timer { host: u32 },
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

/// Nodes an event can name: [`Ev::pack`] keeps 28 bits of a node.
pub(crate) const MAX_NODES: u64 = 1 << 28;

impl Ev {
    /// The event in 64 bits: a 4-bit kind, then its fields (a node in 28 bits, a packet,
    /// message, job or fault index in 32, a port in 16).
    fn pack(self) -> u64 {
        let node = |n: u32| {
            debug_assert!(u64::from(n) < MAX_NODES);
            u64::from(n) << 4
        };
        match self {
            Ev::Arrive { node: n, pkt } => node(n) | (u64::from(pkt) << 32),
            Ev::PortFree { node: n, port } => 1 | node(n) | (u64::from(port) << 32),
            Ev::Timer { host } => 2 | node(host),
            Ev::Pause { node: n, port, on } => {
                3 | node(n) | (u64::from(port) << 32) | (u64::from(on) << 48)
            }
            Ev::JobStart { job } => 4 | (u64::from(job) << 32),
            Ev::Start { msg } => 5 | (u64::from(msg) << 32),
            Ev::NvDone { msg } => 6 | (u64::from(msg) << 32),
            Ev::Sample => 7,
            Ev::Fault { idx } => 8 | (u64::from(idx) << 32),
        }
    }

    fn unpack(x: u64) -> Ev {
        let node = ((x >> 4) & (MAX_NODES - 1)) as u32;
        let hi = (x >> 32) as u32;
        let port = hi as u16;
        match x & 15 {
            0 => Ev::Arrive { node, pkt: hi },
            1 => Ev::PortFree { node, port },
            2 => Ev::Timer { host: node },
            3 => Ev::Pause {
                node,
                port,
                on: (x >> 48) & 1 == 1,
            },
            4 => Ev::JobStart { job: hi },
            5 => Ev::Start { msg: hi },
            6 => Ev::NvDone { msg: hi },
            7 => Ev::Sample,
            _ => Ev::Fault { idx: hi },
        }
    }
}

/// An event in a wheel slot: due time in ps, the packed event. A slot's vector keeps push
/// order among equal times, so it needs no sequence number (16 bytes, where a
/// [`Scheduled`] entry is 32: half the memory traffic of filling and sorting slots).
#[derive(Clone, Copy, Debug)]
struct Entry {
    at: u64,
    ev: u64,
}

/// An event in one of the heaps (the current slot's late pushes, the far future): the
/// sequence number breaks ties.
type HeapEntry = Scheduled<u64, u64>;

impl From<HeapEntry> for Entry {
    fn from(e: HeapEntry) -> Entry {
        Entry { at: e.at, ev: e.ev }
    }
}

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
/// When the wheel reaches a slot, its vector is sorted once, ascending, and popped from the
/// front; events pushed into the slot while it is being drained (rare: nearly every delay is
/// longer than a slot) go to a small heap, and each pop takes the earlier of the two heads.
/// At 8,192 hosts a slot holds ~10⁴ events: a binary heap of that many entries paid O(log k)
/// scattered moves per pop, where one pass over a contiguous vector streams through memory.
///
/// The sort is a two-pass radix sort on the 16 bits of the time within the slot (a counting
/// sort per byte, least significant first), which is stable: a slot's vector is in push order
/// among events of the same time (see [`EventQueue::advance`]), so sorting by time alone gives
/// the `(time, seq)` order, in linear time (a comparison sort of 10⁴ entries was 5 % of the
/// profile at 8,192 hosts). A drained slot's vector, when large, is kept for the next slot near
/// the current one to get an event, so the busy slots' vectors do not grow from nothing (by
/// reallocation, each copying it) every time the wheel comes round; a small one stays with
/// its wheel position.
#[derive(Debug)]
pub(crate) struct EventQueue {
    /// Events of the current slot, sorted; `cur[pos..]` are still pending.
    cur: Vec<Entry>,
    pos: usize,
    /// Events pushed for the current slot (or an earlier time) after it was loaded, with
    /// the push order of each.
    late: BinaryHeap<HeapEntry>,
    /// The order of the last push that went to `late` or `far` (the wheel needs none).
    seq: u64,
    cur_slot: u64,
    wheel: Vec<Vec<Entry>>,
    /// Bit `b` of word `b / 64` set: `wheel[b]` is not empty.
    occupied: Vec<u64>,
    /// Events at or beyond `cur_slot + SLOTS`.
    far: BinaryHeap<HeapEntry>,
    /// Empty vectors with room, for wheel slots that get their first event.
    spare: Vec<Vec<Entry>>,
    /// The radix sort's second buffer.
    tmp: Vec<Entry>,
    last: u64,
    len: usize,
}

/// Most empty vectors [`EventQueue`] keeps for reuse (more than the slots within [`NEAR`]).
const SPARE: usize = 64;
/// Only slots this close to the current one get a kept vector: packets' events (a
/// serialisation and a link delay ahead) fill the next few slots by the thousand, while
/// timers scatter a few events each over the whole horizon, where a large kept vector
/// apiece would hold hundreds of megabytes.
const NEAR: u64 = 32;
/// A drained vector with room for more events than this goes to the spares.
const KEEP: usize = 64;
/// Below this many events a slot is insertion-sorted.
const SMALL: usize = 32;

impl Default for EventQueue {
    fn default() -> Self {
        EventQueue {
            cur: Vec::new(),
            pos: 0,
            late: BinaryHeap::new(),
            cur_slot: 0,
            wheel: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: vec![0; (SLOTS / 64) as usize],
            far: BinaryHeap::new(),
            spare: Vec::new(),
            tmp: Vec::new(),
            last: 0,
            len: 0,
            seq: 0,
        }
    }
}

impl EventQueue {
    /// Schedule `ev` at `at` (a time before the last popped one counts as that time).
    pub(crate) fn push(&mut self, at: Instant, ev: Ev) {
        let e = Entry {
            at: at.as_ps().max(self.last),
            ev: ev.pack(),
        };
        self.len += 1;
        self.place(e);
    }

    #[inline]
    fn place(&mut self, e: Entry) {
        let slot = e.at >> SLOT_BITS;
        if slot <= self.cur_slot {
            let e = self.sequenced(e);
            self.late.push(e);
        } else if slot - self.cur_slot < SLOTS {
            let b = (slot & MASK) as usize;
            let v = &mut self.wheel[b];
            if v.capacity() == 0
                && slot - self.cur_slot <= NEAR
                && let Some(spare) = self.spare.pop()
            {
                *v = spare;
            }
            v.push(e);
            self.occupied[b / 64] |= 1 << (b % 64);
        } else {
            let e = self.sequenced(e);
            self.far.push(e);
        }
    }

    /// `e` with the next sequence number, for a heap. Heap entries and wheel entries are
    /// never compared: an event leaves `far` for the wheel in `(time, seq)` order, before
    /// any later push can reach its slot.
    fn sequenced(&mut self, e: Entry) -> HeapEntry {
        self.seq = self.seq.wrapping_add(1);
        HeapEntry {
            at: e.at,
            seq: self.seq,
            ev: e.ev,
        }
    }

    /// The earliest event (ties in push order).
    pub(crate) fn pop(&mut self) -> Option<(Instant, Ev)> {
        loop {
            // A late push is later than every event of the slot at the same time.
            let e = match (self.cur.get(self.pos), self.late.peek()) {
                (Some(c), Some(l)) if l.at < c.at => self.late.pop().map(Entry::from),
                (Some(&c), _) => {
                    self.pos += 1;
                    Some(c)
                }
                (None, Some(_)) => self.late.pop().map(Entry::from),
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
                return Some((Instant::from_ps(e.at), Ev::unpack(e.ev)));
            }
        }
    }

    /// The current slot is drained: move to the next occupied slot (of the wheel or the far
    /// heap), load it and sort it. False when nothing is pending.
    ///
    /// A slot's vector holds its events in push order among equal times, which the stable
    /// sort relies on: events pushed straight into a slot are appended in push order; events
    /// that waited in the far heap move into the slot, in `(time, seq)` order, at the first
    /// advance whose horizon covers it, before any event can be pushed into it directly, and
    /// they were pushed earlier than any such event.
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
        // The drained vector is kept for a later slot.
        let mut done = std::mem::take(&mut self.cur);
        done.clear();
        self.pos = 0;
        if next_wheel == Some(slot) {
            let b = (slot & MASK) as usize;
            self.occupied[b / 64] &= !(1 << (b % 64));
            self.cur = std::mem::take(&mut self.wheel[b]);
            if done.capacity() <= KEEP {
                self.wheel[b] = done;
            } else if self.spare.len() < SPARE {
                self.spare.push(done);
            }
        } else {
            // Only far events are due in this slot.
            self.cur = done;
        }
        // Far events that the moved horizon now covers join the wheel (or this slot).
        while self
            .far
            .peek()
            .is_some_and(|e| (e.at >> SLOT_BITS) - self.cur_slot < SLOTS)
        {
            if let Some(e) = self.far.pop() {
                let e = Entry::from(e);
                if e.at >> SLOT_BITS == self.cur_slot {
                    self.cur.push(e);
                } else {
                    self.place(e);
                }
            }
        }
        sort_by_time(&mut self.cur, &mut self.tmp);
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
        self.cur.get(self.pos + k).map(|e| Ev::unpack(e.ev))
    }

    /// Pending events.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Sort the events of one slot by time, stably (ties keep their order), ascending: a radix
/// sort on the time's 16 bits within the slot, two counting passes of a byte each, through
/// `tmp`; short vectors by insertion.
fn sort_by_time(v: &mut [Entry], tmp: &mut Vec<Entry>) {
    const _: () = assert!(SLOT_BITS == 16, "the radix sort takes two bytes");
    let n = v.len();
    if n < SMALL {
        for i in 1..n {
            let e = v[i];
            let mut j = i;
            while j > 0 && v[j - 1].at > e.at {
                v[j] = v[j - 1];
                j -= 1;
            }
            v[j] = e;
        }
        return;
    }
    let key = |e: &Entry| (e.at & ((1 << SLOT_BITS) - 1)) as usize;
    let (mut lo, mut hi) = ([0usize; 256], [0usize; 256]);
    for e in v.iter() {
        let k = key(e);
        lo[k & 0xff] += 1;
        hi[k >> 8] += 1;
    }
    let starts = |count: &mut [usize; 256]| {
        let mut sum = 0;
        for c in count.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
    };
    starts(&mut lo);
    starts(&mut hi);
    tmp.clear();
    tmp.resize(n, v[0]);
    for e in v.iter() {
        let d = &mut lo[key(e) & 0xff];
        tmp[*d] = *e;
        *d += 1;
    }
    for e in tmp.iter() {
        let d = &mut hi[key(e) >> 8];
        v[*d] = *e;
        *d += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_push_order() {
        let mut q = EventQueue::default();
        let t = Instant::from_nanos;
        q.push(t(5), Ev::Timer { host: 0 });
        q.push(t(1), Ev::Timer { host: 1 });
        q.push(t(5), Ev::Timer { host: 2 });
        q.push(t(1), Ev::Timer { host: 3 });
        let order: Vec<u32> = std::iter::from_fn(|| q.pop())
            .map(|(_, e)| match e {
                Ev::Timer { host } => host,
                _ => u32::MAX,
            })
            .collect();
        assert_eq!(order, [1, 3, 0, 2]);
        assert!(q.pop().is_none());
    }

    #[test]
    fn events_pack_into_64_bits_and_back() {
        let n = (MAX_NODES - 1) as u32;
        for ev in [
            Ev::Arrive {
                node: n,
                pkt: u32::MAX,
            },
            Ev::Arrive { node: 0, pkt: 0 },
            Ev::PortFree {
                node: n,
                port: u16::MAX,
            },
            Ev::Timer { host: n },
            Ev::Pause {
                node: 7,
                port: 3,
                on: true,
            },
            Ev::Pause {
                node: n,
                port: u16::MAX,
                on: false,
            },
            Ev::JobStart { job: u32::MAX },
            Ev::Start { msg: 12 },
            Ev::NvDone { msg: u32::MAX },
            Ev::Sample,
            Ev::Fault { idx: 5 },
        ] {
            assert_eq!(Ev::unpack(ev.pack()), ev);
        }
    }

    #[test]
    fn slot_sort_is_stable_by_time() {
        let mut rng = weir_base::Rng::new(3);
        let mut tmp = Vec::new();
        for n in [0, 1, 2, SMALL - 1, SMALL, SMALL + 1, 1000, 20_000] {
            let base = 7u64 << SLOT_BITS;
            // Few distinct times (many ties) or many; seq is the push order.
            let spread = if n % 2 == 0 { 16 } else { 1 << SLOT_BITS };
            let mut v: Vec<Entry> = (0..n as u64)
                .map(|seq| Entry {
                    at: base + rng.below(spread),
                    ev: seq,
                })
                .collect();
            let mut want: Vec<(u64, u64)> = v.iter().map(|e| (e.at, e.ev)).collect();
            want.sort_unstable();
            sort_by_time(&mut v, &mut tmp);
            let got: Vec<(u64, u64)> = v.iter().map(|e| (e.at, e.ev)).collect();
            assert_eq!(got, want, "{n} events");
        }
    }

    #[test]
    fn far_future_events_keep_push_order_among_ties() {
        use weir_base::Duration;
        let mut q = EventQueue::default();
        let far = Instant::from_nanos(5_000_000); // beyond the wheel's 268 µs horizon
        q.push(far, Ev::JobStart { job: 1 });
        q.push(far, Ev::JobStart { job: 2 });
        // Walk the clock towards `far` in 100 µs steps; once its slot is within the horizon,
        // push into it directly (after the far events moved into it).
        let mut t = Instant::from_nanos(1_000);
        q.push(t, Ev::Sample);
        let mut order = Vec::new();
        while let Some((at, ev)) = q.pop() {
            match ev {
                Ev::Sample => {
                    assert_eq!(at, t);
                    if far.saturating_since(t) < Duration::from_micros(200) {
                        q.push(far, Ev::JobStart { job: 3 });
                        q.push(far - Duration::from_nanos(1), Ev::JobStart { job: 0 });
                    }
                    t += Duration::from_micros(100);
                    if t < far {
                        q.push(t, Ev::Sample);
                    }
                }
                Ev::JobStart { job } => {
                    if job == 1 {
                        // Pushed while its slot is being drained: after the other ties.
                        q.push(far, Ev::JobStart { job: 4 });
                    }
                    order.push((at, job));
                }
                _ => unreachable!(),
            }
        }
        let e = far - Duration::from_nanos(1);
        let want = [
            (e, 0),
            (e, 0),
            (far, 1),
            (far, 2),
            (far, 3),
            (far, 3),
            (far, 4),
        ];
        assert_eq!(order, want);
        assert_eq!(q.len(), 0);
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
