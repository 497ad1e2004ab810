//! `cargo xtask bench`: the cost of tracing, measured side by side in one run.
//!
//! The workload is the open+close loop fixture; it times its own loop (so probe loading
//! and process start-up are not counted) and prints `loop_ns=N` on stderr. strace is run
//! on a twentieth of the iterations: at its ~90x it would otherwise take minutes.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::shell::{self, step};

pub(crate) fn run(leakscope: &Path, iterations: u64) -> Result<()> {
    crate::bootstrap::ensure_fixture_tools()?;
    let workdir = std::env::temp_dir().join("leakscope-bench");
    std::fs::create_dir_all(&workdir)?;
    let fixture = workdir.join("open_close");
    let source = shell::workspace_root().join("tests/fixtures/open_close.c");
    step("compiling the open+close loop fixture");
    shell::status(
        Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&fixture)
            .arg(&source),
    )?;
    let target_file = workdir.join("bench.txt");
    std::fs::write(&target_file, b"x")?;
    let loop_args = |n: u64| vec![n.to_string(), target_file.to_string_lossy().into_owned()];

    step(&format!("untraced: {iterations} open+close pairs"));
    let untraced = loop_time(Command::new(&fixture).args(loop_args(iterations)))?;
    step(&format!("traced by leakscope: {iterations} pairs"));
    let json = workdir.join("report.json");
    let traced = loop_time(
        Command::new(leakscope)
            .args(["run", "--json"])
            .arg(&json)
            .arg("--")
            .arg(&fixture)
            .args(loop_args(iterations)),
    )?;
    // Everything this process has waited for so far is the fixture and leakscope (which
    // waited for its own fixture), so the children's peak RSS is leakscope's.
    let leakscope_peak_kib = children_peak_rss_kib();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json)
            .with_context(|| format!("leakscope wrote no report at {}", json.display()))?,
    )?;
    let strace_n = (iterations / 20).max(1000);
    step(&format!("traced by strace -f: {strace_n} pairs"));
    let straced = loop_time(
        Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null"])
            .arg(&fixture)
            .args(loop_args(strace_n)),
    )?;

    let per_pair = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n as f64;
    let base = per_pair(untraced, iterations);
    println!();
    println!(
        "{:<22} {:>12} {:>14} {:>10}",
        "setup", "pairs", "µs per pair", "ratio"
    );
    for (name, time, n) in [
        ("untraced", untraced, iterations),
        ("leakscope", traced, iterations),
        ("strace -f", straced, strace_n),
    ] {
        let us = per_pair(time, n);
        println!("{name:<22} {n:>12} {us:>14.3} {:>9.2}x", us / base);
    }
    println!(
        "leakscope lost events: {}; counted openat {}, close {}; peak RSS {:.1} MiB",
        report["lost_events"],
        report["counts"]["openat"],
        report["counts"]["close"],
        leakscope_peak_kib as f64 / 1024.0
    );
    Ok(())
}

/// Runs a command whose stderr includes the fixture's `loop_ns=N` line.
fn loop_time(command: &mut Command) -> Result<Duration> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{command:?} failed: {}\n{stderr}", output.status);
    }
    let nanos = stderr
        .lines()
        .find_map(|line| line.strip_prefix("loop_ns="))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("{command:?} printed no loop_ns= line:\n{stderr}"))?;
    Ok(Duration::from_nanos(nanos))
}

/// The largest resident set of any child waited for so far, in KiB.
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    }
}
