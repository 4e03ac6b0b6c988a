//! The event queue: a binary min-heap keyed by `(time, seq)`.
//!
//! Contract: events pop in time order; events at the same instant pop in the order they were
//! pushed (`seq` is a per-queue counter), so a run is a pure function of its inputs. There is
//! no global state: each simulation owns its queue. A calendar queue can replace the heap if
//! profiling says so (DESIGN.md, `sim/event`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use weir_base::Instant;

/// What happens at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ev {
    /// Packet `pkt` has fully arrived at `node` (serialisation and propagation done).
    Arrive { node: u32, pkt: u32 },
    /// Output port `port` of `node` finished serialising its packet.
    PortFree { node: u32, port: u16 },
    /// Host `host`'s endpoint timer, armed for `at` (stale when the host re-armed since).
    Timer { host: u32, at: Instant },
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// Reversed, so the max-heap pops the earliest `(at, seq)`.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Deterministic future-event list.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl EventQueue {
    /// Schedule `ev` at `at`.
    pub(crate) fn push(&mut self, at: Instant, ev: Ev) {
        self.seq = self.seq.wrapping_add(1);
        self.heap.push(Entry {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// The earliest event.
    pub(crate) fn pop(&mut self) -> Option<(Instant, Ev)> {
        self.heap.pop().map(|e| (e.at, e.ev))
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
}
