//! `--heap`: the allocator traced with uprobes (see `ebpf/src/heap.rs`): where the probes
//! go ([`attach`]), what the kernel's maps hold at the end ([`snapshot`]), the sampled
//! stacks of live blocks ([`stacks`]) and how they name the survivors ([`apportion`]).

pub(crate) mod apportion;
pub(crate) mod attach;
pub(crate) mod follow;
pub(crate) mod snapshot;
pub(crate) mod stacks;

use aya::maps::{HashMap, MapData, PerCpuArray};
use leakscope_common::heap::{HeapKey, HeapLive, HeapTotals};
use leakscope_common::lifetime_buckets::HeapLifetimes;

/// The kernel's heap maps, taken out of the object by the loader.
pub(crate) struct HeapMaps {
    pub(crate) live: HashMap<MapData, HeapKey, HeapLive>,
    pub(crate) totals: HashMap<MapData, u32, HeapTotals>,
    /// Freed blocks' lifetimes, by bucket, per CPU.
    pub(crate) lifetimes: PerCpuArray<MapData, HeapLifetimes>,
}
