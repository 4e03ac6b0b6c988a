//! The endpoint's timer set: every connection's next deadline, keyed by its slot.
//!
//! An indexed binary min-heap (Williams 1964, "Algorithm 232: Heapsort", CACM 7(6); the
//! position index makes a changed deadline a single sift, as in the decrease-key heaps of
//! Dijkstra's algorithm). The endpoint re-arms a connection after nearly every packet, so the
//! set sees one update per packet and one `first` per poll: here an update is one sift over a
//! contiguous array (an endpoint with 20 connections keeps all of it in five cache lines),
//! where the ordered tree set it replaces did a remove and an insert, each a descent through
//! separately allocated nodes. At thousands of simulated hosts the endpoint's state is cold
//! at every packet, and those node visits were cache misses (about 10 % of the simulator's
//! profile at 8,192 hosts).
//!
//! The set answers exactly what the tree did: the earliest deadline, and the slots due at a
//! time (which the caller orders by slot).

use alloc::vec::Vec;

use weir_base::Instant;

/// `pos` entry of a slot without a deadline.
const ABSENT: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// `(deadline, slot)`, a min-heap on the pair.
    heap: Vec<(Instant, u32)>,
    /// Slot → its index in `heap` (`ABSENT` when it has no deadline).
    pos: Vec<u32>,
}

impl Deadlines {
    /// The earliest deadline.
    pub(crate) fn first(&self) -> Option<Instant> {
        self.heap.first().map(|&(t, _)| t)
    }

    /// Set `slot`'s deadline to `at` (`None`: it has none).
    pub(crate) fn set(&mut self, slot: u32, at: Option<Instant>) {
        let s = slot as usize;
        if self.pos.len() <= s {
            if at.is_none() {
                return;
            }
            self.pos.resize(s + 1, ABSENT);
        }
        let i = self.pos[s];
        match at {
            None if i == ABSENT => {}
            None => self.remove_at(i as usize),
            Some(t) if i == ABSENT => {
                let i = self.heap.len();
                self.heap.push((t, slot));
                self.pos[s] = i as u32;
                self.sift_up(i);
            }
            Some(t) => {
                let i = i as usize;
                let old = self.heap[i];
                self.heap[i].0 = t;
                if (t, slot) < old {
                    self.sift_up(i);
                } else {
                    self.sift_down(i);
                }
            }
        }
    }

    /// The slots whose deadline is at or before `now`, into `out` (cleared first; in no
    /// particular order). Visits only those entries and their children: the due entries form
    /// a subtree at the root.
    pub(crate) fn due(&self, now: Instant, out: &mut Vec<u32>) {
        out.clear();
        let is_due = |i: usize| self.heap.get(i).is_some_and(|&(t, _)| t <= now);
        if is_due(0) {
            out.push(0);
        }
        let mut k = 0;
        while let Some(&i) = out.get(k) {
            let left = 2 * i as usize + 1;
            for c in [left, left + 1] {
                if is_due(c) {
                    out.push(c as u32);
                }
            }
            k += 1;
        }
        for i in out.iter_mut() {
            *i = self.heap.get(*i as usize).map_or(ABSENT, |&(_, slot)| slot);
        }
    }

    /// The slot with the earliest deadline.
    pub(crate) fn first_slot(&self) -> Option<u32> {
        self.heap.first().map(|&(_, slot)| slot)
    }

    /// Prefetch this set's own fields (a hint).
    pub(crate) fn prefetch_state(&self) {
        weir_base::prefetch::lines(&self.heap, 1);
        weir_base::prefetch::lines(&self.pos, 1);
    }

    /// Prefetch what [`Deadlines::set`] for `slot` reads first (a hint).
    pub(crate) fn prefetch(&self, slot: usize) {
        if let Some(p) = self.pos.get(slot) {
            weir_base::prefetch::lines(p, 1);
        }
        if let Some(h) = self.heap.first() {
            weir_base::prefetch::lines(h, 1);
        }
    }

    fn remove_at(&mut self, i: usize) {
        let Some(last) = self.heap.len().checked_sub(1) else {
            return;
        };
        self.swap(i, last);
        if let Some((_, slot)) = self.heap.pop()
            && let Some(p) = self.pos.get_mut(slot as usize)
        {
            *p = ABSENT;
        }
        if i < self.heap.len() {
            self.sift_down(i);
            self.sift_up(i);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        for i in [a, b] {
            let slot = self.heap[i].1 as usize;
            self.pos[slot] = i as u32;
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i] >= self.heap[parent] {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let left = 2 * i + 1;
            let mut min = i;
            for c in [left, left + 1] {
                if c < self.heap.len() && self.heap[c] < self.heap[min] {
                    min = c;
                }
            }
            if min == i {
                return;
            }
            self.swap(i, min);
            i = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeSet;

    use super::*;

    #[test]
    fn answers_as_an_ordered_set_does() {
        let mut d = Deadlines::default();
        let mut reference: BTreeSet<(Instant, u32)> = BTreeSet::new();
        let mut armed: Vec<Option<Instant>> = alloc::vec![None; 40];
        let mut rng = weir_base::Rng::new(7);
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let slot = rng.below(40) as u32;
            let at = (rng.below(4) > 0).then(|| Instant::from_nanos(rng.below(1000)));
            if let Some(old) = armed[slot as usize] {
                reference.remove(&(old, slot));
            }
            if let Some(t) = at {
                reference.insert((t, slot));
            }
            armed[slot as usize] = at;
            d.set(slot, at);
            assert_eq!(d.first(), reference.first().map(|&(t, _)| t));
            let now = Instant::from_nanos(rng.below(1000));
            d.due(now, &mut out);
            out.sort_unstable();
            let mut want: Vec<u32> = reference
                .iter()
                .take_while(|&&(t, _)| t <= now)
                .map(|&(_, s)| s)
                .collect();
            want.sort_unstable();
            assert_eq!(out, want);
        }
    }
}
