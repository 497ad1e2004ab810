//! `--heap` sites named by the sampled stack at the allocator's entry: the caller's pc names
//! a wrapper when the program allocates through one (Rust's `__rust_alloc` for every `Vec`
//! and `Box`, libc's `strdup`), the stack names the program's function. Survivors without
//! a stack of their own (sampling: `--stack-rate`, the ring's share for stacks) are
//! apportioned to their caller's sampled sites. Fixtures built the ordinary way: Rust in
//! release, C at -O2 without frame pointers.

use leakscope_tests::{Traced, assert_rate, class, run_marked, sites};
use serde_json::Value;

const N: usize = 2000;
/// Long enough for a `--stack-rate 1` bucket to be full again (2 s of credit) when the loop
/// starts, whatever start-up took: the first iteration's allocations get their stacks.
const REFILL_MS: &str = "2100";

/// `leakscope run --heap --iteration-symbol iteration_marker OPTIONS -- FIXTURE N ARGS`,
/// which must run N + 1 iterations with nothing lost.
fn run_heap(fixture_name: &str, args: &[&str], options: &[&str]) -> Traced {
    let mut command_args = vec![N.to_string()];
    command_args.extend(args.iter().map(|arg| arg.to_string()));
    let command_args: Vec<&str> = command_args.iter().map(String::as_str).collect();
    let options: Vec<&str> = ["--heap"]
        .into_iter()
        .chain(options.iter().copied())
        .collect();
    run_marked(fixture_name, &command_args, &options, N + 1)
}

/// The heap site whose name ends with `function` (Rust names carry the crate's path).
fn site<'a>(traced: &'a Traced, function: &str) -> &'a Value {
    let all = sites(traced, "heap");
    all.iter()
        .find(|s| {
            s["site"]
                .as_str()
                .is_some_and(|name| name.ends_with(function))
        })
        .unwrap_or_else(|| panic!("no heap site named {function}: {all:?}"))
}

/// The heap class leaks `bytes` per iteration (exact totals, from the kernel's pairing),
/// and its top sites are `functions`, in that order, each the program's own frame (never
/// the allocator's wrapper).
fn assert_named(traced: &Traced, bytes: f64, functions: &[&str]) {
    let heap = class(traced, "heap");
    assert_eq!(heap["verdict"], "leak", "{heap}");
    assert_rate(
        &heap["bytes_per_iteration"],
        bytes,
        "heap bytes per iteration",
    );
    let all = sites(traced, "heap");
    for (i, function) in functions.iter().enumerate() {
        let top = &all[i];
        let name = top["site"].as_str().unwrap_or_default();
        assert!(name.ends_with(function), "site {i} is {function}: {all:?}");
        assert_eq!(top["system"], false, "{top}");
        let frame = top["frames"][0]["function"].as_str().unwrap_or_default();
        assert!(frame.ends_with(function), "{top}");
    }
    // The text names the program's function too.
    let text = traced.stdout();
    assert!(
        text.lines()
            .any(|line| line.starts_with("answer: heap leak") && line.contains(functions[0])),
        "{text}"
    );
    assert!(!text.contains("alloc::alloc"), "{text}");
}

#[test]
fn a_rust_program_s_vec_and_box_leaks_are_named_by_their_functions() {
    let traced = run_heap("rust/leak_blocks", &[], &[]);
    // 72 B of Vec (64, 72, 80 in turn) and 40 B of Box per iteration.
    assert_named(&traced, 112.0, &["leak_vec", "leak_box"]);
    for (function, bytes) in [("leak_vec", 72.0), ("leak_box", 40.0)] {
        let site = site(&traced, function);
        assert_rate(&site["bytes_per_iteration"], bytes, function);
        assert_rate(&site["allocations_per_iteration"], 1.0, function);
    }
    // The String that `churn` drops leaves nothing.
    assert_eq!(
        sites(&traced, "heap").len(),
        2,
        "{:?}",
        sites(&traced, "heap")
    );
}

#[test]
fn a_c_leak_through_strdup_is_named_by_copy_name() {
    let traced = run_heap("nofp/heap_strdup", &[], &[]);
    // "user-%08ld" and its NUL.
    assert_named(&traced, 14.0, &["copy_name"]);
    let copy_name = site(&traced, "copy_name");
    assert_rate(&copy_name["bytes_per_iteration"], 14.0, "copy_name");
    // Every block of strdup's caller went to the one site sampled (one per marked
    // iteration): exact.
    assert_eq!(copy_name["allocations"], N, "{copy_name}");
    let frame = &copy_name["frames"][0];
    assert!(
        frame["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("heap_strdup.c")),
        "{frame}"
    );
    // scratch_name's copies are freed: its stacks were dropped with them.
    assert_eq!(
        sites(&traced, "heap").len(),
        1,
        "{:?}",
        sites(&traced, "heap")
    );
}

#[test]
fn with_one_stack_a_second_the_few_sampled_stacks_still_name_every_survivor() {
    let traced = run_heap("rust/leak_blocks", &[REFILL_MS], &["--stack-rate", "1"]);
    assert_named(&traced, 112.0, &["leak_vec", "leak_box"]);
    let (vec, boxed) = (site(&traced, "leak_vec"), site(&traced, "leak_box"));
    for site in [vec, boxed] {
        assert_rate(&site["allocations_per_iteration"], 1.0, "allocations");
        // Nearly all of them apportioned.
        let unstacked = site["without_stack"].as_u64().unwrap_or_default();
        assert!(unstacked > N as u64 * 9 / 10, "{site}");
    }
    let total = vec["bytes_per_iteration"].as_f64().unwrap()
        + boxed["bytes_per_iteration"].as_f64().unwrap();
    assert_rate(&Value::from(total), 112.0, "both sites' bytes");
    let text = traced.stdout();
    assert!(text.contains("of them recorded without a stack"), "{text}");

    let traced = run_heap("nofp/heap_strdup", &[REFILL_MS], &["--stack-rate", "1"]);
    assert_named(&traced, 14.0, &["copy_name"]);
    let copy_name = site(&traced, "copy_name");
    assert_eq!(copy_name["allocations"], N, "{copy_name}");
    assert_rate(&copy_name["bytes_per_iteration"], 14.0, "copy_name");
}
