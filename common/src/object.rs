//! The names under which the loader finds the kernel object's maps, programs and globals,
//! and the maps' sizes: the contract between `ebpf/` and the loader, as libbpf-tools'
//! `memleak.h` is for memleak.
//!
//! The attribute macros of `aya-ebpf` take no constants, so the kernel side names its
//! items after these constants and checks each name at compile time with [`same_name`]
//! (`stringify!` of the item against the constant): renaming one side alone fails the
//! kernel build. The loader looks every item up by these constants, and a unit test of the
//! loader parses the embedded object to check that they are all there.

/// Whether two names are equal, usable in a `const` assertion.
pub const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Maps, by name, with their sizes.
pub mod maps {
    use crate::DropReason;

    /// `HashMap<u32, TrackedProcess>`: the tgids being traced, each with its slot for an
    /// open held back for pairing ([`crate::TrackedProcess`]). The loader inserts the
    /// target; the kernel adds the children of traced processes when they fork.
    pub const TRACKED: &str = "TRACKED";
    /// Processes traced at once. A fork beyond this is counted as
    /// [`DropReason::TrackedFull`], and the child runs untraced.
    pub const TRACKED_MAX_ENTRIES: u32 = 8192;

    /// `Array<u64>`, a bitmap indexed by tgid: the bit is set for a traced process, kept
    /// equal to [`TRACKED`]'s keys (set when a tgid enters it, cleared before it leaves).
    /// Tested before the hash lookup, so that the syscalls of the processes not traced
    /// stop at an array load. A tgid beyond the array (pid_max raised after the load)
    /// falls through to the lookup.
    pub const TRACED_PIDS: &str = "TRACED_PIDS";
    /// The pids the compiled-in size covers; the loader sizes it for
    /// /proc/sys/kernel/pid_max.
    pub const TRACED_PIDS_PLACEHOLDER_PIDS: u32 = 32768;

    /// Words of [`TRACED_PIDS`] for pids `0..pids`.
    pub const fn traced_pids_words(pids: u32) -> u32 {
        pids.div_ceil(64)
    }

    /// `RingBuf`: every record for userspace.
    pub const EVENTS: &str = "EVENTS";
    /// The ring size compiled into the object. The loader always sets its own (a power of
    /// two, a multiple of the page size: `--ring-mib`), so this is only a placeholder.
    pub const EVENTS_PLACEHOLDER_BYTES: u32 = 16 * 1024 * 1024;

    /// `PerCpuArray<u64>`: records dropped or half-recorded, one slot per [`DropReason`].
    pub const LOST: &str = "LOST";
    /// One slot per reason.
    pub const LOST_MAX_ENTRIES: u32 = DropReason::COUNT as u32;

    /// `PerCpuArray<PathEvent>`, one slot: where a path record is built before it is
    /// copied into the ring cut after its path (`bpf_ringbuf_output`), so the ring carries
    /// only the bytes in use.
    pub const PATH_SCRATCH: &str = "PATH_SCRATCH";
    pub const PATH_SCRATCH_MAX_ENTRIES: u32 = 1;

    /// `Array<TrackedProcess>`, one slot of zeroes: the value a forked child is inserted
    /// into [`TRACKED`] with (too big for the BPF stack).
    pub const EMPTY_PROCESS: &str = "EMPTY_PROCESS";
    pub const EMPTY_PROCESS_MAX_ENTRIES: u32 = 1;

    /// `PerCpuArray` of one slot: where a [`crate::UserStackEvent`] is built (behind a
    /// busy word) before it is copied into the ring cut to the stack bytes read.
    pub const USTACK_SCRATCH: &str = "USTACK_SCRATCH";
    pub const USTACK_SCRATCH_MAX_ENTRIES: u32 = 1;

    /// `PerCpuArray` of one slot: each CPU's token bucket for stacks (`--stack-rate`).
    pub const STACK_BUCKET: &str = "STACK_BUCKET";
    pub const STACK_BUCKET_MAX_ENTRIES: u32 = 1;

    /// `--heap`: `HashMap<u32 tid, HeapInflight>`, an allocator call between its entry and
    /// its return.
    pub const HEAP_INFLIGHT: &str = "HEAP_INFLIGHT";
    pub const HEAP_INFLIGHT_MAX_ENTRIES: u32 = 16384;
    /// `--heap`: `HashMap<HeapKey, HeapLive>`, the live allocations of traced processes,
    /// allocated as they come (`BPF_F_NO_PREALLOC`).
    pub const HEAP_LIVE: &str = "HEAP_LIVE";
    pub const HEAP_LIVE_MAX_ENTRIES: u32 = 1 << 20;
    /// `--heap`: `HashMap<u32 tgid, HeapTotals>`.
    pub const HEAP_TOTALS: &str = "HEAP_TOTALS";
    pub const HEAP_TOTALS_MAX_ENTRIES: u32 = 8192;
    /// `--heap`: `PerCpuArray` of one `HeapLifetimes`: freed allocations' lifetimes, by
    /// bucket.
    pub const HEAP_LIFETIMES: &str = "HEAP_LIFETIMES";
    pub const HEAP_LIFETIMES_MAX_ENTRIES: u32 = 1;
}

/// Programs, by name (the kernel function's symbol).
pub mod programs {
    /// BTF tracepoint (tp_btf) `sys_exit`: every syscall of interest, and failed
    /// acquisitions.
    pub const SYS_EXIT: &str = "sys_exit";
    /// Raw tracepoint `sched_process_fork`: new processes, added to the traced set.
    pub const SCHED_PROCESS_FORK: &str = "sched_process_fork";
    /// Raw tracepoint `sched_process_exec`.
    pub const SCHED_PROCESS_EXEC: &str = "sched_process_exec";
    /// Raw tracepoint `sched_process_exit`.
    pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
    /// Uprobe on the iteration marker (`--iteration-symbol`), attached by the loader.
    pub const ITERATION_MARKER: &str = "iteration_marker";
    /// `--heap`: uprobe on every allocating entry point ([`crate::heap::SYMBOLS`]), the
    /// kind in the attach cookie.
    pub const HEAP_ENTER: &str = "heap_enter";
    /// `--heap`: uretprobe on the same entry points.
    pub const HEAP_RETURN: &str = "heap_return";
    /// `--heap`: uprobe on every freeing entry point.
    pub const HEAP_FREE: &str = "heap_free";

    /// A tracepoint program and the tracepoint the loader attaches it to.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Tracepoint {
        pub program: &'static str,
        pub tracepoint: &'static str,
    }

    /// The BTF tracepoint programs (tp_btf): they read their arguments with plain loads,
    /// where a raw tracepoint needs a probe-read helper call. `sys_exit` runs for every
    /// syscall on the machine, so it is one of them.
    pub const BTF_TRACEPOINTS: [Tracepoint; 1] = [Tracepoint {
        program: SYS_EXIT,
        tracepoint: "sys_exit",
    }];

    /// The raw-tracepoint programs (the scheduler events, which are rare). Each is named
    /// after its tracepoint, but the two names are kept apart: one is looked up in the
    /// object, the other in the kernel.
    pub const RAW_TRACEPOINTS: [Tracepoint; 3] = [
        Tracepoint {
            program: SCHED_PROCESS_FORK,
            tracepoint: "sched_process_fork",
        },
        Tracepoint {
            program: SCHED_PROCESS_EXEC,
            tracepoint: "sched_process_exec",
        },
        Tracepoint {
            program: SCHED_PROCESS_EXIT,
            tracepoint: "sched_process_exit",
        },
    ];
}

/// Globals the loader sets before load, by name.
pub mod globals {
    /// [`crate::KernelOffsets`]: struct offsets from the running kernel's BTF.
    pub const OFFSETS: &str = "OFFSETS";
    /// `u32`: nonzero to hold opens back for pairing with their close
    /// ([`crate::TrackedProcess`]); the loader sets 0 for `LEAKSCOPE_NO_PAIR=1`.
    pub const PAIR_OPENS: &str = "PAIR_OPENS";
    /// `u32`: bytes of user stack copied with a memory-mapping call (`--stack-bytes`), a
    /// multiple of 8 in `USTACK_MIN_BYTES..=USTACK_CAP`.
    pub const STACK_BYTES: &str = "STACK_BYTES";
    /// `u32`: stacks copied per second per CPU (`--stack-rate`); 0 = with every call.
    pub const STACK_RATE: &str = "STACK_RATE";
    /// `u32`: nonzero under `--heap`: the iteration marker then counts the process's
    /// iterations for its allocations and carries its heap totals.
    pub const HEAP_ON: &str = "HEAP_ON";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_compares_whole_names() {
        assert!(same_name("LOST", maps::LOST));
        assert!(!same_name("LOS", "LOST"));
        assert!(!same_name("LOST", "LOSS"));
        assert!(same_name("", ""));
    }

    #[test]
    fn names_are_distinct() {
        let names = [
            maps::TRACKED,
            maps::EVENTS,
            maps::LOST,
            maps::USTACK_SCRATCH,
            maps::STACK_BUCKET,
            maps::PATH_SCRATCH,
            maps::EMPTY_PROCESS,
            maps::TRACED_PIDS,
            programs::SYS_EXIT,
            programs::SCHED_PROCESS_FORK,
            programs::SCHED_PROCESS_EXEC,
            programs::SCHED_PROCESS_EXIT,
            programs::ITERATION_MARKER,
            programs::HEAP_ENTER,
            programs::HEAP_RETURN,
            programs::HEAP_FREE,
            maps::HEAP_INFLIGHT,
            maps::HEAP_LIVE,
            maps::HEAP_TOTALS,
            maps::HEAP_LIFETIMES,
            globals::OFFSETS,
            globals::PAIR_OPENS,
            globals::STACK_BYTES,
            globals::STACK_RATE,
            globals::HEAP_ON,
        ];
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "{name} is used twice");
        }
    }

    #[test]
    fn the_placeholder_ring_is_a_valid_ring_size() {
        // The kernel refuses a ring that is not a power of two of whole pages.
        assert!(maps::EVENTS_PLACEHOLDER_BYTES.is_power_of_two());
        assert_eq!(maps::EVENTS_PLACEHOLDER_BYTES % 4096, 0);
    }

    #[test]
    fn lost_has_a_slot_for_every_reason() {
        assert_eq!(
            maps::LOST_MAX_ENTRIES as usize,
            crate::DropReason::ALL.len()
        );
    }
}
