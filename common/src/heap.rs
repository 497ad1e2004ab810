//! `--heap`: the allocator entry points leakscope traces with uprobes, and the kernel maps
//! that pair allocations with frees (the same shape as bcc's memleak, paired in the kernel).
//!
//! One table ([`SYMBOLS`]) serves the loader (which symbols to attach, and with which kind as
//! the attach cookie) and the kernel (which argument holds the size, which the pointer).
//! Only survivors reach userspace: a snapshot of [`HeapLive`] at the end, aggregated by
//! caller, and the per-process totals ([`HeapTotals`]) the iteration marker carries.

/// What an allocator entry point does with its arguments. The value is the uprobe's attach
/// cookie, so one kernel program serves every symbol of a kind.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeapKind {
    /// `size` in arg0 (malloc, valloc, operator new).
    Malloc = 1,
    /// `size` in arg0, rounded up to a page (pvalloc).
    Pvalloc = 2,
    /// `nmemb * size` in arg0, arg1; an overflowing product allocates nothing.
    Calloc = 3,
    /// The old pointer in arg0, the new size in arg1.
    Realloc = 4,
    /// The old pointer in arg0, `nmemb * size` in arg1, arg2.
    ReallocArray = 5,
    /// The alignment in arg0, the size in arg1 (memalign, aligned_alloc).
    AlignedArg1 = 6,
    /// The size in arg0, the alignment in arg1 (aligned operator new).
    AlignedArg0 = 7,
    /// `int posix_memalign(void **memptr, size_t align, size_t size)`: the pointer is
    /// written to `*memptr` when it returns 0.
    PosixMemalign = 8,
    /// The pointer in arg0 (free, operator delete): traced at entry only.
    Free = 9,
}

/// Or'ed into an attach cookie: the entry point is traced at its entry only, as a wrapper
/// whose own allocator call (traced) makes the block: C++ `operator new`, which may throw.
/// A uretprobe replaces the return address on the stack, and an exception unwinding
/// through that frame finds no unwind info there: `std::terminate`. So `new` only lends its
/// caller to the `malloc` inside it.
pub const COOKIE_WRAPPER: u64 = 1 << 8;

/// A wrapper's entry older than this is stale (it never made its inner call, which only a
/// wrapper misjudged as one would do): the calls after it are not its own. Generous: a
/// thread may be preempted between `new` and its `malloc` for milliseconds on a busy
/// machine, and a stale entry can only lend a wrong caller, never change a count.
pub const WRAPPER_STALE_NS: u64 = 1_000_000_000;

impl HeapKind {
    /// Whether a call of this symbol may throw a C++ exception (the throwing forms of
    /// `operator new`, and the nothrow ones, which call them inside a `try`).
    pub fn may_throw(symbol: &str) -> bool {
        symbol.starts_with("_Znw") || symbol.starts_with("_Zna")
    }

    /// The kind of a cookie value, without [`COOKIE_WRAPPER`] (`None` for a value no kind
    /// has).
    #[inline(always)]
    pub const fn from_cookie(cookie: u64) -> Option<HeapKind> {
        Some(match cookie & !COOKIE_WRAPPER {
            1 => HeapKind::Malloc,
            2 => HeapKind::Pvalloc,
            3 => HeapKind::Calloc,
            4 => HeapKind::Realloc,
            5 => HeapKind::ReallocArray,
            6 => HeapKind::AlignedArg1,
            7 => HeapKind::AlignedArg0,
            8 => HeapKind::PosixMemalign,
            9 => HeapKind::Free,
            _ => return None,
        })
    }
}

/// Every allocator entry point leakscope attaches to when the target's objects define it:
/// glibc, C++ `operator new`/`delete`, jemalloc (prefixed build), mimalloc. Absent ones are
/// skipped; `malloc` and `free` must attach somewhere.
pub const SYMBOLS: &[(&str, HeapKind)] = &[
    ("malloc", HeapKind::Malloc),
    ("valloc", HeapKind::Malloc),
    ("_Znwm", HeapKind::Malloc),
    ("_Znam", HeapKind::Malloc),
    ("_ZnwmRKSt9nothrow_t", HeapKind::Malloc),
    ("_ZnamRKSt9nothrow_t", HeapKind::Malloc),
    ("mi_malloc", HeapKind::Malloc),
    ("_rjem_malloc", HeapKind::Malloc),
    ("_rjem_mallocx", HeapKind::Malloc),
    ("pvalloc", HeapKind::Pvalloc),
    ("calloc", HeapKind::Calloc),
    ("mi_calloc", HeapKind::Calloc),
    ("_rjem_calloc", HeapKind::Calloc),
    ("realloc", HeapKind::Realloc),
    ("mi_realloc", HeapKind::Realloc),
    ("_rjem_realloc", HeapKind::Realloc),
    ("_rjem_rallocx", HeapKind::Realloc),
    ("reallocarray", HeapKind::ReallocArray),
    ("aligned_alloc", HeapKind::AlignedArg1),
    ("memalign", HeapKind::AlignedArg1),
    ("_ZnwmSt11align_val_t", HeapKind::AlignedArg0),
    ("_ZnamSt11align_val_t", HeapKind::AlignedArg0),
    ("_ZnwmSt11align_val_tRKSt9nothrow_t", HeapKind::AlignedArg0),
    ("_ZnamSt11align_val_tRKSt9nothrow_t", HeapKind::AlignedArg0),
    ("mi_malloc_aligned", HeapKind::AlignedArg0),
    ("posix_memalign", HeapKind::PosixMemalign),
    ("free", HeapKind::Free),
    ("_ZdlPv", HeapKind::Free),
    ("_ZdaPv", HeapKind::Free),
    ("_ZdlPvm", HeapKind::Free),
    ("_ZdaPvm", HeapKind::Free),
    ("_ZdlPvSt11align_val_t", HeapKind::Free),
    ("_ZdaPvSt11align_val_t", HeapKind::Free),
    ("_ZdlPvmSt11align_val_t", HeapKind::Free),
    ("_ZdaPvmSt11align_val_t", HeapKind::Free),
    ("mi_free", HeapKind::Free),
    ("_rjem_free", HeapKind::Free),
    ("_rjem_sdallocx", HeapKind::Free),
];

/// The per-thread stash between an allocator's entry and its return
/// (`maps::HEAP_INFLIGHT`, keyed by tid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapInflight {
    /// The outermost call's [`HeapKind`].
    pub kind: u32,
    /// Allocator calls nested inside the outermost one (operator new -> malloc,
    /// realloc(NULL) -> malloc): only the outermost is recorded.
    pub depth: u32,
    /// Bytes asked for.
    pub size: u64,
    /// posix_memalign: where the pointer will be written.
    pub memptr: u64,
    /// The return address of the outermost call: the caller's pc.
    pub caller: u64,
    /// The stack pointer at the outermost call's entry. A call with a lower stack pointer
    /// runs inside it (nested); one at or above it means the stash is stale (its return
    /// was never seen) and is replaced.
    pub entry_sp: u64,
    /// realloc: the old allocation, taken out of [`HeapLive`] at entry, put back if the
    /// call fails. `old.size == 0` when there was none.
    pub old: HeapLive,
    /// realloc: the old pointer (0 when none).
    pub old_addr: u64,
    /// Nonzero: a wrapper's entry ([`COOKIE_WRAPPER`]), waiting for its inner allocator
    /// call, which takes its caller over.
    pub wrapper: u32,
    pub _pad: u32,
    /// When the wrapper was entered (see [`WRAPPER_STALE_NS`]).
    pub entry_ns: u64,
    /// The entry's `ktime_ns` when its user stack was sent ([`crate::EventKind::HeapStack`]),
    /// else 0: handed on to [`HeapLive::stack_ns`].
    pub stack_ns: u64,
}

/// The key of a live allocation (`maps::HEAP_LIVE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeapKey {
    pub tgid: u32,
    pub _pad: u32,
    pub addr: u64,
}

/// A live allocation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapLive {
    pub size: u64,
    /// `bpf_ktime_get_ns()` at its return.
    pub alloc_ns: u64,
    /// The process's iteration-marker count when it was made ([`HeapTotals::iteration`]).
    pub alloc_iter: u64,
    /// The caller's pc (the return address of the outermost allocator call).
    pub caller: u64,
    pub tid: u32,
    /// Its [`HeapKind`].
    pub kind: u32,
    /// Nonzero: the user stack of the allocator call that made it was sent with this time
    /// ([`crate::EventKind::HeapStack`]); the reader finds it by (tgid, `stack_ns`).
    pub stack_ns: u64,
}

/// Per-process totals (`maps::HEAP_TOTALS`, keyed by tgid), changed with atomic adds: every
/// thread of the process allocates at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapTotals {
    /// Bytes allocated and not freed, as the paired calls say.
    pub live_bytes: i64,
    pub live_count: i64,
    /// Iteration markers seen for this process (`HeapLive::alloc_iter`'s clock).
    pub iteration: u64,
    pub allocs: u64,
    pub frees: u64,
    /// An allocation returned an address that was still live: its free was never seen
    /// (an allocator entry point leakscope does not trace). Its old size is subtracted.
    pub missed_frees: u64,
    /// Allocations that found no room in `HEAP_LIVE`: counted in the totals, never freed
    /// there, absent from the sites.
    pub unrecorded: u64,
    /// Frees of allocations made before an earlier iteration marker (late frees).
    pub late_frees: u64,
    /// When the process last exec'd (0: not seen): live entries older than this belong to
    /// the old image and are ignored, never paired.
    pub epoch_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_s_cookie_names_its_kind() {
        for &(symbol, kind) in SYMBOLS {
            assert_eq!(HeapKind::from_cookie(kind as u64), Some(kind), "{symbol}");
        }
        assert_eq!(HeapKind::from_cookie(0), None);
        assert_eq!(
            HeapKind::from_cookie(HeapKind::Malloc as u64 | COOKIE_WRAPPER),
            Some(HeapKind::Malloc)
        );
        assert_eq!(HeapKind::from_cookie(10), None);
    }

    #[test]
    fn only_operator_new_may_throw() {
        let mut throwing = SYMBOLS
            .iter()
            .map(|(symbol, _)| *symbol)
            .filter(|symbol| HeapKind::may_throw(symbol));
        assert_eq!(throwing.clone().count(), 8);
        assert!(throwing.all(|s| s.starts_with("_Zn")));
    }

    #[test]
    fn symbols_are_listed_once() {
        for (i, (symbol, _)) in SYMBOLS.iter().enumerate() {
            assert!(
                !SYMBOLS[..i].iter().any(|(s, _)| s == symbol),
                "{symbol} is listed twice"
            );
        }
    }
}
