//! `--heap`: the allocator traced with uprobes, paired in the kernel. The fixtures are built
//! the ordinary way (`-O2 -g`, no frame pointers; see build.rs), and each leaks from a known
//! function: the class's verdict, its rate and its top site's function are asserted.

use leakscope_tests::{Traced, assert_rate, class, fixture, leakscope_json};
use serde_json::Value;

/// `leakscope run --heap --iteration-symbol iteration_marker -- FIXTURE N`.
fn run_heap(name: &str, n: u64) -> Traced {
    let traced = leakscope_json(
        "run",
        &["--heap", "--iteration-symbol", "iteration_marker"],
        &[
            fixture(&format!("nofp/{name}"))
                .to_string_lossy()
                .into_owned(),
            n.to_string(),
        ],
    );
    assert!(
        traced.output.status.success() || traced.output.status.code() == Some(0),
        "{}",
        traced.stderr()
    );
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    traced
}

fn heap(traced: &Traced) -> &Value {
    let heap = class(traced, "heap");
    assert!(
        heap.is_object(),
        "no heap class in {}",
        traced.report["classes"]
    );
    heap
}

fn top_site(traced: &Traced) -> &str {
    heap(traced)["sites"][0]["site"]
        .as_str()
        .unwrap_or_else(|| panic!("no heap site in {}", heap(traced)))
}

/// The heap class is a leak of `bytes` per iteration, whose top site is `function`.
fn assert_heap_leak<'a>(traced: &'a Traced, bytes: f64, function: &str) -> &'a Value {
    let heap = heap(traced);
    assert_eq!(heap["verdict"], "leak", "{heap}");
    assert_rate(
        &heap["bytes_per_iteration"],
        bytes,
        "heap bytes per iteration",
    );
    assert_eq!(top_site(traced), function);
    heap
}

#[test]
fn thirty_bytes_per_iteration_is_a_heap_leak_at_leak_thirty_that_brk_cannot_see() {
    let traced = run_heap("heap_small", 2000);
    let heap = assert_heap_leak(&traced, 30.0, "leak_thirty");
    assert_rate(
        &heap["allocations_per_iteration"],
        1.0,
        "heap allocations per iteration",
    );
    // Exact: one 30-byte block per iteration survives, nothing else (the churn is freed).
    assert_eq!(heap["live_allocations_at_end"], 2000, "{heap}");
    assert_eq!(heap["live_bytes_at_end"], 60000, "{heap}");
    assert_eq!(heap["missed_frees"], 0, "{heap}");
    assert_rate(
        &heap["sites"][0]["bytes_per_iteration"],
        30.0,
        "site bytes per iteration",
    );
    // The break never moves for 60 KB of 48-byte chunks in glibc's first 132 KiB.
    let brk = class(&traced, "brk")["verdict"].as_str().unwrap();
    assert!(matches!(brk, "no-leak" | "inconclusive"), "brk: {brk}");
    // The caller's frame, with the file and line of the call (the fixture's -g).
    let frame = &heap["sites"][0]["frames"][0];
    assert_eq!(frame["function"], "leak_thirty", "{frame}");
    assert!(
        frame["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("heap_small.c")),
        "{frame}"
    );
    assert!(frame["line"].as_u64().is_some_and(|l| l > 0), "{frame}");
    let text = traced.stdout();
    assert!(
        text.contains("heap leak: 30 B per iteration, allocated in leak_thirty"),
        "{text}"
    );
    // The text lays the frame out under the site's line.
    let under_site = text
        .lines()
        .skip_while(|line| !line.starts_with("  heap ") || !line.contains("by leak_thirty"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        under_site.trim_start().starts_with("leak_thirty") && under_site.contains("heap_small.c:"),
        "{text}"
    );
}

#[test]
fn a_program_that_frees_everything_is_never_a_heap_leak() {
    // malloc, calloc, realloc (incl. NULL and shrinking), posix_memalign, aligned_alloc and
    // strdup, all freed: run five times, so a verdict that flips is caught.
    for run in 0..5 {
        let traced = run_heap("heap_churn", 2000);
        let heap = heap(&traced);
        assert_eq!(heap["verdict"], "no-leak", "run {run}: {heap}");
        assert_eq!(heap["sites"], Value::Array(vec![]), "run {run}: {heap}");
        assert_eq!(heap["missed_frees"], 0, "run {run}: {heap}");
    }
}

#[test]
fn freed_blocks_lifetimes_are_counted_in_time_and_iterations() {
    // Nine blocks a churn iteration are freed (seven frees and two reallocs that move),
    // each in the iteration that made it; start-up's own frees come on top in time, and in
    // iterations only once the first marker fired (before it they live in no iteration).
    let traced = run_heap("heap_churn", 2000);
    let heap = heap(&traced);
    let (ns, iterations) = (&heap["lifetime_ns"], &heap["lifetime_iterations"]);
    let freed = ns["count"].as_u64().unwrap();
    assert!((18_000..18_100).contains(&freed), "{freed} freed: {heap}");
    let in_iterations = iterations["count"].as_u64().unwrap();
    assert!((18_000..=freed).contains(&in_iterations), "{heap}");
    assert_eq!(iterations["p99"], 0, "{heap}");
    // A block lives a few microseconds, under a uprobe's cost per call.
    let p50 = ns["p50"].as_u64().unwrap();
    assert!((100..1_000_000).contains(&p50), "p50 {p50} ns: {heap}");
    let text = traced.stdout();
    assert!(
        text.lines().any(|l| l.starts_with("  heap    n=")),
        "{text}"
    );
}

#[test]
fn a_worker_thread_s_leak_in_its_glibc_arena_is_found_at_worker_leak() {
    let traced = run_heap("heap_thread", 2000);
    assert_heap_leak(&traced, 48.0, "worker_leak");
}

#[test]
fn cpp_new_is_attributed_to_the_caller_of_operator_new_and_counted_once() {
    let traced = run_heap("cpp_new", 2000);
    // sizeof(Node) = 40; malloc inside operator new is nested, not a second allocation.
    let heap = assert_heap_leak(&traced, 40.0, "leak_nodes()");
    assert_rate(
        &heap["allocations_per_iteration"],
        1.0,
        "heap allocations per iteration",
    );
}

#[test]
fn a_program_that_catches_bad_alloc_runs_as_untraced_and_its_leak_is_seen() {
    // operator new throws 21 times (once before the loop, every 100th iteration), and a
    // nothrow new fails once: all caught. Traced, the program must behave the same.
    let traced = run_heap("cpp_throw", 2000);
    assert!(
        traced.stderr().contains("caught 22") || traced.stdout().contains("caught 22"),
        "{}",
        traced.stderr()
    );
    assert_eq!(
        traced.report["ended"]["how"], "target-exited",
        "{}",
        traced.report["ended"]
    );
    let heap = assert_heap_leak(&traced, 64.0, "leak_array()");
    // Exact, and each block on its caller's account: 40 B from leak_array (through
    // nothrow new[] -> new[] -> new -> malloc), 24 B from leak_item (new -> malloc).
    let sites = heap["sites"].as_array().unwrap();
    let named: Vec<(&str, u64, u64)> = sites
        .iter()
        .map(|s| {
            (
                s["site"].as_str().unwrap(),
                s["allocations"].as_u64().unwrap(),
                s["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("leak_array()", 2000, 80_000),
            ("leak_item(long)", 2000, 48_000)
        ],
        "{heap}"
    );
}

#[test]
fn a_program_s_own_operator_new_is_traced_with_its_return() {
    // Its `new` never calls malloc: were it taken for libstdc++'s wrapper, no block would
    // be seen and the leak would read "no-leak".
    let traced = run_heap("cpp_own_new", 2000);
    let heap = assert_heap_leak(&traced, 24.0, "leak_item(long)");
    assert_eq!(heap["sites"][0]["allocations"], 2000, "{heap}");
    assert_eq!(heap["sites"].as_array().map(Vec::len), Some(1), "{heap}");
}

#[test]
fn attach_traces_the_allocator_of_a_running_process() {
    // 2 ms per iteration; attached for 2 s: about 1,000 iterations.
    let mut target = std::process::Command::new(fixture("nofp/heap_small"))
        .args(["100000", "2000"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = target.id().to_string();
    let traced = leakscope_json(
        "attach",
        &[
            "--pid",
            &pid,
            "--duration",
            "2",
            "--heap",
            "--iteration-symbol",
            "iteration_marker",
        ],
        &[] as &[&str],
    );
    target.kill().unwrap();
    target.wait().unwrap();
    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert_heap_leak(&traced, 30.0, "leak_thirty");
}

#[test]
fn a_static_stripped_binary_without_malloc_and_free_symbols_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("static.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
    let binary = dir.path().join("static");
    let compiled = std::process::Command::new("cc")
        .args(["-static", "-s", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .unwrap();
    if !compiled.success() {
        eprintln!("no static libc here: skipped");
        return;
    }
    let output = std::process::Command::new(leakscope_tests::leakscope())
        .args(["run", "--heap", "--"])
        .arg(&binary)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("--heap: no `malloc` or `free`"),
        "{stderr}"
    );
}

#[test]
fn without_a_marker_the_heap_totals_are_read_at_each_poll() {
    // --iteration-path: no marker carries the totals, so leakscope reads them every 10 ms;
    // 1 ms per iteration, so each sample spans about ten iterations.
    let dir = tempfile::tempdir().unwrap();
    let tick = dir.path().join("tick");
    let traced = leakscope_json(
        "run",
        &["--heap", "--iteration-path", tick.to_str().unwrap()],
        &[
            fixture("nofp/heap_small").to_string_lossy().into_owned(),
            "1500".into(),
            "1000".into(),
            tick.to_string_lossy().into_owned(),
        ],
    );
    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert_eq!(traced.report["iterations"]["source"], "path");
    let heap = heap(&traced);
    assert_eq!(heap["verdict"], "leak", "{heap}");
    assert_rate(
        &heap["bytes_per_iteration"],
        30.0,
        "heap bytes per iteration",
    ); // The survivors' times place them between the path's boundaries.
    assert_eq!(top_site(&traced), "leak_thirty");
    assert_rate(
        &heap["sites"][0]["bytes_per_iteration"],
        30.0,
        "site bytes per iteration",
    );
}

#[test]
fn a_forked_child_gets_the_allocator_probes_too() {
    let traced = run_heap("heap_fork", 2000);
    let heap = assert_heap_leak(&traced, 30.0, "leak_in_child");
    assert_ne!(
        heap["sites"][0]["pid"], traced.report["target"]["pid"],
        "the child's site"
    );
}

#[test]
fn without_heap_there_is_no_heap_class() {
    let traced = leakscope_json(
        "run",
        &["--iteration-symbol", "iteration_marker"],
        &[
            fixture("nofp/heap_small").to_string_lossy().into_owned(),
            "10".into(),
        ],
    );
    assert!(
        class(&traced, "heap").is_null(),
        "{}",
        traced.report["classes"]
    );
}

/// The built-in job under `--heap`: the tar crate's extraction loop frees what it allocates,
/// so the heap class and the "event listeners" suspect it answers are no-leak, every time.
#[test]
fn extract_under_heap_frees_everything_five_times_out_of_five() {
    for run in 0..5 {
        let traced = leakscope_json(
            "extract",
            &["--heap", "--rounds", "2", "--iterations", "300"],
            &[] as &[&str],
        );
        assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
        assert_eq!(traced.report["iterations"]["count"], 600);
        let heap = heap(&traced);
        assert_eq!(heap["verdict"], "no-leak", "run {run}: {heap}");
        assert_eq!(heap["unrecorded"], 0, "run {run}: {heap}");
        let listeners = traced.report["suspects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["suspect"] == "event listeners")
            .expect("extract answers the event listeners suspect");
        assert_eq!(listeners["classes"], serde_json::json!(["heap"]));
        assert_eq!(listeners["verdict"], "no-leak", "run {run}: {listeners}");
    }
}
