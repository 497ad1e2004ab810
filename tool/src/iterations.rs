//! Iteration boundaries: when each repetition of the program's operation starts.
//!
//! Every rate in the report is "per iteration", so the boundaries are the x axis of the
//! whole analysis. They come from the marker uprobe (`Symbol`), from opens of a path
//! (`Path`), from the stream itself (`Auto`: the recurring opened path that best splits the
//! run into even repeats), or, when nothing recurs, from equal time windows.

use std::collections::HashMap;

use serde::Serialize;

use crate::ledger::Ledger;
use crate::ledger::records::Origin;
use crate::ledger::sites::SiteId;

/// Fewer repeats than this cannot make a period worth trusting.
pub const MIN_REPEATS: usize = 10;
/// How many windows the time fallback cuts the run into.
pub const TIME_WINDOWS: usize = 100;
/// The shortest time window worth judging a trend on.
pub const MIN_TIME_WINDOW_NS: u64 = 10_000_000;
/// Repeats at which an auto-detected period earns full confidence for its count alone.
const CONFIDENT_REPEATS: f64 = 30.0;

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IterationRequest {
    /// `--iteration-symbol`: the marker uprobe's hits.
    Symbol(String),
    /// `--iteration-path`: successful opens whose resolved path contains this.
    Path(String),
    Auto,
}

/// Where the boundaries came from (the JSON "iterations.source").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IterationSource {
    Symbol,
    Path,
    Auto,
    Time,
}

impl IterationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            IterationSource::Symbol => "symbol",
            IterationSource::Path => "path",
            IterationSource::Auto => "auto",
            IterationSource::Time => "time",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Iterations {
    /// Start times of the iterations, sorted. Iteration `k` runs from `boundaries[k]` to
    /// `boundaries[k+1]`.
    pub boundaries: Vec<u64>,
    pub source: IterationSource,
    /// One sentence on how the boundaries were found.
    pub detail: String,
    /// 0..=1: 1 for an explicit marker that fired often enough, lower for guesses.
    pub confidence: f64,
    /// The path auto-detection picked, if it did.
    pub auto_path: Option<String>,
    /// Share (0..=1) of the run's acquisitions that fall between the first and last
    /// boundary: how much of what the program did the iterations describe.
    pub coverage: Option<f64>,
    /// Other recurring paths that could mark the loop, best first, ready to paste as
    /// `--iteration-path` (auto detection only).
    pub candidates: Vec<MarkerCandidate>,
    /// Set when the boundaries are not good enough to judge on: every verdict is then
    /// inconclusive, with this reason.
    pub unconvincing: Option<String>,
}

/// A path that recurs often enough to be an iteration marker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MarkerCandidate {
    pub path: String,
    pub count: usize,
    /// How well it marks a steady loop, 0..=1 (the confidence it would get).
    pub score: f64,
}

impl Iterations {
    pub fn count(&self) -> usize {
        self.boundaries.len()
    }

    /// The iteration `t` falls in: -1 before the first boundary.
    pub fn index_at(&self, t: u64) -> i64 {
        self.boundaries.partition_point(|&b| b <= t) as i64 - 1
    }

    /// The last boundary: what is retained past it was retained across iterations, whatever
    /// teardown does afterwards.
    pub fn last(&self) -> Option<u64> {
        self.boundaries.last().copied()
    }

    pub fn first(&self) -> Option<u64> {
        self.boundaries.first().copied()
    }
}

pub fn detect(ledger: &Ledger, request: &IterationRequest) -> Iterations {
    match request {
        IterationRequest::Symbol(symbol) => {
            let mut boundaries = ledger.markers().to_vec();
            boundaries.sort_unstable();
            let n = boundaries.len();
            if n < 2 {
                return time_windows(ledger, format!("the marker `{symbol}` fired {n} time(s)"));
            }
            Iterations {
                boundaries,
                source: IterationSource::Symbol,
                detail: format!("{n} calls of `{symbol}`"),
                confidence: repeat_confidence(n),
                auto_path: None,
                coverage: None,
                candidates: Vec::new(),
                unconvincing: None,
            }
        }
        IterationRequest::Path(needle) => {
            let mut boundaries: Vec<u64> = ledger
                .opened_paths()
                .iter()
                .filter(|open| ledger.sites().name(open.path).contains(needle.as_str()))
                .map(|open| open.time_ns)
                .collect();
            boundaries.sort_unstable();
            let n = boundaries.len();
            if n < 2 {
                return time_windows(
                    ledger,
                    format!("paths containing \"{needle}\" were opened {n} time(s)"),
                );
            }
            Iterations {
                boundaries,
                source: IterationSource::Path,
                detail: format!("{n} opens of paths containing \"{needle}\""),
                confidence: repeat_confidence(n),
                auto_path: None,
                coverage: None,
                candidates: Vec::new(),
                unconvincing: None,
            }
        }
        IterationRequest::Auto => auto_detect(ledger),
    }
}

/// An explicit source is fully trusted once it repeats enough to fit a trend.
fn repeat_confidence(n: usize) -> f64 {
    if n >= MIN_REPEATS {
        1.0
    } else {
        n as f64 / MIN_REPEATS as f64
    }
}

/// How well one recurring path's opens mark a period.
#[derive(Clone, Debug, PartialEq)]
struct Candidate {
    path: SiteId,
    times: Vec<u64>,
    score: f64,
    rank: f64,
    gap_variation: f64,
}

/// Score = coverage^(1/3) × regularity × repeats, each in 0..=1:
/// - coverage: the opens span the life of the processes that made them (not a burst at
///   start-up). Measured against those processes, not the whole run, so a loop behind a
///   long set-up (a shell shim, an interpreter's start-up, other processes) still counts;
///   and weighted by its cube root, because a loop is often a small part of a run;
/// - regularity: 1 / (1 + coefficient of variation of the gaps), so a path opened once per
///   iteration beats one opened twice at uneven points of each iteration;
/// - repeats: more repeats, up to [`CONFIDENT_REPEATS`], give a better-founded trend.
///
/// Returns (score, rank, gap variation). The score is the reported confidence; candidates
/// are ranked by score × n / (n + [`CONFIDENT_REPEATS`]), so that past the confident
/// number, more repeats still count as more evidence (a path opened 1000 times in a loop
/// beats one opened 40 times by 40 short-lived helper processes).
fn score(times: &[u64], lifetime: (u64, u64)) -> (f64, f64, f64) {
    let lifetime_len = (lifetime.1 - lifetime.0).max(1) as f64;
    let coverage = ((times[times.len() - 1] - times[0]) as f64 / lifetime_len).min(1.0);
    let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    let variation = if mean > 0.0 {
        variance.sqrt() / mean
    } else {
        f64::INFINITY
    };
    let regularity = 1.0 / (1.0 + variation);
    let n = times.len() as f64;
    let score = coverage.cbrt() * regularity * (n / CONFIDENT_REPEATS).min(1.0);
    (score, score * n / (n + CONFIDENT_REPEATS), variation)
}

fn auto_detect(ledger: &Ledger) -> Iterations {
    let Some(run) = ledger.span() else {
        return time_windows(ledger, "nothing was traced".into());
    };
    let mut by_path: HashMap<SiteId, (Vec<u64>, (u64, u64))> = HashMap::new();
    for open in ledger.opened_paths() {
        let opener = ledger.process_span(open.tgid).unwrap_or(run);
        let (times, lifetime) = by_path.entry(open.path).or_insert((Vec::new(), opener));
        times.push(open.time_ns);
        *lifetime = (lifetime.0.min(opener.0), lifetime.1.max(opener.1));
    }
    let mut candidates: Vec<Candidate> = by_path
        .into_iter()
        .filter(|(_, (times, _))| times.len() >= MIN_REPEATS)
        .map(|(path, (mut times, lifetime))| {
            times.sort_unstable();
            let (score, rank, gap_variation) = score(&times, lifetime);
            Candidate {
                path,
                times,
                score,
                rank,
                gap_variation,
            }
        })
        .collect();
    let Some(best_rank) = candidates.iter().map(|c| c.rank).reduce(f64::max) else {
        return time_windows(
            ledger,
            format!("no opened path recurred {MIN_REPEATS} times or more"),
        );
    };
    // Paths opened together once per iteration score alike; the one opened first in the
    // iteration marks its start best.
    candidates.retain(|c| c.rank >= best_rank * 0.99);
    candidates.sort_by_key(|c| (c.times[0], c.path));
    let chosen = candidates.swap_remove(0);
    let path = ledger.sites().name(chosen.path).to_string();
    Iterations {
        detail: format!(
            "auto: \"{path}\" opened {} times, gap variation {:.2}",
            chosen.times.len(),
            chosen.gap_variation
        ),
        boundaries: chosen.times,
        source: IterationSource::Auto,
        confidence: chosen.score,
        auto_path: Some(path),
        coverage: None,
        candidates: Vec::new(),
        unconvincing: None,
    }
}

/// [`TIME_WINDOWS`] equal windows. They end at the last acquisition, not the last event:
/// a teardown that only releases would otherwise look like the program shrinking.
fn time_windows(ledger: &Ledger, why: String) -> Iterations {
    let Some((start, end)) = ledger.span() else {
        return Iterations {
            boundaries: Vec::new(),
            source: IterationSource::Time,
            detail: format!("{why}; no events"),
            confidence: 0.0,
            auto_path: None,
            coverage: None,
            candidates: Vec::new(),
            unconvincing: None,
        };
    };
    let acquired = |records: &crate::ledger::records::Records| {
        records
            .all()
            .iter()
            .filter(|r| r.origin == Origin::Acquired)
            .map(|r| r.born_ns)
            .max()
    };
    let last_acquisition = [
        acquired(ledger.fd_records()),
        acquired(ledger.map_records()),
        ledger
            .heap_byte_changes()
            .iter()
            .filter(|c| c.bytes > 0)
            .map(|c| c.time_ns)
            .max(),
    ]
    .into_iter()
    .flatten()
    .max()
    .filter(|&t| t > start)
    .unwrap_or(end);
    let span = last_acquisition - start;
    // Windows shorter than MIN_TIME_WINDOW_NS cut one start-up burst (a dynamic loader
    // mapping libraries) into slices that look like steady growth. A run too short for
    // enough windows gets fewer, and then too few to judge: inconclusive, not a false leak.
    let windows = ((span / MIN_TIME_WINDOW_NS) as usize).clamp(1, TIME_WINDOWS - 1) + 1;
    let boundaries: Vec<u64> = if span == 0 {
        vec![start]
    } else {
        let step = span as f64 / (windows - 1) as f64;
        (0..windows)
            .map(|k| start + (k as f64 * step).round() as u64)
            .collect()
    };
    Iterations {
        detail: format!(
            "{why}; {} time windows of {:.1} ms instead",
            boundaries.len(),
            span as f64 / (boundaries.len().max(2) - 1) as f64 / 1e6
        ),
        boundaries,
        source: IterationSource::Time,
        confidence: 0.0,
        auto_path: None,
        coverage: None,
        candidates: Vec::new(),
        unconvincing: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::What;
    use crate::ledger::test_support::{Stream, call};
    use leakscope_common::syscalls::{CLOSE, OPENAT};

    fn open_call(path: &str, fd: i64) -> crate::event::Syscall {
        call(OPENAT, fd, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path(path)
    }

    fn close_call(fd: u64) -> crate::event::Syscall {
        call(CLOSE, 0, [fd, 0, 0, 0, 0, 0])
    }

    fn looped(iterations: usize) -> Stream {
        let mut s = Stream::new(1);
        s.open("/usr/lib/libc.so.6", 3).close(3);
        for _ in 0..iterations {
            s.marker();
            s.open("/etc/config", 3).close(3); // twice per iteration, unevenly
            s.open("/tmp/work/a.txt", 3).close(3);
            s.open("/tmp/work/b.txt", 3).close(3);
            s.now += 50_000;
            s.open("/etc/config", 3).close(3);
        }
        s
    }

    #[test]
    fn symbol_uses_markers() {
        let ledger = looped(20).ledger();
        let iterations = detect(&ledger, &IterationRequest::Symbol("tick".into()));
        assert_eq!(
            (iterations.source, iterations.count(), iterations.confidence),
            (IterationSource::Symbol, 20, 1.0)
        );
        assert_eq!(iterations.index_at(iterations.boundaries[3] + 1), 3);
        assert_eq!(iterations.index_at(0), -1);
    }

    #[test]
    fn path_matches_resolved_substrings() {
        let ledger = looped(20).ledger();
        let iterations = detect(&ledger, &IterationRequest::Path("work/b".into()));
        assert_eq!(
            (iterations.source, iterations.count()),
            (IterationSource::Path, 20)
        );
    }

    #[test]
    fn auto_picks_the_first_evenly_recurring_path() {
        let ledger = looped(50).ledger();
        let iterations = detect(&ledger, &IterationRequest::Auto);
        assert_eq!(iterations.source, IterationSource::Auto);
        assert_eq!(iterations.auto_path.as_deref(), Some("/tmp/work/a.txt"));
        assert_eq!(iterations.count(), 50);
        assert!(iterations.confidence > 0.8, "{}", iterations.confidence);
        assert!(iterations.detail.contains("a.txt"));
    }

    #[test]
    fn auto_prefers_a_long_loop_behind_a_set_up_of_many_short_processes() {
        // 40 short-lived helper processes (a shell shim, say) each open one config file,
        // evenly over a long set-up; then one process runs the real loop, briefly.
        let mut s = Stream::new(1);
        for helper in 0..40u32 {
            s.push(
                100 + helper,
                100 + helper,
                What::Syscall(open_call("/etc/shim.conf", 3)),
                None,
            );
            s.push(100 + helper, 100 + helper, What::Exit, None);
            s.now += 1_000_000;
        }
        for _ in 0..1000 {
            s.push(2, 2, What::Syscall(open_call("/tmp/work/tick", 3)), None);
            s.push(2, 2, What::Syscall(close_call(3)), None);
        }
        let iterations = detect(&s.ledger(), &IterationRequest::Auto);
        assert_eq!(
            iterations.auto_path.as_deref(),
            Some("/tmp/work/tick"),
            "{}",
            iterations.detail
        );
        assert_eq!(iterations.count(), 1000);
    }

    #[test]
    fn missing_marker_falls_back_to_time_windows() {
        let mut s = Stream::new(1);
        for i in 0..30 {
            s.now += 100_000_000; // a run of 3 s: long enough for every window
            s.open("/tmp/unique", 3 + i);
        }
        s.exit();
        let ledger = s.ledger();
        let iterations = detect(&ledger, &IterationRequest::Symbol("never".into()));
        assert_eq!(
            (iterations.source, iterations.count()),
            (IterationSource::Time, TIME_WINDOWS)
        );
        assert!(iterations.detail.contains("fired 0 time"));
        // The windows end at the last acquisition, before the exit.
        assert!(iterations.last().unwrap() < s.events.last().unwrap().time_ns);
        assert_eq!(iterations.confidence, 0.0);
    }

    #[test]
    fn a_start_up_burst_is_not_cut_into_meaningless_windows() {
        // A program that maps its libraries in 1 ms and exits: 10 µs windows would make
        // that burst look like steady growth.
        let mut s = Stream::new(1);
        for i in 0..200u64 {
            s.mmap_anon(0x7000_0000 + i * 0x10_0000, 65536);
        }
        s.exit();
        let iterations = detect(&s.ledger(), &IterationRequest::Auto);
        assert_eq!(iterations.source, IterationSource::Time);
        assert!(iterations.count() < 10, "{}", iterations.detail);
    }

    #[test]
    fn auto_without_recurring_paths_uses_time() {
        let mut s = Stream::new(1);
        for i in 0..5 {
            s.open(&format!("/tmp/{i}"), 3).close(3);
        }
        let iterations = detect(&s.ledger(), &IterationRequest::Auto);
        assert_eq!(iterations.source, IterationSource::Time);
        assert_eq!(
            detect(&crate::ledger::Ledger::new(), &IterationRequest::Auto).count(),
            0
        );
    }
}
