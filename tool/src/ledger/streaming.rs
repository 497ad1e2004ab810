//! Bounded memory: folding away what can no longer change a verdict, while tracing.
//!
//! When the iterations come from a marker (`--iteration-symbol`, and the built-in extract
//! job) or from opens of a given path (`--iteration-path`), each boundary is known the
//! moment it happens. Once a resource's release is settled (every boundary up to it is
//! known), everything the analysis will ask of it is known too: one more acquisition and
//! release, one lifetime in time and in iterations, the boundaries at which it was live
//! (and with how many bytes), whether it was acquired before the first boundary. It is
//! never retained (it was released before the last boundary). So the ledger adds those
//! facts to its class's [`Folded`] aggregates, with its share of each boundary's count and
//! bytes as differences, and drops the record, its byte changes and its size samples.
//! Resident samples that no boundary reads (a later one of the same process comes before
//! the same boundaries) are dropped, and failures past the first of each kind are only
//! counted. What is left is what is live, the tail since the last fold, and per kept
//! boundary (every stride-th iteration's, at most `2 × max` of them: see
//! [`super::boundaries`]) the boundary, one resident sample per process and its entries in
//! the difference series.
//!
//! Every fold is exact: the batch analysis of a folded ledger equals that of the full one
//! (tests below). Nothing is folded until two boundaries were seen (with fewer, the
//! iterations fall back to time windows, which need every record), and only before the
//! latest boundary less [`SETTLE_NS`], so a boundary that reaches the ring late is still
//! in time; one later still is counted, and makes every verdict inconclusive.
//!
//! Automatic detection chooses its boundaries from the run's opens: those runs keep every
//! record until it commits to a rule early (see `crate::iterations::early`), and fold from
//! then on, with the opens of the chosen path by the chosen program image as boundaries.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::boundaries::{Kept, Kept1, Sampled, merge_pairs};
use super::recent_boundaries::Recent;
use super::records::{Folded, NEVER, Origin, Record, RecordId, Records, add_from};
use super::{ClassKind, FailedAcquisition, Ledger, RssSample};
use crate::analysis::file_bytes;
use crate::analysis::limits::is_limit;

/// How far behind the latest marker folding stays: ring records from different CPUs can
/// arrive out of time order by a few microseconds; this leaves a wide margin.
pub(crate) const SETTLE_NS: u64 = 50_000_000;

/// Fold once this many events arrived since the last fold (and at least as many as the
/// records then kept), so the work stays linear in the events.
pub(crate) const FOLD_EVERY_EVENTS: u64 = 1 << 16;

/// Where the boundaries that folding relies on come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BoundarySource {
    /// The marker's hits (`--iteration-symbol`).
    Markers,
    /// Successful opens of paths containing this (`--iteration-path`).
    PathsContaining(String),
    /// Successful opens of exactly this path by process `tgid` after its `execs`-th exec
    /// (automatic detection, committed to early: the opens it would choose at the end).
    OpensBy {
        path: String,
        tgid: u32,
        execs: usize,
    },
}

/// When to fold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Streaming {
    /// Folding is on, with these boundaries.
    pub(crate) on: Option<BoundarySource>,
    /// The boundaries, at a bounded resolution: the difference series of [`Folded`] are
    /// indexed by the kept ones.
    pub(crate) boundaries: Kept,
    /// Every boundary, for [`BoundarySource::OpensBy`] only (see
    /// [`Ledger::committed_loop_boundaries`]): 8 bytes per iteration.
    pub(crate) committed_loop: Vec<u64>,
    /// What the last fold took as settled: no boundary may come before it.
    settled: u64,
    /// Boundaries that came before it anyway: folds around them may have used the wrong
    /// iteration.
    pub(crate) late_boundaries: u64,
    /// Events since the last fold.
    pub(crate) events: u64,
    /// Fold again after this many events.
    pub(crate) every: u64,
    /// Resident samples folded away (the report counts every sample taken).
    pub(crate) rss_folded: u64,
    /// Resident samples before this index are reduced to one per group already.
    rss_reduced: usize,
    /// The same for `--heap`'s samples of live bytes and allocations.
    alloc_reduced: [usize; 2],
    /// Failures folded away, by class and errno.
    pub(crate) failures_folded: BTreeMap<(ClassKind, i32), u64>,
    /// Of those, limit failures from the first boundary on, by class.
    pub(crate) limit_failures_folded: BTreeMap<ClassKind, u64>,
}

/// The boundaries kept so far, sorted, every `stride`-th real one (see
/// [`super::boundaries`]). Indexes here are kept boundaries, as the analysis counts them.
struct Known<'a> {
    boundaries: &'a [u64],
    stride: u64,
    /// The latest real boundaries, every one.
    recent: &'a Recent,
}

impl Known<'_> {
    /// The kept boundary `t` falls after (-1 before the first), as the analysis counts it.
    fn index_at(&self, t: u64) -> i64 {
        self.boundaries.partition_point(|&b| b <= t) as i64 - 1
    }

    /// The iteration of kept boundary `index` (-1 before the first), at this stride.
    fn iteration(&self, index: i64) -> i64 {
        if index < 0 {
            -1
        } else {
            index * self.stride as i64
        }
    }

    /// Iterations crossed from `from` (in kept boundary `from_in`) to `to` (in `to_in`), as
    /// [`crate::iterations::Iterations::crossed`] counts them: exact at stride 1, and above
    /// it when both fall among the recent boundaries; otherwise in strides.
    fn crossed(&self, from: u64, from_in: i64, to: u64, to_in: i64) -> u64 {
        if self.stride > 1
            && let Some(exact) = self.recent.crossed(from, to)
        {
            return exact;
        }
        (self.iteration(to_in) - self.iteration(from_in)).max(0) as u64
    }

    /// The first kept boundary after `t`: a change at `t` shows from there on (the real
    /// boundaries before it are not judged on).
    fn after(&self, t: u64) -> usize {
        self.boundaries.partition_point(|&b| b <= t)
    }

    /// Kept boundaries strictly before `t`: samples with the same count see the same
    /// boundaries.
    fn before(&self, t: u64) -> usize {
        self.boundaries.partition_point(|&b| b < t)
    }
}

impl Ledger {
    /// Turns folding on: the iterations will be the boundaries of `source`.
    pub(crate) fn stream_on(&mut self, source: BoundarySource) {
        self.stream_on_every(source, FOLD_EVERY_EVENTS);
    }

    /// Turns folding on mid-run, with the boundaries of `source` seen so far, folding
    /// every `every` events ([`FOLD_EVERY_EVENTS`] but in tests), the first time after the
    /// next event: what was kept until now is the most there will be.
    pub(crate) fn stream_on_from(&mut self, source: BoundarySource, seen: Vec<u64>, every: u64) {
        self.stream_on_every(source, every);
        self.streaming.events = every.saturating_sub(1);
        for &t in &seen {
            self.note_boundary(t); // nothing is folded yet: no series to merge
        }
        self.streaming.committed_loop = seen;
    }

    /// [`Ledger::stream_on`], folding every `every` events (tests fold more often).
    pub(crate) fn stream_on_every(&mut self, source: BoundarySource, every: u64) {
        self.streaming.boundaries = Kept::new(self.streaming.boundaries.max());
        self.streaming.on = Some(source);
        self.streaming.every = every;
    }

    /// An open of `path` by `tgid` at `t`: a boundary when iterations are opens of such
    /// paths.
    pub(super) fn note_open_for_boundaries(&mut self, tgid: u32, path: &str, t: u64) {
        let boundary = match &self.streaming.on {
            Some(BoundarySource::PathsContaining(needle)) => {
                let marks = path.contains(needle.as_str());
                if marks {
                    let image = self.image_of(tgid);
                    self.marking_open_runs.note(tgid, image, t);
                }
                marks
            }
            Some(BoundarySource::OpensBy {
                path: chosen,
                tgid: by,
                execs,
            }) => {
                let ours = *by == tgid && path == chosen && self.exec_times(tgid).len() == *execs;
                if ours {
                    self.streaming.committed_loop.push(t);
                }
                ours
            }
            _ => false,
        };
        if boundary {
            self.note_boundary(t);
        }
    }

    /// A marker hit at `t`; false when the marker's hits are not the streamed boundaries
    /// (the ledger then keeps every hit for the iteration detector).
    pub(super) fn note_marker(&mut self, t: u64) -> bool {
        let streamed = self.streaming.on == Some(BoundarySource::Markers);
        if streamed {
            self.note_boundary(t);
        }
        streamed
    }

    /// Keeps a streamed boundary (at the bounded resolution), and counts one that comes
    /// before what folding already took as settled.
    fn note_boundary(&mut self, t: u64) {
        if t < self.streaming.settled {
            self.streaming.late_boundaries += 1;
        }
        if self.streaming.boundaries.push(t) == Kept1::Halved {
            self.merge_boundaries_in_pairs();
        }
    }

    /// The stride doubled: every difference series indexed by kept boundaries merges its
    /// entries in pairs, and resident samples are reduced again to one per (coarser) group.
    fn merge_boundaries_in_pairs(&mut self) {
        let history = &mut self.history;
        for records in [
            &mut history.fds,
            &mut history.maps,
            &mut history.files,
            &mut history.watches,
        ] {
            let folded = records.folded_mut();
            merge_pairs(&mut folded.live);
            merge_pairs(&mut folded.bytes);
        }
        self.streaming.rss_reduced = 0;
        self.streaming.alloc_reduced = [0, 0];
    }

    /// The streamed boundaries (`--iteration-symbol`, `--iteration-path`) at their bounded
    /// resolution, when the ledger took them as they came (it then keeps neither every
    /// marker nor the opened paths).
    pub(crate) fn streamed_boundaries(&self) -> Option<Sampled> {
        self.streaming
            .on
            .is_some()
            .then(|| self.streaming.boundaries.sampled())
    }

    /// Which source is streamed, if any.
    pub(crate) fn streamed_source(&self) -> Option<&BoundarySource> {
        self.streaming.on.as_ref()
    }

    /// At most twice this many boundaries are kept, and judged on.
    pub(crate) fn max_boundaries(&self) -> usize {
        self.streaming.boundaries.max()
    }

    /// Sets the bound on kept boundaries (before any boundary arrives).
    pub(crate) fn set_max_boundaries(&mut self, max: usize) {
        self.streaming.boundaries = Kept::new(max);
    }

    /// Every boundary of a loop automatic detection committed to while tracing: its checks
    /// at the end (regularity, tail, coverage) weigh each iteration.
    pub(crate) fn committed_loop_boundaries(&self) -> Option<&[u64]> {
        matches!(self.streaming.on, Some(BoundarySource::OpensBy { .. }))
            .then_some(self.streaming.committed_loop.as_slice())
    }

    /// Called after each event: folds when enough events have arrived.
    pub(super) fn maybe_fold(&mut self) {
        if self.streaming.on.is_none() {
            return;
        }
        self.streaming.events += 1;
        if self.streaming.events >= self.streaming.every {
            self.streaming.events = 0;
            let mut kept = std::mem::take(&mut self.streaming.boundaries);
            kept.sorted();
            self.fold(&kept);
            self.streaming.boundaries = kept;
        }
    }

    /// Folds what the boundaries seen so far settle.
    fn fold(&mut self, kept: &Kept) {
        let history = &mut self.history;
        if kept.count() < 2 {
            return;
        }
        let Some(settled) = kept.last().map(|b| b.saturating_sub(SETTLE_NS)) else {
            return;
        };
        let boundaries = kept.sorted_view();
        self.streaming.settled = settled;
        let known = Known {
            boundaries,
            stride: kept.stride(),
            recent: kept.recent(),
        };
        // The first failure of each errno is where the report counts what the process held:
        // resources live across that instant stay.
        let first_failures = first_failures(&history.failures);
        let fold_class = |records: &mut Records, class: ClassKind| {
            let pinned = first_failures.get(&class).map_or(&[][..], Vec::as_slice);
            records.fold_where(|record, folded| {
                let foldable = record.released_ns != NEVER
                    && record.released_ns < settled
                    && !pinned.iter().any(|&(tgid, t)| {
                        record.tgid == tgid && record.born_ns <= t && record.released_ns > t
                    });
                if foldable {
                    add_to(folded, record, &known);
                }
                foldable
            })
        };
        fold_class(&mut history.fds, ClassKind::Fd);
        let maps_gone = fold_class(&mut history.maps, ClassKind::Mapping);
        fold_map_bytes(history, &maps_gone, &known);
        let files_gone = fold_class(&mut history.files, ClassKind::File);
        fold_file_sizes(history, &files_gone, &known);
        fold_class(&mut history.watches, ClassKind::Watch);
        self.streaming.rss_folded += fold_rss(
            &mut history.rss,
            &known,
            settled,
            &mut self.streaming.rss_reduced,
        );
        // Only the latest sample before each boundary is read, as for resident memory.
        for (samples, reduced) in [&mut history.alloc_bytes, &mut history.alloc_counts]
            .into_iter()
            .zip(self.streaming.alloc_reduced.iter_mut())
        {
            fold_rss(samples, &known, settled, reduced);
        }
        let first_boundary = boundaries[0];
        fold_failures(
            &mut self.streaming,
            &mut history.failures,
            settled,
            first_boundary,
        );
        history.opens.clear();
        history.opens.shrink_to_fit();
        // A fold's work is the records and failures it looks at (resident samples and
        // boundaries are looked at only where new), so folding again after as many events
        // keeps the work linear, and the unfolded tail no longer than that.
        let kept = [
            &history.fds,
            &history.maps,
            &history.files,
            &history.watches,
        ]
        .iter()
        .map(|records| records.all().len())
        .sum::<usize>()
            + history.failures.len();
        self.streaming.every = self.streaming.every.max(kept as u64);
    }

    /// Boundaries that arrived after folding had settled past their time (see
    /// [`SETTLE_NS`]): the counts around them may be off.
    pub(crate) fn late_boundaries(&self) -> u64 {
        self.streaming.late_boundaries
    }

    /// Failures of `class` with `errno` folded away (counted, not kept).
    pub(crate) fn folded_failures(&self, class: ClassKind, errno: i32) -> u64 {
        self.streaming
            .failures_folded
            .get(&(class, errno))
            .copied()
            .unwrap_or(0)
    }

    /// Limit failures of `class` at or after the first boundary folded away: all of them
    /// came after the first such failure, which is kept.
    pub(crate) fn folded_limit_failures(&self, class: ClassKind) -> u64 {
        self.streaming
            .limit_failures_folded
            .get(&class)
            .copied()
            .unwrap_or(0)
    }
}

/// Keeps, of the settled failures, the first of each class and errno (where the report
/// says when failing started and what the process held) and the first limit failure from
/// the first boundary on (where the class hit its wall); the rest are only counted.
fn fold_failures(
    streaming: &mut Streaming,
    failures: &mut Vec<FailedAcquisition>,
    settled: u64,
    first_boundary: u64,
) {
    // The firsts kept by earlier folds are still first in apply order, so they are found
    // first again.
    let mut first_of_errno: HashSet<(ClassKind, i32)> = HashSet::new();
    let mut first_limit: HashSet<ClassKind> = HashSet::new();
    failures.retain(|failure| {
        if failure.time_ns >= settled {
            return true;
        }
        let class = failure.class;
        let first = first_of_errno.insert((class, failure.errno));
        let limit = failure.time_ns >= first_boundary && is_limit(class, failure.errno);
        let first_at_limit = limit && first_limit.insert(class);
        if first || first_at_limit {
            return true;
        }
        *streaming
            .failures_folded
            .entry((class, failure.errno))
            .or_default() += 1;
        if limit {
            *streaming.limit_failures_folded.entry(class).or_default() += 1;
        }
        false
    });
    failures.shrink_to(failures.len() * 2);
}

/// Drops the byte changes of folded mappings, adding what they show at each boundary to
/// the class's difference series.
fn fold_map_bytes(history: &mut super::history::History, gone: &[Record], known: &Known) {
    if !gone.is_empty() {
        let gone = |id: RecordId| gone.binary_search_by_key(&id, |r| r.id).is_ok();
        let mut shown = Vec::new();
        history.map_bytes.retain(|change| {
            let out = gone(change.record);
            if out {
                shown.push((known.after(change.time_ns), change.bytes));
            }
            !out
        });
        add_summed(&mut history.maps.folded_mut().bytes, shown);
        history.resized.retain(|&id| !gone(id));
    }
    history.map_bytes.shrink_to(history.map_bytes.len() * 2);
}

/// Drops the size samples of folded entries on disk, adding the bytes they stood for at
/// each boundary (as the analysis reads sizes) to the class's difference series.
fn fold_file_sizes(history: &mut super::history::History, gone: &[Record], known: &Known) {
    if gone.is_empty() {
        return;
    }
    let find = |id: RecordId| {
        gone.binary_search_by_key(&id, |r| r.id)
            .ok()
            .map(|at| &gone[at])
    };
    let mut looks: HashMap<RecordId, Vec<(u64, u64)>> = HashMap::new();
    history.file_size_samples.retain(|sample| {
        let out = find(sample.record).is_some();
        if out {
            looks
                .entry(sample.record)
                .or_default()
                .push((sample.time_ns, sample.bytes));
        }
        !out
    });
    let mut shown = Vec::new();
    for (id, seen) in looks {
        if let Some(record) = find(id) {
            for change in file_bytes::record_changes(record, seen) {
                shown.push((known.after(change.time_ns), change.bytes));
            }
        }
    }
    add_summed(&mut history.files.folded_mut().bytes, shown);
}

/// Adds byte changes (first boundary they show at, bytes) to a difference series, summed
/// per boundary first: a mapping made and unmapped between two boundaries adds nothing,
/// and must not grow the series either.
fn add_summed(differences: &mut Vec<i64>, mut changes: Vec<(usize, i64)>) {
    changes.sort_unstable_by_key(|&(at, _)| at);
    for group in changes.chunk_by(|a, b| a.0 == b.0) {
        let sum: i64 = group.iter().map(|&(_, bytes)| bytes).sum();
        if sum != 0 {
            add_from(differences, group[0].0, sum);
        }
    }
}

/// Adds a folded record to its class's aggregates, as the analysis would have counted it.
fn add_to(folded: &mut Folded, record: &Record, known: &Known) {
    // Two searches (three for a fork copy): this runs for every resource released.
    let born_in = known.index_at(record.born_ns);
    let released_in = known.index_at(record.released_ns);
    // Live at the boundaries after its birth, up to and including its release's.
    let (from, to) = ((born_in + 1) as usize, (released_in + 1) as usize);
    if from < to {
        add_from(&mut folded.live, from, 1);
        add_from(&mut folded.live, to, -1);
    }
    if record.origin == Origin::Seeded {
        return; // neither an acquisition nor a lifetime the run saw
    }
    folded.traced += 1;
    let origin_in = if record.origin_ns == record.born_ns {
        born_in
    } else {
        known.index_at(record.origin_ns)
    };
    folded.lifetimes.record(
        record.released_ns.saturating_sub(record.origin_ns),
        known.crossed(record.origin_ns, origin_in, record.released_ns, released_in),
    );
    if record.origin == Origin::Acquired {
        folded.acquired(born_in >= 0, record.born_ns);
    }
}

/// (tgid, time) of the first failure of each errno, by class.
fn first_failures(failures: &[super::FailedAcquisition]) -> HashMap<ClassKind, Vec<(u32, u64)>> {
    let mut seen = HashSet::new();
    let mut firsts: HashMap<ClassKind, Vec<(u32, u64)>> = HashMap::new();
    for failure in failures {
        if seen.insert((failure.class, failure.errno)) {
            firsts
                .entry(failure.class)
                .or_default()
                .push((failure.tgid, failure.time_ns));
        }
    }
    firsts
}

/// Drops each settled sample that a later sample of the same process, before the same
/// boundaries, supersedes: a boundary reads only the latest sample at or before it.
/// Samples before `*reduced` were reduced by an earlier fold; only the rest is looked at,
/// with the last reduced samples of the groups it continues. Returns how many were dropped.
fn fold_rss(samples: &mut Vec<RssSample>, known: &Known, settled: u64, reduced: &mut usize) -> u64 {
    let group = |s: &RssSample| (s.tgid, known.before(s.time_ns));
    let Some(first_group) = samples[*reduced..]
        .iter()
        .map(|s| known.before(s.time_ns))
        .min()
    else {
        return 0;
    };
    // Back over the reduced samples that may share a group with the new ones.
    let mut start = (*reduced).min(samples.len());
    while start > 0 && known.before(samples[start - 1].time_ns) >= first_group {
        start -= 1;
    }
    // The latest settled sample of each group; of equal times, the one the replay applies
    // last (it sorts samples by bytes then).
    let mut latest: foldhash::HashMap<(u32, usize), (u64, u64)> = Default::default();
    for sample in samples[start..].iter().filter(|s| s.time_ns < settled) {
        let key = (sample.time_ns, sample.bytes);
        let slot = latest.entry(group(sample)).or_insert(key);
        *slot = (*slot).max(key);
    }
    let before = samples.len();
    let mut kept_in_group: foldhash::HashSet<(u32, usize)> = Default::default();
    let mut at = 0;
    samples.retain(|s| {
        at += 1;
        if at <= start || s.time_ns >= settled {
            return true;
        }
        // Keep exactly one sample per group: the latest (the first of equal times).
        let group = group(s);
        latest.get(&group) == Some(&(s.time_ns, s.bytes)) && kept_in_group.insert(group)
    });
    samples.shrink_to(samples.len() * 2);
    // What follows is unsettled (or arrived late, and is looked at again next time).
    *reduced = start
        + samples[start..]
            .iter()
            .position(|s| s.time_ns >= settled)
            .unwrap_or(samples.len() - start);
    (before - samples.len()) as u64
}

#[cfg(test)]
#[path = "streaming_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "streaming_fuzz_tests.rs"]
mod fuzz_tests;
