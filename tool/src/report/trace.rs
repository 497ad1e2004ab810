//! `--trace`: the run as a timeline in the Trace Event format (JSON), which Perfetto UI
//! (ui.perfetto.dev) and chrome://tracing open. Iterations are slices on the target's
//! track (one per judged boundary: every `stride`-th iteration when there are many), each
//! class's live amount is a counter track, and each retained resource is an instant at its
//! acquisition with its site. Processes are named by their command.

use serde_json::{Value, json};

use super::Report;
use super::export::Exporter;

pub(crate) struct TraceExporter;

impl Exporter for TraceExporter {
    fn render(&self, report: &Report) -> anyhow::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec(&trace(report))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// Trace Event timestamps are microseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

pub(crate) fn trace(report: &Report) -> Value {
    let timeline = &report.timeline;
    let pid = report.target.pid;
    let mut events = vec![
        json!({"ph": "M", "name": "process_name", "pid": pid,
               "args": {"name": report.target.command.join(" ")}}),
        json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": pid,
               "args": {"name": "iterations"}}),
    ];
    for outlived in &report.outlived_target {
        events.push(
            json!({"ph": "M", "name": "process_name", "pid": outlived.pid,
                           "args": {"name": outlived.command.join(" ")}}),
        );
    }
    for pair in timeline.boundaries.windows(2) {
        let ((start, first), (end, next)) = (pair[0], pair[1]);
        let name = if next <= first + 1 {
            format!("iteration {first}")
        } else {
            format!("iterations {first}-{}", next - 1)
        };
        events.push(
            json!({"ph": "X", "name": name, "cat": "iteration", "pid": pid,
                           "tid": pid, "ts": us(start), "dur": us(end - start)}),
        );
    }
    for counter in &timeline.counters {
        for (&(time, _), value) in timeline.boundaries.iter().zip(&counter.values) {
            if let Some(value) = value {
                events.push(json!({"ph": "C", "name": counter.name, "pid": pid,
                                   "ts": us(time), "args": {counter.key: value}}));
            }
        }
    }
    for retained in &timeline.retained {
        events.push(
            json!({"ph": "i", "s": "p", "name": format!("retained {}", retained.class),
                           "cat": "retained", "pid": retained.tgid, "tid": retained.tgid,
                           "ts": us(retained.time_ns), "args": {"site": retained.site}}),
        );
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "tool": "leakscope",
            "retained_resources": timeline.retained_total,
            "retained_shown": timeline.retained.len(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::{Counter, Retained, Timeline};

    #[test]
    fn slices_counters_and_instants_follow_the_timeline() {
        let mut report = crate::report::synthetic::clean_report("./app 3");
        report.timeline = Timeline {
            boundaries: vec![(1_000, 0), (3_000, 1), (6_000, 2)],
            counters: vec![Counter {
                name: "fds",
                key: "live",
                values: vec![Some(3.0), Some(4.0), None],
            }],
            retained: vec![Retained {
                time_ns: 2_000,
                tgid: 42,
                class: "fd",
                site: "/etc/hostname".into(),
            }],
            retained_total: 1,
        };
        let trace = trace(&report);
        let events = trace["traceEvents"].as_array().unwrap();
        let of = |ph: &str| events.iter().filter(|e| e["ph"] == ph).collect::<Vec<_>>();
        let slices = of("X");
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0]["name"], "iteration 0");
        assert_eq!(
            (slices[1]["ts"].as_f64(), slices[1]["dur"].as_f64()),
            (Some(3.0), Some(3.0))
        );
        let counters = of("C");
        assert_eq!(
            counters.len(),
            2,
            "a boundary without a value has no sample"
        );
        assert_eq!(counters[1]["name"], "fds");
        assert_eq!(counters[1]["args"]["live"], 4.0);
        let instants = of("i");
        assert_eq!(instants[0]["args"]["site"], "/etc/hostname");
        assert_eq!(of("M")[0]["args"]["name"], "./app 3");
    }

    #[test]
    fn many_iterations_per_slice_are_named_as_a_range() {
        let mut report = crate::report::synthetic::clean_report("./app");
        report.timeline.boundaries = vec![(0, 0), (10, 32), (20, 64)];
        let trace = trace(&report);
        let names: Vec<&str> = trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["iterations 0-31", "iterations 32-63"]);
    }
}
