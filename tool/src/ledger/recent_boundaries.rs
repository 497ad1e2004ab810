//! The latest real iteration boundaries, every one of them, for lifetimes in iterations.
//!
//! At a stride above 1 the judged boundaries are every stride-th iteration's, which is
//! enough to fit a trend but not to say that a file lived 1 iteration: counted in strides,
//! a one-iteration lifetime reads 0 or one whole stride. Most released resources lived a
//! few iterations and were released recently when their lifetime is counted (the ledger
//! folds what the last boundaries settled), so the last [`EXACT_RECENT`] real boundaries
//! are kept too, and a lifetime whose both ends fall among them is counted exactly. Only
//! one that began before them is counted at the stride. 64 Ki boundaries are 512 KiB, and
//! cover the folding's 50 ms of settling even at a million iterations a second.

use std::collections::VecDeque;

/// Real boundaries kept exactly.
pub(crate) const EXACT_RECENT: usize = 1 << 16;

/// The latest real boundaries, sorted, and the real index of the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recent {
    times: VecDeque<u64>,
    /// Real boundaries before `times[0]`.
    first: usize,
}

impl Recent {
    /// The last [`EXACT_RECENT`] of every boundary of a run, sorted.
    pub(crate) fn from_sorted(all: &[u64]) -> Recent {
        let first = all.len().saturating_sub(EXACT_RECENT);
        Recent {
            times: all[first..].iter().copied().collect(),
            first,
        }
    }

    /// One more real boundary. One from another CPU may arrive a little late: it goes
    /// where its time puts it.
    pub(crate) fn push(&mut self, t: u64) {
        if self.times.back().is_none_or(|&last| last <= t) {
            self.times.push_back(t);
        } else {
            let at = self.times.partition_point(|&b| b <= t);
            self.times.insert(at, t);
        }
        if self.times.len() > EXACT_RECENT {
            self.times.pop_front();
            self.first += 1;
        }
    }

    /// The real iteration `t` falls in (-1 before the first boundary), when the kept
    /// boundaries reach back to it.
    pub(crate) fn iteration_at(&self, t: u64) -> Option<i64> {
        match self.times.front() {
            Some(&front) if t < front => (self.first == 0).then_some(-1),
            _ => Some((self.first + self.times.partition_point(|&b| b <= t)) as i64 - 1),
        }
    }

    /// Boundaries crossed from `from` to `to`, exactly, when both are recent enough.
    pub(crate) fn crossed(&self, from: u64, to: u64) -> Option<u64> {
        let crossed = self.iteration_at(to)? - self.iteration_at(from)?;
        Some(crossed.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(all: &[u64], t: u64) -> i64 {
        all.partition_point(|&b| b <= t) as i64 - 1
    }

    #[test]
    fn recent_iterations_are_exact_and_older_ones_are_not_guessed() {
        let all: Vec<u64> = (0..(EXACT_RECENT as u64 + 1000))
            .map(|i| 10 + 10 * i)
            .collect();
        let mut pushed = Recent::default();
        for &t in &all {
            pushed.push(t);
        }
        let at_once = Recent::from_sorted(&all);
        assert_eq!(pushed, at_once);
        let oldest = all[1000];
        for t in [
            oldest,
            oldest + 5,
            all[40_000] + 3,
            *all.last().unwrap() + 99,
        ] {
            assert_eq!(pushed.iteration_at(t), Some(exact(&all, t)), "{t}");
        }
        assert_eq!(pushed.iteration_at(oldest - 1), None);
        assert_eq!(pushed.iteration_at(0), None);
        assert_eq!(
            pushed.crossed(all[20_000] + 1, all[20_003] + 1),
            Some(3),
            "a lifetime of three iterations"
        );
        assert_eq!(pushed.crossed(all[10], all[20_003]), None);
    }

    #[test]
    fn before_the_first_boundary_is_minus_one_while_nothing_was_dropped() {
        let mut recent = Recent::default();
        assert_eq!(recent.iteration_at(5), Some(-1));
        recent.push(100);
        recent.push(90); // arrived late
        assert_eq!(recent.iteration_at(50), Some(-1));
        assert_eq!(recent.iteration_at(95), Some(0));
        assert_eq!(recent.iteration_at(100), Some(1));
    }
}
