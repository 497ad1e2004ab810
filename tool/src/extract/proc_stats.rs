//! The per-round numbers of the worker (RSS, open fds, mappings), read from /proc/self.
//!
//! Read by hand rather than through the `procfs` crate: three tiny files, and this way the
//! worker adds no dependency to the binary it runs inside.

use std::{fs, io};

use super::ExtractError;

/// A snapshot of the resources the original report watched, plus the ones leakscope traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ProcessStats {
    /// Resident set size in bytes (statm's `resident` pages times the page size).
    pub(crate) rss_bytes: u64,
    /// Open file descriptors.
    pub(crate) fds: u64,
    /// Lines of /proc/self/maps (VMAs; adjacent compatible mappings are merged by the kernel).
    pub(crate) mappings: u64,
}

impl ProcessStats {
    pub(crate) fn read() -> Result<ProcessStats, ExtractError> {
        Ok(ProcessStats {
            rss_bytes: rss_bytes().map_err(proc_error("/proc/self/statm"))?,
            fds: open_fd_count().map_err(proc_error("/proc/self/fd"))?,
            mappings: mapping_count().map_err(proc_error("/proc/self/maps"))?,
        })
    }
}

fn proc_error(what: &'static str) -> impl FnOnce(io::Error) -> ExtractError {
    move |source| ExtractError::ProcStats { what, source }
}

/// RSS in bytes from /proc/self/statm (second field, in pages).
pub(crate) fn rss_bytes() -> io::Result<u64> {
    let statm = fs::read_to_string("/proc/self/statm")?;
    let resident_pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/self/statm: {statm:?}")))?;
    Ok(resident_pages * procfs::page_size())
}

/// Open fds: the entries of /proc/self/fd, minus the one the listing itself holds open while
/// it reads the directory (it always shows up in its own listing).
pub(crate) fn open_fd_count() -> io::Result<u64> {
    let mut entries = 0u64;
    for entry in fs::read_dir("/proc/self/fd")? {
        entry?;
        entries += 1;
    }
    Ok(entries.saturating_sub(1))
}

/// How many open fds of this process refer to `path` (the injection tests' check).
#[cfg(test)]
pub(crate) fn fds_pointing_at(path: &std::path::Path) -> io::Result<usize> {
    let mut count = 0;
    for entry in fs::read_dir("/proc/self/fd")? {
        // An fd may close between listing and readlink; that fd simply does not count.
        if let Ok(target) = fs::read_link(entry?.path())
            && target == path
        {
            count += 1;
        }
    }
    Ok(count)
}

/// VMAs: the lines of /proc/self/maps.
pub(crate) fn mapping_count() -> io::Result<u64> {
    let maps = fs::read_to_string("/proc/self/maps")?;
    Ok(maps.lines().count() as u64)
}

/// Anonymous: no backing file (unnamed, or named with PR_SET_VMA_ANON_NAME).
#[cfg(test)]
pub(crate) fn is_anonymous(map: &procfs::process::MemoryMap) -> bool {
    use procfs::process::MMapPath;
    match &map.pathname {
        MMapPath::Anonymous => true,
        MMapPath::Other(name) => name.starts_with("anon:"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_of_this_process_is_plausible() {
        let stats = ProcessStats::read().unwrap();
        assert!(stats.rss_bytes > 0);
        assert!(stats.fds >= 1, "{stats:?}");
        assert!(stats.mappings >= 5, "{stats:?}");
    }
}
