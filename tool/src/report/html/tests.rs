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
