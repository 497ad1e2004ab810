//! `--heap`: the allocator's live bytes, judged per iteration, and the callers of what
//! survived. (The brk heap is `heap.rs`: the break, which a small leak never moves.)
//!
//! The series is exact: the kernel pairs every allocation with its free and keeps each
//! process's live totals, which the iteration marker carries (see `ebpf/src/heap.rs`). So
//! freeing everything gives a flat series, whatever the allocator does with its arenas.

use super::lifetimes::Lifetimes;
use super::trend::{self, Judgement, Scale, Unit, Verdict};
use super::{scales, series};
use crate::iterations::Iterations;
use crate::ledger::Ledger;

/// Callers shown; enough to see the one that matters.
const SITES_SHOWN: usize = 5;

/// Allocator bytes move by the block: a rise smaller than a few blocks over the judged
/// window is no growth.
pub(crate) fn allocated_bytes() -> Scale {
    Scale {
        floor: 256.0,
        resolution: 1.0,
        meaningful: scales::SMALLEST_BYTES_WORTH_RULING_OUT,
        unit: Unit::Bytes,
    }
}

#[derive(Debug)]
pub(crate) struct AllocClass {
    pub(crate) bytes: Judgement,
    pub(crate) count: Judgement,
    /// The series `bytes` and `count` were judged on.
    pub(crate) bytes_series: series::Judged,
    pub(crate) count_series: series::Judged,
    /// The worse of the two.
    pub(crate) verdict: Verdict,
    /// Live at the last iteration boundary (`None` before any marker).
    pub(crate) live_bytes_at_end: Option<u64>,
    pub(crate) live_count_at_end: Option<u64>,
    /// Allocations whose free was never seen: their address came back from the allocator
    /// while still live (a free through an entry point leakscope does not trace).
    pub(crate) missed_frees: u64,
    /// Allocations the kernel could not record (its live map was full).
    pub(crate) unrecorded: u64,
    /// Frees of allocations made before an earlier iteration marker.
    pub(crate) late_frees: u64,
    /// Callers of the allocations made inside the iterations and still live at the end,
    /// most bytes first.
    pub(crate) sites: Vec<AllocSite>,
    /// How long the freed blocks lived (counted in the kernel, to 1/16 of a value; in
    /// iterations only when the iteration marker counted them).
    pub(crate) lifetimes: Lifetimes,
}

/// Allocations of one caller made inside the iterations and never freed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AllocSite {
    /// The function that called the allocator, or its address when it has no name.
    pub(crate) function: String,
    /// The caller lies in a system library (libc's strdup, libstdc++): the program's own
    /// frame is further up.
    pub(crate) system: bool,
    /// The site's frames from its sampled stacks (from the program's first frame on), or
    /// the caller's, innermost inlined function first (empty when unknown).
    pub(crate) frames: Vec<crate::stacks::Frame>,
    /// The library and runtime frames above `frames` in the sampled stacks (empty for a
    /// caller named by its pc alone).
    pub(crate) folded: crate::stacks::Folded,
    /// Of `count`, the allocations with no stack of their own, apportioned to this site
    /// among its caller's sampled sites.
    pub(crate) without_stack: u64,
    pub(crate) tgid: u32,
    pub(crate) count: u64,
    pub(crate) bytes: u64,
    pub(crate) bytes_per_iteration: f64,
    pub(crate) allocations_per_iteration: f64,
}

/// The class, when `--heap` traced the allocator (`None` otherwise).
pub(crate) fn alloc_class(
    ledger: &Ledger,
    iterations: &Iterations,
    doubt: Option<&str>,
) -> Option<AllocClass> {
    if ledger.heap_snapshot().is_none() && ledger.alloc_byte_samples().is_empty() {
        return None;
    }
    let (missed_frees, unrecorded) = match ledger.heap_snapshot() {
        Some(snapshot) => snapshot
            .totals
            .values()
            .fold((0, 0), |(m, u), t| (m + t.missed_frees, u + t.unrecorded)),
        None => ledger.alloc_doubts(),
    };
    let late_frees = ledger
        .heap_snapshot()
        .map_or(0, |s| s.totals.values().map(|t| t.late_frees).sum());
    let unrecorded_doubt = (unrecorded > 0).then(|| {
        format!("{unrecorded} allocations found the kernel's live-allocation map full and were not counted")
    });
    let unfollowed = ledger.heap_snapshot().map_or(0, |s| s.unfollowed);
    let unfollowed_doubt = (unfollowed > 0).then(|| {
        format!("{unfollowed} traced processes were not followed with the allocator probes (too many at once)")
    });
    let dropped = ledger.heap_snapshot().map_or(0, |s| s.dropped);
    let dropped_doubt = (dropped > 0).then(|| {
        format!(
            "{dropped} allocator calls could not be recorded in the kernel (its maps were full)"
        )
    });
    let doubt = doubt
        .or(unrecorded_doubt.as_deref())
        .or(dropped_doubt.as_deref())
        .or(unfollowed_doubt.as_deref());
    let exits: Vec<(u32, u64)> = ledger.exits().collect();
    let judge = |samples, scale: &Scale| {
        let totals = series::rss_totals(samples, &exits, &iterations.boundaries);
        let start = totals
            .iter()
            .position(Option::is_some)
            .unwrap_or(totals.len());
        let values: Vec<f64> = totals[start..].iter().map(|v| v.unwrap_or(0.0)).collect();
        let judgement = if values.len() < 2 && iterations.boundaries.len() >= 2 {
            Judgement {
                verdict: Verdict::Inconclusive,
                rate: 0.0,
                why: "the allocator's totals were not sampled through the iterations".into(),
                limit: None,
                iterations_needed: None,
                basis: None,
            }
        } else {
            trend::judge_sampled(
                &values,
                scale,
                doubt,
                trend::Sampling::of(iterations).skipping(start),
            )
        };
        let at_end = values.last().map(|&v| v as u64);
        (judgement, at_end, series::Judged::new(start, &values))
    };
    let (bytes, live_bytes_at_end, bytes_series) =
        judge(ledger.alloc_byte_samples(), &allocated_bytes());
    let (count, live_count_at_end, count_series) =
        judge(ledger.alloc_count_samples(), &scales::COUNT);
    Some(AllocClass {
        verdict: bytes.verdict.worst(count.verdict),
        bytes,
        count,
        bytes_series,
        count_series,
        live_bytes_at_end,
        live_count_at_end,
        missed_frees,
        unrecorded,
        late_frees,
        sites: sites(ledger, iterations),
        lifetimes: lifetimes(ledger),
    })
}

/// The kernel's lifetime counts of freed blocks. Its iteration clock is the marker's
/// count, so without a marker every block would seem to live 0 iterations: those are left
/// out then.
fn lifetimes(ledger: &Ledger) -> Lifetimes {
    let mut lifetimes = Lifetimes::default();
    if let Some(snapshot) = ledger.heap_snapshot() {
        let marked = snapshot.totals.values().any(|t| t.iteration > 0);
        let iterations = if marked {
            &snapshot.freed_iterations[..]
        } else {
            &[]
        };
        lifetimes.record_buckets(&snapshot.freed_ns, iterations);
    }
    lifetimes
}

fn sites(ledger: &Ledger, iterations: &Iterations) -> Vec<AllocSite> {
    let Some(snapshot) = ledger.heap_snapshot() else {
        return Vec::new();
    };
    let mut sites: Vec<AllocSite> = snapshot
        .survivors
        .iter()
        .filter_map(|s| {
            let markers = snapshot.totals.get(&s.tgid).map_or(0, |t| t.iteration);
            // With markers: made after the first and before the last (over markers - 1
            // iterations), exactly. Without: made between the first and the last boundary,
            // to a stretch of the run.
            let (count, bytes, spanned) = if markers >= 2 {
                (s.in_loop_count, s.in_loop_bytes, markers - 1)
            } else {
                let (first, last) = (iterations.first()?, iterations.last()?);
                let (count, bytes) = s
                    .by_time
                    .iter()
                    .filter(|&(&bucket, _)| {
                        let (lo, hi) = snapshot.bucket_range(bucket);
                        let middle = lo + (hi - lo) / 2;
                        first <= middle && middle < last
                    })
                    .fold((0, 0), |(c, b), (_, &(dc, db))| (c + dc, b + db));
                (count, bytes, iterations.count().saturating_sub(1) as u64)
            };
            let spanned = spanned.max(1) as f64;
            (count > 0).then(|| AllocSite {
                function: s
                    .function
                    .clone()
                    .unwrap_or_else(|| format!("{:#x}", s.caller)),
                system: s.system,
                frames: s.frames.clone(),
                folded: s
                    .site
                    .as_ref()
                    .map_or_else(Default::default, |site| site.folded.clone()),
                // Only the iterations' blocks are counted with markers; without, the
                // apportioned share of the stretch counted.
                without_stack: s.without_stack.min(count),
                tgid: s.tgid,
                count,
                bytes,
                bytes_per_iteration: bytes as f64 / spanned,
                allocations_per_iteration: count as f64 / spanned,
            })
        })
        .collect();
    sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.function.cmp(&b.function)));
    sites.truncate(SITES_SHOWN);
    sites
}

#[cfg(test)]
#[path = "heap_alloc_tests.rs"]
mod tests;
