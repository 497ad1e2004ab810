//! Reading what a cargo build printed, for builds run as one quiet step.
//!
//! Two kinds of lines matter. Cargo closes each crate that had compiler warnings with a
//! summary (`` warning: `leakscope` (bin "leakscope") generated 2 warnings ``). And
//! tool/build.rs builds the eBPF object with aya-build, which forwards every line of that inner
//! nightly build as a `cargo:warning`; cargo prints those as `warning: leakscope@0.1.0: TEXT`
//! and replays them on every build, even when nothing is rebuilt. Most are progress
//! (`Compiling core ...`); the eBPF compiler's own diagnostics are among them.

/// How many compiler warnings a build printed: cargo's per-crate summaries, plus the warning
/// diagnostics forwarded from the inner eBPF build (whose JSON messages carry no summary).
pub(crate) fn warnings(stderr: &str) -> u64 {
    stderr
        .lines()
        .map(|line| match forwarded(line) {
            Some(text) => u64::from(is_warning_header(text)),
            None => summary_count(line).unwrap_or(0),
        })
        .sum()
}

/// The build's output without the forwarded build-script lines: when the eBPF build itself
/// fails, cargo shows them again in the failed script's output; otherwise they are progress.
pub(crate) fn without_forwarded(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|line| forwarded(line).is_none())
        .map(|line| format!("{line}\n"))
        .collect()
}

/// `TEXT` of `warning: PACKAGE@VERSION: TEXT`, the form cargo gives a build script's
/// `cargo:warning`.
fn forwarded(line: &str) -> Option<&str> {
    let (origin, text) = line.strip_prefix("warning: ")?.split_once(": ")?;
    let (package, version) = origin.split_once('@')?;
    let plain = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    (plain(package) && version.starts_with(|c: char| c.is_ascii_digit())).then_some(text)
}

/// The first line of a rendered warning (`warning: unused variable`, `warning[E0170]: ...`),
/// not rustc's closing `N warnings emitted`.
fn is_warning_header(text: &str) -> bool {
    (text.starts_with("warning:") || text.starts_with("warning[")) && !text.ends_with(" emitted")
}

/// N of cargo's `` warning: `CRATE` (TARGET) generated N warning(s) ... ``.
fn summary_count(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("warning: `")?;
    let (_, after) = rest.split_once(" generated ")?;
    let (count, label) = after.split_once(' ')?;
    label.starts_with("warning").then(|| count.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: &str = "\
warning: leakscope@0.1.0:    Compiling leakscope-ebpf v0.1.0 (/src/ebpf)
warning: leakscope@0.1.0: warning: unused variable: `x`
warning: leakscope@0.1.0:    --> ebpf/src/main.rs:533:28
warning: leakscope@0.1.0: warning: 1 warning emitted
   Compiling leakscope v0.1.0 (/src/tool)
warning: unused import: `std::fs`
 --> tool/src/main.rs:3:5
warning: `leakscope` (bin \"leakscope\") generated 2 warnings (run `cargo fix`)
    Finished `release` profile [optimized] target(s) in 3.10s
";

    #[test]
    fn counts_cargo_summaries_and_forwarded_ebpf_warnings() {
        assert_eq!(warnings(BUILD), 3);
        assert_eq!(warnings("    Finished `release` profile\n"), 0);
    }

    #[test]
    fn drops_only_forwarded_lines() {
        assert_eq!(
            without_forwarded(BUILD),
            "   Compiling leakscope v0.1.0 (/src/tool)\n\
             warning: unused import: `std::fs`\n \
             --> tool/src/main.rs:3:5\n\
             warning: `leakscope` (bin \"leakscope\") generated 2 warnings (run `cargo fix`)\n    \
             Finished `release` profile [optimized] target(s) in 3.10s\n"
        );
    }

    #[test]
    fn a_rustc_warning_is_not_a_forwarded_line() {
        assert_eq!(forwarded("warning: unused variable: `x`"), None);
        assert_eq!(forwarded("warning: a@b: c"), None);
        assert_eq!(
            forwarded("warning: leakscope@0.1.0: error[E0308]: mismatched types"),
            Some("error[E0308]: mismatched types")
        );
    }
}
