//! When the next live view is due. Ticks are checked after each drain poll (every ~10 ms),
//! so a tick is late by at most a poll; ticks missed while an analysis was still running
//! are skipped, not queued: the view catches up with one fresh analysis, never a backlog.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Ticker {
    interval: Duration,
    next: Instant,
    /// Ticks that came due while the previous analysis was still running.
    skipped: u64,
}

/// What to do at a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    NotYet,
    /// Take a view now.
    Due,
}

impl Ticker {
    /// The first tick comes one interval after `start`.
    pub(crate) fn new(interval: Duration, start: Instant) -> Self {
        Ticker {
            interval,
            next: start + interval,
            skipped: 0,
        }
    }

    /// Whether a view is due at `now`. `busy`: the previous analysis has not finished, so
    /// a due tick is skipped (and counted). The next tick stays on the grid of whole
    /// intervals from the start, past `now`.
    pub(crate) fn poll(&mut self, now: Instant, busy: bool) -> Tick {
        if now < self.next {
            return Tick::NotYet;
        }
        let behind = now.duration_since(self.next).as_nanos() / self.interval.as_nanos().max(1);
        self.next += self.interval * (behind as u32 + 1);
        // Intervals that passed entirely without a view.
        self.skipped += behind as u64;
        if busy {
            self.skipped += 1;
            Tick::NotYet
        } else {
            Tick::Due
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Ticks skipped so far because an analysis was still running or the loop was late.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_tick_comes_each_interval_and_not_before() {
        let start = Instant::now();
        let mut ticker = Ticker::new(SEC, start);
        assert_eq!(ticker.poll(start, false), Tick::NotYet);
        assert_eq!(ticker.poll(start + SEC / 2, false), Tick::NotYet);
        assert_eq!(ticker.poll(start + SEC, false), Tick::Due);
        assert_eq!(ticker.poll(start + SEC + SEC / 100, false), Tick::NotYet);
        // A poll that is late by a few ms does not shift the grid.
        assert_eq!(ticker.poll(start + 2 * SEC + SEC / 50, false), Tick::Due);
        assert_eq!(
            ticker.poll(start + 3 * SEC - SEC / 100, false),
            Tick::NotYet
        );
        assert_eq!(ticker.poll(start + 3 * SEC, false), Tick::Due);
        assert_eq!(ticker.skipped(), 0);
    }

    #[test]
    fn a_tick_while_the_analysis_runs_is_skipped_not_queued() {
        let start = Instant::now();
        let mut ticker = Ticker::new(SEC, start);
        assert_eq!(ticker.poll(start + SEC, true), Tick::NotYet);
        assert_eq!(ticker.skipped(), 1);
        // Free again, but the skipped tick is not made up for: the next is on the grid.
        assert_eq!(ticker.poll(start + SEC + SEC / 2, false), Tick::NotYet);
        assert_eq!(ticker.poll(start + 2 * SEC, false), Tick::Due);
    }

    #[test]
    fn intervals_that_passed_without_a_poll_are_counted_and_one_view_catches_up() {
        let start = Instant::now();
        let mut ticker = Ticker::new(SEC, start);
        // The loop was away for 3.5 intervals: one view now, two whole intervals missed.
        assert_eq!(ticker.poll(start + 3 * SEC + SEC / 2, false), Tick::Due);
        assert_eq!(ticker.skipped(), 2);
        assert_eq!(
            ticker.poll(start + 3 * SEC + SEC * 3 / 4, false),
            Tick::NotYet
        );
        assert_eq!(ticker.poll(start + 4 * SEC, false), Tick::Due);
    }
}
