//! `leakscope extract`: the bug report's scenario, built in.
//!
//! The report: "Repeated archive extraction, 10,000 times per round, 20 rounds ... memory usage
//! grows continuously." This module is the workload half of that command, the code that runs
//! inside the traced child (`leakscope __extract-worker ...`):
//!
//! - [`archive`] builds or reads the tar bytes and knows what they should extract to;
//! - [`marker`] is the uprobe target that marks each iteration exactly;
//! - [`inject`] holds the deliberate leaks of `--inject-leak`, [`disk_leaks`] the two that
//!   leave files and inotify watches;
//! - [`proc_stats`] reads RSS, fds and mappings from /proc for the per-round lines;
//! - [`worker`] runs the rounds;
//! - [`options`] holds what `leakscope extract` and the hidden worker command are asked to do
//!   (their clap structs live in `crate::cli::extract`), and [`workspace`] the parent's
//!   temporary directory that the worker extracts into.

pub(crate) mod archive;
pub(crate) mod disk_leaks;
pub(crate) mod inject;
pub(crate) mod marker;
pub(crate) mod options;
pub(crate) mod proc_stats;
pub(crate) mod worker;
pub(crate) mod workspace;

use std::{io, path::PathBuf};

pub(crate) use inject::InjectLeak;
pub(crate) use marker::MARKER_SYMBOL;
pub(crate) use options::{
    DEFAULT_ITERATIONS, DEFAULT_ROUNDS, ExtractOptions, WORKER_SUBCOMMAND, WorkerConfig,
};
pub(crate) use worker::run_worker;
#[cfg(test)]
pub(crate) use worker::run_worker_to;
pub(crate) use workspace::ExtractWorkspace;

/// Everything that can go wrong in `leakscope extract`, on either side of the fork.
///
/// Each message names the file, entry or iteration involved, because the person reading it is
/// usually looking at a traced run and needs to know whether the workload or the tool failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExtractError {
    /// A `--file NAME=CONTENT` spec without '=' or with a name that is empty or unsafe.
    #[error("invalid --file '{spec}': {reason}")]
    InvalidFileSpec { spec: String, reason: String },

    /// Two entries with the same name: the second would silently replace the first.
    #[error("the archive would contain '{name}' twice; give each --file a different NAME")]
    DuplicateEntry { name: String },

    /// `--archive PATH` or the worker's `--archive-file` could not be read at all.
    #[error("cannot read the archive {}", path.display())]
    ReadArchive { path: PathBuf, source: io::Error },

    /// The bytes are not a tar archive we can extract (corrupt, truncated, empty, or with an
    /// entry that would land outside the extraction directory).
    #[error("{origin} is not a usable tar archive: {reason}")]
    InvalidArchive { origin: String, reason: String },

    /// Building the in-memory archive failed (only on an I/O error of the in-memory writer).
    #[error("building the in-memory archive failed")]
    BuildArchive(#[source] io::Error),

    /// Extraction failed, for example because the directory is not writable.
    #[error("extracting the archive into {} failed at iteration {iteration}", dir.display())]
    Extract {
        dir: PathBuf,
        iteration: u64,
        source: io::Error,
    },

    /// A deliberate leak could not be made (the fd limit, the mapping limit or brk ran out).
    #[error("--inject-leak {kind} failed at iteration {iteration}")]
    Inject {
        kind: InjectLeak,
        iteration: u64,
        source: io::Error,
    },

    /// `--inject-leak fd` keeps one fd per iteration, so the run needs that many fds up front.
    #[error(
        "--inject-leak fd keeps {needed} fds open by the end of the run, but the fd limit \
         (RLIMIT_NOFILE) is {hard_limit}; lower --rounds or --iterations so that \
         rounds x iterations stays below about {usable}, or raise the hard limit (ulimit -Hn)"
    )]
    FdBudget {
        needed: u64,
        hard_limit: u64,
        usable: u64,
    },

    /// `--inject-leak watch` keeps one inotify watch per iteration until the worker exits.
    #[error(
        "--inject-leak watch keeps {needed} inotify watches by the end of the run, but \
         fs.inotify.max_user_watches is {limit}; lower --rounds or --iterations so that \
         rounds x iterations stays below about {usable} (watches other programs of the same \
         user hold count too), or raise the limit (sysctl fs.inotify.max_user_watches)"
    )]
    WatchBudget {
        needed: u64,
        limit: u64,
        usable: u64,
    },

    /// `--inject-leak tempfile` leaves rounds x iterations files of 4 KiB on disk.
    #[error(
        "--inject-leak tempfile leaves {} of files in {} by the end of the run, but only {} \
         is free there (or too few inodes); lower --rounds or --iterations, or set TMPDIR to \
         a file system with more room",
        crate::units::bytes(*needed as f64),
        dir.display(),
        crate::units::bytes(*available as f64)
    )]
    DiskBudget {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },

    /// /proc/self could not be read for the per-round numbers.
    #[error("reading {what} failed")]
    ProcStats {
        what: &'static str,
        source: io::Error,
    },

    /// After the run, the extracted files differ from the archive's entries.
    #[error("the extracted files do not match the archive:\n  {}", mismatches.join("\n  "))]
    Verify { mismatches: Vec<String> },

    /// Writing a round line failed (for example, the parent closed the pipe).
    #[error("writing the round statistics failed")]
    Output(#[source] io::Error),

    /// Setting up the parent's temporary directory failed.
    #[error("preparing the extraction directory failed")]
    Workspace(#[source] io::Error),

    /// The worker was given no work: zero rounds or iterations (clap refuses both, so only
    /// a caller that builds a [`WorkerConfig`] by hand can).
    #[error("invalid worker arguments: {0}")]
    WorkerArgs(String),
}

impl ExtractError {
    /// The process exit status for this error, following the contract: a malformed `--file` is
    /// bad usage; everything else, including a corrupt archive or an unwritable directory,
    /// is a failure of the run.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            ExtractError::InvalidFileSpec { .. } | ExtractError::DuplicateEntry { .. } => {
                crate::exit_code::USAGE
            }
            _ => crate::exit_code::FAILURE,
        }
    }
}

/// Helpers shared by the tests of several submodules.
#[cfg(test)]
mod test_support {
    use std::{
        io::Read,
        os::fd::FromRawFd,
        sync::{Mutex, MutexGuard},
    };

    /// Serializes the tests that count process-wide resources (fds, mappings, brk), so they
    /// do not see each other's effects.
    pub(crate) fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        // A failed test poisons the lock; the next one should still run.
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` in a forked child and returns its result.
    ///
    /// The test binary runs many tests on many threads, and any of them may open fds, map
    /// memory or call malloc at any moment. A forked child has one thread, so what `work`
    /// measures there is its own doing, and `sbrk` cannot race a malloc elsewhere. `work` runs
    /// on a new thread of the child so that its malloc uses a thread arena, never brk, even
    /// when the harness runs the test on its main thread.
    pub(crate) fn in_forked_child<T, F>(work: F) -> Result<T, String>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: FnOnce() -> Result<T, String> + Send,
    {
        let mut pipe_fds = [0; 2];
        // SAFETY: pipe writes two fds into the array.
        assert_eq!(unsafe { libc::pipe(pipe_fds.as_mut_ptr()) }, 0);
        let [read_fd, write_fd] = pipe_fds;
        // SAFETY: the child only runs `work` on a thread, writes one message and `_exit`s;
        // glibc makes malloc usable in the child of a multithreaded fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: close our copy of the read end, which the child does not use.
            unsafe { libc::close(read_fd) };
            let result = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                            .unwrap_or_else(|_| Err("the child panicked".to_owned()))
                    })
                    .join()
                    .unwrap_or_else(|_| Err("the child's thread panicked".to_owned()))
            });
            let message = serde_json::to_vec(&result).unwrap_or_default();
            let mut written = 0;
            while written < message.len() {
                // SAFETY: writes from a live buffer to our pipe end.
                let n = unsafe {
                    libc::write(
                        write_fd,
                        message[written..].as_ptr().cast(),
                        message.len() - written,
                    )
                };
                if n <= 0 {
                    break;
                }
                written += n as usize;
            }
            // SAFETY: leave without running the test harness's exit path in the child.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: close the parent's copy of the write end, so EOF arrives when the child exits.
        unsafe { libc::close(write_fd) };
        // SAFETY: read_fd is ours and nothing else owns it.
        let mut reader = unsafe { std::fs::File::from_raw_fd(read_fd) };
        let mut message = Vec::new();
        reader
            .read_to_end(&mut message)
            .expect("reading from the child");
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        serde_json::from_slice(&message)
            .unwrap_or_else(|e| Err(format!("no result from the child ({e}), status {status}")))
    }
}
