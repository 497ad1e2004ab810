//! leakscope's kernel side: report every successful resource-changing syscall of the traced
//! processes, their failed acquisitions, their forks, execs and exits, and iteration
//! markers, through one ring buffer.
//!
//! Only BTF and raw tracepoints and uprobes are used: they need neither tracefs nor kprobes
//! (this project's kernels build without CONFIG_KPROBES, and refuse fentry/fexit), just BTF
//! for the struct offsets the loader hands over in [`OFFSETS`].
#![no_std]
#![no_main]
// The BPF target has no atomic types with read-modify-write methods, but the BPF
// instruction set has atomic or/and: the intrinsics reach them.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod emit;
mod kernel;
mod pairing;

use aya_ebpf::{
    bindings::{BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
    },
    macros::{btf_tracepoint, map, raw_tracepoint, uprobe},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, ProbeContext, RawTracePointContext},
};
use emit::{
    emit, emit_exec, emit_message_control, emit_mmsg_controls, emit_with_path, emit_with_path_pair,
};
use kernel::{current_rss_pages, current_rss_pages_btf, exec_image, offsets};
use leakscope_common::{
    DropReason, Event, EventKind, FD_PAIR_UNKNOWN, FD_UNREADABLE, KernelOffsets, PathEvent,
    TrackedProcess, close_outcome,
    close_outcome::CloseOutcome,
    fd_arrival, globals, maps, open_flags, programs, same_name, syscalls,
    syscalls::{Delivery, SyscallInfo},
};

/// Fails the build unless kernel item `$item` has the name `common/` gives the loader for
/// it: the attribute macros take no constants, so each item is named after its constant
/// and checked here.
macro_rules! named {
    ($item:ident, $name:expr) => {
        const _: () = assert!(
            same_name(stringify!($item), $name),
            concat!(
                "`",
                stringify!($item),
                "` is not the name common/ gives the loader"
            )
        );
    };
}

// After `named!`, which it uses.
mod ustack;
use ustack::{UserRegs, emit_fd_stack, emit_with_user_stack};
mod heap;

/// Struct offsets from the running kernel's BTF, set by the loader before load.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    task_tgid: 0,
    task_mm: 0,
    mm_rss_stat: 0,
    percpu_counter_size: 0,
    percpu_counter_count: 0,
    rss_available: 0,
    task_files: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_f_mode: 0,
    f_mode_available: 0,
    task_signal: 0,
    signal_nr_threads: 0,
    files_count: 0,
    pairing_available: 0,
    signal_live: 0,
    mm_start_stack: 0,
    start_stack_available: 0,
    mm_start_code: 0,
    mm_end_code: 0,
    binprm_interp: 0,
    binprm_file: 0,
    file_f_inode: 0,
    inode_i_ino: 0,
    inode_i_sb: 0,
    super_block_s_dev: 0,
    exec_image_available: 0,
};
named!(OFFSETS, globals::OFFSETS);

/// Nonzero: hold opens back to pair them with their close ([`pairing`]). Set by the loader.
#[unsafe(no_mangle)]
static PAIR_OPENS: u32 = 1;
named!(PAIR_OPENS, globals::PAIR_OPENS);

/// The processes being traced (tgid -> the slot of its held open, see [`pairing`]). The
/// loader inserts the target; forks of a traced process are added here, in the kernel,
/// before the child can run. One lookup both filters a syscall and finds the slot.
#[map]
static TRACKED: HashMap<u32, TrackedProcess> =
    HashMap::with_max_entries(maps::TRACKED_MAX_ENTRIES, 0);
named!(TRACKED, maps::TRACKED);

/// One bit per tgid, set for each traced process (see `maps::TRACED_PIDS`).
#[map]
static TRACED_PIDS: Array<u64> = Array::with_max_entries(
    maps::traced_pids_words(maps::TRACED_PIDS_PLACEHOLDER_PIDS),
    0,
);
named!(TRACED_PIDS, maps::TRACED_PIDS);

/// A slot of zeroes: the value a forked child is tracked with.
#[map]
static EMPTY_PROCESS: Array<TrackedProcess> =
    Array::with_max_entries(maps::EMPTY_PROCESS_MAX_ENTRIES, 0);
named!(EMPTY_PROCESS, maps::EMPTY_PROCESS);

/// Every record for userspace. The loader resizes it (`--ring-mib`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(maps::EVENTS_PLACEHOLDER_BYTES, 0);
named!(EVENTS, maps::EVENTS);

/// Records that were dropped or only half-recorded, per CPU, one slot per [`DropReason`].
/// Userspace reports the sum and the breakdown, so a lossy run is always visible and says
/// what it lost. Every return on a traced process's path that drops a record, or sends one
/// without what it should carry (fd pair, path), counts here. Returns that only filter
/// (an untraced process or syscall, a failure that is no acquisition, a call that installs
/// no fd, a new thread) lose nothing. Partial reads that the record itself flags are
/// counted by userspace instead: `FD_UNREADABLE` and `CONTROL_UNREADABLE` (unread
/// deliveries), `NO_STACK`, `RSS_NOT_SAMPLED`.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(maps::LOST_MAX_ENTRIES, 0);
named!(LOST, maps::LOST);

/// Where a path record is built before it goes into the ring cut to its length.
#[map]
static PATH_SCRATCH: PerCpuArray<PathEvent> =
    PerCpuArray::with_max_entries(maps::PATH_SCRATCH_MAX_ENTRIES, 0);
named!(PATH_SCRATCH, maps::PATH_SCRATCH);

/// Wakeups cost more than the whole event path (toolchain notes), so userspace polls.
const SUBMIT_FLAGS: u64 = BPF_RB_NO_WAKEUP as u64;

#[inline(always)]
fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// The slot of traced process `tgid`; `None` when it is not traced. A process whose bit
/// in [`TRACED_PIDS`] is clear is not, without a hash lookup.
#[inline(always)]
fn tracked(tgid: u32) -> Option<*mut TrackedProcess> {
    if let Some(word) = TRACED_PIDS.get(tgid / 64)
        && word & (1 << (tgid % 64)) == 0
    {
        return None;
    }
    TRACKED.get_ptr_mut(tgid)
}

/// Sets or clears `tgid`'s bit in [`TRACED_PIDS`] (a tgid beyond it is looked up instead).
/// Atomically: forks and exits of other traced processes may change the same word at once.
#[inline(always)]
fn set_traced_pid(tgid: u32, traced: bool) {
    use core::intrinsics::{AtomicOrdering::Relaxed, atomic_and, atomic_or};
    if let Some(word) = TRACED_PIDS.get_ptr_mut(tgid / 64) {
        let bit = 1u64 << (tgid % 64);
        unsafe {
            if traced {
                atomic_or::<u64, u64, { Relaxed }>(word, bit);
            } else {
                atomic_and::<u64, u64, { Relaxed }>(word, !bit);
            }
        }
    }
}

#[inline(always)]
fn count_lost(reason: DropReason) {
    if let Some(counter) = LOST.get_ptr_mut(reason.slot()) {
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
fn header(kind: EventKind, tgid: u32, tid: u32) -> Event {
    Event::new(kind, unsafe { bpf_ktime_get_ns() }, tgid, tid)
}

/// The registers sys_exit needs besides the number: the six arguments, and where the user
/// code stood (for a mapping call's stack).
struct Regs {
    args: [u64; 6],
    user: UserRegs,
}

/// `sys_exit` as a BTF tracepoint (tp_btf): its `pt_regs` pointer is typed, so the
/// registers are plain loads, where a raw tracepoint needs a probe-read helper call copying
/// the whole struct (toolchain notes). It runs for every syscall of every process, so the
/// cheapest test goes first: the syscall number against the table, then the
/// tracked-process lookup, and only then the other registers.
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    let regs: *const pt_regs = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let nr = unsafe { (*regs).orig_rax } as u32;
    let Some(info) = syscalls::info(nr) else {
        return 0;
    };
    let (tgid, tid) = current_ids();
    let Some(process) = tracked(tgid) else {
        return 0;
    };
    // The argument registers still hold the caller's values at sys_exit: the syscall
    // handlers read them from pt_regs and never write them back. That saves a sys_enter
    // probe and a per-thread stash map on every syscall.
    let regs = unsafe {
        Regs {
            args: [
                (*regs).rdi,
                (*regs).rsi,
                (*regs).rdx,
                (*regs).r10,
                (*regs).r8,
                (*regs).r9,
            ],
            // At sys_exit these are the user's: rip just after the `syscall` instruction.
            user: UserRegs {
                ip: (*regs).rip,
                sp: (*regs).rsp,
                bp: (*regs).rbp,
            },
        }
    };
    // A close of the fd the process's held open returned goes out with it, as one record;
    // anything else sends the held open first, so the process's records keep their order.
    if nr == syscalls::CLOSE && ret == 0 && pairing::pair_close(process, regs.args[0], tid) {
        return 0;
    }
    pairing::flush(process);
    on_sys_exit(Call { nr, info, ret }, tgid, tid, &regs, process)
}
named!(sys_exit, programs::SYS_EXIT);

/// A traced syscall as it returns.
struct Call {
    nr: u32,
    info: SyscallInfo,
    ret: i64,
}

#[inline(always)]
fn on_sys_exit(call: Call, tgid: u32, tid: u32, regs: &Regs, process: *mut TrackedProcess) -> i32 {
    let Call { nr, info, ret } = call;
    if !syscalls::succeeded(&info, ret) && !failed_close_released(nr, ret, regs.args[0]) {
        // A failed call changes no resource, but a failed acquisition is evidence (EMFILE
        // means the table is full): send the header alone, with the errno in `ret`.
        // recvmsg's EAGAIN or a failed bpf lookup is no attempt at an fd: leave them out, or
        // a non-blocking server would flood the ring with them.
        if (syscalls::failure_is_acquisition(nr, regs.args[1])
            && fd_arrival::failure_was_fd_attempt(nr, &regs.args))
            || syscalls::failure_is_out_of_room(nr, ret)
        {
            let mut event = header(EventKind::Failed, tgid, tid);
            event.syscall_nr = nr;
            event.ret = ret;
            emit(event);
        }
        return 0;
    }

    let mut event = header(EventKind::Syscall, tgid, tid);
    event.syscall_nr = nr;
    event.ret = ret;
    event.args = regs.args;
    if !fd_arrival::wanted(nr, &event.args, ret) {
        return 0; // e.g. a bpf command or a clone that installs no fd
    }
    match info.delivery {
        Delivery::None => {}
        // A clone sent for a shared fd table alone has no pidfd to read.
        Delivery::IntAt(arg) if fd_arrival::delivers_pidfd(nr, &event.args) => {
            event.aux = read_user_fd(arg_at(&event.args, arg));
        }
        Delivery::IntAt(_) => {}
        Delivery::Clone3Pidfd => {
            let clone_args = event.args[0];
            let flags = unsafe {
                bpf_probe_read_user((clone_args + fd_arrival::CLONE_ARGS_FLAGS) as *const u64)
            };
            // Userspace cannot read clone_args any more: the flags travel in their slot.
            event.args[fd_arrival::CLONE3_FLAGS_SLOT] = *flags.as_ref().unwrap_or(&u64::MAX);
            match flags {
                Ok(flags)
                    if flags & fd_arrival::CLONE_PIDFD == 0
                        && !fd_arrival::shares_tables(flags) =>
                {
                    return 0;
                }
                Ok(flags) if flags & fd_arrival::CLONE_PIDFD == 0 => {}
                Ok(_) => {
                    event.aux = match unsafe {
                        bpf_probe_read_user(
                            (clone_args + fd_arrival::CLONE_ARGS_PIDFD) as *const u64,
                        )
                    } {
                        Ok(pidfd_ptr) => read_user_fd(pidfd_ptr),
                        Err(_) => FD_UNREADABLE,
                    };
                }
                // The flags cannot be read: say so rather than guess "no pidfd".
                Err(_) => event.aux = FD_UNREADABLE,
            }
        }
        Delivery::ControlMessage => {
            emit_message_control(event, event.args[1], 0, 0);
            return 0;
        }
        Delivery::ControlMessages => {
            emit_mmsg_controls(event, event.args[1], ret as u64);
            return 0;
        }
    }

    if let Some(arg) = info.fd_pair_arg {
        let ptr = arg_at(&event.args, arg) as *const u64;
        event.aux = match unsafe { bpf_probe_read_user(ptr) } {
            Ok(pair) => pair,
            Err(_) => {
                count_lost(DropReason::FdPairRead);
                FD_PAIR_UNKNOWN
            }
        };
    }
    if info.take_stack {
        emit_with_user_stack(event, &regs.user);
        return 0;
    }
    // Before the call's own record (sent or held below), with its time: the reader joins
    // the two by thread and time.
    if syscalls::fd_stack_wanted(&info, &event.args) {
        emit_fd_stack(&event, &regs.user);
    }

    if let Some(flags_at) = open_flags::flags_at(nr) {
        event.aux = kernel::open_aux(flags_at, &event.args, ret);
    }
    match (info.path_arg, info.second_path_arg) {
        (Some(arg), second) => {
            // An open is where path-marked iterations begin, so sample RSS here too (not on
            // mkdir, unlink and the like, which no iteration rule keys on).
            if !syscalls::acquires_no_fd_memory_or_heap(nr) {
                event.rss_pages = current_rss_pages_btf();
            }
            let path = arg_at(&event.args, arg) as *const u8;
            match second {
                Some(arg2) => {
                    emit_with_path_pair(event, path, arg_at(&event.args, arg2) as *const u8)
                }
                // An open's fd may be closed next: hold it back to send the two as one.
                None if open_flags::flags_at(nr).is_some()
                    && pairing::hold_open(process, event, path) => {}
                None => emit_with_path(event, path),
            }
        }
        (None, _) => emit(event),
    }
    0
}

/// Whether a failed syscall is a `close` that released its fd all the same (a flush that
/// failed after the fd was freed: see [`close_outcome`]); it is then sent with its error,
/// as the release it was. Never paired: only a close that returned 0 pairs.
///
/// Only failed closes pay for the table read. Its one blind spot: in a process whose other
/// thread opens a file between this close and the read, and gets the same fd number, the
/// new file is taken for the old one and the close for a refused one.
#[inline(always)]
fn failed_close_released(nr: u32, ret: i64, fd: u64) -> bool {
    if nr != syscalls::CLOSE || ret == close_outcome::EBADF {
        return false;
    }
    match close_outcome::close_outcome(ret, kernel::fd_in_table(fd)) {
        CloseOutcome::Closed => true,
        CloseOutcome::NotClosed => false,
        CloseOutcome::Unclear => {
            count_lost(DropReason::CloseUnclear);
            false
        }
    }
}

/// Indexing `args` directly would compile a bounds check with a panic path, and the
/// verifier rejects programs that end in a call that never returns.
#[inline(always)]
pub(crate) fn arg_at(args: &[u64; 6], index: u8) -> u64 {
    match args.get(index as usize) {
        Some(value) => *value,
        None => 0,
    }
}

/// The `int` fd the kernel wrote at a user pointer, or [`FD_UNREADABLE`].
#[inline(always)]
fn read_user_fd(ptr: u64) -> u64 {
    match unsafe { bpf_probe_read_user(ptr as *const i32) } {
        Ok(fd) => fd as u32 as u64,
        Err(_) => FD_UNREADABLE,
    }
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`. It fires in
/// the parent before the child is woken, so adding the child here means its first
/// instruction is already traced.
#[raw_tracepoint]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let (tgid, tid) = current_ids();
    let Some(process) = tracked(tgid) else {
        return 0;
    };
    // Before the new task (thread or process) exists for anyone: from now on the parent's
    // fds may be shared or copied, so its held open goes out first (see `pairing`).
    pairing::flush(process);
    let child: *const u8 = ctx.arg(1);
    let off = offsets();
    let Ok(child_tgid) =
        (unsafe { bpf_probe_read_kernel(child.add(off.task_tgid as usize) as *const u32) })
    else {
        count_lost(DropReason::ChildTgidRead); // the child will run untraced
        return 0;
    };
    if child_tgid == tgid {
        return 0; // a new thread: it shares the process's resources, nothing to record
    }
    let inserted = match EMPTY_PROCESS.get(0) {
        Some(empty) => TRACKED.insert(child_tgid, empty, 0).is_ok(),
        None => false, // cannot happen: slot 0 always exists
    };
    if inserted {
        set_traced_pid(child_tgid, true);
    } else {
        count_lost(DropReason::TrackedFull); // the child's events will be lost
    }
    let mut event = header(EventKind::Fork, tgid, tid);
    event.aux = child_tgid as u64;
    emit(event);
    0
}
named!(sched_process_fork, programs::SCHED_PROCESS_FORK);

/// `sched_process_exec`: runs in the task that just exec'd.
#[raw_tracepoint]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let (tgid, tid) = current_ids();
    if let Some(process) = tracked(tgid) {
        pairing::flush(process);
        let mut event = header(EventKind::Exec, tgid, tid);
        if heap::heap_on() {
            heap::on_exec(tgid, event.ktime_ns);
        }
        event.rss_pages = current_rss_pages();
        // sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
        let bprm: *const u8 = ctx.arg(2);
        emit_exec(event, exec_image(bprm));
    }
    0
}
named!(sched_process_exec, programs::SCHED_PROCESS_EXEC);

/// `sched_process_exit`: runs in each exiting thread. Only the end of the whole process (its
/// last thread) ends it for the ledger. Not the leader's exit: a leader may go first while
/// the process lives on (`pthread_exit`), and an exec by another thread ends the old leader
/// and gives its pid to the exec'ing thread, which `sched_process_exec` then reports.
#[raw_tracepoint]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    let (tgid, tid) = current_ids();
    let Some(process) = tracked(tgid) else {
        return 0;
    };
    let ending = match kernel::process_is_ending() {
        Some(ending) => ending,
        // Unreadable (never seen): the leader's exit is the best guess left, and it is
        // counted, so a run that may have stopped following a process early says so.
        None => {
            count_lost(DropReason::ExitUnclear);
            tid == tgid
        }
    };
    if !ending {
        return 0; // other threads go on: they keep the process's resources
    }
    // Threads exiting at the same moment may all see the process ending; the one whose
    // removal of the entry succeeds reports it. None of them holds an open: one is held
    // only while the process has one thread, and a clone sends it first.
    pairing::flush(process);
    if TRACKED.remove(tgid).is_err() {
        return 0;
    }
    set_traced_pid(tgid, false);
    emit(header(EventKind::Exit, tgid, tid));
    0
}
named!(sched_process_exit, programs::SCHED_PROCESS_EXIT);

/// The iteration marker (`--iteration-symbol`). Its first argument is passed along, so a
/// marker function may hand over its own iteration index.
#[uprobe]
pub fn iteration_marker(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    if let Some(process) = tracked(tgid) {
        pairing::flush(process);
        let mut event = header(EventKind::Marker, tgid, tid);
        event.args[0] = ctx.arg::<u64>(0).unwrap_or(0);
        // Under --heap: args[1..5] are the live heap bytes and allocations, the missed
        // frees and the unrecorded allocations; args[5] = 1 says they are there.
        if heap::heap_on()
            && let Some(heap) = heap::on_marker(tgid)
        {
            event.args[1] = heap[0];
            event.args[2] = heap[1];
            event.args[3] = heap[2];
            event.args[4] = heap[3];
            event.args[5] = 1;
        }
        event.rss_pages = current_rss_pages();
        emit(event);
    }
    0
}
named!(iteration_marker, programs::ITERATION_MARKER);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible: the probe-read helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
