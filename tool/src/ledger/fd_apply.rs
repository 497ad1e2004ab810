//! Applying a decoded fd call ([`FdOp`]) to a process's fd table and the history.

use std::sync::Arc;

use super::fd_calls::{AT_FDCWD, FdOp};
use super::history::{History, NewFd};
use super::records::{Cause, Origin};
use super::sites::{FdKind, FdSite, FdSource, SiteKey};
use super::{Ledger, OpenedPath, Process, paths};
use crate::stacks::Frame;

impl Ledger {
    /// `frames` are the call's stack, innermost first, when it came with one.
    pub(super) fn apply_fd(
        &mut self,
        tgid: u32,
        t: u64,
        op: FdOp,
        call: (&'static str, Option<&[Frame]>),
    ) {
        let (syscall, frames) = call;
        // Only an open by path is kept for the iteration detector, with its program image.
        let image = matches!(op, FdOp::Open { .. }).then(|| self.image_of(tgid));
        let process = self.processes.entry(tgid).or_default();
        let history = &mut self.history;
        // Only calls that make an fd came with a stack (see `syscalls::fd_stack_wanted`).
        let stack = history.sites.intern_stack(frames);
        let new = |fd: i32, site, cloexec| NewFd {
            tgid,
            fd,
            site,
            cloexec,
            origin: Origin::Acquired,
            t,
        };
        match op {
            FdOp::Open {
                fd,
                dirfd,
                path,
                cloexec,
            } => {
                let resolved = resolve_at(history, process, dirfd, &path);
                // The iteration detector counts opens of a path from wherever they came.
                let path_site = history.sites.intern(SiteKey::fd_path(&resolved));
                history.opens.push(OpenedPath {
                    time_ns: t,
                    path: path_site,
                    tgid,
                    image: image.unwrap_or_default(),
                });
                let site = match stack {
                    Some(_) => history
                        .sites
                        .intern(SiteKey::fd_path(&resolved).with_stack(stack)),
                    None => path_site,
                };
                history.install(process, new(fd, site, cloexec));
                self.note_open_for_boundaries(tgid, &resolved, t);
            }
            FdOp::New { fd, kind, cloexec } => {
                if matches!(&kind, FdKind::Anon(name) if matches!(&**name, "inotify" | "fanotify"))
                {
                    self.watches.opened(history, (tgid, t), fd);
                }
                let site = history
                    .sites
                    .intern(SiteKey::fd_kind(kind).with_stack(stack));
                history.install(process, new(fd, site, cloexec));
            }
            FdOp::Pair { fds, kind, cloexec } => {
                let site = history
                    .sites
                    .intern(SiteKey::fd_kind(kind).with_stack(stack));
                for fd in fds {
                    history.install(process, new(fd, site, cloexec));
                }
            }
            FdOp::PairUnknown => history.unknown_fd_pairs += 1,
            FdOp::Close { fd } => {
                match process.fds.remove(fd) {
                    Some(entry) => history.fds.release(entry.record, t, Cause::Explicit),
                    None => history.unknown_releases += 1,
                }
                self.watches
                    .fds_closed(history, (tgid, t), (fd, fd), Cause::Implicit);
            }
            FdOp::CloseRange {
                first,
                last,
                cloexec_only: true,
            } => process.fds.mark_cloexec_range(first, last),
            FdOp::CloseRange {
                first,
                last,
                cloexec_only: false,
            } => {
                for entry in process.fds.remove_range(first, last) {
                    history.fds.release(entry.record, t, Cause::Explicit);
                }
                let clamp = |fd: u32| fd.min(i32::MAX as u32) as i32;
                let range = (clamp(first), clamp(last));
                self.watches
                    .fds_closed(history, (tgid, t), range, Cause::Implicit);
            }
            // dup2(x, x) is a no-op: nothing is closed, nothing created.
            FdOp::Dup { old, new: fd, .. } if old == fd => {}
            FdOp::Dup {
                old,
                new: fd,
                cloexec,
            } => {
                // The copy's site says what it refers to and which call kept it: a leak
                // "kept by dup" is fixed somewhere else than one kept by the open.
                let site = match fd_site(history, process, old) {
                    Some(original) => FdSite {
                        source: original.source.clone(),
                        kept_by: Some(syscall),
                        stack,
                    },
                    None => FdSite {
                        source: FdSource::DupOfUntracked,
                        kept_by: None,
                        stack,
                    },
                };
                let site = history.sites.intern(SiteKey::Fd(site));
                // dup2/dup3 onto a watching fd closes it, and its watches with it.
                self.watches
                    .fds_closed(history, (tgid, t), (fd, fd), Cause::Implicit);
                self.watches.duplicated(tgid, old, fd);
                history.install(process, new(fd, site, cloexec));
            }
            FdOp::SetCloexec { fd, on } => {
                process.fds.set_cloexec(fd, on);
            }
            FdOp::Received { fds, unread } => {
                history.unread_deliveries += u64::from(unread);
                for received in fds {
                    let site = history.sites.intern(SiteKey::fd_kind(received.kind));
                    history.install(process, new(received.fd, site, received.cloexec));
                }
            }
        }
    }
}

/// The site of `fd`'s record, if `fd` is open and an fd site.
pub(super) fn fd_site<'a>(history: &'a History, process: &Process, fd: i32) -> Option<&'a FdSite> {
    let entry = process.fds.get(fd)?;
    match history.sites.key(history.fds.get(entry.record).site) {
        SiteKey::Fd(site) => Some(site),
        _ => None,
    }
}

/// `path` as a call against `dirfd` names it: absolute, or joined to the directory fd's
/// path or the cwd (relative when those are unknown).
pub(super) fn resolve_at(history: &History, process: &Process, dirfd: i32, path: &str) -> String {
    let base = if path.starts_with('/') {
        None
    } else {
        dir_of(history, process, dirfd)
    };
    paths::resolve(path, base.as_deref())
}

/// The directory `dirfd` stands for: the cwd for AT_FDCWD, else the path the fd was opened
/// from (`None` when unknown).
pub(super) fn dir_of(history: &History, process: &Process, dirfd: i32) -> Option<Arc<str>> {
    if dirfd == AT_FDCWD {
        process.cwd.clone()
    } else {
        path_of(history, process, dirfd)
    }
}

/// The path `fd` was opened from (what a path relative to it resolves against).
pub(super) fn path_of(history: &History, process: &Process, fd: i32) -> Option<Arc<str>> {
    match &fd_site(history, process, fd)?.source {
        FdSource::Path(path) => Some(path.clone()),
        FdSource::Kind(_) | FdSource::DupOfUntracked => None,
    }
}
