//! `--html` and `--svg`: the report as one self-contained page (inline CSS, charts as
//! inline SVG, no script, nothing fetched), and the per-class charts alone as one SVG.
//! The charts come from [`super::class_charts`], as the analysis judged; this module only
//! draws them ([`charts`]) and lays the page out ([`page`]).

pub(crate) mod charts;
pub(crate) mod page;

use super::{Exporter, Report};

/// The whole report as an HTML page.
pub(crate) struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn render(&self, report: &Report) -> anyhow::Result<Vec<u8>> {
        Ok(page::page(report)?.into_bytes())
    }
}

/// Each class's chart of its live amount per iteration, in one SVG.
pub(crate) struct SvgExporter;

impl Exporter for SvgExporter {
    fn render(&self, report: &Report) -> anyhow::Result<Vec<u8>> {
        Ok(charts::all_charts(&report.charts)?.into_bytes())
    }
}

/// `text` escaped for HTML text and double-quoted attributes alike.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
