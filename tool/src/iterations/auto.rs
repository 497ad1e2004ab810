//! Automatic detection: which recurring opened path marks the loop, and whether any marks
//! it well enough to judge on.
//!
//! A path that recurs is not yet a loop. A version-manager shim (pyenv, asdf, nvm, rbenv)
//! runs helper processes that open one config file dozens of times, evenly, and then execs
//! the real program: those opens are start-up, and iterations cut from them see none of the
//! program's work. So a candidate is convincing only if
//! - it recurs in the process that does the work (the program image with the most
//!   acquisitions), [`MIN_REPEATS`] times or more;
//! - it recurs until the work stops: what the run acquires after its last iteration (in
//!   any process) is at most [`MAX_TAIL_SHARE`] of what the working image acquires;
//! - the iterations it marks hold at least [`MIN_COVERAGE`] of that image's acquisitions
//!   (what the run's other processes did, a shim's helpers say, is reported as the
//!   iterations' coverage, but a loop is no less a loop for them);
//! - after warm-up, no single iteration holds more than [`MAX_ITERATION_SHARE`] of the work (a
//!   path opened in a burst at start-up and another at exit would make one giant
//!   iteration).
//!
//! When recurring paths exist and none is convincing, the verdicts are inconclusive and
//! the best are named, ready to paste as `--iteration-path`: a guess is never judged as
//! if it were a loop.

use std::collections::HashMap;

use super::work::{Image, Timeline, Work, coverage, median_gap};
use super::{IterationSource, Iterations, MIN_REPEATS, MarkerCandidate, time_windows};
use crate::ledger::Ledger;
use crate::ledger::sites::SiteId;

/// The iterations must hold at least this share of the working image's acquisitions.
pub(crate) const MIN_COVERAGE: f64 = 0.25;
/// What the run acquires after the last iteration may be at most this share of what the
/// working image acquires.
pub(crate) const MAX_TAIL_SHARE: f64 = 0.10;
/// No iteration after warm-up may hold more than this share of the working image's
/// acquisitions.
pub(crate) const MAX_ITERATION_SHARE: f64 = 0.25;
/// Repeats at which a period earns full confidence for its count alone.
const CONFIDENT_REPEATS: f64 = 30.0;
/// Candidates named in the report.
const CANDIDATES_SHOWN: usize = 5;

/// One recurring path and how well it marks the loop.
#[derive(Clone, Debug)]
struct Candidate {
    path: SiteId,
    /// Opens by every process.
    count: usize,
    /// The opens that would be the boundaries: those of the working image, or every open
    /// when that image makes too few.
    times: Vec<u64>,
    score: f64,
    rank: f64,
    regularity: f64,
    coverage: Option<f64>,
    /// Why it does not mark the loop, if it does not.
    flaw: Option<String>,
}

pub(crate) fn detect(ledger: &Ledger) -> Iterations {
    match ledger.early_commit() {
        Some(commit) => super::early::conclude(ledger, commit),
        None => choose(ledger, Ranking::AsSeen).0,
    }
}

/// How candidates are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ranking {
    /// As the run stands: more repeats are more evidence (see [`score`]).
    AsSeen,
    /// As the run will stand when it has repeated many times more: by score alone, which
    /// is what [`Ranking::AsSeen`] tends to as every candidate's repeats grow. A choice
    /// made early must be the one the end of a long run would make: a path opened 8 times
    /// per iteration outranks the once-per-iteration one after 100 iterations, not after
    /// 400.
    Eventual,
}

/// Detection on the whole ledger: the iterations, the image whose opens they are when a
/// candidate was convincing, and the work it weighed.
pub(super) fn choose(ledger: &Ledger, ranking: Ranking) -> (Iterations, Option<Image>, Work) {
    let work = Work::new(ledger);
    if ledger.span().is_none() {
        return (
            time_windows(ledger, "nothing was traced".into()),
            None,
            work,
        );
    }
    let busiest = work.busiest();
    let iterations = choose_among_opens(ledger, &work, busiest, ranking);
    let worker = busiest
        .map(|(image, _)| image)
        .filter(|_| iterations.source == IterationSource::Auto);
    (iterations, worker, work)
}

fn choose_among_opens(
    ledger: &Ledger,
    work: &Work,
    busiest: Option<(Image, usize)>,
    ranking: Ranking,
) -> Iterations {
    let mut opens: HashMap<SiteId, Vec<(u64, Image)>> = HashMap::new();
    for open in ledger.opened_paths() {
        let image = Image::at(ledger, open.tgid, open.time_ns);
        opens
            .entry(open.path)
            .or_default()
            .push((open.time_ns, image));
    }
    let mut candidates: Vec<Candidate> = opens
        .into_iter()
        .filter(|(_, opens)| opens.len() >= MIN_REPEATS)
        .map(|(path, opens)| judge(ledger, work, busiest, path, opens))
        .map(|mut candidate| {
            if ranking == Ranking::Eventual {
                candidate.rank = candidate.score;
            }
            candidate
        })
        .collect();
    if candidates.is_empty() {
        return time_windows(
            ledger,
            format!("no opened path recurred {MIN_REPEATS} times or more"),
        );
    }
    candidates.sort_by(|a, b| b.rank.total_cmp(&a.rank).then(a.path.cmp(&b.path)));
    // Of paths opened in lockstep (a runtime's start-up files, a loop's two files), the one
    // opened first stands for them all.
    let mut distinct: Vec<&Candidate> = Vec::new();
    for candidate in &candidates {
        match distinct
            .iter_mut()
            .find(|kept| lockstep(&kept.times, &candidate.times))
        {
            Some(kept) if candidate.times[0] < kept.times[0] => *kept = candidate,
            Some(_) => {}
            None => distinct.push(candidate),
        }
    }
    let named: Vec<MarkerCandidate> = distinct
        .iter()
        .take(CANDIDATES_SHOWN)
        .map(|c| MarkerCandidate {
            path: ledger.sites().path(c.path).unwrap_or_default().to_string(),
            count: c.count,
            score: (c.score * 100.0).round() / 100.0,
        })
        .collect();

    let convincing: Vec<&Candidate> = candidates.iter().filter(|c| c.flaw.is_none()).collect();
    let Some(best_rank) = convincing.iter().map(|c| c.rank).reduce(f64::max) else {
        let best = distinct[0];
        let reason = format!(
            "no loop found: \"{}\" ({} opens) {}",
            ledger.sites().path(best.path).unwrap_or_default(),
            best.count,
            best.flaw.as_deref().unwrap_or_default()
        );
        let mut iterations = time_windows(ledger, reason.clone());
        iterations.candidates = named;
        iterations.unconvincing = Some(reason);
        return iterations;
    };
    // Paths opened together once per iteration score alike; the one opened first in the
    // iteration marks its start best.
    let chosen = convincing
        .into_iter()
        .filter(|c| c.rank >= best_rank * 0.99)
        .min_by_key(|c| (c.times[0], c.path))
        .expect("the best is among them");
    let path = ledger
        .sites()
        .path(chosen.path)
        .unwrap_or_default()
        .to_string();
    Iterations {
        detail: format!(
            "auto: \"{path}\" opened {} times, regularity {:.2}",
            chosen.times.len(),
            chosen.regularity
        ),
        boundaries: chosen.times.clone(),
        stride: 1,
        total: chosen.times.len(),
        recent: None,
        source: IterationSource::Auto,
        confidence: chosen.score,
        auto_path: Some(path),
        coverage: chosen.coverage,
        candidates: named,
        unconvincing: None,
        chosen_from_events: None,
        loops: Vec::new(),
    }
}

fn judge(
    ledger: &Ledger,
    work: &Work,
    busiest: Option<(Image, usize)>,
    path: SiteId,
    opens: Vec<(u64, Image)>,
) -> Candidate {
    let count = opens.len();
    let worker = busiest.map(|(image, _)| image);
    let mut in_work: Vec<(u64, Image)> = opens
        .iter()
        .copied()
        .filter(|(_, image)| Some(*image) == worker)
        .collect();
    if in_work.len() < MIN_REPEATS {
        in_work = opens; // not the working image's loop (see `flaw`); scored as a whole
    }
    in_work.sort_unstable();
    let times: Vec<u64> = in_work.iter().map(|(t, _)| *t).collect();
    let lifetime = in_work
        .iter()
        .filter_map(|(_, image)| image.life(ledger))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        .unwrap_or((times[0], times[times.len() - 1]));
    let timeline = busiest
        .and_then(|(worker, _)| work.of(worker))
        .filter(|_| in_work.iter().all(|(_, image)| Some(*image) == worker))
        .unwrap_or(&work.all);
    let (score, rank, regularity) = score(&times, lifetime, timeline);
    let coverage = coverage(work, &times, 1);
    let by_worker = in_work
        .iter()
        .filter(|(_, image)| Some(*image) == worker)
        .count();
    let flaw = flaw(work, busiest, by_worker, &times);
    Candidate {
        path,
        count,
        times,
        score,
        rank,
        regularity,
        coverage,
        flaw,
    }
}

/// Why these opens do not mark the loop of the run's work, or `None` if they do. The work
/// is the working image's: other processes (a shim's helpers, a runtime's own start-up
/// shims) may do more in all, before the loop, without making the loop less of one.
/// `in_work`: how many of the opens the busiest image made.
pub(super) fn flaw(
    work: &Work,
    busiest: Option<(Image, usize)>,
    in_work: usize,
    times: &[u64],
) -> Option<String> {
    // A path was opened, so some image acquired an fd: there is a busiest one.
    let Some((worker, acquisitions)) = busiest else {
        return Some("was opened, yet no process acquired anything".into());
    };
    if in_work < MIN_REPEATS {
        return Some(format!(
            "is not a loop of the process that does the work (pid {}, which made the most \
             acquisitions, {acquisitions}, opened it {in_work} times)",
            worker.tgid
        ));
    }
    let timeline = work.of(worker).expect("the busiest image has acquisitions");
    let (first, last) = (times[0], times[times.len() - 1]);
    let end = last + median_gap(times);
    // Counted over the whole run: a program exec'd or started after a helper's loop is
    // work after that loop, whichever process made the most acquisitions.
    let tail = work.all.after(end);
    if tail as f64 > MAX_TAIL_SHARE * acquisitions as f64 {
        return Some(format!(
            "stops before the work does: {tail} acquisitions come after its last open, \
             against {acquisitions} by the process that does the work (pid {})",
            worker.tgid
        ));
    }
    let inside = timeline.within(first, end) as f64 / acquisitions as f64;
    if inside < MIN_COVERAGE {
        return Some(format!(
            "marks iterations that hold only {} of the acquisitions of pid {}",
            percent(inside),
            worker.tgid
        ));
    }
    // Judged after warm-up, as the analysis judges: one iteration that holds a big share of
    // the work means the path was opened in bursts around it, not once per iteration. (A
    // long gap with little work in it, the process waiting or descheduled, is harmless:
    // the analysis counts iterations, not time.)
    let steady = &times[times.len() / 10..];
    let steady_work = timeline.between(steady[0], last);
    let heaviest = steady
        .windows(2)
        .map(|w| timeline.between(w[0], w[1]))
        .max()
        .unwrap_or(0);
    if steady_work > 0 && heaviest as f64 > MAX_ITERATION_SHARE * steady_work as f64 {
        return Some(format!(
            "is opened in bursts: one of its iterations holds {} of the acquisitions after \
             warm-up",
            percent(heaviest as f64 / steady_work as f64)
        ));
    }
    None
}

fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// Score = coverage^(1/3) × regularity × repeats, each in 0..=1:
/// - coverage: the opens span the life of the program images that made them (not a burst
///   at start-up), weighted by its cube root, because a loop is often a small part of a
///   run;
/// - regularity: the share of gaps between opens that hold the typical (median) number of
///   acquisitions. A path opened once per iteration cuts the work into equal parts; one
///   opened three times per iteration, or twice at uneven points, does not. Counted in
///   work, not time: the analysis counts iterations, and timing jitters while a loop's
///   acquisitions repeat exactly;
/// - repeats: more repeats, up to [`CONFIDENT_REPEATS`], give a better-founded trend.
///
/// Returns (score, rank, regularity). The score is the reported confidence; candidates
/// are ranked by score × n / (n + [`CONFIDENT_REPEATS`]), so that past the confident
/// number, more repeats still count as more evidence.
pub(super) fn score(times: &[u64], lifetime: (u64, u64), work: &Timeline) -> (f64, f64, f64) {
    let lifetime_len = (lifetime.1 - lifetime.0).max(1) as f64;
    let coverage = ((times[times.len() - 1] - times[0]) as f64 / lifetime_len).min(1.0);
    let regularity = regularity(times, work);
    let n = times.len() as f64;
    let score = coverage.cbrt() * regularity * (n / CONFIDENT_REPEATS).min(1.0);
    (score, score * n / (n + CONFIDENT_REPEATS), regularity)
}

/// The share of gaps between `times` that hold the median number of acquisitions.
pub(super) fn regularity(times: &[u64], work: &Timeline) -> f64 {
    let mut held: Vec<usize> = times.windows(2).map(|w| work.between(w[0], w[1])).collect();
    if held.is_empty() {
        return 0.0;
    }
    let middle = held.len() / 2;
    let median = *held.clone().select_nth_unstable(middle).1;
    held.retain(|&n| n == median);
    held.len() as f64 / (times.len() - 1) as f64
}

/// Whether two paths are opened in lockstep: as often, and alternately (each open of one
/// falls between two opens of the other). They mark the same iterations, so only one of
/// them is named.
fn lockstep(a: &[u64], b: &[u64]) -> bool {
    let alternate = |a: &[u64], b: &[u64]| a.iter().zip(&b[1..]).all(|(x, next_y)| x <= next_y);
    a.len() == b.len() && alternate(a, b) && alternate(b, a)
}
