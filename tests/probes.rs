//! The probes count exactly: each fixture runs with N = 0 and N = 1000, and the difference
//! per syscall must be exactly what the fixture does (start-up noise cancels out).

use leakscope_tests::{counts_beyond_baseline, expect};

const N: i64 = 1000;

#[test]
fn openat_and_close() {
    let target = tempfile::NamedTempFile::new().unwrap();
    let path = target.path().to_str().unwrap();
    assert_eq!(
        counts_beyond_baseline("open_close", N as u64, &[path]),
        expect(&[("openat", N), ("close", N)])
    );
}

#[test]
fn dup_family_onto_open_fds() {
    assert_eq!(
        counts_beyond_baseline("dup", N as u64, &[]),
        expect(&[
            ("openat", N),
            ("dup", N),
            ("dup2", N),
            ("dup3", N),
            ("fcntl", N),
            ("close", 3 * N)
        ])
    );
}

#[test]
fn close_range() {
    assert_eq!(
        counts_beyond_baseline("close_range", N as u64, &[]),
        expect(&[("openat", 5 * N), ("close_range", N)])
    );
}

#[test]
fn mmap_partial_munmap_and_mremap() {
    assert_eq!(
        counts_beyond_baseline("mmap", N as u64, &[]),
        expect(&[("mmap", N), ("munmap", 3 * N), ("mremap", N)])
    );
}

#[test]
fn brk_growth() {
    assert_eq!(
        counts_beyond_baseline("brk", N as u64, &[]),
        expect(&[("brk", N)])
    );
}

#[test]
fn io_on_a_second_thread() {
    assert_eq!(
        counts_beyond_baseline("thread", N as u64, &[]),
        expect(&[("openat", N), ("close", N)])
    );
}

#[test]
fn io_in_a_forked_child() {
    assert_eq!(
        counts_beyond_baseline("fork", N as u64, &[]),
        expect(&[("openat", N), ("close", N)])
    );
}

#[test]
fn pipe2_and_socket() {
    assert_eq!(
        counts_beyond_baseline("pipe_socket", N as u64, &[]),
        expect(&[("pipe2", N), ("socket", N), ("close", 3 * N)])
    );
}

/// A ring too small for a fast loop drops records. Every one of them is counted, with its
/// reason (delivered plus lost is what a lossless run delivers), the report says so, and
/// the verdicts are inconclusive rather than wrong.
#[test]
fn lost_events_are_counted_exactly_and_reported() {
    let target = tempfile::NamedTempFile::new().unwrap();
    let fixture = leakscope_tests::fixture("open_close")
        .to_string_lossy()
        .into_owned();
    let command = [
        fixture,
        "300000".into(),
        target.path().to_string_lossy().into_owned(),
    ];
    let lossy = leakscope_tests::leakscope_json("run", &["--ring-mib", "1"], &command);
    let lossless = leakscope_tests::leakscope_json("run", &["--ring-mib", "64"], &command);
    assert_eq!(
        lossless.report["lost_events"], 0,
        "64 MiB holds the whole run"
    );
    let delivered = |traced: &leakscope_tests::Traced| traced.counts().values().sum::<i64>();
    let lost = lossy.report["lost_events"].as_i64().unwrap();
    let by_reason = lossy.report["lost_by_reason"].as_object().unwrap();
    let lost_as = |reason: &str| by_reason.get(reason).map_or(0, |n| n.as_i64().unwrap());
    assert_eq!(
        by_reason.values().map(|n| n.as_i64().unwrap()).sum::<i64>(),
        lost,
        "every lost record has its reason: {by_reason:?}"
    );
    // `counts` holds successful calls, forks, execs and exits: lost failure records (libc's
    // start-up probes that fail) and markers are not among them.
    let lost_counted = lost - lost_as("ring_full_failed") - lost_as("ring_full_marker");
    assert_eq!(delivered(&lossy) + lost_counted, delivered(&lossless));
    assert_eq!(
        lossy.output.status.code(),
        Some(0),
        "the report is still written"
    );
    if lost > 0 {
        assert!(
            lossy.stderr().contains(&format!("{lost} events were lost")),
            "{}",
            lossy.stderr()
        );
        assert_eq!(lossy.report["classes"]["fd"]["verdict"], "inconclusive");
    }
}
