//! The verdicts on whole synthetic runs: leak, plateau, noise, churn and teardown.

use super::trend::Verdict;
use super::*;
use crate::iterations::{self, IterationRequest};
use crate::ledger::test_support::Stream;

const PID: u32 = 7;

/// A run of `n` marked iterations; `body` does one iteration's work.
fn run(n: usize, body: impl FnMut(&mut Stream, usize)) -> Stream {
    run_sampled(n, |_| None, body)
}

/// Like [`run`], with the resident bytes the kernel samples at each marker.
pub(super) fn run_sampled(
    n: usize,
    rss: impl Fn(usize) -> Option<u64>,
    mut body: impl FnMut(&mut Stream, usize),
) -> Stream {
    let mut s = Stream::new(PID);
    s.open("/usr/lib/libc.so.6", 3).close(3).brk(0x100_0000);
    for i in 0..n {
        match rss(i) {
            Some(bytes) => s.marker_with_rss(bytes),
            None => s.marker(),
        };
        body(&mut s, i);
    }
    s
}

fn analyze_stream(s: &Stream, lost: u64) -> Analysis {
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    analyze(
        &ledger,
        &iterations,
        &RunFacts {
            lost_events: lost,
            ..RunFacts::default()
        },
    )
}

/// A site as the report names it (the stream's ledger interns the same ids again).
fn text(s: &Stream, site: crate::ledger::sites::SiteId) -> String {
    crate::report::sites::site_text(site, s.ledger().sites())
}

fn assert_rate(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= expected.abs() * 0.05 + 1e-9,
        "rate {actual}, expected {expected}"
    );
}

/// Clean churn: open/close with heavy fd reuse, a scratch mapping, heap up and down.
fn churn(s: &mut Stream) {
    s.open("/tmp/work/a.txt", 3)
        .open("/tmp/work/b.txt", 4)
        .close(4)
        .close(3);
    s.mmap_anon(0x7000_0000, 65536).munmap(0x7000_0000, 65536);
    s.brk(0x100_8000).brk(0x100_0000);
}

#[test]
fn steady_fd_leak_is_a_leak_of_exactly_one_per_iteration() {
    let s = run(1000, |s, i| {
        churn(s);
        s.open("/tmp/work/leaked.txt", 10 + i as i32);
    });
    let analysis = analyze_stream(&s, 0);
    assert_eq!(
        analysis.fd.verdict,
        Verdict::Leak,
        "{}",
        analysis.fd.count.why
    );
    assert_rate(analysis.fd.count.rate, 1.0);
    assert_eq!(format!("{:.2}", analysis.fd.count.rate), "1.00");
    let top = &analysis.fd.sites[0];
    assert_eq!(
        (text(&s, top.site).as_str(), top.leaked, top.verdict),
        ("/tmp/work/leaked.txt", 999, Verdict::Leak)
    );
    assert_rate(top.leaked_per_iteration, 1.0);
    assert_eq!(analysis.fd.sites.len(), 1, "churned fds are not sites");
    assert_eq!(analysis.mmap.verdict, Verdict::NoLeak);
    // The heap churns in 32 KiB steps: 1000 iterations cannot rule out a small leak there.
    assert_eq!(analysis.brk.bytes.verdict, Verdict::Inconclusive);
    assert!(
        analysis.brk.bytes.why.contains("steps of 32 KiB"),
        "{}",
        analysis.brk.bytes.why
    );
    assert_eq!(
        (
            analysis.fd.acquired,
            analysis.fd.live_at_end,
            analysis.fd.live_at_exit
        ),
        (3001, 999, 1000)
    );
}

#[test]
fn mapping_leak_reports_bytes_per_iteration() {
    let s = run(1000, |s, i| {
        churn(s);
        s.mmap_anon(0x1_0000_0000 + i as u64 * 0x10_0000, 65536);
    });
    let analysis = analyze_stream(&s, 0);
    assert_eq!(analysis.mmap.verdict, Verdict::Leak);
    assert_rate(analysis.mmap.bytes.as_ref().unwrap().rate, 65536.0);
    assert_rate(analysis.mmap.count.rate, 1.0);
    let top = &analysis.mmap.sites[0];
    assert_eq!(
        (text(&s, top.site).as_str(), top.leaked, top.bytes_leaked),
        ("anon 64 KiB rw- private", 999, Some(999 * 65536))
    );
    assert_eq!(analysis.fd.verdict, Verdict::NoLeak);
}

#[test]
fn heap_growth_is_a_brk_leak_and_explains_rss() {
    let s = run_sampled(
        1000,
        |i| Some(10_000_000 + 4096 * i as u64),
        |s, i| {
            s.brk(0x100_0000 + 4096 * (i as u64 + 1));
        },
    );
    let analysis = analyze_stream(&s, 0);
    assert_eq!(analysis.brk.bytes.verdict, Verdict::Leak);
    assert_rate(analysis.brk.bytes.rate, 4096.0);
    assert_eq!(analysis.rss.bytes.verdict, Verdict::Leak);
    assert_rate(analysis.rss.bytes.rate, 4096.0);
    assert_eq!(analysis.rss.unexplained.verdict, Verdict::NoLeak);
    assert_rate(analysis.rss.explained_rate, 4096.0);
    assert!(
        analysis
            .brk
            .sites
            .iter()
            .all(|site| text(&s, site.site) == "brk"),
        "no frames were captured"
    );
}

#[test]
fn heap_growth_is_attributed_to_the_stack_that_grew_the_break() {
    use crate::ledger::test_support::call;
    use leakscope_common::syscalls::BRK;
    let s = run(100, |s, i| {
        // A churning allocator grows and shrinks the break from one place...
        s.sys(
            call(BRK, 0x100_8000, [0x100_8000, 0, 0, 0, 0, 0])
                .with_frames(&["sbrk", "arena_refill"]),
        );
        s.sys(call(BRK, 0x100_0000, [0x100_0000, 0, 0, 0, 0, 0]));
        // ...while the leak keeps growing it from another.
        let top = 0x200_0000 + 4096 * (i as u64 + 1);
        s.sys(call(BRK, top as i64, [top, 0, 0, 0, 0, 0]).with_frames(&["sbrk", "leak_heap"]));
        s.sys(call(BRK, 0x100_0000, [0x100_0000, 0, 0, 0, 0, 0]));
    });
    let analysis = analyze_stream(&s, 0);
    let top = &analysis.brk.sites[0];
    assert!(
        text(&s, top.site).contains("leak_heap"),
        "{:?}",
        analysis.brk.sites
    );
    assert!(top.bytes > analysis.brk.sites[1].bytes);
}

#[test]
fn rss_growth_nothing_explains_is_reported_as_unexplained() {
    let s = run_sampled(
        200,
        |i| Some(50_000_000 + 100_000 * i as u64),
        |s, _| churn(s),
    );
    let analysis = analyze_stream(&s, 0);
    assert_eq!(analysis.rss.bytes.verdict, Verdict::Leak);
    assert_eq!(analysis.rss.unexplained.verdict, Verdict::Leak);
    assert_rate(analysis.rss.unexplained.rate, 100_000.0);
    assert_eq!(
        (analysis.fd.verdict, analysis.mmap.verdict),
        (Verdict::NoLeak, Verdict::NoLeak)
    );
}

#[test]
fn bounded_cache_is_a_plateau() {
    let s = run(1000, |s, i| {
        churn(s);
        if i < 50 {
            s.open(&format!("/var/cache/entry{i}"), 100 + i as i32);
        }
    });
    let analysis = analyze_stream(&s, 0);
    assert_eq!(
        analysis.fd.verdict,
        Verdict::Plateau,
        "{}",
        analysis.fd.count.why
    );
    assert_eq!(analysis.fd.count.rate, 0.0);
}

#[test]
fn one_late_allocation_is_no_leak() {
    let s = run(1000, |s, i| {
        churn(s);
        if i == 900 {
            s.open("/tmp/late.log", 50);
            s.mmap_anon(0x5000_0000, 1 << 20);
        }
    });
    let analysis = analyze_stream(&s, 0);
    assert_eq!(analysis.fd.verdict, Verdict::NoLeak);
    assert_eq!(analysis.mmap.verdict, Verdict::NoLeak);
}

#[test]
fn clean_churn_with_fd_reuse_is_no_leak_everywhere() {
    let s = run(1000, |s, _| churn(s));
    let analysis = analyze_stream(&s, 0);
    for verdict in [
        analysis.fd.verdict,
        analysis.mmap.verdict,
        analysis.brk.bytes.verdict,
        analysis.rss.bytes.verdict,
    ] {
        assert!(
            matches!(verdict, Verdict::NoLeak | Verdict::Inconclusive),
            "{verdict:?}"
        );
    }
    assert_eq!(
        (analysis.fd.verdict, analysis.mmap.verdict),
        (Verdict::NoLeak, Verdict::NoLeak)
    );
    assert!(analysis.fd.sites.is_empty() && analysis.mmap.sites.is_empty());
    let lifetimes = analysis.fd.lifetimes.ns();
    assert_eq!(lifetimes.count, 2001);
    assert_eq!(
        analysis.fd.lifetimes.iterations().max,
        0,
        "every fd dies in its own iteration"
    );
}

#[test]
fn retained_growth_freed_at_teardown_is_still_a_leak() {
    let mut s = run(500, |s, i| {
        churn(s);
        s.open("/tmp/kept", 10 + i as i32);
        s.mmap_anon(0x1_0000_0000 + i as u64 * 0x10_0000, 65536);
    });
    // Finalizers close and unmap everything, then the process exits.
    for i in 0..500 {
        s.close(10 + i)
            .munmap(0x1_0000_0000 + i as u64 * 0x10_0000, 65536);
    }
    s.exit();
    let analysis = analyze_stream(&s, 0);
    assert_eq!(analysis.fd.verdict, Verdict::Leak);
    assert_rate(analysis.fd.count.rate, 1.0);
    assert_eq!(analysis.mmap.verdict, Verdict::Leak);
    assert_eq!(analysis.fd.sites[0].leaked, 499);
    assert_eq!(
        (analysis.fd.live_at_end, analysis.fd.live_at_exit),
        (499, 0)
    );
    // The kept resources' teardown is not in the lifetimes of released resources.
    assert!(analysis.fd.lifetimes.iterations().max <= 1);
}

#[test]
fn lost_events_make_every_verdict_inconclusive() {
    let s = run(100, |s, i| {
        s.open("/tmp/kept", 10 + i as i32);
    });
    let analysis = analyze_stream(&s, 5);
    assert_eq!(analysis.fd.verdict, Verdict::Inconclusive);
    assert_rate(analysis.fd.count.rate, 1.0);
    assert_eq!(analysis.brk.bytes.verdict, Verdict::Inconclusive);
}

#[test]
fn too_few_iterations_are_inconclusive() {
    let s = run(5, |s, i| {
        s.open("/tmp/kept", 10 + i as i32);
    });
    assert_eq!(analyze_stream(&s, 0).fd.verdict, Verdict::Inconclusive);
}

#[test]
fn forked_worker_per_iteration_is_no_leak() {
    // Each iteration forks a child that inherits the fds and exits: the copies die with it.
    let mut s = run(100, |s, i| {
        s.open("/tmp/work/a.txt", 3).close(3);
        let child = 1000 + i as u32;
        s.push(PID, PID, crate::event::What::Fork { child }, None);
        s.push(child, child, crate::event::What::Exit, None);
    });
    s.exit();
    let analysis = analyze_stream(&s, 0);
    assert_eq!(analysis.fd.verdict, Verdict::NoLeak);
    assert_eq!(analysis.mmap.verdict, Verdict::NoLeak);
}

#[test]
fn uniquely_named_leaks_are_ranked_without_judging_every_site() {
    let s = run(20_000, |s, i| {
        s.open(&format!("/tmp/out/{i}.log"), 10 + i as i32);
    });
    let analysis = analyze_stream(&s, 0);
    assert_eq!(analysis.fd.verdict, Verdict::Leak);
    assert_eq!(analysis.fd.sites.len(), sites::MAX_SITES);
    assert!(analysis.fd.sites.iter().all(|site| site.leaked == 1));
}

/// One path opened from two places: the place that leaks is the site, named by its stack,
/// and the place that closes is none; the leaking calls that came without a stack (past
/// `--stack-rate`) join it, so the site keeps the whole rate.
#[test]
fn a_path_opened_from_two_places_is_a_site_per_place_and_only_the_leaking_one_leaks() {
    use crate::ledger::test_support::call;
    use leakscope_common::syscalls::OPENAT;
    let open = |fd: i32, frames: Option<&[&str]>| {
        let call = call(OPENAT, fd as i64, [-100i64 as u64, 0, 0, 0, 0, 0])
            .with_path("/etc/app/config.json");
        match frames {
            Some(frames) => call.with_frames(frames),
            None => call,
        }
    };
    let s = run(100, |s, i| {
        s.sys(open(3, Some(&["read_config", "main"]))).close(3);
        // Every third leaking call came without its stack.
        let stack = (i % 3 != 0).then_some(&["open_config", "main"][..]);
        s.sys(open(10 + i as i32, stack));
    });
    let analysis = analyze_stream(&s, 0);
    assert_eq!(analysis.fd.verdict, Verdict::Leak);
    let [site] = &analysis.fd.sites[..] else {
        panic!("one fd site: {:?}", analysis.fd.sites)
    };
    assert_eq!(
        text(&s, site.site),
        "/etc/app/config.json ← open_config ← main"
    );
    assert_rate(site.leaked_per_iteration, 1.0);
    // Iterations 0, 3, ..., 96 of the 99 retained (the last one's open is not retained).
    assert_eq!(site.without_stack, 33);
}
