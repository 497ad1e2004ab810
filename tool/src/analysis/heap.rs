//! The brk heap: bytes the break grew by, judged per iteration, and the call sites that
//! grew it. brk has no records, so growth is summed by the stack that asked for it.

use std::collections::HashMap;

use super::failures::{self, Failures};
use super::limits::{self, LimitHit};
use super::trend::{self, Judgement};
use super::{scales, series};
use crate::iterations::Iterations;
use crate::ledger::sites::SiteId;
use crate::ledger::{ClassKind, Ledger};

/// Sites whose heap growth is shown; enough to see the one that matters.
const HEAP_SITES_SHOWN: usize = 5;

#[derive(Debug)]
pub(crate) struct HeapClass {
    pub(crate) bytes: Judgement,
    /// The series `bytes` was judged on.
    pub(crate) series: series::Judged,
    pub(crate) live_bytes_at_end: i64,
    /// The step the break moved by (what limits the detection of small leaks).
    pub(crate) step: f64,
    pub(crate) limit_hit: Option<LimitHit>,
    /// Where the heap grew during the iterations, most bytes first.
    pub(crate) sites: Vec<HeapSite>,
    /// brk calls that could not grow the heap (ENOMEM).
    pub(crate) failures: Failures,
}

/// Heap growth attributed to one call site.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HeapSite {
    pub(crate) site: SiteId,
    /// Bytes the break grew by from this site during the iterations.
    pub(crate) bytes: u64,
    pub(crate) bytes_per_iteration: f64,
    /// Of `bytes`, those grown by calls recorded without a stack (see
    /// [`super::sites::stack_owners`]).
    pub(crate) without_stack: u64,
}

pub(crate) fn heap_class(
    ledger: &Ledger,
    iterations: &Iterations,
    doubt: Option<&str>,
) -> HeapClass {
    let heap_bytes = series::byte_totals(ledger.heap_byte_changes(), &iterations.boundaries);
    let scale = scales::heap_bytes(ledger);
    let plain = trend::judge_sampled(&heap_bytes, &scale, doubt, trend::Sampling::of(iterations));
    let limit_hit = limits::first_hit(
        (
            ledger.failed_acquisitions(),
            ledger.folded_limit_failures(ClassKind::Heap),
        ),
        ClassKind::Heap,
        iterations,
        &heap_bytes,
    );
    let bytes = match &limit_hit {
        Some(hit) => limits::judge_pinned(&heap_bytes, &scale, hit, &plain, doubt),
        None => plain,
    };
    HeapClass {
        bytes,
        series: series::Judged::new(0, &heap_bytes),
        live_bytes_at_end: heap_bytes.last().copied().unwrap_or(0.0) as i64,
        step: scale.resolution,
        limit_hit,
        sites: heap_sites(ledger, iterations),
        failures: failures::of_class(ledger, iterations, ClassKind::Heap),
    }
}

fn heap_sites(ledger: &Ledger, iterations: &Iterations) -> Vec<HeapSite> {
    let (Some(first), Some(last)) = (iterations.first(), iterations.last()) else {
        return Vec::new();
    };
    let in_loop = |g: &&crate::ledger::HeapGrowth| g.time_ns >= first && g.time_ns < last;
    let owners = super::sites::stack_owners(
        ledger.sites(),
        ledger.heap_growth().iter().filter(in_loop).map(|g| g.site),
    );
    let mut by_site: HashMap<SiteId, (u64, u64)> = HashMap::new();
    for growth in ledger.heap_growth().iter().filter(in_loop) {
        let (site, unstacked) = match owners.get(&growth.site) {
            Some(&owner) => (owner, growth.bytes),
            None => (growth.site, 0),
        };
        let entry = by_site.entry(site).or_default();
        entry.0 += growth.bytes;
        entry.1 += unstacked;
    }
    let spanned = iterations.count().saturating_sub(1).max(1) as f64;
    let mut sites: Vec<HeapSite> = by_site
        .into_iter()
        .map(|(site, (bytes, without_stack))| HeapSite {
            site,
            bytes,
            bytes_per_iteration: bytes as f64 / spanned,
            without_stack,
        })
        .collect();
    let keys = ledger.sites();
    sites.sort_by(|a, b| {
        (b.bytes.cmp(&a.bytes)).then_with(|| keys.key(a.site).cmp(keys.key(b.site)))
    });
    sites.truncate(HEAP_SITES_SHOWN);
    sites
}
