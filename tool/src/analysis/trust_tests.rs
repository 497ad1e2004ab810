//! The rules that keep verdicts from being confidently wrong, on synthetic runs: detection
//! limits, classes pinned at a limit, resident memory judged on resident causes, mappings
//! grown by mremap, and rates at the precision the data has.

use super::trend::Verdict;
use super::*;
use crate::event::{FailedCall, What};
use crate::iterations::{self, IterationRequest};
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls::{MREMAP, OPENAT};

const PID: u32 = 7;

/// A marked run with resident samples (the analysis tests' builder).
fn marked(
    n: usize,
    rss: impl Fn(usize) -> Option<u64>,
    body: impl FnMut(&mut Stream, usize),
) -> Stream {
    super::tests::run_sampled(n, rss, body)
}

fn analyze_marked(s: &Stream) -> Analysis {
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    analyze(&ledger, &iterations, &RunFacts::default())
}

fn failed_open(s: &mut Stream, errno: i32) {
    s.push(
        PID,
        PID,
        What::Failed(FailedCall {
            nr: OPENAT,
            name: "openat",
            errno,
        }),
        None,
    );
}

#[test]
fn a_small_heap_leak_that_never_moves_brk_is_inconclusive_with_the_next_step() {
    // 30 bytes × 2000 live inside glibc's top pad: the break never moves.
    let s = marked(
        2000,
        |_| Some(8 << 20),
        |s, _| {
            s.open("/tmp/work/a", 3).close(3);
        },
    );
    let analysis = analyze_marked(&s);
    let brk = &analysis.brk.bytes;
    assert_eq!(brk.verdict, Verdict::Inconclusive, "{}", brk.why);
    let limit = brk.limit.unwrap();
    assert!(limit > 64.0, "{limit}");
    assert!(brk.why.contains("steps of 132 KiB"), "{}", brk.why);
    assert!(brk.iterations_needed.unwrap() > 2000);
    // The fd class still gets its verdict, with the smallest rate it could have seen.
    assert_eq!(analysis.fd.verdict, Verdict::NoLeak);
    assert!(
        analysis.fd.count.why.contains("no leak above"),
        "{}",
        analysis.fd.count.why
    );
    assert!(analysis.fd.count.limit.unwrap() < 0.01);
}

#[test]
fn a_long_run_rules_out_small_heap_leaks() {
    let s = marked(
        200_000,
        |_| None,
        |s, _| {
            s.marker();
        },
    );
    let analysis = analyze_marked(&s);
    assert_eq!(
        analysis.brk.bytes.verdict,
        Verdict::NoLeak,
        "{}",
        analysis.brk.bytes.why
    );
    assert!(analysis.brk.bytes.limit.unwrap() < 64.0);
}

#[test]
fn a_slow_leak_is_a_leak_at_its_own_precision() {
    // One fd every 1,000 iterations.
    let s = marked(
        20_000,
        |_| None,
        |s, i| {
            if i % 1000 == 999 {
                s.open("/tmp/work/slow", 100 + (i / 1000) as i32);
            }
        },
    );
    let analysis = analyze_marked(&s);
    assert_eq!(
        analysis.fd.verdict,
        Verdict::Leak,
        "{}",
        analysis.fd.count.why
    );
    let rate = analysis.fd.count.rate;
    assert!((rate - 0.001).abs() < 0.00005, "{rate}");
    assert_eq!(crate::units::count_rate(rate), "1 per 1,000 iterations");
}

#[test]
fn an_fd_leak_pinned_at_its_limit_is_a_leak_not_a_plateau() {
    // RLIMIT_NOFILE 256: from iteration 250 on, every open fails with EMFILE.
    let s = marked(
        2000,
        |_| None,
        |s, i| {
            if i < 250 {
                s.open("/tmp/work/kept", 6 + i as i32);
            } else {
                failed_open(s, 24);
            }
        },
    );
    let analysis = analyze_marked(&s);
    assert_eq!(
        analysis.fd.verdict,
        Verdict::Leak,
        "{}",
        analysis.fd.count.why
    );
    assert!(
        (analysis.fd.count.rate - 1.0).abs() < 0.05,
        "{}",
        analysis.fd.count.rate
    );
    let hit = analysis.fd.limit_hit.as_ref().unwrap();
    assert_eq!((hit.errno, hit.iteration, hit.failures), (24, 250, 1750));
    assert!(
        analysis.fd.count.why.contains("EMFILE"),
        "{}",
        analysis.fd.count.why
    );
}

#[test]
fn a_bounded_cache_with_unrelated_failures_stays_a_plateau() {
    // ENOENT is not a limit: a cache that fills up and a missing file are no leak.
    let s = marked(
        1000,
        |_| None,
        |s, i| {
            if i < 50 {
                s.open(&format!("/var/cache/{i}"), 100 + i as i32);
            }
            failed_open(s, 2);
        },
    );
    let analysis = analyze_marked(&s);
    assert_eq!(
        analysis.fd.verdict,
        Verdict::Plateau,
        "{}",
        analysis.fd.count.why
    );
    assert!(analysis.fd.limit_hit.is_none());
}

#[test]
fn freeing_untouched_address_space_is_not_a_resident_leak() {
    // 1 GiB reserved at the start, then 1 MiB of it unmapped per iteration; RSS flat.
    let s = marked(
        500,
        |_| Some(20 << 20),
        |s, i| {
            if i == 0 {
                s.mmap_anon(0x10_0000_0000, 1 << 30);
            } else {
                s.munmap(0x10_0000_0000 + (i as u64) * (1 << 20), 1 << 20);
            }
        },
    );
    let analysis = analyze_marked(&s);
    assert_ne!(
        analysis.rss.unexplained.verdict,
        Verdict::Leak,
        "{}",
        analysis.rss.unexplained.why
    );
    assert_ne!(analysis.rss.bytes.verdict, Verdict::Leak);
}

#[test]
fn resident_growth_a_mapping_leak_explains_is_not_a_second_leak() {
    let s = marked(
        1000,
        |i| Some((20 << 20) + 65536 * i as u64),
        |s, i| {
            s.mmap_anon(0x1_0000_0000 + i as u64 * 0x10_0000, 65536);
        },
    );
    let analysis = analyze_marked(&s);
    assert_eq!(analysis.mmap.verdict, Verdict::Leak);
    assert_eq!(analysis.rss.bytes.verdict, Verdict::Leak);
    assert_eq!(
        analysis.rss.unexplained.verdict,
        Verdict::NoLeak,
        "{}",
        analysis.rss.unexplained.why
    );
}

#[test]
fn short_lived_children_do_not_make_resident_memory_leak() {
    // Each iteration forks a child whose resident set is sampled once; children overlap
    // the boundaries unevenly. Only the parent lives through the iterations.
    for seed in 0..5u64 {
        let mut s = marked(300, |_| Some(30 << 20), |_, _| {});
        let mut events = std::mem::take(&mut s.events);
        let mut more = Stream::new(PID);
        more.now = s.now;
        for (i, event) in events.drain(..).enumerate() {
            more.events.push(event);
            if i % 7 == (seed as usize) {
                let child = 5000 + i as u32;
                more.push(PID, PID, What::Fork { child }, None);
                more.push(
                    child,
                    child,
                    What::Syscall(
                        call(OPENAT, 4, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/tmp/c"),
                    ),
                    Some((3 + (i as u64 % 5)) << 20),
                );
                if i % 3 != 0 {
                    more.push(child, child, What::Exit, None);
                }
            }
        }
        let analysis = analyze_marked(&more);
        assert_ne!(
            analysis.rss.bytes.verdict,
            Verdict::Leak,
            "seed {seed}: {}",
            analysis.rss.bytes.why
        );
    }
}

#[test]
fn a_mapping_grown_by_mremap_is_a_byte_leak_with_a_site_that_agrees() {
    let base = 0x7000_0000u64;
    let s = marked(
        1000,
        |_| None,
        |s, i| {
            if i == 0 {
                s.mmap_anon(base, 4096);
            } else {
                let old = 4096 * i as u64;
                s.sys(call(MREMAP, base as i64, [base, old, old + 4096, 0, 0, 0]));
            }
        },
    );
    let analysis = analyze_marked(&s);
    assert_eq!(analysis.mmap.verdict, Verdict::Leak);
    assert_ne!(
        analysis.mmap.count.verdict,
        Verdict::Leak,
        "one mapping, growing"
    );
    let bytes = analysis.mmap.bytes.as_ref().unwrap();
    assert!(
        (bytes.rate - 4096.0).abs() < 4096.0 * 0.05,
        "{}",
        bytes.rate
    );
    let site = &analysis.mmap.sites[0];
    assert_eq!(site.verdict, Verdict::Leak, "{site:?}");
    let site_rate = site.bytes_leaked_per_iteration.unwrap();
    assert!((site_rate - 4096.0).abs() < 4096.0 * 0.05, "{site_rate}");
    let name =
        crate::report::sites::resized_site_text(site.site, s.ledger().sites(), site.resized_to);
    assert!(name.contains("resized by mremap to 3.9 MiB"), "{name}");
}

#[test]
fn mappings_shrunk_by_mremap_and_kept_name_the_size_of_each() {
    let s = marked(
        500,
        |_| None,
        |s, i| {
            let addr = 0x7000_0000u64 + 0x10_0000 * i as u64;
            s.mmap_anon(addr, 0x10000);
            s.sys(call(MREMAP, addr as i64, [addr, 0x10000, 4096, 0, 0, 0]));
        },
    );
    let analysis = analyze_marked(&s);
    let site = &analysis.mmap.sites[0];
    assert_eq!(site.verdict, Verdict::Leak, "{site:?}");
    assert!((site.bytes_leaked_per_iteration.unwrap() - 4096.0).abs() < 4096.0 * 0.05);
    // Each was resized to 4 KiB; their total is no mapping's size.
    assert_eq!(site.resized_to, Some(4096), "{site:?}");
}
