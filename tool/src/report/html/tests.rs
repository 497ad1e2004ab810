//! The page and the SVG on synthetic reports: one chart per class, and nothing from the
//! target reaches the page unescaped.

use super::*;
use crate::report::synthetic::{clean_report, leaking};

#[test]
fn the_page_has_one_chart_per_class_and_loads_nothing() {
    let report = clean_report("/bin/app --flag");
    let html = String::from_utf8(HtmlExporter.render(&report).unwrap()).unwrap();
    let charts = html.matches("<figure class=\"class-chart\"").count();
    assert_eq!(charts, report.charts.len());
    assert_eq!(charts, 6, "fd, mmap, brk, rss, files, watches");
    assert!(html.contains("default-src 'none'"));
    for fetching in [
        "<script",
        "<link",
        "src=\"http",
        "href=\"http",
        "@import",
        "url(",
    ] {
        assert!(!html.contains(fetching), "{fetching}");
    }
    // The charts are plotters' inline SVG, without their XML declarations.
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    assert!(!html.contains("<?xml"));
}

#[test]
fn strings_from_the_target_are_escaped() {
    let mut report = clean_report("/tmp/<script>alert(1)</script> \"quoted\" & more");
    report.classes.fd = leaking("/tmp/<b>odd</b>&name", None);
    let html = String::from_utf8(HtmlExporter.render(&report).unwrap()).unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<b>odd"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;b&gt;odd&lt;/b&gt;&amp;name"));
    assert!(html.contains("&quot;quoted&quot; &amp; more"));
}

#[test]
fn the_svg_holds_a_chart_per_class() {
    let report = clean_report("/bin/app");
    let svg = String::from_utf8(SvgExporter.render(&report).unwrap()).unwrap();
    assert!(svg.starts_with("<svg xmlns="), "{}", &svg[..80]);
    assert_eq!(svg.matches("class=\"class-chart\"").count(), 6);
    for class in ["fd", "mmap", "brk", "rss", "files", "watches"] {
        assert!(svg.contains(&format!("id=\"chart-{class}\"")), "{class}");
    }
}

#[test]
fn extracts_rounds_come_from_the_workers_line_into_a_table() {
    use crate::extract::worker::{RoundStats, parse_rounds_line};
    let mut report = clean_report("/bin/app");
    let line = "leakscope-rounds [{\"round\":1,\"rounds\":2,\"iterations\":10000,\
        \"stats\":{\"rss_bytes\":4718592,\"fds\":5,\"mappings\":35},\
        \"rss_delta_bytes\":-4096,\"elapsed_ns\":400000000}]";
    let rounds: Vec<RoundStats> = parse_rounds_line(line).expect("the rounds line parses");
    assert_eq!(parse_rounds_line("Round 1/2: RSS = 4.5 MiB"), None);
    report.rounds = Some(rounds);
    let html = String::from_utf8(HtmlExporter.render(&report).unwrap()).unwrap();
    let table = &html[html
        .find("<table class=\"rounds\">")
        .expect("a rounds table")..];
    let row = &table[..table.find("</table>").unwrap()];
    for cell in ["1/2", "4.5 MiB", "-4 KiB", ">5<", ">35<", "10,000", "400"] {
        assert!(row.contains(cell), "{cell}: {row}");
    }
}

#[test]
fn the_workers_rounds_line_carries_what_it_measured() {
    use crate::extract::worker::{RoundStats, WorkerSummary, parse_rounds_line, rounds_line};
    let round = RoundStats {
        round: 1,
        rounds: 1,
        iterations: 3,
        stats: Default::default(),
        rss_delta_bytes: 4096,
        elapsed_ns: 7,
    };
    let summary = WorkerSummary {
        inject_leak: crate::extract::InjectLeak::None,
        baseline: Default::default(),
        rounds: vec![round.clone()],
        total_iterations: 3,
        verified_files: 2,
    };
    assert_eq!(parse_rounds_line(&rounds_line(&summary)), Some(vec![round]));
}

#[test]
fn a_heap_run_charts_the_allocator_too() {
    let report = crate::report::synthetic::heap_leak(vec![crate::stacks::Frame::named(
        "parse<'a>(&str) -> Vec<&'a str>",
    )]);
    let heap = report.charts.last().expect("charts");
    assert_eq!(heap.class, "heap");
    let what: Vec<&str> = heap.panels.iter().map(|p| p.what).collect();
    assert_eq!(what, ["live allocations", "allocated bytes"]);
    // 30 bytes per iteration: the drawn line rises as the verdict's rate says.
    let bytes = &heap.panels[1];
    let [(x0, y0), (x1, y1)] = bytes.fit.expect("a fitted line");
    assert!(
        ((y1 - y0) / (x1 - x0) - bytes.rate).abs() < 1e-9,
        "{bytes:?}"
    );
    let html = String::from_utf8(HtmlExporter.render(&report).unwrap()).unwrap();
    assert_eq!(html.matches("<figure class=\"class-chart\"").count(), 7);
    assert!(html.contains("data-class=\"heap\""));
    assert!(html.contains("parse&lt;"), "the caller is shown");
    assert!(!html.contains("parse<"), "and escaped");
}
