//! The analysis: from a ledger and iteration boundaries to per-class facts (counts, rates,
//! verdicts with their detection limits, sites, lifetimes). Pure; the report only formats
//! what this computes.

pub(crate) mod failures;
pub(crate) mod file_bytes;
pub(crate) mod files_gone;
pub(crate) mod heap;
pub(crate) mod heap_alloc;
mod judgement;
pub(crate) mod lifetimes;
pub(crate) mod limits;
mod process_loops;
pub(crate) mod rss;
pub(crate) mod scales;
pub(crate) mod series;
mod shared_tables;
mod shm;
pub(crate) mod sites;
pub(crate) mod trend;
mod unseen_fds;

use failures::Failures;
pub(crate) use heap::{HeapClass, HeapSite};
use lifetimes::Lifetimes;
pub(crate) use rss::RssClass;
use sites::Site;
use trend::{Judgement, Scale, Verdict};

use std::collections::HashSet;

pub(crate) use file_bytes::FileSizes;

use crate::iterations::Iterations;
use crate::ledger::records::{NEVER, Origin, RecordId, Records};
use crate::ledger::{ByteChange, ClassKind, Ledger};

/// What the analysis needs to know about the run besides the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunFacts {
    /// Events the kernel could not deliver: the ledger misses them.
    pub(crate) lost_events: u64,
    /// Sizes of the entries on disk still live when tracing ended.
    pub(crate) file_sizes: FileSizes,
}

/// fds or mappings.
#[derive(Debug)]
pub(crate) struct ResourceClass {
    /// Acquisitions seen (fork copies included: they are new table entries; resources
    /// from before tracing are not).
    pub(crate) acquired: u64,
    /// Releases seen of those, teardown included.
    pub(crate) released: u64,
    /// Live at the last iteration boundary (what teardown frees later is still counted).
    pub(crate) live_at_end: u64,
    /// Live when tracing stopped.
    pub(crate) live_at_exit: u64,
    pub(crate) count: Judgement,
    /// Mapped bytes (mappings), bytes on disk (files).
    pub(crate) bytes: Option<Judgement>,
    /// The series `count` and `bytes` were judged on.
    pub(crate) count_series: series::Judged,
    pub(crate) bytes_series: Option<series::Judged>,
    pub(crate) live_bytes_at_end: Option<u64>,
    pub(crate) verdict: Verdict,
    /// Set when the class ran into its limit (EMFILE, ENOMEM) during the iterations.
    pub(crate) limit_hit: Option<limits::LimitHit>,
    /// Lifetimes of released resources that were not retained across iterations.
    pub(crate) lifetimes: Lifetimes,
    pub(crate) sites: Vec<Site>,
    /// Calls that tried to acquire one and failed (EMFILE, ENOMEM, ...), by errno.
    pub(crate) failures: Failures,
    /// Files only: entries counted live that were gone from disk when tracing ended.
    pub(crate) removed_unseen: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Analysis {
    pub(crate) fd: ResourceClass,
    pub(crate) mmap: ResourceClass,
    pub(crate) brk: HeapClass,
    pub(crate) rss: RssClass,
    /// Entries on disk created and not removed (temporary files, directories, links).
    pub(crate) files: ResourceClass,
    /// inotify watches and fanotify marks.
    pub(crate) watches: ResourceClass,
    /// `--heap`: the allocator's live bytes (`None` without it).
    pub(crate) heap: Option<heap_alloc::AllocClass>,
}

pub(crate) fn analyze(ledger: &Ledger, iterations: &Iterations, facts: &RunFacts) -> Analysis {
    let doubt = doubt(iterations, facts.lost_events)
        .or_else(|| unread_deliveries(ledger))
        .or_else(|| late_boundaries(ledger));
    let doubt = doubt.as_deref();
    let boundaries = &iterations.boundaries;
    let map_bytes = series::byte_totals_with_folded(
        ledger.map_byte_changes(),
        boundaries,
        &ledger.map_records().folded().bytes,
    );

    let no_resizes = HashSet::new();
    // What a process holds is judged across iterations of one process: loops in
    // processes that end one after another restart it (see `process_loops`).
    let held_doubt = doubt_or(doubt, || {
        process_loops::doubt(ledger, &iterations.loops, &iterations.boundaries)
    });
    let held_doubt = held_doubt.as_deref();
    let fd_table_doubt = doubt_or(held_doubt, || shared_tables::fd_doubt(ledger));
    let memory_doubt = doubt_or(held_doubt, || shared_tables::memory_doubt(ledger));
    let memory_doubt = memory_doubt.as_deref();
    // Fds installed or closed where no probe looks (an io_uring) leave the fds alone in
    // doubt: watches and files are not made that way.
    let fd_doubt = doubt_or(fd_table_doubt.as_deref(), || unseen_fds::doubt(ledger));
    let fd = resource_class(
        ledger,
        Kind::Fd,
        ledger.fd_records(),
        iterations,
        fd_doubt.as_deref(),
        None,
    );
    // Attached SysV segments are address space the mapping class does not count.
    let mmap_doubt = doubt_or(memory_doubt, || shm::doubt(ledger, iterations));
    let mmap = resource_class(
        ledger,
        Kind::Mapping,
        ledger.map_records(),
        iterations,
        mmap_doubt.as_deref(),
        Some(ClassBytes {
            changes: ledger.map_byte_changes(),
            series: &map_bytes,
            resized: ledger.resized_mappings(),
            scale: scales::mapped_bytes(),
        }),
    );
    let brk = heap::heap_class(ledger, iterations, memory_doubt);
    let mapped = mmap
        .bytes
        .as_ref()
        .map_or((0.0, Verdict::NoLeak), |b| (b.rate, b.verdict));
    let rss = rss::rss_class(
        ledger,
        iterations,
        mapped,
        (brk.bytes.rate, brk.bytes.verdict),
        memory_doubt,
    );
    let file_doubt = doubt_or(doubt, || file_bytes::doubt(ledger));
    let file_changes = file_bytes::changes(ledger, &facts.file_sizes);
    let file_series = series::byte_totals_with_folded(
        &file_changes,
        boundaries,
        &ledger.file_records().folded().bytes,
    );
    let judge_files = |records: &Records| {
        resource_class(
            ledger,
            Kind::File,
            records,
            iterations,
            file_doubt.as_deref(),
            Some(ClassBytes {
                changes: &file_changes,
                series: &file_series,
                resized: &no_resizes,
                scale: scales::file_bytes(),
            }),
        )
    };
    let mut files = judge_files(ledger.file_records());
    let gone = &facts.file_sizes.gone;
    if files.verdict == Verdict::Leak && !gone.is_empty() {
        let surviving = files_gone::without(ledger.file_records(), gone);
        files = files_gone::settle(files, judge_files(&surviving));
    }
    files.removed_unseen = Some(facts.file_sizes.removed_unseen());
    if let Some(note) = file_bytes::removed_unseen_note(&facts.file_sizes) {
        files.count.why = format!("{}; {note}", files.count.why);
    }
    // Watches live on fds: a shared table hides their releases as it hides the fds'.
    let watches = resource_class(
        ledger,
        Kind::Watch,
        ledger.watch_records(),
        iterations,
        fd_table_doubt.as_deref(),
        None,
    );
    let heap = heap_alloc::alloc_class(ledger, iterations, held_doubt);
    Analysis {
        heap,
        fd,
        mmap,
        brk,
        rss,
        files,
        watches,
    }
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
/// The run's own doubt, which every class shares, or else `class`'s own.
fn doubt_or(run: Option<&str>, class: impl FnOnce() -> Option<String>) -> Option<String> {
    run.map(str::to_string).or_else(class)
}

fn unread_deliveries(ledger: &Ledger) -> Option<String> {
    let unread = ledger.unread_deliveries();
    (unread > 0).then(|| {
        format!("{unread} fd deliveries (received control messages or pidfds) could not be read in full; fds may be missing from the ledger")
    })
}

/// Boundaries that reached leakscope after it had folded past their time: what it folded
/// around them may sit in the wrong iteration. Never seen in practice (the margin is
/// 50 ms), and never ignored.
fn late_boundaries(ledger: &Ledger) -> Option<String> {
    let late = ledger.late_boundaries();
    (late > 0).then(|| {
        format!("{late} iteration boundaries arrived more than 50 ms late; counts around them may be off")
    })
}

/// A class's bytes: every change by record, their totals at the boundaries, and how
/// they are judged.
struct ClassBytes<'a> {
    changes: &'a [ByteChange],
    series: &'a [f64],
    /// Records an mremap resized in place (mappings).
    resized: &'a HashSet<RecordId>,
    scale: trend::Scale,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fd,
    Mapping,
    File,
    Watch,
}

fn resource_class(
    ledger: &Ledger,
    kind: Kind,
    records: &Records,
    iterations: &Iterations,
    doubt: Option<&str>,
    class_bytes: Option<ClassBytes>,
) -> ResourceClass {
    let map_bytes = class_bytes.as_ref().map(|b| b.series);
    let traced = || records.all().iter().filter(|r| r.origin != Origin::Seeded);
    let live_counts = series::live_counts(records, &iterations.boundaries);
    let class = match kind {
        Kind::Fd => ClassKind::Fd,
        Kind::Mapping => ClassKind::Mapping,
        Kind::File => ClassKind::File,
        Kind::Watch => ClassKind::Watch,
    };
    let limit_hit = limits::first_hit(
        (
            ledger.failed_acquisitions(),
            ledger.folded_limit_failures(class),
        ),
        class,
        iterations,
        &live_counts,
    );
    let pinned = |series: &[f64], scale: &Scale| {
        let plain = trend::judge_sampled(series, scale, doubt, trend::Sampling::of(iterations));
        match &limit_hit {
            Some(hit) => limits::judge_pinned(series, scale, hit, &plain, doubt),
            None => plain,
        }
    };
    let count = pinned(&live_counts, &scales::COUNT);
    let bytes = class_bytes.as_ref().map(|b| pinned(b.series, &b.scale));
    let verdict = bytes
        .as_ref()
        .map_or(count.verdict, |b| count.verdict.worst(b.verdict));

    let folded = records.folded();
    let mut lifetimes = folded.lifetimes.clone();
    for record in traced().filter(|r| r.released_ns != NEVER) {
        if !sites::retained(record.born_ns, record.released_ns, iterations) {
            let ns = record.released_ns.saturating_sub(record.origin_ns);
            let crossed = iterations.crossed(record.origin_ns, record.released_ns);
            lifetimes.record(ns, crossed);
        }
    }
    let last = iterations.last().unwrap_or(u64::MAX);
    let record_bytes = class_bytes
        .as_ref()
        .map(|b| sites::bytes_by_record(b.changes, last));
    let site_bytes = class_bytes.as_ref().map(|b| sites::SiteBytes {
        changes: b.changes,
        at_last_boundary: record_bytes.as_ref().expect("set together"),
        resized: b.resized,
        scale: b.scale,
    });
    let sites = sites::retained_sites(
        records,
        ledger.sites(),
        iterations,
        site_bytes.as_ref(),
        &sites::Judging {
            doubt,
            limit_hit: limit_hit.as_ref(),
        },
    );
    ResourceClass {
        acquired: traced().count() as u64 + folded.traced,
        released: traced().filter(|r| r.released_ns != NEVER).count() as u64 + folded.traced,
        live_at_end: live_counts.last().map_or_else(
            || records.all().iter().filter(|r| r.is_live()).count() as u64,
            |&v| v as u64,
        ),
        live_at_exit: records.all().iter().filter(|r| r.is_live()).count() as u64,
        count,
        bytes,
        count_series: series::Judged::new(0, &live_counts),
        bytes_series: map_bytes.map(|values| series::Judged::new(0, values)),
        live_bytes_at_end: map_bytes
            .and_then(|series| series.last())
            .map(|&v| v.max(0.0) as u64),
        verdict,
        limit_hit,
        lifetimes,
        sites,
        failures: failures::of_class(ledger, iterations, class),
        removed_unseen: None,
    }
}

#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod shared_table_tests;
#[cfg(test)]
mod shm_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;
#[cfg(test)]
mod unseen_fd_tests;
