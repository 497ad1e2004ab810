//! The charts, drawn as SVG with plotters: a class's live amount per iteration (warm-up
//! shaded, judged window marked, fitted line drawn, verdict and rate in the title), and
//! lifetime histograms on a log scale.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::lifetimes::{DECADE_LABELS, ITERATION_DECADE_LABELS};
use crate::report::class_charts::{ClassChart, Panel};
use crate::units;

/// One panel's size in SVG pixels; the page scales it to its width.
pub(crate) const PANEL: (u32, u32) = (560, 300);
const HISTOGRAM: (u32, u32) = (420, 220);

const WARM_UP: RGBColor = RGBColor(160, 160, 160);
const WINDOW: RGBColor = RGBColor(70, 130, 220);
const SERIES: RGBColor = RGBColor(30, 30, 30);
const FIT: RGBColor = RGBColor(215, 40, 40);
const BAR: RGBColor = RGBColor(70, 130, 220);
const FONT: &str = "sans-serif";

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A class's chart: its panels side by side.
pub(crate) fn class_chart(chart: &ClassChart) -> anyhow::Result<String> {
    let mut svg = String::new();
    let panels = chart.panels.len().max(1);
    {
        let size = (PANEL.0 * panels as u32, PANEL.1);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw_panels(&root, chart)
            .map_err(|e| anyhow::anyhow!("drawing the {} chart: {e}", chart.class))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing the {} chart: {e}", chart.class))?;
    }
    Ok(svg)
}

fn draw_panels(root: &Area, chart: &ClassChart) -> DrawResult {
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, chart.panels.len().max(1)));
    for (area, panel) in areas.iter().zip(&chart.panels) {
        draw_panel(area, chart.class, panel)?;
    }
    Ok(())
}

/// "fd · live fds: leak, 1.00 per iteration".
fn title(class: &str, panel: &Panel) -> String {
    let rate = match panel.verdict {
        crate::analysis::trend::Verdict::Inconclusive if panel.fit.is_none() => String::new(),
        _ => format!(", {}", panel.unit.rate(panel.rate)),
    };
    format!("{class} · {}: {}{rate}", panel.what, panel.verdict.as_str())
}

fn draw_panel(area: &Area, class: &str, panel: &Panel) -> DrawResult {
    let x_end = panel.points.last().map_or(1.0, |p| p.0).max(1.0);
    let values = panel.points.iter().map(|p| p.1);
    let fitted = panel.fit.iter().flatten().map(|p| p.1);
    let (low, high) = values
        .chain(fitted)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let (low, high) = if low.is_finite() {
        (low, high)
    } else {
        (0.0, 1.0)
    };
    // Room above and below the series, and a visible band for a flat one.
    let pad = ((high - low) * 0.08).max(high.abs() * 0.02).max(1.0);
    let (y0, y1) = (
        (low - pad).max(if low >= 0.0 { 0.0 } else { f64::MIN }),
        high + pad,
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title(class, panel), (FONT, 15))
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, y0..y1)?;
    let unit = panel.unit;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|x| units::grouped(x.round().max(0.0) as u64))
        .y_label_formatter(&|y| unit.amount(*y))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    if panel.points.is_empty() {
        chart.draw_series(std::iter::once(Text::new(
            "not sampled",
            (x_end * 0.4, (y0 + y1) / 2.0),
            (FONT, 14),
        )))?;
        return Ok(());
    }
    if let Some(end) = panel.warm_up_end.filter(|&end| end > 0.0) {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y0), (end, y1)],
                WARM_UP.mix(0.25).filled(),
            )))?
            .label("warm-up (not judged)")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], WARM_UP.mix(0.4).filled())
            });
    }
    if let Some((start, end)) = panel.window {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(start, y0), (end, y1)],
                WINDOW.mix(0.10).filled(),
            )))?
            .label("judged window")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], WINDOW.mix(0.3).filled())
            });
        for edge in [start, end] {
            chart.draw_series(LineSeries::new(
                [(edge, y0), (edge, y1)],
                WINDOW.mix(0.6).stroke_width(1),
            ))?;
        }
    }
    // The fitted line under the series: an exact leak's points stay visible on it.
    if let Some(ends) = panel.fit {
        chart
            .draw_series(LineSeries::new(ends, FIT.mix(0.8).stroke_width(3)))?
            .label("fitted slope")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], FIT.stroke_width(3)));
    }
    chart
        .draw_series(LineSeries::new(
            panel.points.iter().copied(),
            SERIES.stroke_width(1),
        ))?
        .label(panel.what)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], SERIES.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 11))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()?;
    Ok(())
}

/// Every class's chart in one SVG, one row per class (`--svg`). Each is its own nested
/// `<svg>` in a group named after the class (`<g id="chart-fd" class="class-chart">`).
pub(crate) fn all_charts(charts: &[ClassChart]) -> anyhow::Result<String> {
    let width = charts
        .iter()
        .map(|c| PANEL.0 * c.panels.len().max(1) as u32)
        .max()
        .unwrap_or(PANEL.0);
    let height = PANEL.1 * charts.len() as u32;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n"
    );
    for (row, chart) in charts.iter().enumerate() {
        let inner = class_chart(chart)?;
        let y = row as u32 * PANEL.1;
        svg.push_str(&format!(
            "<g id=\"chart-{}\" class=\"class-chart\" transform=\"translate(0 {y})\">\n{}\n</g>\n",
            chart.class,
            strip_declaration(&inner)
        ));
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// An SVG document without its XML declaration, to nest it.
pub(crate) fn strip_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(svg, |(_, body)| body.trim_start()),
        None => svg,
    }
}

/// Lifetimes of released resources, in time and in iterations, as two log-scale
/// histograms side by side. `iterations` is `None` when not counted.
pub(crate) fn lifetime_histograms(
    name: &str,
    time: &[u64; DECADE_LABELS.len()],
    iterations: Option<&[u64; ITERATION_DECADE_LABELS.len()]>,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (HISTOGRAM.0 * 2, HISTOGRAM.1)).into_drawing_area();
        let draw = || -> DrawResult {
            root.fill(&WHITE)?;
            let (left, right) = root.split_horizontally(HISTOGRAM.0);
            histogram(&left, &format!("{name}: lifetime"), &DECADE_LABELS, time)?;
            match iterations {
                Some(counts) => histogram(
                    &right,
                    &format!("{name}: iterations crossed"),
                    &ITERATION_DECADE_LABELS,
                    counts,
                )?,
                None => {
                    right.draw(&Text::new(
                        "not counted in iterations (no marker)",
                        (20, HISTOGRAM.1 as i32 / 2),
                        (FONT, 13),
                    ))?;
                }
            }
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| anyhow::anyhow!("drawing the {name} lifetimes: {e}"))?;
    }
    Ok(svg)
}

fn histogram(area: &Area, title: &str, labels: &[&str], counts: &[u64]) -> DrawResult {
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 14))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d((0..labels.len()).into_segmented(), (0.5..top).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len())
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).copied().unwrap_or("").to_string(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| units::grouped(y.round() as u64))
        .y_desc("count (log)")
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    chart.draw_series(
        counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.5),
                        (SegmentValue::Exact(i + 1), n as f64),
                    ],
                    BAR.filled(),
                );
                bar.set_margin(0, 0, 3, 3);
                bar
            }),
    )?;
    Ok(())
}
