//! What `leakscope extract` and its traced worker are asked to do, as plain values. The
//! command line (`crate::cli::extract`) parses into these at the edge.

use std::path::PathBuf;

use super::{
    ExtractError, InjectLeak,
    archive::{self, ArchiveEntry},
};

/// The hidden subcommand the parent runs under tracing; its options are [`WorkerConfig`].
pub(crate) const WORKER_SUBCOMMAND: &str = "__extract-worker";

/// The original report's numbers: "10,000 times per round, 20 rounds".
pub(crate) const DEFAULT_ROUNDS: u64 = 20;
pub(crate) const DEFAULT_ITERATIONS: u64 = 10_000;

/// `leakscope extract`: the workload and where its archive comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtractOptions {
    pub(crate) rounds: u64,
    pub(crate) iterations: u64,
    pub(crate) inject_leak: InjectLeak,
    /// A tar file to extract instead of the built-in archive.
    pub(crate) archive: Option<PathBuf>,
    /// Entries of the built-in archive instead of a.txt/b.txt.
    pub(crate) files: Vec<ArchiveEntry>,
    /// Keep the extraction directory after the run.
    pub(crate) keep: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            rounds: DEFAULT_ROUNDS,
            iterations: DEFAULT_ITERATIONS,
            inject_leak: InjectLeak::None,
            archive: None,
            files: Vec::new(),
            keep: false,
        }
    }
}

impl ExtractOptions {
    /// The bytes to extract: `archive` (read and checked), or the `files` entries, or the
    /// default a.txt/b.txt.
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

/// `leakscope __extract-worker`: everything the traced child needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerConfig {
    /// The directory to extract into, again and again. It must exist; the parent owns it.
    pub(crate) dir: PathBuf,
    /// The tar archive to extract, written by the parent.
    pub(crate) archive_file: PathBuf,
    pub(crate) rounds: u64,
    pub(crate) iterations: u64,
    pub(crate) inject_leak: InjectLeak,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reports() {
        let options = ExtractOptions::default();
        assert_eq!((options.rounds, options.iterations), (20, 10_000));
        assert_eq!(options.inject_leak, InjectLeak::None);
        assert_eq!(
            options.archive_bytes().unwrap(),
            archive::build_archive(&archive::default_entries()).unwrap()
        );
    }

    #[test]
    fn duplicate_files_fail_when_the_archive_is_built() {
        let options = ExtractOptions {
            files: vec![ArchiveEntry::new("x", "1"), ArchiveEntry::new("x", "2")],
            ..ExtractOptions::default()
        };
        let err = options.archive_bytes().unwrap_err();
        assert!(
            matches!(err, ExtractError::DuplicateEntry { .. }),
            "{err:?}"
        );
        assert_eq!(err.exit_status(), crate::exit_code::USAGE);
    }
}
