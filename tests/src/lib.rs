//! Support for the integration tests: run the real leakscope binary on fixture programs and
//! read its JSON report.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

pub mod browser;
pub mod compare;
pub mod lifecycle;

/// The leakscope binary under test, named by `LEAKSCOPE_BIN`; `cargo xtask test` builds it and
/// sets that. There is no fallback to a path such as target/release/leakscope: it would
/// silently test whatever binary an earlier build left there.
pub fn leakscope() -> PathBuf {
    let Some(path) = std::env::var_os("LEAKSCOPE_BIN") else {
        panic!(
            "LEAKSCOPE_BIN is not set. Run the integration tests with `cargo xtask test`, or build \
             with `cargo xtask build` and set LEAKSCOPE_BIN=$PWD/target/release/leakscope"
        );
    };
    let path = PathBuf::from(path);
    // cargo runs each test from its package directory (tests/), not from where it was started.
    assert!(
        path.is_absolute(),
        "LEAKSCOPE_BIN={} must be an absolute path",
        path.display()
    );
    assert!(
        path.is_file(),
        "LEAKSCOPE_BIN={} is not a file; `cargo xtask build` builds it",
        path.display()
    );
    path
}

/// A copy of `program` that any user can run, for tests that start it as another user: the
/// clone, and so its target/, may sit in a directory other users cannot enter, such as root's
/// home (mode 0700). The copy is a mode-0755 file in a new mode-0755 directory under /tmp
/// (not TMPDIR, which may be private too); it goes away with the returned directory.
pub fn world_runnable_copy(program: &Path) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("leakscope-test-")
        .tempdir_in("/tmp")
        .expect("cannot create a directory in /tmp");
    let everyone = || std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(dir.path(), everyone()).unwrap();
    let copy = dir
        .path()
        .join(program.file_name().expect("a program file"));
    std::fs::copy(program, &copy)
        .unwrap_or_else(|error| panic!("cannot copy {}: {error}", program.display()));
    std::fs::set_permissions(&copy, everyone()).unwrap();
    (dir, copy)
}

/// A compiled C fixture (see fixtures/).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("FIXTURE_DIR")).join(name)
}

/// A fixture script shipped as source (Python, JavaScript).
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

pub struct Traced {
    pub output: Output,
    pub report: Value,
}

impl Traced {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    /// `counts` as a map; absent names count 0.
    pub fn counts(&self) -> BTreeMap<String, i64> {
        self.report["counts"]
            .as_object()
            .map(|counts| {
                counts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `leakscope <subcommand> --json FILE <options> [-- command]`, returning the report.
/// Panics with leakscope's stderr if it wrote no report.
pub fn leakscope_json<S: AsRef<OsStr>>(
    subcommand: &str,
    options: &[&str],
    command: &[S],
) -> Traced {
    leakscope_json_with_env(subcommand, options, command, &[])
}

/// [`leakscope_json`] with extra environment variables for leakscope (`TMPDIR`, to see what
/// a run leaves in its temporary directory).
pub fn leakscope_json_with_env<S: AsRef<OsStr>>(
    subcommand: &str,
    options: &[&str],
    command: &[S],
    env: &[(&str, &Path)],
) -> Traced {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut cmd = Command::new(leakscope());
    cmd.envs(env.iter().copied());
    cmd.arg(subcommand).arg("--json").arg(&json).args(options);
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    let output = cmd.output().expect("cannot run leakscope");
    let Ok(text) = std::fs::read_to_string(&json) else {
        panic!(
            "leakscope wrote no report ({}).\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    Traced {
        output,
        report: serde_json::from_str(&text).expect("the report is not JSON"),
    }
}

/// `leakscope run` on a fixture with the given arguments.
pub fn run_fixture(name: &str, args: &[&str]) -> Traced {
    let mut command: Vec<String> = vec![fixture(name).to_string_lossy().into_owned()];
    command.extend(args.iter().map(|a| a.to_string()));
    leakscope_json("run", &[], &command)
}

/// What a run with `n` does beyond a run with 0 (the fixture's start-up and libc's own
/// calls cancel out): per syscall name, nonzero differences only.
pub fn counts_beyond_baseline(name: &str, n: u64, extra: &[&str]) -> BTreeMap<String, i64> {
    let zero = n_args("0", extra);
    let many = n_args(&n.to_string(), extra);
    let baseline = run_fixture(name, &zero.iter().map(String::as_str).collect::<Vec<_>>());
    let traced = run_fixture(name, &many.iter().map(String::as_str).collect::<Vec<_>>());
    for run in [&baseline, &traced] {
        assert_eq!(
            run.report["lost_events"],
            0,
            "events were lost: {}",
            run.stderr()
        );
        assert_eq!(
            run.report["target"]["exit_code"],
            0,
            "the fixture failed: {}",
            run.stderr()
        );
    }
    let (base, counts) = (baseline.counts(), traced.counts());
    let names: std::collections::BTreeSet<_> = base.keys().chain(counts.keys()).cloned().collect();
    names
        .into_iter()
        .filter_map(|name| {
            let diff =
                counts.get(&name).copied().unwrap_or(0) - base.get(&name).copied().unwrap_or(0);
            (diff != 0).then_some((name, diff))
        })
        .collect()
}

fn n_args(n: &str, extra: &[&str]) -> Vec<String> {
    std::iter::once(n.to_string())
        .chain(extra.iter().map(|a| a.to_string()))
        .collect()
}

/// Builds an expected-counts map: `expect(&[("openat", 1000), ...])`.
pub fn expect(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// How a diagnosis run marks its iterations.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// `--iteration-symbol iteration_marker` (the C fixtures export it).
    Symbol,
    /// `--iteration-path DIR/tick` (every fixture opens it once per iteration).
    Path,
    /// Neither: automatic detection.
    Auto,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Symbol, Source::Path, Source::Auto];

    pub fn options(self, dir: &std::path::Path) -> Vec<String> {
        match self {
            Source::Symbol => vec!["--iteration-symbol".into(), "iteration_marker".into()],
            Source::Path => vec!["--iteration-path".into(), format!("{}/tick", dir.display())],
            Source::Auto => Vec::new(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Symbol => "symbol",
            Source::Path => "path",
            Source::Auto => "auto",
        }
    }
}

/// `leakscope run` with an iteration source on `command`; the report must come from that
/// source, with no lost events.
pub fn diagnose(source: Source, dir: &std::path::Path, command: &[String]) -> Traced {
    let options = source.options(dir);
    let traced = leakscope_json(
        "run",
        &options.iter().map(String::as_str).collect::<Vec<_>>(),
        command,
    );
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(
        traced.report["iterations"]["source"],
        source.name(),
        "{}",
        traced.report["iterations"]
    );
    traced
}

/// The JSON of one class.
pub fn class<'a>(traced: &'a Traced, name: &str) -> &'a Value {
    &traced.report["classes"][name]
}

/// `actual` within ±5 % of `expected`.
pub fn assert_rate(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no number in {actual}"));
    assert!(
        (actual - expected).abs() <= expected.abs() * 0.05,
        "{what}: {actual}, expected {expected} ±5 %"
    );
}

/// The verdicts of all four classes, in the order fd, mmap, brk, rss.
pub fn verdicts(traced: &Traced) -> [String; 4] {
    ["fd", "mmap", "brk", "rss"].map(|name| {
        class(traced, name)["verdict"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    })
}

/// Asserts the four classes' verdicts (fd, mmap, brk, rss). `"bounded"` accepts "no-leak"
/// and "plateau". `"flat"` accepts "no-leak" and
/// an "inconclusive" that only says the run was too short to rule out a small leak (it
/// names the iterations that would settle it): a short run of a coarse class must not
/// claim more than it saw.
pub fn assert_verdicts(traced: &Traced, expected: [&str; 4], context: &str) {
    for (name, wanted) in ["fd", "mmap", "brk", "rss"].into_iter().zip(expected) {
        let class = class(traced, name);
        let verdict = class["verdict"].as_str().unwrap_or("?");
        let ok = match wanted {
            "flat" => {
                verdict == "no-leak"
                    || (verdict == "inconclusive" && class["iterations_needed"].as_u64().is_some())
            }
            // Not a leak: nothing retained, or a bounded amount (a cache filling once).
            "bounded" => verdict == "no-leak" || verdict == "plateau",
            exact => verdict == exact,
        };
        assert!(
            ok,
            "{context}: {name} is {verdict}, expected {wanted}: {class}\nanswer: {}",
            traced.report["answer"]
        );
        if verdict == "no-leak" {
            let limit = class
                .get("detection_limit_per_iteration")
                .or_else(|| class.get("detection_limit_bytes_per_iteration"));
            assert!(
                limit.and_then(Value::as_f64).is_some(),
                "{context}: {name} says no-leak without a detection limit: {class}"
            );
        }
    }
}

/// `leakscope run --iteration-symbol iteration_marker OPTIONS -- FIXTURE ARGS`, which must
/// run `iterations` iterations with nothing lost.
pub fn run_marked(
    fixture_name: &str,
    args: &[&str],
    options: &[&str],
    iterations: usize,
) -> Traced {
    let mut command = vec![fixture(fixture_name).to_string_lossy().into_owned()];
    command.extend(args.iter().map(|arg| arg.to_string()));
    let options: Vec<&str> = ["--iteration-symbol", "iteration_marker"]
        .into_iter()
        .chain(options.iter().copied())
        .collect();
    let traced = leakscope_json("run", &options, &command);
    assert_eq!(
        traced.report["lost_events"],
        0,
        "{}\n{}",
        traced.report["lost_by_reason"],
        traced.stderr()
    );
    assert_ran(&traced, iterations);
    traced
}

/// The target exited with status 0 and the run found exactly `iterations` iterations.
pub fn assert_ran(traced: &Traced, iterations: usize) {
    assert_eq!(
        traced.report["target"]["exit_code"],
        0,
        "{}",
        traced.stderr()
    );
    assert_eq!(
        traced.report["iterations"]["count"], iterations,
        "{}",
        traced.report["iterations"]
    );
}

/// Every class that gets a verdict: the four of [`verdicts`], then entries on disk the target
/// created and did not remove (`files`) and inotify watches and fanotify marks (`watches`).
pub const CLASSES: [&str; 6] = ["fd", "mmap", "brk", "rss", "files", "watches"];

/// The verdict of one class ("?" when the report has none).
pub fn verdict_of<'a>(traced: &'a Traced, name: &str) -> &'a str {
    class(traced, name)["verdict"].as_str().unwrap_or("?")
}

/// One class's verdict is exactly `expected`; a "no-leak" must carry its detection limit.
pub fn assert_class(traced: &Traced, name: &str, expected: &str, context: &str) {
    let class = class(traced, name);
    assert_eq!(
        verdict_of(traced, name),
        expected,
        "{context}: {name}: {class}\nanswer: {}",
        traced.report["answer"]
    );
    if expected == "no-leak" {
        assert!(
            class["detection_limit_per_iteration"].as_f64().is_some(),
            "{context}: {name} says no-leak without a detection limit: {class}"
        );
    }
}

/// None of the classes `names` is judged a leak.
pub fn assert_no_leak_in(traced: &Traced, names: &[&str], context: &str) {
    for name in names {
        assert_ne!(
            verdict_of(traced, name),
            "leak",
            "{context}: {name} must not leak: {}\nanswer: {}",
            class(traced, name),
            traced.report["answer"]
        );
    }
}

/// The sites of a class.
pub fn sites<'a>(traced: &'a Traced, name: &str) -> &'a [Value] {
    class(traced, name)["sites"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{name} has no sites array: {}", class(traced, name)))
}

/// The one site of class `name` whose text `matches` (`what` describes the match): digits and
/// random suffixes must have been grouped into a single pattern, judged a leak of about
/// `rate` per iteration.
pub fn assert_one_leaking_site<'a>(
    traced: &'a Traced,
    name: &str,
    what: &str,
    matches: impl Fn(&str) -> bool,
    rate: f64,
) -> &'a Value {
    let all = sites(traced, name);
    let matching: Vec<&Value> = all
        .iter()
        .filter(|site| site["site"].as_str().is_some_and(&matches))
        // Entries kept across iterations but flat (extraction's own output) are sites too.
        .filter(|site| site["verdict"] == "leak")
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{name}: exactly one grouped site {what}: {all:?}"
    );
    let site = matching[0];
    assert_eq!(site["verdict"], "leak", "{name}: {site}");
    assert_rate(
        &site["leaked_per_iteration"],
        rate,
        &format!("{name} site {site}"),
    );
    site
}

/// The top site of class `name` starts at `function`: its first JSON frame, its `site` text,
/// and, in the text report under "retained across iterations", the class's first site: a
/// leaking class lays its stack out under the site line, one frame per line (the first
/// being `function` with its file:line), another class names it on the line itself.
pub fn assert_top_site_names(traced: &Traced, name: &str, function: &str) {
    let top = &sites(traced, name)[0];
    assert_eq!(
        top["frames"][0]["function"],
        function,
        "the top {name} site's first frame: {top}\nall: {:?}",
        sites(traced, name)
    );
    let site = top["site"].as_str().unwrap_or_default();
    assert!(
        site.contains(function),
        "the top {name} site names {function}: {top}"
    );
    let text = traced.stdout();
    let mut lines = text
        .lines()
        .skip_while(|line| !line.starts_with("retained across iterations"))
        .skip_while(|line| !line.trim_start().starts_with(name));
    let line = lines
        .next()
        .unwrap_or_else(|| panic!("no {name} line among the top sites:\n{text}"));
    if line.contains(function) {
        return;
    }
    let frame = lines
        .take_while(|line| line.starts_with("            "))
        .map(str::trim)
        .find(|line| !line.starts_with('['))
        .unwrap_or_else(|| panic!("no stack under the top {name} site:\n{text}"));
    assert!(
        frame.starts_with(function) && frame.contains(':'),
        "the text's top {name} site's first frame is {function} at file:line: {frame}\n{text}"
    );
}

/// What a site's text names before its stack (" ← open_config ← main ..."): an fd's path
/// (with the dup that kept it), a mapping's backing. Empty when `site` is no string.
pub fn resource(site: &Value) -> &str {
    let text = site.as_str().unwrap_or_default();
    text.split(" ← ").next().unwrap_or_default()
}

/// The path a file or watch site names, without its kind (`file `, `directory `,
/// `inotify watch on `, ...): everything from its first `/`.
pub fn site_path(site: &str) -> &str {
    site.find('/').map_or(site, |i| &site[i..])
}

/// Whether a site's name pattern starts with `prefix`, a real path. Parts of a name are
/// grouped in the pattern (a test's temporary directory, mkstemp's suffix): a random-looking
/// part as a run of `X` of the same length (each stands for any one character but `/`), a
/// number as one `N` (standing for its digits, however many).
pub fn pattern_starts_with(site: &str, prefix: &str) -> bool {
    let pattern: Vec<char> = site_path(site).chars().collect();
    let real: Vec<char> = prefix.chars().collect();
    let (mut i, mut j) = (0, 0);
    while j < real.len() {
        match pattern.get(i) {
            Some('X') if real[j] != '/' => j += 1,
            Some('N') if real[j].is_ascii_digit() => {
                while j < real.len() && real[j].is_ascii_digit() {
                    j += 1;
                }
            }
            Some(&c) if c == real[j] => j += 1,
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod pattern_tests {
    use super::*;

    #[test]
    fn grouped_random_parts_match_the_real_path() {
        let site = "directory /tmp/.XXXXXXXXX/d-N";
        assert!(pattern_starts_with(site, "/tmp/.tmpz5o5bz/d-"));
        assert!(!pattern_starts_with(site, "/tmp/.tmpz5o5bz/e-"));
        assert!(!pattern_starts_with(site, "/var/.tmpz5o5bz/d-"));
        assert!(pattern_starts_with(
            "inotify watch on /tmp/ab/w-N",
            "/tmp/ab/w-"
        ));
    }
}
