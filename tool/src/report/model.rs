//! The report as data: serde structs that serialize to exactly the schema-1 JSON of the
//! contract (every contract key, with its name), plus extra keys that explain the verdicts
//! (`why`, `live_at_exit`, iteration `detail` and `confidence`, rss `unexplained_*`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::lifetimes::{DECADE_LABELS, Percentiles};
use crate::analysis::sites::Site;
use crate::analysis::trend::{Judgement, Verdict};
use crate::analysis::{Analysis, HeapClass, ResourceClass, RssClass};
use crate::iterations::{IterationSource, Iterations, MarkerCandidate};

pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub schema: u32,
    pub target: Target,
    pub iterations: IterationsReport,
    pub lost_events: u64,
    /// Successful calls by syscall name, plus "fork", "exec" and "exit".
    pub counts: BTreeMap<String, u64>,
    pub classes: Classes,
    /// Closes of fds and unmaps of ranges the ledger did not know (counted, ignored).
    pub unknown_releases: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    pub command: Vec<String>,
    pub pid: u32,
    /// `null` when killed by a signal or still running.
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub still_running: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IterationsReport {
    pub count: usize,
    pub source: IterationSource,
    pub detail: String,
    pub confidence: f64,
    /// The path auto-detection chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Share (0..=1) of the run's acquisitions inside the iterations.
    pub coverage: Option<f64>,
    /// Recurring paths that could mark the loop, best first (auto detection only).
    pub candidates: Vec<MarkerCandidate>,
    /// Why no iteration source was convincing: every verdict is then inconclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unconvincing: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classes {
    pub fd: ResourceReport,
    pub mmap: ResourceReport,
    pub brk: BrkReport,
    pub rss: RssReport,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceReport {
    pub acquired: u64,
    pub released: u64,
    /// Live at the last iteration boundary.
    pub live_at_end: u64,
    /// Live when tracing stopped (after any teardown).
    pub live_at_exit: u64,
    pub leaked_per_iteration: f64,
    /// Mappings only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_leaked_per_iteration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_bytes_at_end: Option<u64>,
    pub verdict: Verdict,
    pub why: String,
    pub lifetime_ns: Percentiles,
    pub lifetime_iterations: Percentiles,
    pub sites: Vec<Site>,
    /// Counts of released lifetimes per decade (see `DECADE_LABELS`), for the text bars.
    #[serde(skip)]
    pub lifetime_decades: [u64; DECADE_LABELS.len()],
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BrkReport {
    pub bytes_per_iteration: f64,
    pub verdict: Verdict,
    pub why: String,
    /// Heap growth at the last iteration boundary.
    pub live_bytes_at_end: i64,
    /// Where the heap grew during the iterations, most bytes first.
    pub sites: Vec<HeapSiteReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeapSiteReport {
    pub site: String,
    /// Bytes the break grew by from this site during the iterations.
    pub bytes: u64,
    pub bytes_per_iteration: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RssReport {
    /// Growth of the whole resident set per iteration.
    pub bytes_per_iteration: f64,
    /// The rss class stands for resident memory that no fd, mapping or brk change explains:
    /// this is the verdict on that unexplained part. RSS that grows because the heap or a
    /// mapping leaks is that class's leak, not a second one.
    pub verdict: Verdict,
    /// The verdict on the whole resident set, explained or not.
    pub total_verdict: Verdict,
    pub why: String,
    /// RSS growth per iteration that mapped and heap bytes do not account for.
    pub unexplained_bytes_per_iteration: f64,
    pub unexplained_verdict: Verdict,
    /// mmap + brk bytes per iteration.
    pub explained_bytes_per_iteration: f64,
    pub samples: usize,
    pub bytes_at_end: Option<u64>,
}

/// Rates are least-squares fits: keep the digits that mean something.
fn round_count(rate: f64) -> f64 {
    (rate * 1e4).round() / 1e4
}

fn round_bytes(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

impl IterationsReport {
    pub fn new(iterations: &Iterations) -> Self {
        IterationsReport {
            count: iterations.count(),
            source: iterations.source,
            detail: iterations.detail.clone(),
            confidence: (iterations.confidence * 100.0).round() / 100.0,
            path: iterations.auto_path.clone(),
            coverage: iterations.coverage.map(|c| (c * 1000.0).round() / 1000.0),
            candidates: iterations.candidates.clone(),
            unconvincing: iterations.unconvincing.clone(),
        }
    }
}

impl Classes {
    pub fn new(analysis: &Analysis) -> Self {
        Classes {
            fd: ResourceReport::new(&analysis.fd),
            mmap: ResourceReport::new(&analysis.mmap),
            brk: BrkReport::new(&analysis.brk),
            rss: RssReport::new(&analysis.rss),
        }
    }
}

impl ResourceReport {
    fn new(class: &ResourceClass) -> Self {
        let why = match &class.bytes {
            Some(bytes) if bytes.verdict > class.count.verdict => format!("bytes {}", bytes.why),
            _ => class.count.why.clone(),
        };
        let mut sites = class.sites.clone();
        for site in &mut sites {
            site.leaked_per_iteration = round_count(site.leaked_per_iteration);
        }
        ResourceReport {
            acquired: class.acquired,
            released: class.released,
            live_at_end: class.live_at_end,
            live_at_exit: class.live_at_exit,
            leaked_per_iteration: round_count(class.count.rate),
            bytes_leaked_per_iteration: class.bytes.as_ref().map(|b| round_bytes(b.rate)),
            live_bytes_at_end: class.live_bytes_at_end,
            verdict: class.verdict,
            why,
            lifetime_ns: class.lifetimes.ns(),
            lifetime_iterations: class.lifetimes.iterations(),
            sites,
            lifetime_decades: class.lifetimes.decades(),
        }
    }
}

impl BrkReport {
    fn new(heap: &HeapClass) -> Self {
        BrkReport {
            bytes_per_iteration: round_bytes(heap.bytes.rate),
            verdict: heap.bytes.verdict,
            why: heap.bytes.why.clone(),
            live_bytes_at_end: heap.live_bytes_at_end,
            sites: heap
                .sites
                .iter()
                .map(|site| HeapSiteReport {
                    site: site.site.clone(),
                    bytes: site.bytes,
                    bytes_per_iteration: round_bytes(site.bytes_per_iteration),
                })
                .collect(),
        }
    }
}

impl RssReport {
    fn new(rss: &RssClass) -> Self {
        let Judgement {
            verdict: total_verdict,
            rate,
            why: total_why,
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
            bytes_per_iteration: round_bytes(*rate),
            verdict,
            total_verdict: *total_verdict,
            why,
            unexplained_bytes_per_iteration: round_bytes(rss.unexplained.rate),
            unexplained_verdict: rss.unexplained.verdict,
            explained_bytes_per_iteration: round_bytes(rss.explained_rate),
            samples: rss.samples,
            bytes_at_end: rss.bytes_at_end,
        }
    }
}
