//! Where the report goes, opened before tracing starts: a typo in `--json PATH` (or
//! `--folded`, `--flamegraph`) must not cost the run. A bad path is a usage error (exit 2)
//! and the target never starts.

use std::{
    fs::{File, OpenOptions},
    io::{Seek as _, Write as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{
    cli::CommonArgs,
    exit_code::UsageError,
    report::{
        Exporter, Report,
        folded::{FlamegraphExporter, FoldedExporter},
        trace::TraceExporter,
    },
};

/// Every destination of the report besides the terminal.
pub(crate) struct ReportOutput {
    json: JsonDestination,
    /// `--folded`, `--flamegraph`: other renderings of the same report.
    exports: Vec<(OutputFile, Box<dyn Exporter>)>,
}

/// The JSON report's destination.
enum JsonDestination {
    /// No `--json`.
    None,
    /// `--json -`: stdout carries the JSON only; the text report and the target's stdout go
    /// to stderr.
    Stdout,
    File(OutputFile),
}

/// A report file, opened before tracing.
pub(crate) struct OutputFile {
    file: File,
    path: PathBuf,
    /// The option that named it, for messages.
    flag: &'static str,
    /// Created by this run: removed again if no report is written into it.
    created: bool,
    written: bool,
}

impl OutputFile {
    /// Opens (or creates) `path` now, without truncating it yet: an existing report is
    /// replaced only by a new one.
    fn open(flag: &'static str, path: &Path) -> Result<OutputFile, UsageError> {
        let existed = path.symlink_metadata().is_ok();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|error| {
                UsageError(format!(
                    "{flag} {}: cannot write the report there: {error}",
                    path.display()
                ))
            })?;
        Ok(OutputFile {
            file,
            path: path.to_path_buf(),
            flag,
            created: !existed,
            written: false,
        })
    }

    fn write(&mut self, rendered: &[u8]) -> anyhow::Result<()> {
        let OutputFile {
            file,
            path,
            flag,
            written,
            ..
        } = self;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(rendered))
            .with_context(|| format!("{flag}: cannot write the report to {}", path.display()))?;
        *written = true;
        Ok(())
    }
}

impl ReportOutput {
    /// Opens every report file named on the command line now.
    pub(crate) fn open(common: &CommonArgs) -> Result<ReportOutput, UsageError> {
        let json = match &common.json {
            None => JsonDestination::None,
            Some(path) if path == Path::new("-") => JsonDestination::Stdout,
            Some(path) => JsonDestination::File(OutputFile::open("--json", path)?),
        };
        let mut exports: Vec<(OutputFile, Box<dyn Exporter>)> = Vec::new();
        if let Some(path) = &common.folded {
            exports.push((
                OutputFile::open("--folded", path)?,
                Box::new(FoldedExporter),
            ));
        }
        if let Some(path) = &common.flamegraph {
            exports.push((
                OutputFile::open("--flamegraph", path)?,
                Box::new(FlamegraphExporter),
            ));
        }
        if let Some(path) = &common.trace {
            exports.push((OutputFile::open("--trace", path)?, Box::new(TraceExporter)));
        }
        Ok(ReportOutput { json, exports })
    }

    pub(crate) fn json_on_stdout(&self) -> bool {
        matches!(self.json, JsonDestination::Stdout)
    }

    /// Whether `--json` was given at all.
    pub(crate) fn wants_json(&self) -> bool {
        !matches!(self.json, JsonDestination::None)
    }

    /// Writes the rendered JSON where it belongs (nowhere without `--json`).
    pub(crate) fn write_json(&mut self, rendered: &[u8]) -> anyhow::Result<()> {
        match &mut self.json {
            JsonDestination::None => Ok(()),
            JsonDestination::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(rendered)?;
                stdout.flush()?;
                Ok(())
            }
            JsonDestination::File(file) => file.write(rendered),
        }
    }

    /// Renders and writes `--folded` and `--flamegraph` (nothing without them).
    pub(crate) fn write_exports(&mut self, report: &Report) -> anyhow::Result<()> {
        for (file, exporter) in &mut self.exports {
            file.write(&exporter.render(report)?)?;
        }
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.created && !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn common(json: &str) -> CommonArgs {
        let cli =
            crate::cli::Cli::try_parse_from(["leakscope", "run", "--json", json, "--", "true"])
                .unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!()
        };
        run.common
    }

    #[test]
    fn a_bad_path_is_refused_before_anything_runs() {
        let error = ReportOutput::open(&common("/nonexistent-dir/report.json"))
            .err()
            .unwrap();
        assert!(error.0.contains("/nonexistent-dir/report.json"), "{error}");
    }

    #[test]
    fn a_file_created_for_nothing_is_removed_and_a_written_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let args = common(path.to_str().unwrap());
        drop(ReportOutput::open(&args).unwrap());
        assert!(!path.exists());
        let mut output = ReportOutput::open(&args).unwrap();
        output.write_json(b"{\"a\": 1}\n").unwrap();
        drop(output);
        let mut output = ReportOutput::open(&args).unwrap();
        output.write_json(b"{}\n").unwrap();
        drop(output);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
    }
}
