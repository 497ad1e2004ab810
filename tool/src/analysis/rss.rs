//! Resident memory: the whole resident set's trend, and the part of its growth that no
//! fd, mapping or brk change explains (e.g. a leak inside an allocator's existing arenas).
//!
//! Two rules keep this class honest:
//! - Only processes that live through the judged window count. Memory a short-lived child
//!   held is returned when it exits, so it cannot accumulate across iterations; summing
//!   children that come and go only adds sampling noise (and, once in a while, a false leak).
//! - Resident growth is explained only by *growth* of its possible causes. Mapped and heap
//!   bytes are virtual sizes: a mapping that was never touched is not resident, so freeing
//!   it must not read as resident growth, and a virtual leak can explain at most its own rate.

use super::scales;
use super::series;
use super::trend::{self, Judgement, Verdict};
use crate::iterations::Iterations;
use crate::ledger::Ledger;

#[derive(Debug)]
pub(crate) struct RssClass {
    pub(crate) bytes: Judgement,
    pub(crate) unexplained: Judgement,
    /// The mmap and brk classes' growth per iteration (positive rates only), summed.
    pub(crate) explained_rate: f64,
    pub(crate) samples: usize,
    pub(crate) bytes_at_end: Option<u64>,
    /// Processes whose resident memory was judged (those alive through the window).
    pub(crate) processes: usize,
}

pub(crate) fn rss_class(
    ledger: &Ledger,
    iterations: &Iterations,
    mapped_rate: f64,
    heap_rate: f64,
    doubt: Option<&str>,
) -> RssClass {
    let boundaries = &iterations.boundaries;
    let lasting = lasting_processes(ledger, boundaries);
    let samples: Vec<_> = ledger
        .rss_samples()
        .iter()
        .filter(|s| lasting.contains(&s.tgid))
        .copied()
        .collect();
    let exits: Vec<(u32, u64)> = ledger.exits().collect();
    let totals = series::rss_totals(&samples, &exits, boundaries);
    // Judge from the first boundary with a sample on; rss is sampled, not replayed.
    let start = totals
        .iter()
        .position(Option::is_some)
        .unwrap_or(totals.len());
    let rss: Vec<f64> = totals[start..].iter().map(|v| v.unwrap_or(0.0)).collect();
    let explained_rate = mapped_rate.max(0.0) + heap_rate.max(0.0);
    // Resident memory moves by whatever the program touches at once: a page, or tens of
    // MiB when a runtime's collector or allocator commits its heap. The largest single
    // step in the judged window is the resolution this run actually had.
    let mut scale = scales::resident_bytes();
    scale.resolution = scale.resolution.max(largest_step(&rss));
    let bytes = if rss.len() < 2 && boundaries.len() >= 2 {
        Judgement {
            verdict: Verdict::Inconclusive,
            rate: 0.0,
            why: if ledger.rss_samples().is_empty() {
                "resident memory was not sampled".into()
            } else {
                "no traced process lived through the iterations to sample".into()
            },
            limit: None,
            iterations_needed: None,
        }
    } else {
        trend::judge_sampled(
            &rss,
            &scale,
            doubt,
            trend::Sampling::of(iterations).skipping(start),
        )
    };
    let unexplained = unexplained(&bytes, explained_rate);
    RssClass {
        bytes,
        unexplained,
        explained_rate,
        samples: ledger.rss_samples_taken() as usize,
        bytes_at_end: rss.last().map(|&v| v as u64),
        processes: lasting.len(),
    }
}

/// The largest rise between two consecutive boundaries of the judged window.
fn largest_step(series: &[f64]) -> f64 {
    let start = trend::window_start(series.len());
    series
        .get(start..)
        .unwrap_or(&[])
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0, f64::max)
}

/// The processes alive from the end of warm-up to the last boundary.
fn lasting_processes(ledger: &Ledger, boundaries: &[u64]) -> std::collections::HashSet<u32> {
    let (Some(&last), Some(&from)) = (
        boundaries.last(),
        boundaries.get(trend::warm_up(boundaries.len())),
    ) else {
        return Default::default();
    };
    // Each sampled process once: a long run has millions of samples of a few processes.
    let sampled: std::collections::HashSet<u32> =
        ledger.rss_samples().iter().map(|s| s.tgid).collect();
    sampled
        .into_iter()
        .filter(|&tgid| {
            ledger
                .process_span(tgid)
                .is_some_and(|(first, _)| first <= from)
                && ledger.exit_time(tgid).is_none_or(|exit| exit >= last)
        })
        .collect()
}

/// Resident growth beyond what mapped and heap growth can explain. Only a resident leak can
/// have an unexplained leak; anything else keeps the whole set's verdict.
fn unexplained(total: &Judgement, explained_rate: f64) -> Judgement {
    if total.verdict != Verdict::Leak {
        return Judgement {
            rate: (total.rate - explained_rate).max(0.0),
            ..total.clone()
        };
    }
    let rate = total.rate - explained_rate;
    let limit = total.limit.unwrap_or(0.0);
    if rate > limit {
        Judgement {
            verdict: Verdict::Leak,
            rate,
            why: format!(
                "resident memory rose {}, of which mapping and heap growth explain at most {}",
                per_iteration(total.rate),
                per_iteration(explained_rate)
            ),
            limit: total.limit,
            iterations_needed: None,
        }
    } else {
        Judgement {
            verdict: Verdict::NoLeak,
            rate: rate.max(0.0),
            why: format!(
                "resident growth of {} is explained by mapping and heap growth of {}",
                per_iteration(total.rate),
                per_iteration(explained_rate)
            ),
            limit: total.limit,
            iterations_needed: None,
        }
    }
}

fn per_iteration(bytes: f64) -> String {
    crate::units::per_iteration(crate::units::bytes_rate(bytes))
}
