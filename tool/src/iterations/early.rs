//! Automatic detection while tracing, so that a long run without a marker folds too.
//!
//! Automatic detection ([`super::auto`]) chooses its boundaries from the run's opens, so
//! until it has chosen, every record is kept and memory grows with the events. Once a run
//! has applied [`EARLY_DETECT_EVENTS`] events, the same detection runs on what was seen so
//! far, at the next pause between drain passes. It ranks candidates as a long run's end
//! would ([`auto::Ranking::Eventual`]). If it finds a convincing loop, repeated
//! [`MIN_EARLY_REPEATS`] times or more with a confidence of [`MIN_EARLY_CONFIDENCE`] or
//! more, the ledger commits to it: from then on the boundaries are the opens of that exact
//! path by that program image (the opens the detection at the end would take for that
//! candidate), the ones seen so far included, and released resources are folded as with a
//! marker. Otherwise every record is kept, the detection is tried once more at twice the
//! events, and the user is told once that memory grows with events.
//!
//! Folded records can no longer be weighed as candidates, so at the end the committed rule
//! is judged again on the whole run, by the same checks as at the end of a batch run
//! ([`super::auto::score`], [`super::auto::flaw`]). What they need of the folded part is
//! counted as events arrive: the fd and mapping acquisitions of each image, and those of
//! the working image before the first boundary and in each iteration. A rule that stopped
//! marking the loop (the path no longer opened while the work goes on, or the work moved to
//! another process) makes every verdict inconclusive, with the next step: a wrong loop is
//! never judged as if it were right.

use std::collections::HashMap;

use super::auto;
use super::work::{Image, Timeline, Work, coverage};
use super::{IterationSource, Iterations, MarkerCandidate};
use crate::event::{Event, What};
use crate::ledger::Ledger;
use crate::ledger::boundaries::Sampled;
use crate::ledger::streaming::{BoundarySource, FOLD_EVERY_EVENTS};

/// Events before the first try: enough for a loop of up to 1,300 events per iteration to
/// repeat [`MIN_EARLY_REPEATS`] times (2,600 at the second try), while the records kept
/// until then (about 120 B per event, some 15 MiB) stay well inside the memory bar. Short
/// runs, which never get here, are judged exactly as before.
pub(crate) const EARLY_DETECT_EVENTS: u64 = 1 << 17;
/// Tries, each at twice the events of the one before. A try runs on the drain's thread and
/// holds it up for about 0.5 µs per event seen (measured: 130 ms at 2^18 events, 850 ms at
/// 2^21). It runs right after a drain pass, when the ring is empty, but past 2^18 events
/// the ring could still fill meanwhile, and lost events make every verdict inconclusive.
/// After the last try, detection waits for the end, as without this module.
const TRIES: u32 = 2;
/// Lowers [`EARLY_DETECT_EVENTS`] (tests).
pub(crate) const EARLY_DETECT_ENV: &str = "LEAKSCOPE_EARLY_DETECT_EVENTS";
/// A rule is committed to only after this many iterations: the checks that make it
/// convincing (regularity, bursts) need a sample that the rest of the run is unlikely to
/// overturn, and a wrong commitment cannot be undone (it ends inconclusive).
pub(crate) const MIN_EARLY_REPEATS: usize = 100;
/// ... and with at least this confidence (the score the report shows).
pub(crate) const MIN_EARLY_CONFIDENCE: f64 = 0.5;

/// When to try first: [`EARLY_DETECT_ENV`] if set to a positive number.
pub(crate) fn first_try() -> u64 {
    std::env::var(EARLY_DETECT_ENV)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(EARLY_DETECT_EVENTS)
}

/// The detector while tracing, kept in the ledger (so a watch view's copy has it too).
#[derive(Clone, Debug)]
pub(crate) struct Early {
    /// Events applied so far.
    events: u64,
    /// Try (again) once this many events were applied.
    next_try: u64,
    /// For stderr, until taken: said once, when the first try found no loop.
    note: Option<String>,
    /// Tries that found no loop.
    tries: u32,
    commit: Option<Commit>,
    /// Fold every this many events once committed.
    fold_every: u64,
}

impl Early {
    pub(crate) fn new(first_try: u64) -> Early {
        Early {
            events: 0,
            next_try: first_try,
            note: None,
            tries: 0,
            commit: None,
            fold_every: FOLD_EVERY_EVENTS,
        }
    }

    /// Folds every `events` events once committed (tests: their streams are short).
    #[cfg(test)]
    pub(crate) fn folding_every(mut self, events: u64) -> Early {
        self.fold_every = events;
        self
    }

    pub(crate) fn commit(&self) -> Option<&Commit> {
        self.commit.as_ref()
    }

    pub(crate) fn take_note(&mut self) -> Option<String> {
        self.note.take()
    }

    /// Runs the detection on what was seen so far, and commits to what it finds if that
    /// is convincing enough.
    fn try_now(&mut self, ledger: &mut Ledger) {
        let (iterations, worker, work) = auto::choose(ledger, auto::Ranking::Eventual);
        let convincing = iterations.unconvincing.is_none()
            && iterations.count() >= MIN_EARLY_REPEATS
            && iterations.confidence >= MIN_EARLY_CONFIDENCE;
        match (worker, &iterations.auto_path) {
            (Some(image), Some(path)) if convincing => {
                let chosen = Chosen {
                    events: self.events,
                    path: path.clone(),
                    image,
                };
                let commit = Commit::new(ledger, &work, chosen, &iterations);
                let source = BoundarySource::OpensBy {
                    path: path.clone(),
                    tgid: image.tgid,
                    execs: image.epoch,
                };
                ledger.stream_on_from(source, iterations.boundaries, self.fold_every);
                self.commit = Some(commit);
            }
            _ => {
                self.tries += 1;
                let again = (self.tries < TRIES).then(|| self.events.saturating_mul(2));
                if self.tries == 1 {
                    let when = again.map_or_else(String::new, |n| {
                        format!(" (it is looked for once more at {n} events)")
                    });
                    self.note = Some(format!(
                        "no loop found in the first {} events{when}, so every record is kept and memory grows with events; --iteration-symbol or --iteration-path keep it bounded",
                        self.events
                    ));
                }
                self.next_try = again.unwrap_or(u64::MAX);
            }
        }
    }
}

/// What a try chose: the opens of `path` by `image`, from the first `events` events.
struct Chosen {
    events: u64,
    path: String,
    image: Image,
}

/// The rule committed to, and what the end's checks need of the run that gets folded.
#[derive(Clone, Debug)]
pub(crate) struct Commit {
    /// Events seen when it was chosen.
    events: u64,
    path: String,
    /// The working image, whose opens of `path` are the boundaries.
    image: Image,
    /// The candidates named when it was chosen.
    candidates: Vec<MarkerCandidate>,
    /// fd and mapping acquisitions by traced calls, per image, over the whole run.
    by_image: HashMap<Image, u64>,
    /// The working image's acquisitions before the first boundary.
    before_first: u64,
    /// ... and in each iteration that has ended (from one boundary to the next).
    per_iteration: Vec<u32>,
    /// ... and since the last boundary.
    since_last: u64,
    /// fd and mapping records handed out so far: what an event added is the difference.
    handed_out: u64,
    /// Boundaries seen so far.
    boundaries: usize,
}

impl Commit {
    /// Counts what the ledger has seen (its `work`): everything is still kept.
    fn new(ledger: &Ledger, work: &Work, chosen: Chosen, iterations: &Iterations) -> Commit {
        let Chosen {
            events,
            path,
            image,
        } = chosen;
        let times = &iterations.boundaries;
        let empty = Timeline::default();
        let worker = work.of(image).unwrap_or(&empty);
        let (first, last) = (times[0], times[times.len() - 1]);
        Commit {
            events,
            path,
            image,
            candidates: iterations.candidates.clone(),
            by_image: work.totals().map(|(i, n)| (i, n as u64)).collect(),
            before_first: worker.between(0, first) as u64,
            per_iteration: times
                .windows(2)
                .map(|w| saturate(worker.between(w[0], w[1]) as u64))
                .collect(),
            since_last: worker.between(last, u64::MAX) as u64,
            handed_out: handed_out(ledger),
            boundaries: times.len(),
        }
    }

    /// Counts what `event` (just applied) acquired, and whether it started an iteration.
    fn count(&mut self, ledger: &Ledger, event: &Event) {
        let handed = handed_out(ledger);
        let acquired = handed - self.handed_out;
        self.handed_out = handed;
        let mut by_worker = 0;
        // A fork's copies are not acquisitions; a traced call's new records are, all of
        // its own process.
        if acquired > 0 && matches!(event.what, What::Syscall(_)) {
            let image = Image::now(ledger, event.tgid);
            *self.by_image.entry(image).or_default() += acquired;
            if image == self.image {
                by_worker = acquired;
            }
        }
        let boundaries = ledger.committed_loop_boundaries().map_or(0, <[u64]>::len);
        if boundaries > self.boundaries {
            // The open that is the boundary is the new iteration's first acquisition.
            self.boundaries = boundaries;
            self.per_iteration.push(saturate(self.since_last));
            self.since_last = 0;
        }
        self.since_last += by_worker;
    }

    /// The run's work as [`auto`] weighs it: exact for every window from one boundary to
    /// another and from the last one on, the only windows its checks ask of the working
    /// image (records since the last boundary are all still kept, and are looked at).
    fn work(&self, ledger: &Ledger, times: &[u64]) -> Work {
        let kept = Work::new(ledger);
        let last = times.last().copied().unwrap_or(0);
        let since_last = kept.of(self.image).map_or_else(Vec::new, |t| t.from(last));
        let per_iteration = times
            .iter()
            .zip(&self.per_iteration)
            .map(|(&t, &n)| (t, u64::from(n)));
        let worker = Timeline::new(since_last)
            .with_weighted(std::iter::once((0, self.before_first)).chain(per_iteration));
        let mut by_image: HashMap<Image, Timeline> = self
            .by_image
            .iter()
            .filter(|(image, _)| **image != self.image)
            .map(|(&image, &n)| (image, Timeline::default().with_weighted([(0, n)])))
            .collect();
        by_image.insert(self.image, worker);
        Work::from_parts(kept.all, by_image)
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn handed_out(ledger: &Ledger) -> u64 {
    ledger.fd_records().handed_out() + ledger.map_records().handed_out()
}

/// Called by the ledger after it applied `event`.
pub(crate) fn after_event(ledger: &mut Ledger, event: &Event) {
    let Some(mut early) = ledger.take_early() else {
        return;
    };
    early.events += 1;
    if let Some(commit) = &mut early.commit {
        commit.count(ledger, event);
    }
    ledger.put_early(early);
}

/// Called between drains: tries if it is time. A try holds up the drain (see [`TRIES`]),
/// and right after a drain the ring is empty, with all its room for what comes meanwhile.
pub(crate) fn poll(ledger: &mut Ledger) {
    let Some(mut early) = ledger.take_early() else {
        return;
    };
    if early.commit.is_none() && early.events >= early.next_try {
        early.try_now(ledger);
    }
    ledger.put_early(early);
}

/// The iterations of a run committed to early: the committed rule's boundaries, judged
/// again on the whole run.
pub(super) fn conclude(ledger: &Ledger, commit: &Commit) -> Iterations {
    let mut times = ledger
        .committed_loop_boundaries()
        .unwrap_or_default()
        .to_vec();
    times.sort_unstable();
    let work = commit.work(ledger, &times);
    let busiest = work.busiest();
    let worker = work.of(commit.image).cloned().unwrap_or_default();
    let last = times.last().copied().unwrap_or(0);
    let lifetime = commit
        .image
        .life(ledger)
        .unwrap_or((times.first().copied().unwrap_or(0), last));
    let (score, _, regularity) = auto::score(&times, lifetime, &worker);
    let sampled = ledger
        .streamed_boundaries()
        .unwrap_or_else(|| Sampled::every(times.clone()));
    let (path, n, events) = (&commit.path, times.len(), commit.events);
    let flaw = match busiest {
        Some((image, acquisitions)) if image != commit.image => Some(format!(
            "is no longer a loop of the process that does the work (pid {}, which made the \
             most acquisitions, {acquisitions}, is not the process whose opens were chosen, \
             pid {})",
            image.tgid, commit.image.tgid
        )),
        _ => auto::flaw(&work, busiest, n, &times),
    };
    let mut iterations = Iterations {
        detail: format!(
            "auto: \"{path}\" opened {n} times, regularity {regularity:.2}; chosen from the \
             first {events} events"
        ),
        coverage: coverage(&work, &times, 1),
        // Judged on the boundaries the folding indexed its series by (the same points as
        // decimating `times`, unless one arrived out of order).
        boundaries: sampled.points,
        stride: sampled.stride,
        total: sampled.count,
        recent: sampled.recent,
        source: IterationSource::Auto,
        confidence: score,
        auto_path: Some(path.clone()),
        candidates: commit.candidates.clone(),
        unconvincing: None,
        chosen_from_events: Some(events),
        loops: Vec::new(),
    };
    if let Some(flaw) = flaw {
        iterations.detail = format!(
            "auto: \"{path}\" opened {n} times, chosen from the first {events} events; it no \
             longer marks the loop"
        );
        iterations.confidence = 0.0;
        iterations.unconvincing = Some(format!(
            "the loop chosen from the first {events} events no longer holds: \"{path}\" ({n} \
             opens) {flaw}; run again with --iteration-path or --iteration-symbol"
        ));
    }
    iterations
}

#[cfg(test)]
#[path = "early_tests.rs"]
mod tests;
