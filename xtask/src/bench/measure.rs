//! One run of a workload, and what the bench reads from it: the loop's own time (every
//! workload prints `loop_ns=N` on stderr, so process start-up, probe loading and a tracer's
//! own set-up are never counted) and, for a leakscope run, its JSON report's figures.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Runs `command` to its end and returns the `loop_ns=` its workload printed on stderr.
/// Its stdout (a report, a tracer's output) is thrown away.
pub(crate) fn loop_ns(command: &mut Command) -> Result<u64> {
    let stderr = stderr_of(command)?;
    parse_loop_ns(&stderr).with_context(|| {
        format!(
            "{command:?} printed no loop_ns= line: {}",
            last_lines(&stderr, 3)
        )
    })
}

/// Runs `command` to its end with its stdout thrown away; returns its stderr, or its last
/// lines as the error when it failed.
pub(crate) fn stderr_of(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!("{}: {}", output.status, last_lines(&stderr, 3));
    }
    Ok(stderr)
}

/// Runs `command` with its output held back; on failure, its last lines are the error.
pub(crate) fn run_quietly(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        bail!("{}: {}", output.status, last_lines(&text, 2));
    }
    Ok(())
}

/// The last `loop_ns=N` line (a tracer may print its own lines around it).
pub(crate) fn parse_loop_ns(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .filter_map(|line| line.trim().strip_prefix("loop_ns="))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
}

/// The end of a failed command's message, on one line, for a table row.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let shown = lines[lines.len().saturating_sub(n)..].join(" / ");
    if shown.is_empty() {
        "(no message)".to_owned()
    } else {
        shown
    }
}

/// What one traced run's report says about leakscope itself.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct SelfFigures {
    pub(crate) lost_events: u64,
    pub(crate) peak_rss_bytes: Option<u64>,
    pub(crate) startup_ns: Option<u64>,
    pub(crate) report_ns: Option<u64>,
}

/// Reads `lost_events` and the `self` block from leakscope's JSON report.
pub(crate) fn self_figures(json: &Path) -> Result<SelfFigures> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("leakscope wrote no report at {}", json.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is no JSON", json.display()))?;
    Ok(figures_of(&report))
}

fn figures_of(report: &serde_json::Value) -> SelfFigures {
    let own = &report["self"];
    SelfFigures {
        lost_events: report["lost_events"].as_u64().unwrap_or(0),
        peak_rss_bytes: own["peak_rss_bytes"].as_u64(),
        startup_ns: own["startup_ns"].as_u64(),
        report_ns: own["report_ns"].as_u64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_loop_ns_line_counts() {
        assert_eq!(parse_loop_ns("loop_ns=12\n"), Some(12));
        assert_eq!(
            parse_loop_ns("Attaching 5 probes...\nloop_ns=7\nnoise\nloop_ns=9\n"),
            Some(9)
        );
        assert_eq!(parse_loop_ns("loop_ns=\nloop_ns=x\n"), None);
        assert_eq!(parse_loop_ns(""), None);
    }

    #[test]
    fn a_failure_shows_its_last_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b / c");
        assert_eq!(last_lines("\n", 2), "(no message)");
    }

    #[test]
    fn the_reports_self_block_is_read() {
        let report = serde_json::json!({
            "lost_events": 3,
            "self": {"peak_rss_bytes": 1024, "startup_ns": 5, "report_ns": null}
        });
        assert_eq!(
            figures_of(&report),
            SelfFigures {
                lost_events: 3,
                peak_rss_bytes: Some(1024),
                startup_ns: Some(5),
                report_ns: None
            }
        );
        // A report from before the `self` block: no figures, no failure.
        assert_eq!(
            figures_of(&serde_json::json!({"lost_events": 0})),
            SelfFigures::default()
        );
    }
}
