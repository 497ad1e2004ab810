//! Verdicts at a bounded resolution: long synthetic runs judged on every boundary and on
//! every stride-th one (a small bound, so the stride grows to 128) reach the same verdicts
//! and rates, and the ledger never keeps more than twice the bound, while folding.

use rstest::rstest;

use crate::analysis::trend::{Judgement, Verdict};
use crate::analysis::{self, Analysis, RunFacts};
use crate::diagnosis::{RunInfo, TargetExit, diagnose};
use crate::event::What;
use crate::iterations::{IterationRequest, Iterations, detect};
use crate::ledger::Ledger;
use crate::ledger::streaming::BoundarySource;
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls as nr;

/// Enough boundaries that every one is kept.
const EXACT: usize = 1 << 20;
/// 50,000 iterations at this bound are judged on every 128th.
const SMALL: usize = 256;
const ITERATIONS: u64 = 50_000;

/// `ITERATIONS` marked iterations 2 ms apart, each opening and closing a file and
/// mapping and unmapping 64 KiB, plus `body`.
fn marked(mut body: impl FnMut(&mut Stream, u64)) -> Stream {
    let mut stream = Stream::new(100);
    stream.open("/etc/before-the-loop", 3).close(3);
    stream.brk(0x100_0000);
    for i in 0..ITERATIONS {
        stream.marker_with_rss(10 << 20);
        stream.open("/srv/data", 5).close(5);
        let base = 0x7000_0000_0000 + (i % 64) * 0x100_0000;
        stream.mmap_anon(base, 16 * 4096).munmap(base, 16 * 4096);
        body(&mut stream, i);
        stream.now += 2_000_000;
    }
    stream.exit();
    stream
}

/// One fd kept every 10th iteration, one 4 KiB mapping every 4th, the heap grown by a
/// page every iteration.
fn leaking() -> Stream {
    marked(|s, i| {
        if i % 10 == 0 {
            s.open("/srv/kept", 1000 + (i / 10) as i32);
        }
        if i % 4 == 0 {
            s.mmap_anon(0x7f00_0000_0000 + i * 0x1000, 4096);
        }
        s.brk(0x100_0000 + (i + 1) * 4096);
    })
}

/// Churn that crosses boundaries and comes back: an fd held across one boundary every
/// 10 iterations, a mapping across three, the heap up and down.
fn churning() -> Stream {
    marked(|s, i| {
        if i % 10 == 3 {
            s.open("/srv/crossing", 900);
        }
        if i % 10 == 4 {
            s.close(900);
        }
        let region = |k: u64| 0x7100_0000_0000 + (k % 16) * 0x10_0000;
        s.mmap_anon(region(i), 4096 * (1 + i % 3));
        if i >= 3 {
            s.munmap(region(i - 3), 4096 * (1 + (i - 3) % 3));
        }
        s.brk(0x100_0000 + (i % 5) * 4096);
    })
}

fn replay(stream: &Stream, max: usize, fold: bool) -> Ledger {
    let mut ledger = Ledger::new();
    ledger.set_max_boundaries(max);
    if fold {
        ledger.stream_on_every(BoundarySource::Markers, 5_000);
    }
    for event in &stream.events {
        ledger.apply(event);
        if fold {
            assert_bounded(&ledger, max);
        }
    }
    ledger
}

/// Memory of the boundaries and the difference series stays within twice the bound.
fn assert_bounded(ledger: &Ledger, max: usize) {
    assert!(ledger.streaming.boundaries.kept_len() < 2 * max);
    for records in [
        ledger.fd_records(),
        ledger.map_records(),
        ledger.file_records(),
        ledger.watch_records(),
    ] {
        let folded = records.folded();
        assert!(folded.live.len() <= 2 * max, "{}", folded.live.len());
        assert!(folded.bytes.len() <= 2 * max, "{}", folded.bytes.len());
    }
}

fn judged(ledger: &Ledger) -> (Iterations, Analysis) {
    let iterations = detect(ledger, &IterationRequest::Symbol("tick".into()));
    let analysis = analysis::analyze(ledger, &iterations, &RunFacts::default());
    (iterations, analysis)
}

/// The judgements compared: (name, judgement).
fn judgements(analysis: &Analysis) -> Vec<(&'static str, &Judgement)> {
    vec![
        ("fd", &analysis.fd.count),
        ("mmap", &analysis.mmap.count),
        (
            "mmap bytes",
            analysis.mmap.bytes.as_ref().expect("mapped bytes"),
        ),
        ("brk", &analysis.brk.bytes),
        ("rss", &analysis.rss.bytes),
    ]
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1e-9)
}

/// The same verdicts and rates (within 1 %) on 391 points as on 50,000, folding or not;
/// detection limits within 5 % (here they rest on the window's length and the class's
/// step, which a stride does not change; where the noise around the line decides, the
/// limit grows with the square root of the stride, since fewer points are fitted).
#[rstest]
#[case::leaking(leaking(), [Verdict::Leak, Verdict::Leak, Verdict::Leak, Verdict::Leak])]
#[case::churning(churning(), [Verdict::NoLeak; 4])]
fn strided_verdicts_equal_the_exact_ones(
    #[case] stream: Stream,
    #[case] expected: [Verdict; 4],
    #[values(true, false)] fold: bool,
) {
    let (exact_iterations, exact) = judged(&replay(&stream, EXACT, fold));
    let strided_ledger = replay(&stream, SMALL, fold);
    let (iterations, strided) = judged(&strided_ledger);
    assert_eq!(exact_iterations.stride, 1);
    assert_eq!(iterations.stride, 128);
    assert_eq!(iterations.count(), ITERATIONS as usize);
    assert_eq!(iterations.boundaries.len(), 392); // 0, 128, ..., 49,920, and 49,999
    assert!(iterations.boundaries.len() < 2 * SMALL);
    assert_eq!(iterations.last(), exact_iterations.last());
    for ((name, a), (_, b)) in judgements(&exact).into_iter().zip(judgements(&strided)) {
        assert_eq!(a.verdict, b.verdict, "{name}: {} / {}", a.why, b.why);
        let (la, lb) = (a.limit.unwrap(), b.limit.unwrap());
        eprintln!(
            "{name}: {:?} rate {} / {} limit {la} / {lb}",
            a.verdict, a.rate, b.rate
        );
        if a.verdict == Verdict::Leak {
            assert!(
                close(a.rate, b.rate, 0.01),
                "{name}: {} / {}",
                a.rate,
                b.rate
            );
        } else {
            // No growth: both rates are noise below what either run could detect.
            assert!(
                (a.rate - b.rate).abs() <= la.max(lb),
                "{name}: {} / {}",
                a.rate,
                b.rate
            );
        }
        assert!(close(la, lb, 0.05), "{name} limits: {la} / {lb}");
    }
    let verdicts = [
        exact.fd.verdict,
        exact.mmap.verdict,
        exact.brk.bytes.verdict,
        strided.fd.verdict,
    ];
    assert_eq!(verdicts, expected);
    // What is live at the end is exact: it is read at the last real boundary.
    for (a, b) in [(&exact.fd, &strided.fd), (&exact.mmap, &strided.mmap)] {
        assert_eq!(a.live_at_end, b.live_at_end);
        assert_eq!(a.live_bytes_at_end, b.live_bytes_at_end);
        assert_eq!(a.acquired, b.acquired);
        // Lifetimes in iterations, too: every boundary of these runs is a recent one.
        assert_eq!(a.lifetimes.iterations(), b.lifetimes.iterations());
        assert_eq!(a.lifetimes.ns(), b.lifetimes.ns());
        assert_eq!(a.sites.len(), b.sites.len());
        for (x, y) in a.sites.iter().zip(&b.sites) {
            assert_eq!((x.leaked, x.verdict), (y.leaked, y.verdict));
            assert!(close(x.leaked_per_iteration, y.leaked_per_iteration, 1e-9));
        }
    }
    assert_eq!(exact.brk.live_bytes_at_end, strided.brk.live_bytes_at_end);
}

/// A run of the leaking stream reports the stride: one line in the text, two numbers in
/// the JSON.
#[test]
fn the_report_states_the_stride() {
    let stream = leaking();
    let ledger = replay(&stream, SMALL, true);
    let info = RunInfo {
        command: vec!["leaky".into()],
        pid: 100,
        exit: TargetExit::Code(0),
        lost_events: 0,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: IterationRequest::Symbol("tick".into()),
    };
    let report = diagnose(ledger, &info);
    let mut text = Vec::new();
    report.write_text(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("\n  judged on 392 boundaries, one every 128 iterations\n"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["iterations"]["stride"], 128);
    assert_eq!(json["iterations"]["count"], ITERATIONS);
    assert_eq!(json["iterations"]["judged_boundaries"], 392);
    assert_eq!(json["classes"]["fd"]["verdict"], "leak");
}

/// A leak that starts late, a failure at the limit, and an fd that lives across many
/// boundaries: the iteration indexes the report gives are iterations, not points.
#[test]
fn iteration_indexes_are_iterations() {
    let stream = marked(|s, i| {
        if i >= 30_000 && i % 2 == 0 {
            s.open("/srv/late", 2000 + (i / 2) as i32);
        }
        if i == 40_001 {
            let tgid = s.tgid;
            s.push(
                tgid,
                tgid,
                What::Failed(crate::event::FailedCall {
                    nr: nr::OPENAT,
                    name: "openat",
                    errno: 24,
                }),
                None,
            );
        }
        if i == 10_000 {
            s.sys(call(nr::OPENAT, 700, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/srv/long"));
        }
        if i == 20_000 {
            s.close(700);
        }
    });
    let (_, exact) = judged(&replay(&stream, EXACT, true));
    let (iterations, strided) = judged(&replay(&stream, SMALL, true));
    assert_eq!(iterations.stride, 128);
    let hit = |a: &Analysis| a.fd.limit_hit.clone().expect("EMFILE after a climb");
    assert_eq!(hit(&exact).iteration, 40_001);
    // Evenly paced iterations: placed exactly between the judged boundaries around it.
    assert_eq!(hit(&strided).iteration, 40_001);
    let first = |a: &Analysis| a.fd.failures.by_errno[&24].first_iteration;
    assert_eq!(first(&exact), 40_001);
    assert_eq!(first(&strided), 40_001);
    // 10,000 iterations: both ends among the recent boundaries, so counted exactly at a
    // stride of 128 too.
    let longest = |a: &Analysis| a.fd.lifetimes.iterations().max;
    assert_eq!(longest(&exact), 10_000);
    assert_eq!(longest(&strided), 10_000);
    assert_eq!(exact.fd.verdict, Verdict::Leak);
    assert_eq!(strided.fd.verdict, Verdict::Leak);
    assert!(close(exact.fd.count.rate, strided.fd.count.rate, 0.01));
}

/// Automatic detection picks its boundaries from every open at the end; they are
/// decimated the same way before the analysis, which is then bounded too.
#[test]
fn automatically_detected_boundaries_are_decimated_too() {
    let ledger = replay(&leaking(), SMALL, false);
    let iterations = detect(&ledger, &IterationRequest::Auto);
    assert_eq!(iterations.source, crate::iterations::IterationSource::Auto);
    assert_eq!(
        iterations.count(),
        ITERATIONS as usize,
        "{}",
        iterations.detail
    );
    assert_eq!(iterations.stride, 128);
    assert!(iterations.boundaries.len() <= 2 * SMALL);
    let analysis = analysis::analyze(&ledger, &iterations, &RunFacts::default());
    assert_eq!(analysis.fd.verdict, Verdict::Leak);
    assert!(
        close(analysis.fd.count.rate, 0.1, 0.01),
        "{}",
        analysis.fd.count.rate
    );
}
