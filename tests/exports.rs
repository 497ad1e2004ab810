//! `--folded` and `--flamegraph`: what was retained, by stack. Each is opened before
//! tracing starts, like `--json`, and can be combined with it in one run.

use std::path::Path;
use std::process::Command;

use leakscope_tests::{Traced, fixture, leakscope, leakscope_json, sites};

const N: usize = 500;

/// `run --iteration-symbol iteration_marker --folded DIR/f --flamegraph DIR/g.svg` on a
/// fixture built without frame pointers; returns the report, the folded lines and the SVG.
fn run_with_exports(name: &str, dir: &Path, options: &[&str]) -> (Traced, String, String) {
    let (folded, svg) = (dir.join("retained.folded"), dir.join("retained.svg"));
    let mut all = vec![
        "--iteration-symbol",
        "iteration_marker",
        "--folded",
        folded.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
    ];
    all.extend(options);
    let command = [
        fixture(&format!("nofp/{name}"))
            .to_string_lossy()
            .into_owned(),
        N.to_string(),
    ];
    let traced = leakscope_json("run", &all, &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    let folded = std::fs::read_to_string(&folded).expect("--folded was written");
    let svg = std::fs::read_to_string(&svg).expect("--flamegraph was written");
    (traced, folded, svg)
}

/// Each line as (frames, width), checking the folded format on the way.
fn parse(folded: &str) -> Vec<(Vec<String>, u64)> {
    folded
        .lines()
        .map(|line| {
            let (stack, width) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no width: {line}"));
            let width: u64 = width
                .parse()
                .unwrap_or_else(|_| panic!("bad width: {line}"));
            let frames: Vec<String> = stack.split(';').map(str::to_string).collect();
            assert!(frames.iter().all(|f| !f.is_empty()), "empty frame: {line}");
            (frames, width)
        })
        .collect()
}

#[test]
fn the_leaking_function_carries_the_largest_width() {
    let dir = tempfile::tempdir().unwrap();
    let (traced, folded, svg) = run_with_exports("mmap_big_malloc", dir.path(), &[]);
    let lines = parse(&folded);
    let widest = lines
        .iter()
        .max_by_key(|(_, width)| *width)
        .unwrap_or_else(|| panic!("nothing folded: {folded}"));
    assert_eq!(widest.0[0], "mmap (bytes)", "{folded}");
    assert!(widest.0.iter().any(|f| f == "leak_big"), "{folded}");
    // Its width is the site's retained bytes, as the JSON says.
    let top = &sites(&traced, "mmap")[0];
    assert_eq!(Some(widest.1), top["bytes_leaked"].as_u64(), "{top}");
    // The resource is the leaf, below the program's frames.
    assert!(widest.0.last().unwrap().starts_with("anon "), "{folded}");
    assert!(
        svg.starts_with("<?xml") && svg.contains("leak_big"),
        "{svg}"
    );
}

#[test]
fn a_run_that_retains_nothing_writes_an_empty_fold_and_says_so_in_the_picture() {
    let dir = tempfile::tempdir().unwrap();
    let (traced, folded, svg) = run_with_exports("heap_churn", dir.path(), &["--heap"]);
    assert_eq!(traced.report["classes"]["heap"]["verdict"], "no-leak");
    assert!(
        parse(&folded)
            .iter()
            .all(|(frames, _)| frames[0] != "heap (bytes)"),
        "{folded}"
    );
    assert!(svg.contains("<svg"), "{svg}");
}

#[test]
fn a_bad_path_stops_the_run_before_the_target_starts() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    for flag in ["--folded", "--flamegraph", "--trace", "--html", "--svg"] {
        let output = Command::new(leakscope())
            .args(["run", flag, "/nonexistent-dir/out", "--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("/nonexistent-dir/out"),
            "{stderr}"
        );
        assert!(!marker.exists(), "the target ran");
    }
}

#[test]
fn the_trace_has_iteration_slices_a_rising_counter_and_the_retained_fds() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.trace.json");
    let command = [
        fixture("leaky").to_string_lossy().into_owned(),
        "fd".into(),
        "300".into(),
        dir.path().to_string_lossy().into_owned(),
    ];
    let traced = leakscope_json(
        "run",
        &[
            "--iteration-symbol",
            "iteration_marker",
            "--trace",
            trace.to_str().unwrap(),
        ],
        &command,
    );
    assert_eq!(traced.report["classes"]["fd"]["verdict"], "leak");
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).expect("--trace was written"))
            .expect("the trace is JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let of = |ph: &str| events.iter().filter(|e| e["ph"] == ph).collect::<Vec<_>>();
    // One slice per iteration (300 markers: 299 between them), on the target's track.
    let slices = of("X");
    assert_eq!(slices.len(), 299, "{:?}", &slices[..3.min(slices.len())]);
    assert!(slices.iter().all(|s| s["dur"].as_f64().unwrap() >= 0.0));
    // The live fds counter rises by one per iteration.
    let fds: Vec<f64> = of("C")
        .iter()
        .filter(|e| e["name"] == "fds")
        .map(|e| e["args"]["live"].as_f64().unwrap())
        .collect();
    assert_eq!(fds.len(), 300);
    assert_eq!(fds.last().unwrap() - fds.first().unwrap(), 299.0, "{fds:?}");
    // Each retained fd is an instant at its acquisition, with its site.
    let retained: Vec<_> = of("i")
        .into_iter()
        .filter(|e| e["name"] == "retained fd")
        .collect();
    assert_eq!(retained.len(), 299);
    assert!(
        retained[0]["args"]["site"]
            .as_str()
            .unwrap()
            .contains("data.txt"),
        "{}",
        retained[0]
    );
    // The process is named.
    assert!(
        of("M").iter().any(|e| e["name"] == "process_name"
            && e["args"]["name"].as_str().unwrap().contains("leaky"))
    );
}
