//! The `--html` page: the answer and the run's facts, the verdict table, a chart per class,
//! the top sites with their stacks, the lifetime histograms and, for `extract`, the rounds
//! and the projection. Every string from the target (command, paths, function names) goes
//! through [`escape`]; the page loads nothing (its Content-Security-Policy forbids it).

use std::fmt::Write as _;

use super::charts;
use super::escape;
use crate::analysis::trend::Verdict;
use crate::report::model::{Report, ResourceReport};
use crate::report::text::{by_reason, exit_text};
use crate::report::top_sites::{ShownStack, function_cell, place_cell};
use crate::units;

/// Sites shown per class.
const SITES_SHOWN: usize = 5;

const STYLE: &str = r#"
:root { --leak: #c62828; --ok: #2e7d32; --doubt: #b26a00; --line: #ddd; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
  max-width: 1180px; margin: 0 auto; padding: 16px 24px; }
h1 { font-size: 1.5em; margin: 0.2em 0; } h2 { font-size: 1.2em; margin: 1.4em 0 0.5em;
  border-bottom: 1px solid var(--line); }
.answer { font-size: 1.1em; padding: 10px 14px; border-left: 5px solid var(--ok);
  background: #f4f8f4; }
.answer.leak { border-color: var(--leak); background: #fbf1f1; }
.answer.inconclusive { border-color: var(--doubt); background: #fbf6ee; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict-leak { color: var(--leak); font-weight: 700; }
.verdict-inconclusive, .verdict-plateau { color: var(--doubt); font-weight: 600; }
.verdict-no-leak { color: var(--ok); }
figure { margin: 10px 0 18px; break-inside: avoid; }
figcaption { font-weight: 600; margin-bottom: 4px; }
figure svg { max-width: 100%; height: auto; display: block; }
ol.stack { margin: 2px 0 6px; padding-left: 1.6em; font: 12.5px/1.35 ui-monospace, monospace; }
ol.stack .place { color: #666; margin-left: 1em; }
.site { overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: 13px; }
ul.why { font-size: 0.95em; } .note { color: #555; font-size: 0.92em; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  h2 { break-after: avoid; } figure, table, tr { break-inside: avoid; }
  .answer { background: none; }
}
"#;

/// The page, complete.
pub(crate) fn page(report: &Report) -> anyhow::Result<String> {
    let mut html = String::new();
    let command = report.target.command.join(" ");
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>leakscope: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&command)
    );
    let _ = writeln!(html, "<h1>leakscope report</h1>");
    let answer_class = if report.has_leak() {
        " leak"
    } else if report.answer().contains("inconclusive") {
        " inconclusive"
    } else {
        ""
    };
    let _ = writeln!(
        html,
        "<p class=\"answer{answer_class}\">{}</p>",
        escape(&report.answer())
    );
    facts(&mut html, report);
    verdicts(&mut html, report);
    class_charts(&mut html, report)?;
    sites(&mut html, report);
    lifetimes(&mut html, report)?;
    extract(&mut html, report);
    let _ = writeln!(
        html,
        "<p class=\"note\">Written by leakscope {}.</p>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    Ok(html)
}

fn verdict_cell(verdict: Verdict) -> String {
    format!("<span class=\"verdict-{0}\">{0}</span>", verdict.as_str())
}

fn facts(html: &mut String, report: &Report) {
    let its = &report.iterations;
    let mut rows: Vec<(&str, String)> = vec![
        (
            "target",
            format!(
                "<span class=\"site\">{}</span> (pid {}, {})",
                escape(&report.target.command.join(" ")),
                report.target.pid,
                escape(&exit_text(report))
            ),
        ),
        (
            "iterations",
            format!(
                "{} from {} ({}), confidence {:.2}{}",
                units::grouped(its.count as u64),
                its.source.as_str(),
                escape(&its.detail),
                its.confidence,
                its.coverage.map_or(String::new(), |c| format!(
                    ", covering {:.0} % of acquisitions",
                    c * 100.0
                ))
            ),
        ),
    ];
    if its.stride > 1 {
        rows.push((
            "judged on",
            format!(
                "{} boundaries, one every {} iterations",
                units::grouped(its.judged_boundaries as u64),
                units::grouped(its.stride)
            ),
        ));
    }
    if let Some(why) = &its.unconvincing {
        rows.push(("iterations doubted", escape(why).into_owned()));
    }
    let lost = if report.lost_by_reason.is_empty() {
        report.lost_events.to_string()
    } else {
        format!(
            "{} ({})",
            report.lost_events,
            escape(&by_reason(&report.lost_by_reason))
        )
    };
    rows.push(("lost events", lost));
    if !report.stacks_dropped.is_empty() {
        rows.push((
            "stacks dropped",
            format!(
                "{} (their calls are counted, without frames)",
                escape(&by_reason(&report.stacks_dropped))
            ),
        ));
    }
    if let Some(ended) = &report.ended {
        rows.push(("ended", escape(&ended.describe()).into_owned()));
    }
    let _ = writeln!(html, "<h2>Run</h2>\n<dl class=\"facts\">");
    for (name, value) in rows {
        let _ = writeln!(html, "<dt>{name}</dt><dd>{value}</dd>");
    }
    let _ = writeln!(html, "</dl>");
}

/// The verdict table, the same cells as the text's, and why each class was judged so.
fn verdicts(html: &mut String, report: &Report) {
    let _ = writeln!(html, "<h2>Verdicts</h2>\n<table class=\"verdicts\">");
    for (i, row) in report.class_rows().iter().enumerate() {
        let cell = if i == 0 { "th" } else { "td" };
        let _ = write!(html, "<tr>");
        for (column, text) in row.iter().enumerate() {
            let text = if i > 0 && column == 1 {
                // The text's "LEAK" is upper case to stand out; here colour does that.
                let verdict = text.to_lowercase();
                format!("<span class=\"verdict-{0}\">{0}</span>", escape(&verdict))
            } else {
                escape(text).into_owned()
            };
            let _ = write!(html, "<{cell}>{text}</{cell}>");
        }
        let _ = writeln!(html, "</tr>");
    }
    let _ = writeln!(html, "</table>\n<ul class=\"why\">");
    for (name, why) in report.class_whys() {
        let _ = writeln!(html, "<li><b>{name}</b>: {}</li>", escape(why));
    }
    let _ = writeln!(html, "</ul>");
}

fn class_charts(html: &mut String, report: &Report) -> anyhow::Result<()> {
    let _ = writeln!(
        html,
        "<h2>Live amount per iteration</h2>\n<p class=\"note\">Each point is the amount live \
         at a judged iteration boundary. Grey: warm-up, left out. Blue: the judged window. \
         Red: the line fitted over it, whose slope is the rate in the title.</p>"
    );
    for chart in &report.charts {
        let svg = charts::class_chart(chart)?;
        // The rss class judges what the other classes do not explain; its chart is the
        // whole resident set, whose own verdict is in the chart's title.
        let note = if chart.class == "rss" {
            " <span class=\"note\">(the growth mmap and brk do not explain; the chart is the \
             whole resident set)</span>"
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<figure class=\"class-chart\" data-class=\"{0}\" id=\"chart-{0}\">\n\
             <figcaption>{0}: {1}{note}</figcaption>\n{2}\n</figure>",
            chart.class,
            verdict_cell(chart.verdict),
            charts::strip_declaration(&svg)
        );
    }
    Ok(())
}

fn sites(html: &mut String, report: &Report) {
    let c = &report.classes;
    let _ = writeln!(
        html,
        "<h2>Retained across iterations (top sites)</h2>\n<table class=\"sites\">\n\
         <tr><th>class</th><th>kept</th><th>site</th><th>per iteration</th><th>trend</th></tr>"
    );
    let mut any = false;
    for (name, class) in [
        ("fd", &c.fd),
        ("mmap", &c.mmap),
        ("files", &c.files),
        ("watches", &c.watches),
    ] {
        any |= resource_sites(html, name, class);
    }
    for site in c.brk.sites.iter().take(SITES_SHOWN) {
        any = true;
        let stack = site
            .stack
            .as_ref()
            .filter(|_| c.brk.verdict == Verdict::Leak);
        site_row(
            html,
            "brk",
            &units::bytes(site.bytes as f64),
            &site.site,
            stack,
            &units::per_iteration(units::bytes_rate(site.bytes_per_iteration)),
            c.brk.verdict,
        );
    }
    if c.brk.verdict == Verdict::Leak && !c.brk.sites.is_empty() && c.heap.is_none() {
        let note = crate::report::top_sites::BRK_SITES_NOTE;
        let _ = writeln!(
            html,
            "<tr><td colspan=\"5\" class=\"note\">{note}</td></tr>"
        );
    }
    if let Some(heap) = &c.heap {
        for site in heap.sites.iter().take(SITES_SHOWN) {
            any = true;
            let stack = site
                .stack
                .as_ref()
                .filter(|_| heap.verdict == Verdict::Leak);
            site_row(
                html,
                "heap",
                &format!(
                    "{} in {} allocations",
                    units::bytes(site.bytes as f64),
                    site.allocations
                ),
                &site.site,
                stack,
                &format!(
                    "{}, {}",
                    units::per_iteration(units::bytes_rate(site.bytes_per_iteration)),
                    units::per_iteration(units::count_rate(site.allocations_per_iteration))
                ),
                heap.verdict,
            );
        }
    }
    if !any {
        let _ = writeln!(
            html,
            "<tr><td colspan=\"5\">no resource was retained across iterations</td></tr>"
        );
    }
    let _ = writeln!(html, "</table>");
}

/// The top sites of an fd, mmap, files or watches class; whether it had any.
fn resource_sites(html: &mut String, name: &str, class: &ResourceReport) -> bool {
    for site in class.sites.iter().take(SITES_SHOWN) {
        let rate = site.rate_text();
        let kept = match site.bytes_leaked {
            Some(bytes) => format!("{} ({})", site.leaked, units::bytes(bytes as f64)),
            None => site.leaked.to_string(),
        };
        let stack = site
            .stack
            .as_ref()
            .filter(|_| class.verdict == Verdict::Leak);
        site_row(html, name, &kept, &site.site, stack, &rate, site.verdict);
    }
    !class.sites.is_empty()
}

fn site_row(
    html: &mut String,
    class: &str,
    kept: &str,
    site: &str,
    stack: Option<&ShownStack>,
    rate: &str,
    verdict: Verdict,
) {
    let shown = stack.map_or(site, |s| s.head.as_str());
    let _ = write!(
        html,
        "<tr><td>{class}</td><td class=\"num\">{}</td><td><span class=\"site\">{}</span>",
        escape(kept),
        escape(shown)
    );
    if let Some(stack) = stack {
        if !stack.folded.is_empty() {
            let _ = write!(
                html,
                "<div class=\"note\">{}</div>",
                escape(&stack.folded.to_string())
            );
        }
        let _ = write!(html, "<ol class=\"stack\">");
        for frame in stack.frames.iter() {
            let _ = write!(
                html,
                "<li>{}<span class=\"place\">{}</span></li>",
                escape(&function_cell(frame)),
                escape(&place_cell(frame))
            );
        }
        let _ = write!(html, "</ol>");
    }
    let _ = writeln!(
        html,
        "</td><td>{}</td><td>{}</td></tr>",
        escape(rate),
        verdict_cell(verdict)
    );
}

fn lifetimes(html: &mut String, report: &Report) -> anyhow::Result<()> {
    let _ = writeln!(
        html,
        "<h2>Lifetimes of released resources</h2>\n<p class=\"note\">Counts on a log scale: \
         how long each released resource lived, and how many iteration boundaries it crossed.</p>"
    );
    let c = &report.classes;
    let mut shown = 0;
    for (name, class) in [
        ("fd", &c.fd),
        ("mmap", &c.mmap),
        ("files", &c.files),
        ("watches", &c.watches),
    ] {
        let ns = &class.lifetime_ns;
        if ns.count == 0 {
            continue;
        }
        shown += 1;
        let svg = charts::lifetime_histograms(
            name,
            &class.lifetime_decades,
            Some(&class.lifetime_iteration_decades),
        )?;
        lifetime_figure(html, name, ns, &svg);
    }
    if let Some(heap) = &c.heap
        && heap.lifetime_ns.count > 0
    {
        shown += 1;
        let iterations =
            (heap.lifetime_iterations.count > 0).then_some(&heap.lifetime_iteration_decades);
        let svg = charts::lifetime_histograms("heap", &heap.lifetime_decades, iterations)?;
        lifetime_figure(html, "heap", &heap.lifetime_ns, &svg);
    }
    if shown == 0 {
        let _ = writeln!(html, "<p>none released</p>");
    }
    Ok(())
}

fn lifetime_figure(
    html: &mut String,
    name: &str,
    ns: &crate::analysis::lifetimes::Percentiles,
    svg: &str,
) {
    let _ = writeln!(
        html,
        "<figure class=\"lifetimes\" data-class=\"{name}\">\n<figcaption>{name}: n={} · p50 {} · \
         p90 {} · p99 {} · max {}</figcaption>\n{}\n</figure>",
        units::grouped(ns.count),
        units::duration_ns(ns.p50),
        units::duration_ns(ns.p90),
        units::duration_ns(ns.p99),
        units::duration_ns(ns.max),
        charts::strip_declaration(svg)
    );
}

/// `extract`'s rounds (RSS, fds, mappings after each) and its projection.
fn extract(html: &mut String, report: &Report) {
    if let Some(rounds) = &report.rounds {
        let _ = writeln!(
            html,
            "<h2>Rounds</h2>\n<p class=\"note\">As the extracting process measured itself \
             after each round (/proc/self).</p>\n<table class=\"rounds\">\n<tr><th>round</th>\
             <th>RSS</th><th>change</th><th>fds</th><th>mappings</th><th>extractions</th>\
             <th>time</th></tr>"
        );
        for round in rounds {
            let delta = round.rss_delta_bytes;
            let sign = if delta < 0 { "-" } else { "+" };
            let _ = writeln!(
                html,
                "<tr><td class=\"num\">{}/{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{sign}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                round.round,
                round.rounds,
                units::bytes(round.stats.rss_bytes as f64),
                units::bytes(delta.unsigned_abs() as f64),
                round.stats.fds,
                round.stats.mappings,
                units::grouped(round.iterations),
                units::duration_ns(round.elapsed_ns),
            );
        }
        let _ = writeln!(html, "</table>");
    }
    if let Some(projection) = &report.projection {
        let _ = writeln!(
            html,
            "<h2>Memory growth per extraction, projected</h2>\n<table class=\"projection\">"
        );
        let _ = write!(html, "<tr><th>class</th><th>per extraction</th>");
        for &n in &projection.points {
            let _ = write!(
                html,
                "<th>at {} extractions</th>",
                crate::report::projection::format_count(n)
            );
        }
        let _ = writeln!(html, "</tr>");
        for row in &projection.rows {
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"num\">{}</td>",
                escape(&row.class),
                crate::report::projection::format_bytes(row.bytes_per_extraction)
            );
            for projected in &row.projected {
                let _ = write!(
                    html,
                    "<td class=\"num\">{}</td>",
                    crate::report::projection::format_bytes(projected.bytes)
                );
            }
            let _ = writeln!(html, "</tr>");
        }
        let _ = writeln!(html, "</table>");
    }
}
