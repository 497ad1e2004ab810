//! What each class's chart shows, as data: the live amount at every judged boundary, and
//! what its verdict was made of (the warm-up left out, the judged window, the line fitted
//! over it), taken from the analysis as it judged, never fitted again. `--html` and `--svg`
//! draw these.

use crate::analysis::Analysis;
use crate::analysis::series::Judged;
use crate::analysis::trend::{Judgement, Unit, Verdict};
use crate::iterations::Iterations;

use super::model::Classes;

/// One class's chart: a panel per series judged (count and bytes where it has both).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClassChart {
    /// "fd", "mmap", "brk", "rss", "files", "watches", "heap".
    pub(crate) class: &'static str,
    /// The class's verdict, as the report gives it.
    pub(crate) verdict: Verdict,
    pub(crate) panels: Vec<Panel>,
}

/// One judged series.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Panel {
    /// What is counted: "live fds", "mapped bytes".
    pub(crate) what: &'static str,
    pub(crate) unit: Unit,
    /// This series' own verdict and rate per iteration.
    pub(crate) verdict: Verdict,
    pub(crate) rate: f64,
    /// (iteration, live amount) at each judged boundary.
    pub(crate) points: Vec<(f64, f64)>,
    /// Iterations of warm-up left out of the judgement: from the first point to this one.
    pub(crate) warm_up_end: Option<f64>,
    /// The judged window, first and last iteration.
    pub(crate) window: Option<(f64, f64)>,
    /// The fitted line across the window, as its two ends (iteration, amount).
    pub(crate) fit: Option<[(f64, f64); 2]>,
}

impl Panel {
    /// The panel of `series` judged as `judgement`, its points placed at the iterations
    /// `iterations`' boundaries stand for.
    pub(crate) fn new(
        what: &'static str,
        unit: Unit,
        series: &Judged,
        judgement: &Judgement,
        iterations: &Iterations,
    ) -> Panel {
        let x = |point: usize| iterations.iteration_of(series.first + point) as f64;
        let points = (series.values.iter().enumerate())
            .map(|(i, &v)| (x(i), v))
            .collect();
        let basis = judgement
            .basis
            .as_ref()
            .filter(|b| !b.window.is_empty() && b.window.end <= series.values.len());
        Panel {
            what,
            unit,
            verdict: judgement.verdict,
            rate: judgement.rate,
            points,
            warm_up_end: basis.map(|b| x(b.warm_up.min(b.window.start))),
            window: basis.map(|b| (x(b.window.start), x(b.window.end - 1))),
            fit: basis.map(|b| {
                let last = (b.window.end - 1 - b.window.start) as f64;
                [
                    (x(b.window.start), b.line.at(0.0)),
                    (x(b.window.end - 1), b.line.at(last)),
                ]
            }),
        }
    }
}

/// Every class's chart, in the report's order (the allocator's last, with `--heap`).
pub(crate) fn class_charts(
    analysis: &Analysis,
    classes: &Classes,
    iterations: &Iterations,
) -> Vec<ClassChart> {
    let panel = |what, unit, series: &Judged, judgement: &Judgement| {
        Panel::new(what, unit, series, judgement, iterations)
    };
    let resource = |class, what, bytes_what, resource: &crate::analysis::ResourceClass| {
        let mut panels = vec![panel(
            what,
            Unit::Count,
            &resource.count_series,
            &resource.count,
        )];
        if let (Some(series), Some(bytes)) = (&resource.bytes_series, &resource.bytes) {
            panels.push(panel(bytes_what, Unit::Bytes, series, bytes));
        }
        (class, panels)
    };
    let mut charts = vec![
        (
            resource("fd", "live fds", "", &analysis.fd),
            classes.fd.verdict,
        ),
        (
            resource("mmap", "live mappings", "mapped bytes", &analysis.mmap),
            classes.mmap.verdict,
        ),
        (
            (
                "brk",
                vec![panel(
                    "brk heap bytes",
                    Unit::Bytes,
                    &analysis.brk.series,
                    &analysis.brk.bytes,
                )],
            ),
            classes.brk.verdict,
        ),
        (
            (
                "rss",
                vec![panel(
                    "resident bytes",
                    Unit::Bytes,
                    &analysis.rss.series,
                    &analysis.rss.bytes,
                )],
            ),
            classes.rss.verdict,
        ),
        (
            resource("files", "files on disk", "bytes on disk", &analysis.files),
            classes.files.verdict,
        ),
        (
            resource("watches", "live watches", "", &analysis.watches),
            classes.watches.verdict,
        ),
    ];
    if let (Some(heap), Some(report)) = (&analysis.heap, &classes.heap) {
        let panels = vec![
            panel(
                "live allocations",
                Unit::Count,
                &heap.count_series,
                &heap.count,
            ),
            panel(
                "allocated bytes",
                Unit::Bytes,
                &heap.bytes_series,
                &heap.bytes,
            ),
        ];
        charts.push((("heap", panels), report.verdict));
    }
    charts
        .into_iter()
        .map(|((class, panels), verdict)| ClassChart {
            class,
            verdict,
            panels,
        })
        .collect()
}

#[cfg(test)]
#[path = "class_charts_tests.rs"]
mod tests;
