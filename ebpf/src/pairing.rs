//! Pairing a short-lived fd's open with its close in the kernel: a traced process's latest
//! successful open is held back in its [`TrackedProcess`] slot instead of being sent. If the
//! process's next record would be the `close` of that fd, one [`EventKind::OpenClosed`]
//! record goes through the ring instead of two; otherwise the held open is sent first
//! ([`flush`]), so the process's records keep their order.
//!
//! Why this is race-free: an open is held only when its process has one thread and an fd
//! table that no other task uses (`signal->nr_threads == 1`, `files->count == 1`). From
//! then on, until the open is sent, only that task can change the fd table or run a program
//! for the process: a new task sharing it (a thread, or a CLONE_FILES child) appears only
//! through a clone by this task, and `sched_process_fork` (which runs in the parent before
//! the new task can run) sends the held open first. So the slot is written by one task, one
//! program at a time. Userspace reads the slot concurrently and only takes a sealed copy
//! (see [`TrackedProcess`]); the reader drops the ring's copy of an open it already took.

use aya_ebpf::helpers::{bpf_ktime_get_ns, generated::bpf_get_current_task_btf};
use leakscope_common::{
    DropReason, Event, EventKind, HELD_OPEN, PathEvent, TrackedProcess, open_flags,
};

use crate::{
    PAIR_OPENS, count_lost,
    emit::{fill_path_record, output_path_record},
    kernel::offsets,
};

/// Whether opens are held back at all (`LEAKSCOPE_NO_PAIR=1` turns it off).
#[inline(always)]
fn pairing_on() -> bool {
    // Volatile: the value is patched into .rodata at load time, after the compiler ran.
    unsafe { core::ptr::read_volatile(&PAIR_OPENS) != 0 }
}

/// Sends the open held in `process`, if any, as the plain open record it stands for.
#[inline(always)]
pub(crate) fn flush(process: *mut TrackedProcess) {
    unsafe {
        if (*process).held != HELD_OPEN {
            return;
        }
        set_held(process, 0);
        if !output_path_record(&raw mut (*process).open) {
            count_lost(DropReason::RingFullPath);
        }
    }
}

/// If `process` holds an open of `fd`, sends it merged with this successful `close(fd)`
/// by thread `tid` and returns true; otherwise changes nothing.
#[inline(always)]
pub(crate) fn pair_close(process: *mut TrackedProcess, fd: u64, tid: u32) -> bool {
    unsafe {
        if (*process).held != HELD_OPEN || (*process).open.event.ret != fd as u32 as i64 {
            return false;
        }
        // Volatile stores, in this order: the flag is cleared before the record changes,
        // so a reader never takes a sealed copy that is half an `OpenClosed`.
        set_held(process, 0);
        let record: *mut PathEvent = &raw mut (*process).open;
        core::ptr::write_volatile(&raw mut (*record).event.kind, EventKind::OpenClosed as u32);
        core::ptr::write_volatile(&raw mut (*record).close_tid, tid);
        core::ptr::write_volatile(&raw mut (*record).close_ktime_ns, bpf_ktime_get_ns());
        if !output_path_record(record) {
            // The two records it stands for, as they would have been counted unpaired.
            count_lost(DropReason::RingFullPath);
            count_lost(DropReason::RingFullSyscall);
        }
    }
    true
}

/// Holds the open `event` (with the user path at `user_path`) in `process`'s slot instead of
/// sending it, if pairing is on and the process is one task with its own fd table. The
/// slot must be empty (every program flushes it first). Returns whether it was held.
#[inline(always)]
pub(crate) fn hold_open(process: *mut TrackedProcess, event: Event, user_path: *const u8) -> bool {
    if !pairing_on() || may_have_created(event.aux) || !alone_with_its_fds() {
        return false;
    }
    unsafe {
        // The flag is clear (the slot was flushed): a reader takes nothing while the record
        // is rewritten, and only a sealed one afterwards.
        let time = event.ktime_ns;
        fill_path_record(&raw mut (*process).open, event, user_path);
        core::ptr::write_volatile(&raw mut (*process).seal_ktime_ns, time);
        set_held(process, HELD_OPEN);
    }
    true
}

/// The slot's flag, stored volatile: the compiler must neither move it before the record's
/// stores that precede it nor after those that follow.
#[inline(always)]
unsafe fn set_held(process: *mut TrackedProcess, value: u32) {
    unsafe { core::ptr::write_volatile(&raw mut (*process).held, value) };
}

/// Whether an open (its `aux`, see [`open_flags::encode`]) may have created a file. Such an
/// open is never held: the files ledger is shared by every process and keyed by path, so a
/// rename or unlink of the new file by another process must not reach it first.
#[inline(always)]
fn may_have_created(aux: u64) -> bool {
    match open_flags::decode(aux) {
        (_, Some(created)) => created,
        (Some(flags), None) => open_flags::may_create(flags),
        (None, None) => true,
    }
}

/// Whether the current process has one thread, and its fd table is used by no other task.
/// Plain loads through the BTF-typed task (tp_btf only).
#[inline(always)]
fn alone_with_its_fds() -> bool {
    let off = offsets();
    if off.pairing_available == 0 {
        return false;
    }
    unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        let signal = *(task.add(off.task_signal as usize) as *const *const u8);
        let files = *(task.add(off.task_files as usize) as *const *const u8);
        if signal.is_null() || files.is_null() {
            return false;
        }
        *(signal.add(off.signal_nr_threads as usize) as *const i32) == 1
            && *(files.add(off.files_count as usize) as *const i32) == 1
    }
}
