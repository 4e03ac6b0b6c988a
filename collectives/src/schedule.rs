//! Schedules as plain data, validated on construction.
//!
//! Contract: a [`Schedule`] can only be built through [`Schedule::new`], which runs
//! [`Schedule::validate`]; a schedule that exists is therefore well formed: every rank and
//! element range is in bounds, no rank receives two writes to one element in one step, every
//! transfer reads (and every reduce combines into) elements that are valid at that point, and
//! every rank's output region is valid at the end. Validation runs in
//! O(T log T) for T transfers, independent of the buffer length (validity is tracked as sorted
//! interval sets, not per element).
//!
//! Step semantics: all transfers of a step read the buffers as they were before the step; their
//! writes land after it. Transfers with `src == dst` are local copies (used by all-to-all).

use alloc::vec::Vec;
use core::ops::Range;

use crate::op::Collective;

/// What the receiver does with the incoming elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Overwrite the destination range.
    Copy,
    /// Combine into the destination range with the reduction operator.
    Reduce,
}

/// One message: `len` elements from `src`'s buffer at `src_offset` to `dst`'s buffer at
/// `dst_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transfer {
    /// Sending rank.
    pub src: usize,
    /// Receiving rank.
    pub dst: usize,
    /// First element read in the sender's buffer.
    pub src_offset: usize,
    /// First element written in the receiver's buffer.
    pub dst_offset: usize,
    /// Number of elements (never zero in a valid schedule).
    pub len: usize,
    /// Copy or reduce at the receiver.
    pub action: Action,
}

impl Transfer {
    /// The element range read at the sender.
    pub fn src_range(&self) -> Range<usize> {
        self.src_offset..self.src_offset.saturating_add(self.len)
    }

    /// The element range written at the receiver.
    pub fn dst_range(&self) -> Range<usize> {
        self.dst_offset..self.dst_offset.saturating_add(self.len)
    }
}

/// One synchronous round of transfers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The transfers of this round, all reading the pre-step state.
    pub transfers: Vec<Transfer>,
}

/// A validated collective schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    collective: Collective,
    ranks: usize,
    buffer_len: usize,
    inputs: Vec<Range<usize>>,
    outputs: Vec<Range<usize>>,
    steps: Vec<Step>,
}

/// Why a schedule was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleError {
    /// Index of the offending step (`None` for shape errors and missing outputs).
    pub step: Option<usize>,
    /// Index of the offending transfer within its step.
    pub transfer: Option<usize>,
    /// What is wrong.
    pub kind: ScheduleErrorKind,
}

/// The kinds of [`ScheduleError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleErrorKind {
    /// A transfer writes an element another transfer of the same step also writes at `rank`.
    ConflictingWrite {
        /// The receiving rank.
        rank: usize,
    },
    /// A transfer has zero length.
    EmptyTransfer,
    /// `inputs`/`outputs` do not have one entry per rank, or there are no ranks.
    BadShape,
    /// A rank's input or output region exceeds the buffer.
    RegionOutOfBounds {
        /// The rank.
        rank: usize,
    },
    /// A rank's output region is not fully valid after the last step.
    OutputNotProduced {
        /// The rank.
        rank: usize,
    },
    /// An element range exceeds the buffer.
    RangeOutOfBounds,
    /// A source or destination rank is `>= ranks`.
    RankOutOfRange,
    /// The sender reads elements that are not valid yet.
    ReadInvalid,
    /// A reduce combines into elements of the receiver that are not valid yet.
    ReduceIntoInvalid,
}

impl core::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(s) = self.step {
            write!(f, " at step {s}")?;
        }
        if let Some(t) = self.transfer {
            write!(f, " transfer {t}")?;
        }
        Ok(())
    }
}

impl Schedule {
    /// Builds and validates a schedule. `inputs[r]` is the region of rank `r`'s buffer that
    /// holds its input (valid at the start), `outputs[r]` the region holding its result.
    pub fn new(
        collective: Collective,
        buffer_len: usize,
        inputs: Vec<Range<usize>>,
        outputs: Vec<Range<usize>>,
        steps: Vec<Step>,
    ) -> Result<Self, ScheduleError> {
        let s = Schedule {
            collective,
            ranks: inputs.len(),
            buffer_len,
            inputs,
            outputs,
            steps,
        };
        s.validate()?;
        Ok(s)
    }

    /// Re-checks every invariant listed in the module doc.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let shape = |kind| ScheduleError {
            step: None,
            transfer: None,
            kind,
        };
        if self.ranks == 0 || self.outputs.len() != self.ranks {
            return Err(shape(ScheduleErrorKind::BadShape));
        }
        for (rank, r) in self.inputs.iter().chain(&self.outputs).enumerate() {
            if r.start > r.end || r.end > self.buffer_len {
                let rank = rank % self.ranks;
                return Err(shape(ScheduleErrorKind::RegionOutOfBounds { rank }));
            }
        }
        let mut valid: Vec<Intervals> = self
            .inputs
            .iter()
            .map(|r| Intervals::from_range(r.clone()))
            .collect();
        let mut writes: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (si, step) in self.steps.iter().enumerate() {
            let err = |ti, kind| ScheduleError {
                step: Some(si),
                transfer: Some(ti),
                kind,
            };
            writes.clear();
            for (ti, t) in step.transfers.iter().enumerate() {
                if t.src >= self.ranks || t.dst >= self.ranks {
                    return Err(err(ti, ScheduleErrorKind::RankOutOfRange));
                }
                if t.len == 0 {
                    return Err(err(ti, ScheduleErrorKind::EmptyTransfer));
                }
                let in_bounds = |off: usize| {
                    off.checked_add(t.len)
                        .is_some_and(|end| end <= self.buffer_len)
                };
                if !in_bounds(t.src_offset) || !in_bounds(t.dst_offset) {
                    return Err(err(ti, ScheduleErrorKind::RangeOutOfBounds));
                }
                if !valid[t.src].contains(t.src_range()) {
                    return Err(err(ti, ScheduleErrorKind::ReadInvalid));
                }
                if t.action == Action::Reduce && !valid[t.dst].contains(t.dst_range()) {
                    return Err(err(ti, ScheduleErrorKind::ReduceIntoInvalid));
                }
                writes.push((t.dst, t.dst_offset, t.dst_offset + t.len, ti));
            }
            writes.sort_unstable();
            for w in writes.windows(2) {
                let (a, b) = (w[0], w[1]);
                if a.0 == b.0 && b.1 < a.2 {
                    return Err(err(
                        a.3.max(b.3),
                        ScheduleErrorKind::ConflictingWrite { rank: b.0 },
                    ));
                }
            }
            for &(dst, start, end, _) in &writes {
                valid[dst].insert(start..end);
            }
        }
        for (rank, out) in self.outputs.iter().enumerate() {
            if !out.is_empty() && !valid[rank].contains(out.clone()) {
                return Err(shape(ScheduleErrorKind::OutputNotProduced { rank }));
            }
        }
        Ok(())
    }

    /// The operation this schedule implements.
    pub fn collective(&self) -> Collective {
        self.collective
    }

    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// Elements in every rank's working buffer.
    pub fn buffer_len(&self) -> usize {
        self.buffer_len
    }

    /// Per-rank input regions.
    pub fn inputs(&self) -> &[Range<usize>] {
        &self.inputs
    }

    /// Per-rank output regions.
    pub fn outputs(&self) -> &[Range<usize>] {
        &self.outputs
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Total elements sent over the network (local copies excluded).
    pub fn elements_sent(&self) -> usize {
        self.transfers()
            .filter(|t| t.src != t.dst)
            .fold(0usize, |a, t| a.saturating_add(t.len))
    }

    /// Every transfer of every step, in order.
    pub fn transfers(&self) -> impl Iterator<Item = &Transfer> {
        self.steps.iter().flat_map(|s| s.transfers.iter())
    }
}

/// A set of elements as sorted, disjoint, non-adjacent half-open ranges.
#[derive(Clone, Debug, Default)]
struct Intervals(Vec<Range<usize>>);

impl Intervals {
    fn from_range(r: Range<usize>) -> Self {
        let mut s = Intervals::default();
        s.insert(r);
        s
    }

    fn contains(&self, r: Range<usize>) -> bool {
        if r.is_empty() {
            return true;
        }
        // The last interval starting at or before r.start must cover r.
        let i = self.0.partition_point(|x| x.start <= r.start);
        i > 0 && self.0[i - 1].end >= r.end
    }

    fn insert(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        // Merge every interval that overlaps or touches r.
        let lo = self.0.partition_point(|x| x.end < r.start);
        let hi = self.0.partition_point(|x| x.start <= r.end);
        let mut merged = r;
        if lo < hi {
            merged.start = merged.start.min(self.0[lo].start);
            merged.end = merged.end.max(self.0[hi - 1].end);
        }
        self.0.splice(lo..hi, core::iter::once(merged));
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    fn t(src: usize, dst: usize, off: usize, len: usize, action: Action) -> Transfer {
        Transfer {
            src,
            dst,
            src_offset: off,
            dst_offset: off,
            len,
            action,
        }
    }

    fn build(steps: Vec<Vec<Transfer>>) -> Result<Schedule, ScheduleError> {
        // Two ranks, buffer 4, rank 0 holds 0..2 and rank 1 holds 2..4; both want 0..4.
        Schedule::new(
            Collective::AllGather,
            4,
            vec![0..2, 2..4],
            vec![0..4, 0..4],
            steps
                .into_iter()
                .map(|transfers| Step { transfers })
                .collect(),
        )
    }

    #[test]
    fn intervals_merge_and_cover() {
        let mut s = Intervals::default();
        s.insert(5..7);
        s.insert(0..2);
        s.insert(2..5);
        assert_eq!(s.0, vec![0..7]);
        s.insert(9..10);
        assert!(s.contains(1..7));
        assert!(!s.contains(6..10));
        assert!(s.contains(3..3));
    }

    #[test]
    fn valid_exchange_is_accepted() {
        let s = build(vec![vec![
            t(0, 1, 0, 2, Action::Copy),
            t(1, 0, 2, 2, Action::Copy),
        ]]);
        assert!(s.is_ok(), "{s:?}");
    }

    #[test]
    fn errors_name_step_and_transfer() {
        let ok = t(0, 1, 0, 2, Action::Copy);
        let cases = [
            (
                t(0, 2, 0, 2, Action::Copy),
                ScheduleErrorKind::RankOutOfRange,
            ),
            (
                t(0, 1, 3, 2, Action::Copy),
                ScheduleErrorKind::RangeOutOfBounds,
            ),
            (t(1, 0, 0, 2, Action::Copy), ScheduleErrorKind::ReadInvalid),
            (
                t(1, 0, 2, 0, Action::Copy),
                ScheduleErrorKind::EmptyTransfer,
            ),
            (
                t(1, 0, 1, 2, Action::Reduce),
                ScheduleErrorKind::ReadInvalid,
            ),
            (
                t(0, 1, 0, 1, Action::Reduce),
                ScheduleErrorKind::ReduceIntoInvalid,
            ),
        ];
        for (i, (bad, kind)) in cases.into_iter().enumerate() {
            let e = build(vec![vec![t(1, 0, 2, 2, Action::Copy)], vec![ok, bad]]).unwrap_err();
            assert_eq!(
                (e.step, e.transfer, e.kind),
                (Some(1), Some(1), kind),
                "case {i}"
            );
        }
    }

    #[test]
    fn two_writes_to_one_chunk_in_a_step_are_refused() {
        let e = build(vec![
            vec![t(0, 1, 0, 2, Action::Copy)],
            vec![t(1, 0, 2, 2, Action::Copy), t(1, 0, 3, 1, Action::Copy)],
        ])
        .unwrap_err();
        assert_eq!(e.kind, ScheduleErrorKind::ConflictingWrite { rank: 0 });
        assert_eq!((e.step, e.transfer), (Some(1), Some(1)));
    }

    #[test]
    fn missing_output_and_bad_regions_are_refused() {
        let e = build(vec![vec![t(0, 1, 0, 2, Action::Copy)]]).unwrap_err();
        assert_eq!(e.kind, ScheduleErrorKind::OutputNotProduced { rank: 0 });
        let e = Schedule::new(
            Collective::AllReduce,
            2,
            vec![0..3; 1],
            vec![0..2; 1],
            vec![],
        );
        assert_eq!(
            e.unwrap_err().kind,
            ScheduleErrorKind::RegionOutOfBounds { rank: 0 }
        );
        let e = Schedule::new(Collective::AllReduce, 2, vec![], vec![], vec![]);
        assert_eq!(e.unwrap_err().kind, ScheduleErrorKind::BadShape);
    }

    #[test]
    fn reading_pre_step_state_allows_swap() {
        // Rank 0 sends 0..2 to rank 1 while receiving rank 1's 0..2 in the same step.
        let s = Schedule::new(
            Collective::AllReduce,
            2,
            vec![0..2, 0..2],
            vec![0..2, 0..2],
            vec![Step {
                transfers: vec![t(0, 1, 0, 2, Action::Reduce), t(1, 0, 0, 2, Action::Reduce)],
            }],
        );
        assert!(s.is_ok());
    }
}
