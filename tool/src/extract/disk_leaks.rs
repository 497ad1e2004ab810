//! The two deliberate leaks that are not memory: `--inject-leak tempfile` leaves a file on
//! disk per iteration, `--inject-leak watch` an inotify watch. Both live in the workspace,
//! next to the extraction directory, so removing the workspace (at the end, on an error, on
//! Ctrl-C) removes everything they left:
//!
//! ```text
//! <workspace>/
//!     extract/   the worker's --dir
//!     tmp/       tempfile: leakscope-injected-XXXXXX, 4 KiB each, never removed
//!     watched/   watch: 0, 1, 2, ... one empty file per iteration, made by the parent
//! ```
//!
//! Why the watched files are made by the parent, before the worker starts: a watch needs an
//! inode of its own (a second inotify_add_watch on the same inode returns the same watch), so
//! each iteration needs a new path. Creating it inside the iteration would leak a file per
//! iteration as well, and the run would show two leaks where one was injected. Creating them
//! in the worker before its first iteration would keep the files class flat, but 200,000
//! creations while traced risk lost events, which make every verdict inconclusive. Removing
//! each path after adding its watch is no way out either: deleting a watched inode drops its
//! watch in the kernel. A hard link per iteration would be a new file too. So the parent,
//! which is not traced, makes them all up front, and the worker's iterations only add watches.

use std::{
    ffi::CString,
    fs::{self, OpenOptions},
    io::{self, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
        unix::{ffi::OsStrExt as _, fs::chown},
    },
    path::{Path, PathBuf},
};

use super::{ExtractError, InjectLeak};

/// Bytes written into each file `--inject-leak tempfile` leaves behind.
pub(crate) const TEMPFILE_LEAK_BYTES: usize = 4096;

/// The name `--inject-leak tempfile` gives its files, before the random suffix.
pub(crate) const TEMPFILE_PREFIX: &str = "leakscope-injected-";

/// Watches left for everything else the user runs (editors, file managers, systemd):
/// max_user_watches is per user, and what they hold is not counted here.
const WATCH_HEADROOM: u64 = 8192;

/// Free space `--inject-leak tempfile` leaves on the file system besides its files.
const DISK_HEADROOM_BYTES: u64 = 256 << 20;

/// The directory `--inject-leak tempfile` leaves its files in: a sibling of `extract_dir`.
pub(crate) fn temp_dir(extract_dir: &Path) -> PathBuf {
    extract_dir.with_file_name("tmp")
}

/// The path iteration `iteration` of `--inject-leak watch` watches.
pub(crate) fn watch_target(extract_dir: &Path, iteration: u64) -> PathBuf {
    extract_dir
        .with_file_name("watched")
        .join(iteration.to_string())
}

/// The parent's part, before anything is traced: checks that the run fits the disk or the
/// inotify limit, and makes the directory (and for `watch`, every watched file).
/// `owner` is `--user`'s (uid, gid): the worker must be able to write to `tmp/`.
pub(crate) fn prepare_workspace(
    kind: InjectLeak,
    extract_dir: &Path,
    total_iterations: u64,
    owner: Option<(u32, u32)>,
) -> Result<(), ExtractError> {
    let give = |path: &Path| match owner {
        Some((uid, gid)) => chown(path, Some(uid), Some(gid)),
        None => Ok(()),
    };
    match kind {
        InjectLeak::Tempfile => {
            let dir = temp_dir(extract_dir);
            fs::create_dir(&dir).map_err(ExtractError::Workspace)?;
            give(&dir).map_err(ExtractError::Workspace)?;
            check_disk(&dir, total_iterations)
        }
        InjectLeak::Watch => {
            check_watch_budget(total_iterations)?;
            let dir = watch_target(extract_dir, 0);
            let dir = dir
                .parent()
                .expect("a watch target is inside its directory");
            fs::create_dir(dir).map_err(ExtractError::Workspace)?;
            give(dir).map_err(ExtractError::Workspace)?;
            for iteration in 0..total_iterations {
                let target = watch_target(extract_dir, iteration);
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(ExtractError::Workspace)?;
                // Readable by the worker whatever the umask: inotify_add_watch needs read
                // permission on what it watches.
                give(&target).map_err(ExtractError::Workspace)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `--inject-leak watch` holds one watch per iteration until the worker exits.
pub(crate) fn check_watch_budget(total_iterations: u64) -> Result<(), ExtractError> {
    let Some(limit) = max_user_watches() else {
        return Ok(());
    };
    if total_iterations.saturating_add(WATCH_HEADROOM) > limit {
        return Err(ExtractError::WatchBudget {
            needed: total_iterations,
            limit,
            usable: limit.saturating_sub(WATCH_HEADROOM),
        });
    }
    Ok(())
}

/// The kernel's per-user inotify watch limit (`None` when inotify is not there to ask).
fn max_user_watches() -> Option<u64> {
    fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `--inject-leak tempfile` fills rounds x iterations x 4 KiB of the workspace's file system.
fn check_disk(dir: &Path, total_iterations: u64) -> Result<(), ExtractError> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|errno| ExtractError::Workspace(io::Error::from(errno)))?;
    // Each file takes at least one block, whatever the block size.
    let block = (stat.fragment_size() as u64).max(1);
    let per_file = (TEMPFILE_LEAK_BYTES as u64).div_ceil(block).max(1) * block;
    let needed = total_iterations.saturating_mul(per_file);
    let available = (stat.blocks_available() as u64).saturating_mul(block);
    let inodes = stat.files_available() as u64;
    // A file system without inode accounting (btrfs) reports 0 total inodes.
    let inodes_short = stat.files() > 0 && inodes < total_iterations;
    if needed.saturating_add(DISK_HEADROOM_BYTES) > available || inodes_short {
        return Err(ExtractError::DiskBudget {
            dir: dir.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

/// The worker's state for the leaks that need some: the inotify instance the watches are
/// added to (one per worker, open until it exits, so the watches stay).
pub(crate) struct DiskLeaks {
    inotify: Option<OwnedFd>,
}

impl DiskLeaks {
    pub(crate) fn new(kind: InjectLeak) -> io::Result<DiskLeaks> {
        let inotify = match kind {
            InjectLeak::Watch => Some(inotify_instance()?),
            _ => None,
        };
        Ok(DiskLeaks { inotify })
    }

    /// This iteration's leak of `kind`, if it is one of these two.
    pub(crate) fn inject(
        &self,
        kind: InjectLeak,
        extract_dir: &Path,
        iteration: u64,
    ) -> io::Result<()> {
        match (kind, &self.inotify) {
            (InjectLeak::Tempfile, _) => injected_tempfile_leak(&temp_dir(extract_dir)).map(drop),
            (InjectLeak::Watch, Some(inotify)) => {
                injected_watch_leak(inotify.as_raw_fd(), &watch_target(extract_dir, iteration))
                    .map(drop)
            }
            (InjectLeak::Watch, None) => Err(io::Error::other("no inotify instance")),
            _ => Ok(()),
        }
    }
}

fn inotify_instance() -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 takes no pointers; a valid return is a new fd we own.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The temp-file leak: creates `<dir>/leakscope-injected-XXXXXX` (O_CREAT|O_EXCL, a random
/// suffix as mkstemp makes), writes 4096 bytes, closes it and never removes it. Only the
/// file is leaked, not its fd. Returns its path (for tests).
#[inline(never)]
pub(crate) fn injected_tempfile_leak(dir: &Path) -> io::Result<PathBuf> {
    let path = create_and_fill_temp_file(dir)?;
    Ok(std::hint::black_box(path))
}

#[inline(never)]
fn create_and_fill_temp_file(dir: &Path) -> io::Result<PathBuf> {
    let file = tempfile::Builder::new()
        .prefix(TEMPFILE_PREFIX)
        .rand_bytes(6)
        .tempfile_in(dir)?;
    let (mut file, path) = file.keep().map_err(|e| e.error)?;
    file.write_all(&[0x5a; TEMPFILE_LEAK_BYTES])?;
    // Dropping `file` closes the fd: the file stays, the fd does not.
    drop(file);
    Ok(path)
}

/// The watch leak: one inotify watch on `path`, never removed. Returns the watch
/// descriptor (for tests).
#[inline(never)]
pub(crate) fn injected_watch_leak(inotify: RawFd, path: &Path) -> io::Result<i32> {
    let wd = add_inotify_watch(inotify, path)?;
    Ok(std::hint::black_box(wd))
}

#[inline(never)]
fn add_inotify_watch(inotify: RawFd, path: &Path) -> io::Result<i32> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let wd = unsafe { libc::inotify_add_watch(inotify, path.as_ptr(), libc::IN_MODIFY) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

#[cfg(test)]
#[path = "disk_leaks_tests.rs"]
mod tests;
