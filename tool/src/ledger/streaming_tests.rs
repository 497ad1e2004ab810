//! Folding is exact: the analysis of a ledger that folded as it went equals the analysis of
//! the full ledger, on synthetic streams that churn, leak, fork and fail.

use rstest::rstest;

use crate::analysis::{self, RunFacts};
use crate::event::{FailedCall, What};
use crate::iterations::{IterationRequest, detect};
use crate::ledger::Ledger;
use crate::ledger::file_tests::FileCalls;
use crate::ledger::streaming::BoundarySource;
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls as nr;

const MIB: u64 = 1 << 20;

/// `iterations` marked iterations of `body`, each 2 ms apart, so most of the run is
/// settled well before it ends.
fn marked(iterations: u64, mut body: impl FnMut(&mut Stream, u64)) -> Stream {
    let mut stream = Stream::new(100);
    stream.open("/etc/before-the-loop", 3).close(3);
    for i in 0..iterations {
        stream.marker_with_rss(10 * MIB + 4096 * (i % 7));
        stream.open("/srv/iteration/tick", 50).close(50);
        body(&mut stream, i);
        stream.now += 2_000_000;
    }
    stream.exit();
    stream
}

fn replay(stream: &Stream, fold_every: Option<u64>) -> Ledger {
    replay_on(stream, fold_every, BoundarySource::Markers)
}

fn replay_on(stream: &Stream, fold_every: Option<u64>, source: BoundarySource) -> Ledger {
    let mut ledger = Ledger::new();
    if let Some(every) = fold_every {
        ledger.stream_on_every(source, every);
    }
    for event in &stream.events {
        ledger.apply(event);
        // Sizes of the live entries, looked at on each boundary as the session would.
        if matches!(event.what, What::Marker { .. }) {
            for (record, _) in ledger.live_file_window(None, 100) {
                ledger.note_file_size(record, event.time_ns + 500, 100 * (record % 9));
            }
        }
    }
    ledger
}

/// The analysis, iterations included, as text.
pub(super) fn judged(ledger: &Ledger) -> String {
    judged_on(ledger, &IterationRequest::Symbol("tick".into()))
}

fn judged_on(ledger: &Ledger, request: &IterationRequest) -> String {
    let iterations = detect(ledger, request);
    let analysis = analysis::analyze(ledger, &iterations, &RunFacts::default());
    format!("{iterations:?}\n{analysis:#?}")
}

/// An fd open and closed within each iteration, one kept every `keep_every`, and an fd
/// that lives across one boundary now and then.
fn fd_churn(keep_every: u64) -> Stream {
    marked(300, |s, i| {
        for k in 0..20 {
            let tgid = s.tgid;
            s.push(
                tgid,
                tgid,
                What::Syscall(
                    call(nr::OPENAT, 5, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/srv/data"),
                ),
                Some(10 * MIB + k * 4096),
            );
            s.close(5);
        }
        if i % keep_every == 0 {
            s.open("/srv/kept", 1000 + i as i32);
        }
        if i % 10 == 3 {
            s.open("/srv/crossing", 900);
        }
        if i % 10 == 4 {
            s.close(900);
        }
    })
}

/// Mappings made and unmapped (in parts) within each iteration, one leaked every 4th.
fn map_churn() -> Stream {
    marked(250, |s, i| {
        let base = 0x7000_0000_0000 + i * 0x100_0000;
        s.mmap_anon(base, 64 * 4096).munmap(base, 16 * 4096);
        s.munmap(base + 16 * 4096, 48 * 4096);
        if i % 4 == 0 {
            s.mmap_anon(base + 0x80_0000, 4096);
        }
    })
}

/// A child forked each iteration inherits the fds, opens one more and exits.
fn forks() -> Stream {
    marked(120, |s, i| {
        let (parent, child) = (s.tgid, 5000 + i as u32);
        s.open("/srv/shared", 7);
        s.push(parent, parent, What::Fork { child }, None);
        s.push(
            child,
            child,
            What::Syscall(
                call(nr::OPENAT, 8, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/srv/child"),
            ),
            None,
        );
        s.push(child, child, What::Exit, None);
        s.close(7);
    })
}

/// The table fills: EMFILE, with fds churning across the first failure.
fn failing() -> Stream {
    marked(200, |s, i| {
        s.open("/srv/data", 5);
        if i >= 150 {
            s.sys(call(nr::CLOSE, 0, [5, 0, 0, 0, 0, 0]));
            s.push(
                s.tgid,
                s.tgid,
                What::Failed(FailedCall {
                    nr: nr::OPENAT,
                    name: "openat",
                    errno: 24,
                }),
                None,
            );
        } else {
            s.close(5);
            s.open("/srv/leak", 100 + i as i32);
        }
    })
}

/// Temporary files made and removed in each iteration, one left every 5th; a watch added
/// and removed in each, one kept every 7th; an O_EXCL open failing with EEXIST in each.
fn files_and_watches() -> Stream {
    marked(200, |s, i| {
        s.mkstemp(&format!("/tmp/w-{i:06}"), 6).close(6);
        s.unlink(&format!("/tmp/w-{i:06}"));
        if i % 5 == 0 {
            s.mkstemp(&format!("/tmp/keep-{i:06}"), 7).close(7);
        }
        if i == 0 {
            s.inotify_init(9);
        }
        s.add_watch(9, "/srv/watched", 1).rm_watch(9, 1);
        if i % 7 == 0 {
            s.add_watch(9, &format!("/srv/kept-{i}"), 100 + i as i32);
        }
        let tgid = s.tgid;
        s.push(
            tgid,
            tgid,
            What::Failed(FailedCall {
                nr: nr::OPENAT,
                name: "openat",
                errno: 17,
            }),
            None,
        );
    })
}

/// Everything lives across one or more boundaries before it is released: files made in
/// one iteration and removed in the next, mappings unmapped three iterations later, fds
/// closed two later, each a little more than the last now and then.
fn crossing() -> Stream {
    marked(600, |s, i| {
        s.mkstemp(&format!("/tmp/x-{i:06}"), 6).close(6);
        if i >= 1 {
            s.unlink(&format!("/tmp/x-{:06}", i - 1));
        }
        let region = |k: u64| 0x7100_0000_0000 + k * 0x10_0000;
        s.mmap_anon(region(i), 4096 * (1 + i % 3));
        if i >= 3 {
            s.munmap(region(i - 3), 4096 * (1 + (i - 3) % 3));
        }
        s.open("/srv/held", 10 + (i % 3) as i32);
        if i >= 2 && i % 17 != 0 {
            s.close(10 + ((i - 2) % 3) as i32);
        }
    })
}

#[rstest]
#[case::crossing(crossing())]
#[case::files_and_watches(files_and_watches())]
#[case::fd_churn_leak(fd_churn(3))]
#[case::fd_churn_no_leak(fd_churn(u64::MAX))]
#[case::map_churn(map_churn())]
#[case::forks(forks())]
#[case::failing(failing())]
fn folding_changes_no_result(#[case] stream: Stream, #[values(1, 7, 500)] every: u64) {
    let full = replay(&stream, None);
    let folded = replay(&stream, Some(every));
    let records = [
        folded.fd_records(),
        folded.map_records(),
        folded.file_records(),
        folded.watch_records(),
    ];
    assert!(
        records.iter().map(|r| r.folded().records).sum::<u64>() > 0,
        "the stream folded nothing: the test would prove nothing"
    );
    assert_same(&judged(&folded), &judged(&full));
}

/// Iterations from opens of a path, taken as they come.
#[rstest]
#[case::crossing(crossing())]
#[case::fd_churn_leak(fd_churn(3))]
#[case::map_churn(map_churn())]
fn folding_on_path_boundaries_changes_no_result(
    #[case] stream: Stream,
    #[values(1, 500)] every: u64,
) {
    let source = BoundarySource::PathsContaining("iteration/tick".into());
    let request = IterationRequest::Path("iteration/tick".into());
    let full = replay(&stream, None);
    let folded = replay_on(&stream, Some(every), source);
    assert!(folded.fd_records().folded().records > 0);
    assert!(folded.opened_paths().len() < full.opened_paths().len() / 2);
    let analysis = judged_on(&folded, &request);
    assert!(analysis.contains("source: Path"), "{analysis}");
    assert_same(&analysis, &judged_on(&full, &request));
}

/// Equal texts, or the first lines that differ (the analyses are long).
pub(super) fn assert_same(folded: &str, full: &str) {
    if let Some(difference) = difference(folded, full) {
        panic!("{difference}");
    }
}

/// Where two analyses part, with a few lines of each around it; `None` when equal.
pub(super) fn difference(folded: &str, full: &str) -> Option<String> {
    let at = folded
        .lines()
        .zip(full.lines())
        .position(|(a, b)| a != b)
        .or_else(|| (folded.lines().count() != full.lines().count()).then_some(0))?;
    let lines = |text: &str| {
        text.lines()
            .skip(at.saturating_sub(8))
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    };
    Some(format!(
        "line {at}\nfolded:\n{}\n---- full:\n{}",
        lines(folded),
        lines(full)
    ))
}

#[test]
fn folding_keeps_what_is_live_and_what_crossed() {
    let stream = fd_churn(3);
    let full = replay(&stream, None);
    let folded = replay(&stream, Some(1));
    let live = |l: &Ledger| l.fd_records().all().iter().filter(|r| r.is_live()).count();
    assert_eq!(live(&folded), live(&full));
    // Of 6,431 fds, kept: the live ones and the tail since the last fold (at least the
    // unsettled 50 ms = 25 iterations, and fewer than the rest kept).
    assert!(
        folded.fd_records().all().len() < 1_500,
        "{}",
        folded.fd_records().all().len()
    );
    assert!(folded.rss_samples().len() < full.rss_samples().len() / 5);
    assert_eq!(folded.rss_samples_taken(), full.rss_samples_taken());
    // The leak is still found from what was kept, and every acquisition counted (300 x 20
    // churned, 300 ticks, 100 kept, 30 crossing, 1 before the loop).
    let analysis = judged(&folded);
    assert!(analysis.contains("verdict: Leak"), "{analysis}");
    assert!(analysis.contains("acquired: 6431"), "{analysis}");
}

#[test]
fn files_watches_and_failures_fold() {
    let folded = replay(&files_and_watches(), Some(1));
    assert!(
        folded.file_records().all().len() < 100,
        "{}",
        folded.file_records().all().len()
    );
    assert!(folded.watch_records().all().len() < 100);
    let failures = folded.failed_acquisitions().len();
    assert!(failures < 100, "{failures} of 200 failures kept");
    let analysis = judged(&folded);
    assert!(
        analysis.contains("count: 200,"),
        "EEXIST counted: {analysis}"
    );
}

#[test]
fn records_crossing_boundaries_fold_once_released() {
    let folded = replay(&crossing(), Some(1));
    let kept = |records: &crate::ledger::records::Records| records.all().len();
    // 600 of each were made; what is left is the live ones (fds never closed every 17th
    // iteration) and the tail since the last fold (folds come less often as the kept
    // per-iteration samples grow, to keep the work linear).
    for (class, records) in [
        ("files", folded.file_records()),
        ("maps", folded.map_records()),
        ("fds", folded.fd_records()),
    ] {
        assert!(kept(records) < 300, "{class}: {} kept", kept(records));
        assert!(records.folded().live.iter().any(|&d| d != 0), "{class}");
    }
    assert!(folded.file_size_samples().len() < 100);
}

#[test]
fn nothing_folds_without_two_markers() {
    let mut stream = Stream::new(100);
    for _ in 0..1000 {
        stream.open("/srv/data", 5).close(5);
        stream.now += 1_000_000;
    }
    stream.marker();
    let folded = replay(&stream, Some(1));
    assert_eq!(folded.fd_records().folded().records, 0);
}

#[test]
fn boundaries_are_sorted_where_new_and_in_full_when_one_came_late() {
    let mut boundaries = crate::ledger::boundaries::Kept::new(100);
    let push = |kept: &mut crate::ledger::boundaries::Kept, ts: &[u64]| {
        for &t in ts {
            kept.push(t);
        }
    };
    push(&mut boundaries, &[10, 20, 30]);
    boundaries.sorted();
    push(&mut boundaries, &[50, 40]);
    assert_eq!(boundaries.sorted(), [10, 20, 30, 40, 50]);
    push(&mut boundaries, &[60, 25]);
    assert_eq!(boundaries.sorted(), [10, 20, 25, 30, 40, 50, 60]);
    assert_eq!(boundaries.sorted_view().len(), 7);
}

#[test]
fn a_boundary_arriving_after_the_fold_settled_past_it_makes_every_verdict_inconclusive() {
    let mut stream = fd_churn(3);
    let last = stream.events.last().unwrap().time_ns;
    // A marker stamped 100 ms before the end arrives last.
    stream.events.push(crate::event::Event {
        time_ns: last - 100_000_000,
        tgid: stream.tgid,
        tid: stream.tgid + 1,
        rss_bytes: None,
        what: What::Marker { arg: 0, heap: None },
    });
    stream.events.push(crate::event::Event {
        time_ns: last + 1_000,
        tgid: stream.tgid,
        tid: stream.tgid,
        rss_bytes: None,
        what: What::Marker { arg: 0, heap: None },
    });
    let folded = replay(&stream, Some(1));
    assert_eq!(folded.late_boundaries(), 1);
    let analysis = judged(&folded);
    assert!(
        analysis.contains("arrived more than 50 ms late"),
        "{analysis}"
    );
    assert!(!analysis.contains("verdict: Leak"), "{analysis}");
}
