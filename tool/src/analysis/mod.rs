//! The analysis: from a ledger and iteration boundaries to per-class facts (counts, rates,
//! verdicts, sites, lifetimes). Pure; the report only formats what this computes.

pub mod lifetimes;
pub mod series;
pub mod sites;
pub mod trend;

use lifetimes::Lifetimes;
use sites::Site;
use trend::{Judgement, Verdict};

use crate::iterations::Iterations;
use crate::ledger::Ledger;
use crate::ledger::records::{NEVER, Origin, Records};

/// The smallest rise over the judged window that may count as growth, per unit. One
/// resource or one page is too little to call sustained.
pub const COUNT_FLOOR: f64 = 2.0;
pub const MAP_BYTES_FLOOR: f64 = 8192.0;
pub const HEAP_BYTES_FLOOR: f64 = 8192.0;
/// Resident memory jitters by allocator and page-cache effects; less than this is noise.
pub const RSS_BYTES_FLOOR: f64 = 256.0 * 1024.0;

/// fds or mappings.
#[derive(Debug)]
pub struct ResourceClass {
    /// Acquisitions seen (fork copies included: they are new table entries; resources
    /// from before tracing are not).
    pub acquired: u64,
    /// Releases seen of those, teardown included.
    pub released: u64,
    /// Live at the last iteration boundary (what teardown frees later is still counted).
    pub live_at_end: u64,
    /// Live when tracing stopped.
    pub live_at_exit: u64,
    pub count: Judgement,
    /// Mapped bytes (mappings only).
    pub bytes: Option<Judgement>,
    pub live_bytes_at_end: Option<u64>,
    pub verdict: Verdict,
    /// Lifetimes of released resources that were not retained across iterations.
    pub lifetimes: Lifetimes,
    pub sites: Vec<Site>,
}

/// The brk heap.
#[derive(Debug)]
pub struct HeapClass {
    pub bytes: Judgement,
    pub live_bytes_at_end: i64,
    /// Where the heap grew during the iterations, most bytes first.
    pub sites: Vec<HeapSite>,
}

/// Heap growth attributed to one call site (brk has no records, so growth is summed by
/// the stack that asked for it).
#[derive(Clone, Debug, PartialEq)]
pub struct HeapSite {
    pub site: String,
    pub bytes: u64,
    pub bytes_per_iteration: f64,
}

/// Sites whose heap growth is shown; enough to see the one that matters.
const HEAP_SITES_SHOWN: usize = 5;

fn heap_sites(ledger: &Ledger, iterations: &Iterations) -> Vec<HeapSite> {
    let (Some(first), Some(last)) = (iterations.first(), iterations.last()) else {
        return Vec::new();
    };
    let mut by_site: std::collections::HashMap<crate::ledger::sites::SiteId, u64> =
        Default::default();
    for growth in ledger
        .heap_growth()
        .iter()
        .filter(|g| g.time_ns >= first && g.time_ns < last)
    {
        *by_site.entry(growth.site).or_default() += growth.bytes;
    }
    let spanned = iterations.count().saturating_sub(1).max(1) as f64;
    let mut sites: Vec<HeapSite> = by_site
        .into_iter()
        .map(|(site, bytes)| HeapSite {
            site: ledger.sites().name(site).to_string(),
            bytes,
            bytes_per_iteration: bytes as f64 / spanned,
        })
        .collect();
    sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.site.cmp(&b.site)));
    sites.truncate(HEAP_SITES_SHOWN);
    sites
}

/// Resident memory, and the part of its growth that fds, mappings and the heap do not
/// explain (e.g. leaks inside an allocator's existing arenas).
#[derive(Debug)]
pub struct RssClass {
    pub bytes: Judgement,
    pub unexplained: Judgement,
    /// The mmap and brk classes' bytes per iteration, summed.
    pub explained_rate: f64,
    pub samples: usize,
    pub bytes_at_end: Option<u64>,
}

#[derive(Debug)]
pub struct Analysis {
    pub fd: ResourceClass,
    pub mmap: ResourceClass,
    pub brk: HeapClass,
    pub rss: RssClass,
}

pub fn analyze(ledger: &Ledger, iterations: &Iterations, lost_events: u64) -> Analysis {
    let doubt = doubt(iterations, lost_events).or_else(|| unread_deliveries(ledger));
    let lost_events = doubt.as_deref();
    let boundaries = &iterations.boundaries;
    let map_bytes = series::byte_totals(ledger.map_byte_changes(), boundaries);
    let heap_bytes = series::byte_totals(ledger.heap_byte_changes(), boundaries);

    let fd = resource_class(ledger, ledger.fd_records(), iterations, lost_events, None);
    let mmap = resource_class(
        ledger,
        ledger.map_records(),
        iterations,
        lost_events,
        Some(&map_bytes),
    );
    let brk = HeapClass {
        bytes: trend::judge_bytes(&heap_bytes, HEAP_BYTES_FLOOR, lost_events),
        live_bytes_at_end: heap_bytes.last().copied().unwrap_or(0.0) as i64,
        sites: heap_sites(ledger, iterations),
    };
    let explained_rate = mmap.bytes.as_ref().map_or(0.0, |b| b.rate) + brk.bytes.rate;
    let rss = rss_class(
        ledger,
        iterations,
        &map_bytes,
        &heap_bytes,
        explained_rate,
        lost_events,
    );
    Analysis { fd, mmap, brk, rss }
}

/// Why no verdict of this run can be trusted, if one cannot: every class is then
/// inconclusive with this reason.
fn doubt(iterations: &Iterations, lost_events: u64) -> Option<String> {
    if lost_events > 0 {
        return Some(format!(
            "{lost_events} events were lost; a lost release looks like a leak"
        ));
    }
    iterations.unconvincing.clone()
}

/// Received fds the kernel could not copy (control data past its cap, recvmmsg messages
/// past its cap) are fds the ledger never saw: a leak of them would pass unseen.
fn unread_deliveries(ledger: &Ledger) -> Option<String> {
    let unread = ledger.unread_deliveries();
    (unread > 0).then(|| {
        format!("{unread} fd deliveries (received control messages or pidfds) could not be read in full; fds may be missing from the ledger")
    })
}

fn resource_class(
    ledger: &Ledger,
    records: &Records,
    iterations: &Iterations,
    lost_events: Option<&str>,
    map_bytes: Option<&[f64]>,
) -> ResourceClass {
    let traced = || records.all().iter().filter(|r| r.origin != Origin::Seeded);
    let live_counts = series::live_counts(records, &iterations.boundaries);
    let count = trend::judge(&live_counts, COUNT_FLOOR, lost_events);
    let bytes = map_bytes.map(|series| trend::judge_bytes(series, MAP_BYTES_FLOOR, lost_events));
    let verdict = bytes
        .as_ref()
        .map_or(count.verdict, |b| count.verdict.worst(b.verdict));

    let mut lifetimes = Lifetimes::default();
    for record in traced().filter(|r| r.released_ns != NEVER) {
        if !sites::retained(record.born_ns, record.released_ns, iterations) {
            let ns = record.released_ns.saturating_sub(record.origin_ns);
            let crossed =
                iterations.index_at(record.released_ns) - iterations.index_at(record.origin_ns);
            lifetimes.record(ns, crossed.max(0) as u64);
        }
    }
    let last = iterations.last().unwrap_or(u64::MAX);
    let record_bytes = map_bytes.map(|_| sites::bytes_by_record(ledger.map_byte_changes(), last));
    ResourceClass {
        acquired: traced().count() as u64,
        released: traced().filter(|r| r.released_ns != NEVER).count() as u64,
        live_at_end: live_counts.last().map_or_else(
            || records.all().iter().filter(|r| r.is_live()).count() as u64,
            |&v| v as u64,
        ),
        live_at_exit: records.all().iter().filter(|r| r.is_live()).count() as u64,
        count,
        bytes,
        live_bytes_at_end: map_bytes
            .and_then(|series| series.last())
            .map(|&v| v.max(0.0) as u64),
        verdict,
        lifetimes,
        sites: sites::retained_sites(
            records,
            ledger.sites(),
            iterations,
            record_bytes.as_ref(),
            lost_events,
        ),
    }
}

fn rss_class(
    ledger: &Ledger,
    iterations: &Iterations,
    map_bytes: &[f64],
    heap_bytes: &[f64],
    explained_rate: f64,
    lost_events: Option<&str>,
) -> RssClass {
    let exits: Vec<(u32, u64)> = ledger.exits().collect();
    let totals = series::rss_totals(ledger.rss_samples(), &exits, &iterations.boundaries);
    // Judge from the first boundary with a sample on; rss is sampled, not replayed.
    let start = totals
        .iter()
        .position(Option::is_some)
        .unwrap_or(totals.len());
    let rss: Vec<f64> = totals[start..].iter().map(|v| v.unwrap_or(0.0)).collect();
    let unexplained: Vec<f64> = rss
        .iter()
        .zip(&map_bytes[start..])
        .zip(&heap_bytes[start..])
        .map(|((r, m), h)| r - m - h)
        .collect();
    RssClass {
        bytes: trend::judge_bytes(&rss, RSS_BYTES_FLOOR, lost_events),
        unexplained: trend::judge_bytes(&unexplained, RSS_BYTES_FLOOR, lost_events),
        explained_rate,
        samples: ledger.rss_samples().len(),
        bytes_at_end: rss.last().map(|&v| v as u64),
    }
}

#[cfg(test)]
mod tests;
