//! Where the report goes, opened before tracing starts: a typo in `--json PATH` must not
//! cost the run. A bad path is a usage error (exit 2) and the target never starts.

use std::{
    fs::{File, OpenOptions},
    io::{Seek as _, Write as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{cli::CommonArgs, exit_code::UsageError};

/// The JSON report's destination.
pub(crate) enum ReportOutput {
    /// No `--json`.
    None,
    /// `--json -`: stdout carries the JSON only; the text report and the target's stdout go
    /// to stderr.
    Stdout,
    File(JsonFile),
}

pub(crate) struct JsonFile {
    file: File,
    path: PathBuf,
    /// Created by this run: removed again if no report is written into it.
    created: bool,
    written: bool,
}

impl ReportOutput {
    /// Opens (or creates) the `--json` file now, without truncating it yet: an existing
    /// report is replaced only by a new one.
    pub(crate) fn open(common: &CommonArgs) -> Result<ReportOutput, UsageError> {
        let Some(path) = &common.json else {
            return Ok(ReportOutput::None);
        };
        if path == Path::new("-") {
            return Ok(ReportOutput::Stdout);
        }
        let existed = path.symlink_metadata().is_ok();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|error| {
                UsageError(format!(
                    "--json {}: cannot write the report there: {error}",
                    path.display()
                ))
            })?;
        Ok(ReportOutput::File(JsonFile {
            file,
            path: path.clone(),
            created: !existed,
            written: false,
        }))
    }

    pub(crate) fn json_on_stdout(&self) -> bool {
        matches!(self, ReportOutput::Stdout)
    }

    /// Whether `--json` was given at all.
    pub(crate) fn wants_json(&self) -> bool {
        !matches!(self, ReportOutput::None)
    }

    /// Writes the rendered JSON where it belongs (nowhere without `--json`).
    pub(crate) fn write_json(&mut self, rendered: &[u8]) -> anyhow::Result<()> {
        match self {
            ReportOutput::None => Ok(()),
            ReportOutput::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(rendered)?;
                stdout.flush()?;
                Ok(())
            }
            ReportOutput::File(json) => {
                let JsonFile {
                    file,
                    path,
                    written,
                    ..
                } = json;
                file.set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| file.write_all(rendered))
                    .with_context(|| {
                        format!("cannot write the JSON report to {}", path.display())
                    })?;
                *written = true;
                Ok(())
            }
        }
    }
}

impl Drop for JsonFile {
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
