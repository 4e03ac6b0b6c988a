//! [`Scheduled`]: an event tagged with its time and a tie-breaking sequence number, ordered so
//! that a max-heap (`BinaryHeap`) pops the earliest time first and, among equal times, the
//! event scheduled first. The simulator's event queue and the congestion-control bottleneck
//! model both rest on it, which is what makes their runs deterministic.

use core::cmp::Ordering;

/// An event `ev` due at `at`, scheduled as the `seq`-th of its queue.
#[derive(Clone, Copy, Debug)]
pub struct Scheduled<K, E> {
    /// When the event is due (any totally ordered time: an `Instant`, raw picoseconds).
    pub at: K,
    /// Order of scheduling; breaks ties between equal times (first scheduled, first out).
    pub seq: u64,
    /// The event.
    pub ev: E,
}

impl<K: Ord, E> PartialEq for Scheduled<K, E> {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at && self.seq == o.seq
    }
}

impl<K: Ord, E> Eq for Scheduled<K, E> {}

impl<K: Ord, E> PartialOrd for Scheduled<K, E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl<K: Ord, E> Ord for Scheduled<K, E> {
    /// Reversed on `(at, seq)`, so a max-heap pops the earliest, then first scheduled, event.
    fn cmp(&self, o: &Self) -> Ordering {
        o.at.cmp(&self.at).then(o.seq.cmp(&self.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_time_then_earlier_seq_is_greater() {
        let e = |at: u64, seq: u64| Scheduled { at, seq, ev: () };
        assert!(e(1, 9) > e(2, 0), "earlier time first");
        assert!(e(5, 1) > e(5, 2), "same time: first scheduled first");
        assert_eq!(e(3, 3), e(3, 3));
        let mut v = [e(2, 1), e(1, 2), e(2, 0), e(1, 1)];
        v.sort();
        // Ascending order of `Ord` is the reverse of pop order.
        let order: [(u64, u64); 4] = v.map(|x| (x.at, x.seq));
        assert_eq!(order, [(2, 1), (2, 0), (1, 2), (1, 1)]);
    }
}
