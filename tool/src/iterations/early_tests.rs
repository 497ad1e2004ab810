//! Choosing the loop while tracing: a run that commits early is judged as the batch
//! detection judges the whole run, and a rule that stops marking the loop ends
//! inconclusive.

use super::Early;
use crate::analysis::{self, RunFacts};
use crate::event::What;
use crate::iterations::{IterationRequest, IterationSource, Iterations, detect};
use crate::ledger::Ledger;
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls as nr;
use rstest::rstest;

const TICK: &str = "/srv/loop/tick";

/// A helper process that opens a config file a few times and exits, then `iterations`
/// iterations of the main process, 2 ms apart (so most of the run settles and folds):
/// open and close `TICK` (while `ticks(i)`), churn fds and a mapping, keep an fd every
/// `keep_every`-th iteration (each at a path of its own), grow the heap every 10th.
fn run(iterations: u64, keep_every: u64, ticks: impl Fn(u64) -> bool) -> Stream {
    let mut s = Stream::new(100);
    s.open("/usr/lib/libc.so.6", 3).close(3);
    s.push(100, 100, What::Fork { child: 101 }, None);
    for _ in 0..12 {
        s.push(
            101,
            101,
            What::Syscall(
                call(nr::OPENAT, 4, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/etc/helper"),
            ),
            None,
        );
        s.push(
            101,
            101,
            What::Syscall(call(nr::CLOSE, 0, [4, 0, 0, 0, 0, 0])),
            None,
        );
    }
    s.push(101, 101, What::Exit, None);
    s.brk(0x1000_0000);
    for i in 0..iterations {
        if ticks(i) {
            s.open(TICK, 5).close(5);
        }
        for _ in 0..3 {
            s.open("/srv/loop/data", 6).close(6);
        }
        let base = 0x7000_0000_0000 + i * 0x10_0000;
        s.mmap_anon(base, 4 * 4096).munmap(base, 4 * 4096);
        if i % keep_every == 0 {
            s.open(&format!("/srv/loop/kept-{i}"), 1000 + i as i32);
        }
        if i % 10 == 0 {
            s.brk(0x1000_0000 + (i / 10 + 1) * 4096);
        }
        s.now += 2_000_000;
    }
    s.exit();
    s
}

/// Work that does not repeat convincingly: every data file opened once, and the only
/// recurring path opened at random points.
fn unlooped(iterations: u64, step_ns: u64) -> Stream {
    let mut s = Stream::new(100);
    let mut x: u64 = 1;
    for i in 0..iterations {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if (x >> 33).is_multiple_of(4) {
            s.open("/srv/random/tick", 5).close(5);
        }
        s.open(&format!("/srv/once/{i}"), 6).close(6);
        if i % 3 == 0 {
            s.open(&format!("/srv/kept/{i}"), 1000 + i as i32);
        }
        s.now += step_ns;
    }
    s.exit();
    s
}

/// The ledger of `stream`, with detection while tracing from `first_try` events on.
fn traced(stream: &Stream, first_try: Option<u64>) -> Ledger {
    traced_at(stream, first_try, crate::ledger::boundaries::MAX_BOUNDARIES)
}

/// [`traced`], keeping at most `2 × max` boundaries.
fn traced_at(stream: &Stream, first_try: Option<u64>, max: usize) -> Ledger {
    let mut ledger = Ledger::new();
    ledger.set_max_boundaries(max);
    if let Some(events) = first_try {
        ledger.detect_early_with(Early::new(events).folding_every(500));
    }
    apply_all(&mut ledger, &stream.events);
    ledger
}

/// Applies `events` as the drain does, polling between passes of 50 events.
fn apply_all(ledger: &mut Ledger, events: &[crate::event::Event]) {
    for pass in events.chunks(50) {
        for event in pass {
            ledger.apply(event);
        }
        ledger.poll_early();
    }
}

/// [`traced`] from 2,000 events on, with the notes it gave the user as it went.
fn traced_with_notes(stream: &Stream) -> (Ledger, Vec<String>) {
    let mut ledger = Ledger::new();
    ledger.detect_early_with(Early::new(2_000).folding_every(500));
    let mut notes = Vec::new();
    for pass in stream.events.chunks(50) {
        apply_all(&mut ledger, pass);
        notes.extend(ledger.take_early_note());
    }
    (ledger, notes)
}

fn judged(ledger: &Ledger) -> (Iterations, String) {
    let iterations = detect(ledger, &IterationRequest::Auto);
    let analysis = analysis::analyze(ledger, &iterations, &RunFacts::default());
    (iterations, format!("{analysis:#?}"))
}

fn folded_records(ledger: &Ledger) -> u64 {
    ledger.fd_records().folded().records + ledger.map_records().folded().records
}

/// Also at a stride (a bound of 16 boundaries: every 64th judged): the committed run folds
/// its series by the kept boundaries, and is judged on the same points as the batch run,
/// which decimates every boundary at the end.
#[rstest]
fn a_run_committed_early_is_judged_as_the_whole_run_is(
    #[values(crate::ledger::boundaries::MAX_BOUNDARIES, 16)] max: usize,
) {
    for keep_every in [1, 7, u64::MAX] {
        let stream = run(1500, keep_every, |_| true);
        let (batch, batch_analysis) = judged(&traced_at(&stream, None, max));
        let early = traced_at(&stream, Some(2_000), max);
        assert!(early.early_commit().is_some(), "committed");
        assert!(
            folded_records(&early) > 5_000,
            "folded {}",
            folded_records(&early)
        );
        assert!(early.opened_paths().len() < 1_000);
        let (committed, analysis) = judged(&early);
        assert_eq!(batch.source, IterationSource::Auto);
        assert_eq!(committed.source, IterationSource::Auto);
        assert_eq!(batch.stride, if max == 16 { 64 } else { 1 });
        assert_eq!(committed.stride, batch.stride);
        assert_eq!(committed.total, batch.total);
        assert_eq!(committed.boundaries, batch.boundaries);
        assert_eq!(committed.auto_path, batch.auto_path);
        assert_eq!(committed.confidence, batch.confidence);
        assert_eq!(committed.coverage, batch.coverage);
        assert_eq!(committed.unconvincing, None);
        let from = committed.chosen_from_events.expect("said");
        assert!(
            committed
                .detail
                .contains(&format!("chosen from the first {from} events")),
            "{}",
            committed.detail
        );
        assert!(
            committed.detail.starts_with(&batch.detail),
            "{} / {}",
            committed.detail,
            batch.detail
        );
        assert_same(&analysis, &batch_analysis);
        let verdict = if keep_every == u64::MAX {
            "verdict: NoLeak"
        } else {
            "verdict: Leak"
        };
        assert!(analysis.contains(verdict), "{keep_every}: {analysis}");
    }
}

#[test]
fn a_path_that_stops_recurring_while_the_work_goes_on_makes_every_verdict_inconclusive() {
    // A leak of one fd per iteration throughout; the tick stops half way.
    let stream = run(1200, 1, |i| i < 600);
    let early = traced(&stream, Some(2_000));
    assert!(early.early_commit().is_some(), "committed");
    let (committed, analysis) = judged(&early);
    let reason = committed.unconvincing.as_deref().expect("unconvincing");
    assert!(reason.contains("stops before the work does"), "{reason}");
    assert!(
        reason.contains("--iteration-path or --iteration-symbol"),
        "{reason}"
    );
    assert_eq!(committed.confidence, 0.0);
    for verdict in ["NoLeak", "Leak", "Plateau"] {
        assert!(
            !analysis.contains(&format!("verdict: {verdict},")),
            "{verdict}: {analysis}"
        );
    }
    assert!(analysis.contains("verdict: Inconclusive"));
}

#[test]
fn without_a_convincing_loop_every_record_is_kept_and_the_user_told_once() {
    let stream = unlooped(3000, 2_000_000);
    let (ledger, notes) = traced_with_notes(&stream);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("memory grows with events"),
        "{}",
        notes[0]
    );
    assert!(ledger.early_commit().is_none());
    assert_eq!(folded_records(&ledger), 0);
    let batch = traced(&stream, None);
    assert_eq!(judged(&ledger), judged(&batch));
}

#[test]
fn a_loop_that_starts_late_is_committed_to_at_the_second_try() {
    // About 2,500 events of a quick start-up without a loop, then the loop (the loop must
    // span most of the process's life so far to be trusted).
    let mut stream = unlooped(800, 100_000);
    stream.events.pop(); // its exit
    let tail = run(1500, 7, |_| true);
    let start = stream.now;
    stream
        .events
        .extend(tail.events.into_iter().map(|mut event| {
            event.time_ns += start;
            event
        }));
    let (ledger, notes) = traced_with_notes(&stream);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("looked for once more at 4000 events"));
    let (committed, analysis) = judged(&ledger);
    assert_eq!(committed.chosen_from_events, Some(4_000));
    let (batch, batch_analysis) = judged(&traced(&stream, None));
    assert_eq!(committed.boundaries, batch.boundaries);
    assert_eq!(committed.confidence, batch.confidence);
    assert_same(&analysis, &batch_analysis);
}

/// A path opened 8 times per iteration outranks the once-per-iteration tick after 100
/// iterations as the run stands (more repeats), but not once the run is long: the early
/// choice is the one the end makes.
#[test]
fn the_early_choice_is_the_one_a_long_run_ends_with() {
    let mut s = Stream::new(100);
    for _ in 0..1500 {
        s.open(TICK, 5).close(5);
        for fd in 6..14 {
            s.open("/srv/loop/data", fd);
        }
        for fd in 6..14 {
            s.close(fd);
        }
        s.now += 2_000_000;
    }
    s.exit();
    let early = traced(&s, Some(2_500));
    let (committed, analysis) = judged(&early);
    assert!(committed.chosen_from_events.is_some());
    assert_eq!(committed.auto_path.as_deref(), Some(TICK));
    let (batch, batch_analysis) = judged(&traced(&s, None));
    assert_eq!(batch.auto_path.as_deref(), Some(TICK));
    assert_eq!(committed.boundaries, batch.boundaries);
    assert_same(&analysis, &batch_analysis);
}

/// The work moves to a process the rule does not follow: inconclusive.
#[test]
fn work_that_moves_to_another_process_makes_every_verdict_inconclusive() {
    let mut s = run(300, 1, |_| true);
    s.events.pop(); // its exit
    s.push(100, 100, What::Fork { child: 200 }, None);
    for i in 0..3000 {
        s.push(
            200,
            200,
            What::Syscall(
                call(nr::OPENAT, 7, [-100i64 as u64, 0, 0, 0, 0, 0])
                    .with_path(&format!("/srv/other/{i}")),
            ),
            None,
        );
        s.now += 100_000;
    }
    let early = traced(&s, Some(2_000));
    assert!(early.early_commit().is_some());
    let (committed, analysis) = judged(&early);
    let reason = committed.unconvincing.as_deref().expect("unconvincing");
    assert!(reason.contains("pid 200"), "{reason}");
    assert!(!analysis.contains("verdict: Leak,"), "{analysis}");
    assert!(!analysis.contains("verdict: NoLeak,"), "{analysis}");
}

#[test]
fn a_short_run_is_judged_as_before() {
    let stream = run(300, 7, |_| true);
    let early = traced(&stream, Some(1 << 18));
    assert!(early.early_commit().is_none());
    assert_eq!(judged(&early), judged(&traced(&stream, None)));
}

/// Equal analyses, or the first lines where they part (they are long).
fn assert_same(early: &str, batch: &str) {
    if let Some(at) = early
        .lines()
        .zip(batch.lines())
        .position(|(a, b)| a != b)
        .or_else(|| (early.lines().count() != batch.lines().count()).then_some(0))
    {
        let around = |text: &str| {
            let lines: Vec<&str> = text.lines().skip(at.saturating_sub(8)).take(12).collect();
            lines.join("\n")
        };
        panic!(
            "line {at}\nearly:\n{}\n---- batch:\n{}",
            around(early),
            around(batch)
        );
    }
}
