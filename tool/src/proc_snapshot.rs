//! What a process already holds when tracing starts, read from /proc.
//!
//! Resources that predate the probes must be known to the ledger, or their later release
//! would look like the release of something never acquired (and a dup2 onto one would hide
//! an implicit close).

use std::{fs, path::PathBuf};

use procfs::process::{FDTarget, LimitValue, MMapPath, Process};
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum SnapshotError {
    #[error("no process with pid {0}")]
    NoSuchProcess(u32),
    #[error("cannot read /proc/{pid}")]
    Proc { pid: u32, source: procfs::ProcError },
}

impl SnapshotError {
    /// A pid that does not exist is the user's argument; an unreadable /proc fails the run.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            SnapshotError::NoSuchProcess(_) => crate::exit_code::USAGE,
            SnapshotError::Proc { .. } => crate::exit_code::FAILURE,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FdSnapshot {
    pub(crate) fd: i32,
    /// What the `/proc/PID/fd/N` link points to (a path, a socket, an anon inode, ...);
    /// the ledger names the site from it.
    pub(crate) link: FDTarget,
    pub(crate) cloexec: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MappingSnapshot {
    pub(crate) start: u64,
    pub(crate) len: u64,
    /// What it maps, as `/proc/PID/maps` says.
    pub(crate) description: MMapPath,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) fds: Vec<FdSnapshot>,
    pub(crate) mappings: Vec<MappingSnapshot>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) exe: Option<PathBuf>,
}

/// The soft RLIMIT_NOFILE of `pid`: where its opens start failing with EMFILE. `None` when
/// it cannot be read (the process is gone) or is unlimited.
pub(crate) fn fd_limit(pid: u32) -> Option<u64> {
    match Process::new(pid as i32)
        .ok()?
        .limits()
        .ok()?
        .max_open_files
        .soft_limit
    {
        LimitValue::Value(limit) => Some(limit),
        LimitValue::Unlimited => None,
    }
}

pub(crate) fn take(pid: u32) -> Result<Snapshot, SnapshotError> {
    let process = Process::new(pid as i32).map_err(|source| match source {
        procfs::ProcError::NotFound(_) => SnapshotError::NoSuchProcess(pid),
        source => SnapshotError::Proc { pid, source },
    })?;
    let proc_err = |source| SnapshotError::Proc { pid, source };
    let fds = process
        .fd()
        .map_err(proc_err)?
        .filter_map(Result::ok) // an fd closed while we list them is simply not there
        .map(|info| FdSnapshot {
            fd: info.fd,
            cloexec: fd_is_cloexec(pid, info.fd),
            link: info.target,
        })
        .collect();
    let mappings = process
        .maps()
        .map_err(proc_err)?
        .into_iter()
        .map(|map| MappingSnapshot {
            start: map.address.0,
            len: map.address.1 - map.address.0,
            description: map.pathname,
        })
        .collect();
    Ok(Snapshot {
        fds,
        mappings,
        cwd: process.cwd().ok(),
        exe: process.exe().ok(),
    })
}

/// `/proc/PID/fdinfo/FD` has the open flags in octal; O_CLOEXEC is 0o2000000. (procfs reads
/// the fd's link and mode, not its fdinfo flags.)
fn fd_is_cloexec(pid: u32, fd: i32) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
        return false;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| u64::from_str_radix(flags.trim(), 8).ok())
        .is_some_and(|flags| flags & libc::O_CLOEXEC as u64 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sees_own_cloexec_file() {
        let file = tempfile::tempfile().unwrap(); // std opens with O_CLOEXEC
        let snapshot = take(std::process::id()).unwrap();
        let entry = snapshot
            .fds
            .iter()
            .find(|f| f.fd == file.as_raw_fd())
            .unwrap();
        assert!(entry.cloexec);
        assert!(
            matches!(&entry.link, FDTarget::Path(path) if path.is_absolute()),
            "{:?}",
            entry.link
        );
        assert!(
            snapshot
                .mappings
                .iter()
                .any(|m| m.description == MMapPath::Stack)
        );
        assert_eq!(snapshot.cwd, std::env::current_dir().ok());
    }

    #[test]
    fn unknown_pid_is_named() {
        assert!(matches!(
            take(u32::MAX / 2),
            Err(SnapshotError::NoSuchProcess(_))
        ));
    }
}
