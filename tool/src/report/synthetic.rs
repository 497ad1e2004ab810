//! Reports with files and watches numbers made up for the tests: the ledger that fills
//! these classes is built elsewhere, and the report's wording must not wait for it. The
//! numbers are those a real run would give (1 file of 4 KiB per iteration over 100
//! iterations, its detection limit 0.111 per iteration, as the fd class of the same run).

use crate::analysis::lifetimes::{DECADE_LABELS, Percentiles};
use crate::analysis::trend::Verdict;
use crate::diagnosis::{RunInfo, TargetExit, diagnose};
use crate::heap::snapshot::thirty_byte_survivors;
use crate::iterations::IterationRequest;
use crate::ledger::test_support::Stream;
use crate::stacks::Frame;

use super::Report;
use super::model::ResourceReport;
use super::sites::SiteReport;

pub(crate) const PID: u32 = 42;

/// 100 iterations that open and close a file and map and unmap 64 KiB: fd and mmap flat,
/// brk and RSS too short to judge.
pub(crate) fn clean_report(command: &str) -> Report {
    let mut s = Stream::new(PID);
    for _ in 0..100 {
        s.marker_with_rss(10_000_000);
        s.open("/tmp/a", 3).close(3);
        s.mmap_anon(0x7f00_0000_0000, 65536)
            .munmap(0x7f00_0000_0000, 65536);
    }
    s.exit();
    diagnose(
        s.ledger(),
        &run_info(command, IterationRequest::Symbol("tick".into())),
    )
}

/// A clean exit of process [`PID`] running `command` (split at spaces), nothing lost.
pub(crate) fn run_info(command: &str, iteration_request: IterationRequest) -> RunInfo {
    RunInfo {
        command: command.split(' ').map(String::from).collect(),
        pid: PID,
        exit: TargetExit::Code(0),
        lost_events: 0,
        lost_markers: 0,
        fd_limit: None,
        iteration_request,
    }
}

/// A class that kept one resource per iteration from `site` (`bytes` each, for files).
pub(crate) fn leaking(site: &str, bytes: Option<u64>) -> ResourceReport {
    let per_byte = |n: u64| bytes.map(|b| b * n);
    ResourceReport {
        acquired: 100,
        released: 0,
        live_at_end: 99,
        live_at_exit: 100,
        leaked_per_iteration: 1.0,
        bytes_leaked_per_iteration: bytes.map(|b| b as f64),
        live_bytes_at_end: per_byte(99),
        verdict: Verdict::Leak,
        count_verdict: Verdict::Leak,
        why: "rose 45 over the last 54 iterations, in 5 of 5 stretches".into(),
        detection_limit_per_iteration: Some(0.111),
        detection_limit_bytes_per_iteration: bytes.map(|_| 455.0),
        iterations_needed: None,
        limit_hit: None,
        lifetime_ns: Percentiles::default(),
        lifetime_iterations: Percentiles::default(),
        sites: vec![SiteReport {
            site: site.into(),
            frames: None,
            leaked: 99,
            leaked_per_iteration: 1.0,
            bytes_leaked: per_byte(99),
            bytes_leaked_per_iteration: bytes.map(|b| b as f64),
            verdict: Verdict::Leak,
            without_stack: 0,
            stack: None,
            unnamed_jit_frames: 0,
        }],
        failures: Default::default(),
        lifetime_decades: [0; DECADE_LABELS.len()],
        lifetime_iteration_decades: Default::default(),
    }
}

/// A class that made `live` resources once and replaced them every iteration (extraction's
/// own output files): flat.
pub(crate) fn flat(live: u64, bytes: bool) -> ResourceReport {
    let mut class = leaking("-", bytes.then_some(4096));
    class.acquired = 100 * live;
    class.released = 99 * live;
    class.live_at_end = live;
    class.live_at_exit = live;
    class.leaked_per_iteration = 0.0;
    class.bytes_leaked_per_iteration = bytes.then_some(0.0);
    class.live_bytes_at_end = bytes.then_some(live * 5);
    class.verdict = Verdict::NoLeak;
    class.count_verdict = Verdict::NoLeak;
    class.why = "no sustained growth: no leak above 0.111 per iteration".into();
    class.sites.clear();
    class.lifetime_ns = Percentiles {
        p50: 2_000,
        p90: 3_000,
        p99: 5_000,
        max: 9_000,
        count: class.released,
    };
    class.lifetime_decades[1] = class.released;
    class
}

/// A `--heap` run of 11 marked iterations in which one 30-byte block per iteration survives
/// (as the kernel's heap maps give them at the end), its caller named by `frames`.
pub(crate) fn heap_leak(frames: Vec<Frame>) -> Report {
    let mut s = Stream::new(PID);
    for i in 0..11u64 {
        s.marker_with_heap(4096 + 30 * i, 10 + i);
    }
    s.exit();
    let mut ledger = s.ledger();
    let mut snapshot = thirty_byte_survivors(PID, 11);
    snapshot.name_callers(|_, _| frames.clone());
    ledger.note_heap_snapshot(snapshot);
    let info = run_info(
        "./heap_small 10",
        IterationRequest::Symbol("iteration_marker".into()),
    );
    diagnose(ledger, &info)
}
