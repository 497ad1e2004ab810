//! What the kernel's heap maps hold when tracing ends: the surviving allocations, summed by
//! process and caller while they are read (never one record per allocation: a leak of
//! millions of blocks stays a handful of rows), and each process's totals.

use std::collections::BTreeMap;

use leakscope_common::heap::{HeapLive, HeapTotals};

/// The allocations of one caller still live at the end.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Survivors {
    pub(crate) tgid: u32,
    /// The return address of the allocator call (the caller's pc).
    pub(crate) caller: u64,
    pub(crate) count: u64,
    pub(crate) bytes: u64,
    /// Of those, made inside the iterations: after the first marker, before the last.
    pub(crate) in_loop_count: u64,
    pub(crate) in_loop_bytes: u64,
    /// The caller's function, filled in by [`HeapSnapshot::name_callers`].
    pub(crate) function: Option<String>,
    /// Whether the caller lies in a system library (libc, libstdc++, the loader).
    pub(crate) system: bool,
}

/// The heap maps at the end of tracing.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HeapSnapshot {
    pub(crate) totals: BTreeMap<u32, HeapTotals>,
    /// By survivors made inside the iterations, most bytes first.
    pub(crate) survivors: Vec<Survivors>,
}

impl HeapSnapshot {
    /// Reads both maps. Entries from before a process's last exec are skipped.
    pub(crate) fn take(maps: &super::HeapMaps) -> HeapSnapshot {
        let totals: BTreeMap<u32, HeapTotals> = maps.totals.iter().filter_map(Result::ok).collect();
        let live = maps
            .live
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (k.tgid, v));
        HeapSnapshot {
            survivors: aggregate(live, &totals),
            totals,
        }
    }

    /// Names each caller with `name(tgid, address)`: the function holding the return
    /// address (looked up one byte before it, inside the call instruction).
    pub(crate) fn name_callers(
        &mut self,
        mut name: impl FnMut(u32, u64) -> Option<(String, bool)>,
    ) {
        for survivors in &mut self.survivors {
            if let Some((function, system)) =
                name(survivors.tgid, survivors.caller.saturating_sub(1))
            {
                survivors.function = Some(function);
                survivors.system = system;
            }
        }
    }
}

/// Sums live allocations by (process, caller).
pub(crate) fn aggregate(
    live: impl Iterator<Item = (u32, HeapLive)>,
    totals: &BTreeMap<u32, HeapTotals>,
) -> Vec<Survivors> {
    let mut by_caller: BTreeMap<(u32, u64), Survivors> = BTreeMap::new();
    for (tgid, allocation) in live {
        let process = totals.get(&tgid).copied().unwrap_or_default();
        if allocation.alloc_ns < process.epoch_ns {
            continue; // the image before the last exec
        }
        let entry = by_caller
            .entry((tgid, allocation.caller))
            .or_insert_with(|| Survivors {
                tgid,
                caller: allocation.caller,
                ..Survivors::default()
            });
        entry.count += 1;
        entry.bytes += allocation.size;
        if allocation.alloc_iter >= 1 && allocation.alloc_iter < process.iteration {
            entry.in_loop_count += 1;
            entry.in_loop_bytes += allocation.size;
        }
    }
    let mut survivors: Vec<Survivors> = by_caller.into_values().collect();
    survivors.sort_by(|a, b| {
        (b.in_loop_bytes, b.bytes)
            .cmp(&(a.in_loop_bytes, a.bytes))
            .then(a.caller.cmp(&b.caller))
    });
    survivors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocation(size: u64, alloc_iter: u64, caller: u64, alloc_ns: u64) -> HeapLive {
        HeapLive {
            size,
            alloc_ns,
            alloc_iter,
            caller,
            tid: 1,
            kind: 1,
        }
    }

    #[test]
    fn survivors_are_summed_by_caller_and_those_made_in_the_loop_are_told_apart() {
        let totals = BTreeMap::from([(
            7,
            HeapTotals {
                iteration: 10,
                epoch_ns: 100,
                ..HeapTotals::default()
            },
        )]);
        let live = [
            // Before the first marker (start-up), inside the loop, after the last marker.
            (7, allocation(500, 0, 0xa, 200)),
            (7, allocation(30, 1, 0xb, 300)),
            (7, allocation(30, 9, 0xb, 400)),
            (7, allocation(30, 10, 0xb, 500)),
            // The image before the exec: skipped.
            (7, allocation(1000, 3, 0xb, 50)),
        ];
        let survivors = aggregate(live.into_iter(), &totals);
        assert_eq!(survivors.len(), 2);
        let leak = &survivors[0];
        assert_eq!((leak.caller, leak.count, leak.bytes), (0xb, 3, 90));
        assert_eq!((leak.in_loop_count, leak.in_loop_bytes), (2, 60));
        let startup = &survivors[1];
        assert_eq!(
            (startup.caller, startup.count, startup.in_loop_count),
            (0xa, 1, 0)
        );
    }

    #[test]
    fn callers_are_named_by_the_byte_before_the_return_address() {
        let mut snapshot = HeapSnapshot {
            totals: BTreeMap::new(),
            survivors: vec![Survivors {
                tgid: 3,
                caller: 0x1005,
                ..Survivors::default()
            }],
        };
        snapshot.name_callers(|tgid, address| {
            assert_eq!((tgid, address), (3, 0x1004));
            Some(("leak_thirty".into(), false))
        });
        assert_eq!(
            snapshot.survivors[0].function.as_deref(),
            Some("leak_thirty")
        );
    }
}
