//! Running commands: builds quietly (one announced step, the compiler's output only when it
//! fails), tests with their output visible, and failures that say what to do.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::build_log;

pub(crate) fn step(what: &str) {
    eprintln!("==> {what}");
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo_command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(workspace_root());
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

/// A cargo build as one quiet step (see [`quiet`]).
pub(crate) fn cargo_build(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    quiet(&mut cargo_command(args, envs))
}

/// Runs a build command with its output held back. A build that works shows at most one line:
/// how many compiler warnings it held back, and the command that shows them. One that fails
/// shows what it printed (less aya-build's forwarded lines, see [`build_log`]), then names
/// the command.
pub(crate) fn quiet(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        use std::io::Write as _;
        let mut err = std::io::stderr().lock();
        err.write_all(&output.stdout)?;
        err.write_all(build_log::without_forwarded(&stderr).as_bytes())?;
        bail!("{shown} failed ({})", output.status);
    }
    let warnings = build_log::warnings(&stderr);
    if warnings > 0 {
        // Named as one would type it: `cargo ...`, not the toolchain's full path.
        let program = Path::new(command.get_program())
            .file_name()
            .unwrap_or(command.get_program());
        let typed: Vec<_> = std::iter::once(program)
            .chain(command.get_args())
            .map(|arg| arg.to_string_lossy())
            .collect();
        eprintln!(
            "    {warnings} compiler warning(s) held back; `{}` shows them",
            typed.join(" ")
        );
    }
    Ok(())
}

/// Passed and failed test counts, summed over cargo's `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TestTally {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
}

impl TestTally {
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                _ => {}
            }
        }
    }
}

/// Builds the test binaries of `cargo test <args>` as one quiet step, without running them.
pub(crate) fn cargo_test_build(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let mut build = args.to_vec();
    build.push("--no-run");
    cargo_build(&build, envs)
}

/// `cargo test <args> -- <harness_args>`, for binaries [`cargo_test_build`] has built: with
/// `--quiet`, cargo prints no build lines (nor aya-build's replayed ones), while libtest still
/// prints one line per test (`--format pretty`) and its `test result:` lines, which are
/// tallied.
pub(crate) fn cargo_test(
    args: &[&str],
    harness_args: &[&str],
    envs: &[(&str, &str)],
    tally: &mut TestTally,
) -> Result<()> {
    use std::io::{BufRead as _, Write as _};
    let mut command = cargo_command(args, envs);
    command
        .arg("--quiet")
        .arg("--")
        .args(["--format", "pretty"])
        .args(harness_args)
        .stdout(std::process::Stdio::piped());
    let shown = format!("{command:?}");
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let stdout = child.stdout.take().expect("piped");
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        tally.add_line(&line);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// Runs a command inheriting stdio; a failure names the command.
pub(crate) fn status(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout, or None if it cannot run or fails.
pub(crate) fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// leakscope needs root; through sudo when we are not root already.
pub(crate) fn run_as_root(binary: &Path, args: &[String]) -> Result<()> {
    let mut command = if is_root() {
        Command::new(binary)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(binary);
        sudo
    };
    command.args(args);
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    if !status.success() {
        bail!("leakscope exited with {status}");
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_cargo_result_lines() {
        let mut tally = TestTally::default();
        tally.add_line("test result: ok. 141 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.17s");
        tally.add_line(
            "test result: FAILED. 6 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        tally.add_line("running 7 tests");
        assert_eq!(
            tally,
            TestTally {
                passed: 147,
                failed: 2
            }
        );
    }
}
