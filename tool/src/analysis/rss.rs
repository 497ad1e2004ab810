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
    /// The series `bytes` was judged on (the whole resident set).
    pub(crate) series: series::Judged,
    pub(crate) unexplained: Judgement,
    /// The mmap and brk classes' growth per iteration (positive rates only), summed.
    pub(crate) explained_rate: f64,
    pub(crate) samples: usize,
    pub(crate) bytes_at_end: Option<u64>,
    /// Processes whose resident memory was judged (those alive through the window).
    pub(crate) processes: usize,
}

/// `mapped` and `heap`: the mmap and brk classes' byte rates and verdicts, the growth that
/// may explain the resident set's.
pub(crate) fn rss_class(
    ledger: &Ledger,
    iterations: &Iterations,
    mapped: (f64, Verdict),
    heap: (f64, Verdict),
    doubt: Option<&str>,
) -> RssClass {
    let (mapped_rate, heap_rate) = (mapped.0, heap.0);
    // Growth explains resident growth only as far as its own class is sure of it: a
    // mapping class left inconclusive (its bytes grew in one step) confirms nothing.
    let unconfirmed: Vec<&str> = [("mapping", mapped), ("heap", heap)]
        .into_iter()
        .filter(|(_, (rate, verdict))| *rate > 0.0 && *verdict != Verdict::Leak)
        .map(|(name, _)| name)
        .collect();
    let confirmed_rate: f64 = [mapped, heap]
        .into_iter()
        .filter(|(_, verdict)| *verdict == Verdict::Leak)
        .map(|(rate, _)| rate.max(0.0))
        .sum();
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
            basis: None,
        }
    } else {
        trend::judge_sampled(
            &rss,
            &scale,
            doubt,
            trend::Sampling::of(iterations).skipping(start),
        )
    };
    let unexplained = unexplained(&bytes, explained_rate, confirmed_rate, &unconfirmed);
    RssClass {
        series: series::Judged::new(start, &rss),
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
/// have an unexplained leak; anything else keeps the whole set's verdict. `unconfirmed`
/// names the explaining classes that were not judged a leak themselves: when the growth of
/// those judged a leak (`confirmed_rate`) is not enough, the rest is no proof of "no leak",
/// and the class says so (inconclusive).
fn unexplained(
    total: &Judgement,
    explained_rate: f64,
    confirmed_rate: f64,
    unconfirmed: &[&str],
) -> Judgement {
    if total.verdict != Verdict::Leak {
        return Judgement {
            rate: (total.rate - explained_rate).max(0.0),
            ..total.clone()
        };
    }
    let rate = total.rate - explained_rate;
    // How much of the rise may stay unexplained and still count as explained: the run's
    // detection limit, but never half the rise or more. A runtime committing its heap in
    // tens of MiB gives a limit above the rise it was judged a leak on (V8: 31 KiB against
    // 8 KiB per iteration), and "within the limit" would then explain any rise by nothing.
    let slack = total.limit.unwrap_or(0.0).min(0.5 * total.rate);
    if rate > slack {
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
            basis: None,
        }
    } else if total.rate - confirmed_rate > slack && !unconfirmed.is_empty() {
        Judgement {
            verdict: Verdict::Inconclusive,
            rate: rate.max(0.0),
            why: format!(
                "resident memory rose {}, which {} growth of {} could explain, but the {} \
                 class is not sure of that growth itself: run more iterations",
                per_iteration(total.rate),
                unconfirmed.join(" and "),
                per_iteration(explained_rate),
                unconfirmed.join(" and ")
            ),
            limit: total.limit,
            iterations_needed: None,
            basis: None,
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
            basis: None,
        }
    }
}

fn per_iteration(bytes: f64) -> String {
    crate::units::per_iteration(crate::units::bytes_rate(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak(rate: f64) -> Judgement {
        Judgement {
            verdict: Verdict::Leak,
            rate,
            why: "rose".into(),
            limit: Some(2_000.0),
            iterations_needed: None,
            basis: None,
        }
    }

    #[test]
    fn resident_growth_is_explained_only_by_growth_its_class_is_sure_of() {
        // 19 KiB per iteration, of which mappings could explain 18 KiB.
        let total = leak(19_000.0);
        let sure = unexplained(&total, 18_000.0, 18_000.0, &[]);
        assert_eq!(sure.verdict, Verdict::NoLeak, "{}", sure.why);
        // The mapping class grew in one step and is inconclusive itself (a V8 heap).
        let unsure = unexplained(&total, 18_000.0, 0.0, &["mapping"]);
        assert_eq!(unsure.verdict, Verdict::Inconclusive, "{}", unsure.why);
        assert!(
            unsure.why.contains("mapping class is not sure"),
            "{}",
            unsure.why
        );
        // Unexplained growth is a leak whatever the other classes say.
        let alone = unexplained(&total, 1_000.0, 0.0, &["mapping"]);
        assert_eq!(alone.verdict, Verdict::Leak, "{}", alone.why);
        // A confirmed leak that explains enough makes an unsure one beside it irrelevant.
        let both = unexplained(&total, 18_500.0, 18_000.0, &["heap"]);
        assert_eq!(both.verdict, Verdict::NoLeak, "{}", both.why);
    }

    #[test]
    fn a_rise_below_a_coarse_limit_is_not_explained_by_nothing() {
        // A V8 heap: resident memory judged a leak at 8 KiB per iteration, with a limit of
        // 31 KiB (the collector's steps are tens of MiB), and the mapping class unsure of
        // its own 5 KiB.
        let total = Judgement {
            limit: Some(31_000.0),
            ..leak(8_000.0)
        };
        let unsure = unexplained(&total, 5_000.0, 0.0, &["mapping"]);
        assert_eq!(unsure.verdict, Verdict::Inconclusive, "{}", unsure.why);
        // More than half of it unexplained: a resident leak, whatever the limit.
        let most = unexplained(&total, 3_000.0, 0.0, &["mapping"]);
        assert_eq!(most.verdict, Verdict::Leak, "{}", most.why);
        // Nothing to explain it: the rise is a resident leak.
        let alone = unexplained(&total, 0.0, 0.0, &[]);
        assert_eq!(alone.verdict, Verdict::Leak, "{}", alone.why);
        // Confirmed growth that covers it does explain it.
        let covered = unexplained(&total, 7_000.0, 7_000.0, &[]);
        assert_eq!(covered.verdict, Verdict::NoLeak, "{}", covered.why);
    }
}
