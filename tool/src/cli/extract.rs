//! The command lines of `leakscope extract` (what the user types) and of the hidden
//! `leakscope __extract-worker` (what the parent passes to the traced child). Both flatten
//! one [`Workload`]; they become plain [`ExtractOptions`] and [`WorkerConfig`] here.

use std::path::PathBuf;

use clap::{Args, ValueEnum, builder::PossibleValue};

use crate::extract::{
    DEFAULT_ITERATIONS, DEFAULT_ROUNDS, ExtractError, ExtractOptions, InjectLeak, WorkerConfig,
    archive::{self, ArchiveEntry},
};

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
  tempfile
        the files class grows by 1 file of 4 KiB per iteration: tmp/leakscope-injected-XXXXXX
        next to the extraction directory (created with O_EXCL, written, closed, never
        removed). Needs rounds x iterations x 4 KiB of free disk space, checked up front.
  watch the watches class grows by 1 inotify watch per iteration, each on its own file of
        watched/ next to the extraction directory (made before the run, not traced), never
        removed. Needs rounds x iterations watches below fs.inotify.max_user_watches
        (often 8192 to about 500,000): lower --rounds/--iterations if it is smaller.
Whatever the leak left on disk is removed with the directory after the run (--keep keeps it).

Examples:
  leakscope extract
  leakscope extract --rounds 5 --iterations 1000 --inject-leak fd
  leakscope extract --rounds 5 --iterations 1000 --inject-leak watch
  leakscope extract --file a.txt=hello --file sub/c.txt=again
  leakscope extract --archive ./release.tar";

/// What the traced child repeats: shared by `extract` and its worker, so the parent passes
/// on exactly what the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Args, serde::Serialize)]
pub(crate) struct Workload {
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
}

/// `leakscope extract`: the workload and its archive. The CLI adds the common tracing options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(about = EXTRACT_ABOUT, after_long_help = EXTRACT_AFTER_HELP)]
pub(crate) struct ExtractArgs {
    #[command(flatten)]
    pub(crate) workload: Workload,

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

    /// Hidden, for `cargo xtask bench`: run the same worker in the same kind of workspace
    /// without any probe and write no report, so the loop's untraced time can be compared
    /// with a traced run's (set LEAKSCOPE_LOOP_NS=1 to have the worker print it).
    #[arg(long, hide = true)]
    pub(crate) untraced: bool,
}

/// `--inject-leak KIND`: the names are [`InjectLeak::as_str`]'s, each with its help line.
impl ValueEnum for InjectLeak {
    fn value_variants<'a>() -> &'a [Self] {
        &InjectLeak::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            InjectLeak::None => "No deliberate leak: only what extraction itself does",
            InjectLeak::Fd => {
                "One fd per iteration, opened on `<dir>/.leakscope-injected-fd` and never closed"
            }
            InjectLeak::Mmap => {
                "One 64 KiB private anonymous mapping per iteration, never unmapped"
            }
            InjectLeak::Heap => "4096 bytes of brk heap per iteration, never freed",
            InjectLeak::Tempfile => {
                "One 4 KiB file per iteration in the workspace's tmp/ directory, never removed"
            }
            InjectLeak::Watch => "One inotify watch per iteration on a new path, never removed",
        };
        Some(PossibleValue::new(self.as_str()).help(help))
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
    pub(crate) fn options(&self) -> ExtractOptions {
        let Workload {
            rounds,
            iterations,
            inject_leak,
        } = self.workload;
        ExtractOptions {
            rounds,
            iterations,
            inject_leak,
            archive: self.archive.clone(),
            files: self.files.clone(),
            keep: self.keep,
        }
    }
}

/// `leakscope __extract-worker`: everything the traced child needs. The parent writes it
/// back as flags with [`super::to_flags`], and the child parses it like any command line.
#[derive(Debug, Clone, PartialEq, Eq, Args, serde::Serialize)]
pub(crate) struct WorkerArgs {
    /// The directory to extract into, again and again. It must exist; the parent owns it.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,

    /// The tar archive to extract, written by the parent.
    #[arg(long, value_name = "FILE")]
    pub(crate) archive_file: PathBuf,

    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) workload: Workload,

    /// After the last round, print the rounds as one line of JSON after
    /// [`crate::extract::worker::ROUNDS_LINE_PREFIX`], for the parent's report.
    #[arg(long, hide = true)]
    pub(crate) rounds_line: bool,
}

impl WorkerArgs {
    pub(crate) fn config(&self) -> WorkerConfig {
        let Workload {
            rounds,
            iterations,
            inject_leak,
        } = self.workload;
        WorkerConfig {
            dir: self.dir.clone(),
            archive_file: self.archive_file.clone(),
            rounds,
            iterations,
            inject_leak,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::{CommandFactory, Parser, error::ErrorKind};

    use super::*;
    use crate::{
        cli::{Cli, Command, to_flags},
        extract::WORKER_SUBCOMMAND,
    };

    fn parse_extract(args: &[&str]) -> Result<ExtractArgs, clap::Error> {
        let argv = ["leakscope", "extract"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Extract(extract) => Ok(extract.extract),
            other => panic!("{other:?}"),
        }
    }

    fn parse_worker<I: IntoIterator<Item = OsString>>(args: I) -> Result<WorkerArgs, clap::Error> {
        let argv = ["leakscope".into(), WORKER_SUBCOMMAND.into()]
            .into_iter()
            .chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::ExtractWorker(worker) => Ok(worker),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_reports() {
        let args = parse_extract(&[]).unwrap();
        assert_eq!(args.options(), ExtractOptions::default());
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
            "--keep",
        ])
        .unwrap()
        .options();
        assert_eq!(args.rounds, 3);
        assert_eq!(args.iterations, 7);
        assert_eq!(args.inject_leak, InjectLeak::Mmap);
        assert!(args.keep);
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
        // The error for an unknown mode lists every mode.
        let unknown = parse_extract(&["--inject-leak", "socket"])
            .unwrap_err()
            .to_string();
        for mode in ["none", "fd", "mmap", "heap", "tempfile", "watch"] {
            assert!(unknown.contains(mode), "{mode} missing in: {unknown}");
        }
        assert_eq!(kind(&["--rounds", "0"]), ErrorKind::ValueValidation);
        let message = parse_extract(&["--file", "noequals"])
            .unwrap_err()
            .to_string();
        assert!(message.contains("expected NAME=CONTENT"), "{message}");
    }

    #[test]
    fn the_worker_gets_the_users_workload_through_its_flags() {
        let args = parse_extract(&["--rounds", "2", "--inject-leak", "heap"]).unwrap();
        let worker = WorkerArgs {
            dir: "/tmp/a dir/x".into(),
            archive_file: "/tmp/archive.tar".into(),
            workload: args.workload.clone(),
            rounds_line: false,
        };
        let argv = to_flags(&worker).unwrap();
        // Every value spelled out, so the child never depends on defaults the parent might
        // not share; in declaration order, as the report shows the command.
        assert_eq!(
            argv,
            [
                "--dir",
                "/tmp/a dir/x",
                "--archive-file",
                "/tmp/archive.tar",
                "--rounds",
                "2",
                "--iterations",
                "10000",
                "--inject-leak",
                "heap"
            ]
            .map(OsString::from)
        );
        let parsed = parse_worker(argv).unwrap();
        assert_eq!(parsed, worker);
        assert_eq!(
            parsed.config(),
            args.options()
                .worker_config("/tmp/a dir/x".into(), "/tmp/archive.tar".into())
        );
    }

    #[test]
    fn inject_leak_values_are_its_names() {
        let names: Vec<_> = InjectLeak::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_owned())
            .collect();
        assert_eq!(names, ["none", "fd", "mmap", "heap", "tempfile", "watch"]);
        for variant in InjectLeak::value_variants() {
            let parsed = parse_extract(&["--inject-leak", variant.as_str()]).unwrap();
            assert_eq!(parsed.workload.inject_leak, *variant);
        }
    }

    #[test]
    fn worker_arguments_need_the_directory_and_archive() {
        let err = parse_worker(["--rounds".into(), "1".into()]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
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
            "One 4 KiB file per iteration in the workspace's tmp/ directory",
            "One inotify watch per iteration on a new path",
            "fs.inotify.max_user_watches",
            "original report",
            "NAME=CONTENT",
        ] {
            assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
        }
        let hidden = Cli::command().render_help().to_string();
        assert!(!hidden.contains(WORKER_SUBCOMMAND), "{hidden}");
        // The bench's switch is not for users: it parses but is not shown.
        assert!(!help.contains("--untraced"), "{help}");
        Cli::command().debug_assert();
    }

    #[test]
    fn untraced_is_the_same_workload_without_probes() {
        let traced = parse_extract(&["--rounds", "2", "--iterations", "5"]).unwrap();
        let untraced =
            parse_extract(&["--rounds", "2", "--iterations", "5", "--untraced"]).unwrap();
        assert!(untraced.untraced && !traced.untraced);
        assert_eq!(untraced.options(), traced.options());
        assert_eq!(untraced.workload, traced.workload);
    }
}
