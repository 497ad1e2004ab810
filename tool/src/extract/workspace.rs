//! The parent's side of the extraction directory: one temporary directory holding the archive
//! bytes and the directory the worker extracts into, removed when the run is over.
//!
//! ```text
//! /tmp/leakscope-extract-XXXXXX/
//!     archive.tar   the bytes the worker extracts (real bytes, so the child reads a file)
//!     extract/      the worker's --dir
//!     tmp/          --inject-leak tempfile's files
//!     watched/      --inject-leak watch's watched files
//! ```

use std::{
    fs,
    os::unix::fs::chown,
    path::{Path, PathBuf},
};

use tempfile::TempDir;

use super::{ExtractError, ExtractOptions, WorkerConfig, disk_leaks};

/// A prepared run of `leakscope extract`. Dropping it removes the directory.
#[derive(Debug)]
pub(crate) struct ExtractWorkspace {
    root: TempDir,
    config: WorkerConfig,
}

impl ExtractWorkspace {
    /// Builds (or reads and checks) the archive, checks that the run's deliberate leaks fit
    /// the process limits, writes the archive to a new temporary directory, and creates the
    /// extraction directory next to it.
    ///
    /// `owner` (uid, gid) is the user the worker will run as (`--user`). The directories are
    /// created by the tracer, usually root, with mode 0700; without handing them over, the
    /// worker could not write into them.
    pub(crate) fn create(
        options: &ExtractOptions,
        owner: Option<(u32, u32)>,
    ) -> Result<ExtractWorkspace, ExtractError> {
        let bytes = options.archive_bytes()?;
        // The worker checks its fd budget too, but failing here is before anything is traced.
        // Raising the soft fd limit here also hands the raised limit down to the worker.
        options
            .inject_leak
            .prepare(options.rounds.saturating_mul(options.iterations))?;
        remove_abandoned(&std::env::temp_dir());
        let root = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir()
            .map_err(ExtractError::Workspace)?;
        fs::write(root.path().join(OWNER_FILE), owner_line(std::process::id()))
            .map_err(ExtractError::Workspace)?;
        let archive_file = root.path().join("archive.tar");
        let dir = root.path().join("extract");
        fs::write(&archive_file, &bytes).map_err(ExtractError::Workspace)?;
        fs::create_dir(&dir).map_err(ExtractError::Workspace)?;
        if let Some((uid, gid)) = owner {
            for path in [root.path(), &archive_file, &dir] {
                chown(path, Some(uid), Some(gid)).map_err(ExtractError::Workspace)?;
            }
        }
        // The tempfile and watch leaks' directories, inside the root so that removing it
        // (at the end, on an error, on a stop signal) removes what they left.
        let total = options.rounds.saturating_mul(options.iterations);
        disk_leaks::prepare_workspace(options.inject_leak, &dir, total, owner)?;
        let config = options.worker_config(dir, archive_file);
        Ok(ExtractWorkspace { root, config })
    }

    /// What to pass to `leakscope __extract-worker` (`crate::cli::extract::WorkerArgs` writes it back as flags).
    pub(crate) fn worker_config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Where the worker extracts.
    pub(crate) fn extract_dir(&self) -> &Path {
        &self.config.dir
    }

    /// The temporary directory that holds everything.
    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// Removes the directory and reports a failure, which dropping would ignore.
    pub(crate) fn remove(self) -> Result<(), ExtractError> {
        self.root.close().map_err(ExtractError::Workspace)
    }

    /// Keeps the directory after the run (for inspection) and returns its path.
    pub(crate) fn keep(self) -> PathBuf {
        self.root.keep()
    }
}

const PREFIX: &str = "leakscope-extract-";

/// Names the leakscope process that made the directory: "PID STARTTIME" (the start time
/// in clock ticks since boot, from /proc/PID/stat, so a reused pid is not mistaken for it).
const OWNER_FILE: &str = ".leakscope-owner";

fn owner_line(pid: u32) -> String {
    format!("{pid} {}", start_time(pid).unwrap_or(0))
}

fn start_time(pid: u32) -> Option<u64> {
    procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()
        .map(|stat| stat.starttime)
}

/// Removes the directories of `leakscope extract` runs that were killed outright
/// (SIGKILL leaves no chance to clean up): those whose owner is no longer running. A
/// directory without an owner file, or of a run still going, is left alone.
fn remove_abandoned(temp: &Path) {
    let Ok(entries) = fs::read_dir(temp) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(PREFIX));
        if is_ours && owner_is_gone(&entry.path()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn owner_is_gone(root: &Path) -> bool {
    let Ok(owner) = fs::read_to_string(root.join(OWNER_FILE)) else {
        return false;
    };
    let mut fields = owner.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(started))) = (fields.next(), fields.next()) else {
        return false;
    };
    start_time(pid as u32) != Some(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{InjectLeak, archive::ArchiveEntry, run_worker_to};

    #[test]
    fn a_workspace_runs_the_worker_and_is_removed() {
        let options = ExtractOptions {
            rounds: 1,
            iterations: 3,
            inject_leak: InjectLeak::None,
            archive: None,
            files: vec![ArchiveEntry::new("only.txt", "one")],
            keep: false,
        };
        let workspace = ExtractWorkspace::create(&options, None).unwrap();
        let root = workspace.root().to_owned();
        assert!(workspace.extract_dir().is_dir());
        assert!(workspace.worker_config().archive_file.is_file());

        let summary = run_worker_to(workspace.worker_config(), &mut Vec::new()).unwrap();
        assert_eq!(summary.total_iterations, 3);
        assert_eq!(
            fs::read_to_string(workspace.extract_dir().join("only.txt")).unwrap(),
            "one"
        );

        workspace.remove().unwrap();
        assert!(!root.exists());
    }

    #[test]
    fn only_directories_of_killed_runs_are_removed() {
        let temp = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<String>| {
            let dir = temp.path().join(name);
            fs::create_dir(&dir).unwrap();
            if let Some(owner) = owner {
                fs::write(dir.join(OWNER_FILE), owner).unwrap();
            }
            dir
        };
        let running = make(
            "leakscope-extract-running",
            Some(owner_line(std::process::id())),
        );
        let reused_pid = make(
            "leakscope-extract-reused",
            Some(format!("{} 1", std::process::id())),
        );
        let dead = make("leakscope-extract-dead", Some("999999999 5".into()));
        let unknown = make("leakscope-extract-unknown", None);
        let other = make("something-else", Some("999999999 5".into()));
        remove_abandoned(temp.path());
        assert!(running.exists() && unknown.exists() && other.exists());
        assert!(!reused_pid.exists() && !dead.exists());
    }

    #[test]
    fn a_bad_archive_fails_before_anything_is_created() {
        let scratch = tempfile::tempdir().unwrap();
        let bad = scratch.path().join("bad.tar");
        fs::write(&bad, "not a tar").unwrap();
        let options = ExtractOptions {
            archive: Some(bad),
            ..ExtractOptions::default()
        };
        let err = ExtractWorkspace::create(&options, None).unwrap_err();
        assert!(
            matches!(err, ExtractError::InvalidArchive { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn an_fd_budget_beyond_the_limit_fails_before_the_run() {
        let options = ExtractOptions {
            rounds: u64::MAX / 2,
            inject_leak: InjectLeak::Fd,
            ..ExtractOptions::default()
        };
        let err = ExtractWorkspace::create(&options, None).unwrap_err();
        assert!(matches!(err, ExtractError::FdBudget { .. }), "{err:?}");
    }
}
