//! fd sites that name the code that opened them, in programs built the ordinary way (C at
//! -O2 without frame pointers, Rust in release). The kernel sends an fd-returning call's
//! user stack as a record of its own, just before the call's; leakscope unwinds it with
//! the binaries' CFI and keeps it with the fd, so one path opened from two places is two
//! sites, and only the place that leaks is a leak site.

use leakscope_tests::{
    Traced, assert_class, assert_ran, assert_top_site_names, class, fixture, leakscope_json,
    resource, run_marked, sites,
};
use rstest::rstest;

const N: usize = 1000;
const CONFIG: &str = "/etc/hostname";

/// The fd class leaks exactly one fd per iteration, all of them at its one site, the
/// config file opened by `function`; no site names `not_a_site` (the place that closes).
fn assert_one_leak_at(traced: &Traced, function: &str, not_a_site: &str, iterations: usize) {
    assert_class(traced, "fd", "leak", function);
    let fd = class(traced, "fd");
    assert_eq!(fd["leaked_per_iteration"], 1.0, "{fd}");
    let all = sites(traced, "fd");
    let [top] = all else {
        panic!("one fd site, at {function}: {all:?}")
    };
    assert_eq!(resource(&top["site"]), CONFIG, "{top}");
    assert_eq!(top["leaked_per_iteration"], 1.0, "{top}");
    // Every iteration's fd but the last one's is retained across a boundary.
    assert_eq!(top["leaked"], iterations - 1, "{top}");
    assert_top_site_names(traced, "fd", function);
    let named_elsewhere = all.iter().any(|site| {
        site["frames"]
            .as_array()
            .is_some_and(|frames| frames.iter().any(|f| f["function"] == not_a_site))
    });
    assert!(
        !named_elsewhere,
        "{not_a_site} closes what it opens: {all:?}"
    );
}

/// fopen inside a C program without frame pointers: the leaking fd's site is the function
/// that fopens and never fcloses, not the one that fopens the same path and fcloses it.
#[test]
fn an_fopen_leak_is_placed_at_the_function_that_fopens() {
    let traced = run_marked("nofp/fd_fopen", &[&N.to_string()], &[], N);
    assert_one_leak_at(&traced, "open_config", "read_config", N);
    let top = &sites(&traced, "fd")[0];
    // Read from DWARF: the line of the fopen call.
    assert!(
        top["frames"][0]["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("fd_fopen.c")),
        "{top}"
    );
    assert!(top["frames"][0]["line"].as_u64().is_some(), "{top}");
}

/// A target gone within a millisecond of its exec: its maps are never read, so its own code
/// is known only from what the kernel said at the exec (the file, the code's range). Started
/// by leakscope, exec'd by a shell, and exec'd by a shell by a path relative to its working
/// directory, run after run (before, 1 run in 2 showed only libc's frames).
#[rstest]
#[case::started_by_leakscope(None)]
#[case::execd_by_a_shell(Some(false))]
#[case::execd_by_a_relative_path(Some(true))]
fn a_target_gone_at_once_still_names_its_own_frames(#[case] shell_relative: Option<bool>) {
    const RUNS: usize = 6;
    const ITERATIONS: usize = 20;
    let program = fixture("nofp/fd_fopen");
    let marker = format!("{}:iteration_marker", program.display());
    let script = match shell_relative {
        None => None,
        Some(false) => Some(format!("exec {} {ITERATIONS}", program.display())),
        Some(true) => Some(format!(
            "cd {} && exec ./fd_fopen {ITERATIONS}",
            program.parent().unwrap().display()
        )),
    };
    for _ in 0..RUNS {
        let traced = match &script {
            Some(script) => {
                let traced = leakscope_json(
                    "run",
                    &["--iteration-symbol", &marker],
                    &["/bin/sh", "-c", script],
                );
                assert_ran(&traced, ITERATIONS);
                traced
            }
            None => run_marked("nofp/fd_fopen", &[&ITERATIONS.to_string()], &[], ITERATIONS),
        };
        assert_one_leak_at(&traced, "open_config", "read_config", ITERATIONS);
    }
}

/// The place that opens and closes the same path is never a leak site, run after run.
#[test]
fn the_place_that_closes_what_it_opens_is_never_a_leak_site() {
    const RUNS: usize = 5;
    const ITERATIONS: usize = 300;
    for _ in 0..RUNS {
        let traced = run_marked("nofp/fd_fopen", &[&ITERATIONS.to_string()], &[], ITERATIONS);
        assert_one_leak_at(&traced, "open_config", "read_config", ITERATIONS);
    }
}

/// A Rust release build: `File::open` and `mem::forget` in `leak_handle`. The site starts at
/// `leak_handle`, past the `std::` frames (folded, and said so) and libc's.
#[test]
fn a_rust_handle_leak_is_placed_at_the_function_past_the_std_frames() {
    let traced = run_marked("rust/leak_handle", &[&N.to_string()], &[], N);
    assert_one_leak_at(
        &traced,
        "leak_handle::leak_handle",
        "leak_handle::read_config",
        N,
    );
    let site = sites(&traced, "fd")[0]["site"].as_str().unwrap_or_default();
    assert!(
        site.contains("runtime frame"),
        "std's frames are folded: {site}"
    );
}

/// Past `--stack-rate` an open is recorded without its stack. Those opens join the one site
/// they differ from only by the stack, so the leak stays one site named by its function, at
/// the full rate, and the text says how many came without a stack. One stack a second per
/// CPU: the loop (600 iterations, 5 ms each) gets a few.
#[test]
fn opens_past_the_stack_rate_join_their_stacked_site() {
    const ITERATIONS: usize = 600;
    let traced = run_marked(
        "nofp/fd_fopen",
        &[&ITERATIONS.to_string(), "5000"],
        &["--stack-rate", "1"],
        ITERATIONS,
    );
    assert_one_leak_at(&traced, "open_config", "read_config", ITERATIONS);
    let top = &sites(&traced, "fd")[0];
    let without = top["without_stack"].as_u64().unwrap_or(0);
    assert!(
        without > (ITERATIONS as u64) / 2 && without < ITERATIONS as u64 - 1,
        "{top}"
    );
    let text = traced.stdout();
    assert!(
        text.contains(&format!("{without} of them recorded without a stack")),
        "{text}"
    );
}
