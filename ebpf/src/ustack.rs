//! A copy of the user stack with the registers, for unwinding in userspace
//! ([`leakscope_common::UserStackEvent`]).
//!
//! A frame-pointer walk in the kernel (`bpf_get_stackid`) stops inside libc, which keeps no
//! frame pointers, and so does every program built the ordinary way. A bounded copy of the
//! stack from the stack pointer up, with ip, sp and bp, lets userspace unwind with the
//! binaries' CFI (`.eh_frame`), as `perf record --call-graph dwarf` does.
//!
//! Mapping calls send it as their own record; fd-returning calls send it alone, just before
//! their record, which stays as it was (an open may be held for pairing, and a paired open
//! needs no stack: the reader drops it).
//!
//! The record is built in a per-CPU slot and copied into the ring cut to the bytes read
//! (`bpf_ringbuf_output`), as [`crate::emit::emit_with_path`] does: reserving 16 KiB for
//! every record would waste the ring.

use core::{ffi::c_void, mem::size_of, ptr::read_volatile};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE},
    helpers::generated,
    macros::map,
    maps::PerCpuArray,
};
use leakscope_common::{
    DropReason, Event, EventKind, USTACK_CAP, USTACK_DEFAULT_BYTES, USTACK_DEFAULT_RATE,
    USTACK_MIN_BYTES, USTACK_SHORT, USTACK_UNREADABLE, UserStackEvent, globals, maps, same_name,
    stack_rate::{self, StackBucket},
};

use crate::{EVENTS, SUBMIT_FLAGS, count_lost, emit::emit, kernel::offsets};

/// The per-CPU slot: a busy word, then the record as it goes into the ring.
#[repr(C)]
pub(crate) struct StackScratch {
    /// Nonzero while a program run fills the slot. A program runs with migration disabled,
    /// but a kernel booted with full preemption may run another task's program on this CPU
    /// meanwhile: that one finds the slot busy and sends its call without a stack.
    busy: u64,
    record: UserStackEvent,
}

/// Where a stack record is built (16.5 KiB: within the kernel's 32 KiB limit for a per-CPU
/// value, which common/ asserts).
#[map]
static USTACK_SCRATCH: PerCpuArray<StackScratch> =
    PerCpuArray::with_max_entries(maps::USTACK_SCRATCH_MAX_ENTRIES, 0);
named!(USTACK_SCRATCH, maps::USTACK_SCRATCH);

/// Stacks per second per CPU (`--stack-rate`), set by the loader; 0: every call. A storm
/// of mapping calls would otherwise have the reader unwind 100,000 stacks a second and fall
/// behind the ring.
#[unsafe(no_mangle)]
static STACK_RATE: u32 = USTACK_DEFAULT_RATE;
named!(STACK_RATE, globals::STACK_RATE);

/// Each CPU's token bucket for stacks ([`stack_rate`]).
#[map]
static STACK_BUCKET: PerCpuArray<StackBucket> =
    PerCpuArray::with_max_entries(maps::STACK_BUCKET_MAX_ENTRIES, 0);
named!(STACK_BUCKET, maps::STACK_BUCKET);

/// Whether this CPU's bucket allows a stack at `now_ns` (taking its cost if so).
#[inline(always)]
fn stack_allowed(now_ns: u64) -> bool {
    let rate = unsafe { read_volatile(&STACK_RATE) } as u64;
    match STACK_BUCKET.get_ptr_mut(0) {
        Some(bucket) => stack_rate::take(unsafe { &mut *bucket }, now_ns, rate),
        None => true, // cannot happen: slot 0 always exists
    }
}

/// Bytes of stack to copy (`--stack-bytes`), set by the loader; a multiple of 8 in
/// `USTACK_MIN_BYTES..=USTACK_CAP` (clamped here all the same).
#[unsafe(no_mangle)]
static STACK_BYTES: u32 = USTACK_DEFAULT_BYTES;
named!(STACK_BYTES, globals::STACK_BYTES);

/// The user registers an unwind starts from.
pub(crate) struct UserRegs {
    pub(crate) ip: u64,
    pub(crate) sp: u64,
    pub(crate) bp: u64,
}

/// Stacks are copied only while the ring is at most this part full (unread bytes over its
/// size): a storm of mapping calls (a program that maps and unmaps in a loop: 300,000 calls a
/// second here) would otherwise fill the ring with 8 KiB stacks between two polls and crowd
/// out the records the verdicts are made of (measured: 156,526 of 1M records lost). Past it,
/// the call goes without its stack, which costs a site its frames but no count.
/// A quarter, not a half: a burst of 100,000 records in 50 ms (64 fds passed per message,
/// 500 times) with half the ring held by stacks lost up to 6,270 records, 1 run in 3; the
/// reader cannot keep up with such a burst, so the ring must hold it.
const STACK_RING_SHARE_DIVISOR: u64 = 4;

/// Why a stack did not go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NotSent {
    /// On purpose: the ring is over its share for stacks, or this CPU is over
    /// `--stack-rate`. Nothing is lost but the frames.
    NotWanted,
    /// The scratch slot was busy (counted here).
    Busy,
    /// The ring had no room for it (counted by the caller, which knows the record's kind).
    RingFull,
}

/// Sends `event` as a [`UserStackEvent`] with the user stack at `regs.sp`. When the stack
/// is not to go (the ring is already a quarter full, this CPU's stacks are over `--stack-rate`)
/// or cannot (the slot is busy, the ring has no room for it), the header goes alone, so the
/// call itself is never lost for want of its stack.
///
/// For BTF-typed programs only (sys_exit): the retry past the main thread's stack reads
/// `mm->start_stack` with plain loads.
#[inline(always)]
pub(crate) fn emit_with_user_stack(event: Event, regs: &UserRegs) {
    match send_stack(event, regs) {
        Ok(()) => {}
        Err(NotSent::RingFull) => {
            // Half-recorded: the call without its stack (and if even that finds no room,
            // `emit` counts the call lost).
            count_lost(DropReason::RingFullStack);
            emit(event);
        }
        Err(NotSent::NotWanted | NotSent::Busy) => emit(event),
    }
}

/// Sends the user stack of the fd-returning call `event` as a record of its own
/// ([`EventKind::UserStack`], with the call's time, tgid and tid), to go just before the
/// call's record, which the caller sends (or holds for pairing) unchanged. Subject to the
/// same share of the ring and `--stack-rate` as a mapping call's stack; a stack that cannot
/// go is counted, and the call's record goes without it.
#[inline(always)]
pub(crate) fn emit_fd_stack(event: &Event, regs: &UserRegs) {
    let mut header = *event;
    header.kind = EventKind::UserStack as u32;
    if send_stack(header, regs) == Err(NotSent::RingFull) {
        count_lost(DropReason::RingFullFdStack);
    }
}

/// `--heap`: sends the user stack at an allocator call's entry ([`EventKind::HeapStack`],
/// with the entry's time, tgid and tid), under the same share of the ring and `--stack-rate`
/// as the syscalls' stacks. Whether it went: only then does the block carry its time.
#[inline(always)]
pub(crate) fn emit_heap_stack(tgid: u32, tid: u32, now_ns: u64, regs: &UserRegs) -> bool {
    let header = Event::new(EventKind::HeapStack, now_ns, tgid, tid);
    match send_stack(header, regs) {
        Ok(()) => true,
        Err(NotSent::RingFull) => {
            count_lost(DropReason::RingFullHeapStack);
            false
        }
        Err(NotSent::NotWanted | NotSent::Busy) => false,
    }
}

/// Builds a [`UserStackEvent`] with `event` as its header and sends it, when the ring's
/// share for stacks and this CPU's bucket allow.
#[inline(always)]
fn send_stack(event: Event, regs: &UserRegs) -> Result<(), NotSent> {
    // The bucket first: in a storm of opens it refuses nearly every call, and then the ring
    // need not be asked. A stack it allows while the ring is over its share is a token spent
    // for nothing, as rare as a ring that full.
    if !stack_allowed(event.ktime_ns) {
        return Err(NotSent::NotWanted);
    }
    let unread = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let size = EVENTS.query(BPF_RB_RING_SIZE as u64);
    if unread > size / STACK_RING_SHARE_DIVISOR {
        return Err(NotSent::NotWanted);
    }
    let Some(scratch) = USTACK_SCRATCH.get_ptr_mut(0) else {
        return Err(NotSent::NotWanted); // cannot happen: slot 0 always exists
    };
    let busy = unsafe { &raw mut (*scratch).busy };
    // Test and set in one instruction: a program preempted between a test and a set would
    // let two runs fill the slot at once.
    let was_busy = unsafe {
        core::intrinsics::atomic_xchg::<u64, { core::intrinsics::AtomicOrdering::Relaxed }>(busy, 1)
    };
    if was_busy != 0 {
        count_lost(DropReason::StackScratchBusy);
        return Err(NotSent::Busy);
    }
    let record = unsafe { &raw mut (*scratch).record };
    let sent = unsafe {
        (*record).event = event;
        (*record).ip = regs.ip;
        (*record).sp = regs.sp;
        (*record).bp = regs.bp;
        let (len, flags) = copy_stack((*record).bytes.as_mut_ptr(), regs.sp);
        (*record).len = len;
        (*record).flags = flags;
        output(record, len)
    };
    unsafe { core::ptr::write_volatile(busy, 0) };
    if sent { Ok(()) } else { Err(NotSent::RingFull) }
}

/// The bytes to copy: `STACK_BYTES`, bounded for the verifier and rounded down to 8.
#[inline(always)]
fn wanted() -> u64 {
    let want = unsafe { read_volatile(&STACK_BYTES) } as u64;
    bounded(want.max(USTACK_MIN_BYTES as u64))
}

/// `len` as the verifier must see it: at most `USTACK_CAP`, a multiple of 8.
#[inline(always)]
fn bounded(len: u64) -> u64 {
    let len = len & !7;
    if len > USTACK_CAP as u64 {
        USTACK_CAP as u64
    } else {
        len
    }
}

/// Copies the user stack at `sp` into `dst` (`USTACK_CAP` bytes of a map value); returns
/// the bytes copied and the record's flags.
///
/// A probe read fails whole when any byte of it is unmapped. A thread's stack has its
/// `struct pthread` and TLS above it in the same mapping, so the full read nearly always
/// works; the main thread's stack ends a few KiB above `main` (its argv, environment and
/// auxv), so a short program's calls from `main` need the retry up to `mm->start_stack`
/// (where `argc` is: every frame lies below it). Halving lengths are the last resort.
#[inline(always)]
unsafe fn copy_stack(dst: *mut u8, sp: u64) -> (u32, u32) {
    let want = wanted();
    if read_user(dst, want, sp) {
        return (want as u32, 0);
    }
    if let Some(start) = main_stack_start()
        && start > sp
    {
        // Up to and including argc's word.
        let len = bounded((start - sp + 8 + 7) & !7);
        if len < want && len > 0 && read_user(dst, len, sp) {
            return (len as u32, USTACK_SHORT);
        }
    }
    let mut len = want / 2;
    for _ in 0..6 {
        len = bounded(len);
        if len < USTACK_MIN_BYTES as u64 {
            break;
        }
        if read_user(dst, len, sp) {
            return (len as u32, USTACK_SHORT);
        }
        len /= 2;
    }
    (0, USTACK_UNREADABLE)
}

/// One `bpf_probe_read_user` of `len` (already [`bounded`]) bytes; whether it succeeded.
#[inline(always)]
fn read_user(dst: *mut u8, len: u64, src: u64) -> bool {
    let len = bounded(len);
    unsafe {
        generated::bpf_probe_read_user(dst as *mut c_void, len as u32, src as *const c_void) == 0
    }
}

/// `current->mm->start_stack`, with plain loads through the BTF-typed task pointer; `None`
/// when the loader found no offsets, or for a task without an mm.
#[inline(always)]
fn main_stack_start() -> Option<u64> {
    let off = offsets();
    if off.start_stack_available == 0 {
        return None;
    }
    unsafe {
        let task = generated::bpf_get_current_task_btf() as *const u8;
        let mm = *(task.add(off.task_mm as usize) as *const *const u8);
        if mm.is_null() {
            return None;
        }
        Some(*(mm.add(off.mm_start_stack as usize) as *const u64))
    }
}

/// Copies the record into the ring cut after `len` bytes of stack; whether the ring had
/// room.
#[inline(always)]
unsafe fn output(record: *mut UserStackEvent, len: u32) -> bool {
    let size = UserStackEvent::FIXED as u64 + bounded(len as u64);
    const _: () = assert!(UserStackEvent::FIXED + USTACK_CAP == size_of::<UserStackEvent>());
    unsafe {
        generated::bpf_ringbuf_output(
            &EVENTS as *const _ as *mut c_void,
            record as *mut c_void,
            size,
            SUBMIT_FLAGS,
        ) == 0
    }
}
