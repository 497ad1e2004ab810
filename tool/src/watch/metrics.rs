//! The live view in Prometheus text exposition format (version 0.0.4, which OpenMetrics
//! parsers read too): a `# HELP` and `# TYPE` per family, every series labelled with the
//! target's pid and command basename, so node_exporter's textfile collector can publish it.

use std::fmt::Write as _;

use crate::analysis::trend::Verdict;

use super::rows::{Class, LiveView, Row};

const VERDICTS: [Verdict; 4] = [
    Verdict::NoLeak,
    Verdict::Plateau,
    Verdict::Leak,
    Verdict::Inconclusive,
];

/// One gauge per live amount: (metric, help, class, which number of the row).
type Pick = fn(&Row) -> Option<f64>;
const LIVE: [(&str, &str, Class, Pick); 10] = [
    (
        "leakscope_live_fds",
        "File descriptors the traced processes hold now.",
        Class::Fd,
        |r| r.live.map(|n| n as f64),
    ),
    (
        "leakscope_live_mappings",
        "Memory mappings the traced processes hold now.",
        Class::Mmap,
        |r| r.live.map(|n| n as f64),
    ),
    (
        "leakscope_mapped_bytes",
        "Bytes mapped by the traced processes, at the last iteration boundary.",
        Class::Mmap,
        |r| r.bytes.map(|n| n as f64),
    ),
    (
        "leakscope_brk_bytes",
        "Growth of the brk heap since tracing began, at the last iteration boundary.",
        Class::Brk,
        |r| r.bytes.map(|n| n as f64),
    ),
    (
        "leakscope_rss_bytes",
        "Resident set size of the traced processes at the last sample.",
        Class::Rss,
        |r| r.bytes.map(|n| n as f64),
    ),
    (
        "leakscope_live_files",
        "Entries on disk the traced processes created and have not removed.",
        Class::Files,
        |r| r.live.map(|n| n as f64),
    ),
    (
        "leakscope_file_bytes",
        "Size on disk of those entries, at the last iteration boundary.",
        Class::Files,
        |r| r.bytes.map(|n| n as f64),
    ),
    (
        "leakscope_live_watches",
        "inotify watches and fanotify marks held now.",
        Class::Watches,
        |r| r.live.map(|n| n as f64),
    ),
    (
        "leakscope_heap_bytes",
        "--heap: bytes allocated and not freed, at the last iteration boundary.",
        Class::Heap,
        |r| r.bytes.map(|n| n as f64),
    ),
    (
        "leakscope_heap_allocations",
        "--heap: allocations not freed, at the last iteration boundary.",
        Class::Heap,
        |r| r.live.map(|n| n as f64),
    ),
];

pub(crate) fn render(view: &LiveView) -> String {
    let target = format!(
        "pid=\"{}\",command=\"{}\"",
        view.subject.pid,
        escape(&view.subject.command)
    );
    let mut out = String::new();
    for (name, help, class, pick) in LIVE {
        if let Some(value) = view.row(class).and_then(pick) {
            family(&mut out, name, "gauge", help);
            sample(&mut out, name, &target, value);
        }
    }
    family(
        &mut out,
        "leakscope_iterations_total",
        "counter",
        "Iterations of the traced loop so far (the source the report uses).",
    );
    sample(
        &mut out,
        "leakscope_iterations_total",
        &target,
        view.iterations as f64,
    );
    family(
        &mut out,
        "leakscope_lost_events_total",
        "counter",
        "Events the kernel could not deliver; any makes the verdicts inconclusive.",
    );
    sample(
        &mut out,
        "leakscope_lost_events_total",
        &target,
        view.lost_events as f64,
    );
    if let Some(bytes) = view.own_rss_bytes {
        family(
            &mut out,
            "leakscope_self_resident_bytes",
            "gauge",
            "leakscope's own resident set size (VmRSS), ring buffer included.",
        );
        sample(
            &mut out,
            "leakscope_self_resident_bytes",
            &target,
            bytes as f64,
        );
    }
    rates(
        &mut out,
        view,
        &target,
        "leakscope_leak_rate_per_iteration",
        "Resources leaked per iteration so far (the slope of the live count).",
        |row| row.rate,
    );
    rates(
        &mut out,
        view,
        &target,
        "leakscope_leak_rate_bytes_per_iteration",
        "Bytes leaked per iteration so far.",
        |row| row.bytes_rate,
    );
    family(
        &mut out,
        "leakscope_verdict",
        "gauge",
        "The verdict so far, one series per class: 1 for the current verdict, 0 for the others.",
    );
    for row in &view.rows {
        for verdict in VERDICTS {
            let labels = format!(
                "{target},class=\"{}\",verdict=\"{}\"",
                row.class.name(),
                verdict.as_str()
            );
            sample(
                &mut out,
                "leakscope_verdict",
                &labels,
                f64::from(u8::from(row.verdict == verdict)),
            );
        }
    }
    family(
        &mut out,
        "leakscope_final",
        "gauge",
        "1 once tracing has ended and these are the final report's numbers.",
    );
    sample(
        &mut out,
        "leakscope_final",
        &target,
        f64::from(u8::from(view.is_final)),
    );
    out
}

fn rates(out: &mut String, view: &LiveView, target: &str, name: &str, help: &str, pick: Pick) {
    family(out, name, "gauge", help);
    for row in &view.rows {
        if let Some(rate) = pick(row) {
            sample(
                out,
                name,
                &format!("{target},class=\"{}\"", row.class.name()),
                rate,
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "{name}{{{labels}}} {}", number(value));
}

/// The exposition format's numbers: Go's float syntax, with `NaN` and `+Inf` spelled out.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{value}")
    }
}

/// A label value escapes backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
