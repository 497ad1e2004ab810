//! Iteration detection on synthetic event streams.

use super::*;
use crate::event::What;
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls::{CLOSE, OPENAT};

fn open_call(path: &str, fd: i64) -> crate::event::Syscall {
    call(OPENAT, fd, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path(path)
}

fn close_call(fd: u64) -> crate::event::Syscall {
    call(CLOSE, 0, [fd, 0, 0, 0, 0, 0])
}

fn looped(iterations: usize) -> Stream {
    let mut s = Stream::new(1);
    s.open("/usr/lib/libc.so.6", 3).close(3);
    for _ in 0..iterations {
        s.marker();
        s.open("/etc/config", 3).close(3); // twice per iteration, unevenly
        s.open("/tmp/work/a.txt", 3).close(3);
        s.open("/tmp/work/b.txt", 3).close(3);
        s.now += 50_000;
        s.open("/etc/config", 3).close(3);
    }
    s
}

#[test]
fn symbol_uses_markers() {
    let ledger = looped(20).ledger();
    let iterations = detect(&ledger, &IterationRequest::Symbol("tick".into()));
    assert_eq!(
        (iterations.source, iterations.count(), iterations.confidence),
        (IterationSource::Symbol, 20, 1.0)
    );
    assert_eq!(iterations.index_at(iterations.boundaries[3] + 1), 3);
    assert_eq!(iterations.index_at(0), -1);
}

#[test]
fn path_matches_resolved_substrings() {
    let ledger = looped(20).ledger();
    let iterations = detect(&ledger, &IterationRequest::Path("work/b".into()));
    assert_eq!(
        (iterations.source, iterations.count()),
        (IterationSource::Path, 20)
    );
}

#[test]
fn auto_picks_the_first_evenly_recurring_path() {
    let ledger = looped(50).ledger();
    let iterations = detect(&ledger, &IterationRequest::Auto);
    assert_eq!(iterations.source, IterationSource::Auto);
    assert_eq!(iterations.auto_path.as_deref(), Some("/tmp/work/a.txt"));
    assert_eq!(iterations.count(), 50);
    assert!(iterations.confidence > 0.8, "{}", iterations.confidence);
    assert!(iterations.detail.contains("a.txt"));
}

#[test]
fn auto_prefers_a_long_loop_behind_a_set_up_of_many_short_processes() {
    // 40 short-lived helper processes (a shell shim, say) each open one config file,
    // evenly over a long set-up; then one process runs the real loop, briefly.
    let mut s = Stream::new(1);
    for helper in 0..40u32 {
        s.push(
            100 + helper,
            100 + helper,
            What::Syscall(open_call("/etc/shim.conf", 3)),
            None,
        );
        s.push(100 + helper, 100 + helper, What::Exit, None);
        s.now += 1_000_000;
    }
    for _ in 0..1000 {
        s.push(2, 2, What::Syscall(open_call("/tmp/work/tick", 3)), None);
        s.push(2, 2, What::Syscall(close_call(3)), None);
    }
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(
        iterations.auto_path.as_deref(),
        Some("/tmp/work/tick"),
        "{}",
        iterations.detail
    );
    assert_eq!(iterations.count(), 1000);
}

#[test]
fn missing_marker_falls_back_to_time_windows() {
    let mut s = Stream::new(1);
    for i in 0..30 {
        s.now += 100_000_000; // a run of 3 s: long enough for every window
        s.open("/tmp/unique", 3 + i);
    }
    s.exit();
    let ledger = s.ledger();
    let iterations = detect(&ledger, &IterationRequest::Symbol("never".into()));
    assert_eq!(
        (iterations.source, iterations.count()),
        (IterationSource::Time, TIME_WINDOWS)
    );
    assert!(iterations.detail.contains("fired 0 time"));
    // The windows end at the last acquisition, before the exit.
    assert!(iterations.last().unwrap() < s.events.last().unwrap().time_ns);
    assert_eq!(iterations.confidence, 0.0);
}

#[test]
fn a_start_up_burst_is_not_cut_into_meaningless_windows() {
    // A program that maps its libraries in 1 ms and exits: 10 µs windows would make
    // that burst look like steady growth.
    let mut s = Stream::new(1);
    for i in 0..200u64 {
        s.mmap_anon(0x7000_0000 + i * 0x10_0000, 65536);
    }
    s.exit();
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(iterations.source, IterationSource::Time);
    assert!(iterations.count() < 10, "{}", iterations.detail);
}

#[test]
fn auto_without_recurring_paths_uses_time() {
    let mut s = Stream::new(1);
    for i in 0..5 {
        s.open(&format!("/tmp/{i}"), 3).close(3);
    }
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(iterations.source, IterationSource::Time);
    assert_eq!(
        detect(&crate::ledger::Ledger::new(), &IterationRequest::Auto).count(),
        0
    );
}

/// A version-manager shim: helper processes forked by process 1 each open `config` once,
/// evenly over a long set-up; then process 1 execs the real program, which maps its
/// libraries and runs `iterations` iterations opening `tick` and keeping `data.txt` open.
fn shim_then_program(helpers: u32, iterations: usize) -> Stream {
    let mut s = Stream::new(1);
    for helper in 0..helpers {
        let child = 100 + helper;
        s.push(1, 1, What::Fork { child }, None);
        s.push(child, child, What::Exec(None), None);
        s.push(
            child,
            child,
            What::Syscall(open_call("/srv/shim/config", 3)),
            None,
        );
        s.push(child, child, What::Syscall(close_call(3)), None);
        s.push(child, child, What::Exit, None);
        s.now += 1_000_000;
    }
    s.push(1, 1, What::Exec(None), None);
    for i in 0..100u64 {
        s.mmap_anon(0x7000_0000 + i * 0x10_0000, 65536);
    }
    for i in 0..iterations {
        s.open("/srv/app/tick", 3).close(3);
        s.open("/srv/app/data.txt", 4 + i as i32);
        s.now += 20_000;
    }
    s.exit();
    s
}

#[test]
fn a_shim_set_up_is_not_the_loop_of_the_program_it_execs() {
    let iterations = detect(
        &shim_then_program(40, 200).ledger(),
        &IterationRequest::Auto,
    );
    assert_eq!(
        (iterations.source, iterations.auto_path.as_deref()),
        (IterationSource::Auto, Some("/srv/app/tick")),
        "{}",
        iterations.detail
    );
    assert_eq!(iterations.count(), 200);
    assert_eq!(iterations.unconvincing, None);
    // The 40 config opens and the 100 start-up mappings are outside the loop.
    let coverage = iterations.coverage.unwrap();
    assert!((coverage - 400.0 / 540.0).abs() < 0.01, "{coverage}");
    assert_eq!(iterations.candidates[0].path, "/srv/app/tick");
    // data.txt is opened in lockstep with tick: not named twice.
    assert!(
        iterations
            .candidates
            .iter()
            .all(|c| c.path != "/srv/app/data.txt")
    );
    assert!(
        iterations
            .candidates
            .iter()
            .any(|c| c.path == "/srv/shim/config")
    );
}

#[test]
fn a_loop_before_an_exec_belongs_to_the_image_that_ran_it() {
    // The shim itself (pid 1, before its exec) reads the config 40 times; the program it
    // execs into keeps pid 1 but never opens it, and does the work without any recurring
    // open: its memory grows.
    let mut s = Stream::new(1);
    for _ in 0..40 {
        s.open("/srv/shim/config", 3).close(3);
        s.now += 1_000_000;
    }
    s.push(1, 1, What::Exec(None), None);
    for i in 0..300u64 {
        s.mmap_anon(0x7000_0000 + i * 0x10_0000, 65536);
        s.now += 20_000;
    }
    s.exit();
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(iterations.source, IterationSource::Time);
    let reason = iterations.unconvincing.as_deref().unwrap();
    assert!(
        reason.starts_with("no loop found: \"/srv/shim/config\" (40 opens)")
            && reason.contains("opened it 0 times"),
        "{reason}"
    );
    assert_eq!(
        iterations.candidates,
        [MarkerCandidate {
            path: "/srv/shim/config".into(),
            count: 40,
            score: iterations.candidates[0].score
        }]
    );
}

#[test]
fn a_path_that_stops_before_the_work_does_is_not_the_loop() {
    // One process opens its config 40 times at start-up, then works: 500 unique files.
    let mut s = Stream::new(1);
    for _ in 0..40 {
        s.open("/srv/app/config", 3).close(3);
    }
    for i in 0..500 {
        s.open(&format!("/srv/app/out/{i}"), 3).close(3);
    }
    s.exit();
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(iterations.source, IterationSource::Time);
    let reason = iterations.unconvincing.as_deref().unwrap();
    assert!(reason.contains("stops before the work does"), "{reason}");
    assert_eq!(iterations.candidates[0].path, "/srv/app/config");
    assert_eq!(iterations.candidates[0].count, 40);
}

#[test]
fn a_path_that_recurs_only_at_the_end_covers_too_little() {
    // 1000 unique files first (the real work), then a config read 40 times evenly at exit.
    let mut s = Stream::new(1);
    for i in 0..1000 {
        s.open(&format!("/srv/app/out/{i}"), 3 + i);
    }
    for _ in 0..40 {
        s.open("/srv/app/config", 2000).close(2000);
    }
    s.exit();
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    let reason = iterations.unconvincing.as_deref().unwrap();
    assert!(reason.contains("hold only 4 %"), "{reason}");
}

#[test]
fn a_path_opened_in_bursts_is_not_the_loop() {
    // 20 opens at start-up and 20 at exit, the work in between: one giant "iteration".
    let mut s = Stream::new(1);
    for _ in 0..20 {
        s.open("/srv/app/config", 3).close(3);
    }
    for i in 0..30 {
        s.open(&format!("/srv/app/out/{i}"), 4 + i);
    }
    for _ in 0..20 {
        s.open("/srv/app/config", 3).close(3);
    }
    s.exit();
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    let reason = iterations.unconvincing.as_deref().unwrap();
    assert!(reason.contains("is opened in bursts"), "{reason}");
}

#[test]
fn the_best_convincing_candidate_wins_over_a_better_ranked_start_up_burst() {
    // The shim's config (40 evenly spaced opens by helpers) ranks high on its own, but
    // it is not a loop of the working process; the loop behind it is chosen.
    let ledger = shim_then_program(40, 50).ledger();
    let iterations = detect(&ledger, &IterationRequest::Auto);
    assert_eq!(iterations.auto_path.as_deref(), Some("/srv/app/tick"));
}

#[test]
fn coverage_is_stated_for_every_source() {
    let mut s = Stream::new(1);
    for i in 0..100 {
        s.open(&format!("/srv/start/{i}"), 3).close(3);
    }
    for _ in 0..100 {
        s.marker();
        s.open("/srv/app/tick", 3).close(3);
    }
    let ledger = s.ledger();
    for request in [
        IterationRequest::Symbol("tick".into()),
        IterationRequest::Path("/srv/app/tick".into()),
        IterationRequest::Auto,
    ] {
        let iterations = detect(&ledger, &request);
        assert_eq!(iterations.count(), 100, "{request:?}");
        assert_eq!(iterations.coverage, Some(0.5), "{request:?}");
    }
    let time = detect(&ledger, &IterationRequest::Path("never".into()));
    assert_eq!(time.source, IterationSource::Time);
    assert!(time.coverage.unwrap() > 0.99, "{:?}", time.coverage);
}

#[test]
fn a_path_opened_once_per_iteration_beats_one_opened_three_times() {
    // The real fixture's pattern: tick once, then data.txt three times close together.
    let mut s = Stream::new(1);
    for i in 0..300 {
        s.open("/srv/app/tick", 3).close(3);
        for j in 0..3 {
            s.open("/srv/app/data.txt", 4).close(4);
            s.open(&format!("/srv/unique/{i}-{j}"), 4).close(4);
        }
    }
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(iterations.auto_path.as_deref(), Some("/srv/app/tick"));
    assert_eq!(iterations.count(), 300);
}

#[test]
fn heavy_helpers_before_the_program_do_not_hide_its_loop() {
    // Each of 40 helpers maps 100 regions (an interpreter starting, say): together they
    // acquire ten times what the program does, yet the program's loop is still its loop.
    let mut s = Stream::new(1);
    for helper in 0..40u32 {
        let child = 100 + helper;
        s.push(1, 1, What::Fork { child }, None);
        s.push(
            child,
            child,
            What::Syscall(open_call("/srv/shim/config", 3)),
            None,
        );
        for i in 0..100u64 {
            let map = call(
                leakscope_common::syscalls::MMAP,
                (0x7000_0000 + i * 0x10_0000) as i64,
                [0, 65536, 3, 0x22, u64::MAX, 0],
            );
            s.push(child, child, What::Syscall(map), None);
        }
        s.push(child, child, What::Exit, None);
    }
    s.push(1, 1, What::Exec(None), None);
    for i in 0..200 {
        s.open("/srv/app/tick", 3).close(3);
        s.open("/srv/app/data.txt", 4 + i);
    }
    s.exit();
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(iterations.auto_path.as_deref(), Some("/srv/app/tick"));
    let coverage = iterations.coverage.unwrap();
    assert!(
        coverage < 0.1,
        "the run's coverage is stated as it is: {coverage}"
    );
}

#[test]
fn regularity_counts_work_not_time() {
    // The C churn pattern with jittery timing: tick once, then 8 opens of data.txt and 8
    // closes per iteration. Every tick-to-tick gap holds the same work; data.txt's do not.
    let mut s = Stream::new(1);
    for i in 0..500u64 {
        s.now += (i * 7919) % 50_000; // descheduling, page faults
        s.open("/srv/app/tick", 3).close(3);
        for fd in 4..12 {
            s.open("/srv/app/data.txt", fd);
        }
        for fd in 4..12 {
            s.close(fd);
        }
    }
    let ledger = s.ledger();
    let work = super::work::Work::new(&ledger);
    let times = |path: &str| -> Vec<u64> {
        ledger
            .opened_paths()
            .iter()
            .filter(|o| ledger.sites().path(o.path) == Some(path))
            .map(|o| o.time_ns)
            .collect()
    };
    assert_eq!(
        super::auto::regularity(&times("/srv/app/tick"), &work.all),
        1.0
    );
    let data = super::auto::regularity(&times("/srv/app/data.txt"), &work.all);
    assert!(data < 0.9, "{data}");
    let iterations = detect(&ledger, &IterationRequest::Auto);
    assert_eq!(iterations.auto_path.as_deref(), Some("/srv/app/tick"));
    assert_eq!(iterations.count(), 500);
}

#[test]
fn a_busy_helper_with_a_loop_of_its_own_is_not_the_program_s_loop() {
    // A helper (pid 100) reads its config 40 times and maps 200 regions: it makes the most
    // fd and mapping acquisitions. The program exec'd after it maps 100 regions and then
    // grows its heap 150 times: that growth must not be left after the "iterations".
    let mut s = Stream::new(1);
    s.push(1, 1, What::Fork { child: 100 }, None);
    for i in 0..200u64 {
        let map = call(
            leakscope_common::syscalls::MMAP,
            (0x7000_0000 + i * 0x10_0000) as i64,
            [0, 65536, 3, 0x22, u64::MAX, 0],
        );
        s.push(100, 100, What::Syscall(map), None);
        if i % 5 == 0 {
            s.push(
                100,
                100,
                What::Syscall(open_call("/srv/helper/conf", 3)),
                None,
            );
            s.push(100, 100, What::Syscall(close_call(3)), None);
        }
    }
    s.push(100, 100, What::Exit, None);
    s.push(1, 1, What::Exec(None), None);
    for i in 0..100u64 {
        s.mmap_anon(0x7000_0000 + i * 0x10_0000, 65536);
    }
    s.brk(0x100_0000);
    for i in 1..=150u64 {
        s.brk(0x100_0000 + i * 0x2_1000);
    }
    s.exit();
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(
        iterations.source,
        IterationSource::Time,
        "{}",
        iterations.detail
    );
    let reason = iterations.unconvincing.as_deref().unwrap();
    assert!(reason.contains("stops before the work does"), "{reason}");
}
