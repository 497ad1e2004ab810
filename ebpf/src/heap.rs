//! `--heap`: the allocator's entry points, paired in the kernel.
//!
//! - `heap_enter` (uprobe on every allocating symbol, its [`HeapKind`] in the attach cookie)
//!   stashes the size and the caller's pc per thread. A call made inside another one
//!   (operator new -> malloc, realloc(NULL) -> malloc) runs lower on the same stack and is
//!   ignored, so the outermost call and its caller name the allocation.
//! - `heap_return` (uretprobe on the same symbols) inserts the result in [`HEAP_LIVE`] and
//!   adds it to the process's [`HEAP_TOTALS`].
//! - `heap_free` (uprobe on every freeing symbol) removes it and subtracts it.
//!
//! The counts never go through the ring: the iteration marker carries the totals, userspace
//! reads the survivors out of [`HEAP_LIVE`] at the end, and each free counts its block's
//! lifetime in [`HEAP_LIFETIMES`]. Only sampled stacks do: `heap_enter` sends the user stack
//! of some calls (`--stack-rate`, the ring's share for stacks: [`crate::ustack`]) and the
//! block carries the entry's time ([`HeapLive::stack_ns`]); when such a block ends, a
//! header-only [`EventKind::HeapFreed`] tells the reader to drop its stack.

use core::intrinsics::{AtomicOrdering::Relaxed, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use leakscope_common::{
    DropReason, Event, EventKind, globals,
    heap::{
        COOKIE_WRAPPER, HeapInflight, HeapKey, HeapKind, HeapLive, HeapTotals, WRAPPER_STALE_NS,
    },
    lifetime_buckets::{self, HeapLifetimes},
    maps, programs, same_name,
};

use crate::{
    count_lost, current_ids,
    emit::emit,
    tracked,
    ustack::{UserRegs, emit_heap_stack},
};

/// `n * size`, or `u64::MAX` when it overflows (the call then fails and records nothing).
/// In 32-bit halves: `checked_mul` (and `n > MAX / size`, which LLVM turns into it) needs a
/// 128-bit multiply that BPF has no instruction for.
#[inline(always)]
fn product(n: u64, size: u64) -> u64 {
    let (big, small) = if n >= size { (n, size) } else { (size, n) };
    if small >> 32 != 0 {
        return u64::MAX;
    }
    let high = (big >> 32) * small;
    if high >> 32 != 0 {
        return u64::MAX;
    }
    let low = (big & 0xffff_ffff) * small;
    let total = (high << 32).wrapping_add(low);
    if total < low { u64::MAX } else { total }
}

/// Nonzero under `--heap` (set by the loader): the marker then counts iterations for the
/// allocations and carries the totals.
#[unsafe(no_mangle)]
static HEAP_ON: u32 = 0;
named!(HEAP_ON, globals::HEAP_ON);

#[map]
static HEAP_INFLIGHT: HashMap<u32, HeapInflight> =
    HashMap::with_max_entries(maps::HEAP_INFLIGHT_MAX_ENTRIES, 0);
named!(HEAP_INFLIGHT, maps::HEAP_INFLIGHT);

#[map]
static HEAP_LIVE: HashMap<HeapKey, HeapLive> =
    HashMap::with_max_entries(maps::HEAP_LIVE_MAX_ENTRIES, BPF_F_NO_PREALLOC);
named!(HEAP_LIVE, maps::HEAP_LIVE);

#[map]
static HEAP_TOTALS: HashMap<u32, HeapTotals> =
    HashMap::with_max_entries(maps::HEAP_TOTALS_MAX_ENTRIES, 0);
named!(HEAP_TOTALS, maps::HEAP_TOTALS);

/// Freed blocks' lifetimes by bucket, per CPU (summed by the reader at the end).
#[map]
static HEAP_LIFETIMES: PerCpuArray<HeapLifetimes> =
    PerCpuArray::with_max_entries(maps::HEAP_LIFETIMES_MAX_ENTRIES, 0);
named!(HEAP_LIFETIMES, maps::HEAP_LIFETIMES);

const PAGE: u64 = 4096;

/// Counts a freed block that lived `ns` nanoseconds and `iterations` markers; `None` when
/// its process never fired a marker (a helper the target started): its blocks live in no
/// iteration, and counting them as 0 would pull the histogram in iterations down.
#[inline(always)]
fn count_lifetime(ns: u64, iterations: Option<u64>) {
    let Some(counts) = HEAP_LIFETIMES.get_ptr_mut(0) else {
        return;
    };
    let ns = lifetime_buckets::bucket(ns);
    // Bounds the verifier can see (`bucket` never exceeds them).
    if ns < lifetime_buckets::BUCKETS {
        // Atomic: under full preemption another program may run on this CPU meanwhile.
        add_u(unsafe { &raw mut (*counts).ns[ns] }, 1);
    }
    if let Some(iterations) = iterations {
        let iterations = lifetime_buckets::bucket(iterations);
        if iterations < lifetime_buckets::BUCKETS {
            add_u(unsafe { &raw mut (*counts).iterations[iterations] }, 1);
        }
    }
}

#[inline(always)]
pub(crate) fn heap_on() -> bool {
    unsafe { core::ptr::read_volatile(&HEAP_ON) != 0 }
}

/// `*field += delta`, atomically: every thread of the process allocates at once. The result
/// is unused, so it compiles to a plain BPF atomic add.
#[inline(always)]
fn add(field: *mut i64, delta: i64) {
    unsafe { atomic_xadd::<i64, i64, { Relaxed }>(field, delta) };
}

#[inline(always)]
fn add_u(field: *mut u64, delta: u64) {
    unsafe { atomic_xadd::<u64, u64, { Relaxed }>(field, delta) };
}

/// The process's totals, created on first use.
#[inline(always)]
fn totals(tgid: u32) -> Option<*mut HeapTotals> {
    if let Some(t) = HEAP_TOTALS.get_ptr_mut(tgid) {
        return Some(t);
    }
    let _ = HEAP_TOTALS.insert(tgid, HeapTotals::default(), BPF_NOEXIST as u64);
    HEAP_TOTALS.get_ptr_mut(tgid)
}

#[inline(always)]
fn arg(ctx: &ProbeContext, n: usize) -> u64 {
    ctx.arg::<u64>(n).unwrap_or(0)
}

#[uprobe]
pub fn heap_enter(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    if tracked(tgid).is_none() {
        return 0;
    }
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let sp = unsafe { (*ctx.regs).rsp };
    let now = unsafe { bpf_ktime_get_ns() };
    // The caller of a wrapper (operator new) this call runs inside, if any.
    let mut wrapped_caller = 0;
    // ... and the stack sent at the wrapper's entry, which is this allocation's.
    let mut wrapped_stack_ns = 0;
    if let Some(stash) = HEAP_INFLIGHT.get_ptr_mut(tid) {
        let (entry_sp, wrapper) = unsafe { ((*stash).entry_sp, (*stash).wrapper != 0) };
        // Lower on the stack than the outermost call: nested inside it.
        if sp < entry_sp && !wrapper {
            unsafe { (*stash).depth += 1 };
            return 0;
        }
        // The allocator call a wrapper makes (at the wrapper's own stack pointer when the
        // wrapper tail-calls it: libstdc++'s `new[]` jumps to `new`): it is the allocation,
        // on the wrapper's caller's account, unless the wrapper's entry is stale.
        if wrapper
            && sp <= entry_sp
            && now.saturating_sub(unsafe { (*stash).entry_ns }) < WRAPPER_STALE_NS
        {
            wrapped_caller = unsafe { (*stash).caller };
            wrapped_stack_ns = unsafe { (*stash).stack_ns };
        }
        // Else its return was never seen (a thread unwound out of it): replace it.
    }
    let Some(kind) = HeapKind::from_cookie(cookie) else {
        return 0;
    };
    let (a0, a1, a2) = (arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2));
    let size = match kind {
        HeapKind::Malloc | HeapKind::AlignedArg0 => a0,
        HeapKind::Pvalloc => a0.div_ceil(PAGE) * PAGE,
        HeapKind::Calloc => product(a0, a1),
        HeapKind::Realloc => a1,
        HeapKind::ReallocArray => product(a1, a2),
        HeapKind::AlignedArg1 => a1,
        HeapKind::PosixMemalign => a2,
        HeapKind::Free => return 0, // attached to heap_free, never here
    };
    let mut stash = HeapInflight {
        kind: kind as u32,
        depth: 0,
        size,
        memptr: if kind == HeapKind::PosixMemalign {
            a0
        } else {
            0
        },
        // At entry the return address is the word at the stack pointer.
        caller: if wrapped_caller != 0 {
            wrapped_caller
        } else {
            unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0)
        },
        entry_sp: sp,
        old_addr: 0,
        wrapper: (cookie & COOKIE_WRAPPER != 0) as u32,
        _pad: 0,
        entry_ns: now,
        old: HeapLive::default(),
        stack_ns: wrapped_stack_ns,
    };
    // A sampled stack of the call, from the allocator's entry: the caller's pc alone names
    // a wrapper's code (Rust's `__rust_alloc`, libc's `strdup`), the stack names the
    // program's function further up.
    if wrapped_caller == 0 {
        let regs = unsafe {
            UserRegs {
                ip: (*ctx.regs).rip,
                sp,
                bp: (*ctx.regs).rbp,
            }
        };
        if emit_heap_stack(tgid, tid, now, &regs) {
            stash.stack_ns = now;
        }
    }
    // realloc frees its old block now, not at return: by then another thread may have been
    // handed the same address.
    if matches!(kind, HeapKind::Realloc | HeapKind::ReallocArray) && a0 != 0 {
        let key = HeapKey {
            tgid,
            _pad: 0,
            addr: a0,
        };
        if let Some(old) = unsafe { HEAP_LIVE.get(&key) } {
            let old = *old;
            if HEAP_LIVE.remove(&key).is_ok() {
                stash.old = old;
                stash.old_addr = a0;
                // Its lifetime ends only if the call succeeds (see `heap_return`).
                release(tgid, &old, false);
            }
        }
    }
    if HEAP_INFLIGHT.insert(tid, stash, BPF_ANY as u64).is_err() {
        count_lost(DropReason::HeapInflightFull);
    }
    0
}
named!(heap_enter, programs::HEAP_ENTER);

#[uretprobe]
pub fn heap_return(ctx: RetProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    let Some(stash) = HEAP_INFLIGHT.get_ptr_mut(tid) else {
        return 0;
    };
    // After the return the stack pointer is one word above the entry's; a nested call's
    // return is lower.
    let sp = unsafe { (*ctx.regs).rsp };
    if sp <= unsafe { (*stash).entry_sp } {
        unsafe {
            if (*stash).depth > 0 {
                (*stash).depth -= 1;
            }
        }
        return 0;
    }
    let stash = unsafe { *stash };
    let _ = HEAP_INFLIGHT.remove(tid);
    let mut addr: u64 = ctx.ret();
    if stash.kind == HeapKind::PosixMemalign as u32 {
        addr = if addr as u32 == 0 {
            unsafe { bpf_probe_read_user(stash.memptr as *const u64) }.unwrap_or(0)
        } else {
            0
        };
    }
    // A realloc that succeeded (or freed with size 0) ended its old block: it lived until
    // now. A failed one keeps it: put it back.
    let old_kept = addr == 0 && stash.size != 0;
    if stash.old_addr != 0 {
        if old_kept {
            record(tgid, stash.old_addr, &stash.old);
        } else {
            stack_freed(tgid, tid, &stash.old);
            if let Some(t) = HEAP_TOTALS.get_ptr_mut(tgid)
                && stash.old.alloc_ns >= unsafe { (*t).epoch_ns }
            {
                lifetime_ended(&stash.old, unsafe { (*t).iteration });
            }
        }
    }
    if addr == 0 {
        if stash.stack_ns != 0 {
            // No block: its stack names nothing.
            stack_freed(
                tgid,
                tid,
                &HeapLive {
                    stack_ns: stash.stack_ns,
                    ..HeapLive::default()
                },
            );
        }
        return 0;
    }
    let Some(t) = totals(tgid) else {
        return 0;
    };
    let live = HeapLive {
        size: stash.size,
        alloc_ns: unsafe { bpf_ktime_get_ns() },
        alloc_iter: unsafe { (*t).iteration },
        caller: stash.caller,
        tid,
        kind: stash.kind,
        stack_ns: stash.stack_ns,
    };
    record(tgid, addr, &live);
    0
}
named!(heap_return, programs::HEAP_RETURN);

/// Puts `live` in [`HEAP_LIVE`] at `addr` and adds it to the totals.
#[inline(always)]
fn record(tgid: u32, addr: u64, live: &HeapLive) {
    let Some(t) = totals(tgid) else {
        return;
    };
    let key = HeapKey {
        tgid,
        _pad: 0,
        addr,
    };
    if HEAP_LIVE.insert(&key, live, BPF_NOEXIST as u64).is_err() {
        // Either the address is still live (its free went through an entry point not
        // traced) or the map is full.
        let stale = unsafe { HEAP_LIVE.get(&key) }.copied();
        match stale {
            Some(stale) => {
                if stale.alloc_ns >= unsafe { (*t).epoch_ns } {
                    // Its free was not seen: when it ended is unknown, so no lifetime.
                    release(tgid, &stale, false);
                    add_u(unsafe { &raw mut (*t).missed_frees }, 1);
                }
                stack_freed(tgid, live.tid, &stale);
                if HEAP_LIVE.insert(&key, live, BPF_ANY as u64).is_err() {
                    count_lost(DropReason::HeapLiveFull);
                    add_u(unsafe { &raw mut (*t).unrecorded }, 1);
                    stack_freed(tgid, live.tid, live);
                    return;
                }
            }
            None => {
                // Not in the totals either: a free of it could never be paired.
                count_lost(DropReason::HeapLiveFull);
                add_u(unsafe { &raw mut (*t).unrecorded }, 1);
                stack_freed(tgid, live.tid, live);
                return;
            }
        }
    }
    add(unsafe { &raw mut (*t).live_bytes }, live.size as i64);
    add(unsafe { &raw mut (*t).live_count }, 1);
    add_u(unsafe { &raw mut (*t).allocs }, 1);
}

/// `live` (out of [`HEAP_LIVE`], or never in it) ended: if its stack was sent, the reader
/// is told to drop it ([`EventKind::HeapFreed`]), so it keeps only live blocks' stacks.
#[inline(always)]
fn stack_freed(tgid: u32, tid: u32, live: &HeapLive) {
    if live.stack_ns == 0 {
        return;
    }
    let mut event = Event::new(
        EventKind::HeapFreed,
        unsafe { bpf_ktime_get_ns() },
        tgid,
        tid,
    );
    event.aux = live.stack_ns;
    emit(event);
}

/// Takes `live` (already out of [`HEAP_LIVE`]) off the totals; `freed_now`: it was freed
/// by this call, and its lifetime is counted.
#[inline(always)]
fn release(tgid: u32, live: &HeapLive, freed_now: bool) {
    let Some(t) = HEAP_TOTALS.get_ptr_mut(tgid) else {
        return;
    };
    if live.alloc_ns < unsafe { (*t).epoch_ns } {
        return; // the old image's: never counted in these totals
    }
    add(unsafe { &raw mut (*t).live_bytes }, -(live.size as i64));
    add(unsafe { &raw mut (*t).live_count }, -1);
    add_u(unsafe { &raw mut (*t).frees }, 1);
    let iteration = unsafe { (*t).iteration };
    if live.alloc_iter != iteration {
        add_u(unsafe { &raw mut (*t).late_frees }, 1);
    }
    if freed_now {
        lifetime_ended(live, iteration);
    }
}

/// Counts the lifetime of `live`, ending now, at the process's marker count `iteration`.
#[inline(always)]
fn lifetime_ended(live: &HeapLive, iteration: u64) {
    let now = unsafe { bpf_ktime_get_ns() };
    count_lifetime(
        now.saturating_sub(live.alloc_ns),
        (iteration > 0).then(|| iteration.saturating_sub(live.alloc_iter)),
    );
}

#[uprobe]
pub fn heap_free(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    let addr = arg(&ctx, 0);
    if addr == 0 || tracked(tgid).is_none() {
        return 0;
    }
    let key = HeapKey {
        tgid,
        _pad: 0,
        addr,
    };
    let Some(live) = (unsafe { HEAP_LIVE.get(&key) }).copied() else {
        return 0; // allocated before tracing, or through an entry point not traced
    };
    // Only the thread whose remove succeeds subtracts it.
    if HEAP_LIVE.remove(&key).is_ok() {
        release(tgid, &live, true);
        stack_freed(tgid, tid, &live);
    }
    0
}
named!(heap_free, programs::HEAP_FREE);

/// The iteration marker of `tgid` fired: its allocations from now on belong to the next
/// iteration. Returns (live bytes, live count, missed frees, unrecorded) for the record.
#[inline(always)]
pub(crate) fn on_marker(tgid: u32) -> Option<[u64; 4]> {
    // Created here too: an allocation after the first marker must belong to iteration 1.
    let t = totals(tgid)?;
    add_u(unsafe { &raw mut (*t).iteration }, 1);
    unsafe {
        Some([
            (*t).live_bytes as u64,
            (*t).live_count as u64,
            (*t).missed_frees,
            (*t).unrecorded,
        ])
    }
}

/// `tgid` exec'd: a new image with an empty heap. Its old allocations stay in
/// [`HEAP_LIVE`] until userspace drops them, and are never paired again.
#[inline(always)]
pub(crate) fn on_exec(tgid: u32, now: u64) {
    if let Some(t) = HEAP_TOTALS.get_ptr_mut(tgid) {
        unsafe {
            *t = HeapTotals {
                epoch_ns: now,
                ..HeapTotals::default()
            }
        };
    }
}
