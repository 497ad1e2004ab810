//! Reads of kernel structs, at the offsets the loader found in BTF ([`crate::OFFSETS`]):
//! the current task's resident set, whether an open created its file, whether an exiting
//! thread is its process's last, and whether an fd is still in the fd table.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_user};
use leakscope_common::{
    KernelOffsets, RSS_NOT_SAMPLED,
    open_flags::{self, FlagsAt},
};

use crate::{OFFSETS, arg_at};

#[inline(always)]
pub(crate) fn offsets() -> KernelOffsets {
    // Volatile: the value is patched into .rodata at load time, after the compiler ran.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// Resident pages of the current task's mm (file + anon + shmem), read the way
/// /proc/PID/statm reads them: the percpu counters' global part. With probe reads, for
/// the programs whose task pointer is untyped (uprobe, raw tracepoints); sys_exit uses
/// [`current_rss_pages_btf`].
#[inline(always)]
pub(crate) fn current_rss_pages() -> u64 {
    let off = offsets();
    if off.rss_available == 0 {
        return RSS_NOT_SAMPLED;
    }
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let Ok(mm) = (unsafe { bpf_probe_read_kernel(task.add(off.task_mm as usize) as *const u64) })
    else {
        return RSS_NOT_SAMPLED;
    };
    if mm == 0 {
        return RSS_NOT_SAMPLED; // a kernel thread, or a task past exit_mm()
    }
    let base = mm as usize + off.mm_rss_stat as usize + off.percpu_counter_count as usize;
    let stride = off.percpu_counter_size as usize;
    // MM_FILEPAGES = 0, MM_ANONPAGES = 1, MM_SHMEMPAGES = 3 (2 is swap entries).
    let mut pages: i64 = 0;
    for member in [0usize, 1, 3] {
        let addr = (base + member * stride) as *const i64;
        match unsafe { bpf_probe_read_kernel(addr) } {
            Ok(count) => pages += count,
            // A sum without one of its parts would be a wrong sample, not a missing one.
            Err(_) => return RSS_NOT_SAMPLED,
        }
    }
    if pages < 0 { 0 } else { pages as u64 }
}

/// [`current_rss_pages`] for BTF-typed programs (tp_btf): the task pointer from
/// `bpf_get_current_task_btf` is typed, so the chain task->mm->rss_stat[i].count is read
/// with plain loads instead of four probe-read helper calls. The offsets come from the
/// loader's read-only globals, which the verifier sees as constants.
#[inline(always)]
pub(crate) fn current_rss_pages_btf() -> u64 {
    let off = offsets();
    if off.rss_available == 0 {
        return RSS_NOT_SAMPLED;
    }
    unsafe {
        let task = aya_ebpf::helpers::generated::bpf_get_current_task_btf() as *const u8;
        let mm = *(task.add(off.task_mm as usize) as *const *const u8);
        if mm.is_null() {
            return RSS_NOT_SAMPLED; // a kernel thread, or a task past exit_mm()
        }
        let base = mm.add(off.mm_rss_stat as usize + off.percpu_counter_count as usize);
        let stride = off.percpu_counter_size as usize;
        // MM_FILEPAGES = 0, MM_ANONPAGES = 1, MM_SHMEMPAGES = 3 (2 is swap entries).
        let pages = *(base as *const i64)
            + *(base.add(stride) as *const i64)
            + *(base.add(3 * stride) as *const i64);
        if pages < 0 { 0 } else { pages as u64 }
    }
}

/// What the kernel says of a program it has just exec'd: where its code lies
/// (`mm->start_code`, `mm->end_code`) and the name of the file really executed
/// (`bprm->interp`, kernel memory).
pub(crate) struct ExecImage {
    pub(crate) start_code: u64,
    pub(crate) end_code: u64,
    pub(crate) interp: *const u8,
    /// The file's inode number and device (`s_dev`, the kernel's encoding).
    pub(crate) ino: u64,
    pub(crate) dev: u32,
}

/// [`ExecImage`] of the current task, in `sched_process_exec` (whose third argument is
/// `bprm`); `None` when the offsets are unknown or a read fails.
#[inline(always)]
pub(crate) fn exec_image(bprm: *const u8) -> Option<ExecImage> {
    let off = offsets();
    if off.exec_image_available == 0 || bprm.is_null() {
        return None;
    }
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let mm = bpf_probe_read_kernel(task.add(off.task_mm as usize) as *const u64).ok()?;
        if mm == 0 {
            return None;
        }
        let mm = mm as *const u8;
        let start_code =
            bpf_probe_read_kernel(mm.add(off.mm_start_code as usize) as *const u64).ok()?;
        let end_code =
            bpf_probe_read_kernel(mm.add(off.mm_end_code as usize) as *const u64).ok()?;
        let interp = bpf_probe_read_kernel(bprm.add(off.binprm_interp as usize) as *const u64)
            .ok()? as *const u8;
        let file = bpf_probe_read_kernel(bprm.add(off.binprm_file as usize) as *const u64).ok()?
            as *const u8;
        let inode = bpf_probe_read_kernel(file.add(off.file_f_inode as usize) as *const u64).ok()?
            as *const u8;
        let ino = bpf_probe_read_kernel(inode.add(off.inode_i_ino as usize) as *const u64).ok()?;
        let sb = bpf_probe_read_kernel(inode.add(off.inode_i_sb as usize) as *const u64).ok()?
            as *const u8;
        let dev =
            bpf_probe_read_kernel(sb.add(off.super_block_s_dev as usize) as *const u32).ok()?;
        Some(ExecImage {
            start_code,
            end_code,
            interp,
            ino,
            dev,
        })
    }
}

/// The `aux` of a successful open, openat, openat2 or creat (see [`open_flags`]): its flags,
/// and for an open that may create, whether it did.
#[inline(always)]
pub(crate) fn open_aux(at: FlagsAt, args: &[u64; 6], fd: i64) -> u64 {
    let flags = match at {
        FlagsAt::Arg(arg) => Some(arg_at(args, arg)),
        FlagsAt::Fixed(flags) => Some(flags),
        FlagsAt::OpenHow(arg) => unsafe {
            bpf_probe_read_user((arg_at(args, arg) + open_flags::OPEN_HOW_FLAGS) as *const u64)
        }
        .ok(),
    };
    let created = match flags {
        Some(flags) if open_flags::may_create(flags) => file_was_created(fd),
        _ => None,
    };
    open_flags::encode(flags, created)
}

/// Whether the file at `fd` of the current task has FMODE_CREATED. `None` when the file
/// cannot be read.
#[inline(always)]
fn file_was_created(fd: i64) -> Option<bool> {
    // The fd was installed by this very call, so it is in the table (an empty slot: closed
    // by another thread already).
    if fd < 0 {
        return None;
    }
    let file = current_fd_file(fd as u64)?;
    if file == 0 {
        return None;
    }
    let mode: u32 = read_kernel(file + offsets().file_f_mode as u64)?;
    Some(mode & open_flags::FMODE_CREATED != 0)
}

/// Whether `fd` is in the current task's fd table now; `None` when the table cannot be
/// read. For a `close` that failed: see [`leakscope_common::close_outcome`].
#[inline(always)]
pub(crate) fn fd_in_table(fd: u64) -> Option<bool> {
    current_fd_file(fd as u32 as u64).map(|file| file != 0)
}

/// The `struct file *` at `fd` in the current task's table: current ->files ->fdt
/// ->fd[fd]. `Some(0)` when that slot is empty or beyond the table; `None` when a link of
/// the chain cannot be read.
///
/// For BTF-typed programs only (sys_exit): task ->files ->fdt are plain loads through the
/// typed task pointer; the array element (a variable index) is a probe read.
#[inline(always)]
fn current_fd_file(fd: u64) -> Option<u64> {
    let off = offsets();
    if off.f_mode_available == 0 {
        return None;
    }
    let (max_fds, array) = unsafe {
        let task = aya_ebpf::helpers::generated::bpf_get_current_task_btf() as *const u8;
        let files = *(task.add(off.task_files as usize) as *const *const u8);
        if files.is_null() {
            return None;
        }
        let fdt = *(files.add(off.files_fdt as usize) as *const *const u8);
        if fdt.is_null() {
            return None;
        }
        (
            *(fdt.add(off.fdtable_max_fds as usize) as *const u32),
            *(fdt.add(off.fdtable_fd as usize) as *const u64),
        )
    };
    // Checked, so that a read never goes past the array (the table may also have been
    // replaced by a larger one meanwhile: an fd beyond this one was not in it).
    if fd >= max_fds as u64 {
        return Some(0);
    }
    read_kernel(array + fd * 8)
}

/// For `sched_process_exit`, which runs in the exiting thread: whether its whole process is
/// ending, i.e. no thread of it is left that has not begun to exit. `do_exit` decrements
/// `signal->live` before the tracepoint, so the last thread to exit sees 0 (threads exiting
/// at the same moment may all see it: the caller keeps one). A leader that exits while
/// other threads run on (`pthread_exit`, or an exec by another thread, which the kernel
/// makes the new leader under the same pid) sees more. `None` when it cannot be read.
#[inline(always)]
pub(crate) fn process_is_ending() -> Option<bool> {
    let off = offsets();
    let task = unsafe { bpf_get_current_task() };
    let signal: u64 = read_kernel(task + off.task_signal as u64)?;
    if signal == 0 {
        return None;
    }
    let live: i32 = read_kernel(signal + off.signal_live as u64)?;
    Some(live == 0)
}

#[inline(always)]
fn read_kernel<T>(address: u64) -> Option<T> {
    unsafe { bpf_probe_read_kernel(address as *const T) }.ok()
}
