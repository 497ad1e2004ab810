//! Automatic detection while tracing: a run without a marker commits to the loop it finds
//! in its first events and folds from then on, so its memory follows what is live; the
//! report is the same as when every record is kept and the loop is found at the end
//! (`LEAKSCOPE_NO_FOLD=1`).

use std::path::Path;

use leakscope_tests::{
    Traced, assert_no_leak_in, class,
    compare::{assert_peak_rss_within, essentials, without_dir, without_rss},
    fixture, leakscope_json_with_env,
};
use rstest::rstest;
use serde_json::Value;

/// A millisecond's rest between iterations: a try comes between drain passes, so the run
/// must last many of them (10 ms each).
fn paced() -> (&'static str, &'static Path) {
    ("LEAKY_PACE_US", Path::new("1000"))
}

/// `leaky MODE N DIR [K]` with automatic detection, in a fresh directory, with `env`; the
/// report's essentials with the directory's name replaced by DIR.
fn leaky_auto(args: &[&str], env: &[(&str, &Path)]) -> (Traced, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = vec![fixture("leaky").to_string_lossy().into_owned()];
    command.push(args[0].into());
    command.push(args[1].into());
    command.push(dir.path().to_string_lossy().into_owned());
    command.extend(args[2..].iter().map(|a| a.to_string()));
    let traced = leakscope_json_with_env("run", &[], &command, env);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    // Sites name the directory: each run's own random name, which a site's name pattern
    // may or may not have recognised as random.
    let text = without_dir(&early_essentials(&traced).to_string(), dir.path());
    (traced, text)
}

/// What must come out the same whether the loop was chosen early or at the end: what
/// [`essentials`] keeps, and the loop's path.
fn early_essentials(traced: &Traced) -> Value {
    let mut kept = without_rss(essentials(traced));
    kept["path"] = traced.report["iterations"]["path"].clone();
    kept
}

fn chosen_from(traced: &Traced) -> Option<u64> {
    traced.report["iterations"]["chosen_from_events"].as_u64()
}

/// The loop was chosen at the first try: at the first pause of the drain after
/// `first_try` events.
fn assert_chosen_at_first_try(traced: &Traced, first_try: u64) {
    let chosen = chosen_from(traced);
    assert!(
        chosen.is_some_and(|n| (first_try..2 * first_try).contains(&n)),
        "chosen from {chosen:?} events, not at the try after {first_try}: {}",
        traced.report["iterations"]
    );
}

/// Each mode's loop is chosen early (after 120 to 300 iterations, of 3 to 20 events
/// each), then folded; the report equals the one that kept every record.
#[rstest]
#[case::fd_leak("fd", "600", 1000)]
#[case::bounded_cache("cache", "600", 1000)]
#[case::churn("churn", "400", 2500)]
#[case::brk("brk", "900", 1000)]
fn choosing_the_loop_early_changes_no_result(
    #[case] mode: &str,
    #[case] iterations: &str,
    #[case] first_try: u64,
) {
    let first = first_try.to_string();
    let early = [
        ("LEAKSCOPE_EARLY_DETECT_EVENTS", Path::new(&first)),
        paced(),
    ];
    let (traced, folded) = leaky_auto(&[mode, iterations], &early);
    assert_chosen_at_first_try(&traced, first_try);
    let (kept_traced, kept) = leaky_auto(
        &[mode, iterations],
        &[("LEAKSCOPE_NO_FOLD", Path::new("1"))],
    );
    assert_eq!(chosen_from(&kept_traced), None);
    assert_eq!(folded, kept, "{mode}");
}

/// A clean loop chosen early is never judged a leak (5 runs: a flipping verdict shows).
#[test]
fn a_clean_loop_chosen_early_never_leaks() {
    let early = [
        ("LEAKSCOPE_EARLY_DETECT_EVENTS", Path::new("2500")),
        paced(),
    ];
    for run in 0..5 {
        let (traced, _) = leaky_auto(&["churn", "400"], &early);
        assert_chosen_at_first_try(&traced, 2500);
        assert_no_leak_in(
            &traced,
            &["fd", "mmap", "files", "watches"],
            &format!("run {run}"),
        );
        for name in ["fd", "mmap"] {
            assert_eq!(class(&traced, name)["verdict"], "no-leak", "run {run}");
        }
    }
}

/// 2,000 iterations of 500 dups and closes (about 2,000,000 events) without a marker: the
/// loop is chosen from the first 2^17 events (the default), and memory stays bounded.
///
/// With an 8 MiB ring: a ring's pages are all touched once as many records went through it,
/// and count in leakscope's peak, so the default 16 MiB ring alone would take a quarter of
/// the bar; the bar is on what leakscope keeps. (With the default ring, this run peaks at
/// 68 MiB with automatic detection and 67 MiB with `--iteration-symbol`, against 116 MiB
/// when every record is kept.)
#[test]
fn two_million_events_without_a_marker_stay_within_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let command = [
        fixture("leaky").to_string_lossy().into_owned(),
        "storm".into(),
        "2000".into(),
        dir.path().to_string_lossy().into_owned(),
        "500".into(),
    ];
    let traced = leakscope_json_with_env("run", &["--ring-mib", "8"], &command, &[]);
    let report = &traced.report;
    assert_eq!(report["lost_events"], 0, "{}", traced.stderr());
    assert_chosen_at_first_try(&traced, 1 << 17);
    assert_eq!(report["iterations"]["count"], 2000);
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "no-leak", "{fd}");
    // Every dup counted, although almost none was kept (plus the loader's few).
    let acquired = fd["acquired"].as_u64().unwrap();
    assert!((1_004_000..1_004_020).contains(&acquired), "{acquired}");
    assert_peak_rss_within(&traced, 64);
}
