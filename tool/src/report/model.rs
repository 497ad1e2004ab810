//! The report as data: serde structs that serialize to exactly the schema-1 JSON of the
//! contract (every contract key, with its name), plus extra keys that explain the verdicts
//! (`why`, `live_at_exit`, iteration `detail` and `confidence`, rss `unexplained_*`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::failures::{self, Failures};
use crate::analysis::heap_alloc::{AllocClass, AllocSite};
use crate::analysis::lifetimes::{DECADE_LABELS, ITERATION_DECADE_LABELS, Percentiles};
use crate::analysis::limits::{self, LimitHit};
use crate::analysis::trend::{Judgement, Verdict};
use crate::analysis::{Analysis, HeapClass, ResourceClass, RssClass};
use crate::iterations::{IterationSource, Iterations, MarkerCandidate};
use crate::ledger::sites::Sites;

use super::held::{HeldAtExit, OutlivedProcess};
use super::projection::Projection;
use super::sites::{HeapSiteReport, SiteReport};
use super::suspects::Suspect;
use super::top_sites::ShownStack;
use crate::ending::Ending;
use crate::stacks::FrameJson;

pub(crate) const SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Report {
    pub(crate) schema: u32,
    pub(crate) target: Target,
    pub(crate) iterations: IterationsReport,
    pub(crate) lost_events: u64,
    /// `lost_events` by reason (`ring_full_syscall`, `ring_full_marker`, ...), nonzero
    /// reasons only; they sum to `lost_events`. Filled from the probes after the diagnosis.
    pub(crate) lost_by_reason: BTreeMap<String, u64>,
    /// Stacks the kernel could not send (`ring_full_stack`, `ring_full_fd_stack`,
    /// `stack_scratch_busy`): their calls are counted, without frames. No lost events.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) stacks_dropped: BTreeMap<String, u64>,
    /// Successful calls by syscall name, plus "fork", "exec" and "exit".
    pub(crate) counts: BTreeMap<String, u64>,
    pub(crate) classes: Classes,
    /// Closes of fds and unmaps of ranges the ledger did not know (counted, ignored).
    pub(crate) unknown_releases: u64,
    /// A one-shot run (fewer iterations than a rate needs): what the target held at exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) held_at_exit: Option<HeldAtExit>,
    /// Traced processes still alive when the target exited, with what each held at its end.
    pub(crate) outlived_target: Vec<OutlivedProcess>,
    /// How tracing ended; set once tracing is over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ended: Option<Ending>,
    /// `extract`'s memory growth per extraction, multiplied out ([`Report::project_growth`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) projection: Option<Projection>,
    /// `extract`'s answer to the original report's suspects ([`Report::answer_suspects`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) suspects: Option<Vec<Suspect>>,
    /// leakscope's own cost in this run; set when the report is written.
    #[serde(rename = "self", skip_serializing_if = "Option::is_none")]
    pub(crate) self_stats: Option<SelfStats>,
    /// The run over time, for `--trace` (not part of the JSON report).
    #[serde(skip)]
    pub(crate) timeline: super::timeline::Timeline,
    /// Each class's judged series and what its verdict was made of, for `--html` and
    /// `--svg` (not part of the JSON report).
    #[serde(skip)]
    pub(crate) charts: Vec<super::class_charts::ClassChart>,
    /// `extract`'s rounds as its worker measured them (RSS, fds and mappings after each),
    /// for `--html` (the text has them as the worker's lines).
    #[serde(skip)]
    pub(crate) rounds: Option<Vec<crate::extract::worker::RoundStats>>,
}

/// leakscope's own cost (`crate::self_stats` measures it). Each figure is `null` when it
/// could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct SelfStats {
    /// leakscope's peak resident set (VmHWM) when the report was written.
    pub(crate) peak_rss_bytes: Option<u64>,
    /// From leakscope's process start to probes attached and the target tracked (exact to
    /// one clock tick, usually 10 ms).
    pub(crate) startup_ns: Option<u64>,
    /// From the moment leakscope saw the target end (or tracing stop) to the report's
    /// rendering: the last drain, the diagnosis and symbolization.
    pub(crate) report_ns: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Target {
    pub(crate) command: Vec<String>,
    pub(crate) pid: u32,
    /// `null` when killed by a signal or still running.
    pub(crate) exit_code: Option<i32>,
    pub(crate) exit_signal: Option<i32>,
    pub(crate) still_running: bool,
    /// The target's RLIMIT_NOFILE soft limit, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fd_limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct IterationsReport {
    pub(crate) count: usize,
    pub(crate) source: IterationSource,
    /// Iterations between two judged boundaries: 1, unless the run had more than twice
    /// the bound on kept boundaries (4096 by default); rates stay per iteration.
    pub(crate) stride: u64,
    /// Boundaries the verdicts were judged on (every stride-th one, and the last).
    pub(crate) judged_boundaries: usize,
    pub(crate) detail: String,
    pub(crate) confidence: f64,
    /// The path auto-detection chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    /// Share (0..=1) of the run's acquisitions inside the iterations.
    pub(crate) coverage: Option<f64>,
    /// Recurring paths that could mark the loop, best first (auto detection only).
    pub(crate) candidates: Vec<MarkerCandidate>,
    /// Why no iteration source was convincing: every verdict is then inconclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unconvincing: Option<String>,
    /// Automatic detection chose its rule while tracing, from the first this many events
    /// (and judged it again on the whole run at the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) chosen_from_events: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Classes {
    pub(crate) fd: ResourceReport,
    pub(crate) mmap: ResourceReport,
    pub(crate) brk: BrkReport,
    pub(crate) rss: RssReport,
    /// Entries on disk the target created and did not remove.
    pub(crate) files: ResourceReport,
    /// inotify watches and fanotify marks.
    pub(crate) watches: ResourceReport,
    /// `--heap`: the allocator traced (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) heap: Option<HeapReport>,
}

/// `--heap`: bytes allocated and not freed, paired in the kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HeapReport {
    pub(crate) verdict: Verdict,
    pub(crate) why: String,
    pub(crate) bytes_per_iteration: f64,
    pub(crate) allocations_per_iteration: f64,
    /// Live allocated bytes and allocations at the last iteration boundary (`null`
    /// before any marker).
    pub(crate) live_bytes_at_end: Option<u64>,
    pub(crate) live_allocations_at_end: Option<u64>,
    pub(crate) detection_limit_bytes_per_iteration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) iterations_needed: Option<u64>,
    /// Allocations whose free went through an entry point leakscope does not trace (the
    /// allocator handed their address out again while they were live).
    pub(crate) missed_frees: u64,
    /// Allocations the kernel could not record (its map was full): the class is then
    /// inconclusive.
    pub(crate) unrecorded: u64,
    /// Frees of blocks allocated in an earlier iteration (or before the first marker):
    /// blocks that lived across an iteration boundary and were freed after all.
    pub(crate) late_frees: u64,
    /// Callers of what was allocated inside the iterations and never freed, most bytes
    /// first.
    pub(crate) sites: Vec<HeapCallerReport>,
    /// How long the freed blocks lived. Counted in the kernel by bucket, so each value is
    /// within 1/16 (6.25%) of the true one.
    pub(crate) lifetime_ns: Percentiles,
    /// The same in iterations: `count` 0 without an iteration marker (the marker is the
    /// kernel's clock for it).
    pub(crate) lifetime_iterations: Percentiles,
    #[serde(skip)]
    pub(crate) lifetime_decades: [u64; DECADE_LABELS.len()],
    #[serde(skip)]
    pub(crate) lifetime_iteration_decades: [u64; ITERATION_DECADE_LABELS.len()],
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HeapCallerReport {
    /// The function that called the allocator (outermost call: `new`, not the `malloc`
    /// inside it).
    pub(crate) site: String,
    /// The caller's frames, innermost inlined function first, with file and line where
    /// the debug info has them (absent when the caller's code was not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frames: Option<Vec<FrameJson>>,
    /// The caller is in a system library (libc, libstdc++): the program's own function is
    /// further up the stack.
    pub(crate) system: bool,
    pub(crate) pid: u32,
    pub(crate) allocations: u64,
    pub(crate) bytes: u64,
    pub(crate) bytes_per_iteration: f64,
    pub(crate) allocations_per_iteration: f64,
    /// Of `allocations`, those that had no stack of their own: given to this site in
    /// proportion to the sampled stacks of their allocator caller.
    pub(crate) without_stack: u64,
    /// The caller's frames as the text report lays them out (text only).
    #[serde(skip)]
    pub(crate) stack: Option<ShownStack>,
}

impl HeapCallerReport {
    fn new(site: &AllocSite) -> Self {
        let known = !site.frames.is_empty();
        HeapCallerReport {
            site: site.function.clone(),
            frames: known.then(|| site.frames.iter().map(FrameJson::from).collect()),
            system: site.system,
            pid: site.tgid,
            allocations: site.count,
            bytes: site.bytes,
            bytes_per_iteration: site.bytes_per_iteration,
            allocations_per_iteration: site.allocations_per_iteration,
            without_stack: site.without_stack,
            // The sampled stacks' site (what was folded above it), or one return address:
            // its inlined functions, nothing folded above them.
            stack: known.then(|| ShownStack {
                head: site.function.clone(),
                frames: site.frames.as_slice().into(),
                folded: site.folded.clone(),
            }),
        }
    }
}

impl HeapReport {
    fn new(class: &AllocClass) -> Self {
        let deciding = if class.count.verdict > class.bytes.verdict {
            &class.count
        } else {
            &class.bytes
        };
        let mut why = deciding.why.clone();
        if class.missed_frees > 0 {
            why.push_str(&format!(
                "; {} allocations were freed through an entry point not traced (their address came back)",
                class.missed_frees
            ));
        }
        HeapReport {
            verdict: class.verdict,
            why,
            bytes_per_iteration: class.bytes.rate,
            allocations_per_iteration: class.count.rate,
            live_bytes_at_end: class.live_bytes_at_end,
            live_allocations_at_end: class.live_count_at_end,
            detection_limit_bytes_per_iteration: class.bytes.limit,
            iterations_needed: deciding.iterations_needed,
            missed_frees: class.missed_frees,
            unrecorded: class.unrecorded,
            late_frees: class.late_frees,
            sites: class.sites.iter().map(HeapCallerReport::new).collect(),
            lifetime_ns: class.lifetimes.ns(),
            lifetime_iterations: class.lifetimes.iterations(),
            lifetime_decades: class.lifetimes.decades(),
            lifetime_iteration_decades: class.lifetimes.iteration_decades(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ResourceReport {
    pub(crate) acquired: u64,
    pub(crate) released: u64,
    /// Live at the last iteration boundary.
    pub(crate) live_at_end: u64,
    /// Live when tracing stopped (after any teardown).
    pub(crate) live_at_exit: u64,
    pub(crate) leaked_per_iteration: f64,
    /// Mappings (mapped bytes) and files (their sizes on disk) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_leaked_per_iteration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) live_bytes_at_end: Option<u64>,
    pub(crate) verdict: Verdict,
    /// The verdict on the count alone (a mapping grown by mremap leaks bytes, not mappings).
    #[serde(skip)]
    pub(crate) count_verdict: Verdict,
    pub(crate) why: String,
    /// The smallest leak per iteration this run could have detected (`null`: too short).
    pub(crate) detection_limit_per_iteration: Option<f64>,
    /// The same for bytes (mappings and files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detection_limit_bytes_per_iteration: Option<f64>,
    /// Iterations that would make an inconclusive flat class conclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) iterations_needed: Option<u64>,
    /// The class ran into its limit (EMFILE, ENOMEM; ENOSPC or EDQUOT for files, ENOSPC
    /// for watches) during the iterations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit_hit: Option<LimitHitReport>,
    pub(crate) lifetime_ns: Percentiles,
    pub(crate) lifetime_iterations: Percentiles,
    pub(crate) sites: Vec<SiteReport>,
    /// Failed acquisitions by errno name ("EMFILE"), the whole run; empty when none failed.
    pub(crate) failures: FailuresReport,
    /// Counts of released lifetimes per decade (see `DECADE_LABELS`), for the text bars.
    #[serde(skip)]
    pub(crate) lifetime_decades: [u64; DECADE_LABELS.len()],
    /// The same by iterations crossed (see `ITERATION_DECADE_LABELS`), for `--html`.
    #[serde(skip)]
    pub(crate) lifetime_iteration_decades: [u64; ITERATION_DECADE_LABELS.len()],
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct BrkReport {
    pub(crate) bytes_per_iteration: f64,
    pub(crate) verdict: Verdict,
    pub(crate) why: String,
    pub(crate) detection_limit_bytes_per_iteration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) iterations_needed: Option<u64>,
    /// The step the break moves by in this run (glibc's default when it never moved).
    pub(crate) step_bytes: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit_hit: Option<LimitHitReport>,
    /// Heap growth at the last iteration boundary.
    pub(crate) live_bytes_at_end: i64,
    /// Where the heap grew during the iterations, most bytes first.
    pub(crate) sites: Vec<HeapSiteReport>,
    /// brk calls that could not grow the heap, as "ENOMEM".
    pub(crate) failures: FailuresReport,
}

/// Failed acquisitions of one class, keyed by errno name.
pub(crate) type FailuresReport = BTreeMap<String, FailureReport>;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct FailureReport {
    pub(crate) count: u64,
    /// The iteration of the first failure; `null` when it came before the first boundary.
    pub(crate) first_iteration: Option<i64>,
    /// The call that failed first.
    pub(crate) first_syscall: String,
    /// Resources of the class the failing process held at the first failure (fd and mmap
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) live_at_first: Option<u64>,
}

fn failures_report(failures: &Failures) -> FailuresReport {
    failures
        .by_errno
        .iter()
        .map(|(&errno, f)| {
            let report = FailureReport {
                count: f.count,
                first_iteration: (f.first_iteration >= 0).then_some(f.first_iteration),
                first_syscall: f.first_syscall.to_string(),
                live_at_first: f.live_at_first,
            };
            (failures::errno_name(errno), report)
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RssReport {
    /// Growth of the whole resident set per iteration.
    pub(crate) bytes_per_iteration: f64,
    /// The rss class stands for resident memory that no fd, mapping or brk change explains:
    /// this is the verdict on that unexplained part. RSS that grows because the heap or a
    /// mapping leaks is that class's leak, not a second one.
    pub(crate) verdict: Verdict,
    /// The verdict on the whole resident set, explained or not.
    pub(crate) total_verdict: Verdict,
    pub(crate) why: String,
    /// RSS growth per iteration that mapped and heap bytes do not account for.
    pub(crate) unexplained_bytes_per_iteration: f64,
    pub(crate) unexplained_verdict: Verdict,
    /// mmap + brk bytes per iteration.
    pub(crate) explained_bytes_per_iteration: f64,
    pub(crate) samples: usize,
    pub(crate) bytes_at_end: Option<u64>,
    pub(crate) detection_limit_bytes_per_iteration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) iterations_needed: Option<u64>,
    /// Processes whose resident memory was judged: those alive through the iterations.
    pub(crate) processes: usize,
}

/// When a class ran into its limit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct LimitHitReport {
    /// "EMFILE", "ENFILE", "ENOMEM".
    pub(crate) errno: String,
    /// The iteration the first failure fell in.
    pub(crate) iteration: usize,
    /// Calls that failed with it from then on.
    pub(crate) failures: u64,
    /// The class's live amount when it hit the limit.
    pub(crate) live: f64,
}

impl LimitHitReport {
    fn new(hit: &LimitHit) -> Self {
        LimitHitReport {
            errno: limits::errno_name(hit.errno),
            iteration: hit.iteration,
            failures: hit.failures,
            live: hit.level,
        }
    }
}

impl IterationsReport {
    pub(crate) fn new(iterations: &Iterations) -> Self {
        IterationsReport {
            count: iterations.count(),
            source: iterations.source,
            stride: iterations.stride,
            judged_boundaries: iterations.boundaries.len(),
            detail: iterations.detail.clone(),
            confidence: (iterations.confidence * 100.0).round() / 100.0,
            path: iterations.auto_path.clone(),
            coverage: iterations.coverage.map(|c| (c * 1000.0).round() / 1000.0),
            candidates: iterations.candidates.clone(),
            unconvincing: iterations.unconvincing.clone(),
            chosen_from_events: iterations.chosen_from_events,
        }
    }
}

impl Classes {
    /// The classes of `analysis`, its sites named from `sites`.
    pub(crate) fn new(analysis: &Analysis, sites: &Sites) -> Self {
        Classes {
            fd: ResourceReport::new(&analysis.fd, sites),
            mmap: ResourceReport::new(&analysis.mmap, sites),
            brk: BrkReport::new(&analysis.brk, sites),
            rss: RssReport::new(&analysis.rss),
            files: ResourceReport::new(&analysis.files, sites),
            watches: ResourceReport::new(&analysis.watches, sites),
            heap: analysis.heap.as_ref().map(HeapReport::new),
        }
    }
}

impl ResourceReport {
    fn new(class: &ResourceClass, sites: &Sites) -> Self {
        let why = match &class.bytes {
            Some(bytes) if bytes.verdict > class.count.verdict => format!("bytes {}", bytes.why),
            _ => class.count.why.clone(),
        };
        // A flat count with inconclusive bytes (or the reverse) is as inconclusive as its
        // worse half: name the limit that decided it.
        let deciding = match &class.bytes {
            Some(bytes) if bytes.verdict > class.count.verdict => bytes,
            _ => &class.count,
        };
        ResourceReport {
            acquired: class.acquired,
            released: class.released,
            live_at_end: class.live_at_end,
            live_at_exit: class.live_at_exit,
            leaked_per_iteration: class.count.rate,
            bytes_leaked_per_iteration: class.bytes.as_ref().map(|b| b.rate),
            live_bytes_at_end: class.live_bytes_at_end,
            verdict: class.verdict,
            count_verdict: class.count.verdict,
            why,
            detection_limit_per_iteration: class.count.limit,
            detection_limit_bytes_per_iteration: class.bytes.as_ref().and_then(|b| b.limit),
            iterations_needed: deciding.iterations_needed,
            limit_hit: class.limit_hit.as_ref().map(LimitHitReport::new),
            lifetime_ns: class.lifetimes.ns(),
            lifetime_iterations: class.lifetimes.iterations(),
            sites: class
                .sites
                .iter()
                .map(|site| SiteReport::new(site, sites))
                .collect(),
            failures: failures_report(&class.failures),
            lifetime_decades: class.lifetimes.decades(),
            lifetime_iteration_decades: class.lifetimes.iteration_decades(),
        }
    }
}

impl BrkReport {
    fn new(heap: &HeapClass, sites: &Sites) -> Self {
        BrkReport {
            bytes_per_iteration: heap.bytes.rate,
            verdict: heap.bytes.verdict,
            why: heap.bytes.why.clone(),
            detection_limit_bytes_per_iteration: heap.bytes.limit,
            iterations_needed: heap.bytes.iterations_needed,
            step_bytes: heap.step,
            limit_hit: heap.limit_hit.as_ref().map(LimitHitReport::new),
            live_bytes_at_end: heap.live_bytes_at_end,
            sites: heap
                .sites
                .iter()
                .map(|site| HeapSiteReport::new(site, sites))
                .collect(),
            failures: failures_report(&heap.failures),
        }
    }
}

impl RssReport {
    fn new(rss: &RssClass) -> Self {
        let Judgement {
            verdict: total_verdict,
            rate,
            why: total_why,
            limit,
            iterations_needed,
            ..
        } = &rss.bytes;
        let verdict = rss.unexplained.verdict;
        let why = if verdict == *total_verdict {
            total_why.clone()
        } else {
            format!(
                "whole RSS: {total_why} ({}); after mmap/brk growth is taken out: {}",
                total_verdict.as_str(),
                rss.unexplained.why
            )
        };
        RssReport {
            bytes_per_iteration: *rate,
            verdict,
            total_verdict: *total_verdict,
            why,
            unexplained_bytes_per_iteration: rss.unexplained.rate,
            unexplained_verdict: rss.unexplained.verdict,
            explained_bytes_per_iteration: rss.explained_rate,
            samples: rss.samples,
            bytes_at_end: rss.bytes_at_end,
            detection_limit_bytes_per_iteration: *limit,
            iterations_needed: *iterations_needed,
            processes: rss.processes,
        }
    }
}
