//! The report's two renderers, one model: what `--json` writes and what the terminal shows
//! come from the same [`Report`], so they cannot disagree.

use super::Report;

/// Renders a whole report into bytes for one destination.
pub(crate) trait Exporter {
    fn render(&self, report: &Report) -> anyhow::Result<Vec<u8>>;
}

/// The one-screen text summary.
pub(crate) struct TextExporter;

impl Exporter for TextExporter {
    fn render(&self, report: &Report) -> anyhow::Result<Vec<u8>> {
        let mut text = Vec::new();
        report.write_text(&mut text)?;
        Ok(text)
    }
}

/// The JSON report (schema 1), pretty-printed and newline-terminated.
pub(crate) struct JsonExporter;

impl Exporter for JsonExporter {
    fn render(&self, report: &Report) -> anyhow::Result<Vec<u8>> {
        let mut json = serde_json::to_vec_pretty(&report.to_json())?;
        json.push(b'\n');
        Ok(json)
    }
}
