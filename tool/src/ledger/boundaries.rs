//! Iteration boundaries at a bounded resolution.
//!
//! A run of millions of iterations must not keep a boundary (and an entry in each
//! difference series) per iteration. So at most `2 × max` boundaries are kept: every
//! `stride`-th real boundary, the 0th, the stride-th, the 2·stride-th, ... When keeping one
//! more would reach `2 × max`, every second kept boundary is dropped and the stride
//! doubles (the difference series merge their entries in pairs to match, see
//! [`merge_pairs`]). The kept boundaries are real ones, so what is live at a kept boundary
//! is exactly what was live at that iteration; the last real boundary is kept apart (what
//! is live at it is what "live at the end" and "retained across iterations" mean), and so
//! is the real count.
//!
//! The same rule decimates a whole list at once ([`decimate`]) for the sources that are not
//! streamed (a marker run that does not fold, automatic detection, time windows), so an
//! analysis of the same boundaries sees the same points either way.

use super::recent_boundaries::Recent;

/// The default bound: at most twice this many boundaries are kept.
pub(crate) const MAX_BOUNDARIES: usize = 4096;

/// Overrides [`MAX_BOUNDARIES`] (read once when tracing starts): tests reach strides > 1
/// in a few thousand iterations with it.
pub(crate) const MAX_BOUNDARIES_ENV: &str = "LEAKSCOPE_MAX_BOUNDARIES";

/// The smallest bound that still leaves a trend to fit.
const MIN_MAX_BOUNDARIES: usize = 16;

/// `LEAKSCOPE_MAX_BOUNDARIES` when set to a number, else [`MAX_BOUNDARIES`].
pub(crate) fn max_from_env() -> usize {
    std::env::var(MAX_BOUNDARIES_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(MAX_BOUNDARIES, |max| max.max(MIN_MAX_BOUNDARIES))
}

/// The stride the rule above reaches for `count` boundaries: the smallest power of two
/// that keeps fewer than `2 × max` of them.
pub(crate) fn stride_for(count: usize, max: usize) -> u64 {
    let mut stride = 1u64;
    while count.div_ceil(stride as usize) >= 2 * max {
        stride *= 2;
    }
    stride
}

/// Boundaries at a bounded resolution: the points an analysis judges on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sampled {
    /// The kept boundaries, sorted, then the last real boundary if it is not one of them.
    pub(crate) points: Vec<u64>,
    /// Real iterations between two kept boundaries (1: every boundary is kept).
    pub(crate) stride: u64,
    /// Real boundaries.
    pub(crate) count: usize,
    /// The latest real boundaries, every one, when the stride is above 1: lifetimes in
    /// iterations are counted on them ([`Recent`]).
    pub(crate) recent: Option<Recent>,
}

impl Sampled {
    /// Every boundary of `sorted`, at stride 1 (not yet decimated).
    pub(crate) fn every(sorted: Vec<u64>) -> Sampled {
        Sampled {
            count: sorted.len(),
            points: sorted,
            stride: 1,
            recent: None,
        }
    }
}

/// Decimates a sorted list of every boundary as [`Kept`] would have kept them.
pub(crate) fn decimate(sorted: Vec<u64>, max: usize) -> Sampled {
    let count = sorted.len();
    let stride = stride_for(count, max);
    if stride == 1 {
        return Sampled::every(sorted);
    }
    let recent = Some(Recent::from_sorted(&sorted));
    let last = sorted.last().copied();
    let mut points: Vec<u64> = sorted.into_iter().step_by(stride as usize).collect();
    if let Some(last) = last
        && points.last() != Some(&last)
    {
        points.push(last);
    }
    Sampled {
        points,
        stride,
        count,
        recent,
    }
}

/// Boundaries kept as they arrive.
#[derive(Clone, Debug)]
pub(crate) struct Kept {
    /// Every stride-th boundary in arrival order; sorted up to `sorted`.
    kept: Vec<u64>,
    sorted: usize,
    stride: u64,
    /// Real boundaries seen.
    count: usize,
    /// The latest real boundary.
    last: Option<u64>,
    max: usize,
    /// The latest real boundaries, every one.
    recent: Recent,
}

impl Default for Kept {
    fn default() -> Self {
        Kept::new(MAX_BOUNDARIES)
    }
}

/// What keeping one more boundary did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kept1 {
    /// Nothing else changed.
    Added,
    /// The stride doubled: every difference series indexed by kept boundaries must merge
    /// its entries in pairs ([`merge_pairs`]).
    Halved,
}

impl Kept {
    pub(crate) fn new(max: usize) -> Self {
        Kept {
            kept: Vec::new(),
            sorted: 0,
            stride: 1,
            count: 0,
            last: None,
            max: max.max(1),
            recent: Recent::default(),
        }
    }

    /// The bound: at most twice this many are kept.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Real boundaries seen.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The latest real boundary.
    pub(crate) fn last(&self) -> Option<u64> {
        self.last
    }

    pub(crate) fn stride(&self) -> u64 {
        self.stride
    }

    /// The latest real boundaries, every one.
    pub(crate) fn recent(&self) -> &Recent {
        &self.recent
    }

    /// One more real boundary, at `t`. Boundaries of different CPUs may arrive a little out
    /// of order; whichever arrives stride-th is kept, and it is a real boundary all the same.
    pub(crate) fn push(&mut self, t: u64) -> Kept1 {
        if (self.count as u64).is_multiple_of(self.stride) {
            self.kept.push(t);
        }
        self.count += 1;
        self.recent.push(t);
        self.last = Some(self.last.map_or(t, |last| last.max(t)));
        if self.kept.len() < 2 * self.max {
            return Kept1::Added;
        }
        self.sort();
        let mut at = 0;
        self.kept.retain(|_| {
            at += 1;
            at % 2 == 1
        });
        self.sorted = self.kept.len();
        self.stride *= 2;
        Kept1::Halved
    }

    /// The kept boundaries, sorted (new ones almost always come after the old ones, so
    /// this does not touch the whole list).
    pub(crate) fn sorted(&mut self) -> &[u64] {
        self.sort();
        &self.kept
    }

    /// The kept boundaries, sorted by [`Kept::sorted`] since the last push.
    pub(crate) fn sorted_view(&self) -> &[u64] {
        debug_assert_eq!(self.sorted, self.kept.len());
        &self.kept
    }

    fn sort(&mut self) {
        let at = self.sorted.min(self.kept.len());
        let (old, new) = self.kept.split_at_mut(at);
        new.sort_unstable();
        if let (Some(&last_old), Some(&first_new)) = (old.last(), new.first())
            && first_new < last_old
        {
            self.kept.sort_unstable(); // one arrived late: rare
        }
        self.sorted = self.kept.len();
    }

    /// The points to judge on: the kept boundaries, then the last real one.
    pub(crate) fn sampled(&self) -> Sampled {
        let mut points = self.kept.clone();
        points.sort_unstable();
        if let Some(last) = self.last
            && points.last() != Some(&last)
        {
            points.push(last);
        }
        Sampled {
            points,
            stride: self.stride,
            count: self.count,
            recent: (self.stride > 1).then(|| self.recent.clone()),
        }
    }

    /// Memory kept, in boundaries (tests).
    #[cfg(test)]
    pub(crate) fn kept_len(&self) -> usize {
        self.kept.len()
    }
}

/// Merges a difference series indexed by kept boundaries after the stride doubled: the
/// change that showed at old kept boundary `i` shows at new kept boundary `ceil(i / 2)`
/// (the first one at or after it), so live at each new kept boundary is what it was.
pub(crate) fn merge_pairs(differences: &mut Vec<i64>) {
    if differences.is_empty() {
        return;
    }
    let merged: Vec<i64> = (0..=differences.len() / 2)
        .map(|j| {
            let at = |i: usize| differences.get(i).copied().unwrap_or(0);
            if j == 0 {
                at(0)
            } else {
                at(2 * j - 1) + at(2 * j)
            }
        })
        .collect();
    *differences = merged;
}

#[cfg(test)]
#[path = "resolution_tests.rs"]
mod resolution_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::records::totals;

    #[test]
    fn kept_as_they_come_equals_decimated_at_once() {
        for max in [16, 20, 33] {
            for n in [0, 1, 5, 31, 32, 33, 64, 100, 1000, 5000] {
                let all: Vec<u64> = (0..n as u64).map(|i| 1000 + 7 * i).collect();
                let mut kept = Kept::new(max);
                for &t in &all {
                    kept.push(t);
                    assert!(kept.kept_len() < 2 * max);
                }
                let at_once = decimate(all.clone(), max);
                assert_eq!(kept.sampled(), at_once, "max {max} n {n}");
                assert_eq!(at_once.count, n);
                assert_eq!(at_once.points.last(), all.last());
                assert_eq!(at_once.points.first(), all.first());
                // Every point is a real boundary, stride apart but the last.
                let s = at_once.stride as usize;
                for (k, p) in at_once.points.iter().enumerate() {
                    let real = (k * s).min(n - 1);
                    assert_eq!(*p, all[real]);
                }
            }
        }
    }

    #[test]
    fn merged_differences_keep_the_totals_at_kept_boundaries() {
        // Changes at real boundary indexes; totals at kept ones must be exact.
        let changes: Vec<(usize, i64)> = (0..400)
            .map(|i| (i * 7 % 301, (i % 5) as i64 - 2))
            .collect();
        let exact = |b: usize| -> i64 {
            changes
                .iter()
                .filter(|&&(at, _)| at <= b)
                .map(|&(_, d)| d)
                .sum()
        };
        let mut stride = 1usize;
        let mut diffs = Vec::new();
        for &(at, d) in &changes {
            crate::ledger::records::add_from(&mut diffs, at, d);
        }
        for _ in 0..5 {
            merge_pairs(&mut diffs);
            stride *= 2;
            let got: Vec<i64> = totals(&diffs, 301usize.div_ceil(stride) + 1).collect();
            for (k, total) in got.iter().enumerate() {
                assert_eq!(*total, exact(k * stride), "stride {stride} point {k}");
            }
        }
    }
}
