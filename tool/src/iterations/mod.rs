//! Iteration boundaries: when each repetition of the program's operation starts.
//!
//! Every rate in the report is "per iteration", so the boundaries are the x axis of the
//! whole analysis. They come from the marker uprobe (`Symbol`), from opens of a path
//! (`Path`), from the stream itself (`Auto`: the recurring opened path that best splits the
//! work of the run into even repeats, see [`auto`]), or, when nothing recurs, from equal
//! time windows. When paths recur but none marks the loop convincingly, the iterations are
//! time windows too, and `unconvincing` makes every verdict inconclusive.

mod auto;
pub(crate) mod early;
pub(crate) mod work;

use serde::Serialize;

use crate::ledger::Ledger;
use crate::ledger::boundaries::{Sampled, decimate};
use crate::ledger::loop_runs::{LoopRun, LoopRuns};
use crate::ledger::recent_boundaries::Recent;
use crate::ledger::records::Origin;
use crate::ledger::streaming::BoundarySource;

/// Fewer repeats than this cannot make a period worth trusting.
pub(crate) const MIN_REPEATS: usize = 10;
/// How many windows the time fallback cuts the run into.
pub(crate) const TIME_WINDOWS: usize = 100;
/// The shortest time window worth judging a trend on.
pub(crate) const MIN_TIME_WINDOW_NS: u64 = 10_000_000;

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IterationRequest {
    /// `--iteration-symbol`: the marker uprobe's hits.
    Symbol(String),
    /// `--iteration-path`: successful opens whose resolved path contains this.
    Path(String),
    Auto,
}

/// Where the boundaries came from (the JSON "iterations.source").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum IterationSource {
    Symbol,
    Path,
    Auto,
    Time,
}

impl IterationSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            IterationSource::Symbol => "symbol",
            IterationSource::Path => "path",
            IterationSource::Auto => "auto",
            IterationSource::Time => "time",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Iterations {
    /// The boundaries judged on, sorted: the start of every `stride`-th iteration (the
    /// 0th, the stride-th, ...), then the last one if it is not among them (see
    /// [`crate::ledger::boundaries`]). With stride 1, iteration `k` runs from
    /// `boundaries[k]` to `boundaries[k+1]`.
    pub(crate) boundaries: Vec<u64>,
    /// Iterations between two judged boundaries: 1 unless the run had more than twice the
    /// bound on kept boundaries.
    pub(crate) stride: u64,
    /// Iterations (boundaries) in all.
    pub(crate) total: usize,
    /// At a stride above 1, the latest real boundaries, every one: lifetimes in iterations
    /// that fall among them are counted exactly.
    pub(crate) recent: Option<Recent>,
    pub(crate) source: IterationSource,
    /// One sentence on how the boundaries were found.
    pub(crate) detail: String,
    /// 0..=1: 1 for an explicit marker that fired often enough, lower for guesses.
    pub(crate) confidence: f64,
    /// The path auto-detection picked, if it did.
    pub(crate) auto_path: Option<String>,
    /// Share (0..=1) of the run's acquisitions (fds and mappings acquired, heap growths)
    /// from the first boundary to the end of the last iteration (one typical iteration past
    /// its start): how much of what the program did the iterations describe.
    pub(crate) coverage: Option<f64>,
    /// Recurring paths that could mark the loop, best first (up to 5; the chosen one among
    /// them; paths opened in lockstep named once), ready to paste as `--iteration-path`
    /// (auto detection only).
    pub(crate) candidates: Vec<MarkerCandidate>,
    /// Set when the boundaries are not good enough to judge on: every verdict is then
    /// inconclusive, with this reason.
    pub(crate) unconvincing: Option<String>,
    /// Set when automatic detection chose its rule while tracing, from this many events
    /// (see [`early`]).
    pub(crate) chosen_from_events: Option<u64>,
    /// The processes whose markers (or marking opens) made the boundaries, each with when
    /// it marked: empty for time windows and a loop detected in one process.
    pub(crate) loops: Vec<LoopRun>,
}

/// A path that recurs often enough to be an iteration marker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct MarkerCandidate {
    pub(crate) path: String,
    pub(crate) count: usize,
    /// How well it marks a steady loop, 0..=1 (the confidence it would get).
    pub(crate) score: f64,
}

impl Iterations {
    /// Iterations in all (boundaries, not only those judged on).
    pub(crate) fn count(&self) -> usize {
        self.total
    }

    /// The judged boundary `t` falls after: -1 before the first boundary. It indexes
    /// series sampled at [`Iterations::boundaries`]; [`Iterations::iteration_at`] is the
    /// iteration.
    pub(crate) fn index_at(&self, t: u64) -> i64 {
        self.boundaries.partition_point(|&b| b <= t) as i64 - 1
    }

    /// The iteration of judged boundary `point` (exact at stride 1; the first iteration
    /// of its stride otherwise).
    pub(crate) fn iteration_of(&self, point: usize) -> usize {
        (point as u64 * self.stride).min(self.total.saturating_sub(1) as u64) as usize
    }

    /// The iteration `t` falls in: -1 before the first boundary. At stride > 1, an
    /// estimate: the judged boundaries around `t` are real ones, and the iterations between
    /// them are taken to be evenly paced (exact at stride 1).
    pub(crate) fn iteration_at(&self, t: u64) -> i64 {
        let Ok(point) = usize::try_from(self.index_at(t)) else {
            return -1;
        };
        let from = self.iteration_of(point);
        let Some(&next) = self.boundaries.get(point + 1) else {
            return from as i64;
        };
        let (start, to) = (self.boundaries[point], self.iteration_of(point + 1));
        let share = (t - start) as f64 / (next - start).max(1) as f64;
        let within = ((to - from) as f64 * share) as usize;
        (from + within.min((to - from).saturating_sub(1))) as i64
    }

    /// The first iteration of the stride `t` falls in (-1 before the first boundary):
    /// what lifetimes in iterations count from, as the ledger counts those it folds.
    pub(crate) fn stride_start_at(&self, t: u64) -> i64 {
        match usize::try_from(self.index_at(t)) {
            Ok(point) => self.iteration_of(point) as i64,
            Err(_) => -1,
        }
    }

    /// Iterations crossed from `from` to `to`: exact at stride 1, and above it when both
    /// fall among the recent boundaries; otherwise counted from the first iteration of the
    /// stride each falls in, as the ledger counts what it folds.
    pub(crate) fn crossed(&self, from: u64, to: u64) -> u64 {
        if let Some(exact) = self.recent.as_ref().and_then(|r| r.crossed(from, to)) {
            return exact;
        }
        (self.stride_start_at(to) - self.stride_start_at(from)).max(0) as u64
    }

    /// Keeps every boundary's share of the bound: decimates to at most `2 × max` judged
    /// boundaries as the ledger keeps streamed ones.
    fn decimated(mut self, max: usize) -> Self {
        if self.stride == 1 {
            let Sampled {
                points,
                stride,
                count,
                recent,
            } = decimate(std::mem::take(&mut self.boundaries), max);
            self.boundaries = points;
            self.stride = stride;
            self.total = count;
            self.recent = recent;
        }
        self
    }

    /// The last boundary: what is retained past it was retained across iterations, whatever
    /// teardown does afterwards.
    pub(crate) fn last(&self) -> Option<u64> {
        self.boundaries.last().copied()
    }

    pub(crate) fn first(&self) -> Option<u64> {
        self.boundaries.first().copied()
    }
}

/// The boundaries for `request`, with their coverage of the run's acquisitions.
pub(crate) fn detect(ledger: &Ledger, request: &IterationRequest) -> Iterations {
    let mut iterations = boundaries(ledger, request).decimated(ledger.max_boundaries());
    if iterations.coverage.is_none() {
        iterations.coverage = work::coverage(
            &work::Work::new(ledger),
            &iterations.boundaries,
            iterations.stride,
        );
    }
    iterations
}

/// The streamed boundaries, when the ledger streamed this source.
fn streamed(ledger: &Ledger, source: &BoundarySource) -> Option<Sampled> {
    (ledger.streamed_source() == Some(source))
        .then(|| ledger.streamed_boundaries())
        .flatten()
}

fn boundaries(ledger: &Ledger, request: &IterationRequest) -> Iterations {
    match request {
        IterationRequest::Symbol(symbol) => {
            let sampled = streamed(ledger, &BoundarySource::Markers).unwrap_or_else(|| {
                let mut all = ledger.markers().to_vec();
                all.sort_unstable();
                Sampled::every(all)
            });
            let n = sampled.count;
            if n < 2 {
                return time_windows(ledger, format!("the marker `{symbol}` fired {n} time(s)"));
            }
            Iterations {
                loops: ledger.marker_runs(),
                ..explicit(
                    sampled,
                    IterationSource::Symbol,
                    format!("{n} calls of `{symbol}`"),
                )
            }
        }
        IterationRequest::Path(needle) => {
            let source = BoundarySource::PathsContaining(needle.clone());
            let (sampled, loops) = match streamed(ledger, &source) {
                Some(sampled) => (sampled, ledger.marking_open_runs()),
                None => {
                    let marking: Vec<_> = ledger
                        .opened_paths()
                        .iter()
                        .filter(|open| {
                            ledger
                                .sites()
                                .path(open.path)
                                .is_some_and(|path| path.contains(needle.as_str()))
                        })
                        .collect();
                    let mut all: Vec<u64> = marking.iter().map(|open| open.time_ns).collect();
                    all.sort_unstable();
                    let steps = marking.iter().map(|o| (o.tgid, o.image, o.time_ns));
                    (Sampled::every(all), LoopRuns::of_steps(steps))
                }
            };
            let n = sampled.count;
            if n < 2 {
                return time_windows(
                    ledger,
                    format!("paths containing \"{needle}\" were opened {n} time(s)"),
                );
            }
            Iterations {
                loops,
                ..explicit(
                    sampled,
                    IterationSource::Path,
                    format!("{n} opens of paths containing \"{needle}\""),
                )
            }
        }
        IterationRequest::Auto => auto::detect(ledger),
    }
}

/// The iterations of an explicit source (a marker, a path), on `sampled` boundaries.
fn explicit(sampled: Sampled, source: IterationSource, detail: String) -> Iterations {
    let Sampled {
        points,
        stride,
        count,
        recent,
    } = sampled;
    Iterations {
        boundaries: points,
        stride,
        total: count,
        recent,
        source,
        detail,
        confidence: repeat_confidence(count),
        auto_path: None,
        coverage: None,
        candidates: Vec::new(),
        unconvincing: None,
        chosen_from_events: None,
        loops: Vec::new(),
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

/// [`TIME_WINDOWS`] equal windows. They end at the last acquisition, not the last event:
/// a teardown that only releases would otherwise look like the program shrinking.
pub(crate) fn time_windows(ledger: &Ledger, why: String) -> Iterations {
    let Some((start, end)) = ledger.span() else {
        return Iterations {
            boundaries: Vec::new(),
            stride: 1,
            total: 0,
            recent: None,
            source: IterationSource::Time,
            detail: format!("{why}; no events"),
            confidence: 0.0,
            auto_path: None,
            coverage: None,
            candidates: Vec::new(),
            unconvincing: None,
            chosen_from_events: None,
            loops: Vec::new(),
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
        total: boundaries.len(),
        recent: None,
        boundaries,
        stride: 1,
        source: IterationSource::Time,
        confidence: 0.0,
        auto_path: None,
        coverage: None,
        candidates: Vec::new(),
        unconvincing: None,
        chosen_from_events: None,
        loops: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
