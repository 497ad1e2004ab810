//! The diagnosis on fixture programs with known behaviour, under every iteration source:
//! the right class, the rate within ±5 % and the top site. Each source is its own test case
//! (rstest), so a failure names the source.

use rstest::rstest;

use leakscope_tests::{
    Source, assert_rate, assert_verdicts, class, diagnose, fixture, script, verdicts,
};

const N: usize = 1000;

fn leaky(mode: &str, source: Source, k: usize) -> (tempfile::TempDir, leakscope_tests::Traced) {
    let dir = tempfile::tempdir().unwrap();
    let command = vec![
        fixture("leaky").to_string_lossy().into_owned(),
        mode.into(),
        N.to_string(),
        dir.path().to_string_lossy().into_owned(),
        k.to_string(),
    ];
    let traced = diagnose(source, dir.path(), &command);
    assert_eq!(
        traced.report["iterations"]["count"], N,
        "{}",
        traced.report["iterations"]
    );
    (dir, traced)
}

#[rstest]
fn fd_leak_of_k_per_iteration_through_dup(
    #[values(Source::Symbol, Source::Path, Source::Auto)] source: Source,
) {
    let (dir, traced) = leaky("fd", source, 3);
    let fd = class(&traced, "fd");
    assert_verdicts(
        &traced,
        ["leak", "no-leak", "flat", "flat"],
        &format!("{source:?}"),
    );
    assert_rate(&fd["leaked_per_iteration"], 3.0, "fd leaked per iteration");
    let site = format!("{}/data.txt (kept by dup)", dir.path().display());
    assert_eq!(
        leakscope_tests::resource(&fd["sites"][0]["site"]),
        site.as_str(),
        "{source:?}"
    );
    assert_rate(
        &fd["sites"][0]["leaked_per_iteration"],
        3.0,
        "top site rate",
    );
}

#[rstest]
fn mapping_leak_on_a_worker_thread(
    #[values(Source::Symbol, Source::Path, Source::Auto)] source: Source,
) {
    let (_dir, traced) = leaky("mmap-thread", source, 1);
    let mmap = class(&traced, "mmap");
    assert_verdicts(
        &traced,
        ["no-leak", "leak", "flat", "flat"],
        &format!("{source:?}"),
    );
    assert_rate(&mmap["leaked_per_iteration"], 1.0, "mappings per iteration");
    assert_rate(
        &mmap["bytes_leaked_per_iteration"],
        65536.0,
        "mapped bytes per iteration",
    );
    let site = mmap["sites"][0]["site"].as_str().unwrap();
    assert!(site.starts_with("anon 64 KiB rw- private"), "{site}");
    assert!(
        site.contains("leak_mapping") && site.contains("mapping_worker"),
        "{site}"
    );
}

#[rstest]
fn heap_growth_through_brk(#[values(Source::Symbol, Source::Path, Source::Auto)] source: Source) {
    let (_dir, traced) = leaky("brk", source, 1);
    let brk = class(&traced, "brk");
    assert_verdicts(
        &traced,
        ["no-leak", "no-leak", "leak", "flat"],
        &format!("{source:?}"),
    );
    assert_rate(
        &brk["bytes_per_iteration"],
        4096.0,
        "brk bytes per iteration",
    );
    let site = brk["sites"][0]["site"].as_str().unwrap();
    assert!(
        site.contains("main"),
        "the brk site names the caller: {site}"
    );
}

#[rstest]
fn a_bounded_cache_is_a_plateau_not_a_leak(
    #[values(Source::Symbol, Source::Path, Source::Auto)] source: Source,
) {
    let (_dir, traced) = leaky("cache", source, 1);
    let [fd, mmap, brk, rss] = verdicts(&traced);
    assert_eq!(
        (fd.as_str(), mmap.as_str()),
        ("plateau", "plateau"),
        "{source:?}"
    );
    assert!(
        brk != "leak" && rss != "leak",
        "{source:?}: brk {brk}, rss {rss}"
    );
    let cached = class(&traced, "fd")["sites"][0]["leaked"].as_u64().unwrap();
    assert!(
        (31..=32).contains(&cached),
        "the cache holds 32 fds: {cached}"
    );
}

#[rstest]
fn clean_churn_with_fd_number_reuse_is_no_leak_everywhere(
    #[values(Source::Symbol, Source::Path, Source::Auto)] source: Source,
) {
    let (_dir, traced) = leaky("churn", source, 1);
    assert_verdicts(
        &traced,
        ["no-leak", "no-leak", "flat", "flat"],
        &format!("{source:?}"),
    );
    // 8 opens + the tick per iteration, all released: heavy reuse of the same numbers.
    assert!(class(&traced, "fd")["acquired"].as_u64().unwrap() >= 9 * N as u64);
}

/// Interpreters: the fd class, its rate and site (their heaps legitimately grow with the
/// file objects they keep, so the other classes are not asserted). No symbol source: the
/// loop is in script code.
fn interpreted(interpreter: &str, script_name: &str, source: Source) {
    let dir = tempfile::tempdir().unwrap();
    let command = vec![
        interpreter.to_string(),
        script(script_name).to_string_lossy().into_owned(),
        N.to_string(),
        dir.path().to_string_lossy().into_owned(),
    ];
    let traced = diagnose(source, dir.path(), &command);
    assert_eq!(
        traced.report["iterations"]["count"], N,
        "{source:?}: {}",
        traced.report["iterations"]
    );
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{source:?}");
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fd leaked per iteration");
    assert_eq!(
        leakscope_tests::resource(&fd["sites"][0]["site"]),
        format!("{}/data.txt", dir.path().display()).as_str()
    );
}

#[rstest]
fn python_leaking_file_objects(#[values(Source::Path, Source::Auto)] source: Source) {
    interpreted("python3", "leak_files.py", source);
}

#[rstest]
fn node_leaking_file_descriptors(#[values(Source::Path, Source::Auto)] source: Source) {
    interpreted("node", "leak_files.js", source);
}

/// A real runtime that only warms up: its RSS rises at start and then stays flat. That is
/// never a leak, in any class.
fn runtime_warm_up_is_not_a_leak(interpreter: &str, script_name: &str, source: Source) {
    let dir = tempfile::tempdir().unwrap();
    let command = vec![
        interpreter.to_string(),
        script(script_name).to_string_lossy().into_owned(),
        (5 * N).to_string(),
        dir.path().to_string_lossy().into_owned(),
        "clean".into(),
    ];
    let traced = diagnose(source, dir.path(), &command);
    for (class, verdict) in ["fd", "mmap", "brk", "rss"].iter().zip(verdicts(&traced)) {
        let settled_later = traced.report["classes"][class]["iterations_needed"].is_u64();
        assert!(
            verdict == "no-leak"
                || verdict == "plateau"
                || (verdict == "inconclusive" && settled_later),
            "{interpreter} {source:?}: {class} is {verdict}: {}",
            traced.report["classes"][class]
        );
    }
}

#[rstest]
fn python_warming_up_is_not_a_leak(#[values(Source::Path, Source::Auto)] source: Source) {
    runtime_warm_up_is_not_a_leak("python3", "leak_files.py", source);
}

#[rstest]
fn node_warming_up_is_not_a_leak(#[values(Source::Path, Source::Auto)] source: Source) {
    runtime_warm_up_is_not_a_leak("node", "leak_files.js", source);
}

/// Programs with no loop at all: start-up (a dynamic loader mapping libraries) must never
/// read as a leak.
#[rstest]
#[case::true_(&["/bin/true"])]
#[case::sleep(&["sleep", "0.2"])]
#[case::ls(&["ls", "/"])]
fn a_program_without_a_loop_is_never_a_leak(#[case] command: &[&str]) {
    let traced = leakscope_tests::leakscope_json("run", &[], command);
    for verdict in verdicts(&traced) {
        assert_ne!(verdict, "leak", "{command:?}: {}", traced.report["answer"]);
    }
}
