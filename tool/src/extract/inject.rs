//! `--inject-leak`: one deliberate leak per iteration, so a user can see what each kind of leak
//! looks like in the report and check that leakscope finds it.
//!
//! Each leak lives in its own `#[inline(never)]` function named `injected_*_leak`, so the
//! report's site (a symbolized stack) points at code whose name says what it is. The syscall
//! itself is made one call further down, in a small `#[inline(never)]` helper: glibc's wrappers
//! keep no frame pointer, so a frame-pointer unwind from inside them skips the frame that
//! called them. With the helper in between, the skipped frame is the helper, and the
//! `injected_*_leak` function stays in the stack. Work after the helper's return (touching the
//! memory) also keeps the call from becoming a tail call, which would drop the frame too.

use std::{
    fmt,
    fs::OpenOptions,
    io,
    os::fd::{IntoRawFd, RawFd},
    path::Path,
};

use super::{ExtractError, disk_leaks::DiskLeaks};

/// The file `--inject-leak fd` opens (and never closes) in the extraction directory, so the
/// report's fd site is a path that says where it came from.
pub(crate) const INJECTED_FD_FILE_NAME: &str = ".leakscope-injected-fd";

/// Size of the mapping `--inject-leak mmap` leaks per iteration.
pub(crate) const MMAP_LEAK_BYTES: usize = 64 * 1024;

/// Bytes of brk heap `--inject-leak heap` leaks per iteration.
pub(crate) const HEAP_LEAK_BYTES: usize = 4096;

/// fds the worker needs besides the leaked ones: stdio, the file tar is writing, /proc reads.
const FD_HEADROOM: u64 = 64;

/// Which deliberate leak, if any, to add to every iteration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InjectLeak {
    /// No deliberate leak: only what extraction itself does.
    #[default]
    None,
    /// One fd per iteration, opened on `<dir>/.leakscope-injected-fd` and never closed.
    Fd,
    /// One 64 KiB private anonymous mapping per iteration, never unmapped.
    Mmap,
    /// 4096 bytes of brk heap per iteration, never freed.
    Heap,
    /// One 4 KiB file per iteration, `<workspace>/tmp/leakscope-injected-XXXXXX`, never
    /// removed (its fd is closed).
    Tempfile,
    /// One inotify watch per iteration on a new path, never removed.
    Watch,
}

impl InjectLeak {
    pub(crate) const ALL: [InjectLeak; 6] = [
        InjectLeak::None,
        InjectLeak::Fd,
        InjectLeak::Mmap,
        InjectLeak::Heap,
        InjectLeak::Tempfile,
        InjectLeak::Watch,
    ];

    /// The name used on the command line (`none`, `fd`, `mmap`, `heap`, `tempfile`, `watch`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InjectLeak::None => "none",
            InjectLeak::Fd => "fd",
            InjectLeak::Mmap => "mmap",
            InjectLeak::Heap => "heap",
            InjectLeak::Tempfile => "tempfile",
            InjectLeak::Watch => "watch",
        }
    }

    /// Checks, before the first iteration, that the whole run's leaks fit in the process's
    /// limits, so a run fails at once with advice instead of after minutes with EMFILE.
    ///
    /// The fd leak keeps one fd per iteration, so the soft RLIMIT_NOFILE is raised as far as
    /// needed (an unprivileged process may raise it up to the hard limit). The watch leak
    /// keeps one inotify watch per iteration, which must fit max_user_watches (a system
    /// setting leakscope does not change). The tempfile leak's disk space is checked where
    /// the workspace is made ([`super::disk_leaks::prepare_workspace`]).
    pub(crate) fn prepare(self, total_iterations: u64) -> Result<(), ExtractError> {
        if self == InjectLeak::Watch {
            return super::disk_leaks::check_watch_budget(total_iterations);
        }
        if self != InjectLeak::Fd {
            return Ok(());
        }
        let needed = total_iterations.saturating_add(FD_HEADROOM);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(fd_setup_error(io::Error::last_os_error()));
        }
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur >= needed {
            return Ok(());
        }
        // An unlimited hard limit is still capped by the kernel's fs.nr_open.
        let ceiling = limit.rlim_max.min(kernel_fd_ceiling());
        if ceiling < needed {
            return Err(ExtractError::FdBudget {
                needed: total_iterations,
                hard_limit: ceiling,
                usable: ceiling.saturating_sub(FD_HEADROOM),
            });
        }
        limit.rlim_cur = needed;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(fd_setup_error(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Makes this iteration's leak. `dir` is the extraction directory (the fd leak's file is
    /// in it, the tempfile and watch leaks' directories next to it); `disk` holds the watch
    /// leak's inotify instance.
    pub(crate) fn inject(
        self,
        disk: &DiskLeaks,
        dir: &Path,
        iteration: u64,
    ) -> Result<(), ExtractError> {
        let result = match self {
            InjectLeak::None => return Ok(()),
            InjectLeak::Fd => injected_fd_leak(dir).map(drop),
            InjectLeak::Mmap => injected_mmap_leak().map(drop),
            InjectLeak::Heap => injected_heap_leak().map(drop),
            InjectLeak::Tempfile | InjectLeak::Watch => disk.inject(self, dir, iteration),
        };
        result.map_err(|source| ExtractError::Inject {
            kind: self,
            iteration,
            source,
        })
    }
}

/// The most fds any process may have (fs.nr_open); "no ceiling known" if it cannot be read.
fn kernel_fd_ceiling() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

fn fd_setup_error(source: io::Error) -> ExtractError {
    ExtractError::Inject {
        kind: InjectLeak::Fd,
        iteration: 0,
        source,
    }
}

impl fmt::Display for InjectLeak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fd leak: opens `<dir>/.leakscope-injected-fd` and gives up ownership of the fd, so
/// nothing ever closes it. Returns the fd (for tests).
#[inline(never)]
pub(crate) fn injected_fd_leak(dir: &Path) -> io::Result<RawFd> {
    let fd = open_injected_fd_file(&dir.join(INJECTED_FD_FILE_NAME))?;
    Ok(std::hint::black_box(fd))
}

#[inline(never)]
fn open_injected_fd_file(path: &Path) -> io::Result<RawFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // `into_raw_fd` takes the fd out of `File`, whose drop would otherwise close it.
    Ok(file.into_raw_fd())
}

/// The mmap leak: one 64 KiB PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS mapping that is
/// never unmapped. Returns its address (for tests).
///
/// Only the first page is touched. That makes every leaked mapping count in RSS (4 KiB per
/// iteration) while keeping the default run (20 x 10000) at about 800 MiB of RSS; touching all
/// 16 pages would make it 12.5 GiB and push small machines into the OOM killer. The mapping's
/// size, which is what the mmap class reports, is the full 64 KiB either way.
///
/// The kernel merges adjacent anonymous mappings with the same flags into one VMA, so the
/// mapping count in /proc/self/maps may stay flat while the mapped bytes grow; that merging is
/// also what lets 200,000 of them stay under vm.max_map_count.
#[inline(never)]
pub(crate) fn injected_mmap_leak() -> io::Result<usize> {
    let address = map_anonymous_read_write(MMAP_LEAK_BYTES)?;
    // SAFETY: `address` is the start of a fresh, writable mapping of MMAP_LEAK_BYTES bytes.
    unsafe { std::ptr::write_volatile(address, 1) };
    Ok(address as usize)
}

#[inline(never)]
fn map_anonymous_read_write(len: usize) -> io::Result<*mut u8> {
    // SAFETY: a new anonymous mapping at an address of the kernel's choosing touches no
    // existing memory.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(address.cast())
}

/// The heap leak: moves the program break up by 4096 bytes and never gives them back. Returns
/// the start of the new bytes (for tests).
///
/// Why `sbrk` and not `Box::leak(vec![0u8; 4096])`: the contract promises brk growth of 4096
/// bytes per iteration, and only sbrk promises that.
/// - glibc malloc serves 4096 bytes from brk only in the main arena. Any other thread (every
///   unit test runs on one) gets an mmap'ed arena, and brk does not move at all.
/// - malloc hands out chunks that extraction freed before it grows brk, so the growth per
///   iteration is only right on average, and every chunk carries a 16-byte header.
/// - A `#[global_allocator]` (jemalloc, mimalloc) in the binary would bypass brk completely.
///
/// The cost: sbrk is not synchronized with malloc's own sbrk calls on other threads, so this
/// must only run while no other thread allocates from the main arena. The worker is the child
/// process's only thread; tests call it in a forked child. glibc malloc copes with a break that
/// someone else moved (its "foreign sbrk" case) and never trims below it. musl refuses sbrk
/// with a nonzero increment; that shows up as an ENOMEM error, not as a wrong number.
#[inline(never)]
pub(crate) fn injected_heap_leak() -> io::Result<usize> {
    let start = grow_program_break(HEAP_LEAK_BYTES)?;
    // Touch every byte, as a program using its leaked buffer would, so the leak counts in RSS.
    // SAFETY: sbrk just made [start, start + HEAP_LEAK_BYTES) ours, readable and writable.
    unsafe { std::ptr::write_bytes(start, 0xa5, HEAP_LEAK_BYTES) };
    Ok(start as usize)
}

#[inline(never)]
fn grow_program_break(len: usize) -> io::Result<*mut u8> {
    let increment = libc::intptr_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: sbrk only moves the break; the new bytes belong to nobody else. See
    // `injected_heap_leak` for why no other thread may be inside malloc's sbrk meanwhile.
    let previous_break = unsafe { libc::sbrk(increment) };
    if previous_break as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(previous_break.cast())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{proc_stats, test_support};

    #[test]
    fn value_names_match_the_contract() {
        let names = InjectLeak::ALL.map(InjectLeak::as_str);
        assert_eq!(names, ["none", "fd", "mmap", "heap", "tempfile", "watch"]);
        for variant in &InjectLeak::ALL {
            assert_eq!(variant.as_str(), variant.to_string());
            assert_eq!(
                serde_json::to_string(variant).unwrap(),
                format!("\"{variant}\"")
            );
        }
    }

    #[test]
    fn the_fd_leak_keeps_a_named_fd_open() {
        let _serial = test_support::serial();
        let dir = tempfile::tempdir().unwrap();
        let fds: Vec<RawFd> = (0..5)
            .map(|_| injected_fd_leak(dir.path()).unwrap())
            .collect();
        let target = dir.path().join(INJECTED_FD_FILE_NAME);
        assert_eq!(proc_stats::fds_pointing_at(&target).unwrap(), 5);
        for fd in fds {
            // SAFETY: these fds were leaked above and nothing else owns them.
            unsafe { libc::close(fd) };
        }
        assert_eq!(proc_stats::fds_pointing_at(&target).unwrap(), 0);
    }

    #[test]
    fn the_mmap_leak_stays_mapped_and_resident() {
        let addresses: Vec<usize> = (0..8).map(|_| injected_mmap_leak().unwrap()).collect();
        use procfs::process::{MMPermissions, Process};
        let regions = Process::myself().unwrap().maps().unwrap();
        for &address in &addresses {
            let (address, len) = (address as u64, MMAP_LEAK_BYTES as u64);
            let region = regions
                .iter()
                .find(|r| r.address.0 <= address && address + len <= r.address.1)
                .unwrap_or_else(|| panic!("{address:#x} is not mapped"));
            let rw_private = MMPermissions::READ | MMPermissions::WRITE | MMPermissions::PRIVATE;
            assert!(region.perms.contains(rw_private), "{region:?}");
            assert!(!region.perms.contains(MMPermissions::EXECUTE), "{region:?}");
            assert!(super::super::proc_stats::is_anonymous(region), "{region:?}");
            assert!(
                is_resident(address as usize),
                "{address:#x}: first page not resident"
            );
        }
    }

    fn is_resident(address: usize) -> bool {
        let mut vec = [0u8; 1];
        // SAFETY: mincore writes one byte per page of the 1-page range into `vec`.
        let rc = unsafe { libc::mincore(address as *mut libc::c_void, 1, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        vec[0] & 1 == 1
    }

    #[test]
    fn the_heap_leak_moves_brk_by_exactly_4096_each_time() {
        // In a forked child: the only thread there, so no malloc can race our sbrk.
        let growth = test_support::in_forked_child(|| {
            let before = current_break();
            for _ in 0..40 {
                let start = injected_heap_leak().map_err(|e| e.to_string())?;
                // SAFETY: injected_heap_leak filled these bytes.
                let last = unsafe { *((start + HEAP_LEAK_BYTES - 1) as *const u8) };
                if last != 0xa5 {
                    return Err("the leaked bytes were not written".to_owned());
                }
            }
            Ok((current_break() - before) as u64)
        });
        assert_eq!(growth, Ok(40 * HEAP_LEAK_BYTES as u64));
    }

    fn current_break() -> usize {
        // SAFETY: sbrk(0) only reads the current break.
        unsafe { libc::sbrk(0) as usize }
    }

    #[test]
    fn prepare_refuses_an_fd_budget_beyond_the_hard_limit() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        let err = InjectLeak::Fd
            .prepare(limit.rlim_max.saturating_add(1))
            .unwrap_err();
        assert!(matches!(err, ExtractError::FdBudget { .. }), "{err:?}");
        assert!(err.to_string().contains("lower --rounds or --iterations"));
        InjectLeak::None.prepare(u64::MAX).unwrap();
        InjectLeak::Mmap.prepare(u64::MAX).unwrap();
    }
}
