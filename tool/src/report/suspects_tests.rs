//! The suspects block in each verdict case, line by line.

use super::*;
use crate::report::synthetic::{clean_report, flat, leaking};

/// A clean extract run where every memory class could be judged.
fn settled() -> Report {
    let mut report = clean_report("leakscope extract");
    let c = &mut report.classes;
    c.fd.detection_limit_per_iteration = Some(0.00002);
    c.brk.verdict = Verdict::NoLeak;
    c.brk.detection_limit_bytes_per_iteration = Some(100.0);
    c.rss.verdict = Verdict::NoLeak;
    c.rss.detection_limit_bytes_per_iteration = Some(64.0);
    c.files = flat(2, true);
    c.files.detection_limit_per_iteration = Some(0.00002);
    report
}

fn lines(report: &mut Report) -> Vec<String> {
    report.answer_suspects();
    let mut out = Vec::new();
    report.write_suspects(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_clean_run_answers_each_suspect_with_its_limit() {
    assert_eq!(
        lines(&mut settled()),
        [
            "suspects from the original report:",
            "  file handles       no leak above 1 per 50,000 extractions (fd)",
            "  internal buffers   brk, mappings and RSS flat: no leak above 64 B per extraction",
            "  directory watchers none created (watches)",
            "  event listeners    not traced: heap allocations are traced with --heap; brk/mmap/RSS bound them: no leak above 64 B per extraction",
            "  temporary files    no leak above 1 per 50,000 extractions (files: 2 on disk at the end, flat)",
            "",
        ]
    );
}

#[test]
fn files_nothing_left_on_disk_reads_zero_left_behind() {
    let mut report = settled();
    report.classes.files = flat(0, true);
    // Created and removed every time.
    report.classes.files.acquired = 100;
    let suspects = suspects(&report.classes);
    assert_eq!(
        suspects[4].evidence,
        "0 left behind (files: no leak above 0.111 per extraction)"
    );
    assert_eq!(suspects[4].verdict, Verdict::NoLeak);
}

#[test]
fn leaks_name_their_rate_and_site() {
    let mut report = settled();
    report.classes.files = leaking("/tmp/app-XXXXXX.tmp", Some(4096));
    report.classes.watches = leaking("inotify watch on /tmp/job-N", None);
    report.classes.fd = leaking("/data/x.txt", None);
    let lines = lines(&mut report);
    assert_eq!(
        lines[1],
        "  file handles       LEAK: 1.00 per extraction at /data/x.txt"
    );
    assert_eq!(
        lines[3],
        "  directory watchers LEAK: 1.00 per extraction at inotify watch on /tmp/job-N"
    );
    assert_eq!(
        lines[5],
        "  temporary files    LEAK: 1.00 per extraction (4 KiB) at /tmp/app-XXXXXX.tmp"
    );
    let verdicts: Vec<Verdict> = report
        .suspects
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.verdict)
        .collect();
    use Verdict::*;
    assert_eq!(verdicts, [Leak, NoLeak, Leak, NoLeak, Leak]);
}

#[test]
fn a_memory_leak_is_a_buffer_leak_but_only_inconclusive_for_listeners() {
    let mut report = settled();
    report.classes.mmap = leaking("anon 64 KiB rw- private", Some(65536));
    let suspects = suspects(&report.classes);
    assert_eq!(
        suspects[1].evidence,
        "LEAK: mappings 64 KiB per extraction at anon 64 KiB rw- private"
    );
    assert_eq!(suspects[1].verdict, Verdict::Leak);
    assert_eq!(suspects[3].verdict, Verdict::Inconclusive);
    assert!(
        suspects[3].evidence.starts_with(
            "inconclusive: not traced: heap allocations are traced with --heap; memory grows (see internal buffers)"
        ),
        "{}",
        suspects[3].evidence
    );
}

#[test]
fn inconclusive_classes_give_their_reason_and_next_step() {
    // 100 iterations: too few to settle brk and RSS.
    let mut report = clean_report("leakscope extract");
    report.classes.files.verdict = Verdict::Inconclusive;
    report.classes.files.acquired = 10;
    report.classes.files.why = "7 events were lost; a lost release looks like a leak".into();
    let suspects = suspects(&report.classes);
    assert_eq!(suspects[1].verdict, Verdict::Inconclusive);
    assert!(
        suspects[1]
            .evidence
            .starts_with("inconclusive: brk heap: no sustained growth")
            && suspects[1]
                .evidence
                .contains("run at least 23,467 iterations")
            && suspects[1].evidence.contains("; RSS: "),
        "{}",
        suspects[1].evidence
    );
    assert_eq!(
        suspects[3].evidence,
        "inconclusive: not traced: heap allocations are traced with --heap; brk/mmap/RSS, which bound them, are inconclusive too (see internal buffers)"
    );
    assert_eq!(
        suspects[4].evidence,
        "inconclusive: 7 events were lost; a lost release looks like a leak (files)"
    );
}

#[test]
fn a_bounded_class_says_so() {
    let mut report = settled();
    report.classes.fd.verdict = Verdict::Plateau;
    report.classes.fd.why = "grew by 18, then stopped growing".into();
    report.classes.brk.verdict = Verdict::Plateau;
    let suspects = suspects(&report.classes);
    assert_eq!(
        suspects[0].evidence,
        "grew, then stopped (bounded): grew by 18, then stopped growing (fd)"
    );
    assert_eq!(
        suspects[1].evidence,
        "brk heap grew, then stopped (bounded)"
    );
    assert_eq!(suspects[3].verdict, Verdict::Plateau);
}

#[test]
fn the_json_has_suspects_only_when_answered() {
    let mut report = settled();
    assert!(report.to_json().get("suspects").is_none());
    report.answer_suspects();
    let json = report.to_json();
    let suspects = json["suspects"].as_array().unwrap();
    assert_eq!(suspects.len(), 5);
    assert_eq!(
        suspects[2],
        serde_json::json!({
            "suspect": "directory watchers",
            "classes": ["watches"],
            "verdict": "no-leak",
            "evidence": "none created (watches)",
        })
    );
    assert_eq!(
        suspects[1]["classes"],
        serde_json::json!(["brk", "mmap", "rss"])
    );
}

/// A heap class judged under `--heap`, of `verdict`.
fn heap(verdict: Verdict, bytes_per_iteration: f64) -> HeapReport {
    HeapReport {
        verdict,
        why: "a reason".to_string(),
        bytes_per_iteration,
        allocations_per_iteration: 1.0,
        live_bytes_at_end: Some(60_000),
        live_allocations_at_end: Some(2_000),
        detection_limit_bytes_per_iteration: Some(2.0),
        iterations_needed: None,
        missed_frees: 0,
        unrecorded: 0,
        late_frees: 0,
        sites: vec![super::super::model::HeapCallerReport {
            site: "add_listener".to_string(),
            frames: None,
            system: false,
            pid: 1,
            allocations: 2_000,
            bytes: 60_000,
            bytes_per_iteration,
            allocations_per_iteration: 1.0,
            without_stack: 0,
            stack: None,
        }],
        lifetime_ns: Default::default(),
        lifetime_iterations: Default::default(),
        lifetime_decades: Default::default(),
        lifetime_iteration_decades: Default::default(),
    }
}

#[test]
fn under_heap_listeners_take_the_heap_class_verdict() {
    let mut report = settled();
    report.classes.heap = Some(heap(Verdict::Leak, 30.0));
    let listeners = &suspects(&report.classes)[3];
    assert_eq!(listeners.suspect, "event listeners");
    assert_eq!(listeners.verdict, Verdict::Leak);
    assert_eq!(listeners.classes, ["heap"]);
    assert_eq!(
        listeners.evidence,
        "heap leak: 30 B per extraction, most from add_listener (heap)"
    );

    report.classes.heap = Some(heap(Verdict::NoLeak, 0.0));
    let listeners = &suspects(&report.classes)[3];
    assert_eq!(listeners.verdict, Verdict::NoLeak);
    assert_eq!(
        listeners.evidence,
        "no heap leak above 2.0 B per extraction (heap)"
    );
}
