//! The command lines of `leakscope extract` (what the user types) and of the hidden
//! `leakscope __extract-worker` (what the parent passes to the traced child).

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, Parser};

use super::{
    ExtractError, InjectLeak,
    archive::{self, ArchiveEntry},
};

/// The hidden subcommand the parent runs under tracing; its arguments are [`WorkerConfig`].
pub(crate) const WORKER_SUBCOMMAND: &str = "__extract-worker";

/// The original report's numbers: "10,000 times per round, 20 rounds".
pub(crate) const DEFAULT_ROUNDS: u64 = 20;
pub(crate) const DEFAULT_ITERATIONS: u64 = 10_000;

/// Shown by `leakscope extract --help`.
pub(crate) const EXTRACT_ABOUT: &str = "Run the original report's scenario: extract a small tar archive \
     over and over, and see what leaks";

/// Shown after the options by `leakscope extract --help`.
pub(crate) const EXTRACT_AFTER_HELP: &str = "\
The scenario comes from a bug report: \"Repeated archive extraction, 10,000 times per round, \
20 rounds. Expected: memory usage should remain stable. Actual: memory usage grows \
continuously.\" leakscope runs that loop in a child process it traces. The archive (a.txt = \
\"hello\", b.txt = \"world\" unless --archive or --file say otherwise) is built in memory and \
extracted into one temporary directory, overwriting the same files every time; the directory \
is removed afterwards. Each iteration calls the function leakscope_iteration_marker, which a \
uprobe watches, so the report counts iterations exactly.

After every round the child prints a line like the report's:
  Round 3/20: RSS = 12.4 MiB (+0.1 MiB), fds = 4, mappings = 37, 10000 extractions in 412 ms

--inject-leak adds one deliberate leak per iteration, so you can see what each kind looks like
in the report and check that leakscope finds it:
  fd    the fd class grows by 1 per iteration; its site is <dir>/.leakscope-injected-fd.
        Needs rounds x iterations fds: lower --rounds/--iterations if the fd limit is smaller.
  mmap  the mmap class grows by 64 KiB per iteration; a stack, when one is available, shows
        leakscope::extract::inject::injected_mmap_leak.
        Only the first page of each mapping is touched, so RSS grows by 4 KiB per iteration.
        The kernel merges adjacent anonymous mappings, so the mappings count may stay flat.
  heap  brk grows by 4096 bytes per iteration (sbrk, all bytes touched), made in
        leakscope::extract::inject::injected_heap_leak.

Examples:
  leakscope extract
  leakscope extract --rounds 5 --iterations 1000 --inject-leak fd
  leakscope extract --file a.txt=hello --file sub/c.txt=again
  leakscope extract --archive ./release.tar";

/// `leakscope extract`: the options of the workload. The CLI adds the common tracing options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(about = EXTRACT_ABOUT, after_long_help = EXTRACT_AFTER_HELP)]
pub(crate) struct ExtractArgs {
    /// Rounds to run; RSS, fds and mappings are printed after each one. The default is the
    /// original report's.
    #[arg(long, value_name = "R", default_value_t = DEFAULT_ROUNDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) rounds: u64,

    /// Extractions per round. The default is the original report's.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ITERATIONS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) iterations: u64,

    /// Add one deliberate leak of this kind per iteration, to see how the report shows it.
    #[arg(long, value_name = "KIND", value_enum, default_value_t = InjectLeak::None)]
    pub(crate) inject_leak: InjectLeak,

    /// Extract this tar file instead of the built-in archive. It is checked before the run.
    #[arg(long, value_name = "PATH")]
    pub(crate) archive: Option<PathBuf>,

    /// Put this file into the built-in archive instead of a.txt/b.txt (repeatable). NAME is a
    /// relative path; CONTENT is taken literally.
    #[arg(long = "file", value_name = "NAME=CONTENT", conflicts_with = "archive",
          value_parser = parse_file_spec_arg)]
    pub(crate) files: Vec<ArchiveEntry>,

    /// Keep the extraction directory after the run (its path is printed), to inspect what
    /// was extracted. By default it is removed.
    #[arg(long)]
    pub(crate) keep: bool,
}

impl Default for ExtractArgs {
    fn default() -> Self {
        ExtractArgs {
            rounds: DEFAULT_ROUNDS,
            iterations: DEFAULT_ITERATIONS,
            inject_leak: InjectLeak::None,
            archive: None,
            files: Vec::new(),
            keep: false,
        }
    }
}

/// clap's view of [`archive::parse_file_spec`]: a bad spec is a usage error (exit status 2).
fn parse_file_spec_arg(spec: &str) -> Result<ArchiveEntry, String> {
    archive::parse_file_spec(spec).map_err(|err| match err {
        ExtractError::InvalidFileSpec { reason, .. } => reason,
        other => other.to_string(),
    })
}

impl ExtractArgs {
    /// The bytes to extract: `--archive PATH` (read and checked), or the `--file` entries, or
    /// the default a.txt/b.txt.
    pub(crate) fn archive_bytes(&self) -> Result<Vec<u8>, ExtractError> {
        if let Some(path) = &self.archive {
            return archive::read_archive_file(path);
        }
        if self.files.is_empty() {
            archive::build_archive(&archive::default_entries())
        } else {
            archive::build_archive(&self.files)
        }
    }

    /// The worker's configuration, given where the parent put the directory and the bytes.
    pub(crate) fn worker_config(&self, dir: PathBuf, archive_file: PathBuf) -> WorkerConfig {
        WorkerConfig {
            dir,
            archive_file,
            rounds: self.rounds,
            iterations: self.iterations,
            inject_leak: self.inject_leak,
        }
    }
}

/// `leakscope __extract-worker`: everything the traced child needs. The parent builds it,
/// turns it into arguments with [`WorkerConfig::to_args`], and the child parses it back.
#[derive(Debug, Clone, PartialEq, Eq, Args, serde::Serialize)]
pub(crate) struct WorkerConfig {
    /// The directory to extract into, again and again. It must exist; the parent owns it.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,

    /// The tar archive to extract, written by the parent.
    #[arg(long, value_name = "FILE")]
    pub(crate) archive_file: PathBuf,

    #[arg(long, value_name = "R", default_value_t = DEFAULT_ROUNDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) rounds: u64,

    #[arg(long, value_name = "N", default_value_t = DEFAULT_ITERATIONS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) iterations: u64,

    #[arg(long, value_name = "KIND", value_enum, default_value_t = InjectLeak::None)]
    pub(crate) inject_leak: InjectLeak,
}

/// A parser for [`WorkerConfig`] alone, for [`WorkerConfig::from_args`].
#[derive(Parser)]
#[command(name = WORKER_SUBCOMMAND, no_binary_name = true)]
struct WorkerCommandLine {
    #[command(flatten)]
    config: WorkerConfig,
}

impl WorkerConfig {
    /// The arguments that follow `leakscope __extract-worker`. Every field is spelled out, so
    /// the child never depends on defaults the parent might not share.
    pub(crate) fn to_args(&self) -> Vec<OsString> {
        vec![
            "--dir".into(),
            self.dir.clone().into_os_string(),
            "--archive-file".into(),
            self.archive_file.clone().into_os_string(),
            "--rounds".into(),
            self.rounds.to_string().into(),
            "--iterations".into(),
            self.iterations.to_string().into(),
            "--inject-leak".into(),
            self.inject_leak.as_str().into(),
        ]
    }

    /// Parses what [`WorkerConfig::to_args`] produced (without the subcommand name).
    pub(crate) fn from_args<I, T>(args: I) -> Result<WorkerConfig, ExtractError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        WorkerCommandLine::try_parse_from(args)
            .map(|parsed| parsed.config)
            .map_err(|err| ExtractError::WorkerArgs(err.to_string()))
    }

    pub(crate) fn total_iterations(&self) -> u64 {
        self.rounds.saturating_mul(self.iterations)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, Subcommand, error::ErrorKind};

    use super::*;

    /// Stands in for the real CLI, which nests these under subcommands.
    #[derive(Parser, Debug)]
    #[command(name = "leakscope")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand, Debug)]
    enum Command {
        Extract(ExtractArgs),
        #[command(name = WORKER_SUBCOMMAND, hide = true)]
        ExtractWorker(WorkerConfig),
    }

    fn parse_extract(args: &[&str]) -> Result<ExtractArgs, clap::Error> {
        let argv = ["leakscope", "extract"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Extract(extract) => Ok(extract),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_reports() {
        let args = parse_extract(&[]).unwrap();
        assert_eq!(args, ExtractArgs::default());
        assert_eq!((args.rounds, args.iterations), (20, 10_000));
        assert_eq!(args.inject_leak, InjectLeak::None);
        assert_eq!(
            args.archive_bytes().unwrap(),
            archive::build_archive(&archive::default_entries()).unwrap()
        );
    }

    #[test]
    fn all_options_parse() {
        let args = parse_extract(&[
            "--rounds",
            "3",
            "--iterations",
            "7",
            "--inject-leak",
            "mmap",
            "--file",
            "x.txt=1",
            "--file",
            "d/y.txt=a=b",
        ])
        .unwrap();
        assert_eq!(args.rounds, 3);
        assert_eq!(args.iterations, 7);
        assert_eq!(args.inject_leak, InjectLeak::Mmap);
        assert_eq!(
            args.files,
            [
                ArchiveEntry::new("x.txt", "1"),
                ArchiveEntry::new("d/y.txt", "a=b")
            ]
        );
        let expected = archive::expected_contents(&args.archive_bytes().unwrap(), "t").unwrap();
        assert_eq!(expected.files.len(), 2);
    }

    #[test]
    fn usage_errors_are_reported_by_clap() {
        let kind = |args: &[&str]| parse_extract(args).unwrap_err().kind();
        assert_eq!(kind(&["--file", "noequals"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["--file", "../x=1"]), ErrorKind::ValueValidation);
        assert_eq!(
            kind(&["--archive", "a.tar", "--file", "x=1"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(kind(&["--inject-leak", "socket"]), ErrorKind::InvalidValue);
        assert_eq!(kind(&["--rounds", "0"]), ErrorKind::ValueValidation);
        let message = parse_extract(&["--file", "noequals"])
            .unwrap_err()
            .to_string();
        assert!(message.contains("expected NAME=CONTENT"), "{message}");
    }

    #[test]
    fn duplicate_files_fail_when_the_archive_is_built() {
        let args = parse_extract(&["--file", "x=1", "--file", "x=2"]).unwrap();
        let err = args.archive_bytes().unwrap_err();
        assert!(
            matches!(err, ExtractError::DuplicateEntry { .. }),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn worker_config_round_trips_through_its_arguments() {
        let args = parse_extract(&["--rounds", "2", "--inject-leak", "heap"]).unwrap();
        let config = args.worker_config("/tmp/a dir/x".into(), "/tmp/archive.tar".into());
        let argv = config.to_args();
        assert_eq!(WorkerConfig::from_args(argv.clone()).unwrap(), config);

        // And through the real subcommand shape.
        let full = ["leakscope".into(), WORKER_SUBCOMMAND.into()]
            .into_iter()
            .chain(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::ExtractWorker(parsed) => assert_eq!(parsed, config),
            other => panic!("{other:?}"),
        }
        assert_eq!(config.total_iterations(), 20_000);
    }

    #[test]
    fn worker_arguments_need_the_directory_and_archive() {
        let err = WorkerConfig::from_args(["--rounds", "1"]).unwrap_err();
        assert!(matches!(err, ExtractError::WorkerArgs(_)), "{err:?}");
        assert!(err.to_string().contains("--dir"), "{err}");
    }

    #[test]
    fn help_teaches_the_leak_modes_and_the_defaults() {
        let mut command = Cli::command();
        let extract = command.find_subcommand_mut("extract").unwrap();
        let help = extract.render_long_help().to_string();
        for needle in [
            "[default: 20]",
            "[default: 10000]",
            "[default: none]",
            "One 64 KiB private anonymous mapping per iteration",
            "4096 bytes of brk heap per iteration",
            ".leakscope-injected-fd",
            "original report",
            "NAME=CONTENT",
        ] {
            assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
        }
        let hidden = Cli::command().render_help().to_string();
        assert!(!hidden.contains(WORKER_SUBCOMMAND), "{hidden}");
        Cli::command().debug_assert();
    }
}
