//! Sites that name the program's own function, in programs built the ordinary way: -O2,
//! no frame pointers (fixtures/nofp). The kernel copies the user stack with each mmap,
//! mremap and brk, and leakscope unwinds it with the binaries' CFI, through libc's malloc,
//! up to the function that leaks.

use leakscope_tests::{
    Traced, assert_class, assert_ran, assert_rate, assert_top_site_names, assert_verdicts, class,
    fixture, leakscope_json, sites,
};

const N: usize = 1000;

/// `leakscope run --iteration-symbol iteration_marker OPTIONS` on a fixture built without
/// frame pointers, which must run all its iterations with nothing lost.
fn run_nofp(name: &str, options: &[&str]) -> Traced {
    let command = vec![
        fixture(&format!("nofp/{name}"))
            .to_string_lossy()
            .into_owned(),
        N.to_string(),
    ];
    let options: Vec<&str> = ["--iteration-symbol", "iteration_marker"]
        .into_iter()
        .chain(options.iter().copied())
        .collect();
    let traced = leakscope_json("run", &options, &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_ran(&traced, N);
    traced
}

/// The mmap class's verdict, rates and top site on `mmap_big_malloc`.
fn assert_one_big_mapping_per_iteration(traced: &Traced, context: &str) {
    // The brk class sees only malloc's start-up: no growth, but its 132 KiB steps are too
    // coarse to rule out a small leak in 1000 iterations ("flat").
    assert_verdicts(traced, ["no-leak", "leak", "flat", "flat"], context);
    let mmap = class(traced, "mmap");
    assert_rate(&mmap["leaked_per_iteration"], 1.0, "mappings per iteration");
    // 256 KiB and malloc's header, in whole pages.
    assert_rate(
        &mmap["bytes_leaked_per_iteration"],
        260.0 * 1024.0,
        "mapped bytes per iteration",
    );
    let top = &sites(traced, "mmap")[0];
    assert!(
        top["site"]
            .as_str()
            .is_some_and(|site| site.starts_with("anon 260 KiB rw- private")),
        "{context}: {top}"
    );
    assert_rate(&top["leaked_per_iteration"], 1.0, "top site rate");
}

#[test]
fn a_large_malloc_leak_is_placed_at_the_function_that_mallocs() {
    let traced = run_nofp("mmap_big_malloc", &[]);
    assert_one_big_mapping_per_iteration(&traced, "mmap_big_malloc");
    assert_top_site_names(&traced, "mmap", "leak_big");
}

/// The smallest and the largest stack copy load (the verifier checks every bound of the
/// copy against its buffer) and change nothing in what is counted; nor does a stack with
/// every call (`--stack-rate 0`), which still names the leaking function.
#[test]
fn every_stack_copy_size_and_rate_counts_the_same() {
    for bytes in ["512", "16384"] {
        let traced = run_nofp("mmap_big_malloc", &["--stack-bytes", bytes]);
        assert_one_big_mapping_per_iteration(&traced, &format!("--stack-bytes {bytes}"));
    }
    let traced = run_nofp("mmap_big_malloc", &["--stack-rate", "0"]);
    assert_one_big_mapping_per_iteration(&traced, "--stack-rate 0");
    assert_top_site_names(&traced, "mmap", "leak_big");
}

/// Past `--stack-rate` a call is recorded without its stack. Those calls join the one site
/// they differ from only by the stack, so the leak stays one site, at the full rate, named
/// by its function, and says how many of its calls came without a stack.
#[test]
fn calls_past_the_stack_rate_join_their_stacked_site() {
    // A burst of 200 stacks: the loader's mmaps and the loop's first calls get one; the loop
    // (1,000 calls in well under a second) runs past it.
    let traced = run_nofp("mmap_big_malloc", &["--stack-rate", "100"]);
    assert_one_big_mapping_per_iteration(&traced, "--stack-rate 100");
    assert_top_site_names(&traced, "mmap", "leak_big");
    let top = &sites(&traced, "mmap")[0];
    let without = top["without_stack"].as_u64().unwrap_or(0);
    assert!(without > (N as u64) / 2 && without < N as u64, "{top}");
    assert!(
        traced.stdout().contains("of them recorded without a stack"),
        "{}",
        traced.stdout()
    );
}

#[test]
fn a_small_malloc_leak_is_placed_at_the_function_that_mallocs() {
    let traced = run_nofp("brk_malloc", &[]);
    assert_class(&traced, "mmap", "no-leak", "brk_malloc");
    assert_class(&traced, "brk", "leak", "brk_malloc");
    // 4096 bytes and malloc's 16-byte chunk header per block.
    assert_rate(
        &class(&traced, "brk")["bytes_per_iteration"],
        4112.0,
        "brk bytes per iteration",
    );
    let top = &sites(&traced, "brk")[0];
    assert_rate(&top["bytes_per_iteration"], 4112.0, "top site rate");
    assert_top_site_names(&traced, "brk", "leak_pages");
}

/// A storm of mapping calls (500,000 mmaps and munmaps of one page, through libc, about
/// 300,000 of each a second) loses no record. With an 8 KiB stack on every mmap it lost
/// 237,444 records (its mmap verdict fell to inconclusive); with stacks only while the ring
/// was at most half full, still about 20,000 on a loaded machine (the reader unwinding
/// 100,000 stacks a second fell behind). At the default `--stack-rate` it loses none.
#[test]
fn a_mapping_storm_loses_no_call_to_its_stacks() {
    const STORM: i64 = 500_000;
    let traced = leakscope_json(
        "run",
        &[],
        &[
            fixture("nofp/map_storm").into_os_string(),
            STORM.to_string().into(),
        ],
    );
    assert_eq!(
        traced.report["target"]["exit_code"],
        0,
        "{}",
        traced.stderr()
    );
    assert_eq!(
        traced.report["lost_events"], 0,
        "{}",
        traced.report["lost_by_reason"]
    );
    let counts = traced.counts();
    assert!(counts["mmap"] >= STORM, "{counts:?}");
    assert!(counts["munmap"] >= STORM, "{counts:?}");
}
