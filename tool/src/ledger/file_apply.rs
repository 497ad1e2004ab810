//! Applying a decoded entry, cwd or watch call ([`FileOp`]): paths resolve against the
//! dirfd or the cwd as opens do, then the shared entry map or the process's watches change.

use std::sync::Arc;

use super::fd_apply::{dir_of, path_of, resolve_at};
use super::file_calls::{At, FanotifyMark, FileOp, MarkAction};
use super::records::RecordId;
use super::watches::By;
use super::{Ledger, SizeSample, paths};

impl Ledger {
    pub(super) fn apply_file(&mut self, tgid: u32, t: u64, op: FileOp) {
        let process = self.processes.entry(tgid).or_default();
        let history = &mut self.history;
        let resolve = |at: &At| {
            let path = at.path.as_deref()?;
            Some(resolve_at(history, process, at.dirfd, path))
        };
        match op {
            FileOp::Create { at, kind } => {
                if let Some(path) = resolve(&at) {
                    self.entries.create(history, (tgid, t), path, kind);
                }
            }
            FileOp::MaybeCreated => history.unknown_creations += 1,
            FileOp::Remove { at, directory } => {
                if let Some(path) = resolve(&at) {
                    self.entries.remove(&mut history.files, &path, directory, t);
                    self.watches.path_removed(history, &path, t);
                }
            }
            FileOp::Rename { from, to, exchange } => match (resolve(&from), resolve(&to)) {
                (Some(from), Some(to)) if exchange => {
                    self.entries.exchange(history, &from, &to);
                    self.watches.paths_exchanged(&from, &to);
                }
                (Some(from), Some(to)) => {
                    self.entries.rename(history, &from, &to, t);
                    self.watches.path_renamed(history, &from, &to, t);
                }
                // The new name was not captured: the entry left `from` for a place
                // unknown. Keeping it at `from` would make a later create there a
                // replacement; it is counted as removed instead (see `unknown_renames`).
                (Some(from), None) => {
                    history.unknown_renames += 1;
                    self.entries.remove(&mut history.files, &from, false, t);
                }
                (None, _) => history.unknown_renames += 1,
            },
            FileOp::Chdir { path } => {
                let new = path.map(|path| paths::resolve(&path, process.cwd.as_deref()));
                process.cwd = absolute(new);
            }
            FileOp::Fchdir { fd } => {
                process.cwd = absolute(path_of(history, process, fd).map(|p| p.to_string()));
            }
            FileOp::AddWatch { fd, wd, at } => {
                // A path the kernel did not capture still names a watch: by its fd and wd.
                let path = resolve(&at).unwrap_or_else(|| format!("(wd {wd} of fd {fd})"));
                let by = By { tgid, fd, t };
                self.watches.add_inotify(history, by, wd, &path);
            }
            FileOp::RmWatch { fd, wd } => {
                self.watches.rm_inotify(history, By { tgid, fd, t }, wd);
            }
            FileOp::FanotifyMark(FanotifyMark {
                fd,
                action,
                mark,
                mask,
                at,
            }) => {
                let by = By { tgid, fd, t };
                // Without a path the mark is on the dirfd itself.
                let path = resolve(&at)
                    .or_else(|| dir_of(history, process, at.dirfd).map(|p| p.to_string()))
                    .unwrap_or_else(|| format!("(fd {})", at.dirfd));
                match action {
                    MarkAction::Add => self.watches.add_mark(history, by, (mark, &path), mask),
                    MarkAction::Remove => {
                        self.watches.remove_mark(history, by, (mark, &path), mask);
                    }
                    MarkAction::Flush => self.watches.flush_marks(history, by, mark),
                }
            }
        }
    }

    /// Entries created and not removed, by record, with their exact paths (what the
    /// session stats for sizes when tracing ends).
    pub(crate) fn live_file_paths(&self) -> Vec<(RecordId, String)> {
        self.entries
            .live()
            .map(|(record, path)| (record, path.to_string()))
            .collect()
    }

    /// Up to `n` live entries after path `after`, wrapping around (the session's rotating
    /// sample of sizes during the run).
    pub(crate) fn live_file_window(
        &self,
        after: Option<&str>,
        n: usize,
    ) -> Vec<(RecordId, String)> {
        self.entries.window(after, n)
    }

    /// The size of entry `record` as the session found it at `time_ns` (during the run).
    pub(crate) fn note_file_size(&mut self, record: RecordId, time_ns: u64, bytes: u64) {
        self.history.file_size_samples.push(SizeSample {
            time_ns,
            record,
            bytes,
        });
    }

    /// Sizes of live entries sampled during the run, in time order.
    pub(crate) fn file_size_samples(&self) -> &[SizeSample] {
        &self.history.file_size_samples
    }

    /// Renames whose new name the kernel did not capture: each such entry left the
    /// ledger's map (counted as removed).
    pub(crate) fn unknown_renames(&self) -> u64 {
        self.history.unknown_renames
    }

    /// O_CREAT opens the kernel could not say created their file or not: each may be an
    /// entry missing from the ledger.
    pub(crate) fn unknown_creations(&self) -> u64 {
        self.history.unknown_creations
    }
}

/// A cwd the ledger can resolve against: an absolute path, or unknown.
fn absolute(path: Option<String>) -> Option<Arc<str>> {
    path.filter(|p| p.starts_with('/')).map(Arc::from)
}
