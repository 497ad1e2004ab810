//! A class pinned at a limit. A program that leaks an fd per iteration stops leaking when
//! it reaches RLIMIT_NOFILE: every later open fails with EMFILE and the live count stays
//! flat. Judged on the count alone that is "grew, then stopped": a plateau. It is a leak
//! that ran into a wall, and the failed calls are the evidence.

use super::trend::{self, Judgement, Sampling, Scale, Verdict};
use crate::iterations::Iterations;
use crate::ledger::{ClassKind, FailedAcquisition};
use leakscope_common::syscalls;

const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
const ENOMEM: i32 = 12;

/// Whether `errno` means "this class is out of room" rather than a bad argument.
pub(crate) fn is_limit(class: ClassKind, errno: i32) -> bool {
    match class {
        ClassKind::Fd => errno == EMFILE || errno == ENFILE,
        ClassKind::Mapping | ClassKind::Heap => errno == ENOMEM,
        // A full disk or quota; inotify's max_user_watches also fails with ENOSPC.
        ClassKind::File => syscalls::is_out_of_room(errno.into()),
        ClassKind::Watch => i64::from(errno) == syscalls::ENOSPC,
    }
}

/// When the class first hit its limit during the iterations, and how often it failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LimitHit {
    pub(crate) errno: i32,
    /// The iteration the first limit failure fell in.
    pub(crate) iteration: usize,
    /// The judged boundary it fell after: its index in the class's series.
    pub(crate) point: usize,
    /// How those series' points stand for iterations.
    pub(crate) sampling: Sampling,
    /// Limit failures from then on.
    pub(crate) failures: u64,
    /// The class's live amount at the boundary before the first failure.
    pub(crate) level: f64,
}

/// `folded_later`: limit failures after the first one that the ledger only counted.
pub(crate) fn first_hit(
    (failures, folded_later): (&[FailedAcquisition], u64),
    class: ClassKind,
    iterations: &Iterations,
    series: &[f64],
) -> Option<LimitHit> {
    let first_boundary = iterations.first()?;
    let mut hits = failures
        .iter()
        .filter(|f| f.class == class && is_limit(class, f.errno) && f.time_ns >= first_boundary);
    let first = hits.next()?;
    let point = usize::try_from(iterations.index_at(first.time_ns)).ok()?;
    Some(LimitHit {
        errno: first.errno,
        iteration: usize::try_from(iterations.iteration_at(first.time_ns)).unwrap_or(0),
        point,
        sampling: Sampling::of(iterations),
        failures: 1 + hits.count() as u64 + folded_later,
        level: series.get(point).copied().unwrap_or(0.0),
    })
}

/// Re-judges a class that hit its limit: the growth before the first failure decides. A
/// sustained rise up to the wall is a leak at the rate it rose; anything else keeps the
/// plain verdict.
pub(crate) fn judge_pinned(
    series: &[f64],
    scale: &Scale,
    hit: &LimitHit,
    plain: &Judgement,
    doubt: Option<&str>,
) -> Judgement {
    if plain.verdict == Verdict::Leak || doubt.is_some() {
        return plain.clone();
    }
    let before = &series[..=hit.point.min(series.len().saturating_sub(1))];
    let growth = trend::judge_sampled(
        before,
        scale,
        None,
        hit.sampling.prefix(before.len(), series.len()),
    );
    let from = trend::warm_up(before.len());
    let rose = before.last().copied().unwrap_or(0.0) - before.get(from).copied().unwrap_or(0.0);
    // A short climb (the limit came early) is too few boundaries for the stretch tests;
    // it still counts when it rose steadily by more than the floor.
    let steady_climb =
        before.len() >= 3 && rose >= scale.floor && before.windows(2).all(|w| w[1] >= w[0]);
    if growth.verdict != Verdict::Leak && !steady_climb {
        return plain.clone();
    }
    // The line drawn for it: the fit of the climb, or the steady climb itself.
    let (rate, basis) = if growth.verdict == Verdict::Leak {
        (growth.rate, growth.basis)
    } else {
        let per_point = rose / (before.len() - 1 - from).max(1) as f64;
        let basis = trend::Basis {
            warm_up: from,
            window: from..before.len(),
            line: trend::Line {
                at_start: before.get(from).copied().unwrap_or(0.0),
                slope: per_point,
            },
        };
        (per_point / hit.sampling.stride.max(1) as f64, Some(basis))
    };
    Judgement {
        verdict: Verdict::Leak,
        rate,
        why: format!(
            "rose {} until it hit the limit at iteration {} ({} live); {} calls failed with {} after it",
            scale.unit.rate(rate),
            hit.iteration,
            // This series' own level: the bytes of a class pinned by its count are not
            // the count `hit.level` holds.
            scale
                .unit
                .amount(before.last().copied().unwrap_or(hit.level)),
            crate::units::grouped(hit.failures),
            errno_name(hit.errno)
        ),
        limit: plain.limit,
        iterations_needed: None,
        basis,
    }
}

/// "EMFILE", "ENOMEM", ...
pub(crate) fn errno_name(errno: i32) -> String {
    super::failures::errno_name(errno)
}
