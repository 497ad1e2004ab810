//! leakscope's kernel side: report every successful resource-changing syscall of the traced
//! processes, their failed acquisitions, their forks, execs and exits, and iteration
//! markers, through one ring buffer.
//!
//! Only raw tracepoints and uprobes are used: they need neither tracefs nor kprobes (this
//! project's kernels build without CONFIG_KPROBES), just BTF for the struct offsets the
//! loader hands over in [`OFFSETS`].
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
    },
    macros::{map, raw_tracepoint, uprobe},
    maps::{HashMap, PerCpuArray, RingBuf, StackTrace},
    programs::tracing::StackIdContext,
    programs::{ProbeContext, RawTracePointContext},
};
use leakscope_common::{
    CONTROL_CAP, CONTROL_CONTINUED, CONTROL_TRUNCATED, CONTROL_UNREADABLE, ControlEvent,
    DropReason, Event, EventKind, FD_PAIR_UNKNOWN, FD_UNREADABLE, KernelOffsets, MMSG_COPY_CAP,
    NO_STACK, PATH_CAP, PATH_TRUNCATED, PathEvent, RSS_NOT_SAMPLED, STACK_SCAN_WORDS, StackEvent,
    fd_arrival, globals, maps, programs, same_name, syscalls, syscalls::Delivery,
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

/// Struct offsets from the running kernel's BTF, set by the loader before load.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    task_tgid: 0,
    task_mm: 0,
    mm_rss_stat: 0,
    percpu_counter_size: 0,
    percpu_counter_count: 0,
    rss_available: 0,
};
named!(OFFSETS, globals::OFFSETS);

/// The processes being traced (tgid -> unused). The loader inserts the target; forks of a
/// traced process are added here, in the kernel, before the child can run.
#[map]
static TRACKED: HashMap<u32, u8> = HashMap::with_max_entries(maps::TRACKED_MAX_ENTRIES, 0);
named!(TRACKED, maps::TRACKED);

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

/// User stacks of memory-mapping calls.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(maps::STACKS_MAX_ENTRIES, 0);
named!(STACKS, maps::STACKS);

/// Wakeups cost more than the whole event path (toolchain notes), so userspace polls.
const SUBMIT_FLAGS: u64 = BPF_RB_NO_WAKEUP as u64;

#[inline(always)]
fn offsets() -> KernelOffsets {
    // Volatile: the value is patched into .rodata at load time, after the compiler ran.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

#[inline(always)]
fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

#[inline(always)]
fn is_tracked(tgid: u32) -> bool {
    unsafe { TRACKED.get(tgid) }.is_some()
}

#[inline(always)]
fn count_lost(reason: DropReason) {
    if let Some(counter) = LOST.get_ptr_mut(reason.slot()) {
        unsafe { *counter += 1 };
    }
}

/// Resident pages of the current task's mm (file + anon + shmem), read the way
/// /proc/PID/statm reads them: the percpu counters' global part.
#[inline(always)]
fn current_rss_pages() -> u64 {
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

#[inline(always)]
fn header(kind: EventKind, tgid: u32, tid: u32) -> Event {
    Event::new(kind, unsafe { bpf_ktime_get_ns() }, tgid, tid)
}

/// Sends a header-only record (a record with a path, a stack or control data goes through
/// its own `emit_*`, which counts its own ring-full reason).
#[inline(always)]
fn emit(event: Event) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(SUBMIT_FLAGS);
        }
        // `header` wrote the kind from an `EventKind`, so it always converts back.
        None => count_lost(
            event
                .kind()
                .map_or(DropReason::RingFullSyscall, DropReason::ring_full),
        ),
    }
}

#[raw_tracepoint]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let (tgid, tid) = current_ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let regs_ptr: *const pt_regs = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // raw_tp gives an untyped pointer, so the verifier wants a probe read (toolchain notes).
    let Ok(regs) = (unsafe { bpf_probe_read_kernel(regs_ptr) }) else {
        count_lost(DropReason::RegsRead);
        return 0;
    };
    let nr = regs.orig_rax as u32;
    let Some(info) = syscalls::info(nr) else {
        return 0;
    };
    if !syscalls::succeeded(&info, ret) {
        // A failed call changes no resource, but a failed acquisition is evidence (EMFILE
        // means the table is full): send the header alone, with the errno in `ret`.
        // recvmsg's EAGAIN or a failed bpf lookup is no attempt at an fd: leave them out, or
        // a non-blocking server would flood the ring with them.
        let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
        if syscalls::failure_is_acquisition(nr, regs.rsi)
            && fd_arrival::failure_was_fd_attempt(nr, &args)
        {
            let mut event = header(EventKind::Failed, tgid, tid);
            event.syscall_nr = nr;
            event.ret = ret;
            emit(event);
        }
        return 0;
    }

    // The argument registers still hold the caller's values at sys_exit: the syscall
    // handlers read them from pt_regs and never write them back. That saves a sys_enter
    // probe and a per-thread stash map on every syscall.
    let mut event = header(EventKind::Syscall, tgid, tid);
    event.syscall_nr = nr;
    event.ret = ret;
    event.args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
    if !fd_arrival::wanted(nr, &event.args, ret) {
        return 0; // e.g. a bpf command or a clone that installs no fd
    }
    match info.delivery {
        Delivery::None => {}
        Delivery::IntAt(arg) => {
            event.aux = read_user_fd(arg_at(&event.args, arg));
        }
        Delivery::Clone3Pidfd => {
            let clone_args = event.args[0];
            let flags = unsafe {
                bpf_probe_read_user((clone_args + fd_arrival::CLONE_ARGS_FLAGS) as *const u64)
            };
            match flags {
                Ok(flags) if flags & fd_arrival::CLONE_PIDFD == 0 => return 0,
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
        event.stack_id = match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
            Ok(id) => id,
            Err(_) => NO_STACK,
        };
        emit_with_stack_words(event, regs.rsp);
        return 0;
    }

    match info.path_arg {
        Some(arg) => {
            // An open is where path-marked iterations begin, so sample RSS here too.
            event.rss_pages = current_rss_pages();
            emit_with_path(event, arg_at(&event.args, arg) as *const u8);
        }
        None => emit(event),
    }
    0
}
named!(sys_exit, programs::SYS_EXIT);

#[inline(always)]
fn emit_with_stack_words(event: Event, user_sp: u64) {
    let Some(mut entry) = EVENTS.reserve::<StackEvent>(0) else {
        count_lost(DropReason::RingFullStack);
        return;
    };
    let record = entry.as_mut_ptr();
    unsafe {
        (*record).event = event;
        let words = &mut (*record).words;
        let bytes =
            core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, STACK_SCAN_WORDS * 8);
        if bpf_probe_read_user_buf(user_sp as *const u8, bytes).is_err() {
            // Near the top of the stack: fall back to the one word that matters most.
            *words = [0; STACK_SCAN_WORDS];
            if let Ok(word) = bpf_probe_read_user(user_sp as *const u64) {
                words[0] = word;
            }
        }
    }
    entry.submit(SUBMIT_FLAGS);
}

/// Indexing `args` directly would compile a bounds check with a panic path, and the
/// verifier rejects programs that end in a call that never returns.
#[inline(always)]
fn arg_at(args: &[u64; 6], index: u8) -> u64 {
    match args.get(index as usize) {
        Some(value) => *value,
        None => 0,
    }
}

#[inline(always)]
fn emit_with_path(event: Event, user_path: *const u8) {
    let Some(mut entry) = EVENTS.reserve::<PathEvent>(0) else {
        count_lost(DropReason::RingFullPath);
        return;
    };
    let record = entry.as_mut_ptr();
    unsafe {
        (*record).event = event;
        (*record)._pad = 0;
        let path = &mut (*record).path;
        let len = match bpf_probe_read_user_str_bytes(user_path, path) {
            Ok(bytes) => bytes.len() as u32,
            // A NULL path is an empty one (AT_EMPTY_PATH); any other failure leaves the fd
            // with no real site, so the record is half-recorded and counted.
            Err(_) => {
                if !user_path.is_null() {
                    count_lost(DropReason::PathRead);
                }
                0
            }
        };
        // A full buffer may hold the whole string or a cut one: the byte after decides.
        let mut flags = 0;
        if len as usize == PATH_CAP - 1
            && let Ok(next) = bpf_probe_read_user(user_path.add(PATH_CAP - 1))
            && next != 0u8
        {
            flags = PATH_TRUNCATED;
        }
        (*record).path_len = len | flags;
    }
    entry.submit(SUBMIT_FLAGS);
}

/// The `int` fd the kernel wrote at a user pointer, or [`FD_UNREADABLE`].
#[inline(always)]
fn read_user_fd(ptr: u64) -> u64 {
    match unsafe { bpf_probe_read_user(ptr as *const i32) } {
        Ok(fd) => fd as u32 as u64,
        Err(_) => FD_UNREADABLE,
    }
}

/// `msg_control` and `msg_controllen` of the user `struct msghdr` at `msghdr`: adjacent
/// fields, so one read (this runs on every recvmsg of the target).
#[inline(always)]
fn read_control_fields(msghdr: u64) -> Option<(u64, u64)> {
    const _: () = assert!(fd_arrival::MSGHDR_CONTROLLEN == fd_arrival::MSGHDR_CONTROL + 8);
    let [control, len] =
        unsafe { bpf_probe_read_user((msghdr + fd_arrival::MSGHDR_CONTROL) as *const [u64; 2]) }
            .ok()?;
    Some((control, len))
}

/// Whether `len` bytes of control data at `control` may hold fds (see
/// [`fd_arrival::control_may_carry_fds`]); unreadable data may.
#[inline(always)]
fn control_may_carry_fds(control: u64, len: u64) -> bool {
    match unsafe { bpf_probe_read_user(control as *const [u32; 4]) } {
        Ok(h) => {
            fd_arrival::control_may_carry_fds(len, h[0] as u64 | (h[1] as u64) << 32, h[2], h[3])
        }
        Err(_) => true,
    }
}

/// recvmsg: one [`ControlEvent`] if the message at `msghdr` delivered control data that
/// may hold fds; nothing otherwise (most recvmsg calls carry none). Returns whether a
/// record was sent.
#[inline(always)]
fn emit_message_control(event: Event, msghdr: u64, index: u32, flags: u32) -> bool {
    match read_control_fields(msghdr) {
        Some((_, 0)) => false,
        Some((control, len)) => {
            let send = control_may_carry_fds(control, len);
            if send {
                emit_control(event, control, len, index, 0, flags);
            }
            send
        }
        // The header cannot be read back: fds may have arrived unseen.
        None => {
            emit_control(event, 0, 0, index, 0, flags | CONTROL_UNREADABLE);
            true
        }
    }
}

/// recvmmsg: the first [`MMSG_COPY_CAP`] messages as recvmsg; later ones are only checked
/// for control data (of any kind: the cmsg filter would need branches), and those that
/// have some are counted in one extra record, so a recvmmsg that delivered fds beyond the
/// cap never looks complete.
#[inline(always)]
fn emit_mmsg_controls(event: Event, vector: u64, messages: u64) {
    // Records after the first say so, so that the call is counted once.
    let mut continued = 0;
    for i in 0..MMSG_COPY_CAP {
        if i as u64 >= messages {
            return;
        }
        let msghdr = vector + i as u64 * fd_arrival::MMSGHDR_SIZE;
        if emit_message_control(event, msghdr, i, continued) {
            continued = CONTROL_CONTINUED;
        }
    }
    // Branch-free on purpose, and without a count: a loop of up to 1016 messages whose
    // state differs per path (a counter the verifier must track exactly) is too much for
    // it (E2BIG). `any` is nonzero when some message had control data, or when a header
    // could not be read.
    let mut any: u64 = 0;
    for i in MMSG_COPY_CAP..fd_arrival::MMSG_MAX {
        if i as u64 >= messages {
            break;
        }
        let field = vector + i as u64 * fd_arrival::MMSGHDR_SIZE + fd_arrival::MSGHDR_CONTROLLEN;
        let mut len: u64 = 0;
        let status = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_user(
                &mut len as *mut u64 as *mut core::ffi::c_void,
                8,
                field as *const core::ffi::c_void,
            )
        } as u64;
        any |= len | status;
    }
    // Which of them had it is unknown: all messages past the cap are counted, an upper bound.
    let uncopied = if any != 0 {
        (messages - MMSG_COPY_CAP as u64) as u32
    } else {
        0
    };
    if uncopied > 0 {
        emit_control(event, 0, 0, MMSG_COPY_CAP, uncopied, continued);
    }
}

/// One [`ControlEvent`]: up to [`CONTROL_CAP`] bytes of the `len` bytes at `control`.
#[inline(always)]
fn emit_control(event: Event, control: u64, len: u64, index: u32, uncopied: u32, flags: u32) {
    let Some(mut entry) = EVENTS.reserve::<ControlEvent>(0) else {
        count_lost(DropReason::RingFullControl);
        return;
    };
    let record = entry.as_mut_ptr();
    unsafe {
        (*record).event = event;
        (*record).control_len = len as u32;
        (*record).message_index = index;
        (*record).uncopied_messages = uncopied;
        let mut flags = flags;
        if len > CONTROL_CAP as u64 {
            flags |= CONTROL_TRUNCATED;
        }
        // Bounded for the verifier: at most CONTROL_CAP bytes into the record's buffer.
        let copy = if len >= CONTROL_CAP as u64 {
            CONTROL_CAP as u32
        } else {
            (len as u32) & (CONTROL_CAP as u32 - 1)
        };
        // Not zeroed (a 256-byte memset is not worth it): userspace reads only the first
        // `control_len` bytes, and none of an unreadable record.
        let buffer = &mut (*record).control;
        if copy > 0
            && aya_ebpf::helpers::generated::bpf_probe_read_user(
                buffer.as_mut_ptr() as *mut core::ffi::c_void,
                copy,
                control as *const core::ffi::c_void,
            ) != 0
        {
            flags |= CONTROL_UNREADABLE;
        }
        (*record).flags = flags;
    }
    entry.submit(SUBMIT_FLAGS);
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`. It fires in
/// the parent before the child is woken, so adding the child here means its first
/// instruction is already traced.
#[raw_tracepoint]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let (tgid, tid) = current_ids();
    if !is_tracked(tgid) {
        return 0;
    }
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
    if TRACKED.insert(child_tgid, 0, 0).is_err() {
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
pub fn sched_process_exec(_ctx: RawTracePointContext) -> i32 {
    let (tgid, tid) = current_ids();
    if is_tracked(tgid) {
        let mut event = header(EventKind::Exec, tgid, tid);
        event.rss_pages = current_rss_pages();
        emit(event);
    }
    0
}
named!(sched_process_exec, programs::SCHED_PROCESS_EXEC);

/// `sched_process_exit`: runs in each exiting thread. Only the group leader's exit ends the
/// process for the ledger; other threads' exits change no resource.
#[raw_tracepoint]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    let (tgid, tid) = current_ids();
    if tid != tgid || !is_tracked(tgid) {
        return 0;
    }
    let _ = TRACKED.remove(tgid);
    emit(header(EventKind::Exit, tgid, tid));
    0
}
named!(sched_process_exit, programs::SCHED_PROCESS_EXIT);

/// The iteration marker (`--iteration-symbol`). Its first argument is passed along, so a
/// marker function may hand over its own iteration index.
#[uprobe]
pub fn iteration_marker(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    if is_tracked(tgid) {
        let mut event = header(EventKind::Marker, tgid, tid);
        event.args[0] = ctx.arg::<u64>(0).unwrap_or(0);
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

/// GPL-compatible: the probe-read and stack helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
