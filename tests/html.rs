//! `--html` and `--svg` in a real browser: the report of a leaking run and of clean runs
//! opens in headless chromium with no console error and no request besides the page
//! itself, holds one chart per class, and looks like something (a screenshot with many
//! colours); the SVG parses and holds one chart per class.

use std::path::{Path, PathBuf};

use leakscope_tests::{Traced, browser, fixture, leakscope_json};

/// Every class has its chart; `--heap` would add "heap".
const CLASSES: [&str; 6] = ["fd", "mmap", "brk", "rss", "files", "watches"];
/// A laptop's width.
const VIEW: (u32, u32) = (1280, 1600);

/// The charts in the page, by class, each with the SVGs inside it.
const CHARTS: &str = "JSON.stringify([...document.querySelectorAll('figure.class-chart')]\
     .map(f => [f.dataset.class, f.querySelectorAll('svg').length, f.textContent]))";
/// Elements the page must not have: a fixture's path in markup would make them.
const INJECTED: &str = "document.querySelectorAll('script, i, link, img, iframe').length";
const TEXT: &str = "document.body.innerText";

struct Outputs {
    traced: Traced,
    html: PathBuf,
    svg: PathBuf,
}

/// `leaky MODE N DIR` under `run --iteration-symbol iteration_marker --html --svg`.
fn run(mode: &str, iterations: &str, data_dir: &Path, out: &Path) -> Outputs {
    let (html, svg) = (out.join("report.html"), out.join("charts.svg"));
    let traced = leakscope_json(
        "run",
        &[
            "--iteration-symbol",
            "iteration_marker",
            "--html",
            html.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
        &[
            fixture("leaky").to_str().unwrap(),
            mode,
            iterations,
            data_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    Outputs { traced, html, svg }
}

/// Opens the page and checks what every report must be: no error, nothing fetched, a
/// chart per class, injected markup shown as text, a screenshot that is not blank.
/// Returns the page's charts as (class, their text) and its text.
fn check_in_browser(html: &Path) -> (Vec<(String, String)>, String) {
    let visit = browser::visit(html, VIEW, &[CHARTS, INJECTED, TEXT]);
    assert!(
        visit.errors.is_empty(),
        "console errors: {:?}",
        visit.errors
    );
    let page = format!("file://{}", html.display());
    assert_eq!(visit.requests, [page], "the page made requests of its own");
    let charts: Vec<(String, u64, String)> =
        serde_json::from_str(visit.values[0].as_str().unwrap()).unwrap();
    let classes: Vec<&str> = charts.iter().map(|(class, _, _)| class.as_str()).collect();
    assert_eq!(classes, CLASSES);
    for (class, svgs, _) in &charts {
        assert_eq!(*svgs, 1, "{class}: one inline SVG per chart");
    }
    assert_eq!(
        visit.values[1], 0,
        "markup from the target reached the page"
    );
    assert_not_blank(&visit.screenshot);
    let text = visit.values[2].as_str().unwrap().to_string();
    let charts = charts.into_iter().map(|(c, _, t)| (c, t)).collect();
    (charts, text)
}

/// A blank (or one-colour) page has few distinct colours; a report with charts has many,
/// and a good share of pixels that are not the background.
fn assert_not_blank(png_bytes: &[u8]) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), VIEW);
    let channels = info.color_type.samples();
    let pixels = &pixels[..info.buffer_size()];
    let colours: std::collections::HashSet<&[u8]> = pixels.chunks(channels).collect();
    let background = pixels
        .chunks(channels)
        .filter(|p| p[..3] == [255, 255, 255])
        .count();
    let total = pixels.len() / channels;
    assert!(colours.len() >= 64, "only {} colours", colours.len());
    assert!(
        background < total * 97 / 100,
        "{background} of {total} pixels are white"
    );
}

/// The SVG parses as XML and holds one chart per class, in order.
fn check_svg(svg: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(svg).expect("--svg was written");
    let document = roxmltree::Document::parse(&text).expect("the SVG is XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let charts: Vec<String> = document
        .descendants()
        .filter(|n| n.attribute("class") == Some("class-chart"))
        .map(|n| n.attribute("id").unwrap_or("").to_string())
        .collect();
    let expected: Vec<String> = CLASSES.iter().map(|c| format!("chart-{c}")).collect();
    assert_eq!(charts, expected);
    charts
}

#[test]
fn a_leaking_runs_report_opens_offline_with_its_leak_charted() {
    let out = tempfile::tempdir().unwrap();
    // The fd leak's site is a path in this directory: its markup must show as text.
    let data = tempfile::tempdir().unwrap();
    let odd = data.path().join("<i>odd & \"dir\"");
    std::fs::create_dir(&odd).unwrap();
    let outputs = run("fd", "300", &odd, out.path());
    let fd = &outputs.traced.report["classes"]["fd"];
    assert_eq!(fd["verdict"], "leak", "{fd}");
    let (charts, text) = check_in_browser(&outputs.html);
    let fd_chart = &charts[0].1;
    assert!(fd_chart.contains("fd: leak"), "{fd_chart}");
    // The verdict's rate in the chart's title, as the analysis found it.
    assert!(
        fd_chart.contains("live fds: leak, 1.00 per iteration"),
        "{fd_chart}"
    );
    assert!(text.contains("<i>odd & \"dir\"/data.txt"), "{text}");
    assert!(text.contains("fd leak: 1.00 per iteration"), "{text}");
    check_svg(&outputs.svg);
}

#[test]
fn clean_runs_reports_open_offline_and_chart_no_leak() {
    // A no-leak verdict must not flip: five runs.
    for _ in 0..5 {
        let out = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let outputs = run("churn", "300", data.path(), out.path());
        let fd = &outputs.traced.report["classes"]["fd"];
        assert_eq!(fd["verdict"], "no-leak", "{fd}");
        let (charts, text) = check_in_browser(&outputs.html);
        assert!(charts[0].1.contains("fd: no-leak"), "{:?}", charts[0]);
        assert!(
            text.contains("no fd, mapping or file leak in 300 iterations"),
            "{text}"
        );
        check_svg(&outputs.svg);
    }
}

/// The browser check itself: a page that fetches and logs an error is caught at both.
#[test]
fn the_browser_check_sees_a_pages_requests_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/x.png\">\
         <script>console.error('boom')</script></body></html>",
    )
    .unwrap();
    let visit = browser::visit(&page, VIEW, &["1 + 1"]);
    assert_eq!(visit.values[0], 2);
    assert!(
        visit.errors.iter().any(|e| e.contains("boom")),
        "{:?}",
        visit.errors
    );
    assert!(
        visit
            .requests
            .iter()
            .any(|r| r.starts_with("http://127.0.0.1:9/")),
        "{:?}",
        visit.requests
    );
}

/// `extract`'s page adds the rounds as its worker measured them and the projection.
#[test]
fn extracts_report_has_its_rounds_and_projection() {
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("extract.html");
    let traced = leakscope_json(
        "extract",
        &[
            "--rounds",
            "3",
            "--iterations",
            "1000",
            "--inject-leak",
            "fd",
            "--html",
            html.to_str().unwrap(),
        ],
        &[] as &[&str],
    );
    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert_eq!(traced.report["classes"]["fd"]["verdict"], "leak");
    // The worker's rounds line is taken for the report, not printed.
    let printed = format!("{}{}", traced.stdout(), traced.stderr());
    assert_eq!(printed.matches("Round ").count(), 3, "{printed}");
    assert!(!printed.contains("leakscope-rounds"), "{printed}");
    const ROUNDS: &str = "JSON.stringify([...document.querySelectorAll('table.rounds tr')]\
         .slice(1).map(r => [...r.cells].map(c => c.textContent)))";
    const PROJECTED: &str = "document.querySelectorAll('table.projection tr').length";
    let visit = browser::visit(&html, VIEW, &[ROUNDS, PROJECTED, CHARTS]);
    assert!(
        visit.errors.is_empty(),
        "console errors: {:?}",
        visit.errors
    );
    assert_eq!(visit.requests.len(), 1, "{:?}", visit.requests);
    let rounds: Vec<Vec<String>> = serde_json::from_str(visit.values[0].as_str().unwrap()).unwrap();
    let names: Vec<&str> = rounds.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["1/3", "2/3", "3/3"]);
    // One fd kept per extraction: the worker's own count rises by 1,000 a round.
    let fds: Vec<u64> = rounds.iter().map(|r| r[3].parse().unwrap()).collect();
    assert_eq!(fds[1] - fds[0], 1000, "{rounds:?}");
    assert_eq!(fds[2] - fds[1], 1000, "{rounds:?}");
    assert!(rounds.iter().all(|r| r[5] == "1,000"), "{rounds:?}");
    // Header, rss, mmap, brk.
    assert_eq!(visit.values[1], 4);
    assert_not_blank(&visit.screenshot);
}
