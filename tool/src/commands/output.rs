//! Where the report goes, opened before tracing starts: a typo in `--json PATH` (or
//! `--folded`, `--flamegraph`, `--trace`, `--html`, `--svg`) must not cost the run. A bad path is a usage error (exit 2)
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
        html::{HtmlExporter, SvgExporter},
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
        // A pipe or a terminal (`/dev/stdout`, `>(cmd)`) cannot be truncated or rewound.
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        let mut reset = || -> std::io::Result<()> {
            if regular {
                file.set_len(0)?;
                file.rewind()?;
            }
            Ok(())
        };
        reset()
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
        // Every other output, with its renderer: one list for the checks and the opening.
        let exporters: [(&str, &Option<PathBuf>, Box<dyn Exporter>); 5] = [
            ("--folded", &common.folded, Box::new(FoldedExporter)),
            (
                "--flamegraph",
                &common.flamegraph,
                Box::new(FlamegraphExporter),
            ),
            ("--trace", &common.trace, Box::new(TraceExporter)),
            ("--html", &common.html, Box::new(HtmlExporter)),
            ("--svg", &common.svg, Box::new(SvgExporter)),
        ];
        // Two outputs into one file: the last would silently replace the first.
        let named: Vec<(&str, &PathBuf)> = std::iter::once(("--json", &common.json))
            .chain(exporters.iter().map(|(flag, path, _)| (*flag, *path)))
            .filter_map(|(flag, path)| Some((flag, path.as_ref()?)))
            .collect();
        for (i, (flag, path)) in named.iter().enumerate() {
            if *flag != "--json" && path.as_os_str() == "-" {
                return Err(UsageError(format!(
                    "{flag} -: only --json can write to stdout (which carries the text report); name a file, or /dev/stderr"
                )));
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, p)| p == path) {
                return Err(UsageError(format!(
                    "{other} and {flag} name the same file {}: give each its own",
                    path.display()
                )));
            }
        }
        let mut exports: Vec<(OutputFile, Box<dyn Exporter>)> = Vec::new();
        for (flag, path, exporter) in exporters {
            if let Some(path) = path {
                exports.push((OutputFile::open(flag, path)?, exporter));
            }
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

    fn common_with(args: &[&str]) -> CommonArgs {
        let argv = ["leakscope", "run"]
            .iter()
            .chain(args)
            .chain(&["--", "true"]);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!()
        };
        run.common
    }

    #[test]
    fn one_file_for_two_outputs_and_stdout_for_another_than_json_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let same = dir.path().join("out");
        let same = same.to_str().unwrap();
        let error = ReportOutput::open(&common_with(&["--json", same, "--trace", same]))
            .err()
            .unwrap();
        assert!(error.0.contains("--json and --trace"), "{error}");
        let error = ReportOutput::open(&common_with(&["--folded", "-"]))
            .err()
            .unwrap();
        assert!(error.0.starts_with("--folded -"), "{error}");
        let error = ReportOutput::open(&common_with(&["--html", same, "--svg", same]))
            .err()
            .unwrap();
        assert!(error.0.contains("--html and --svg"), "{error}");
        let error = ReportOutput::open(&common_with(&["--html", "-"]))
            .err()
            .unwrap();
        assert!(error.0.starts_with("--html -"), "{error}");
        assert!(!Path::new(same).exists());
    }

    #[test]
    fn a_pipe_is_written_without_truncating_it() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&writer));
        let mut output = ReportOutput::open(&common_with(&["--folded", &path])).unwrap();
        output.exports[0].0.write(b"a;b 1\n").unwrap();
        drop(output);
        drop(writer);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(reader), &mut text).unwrap();
        assert_eq!(text, "a;b 1\n");
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
