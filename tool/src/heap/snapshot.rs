//! What the kernel's heap maps hold when tracing ends: the surviving allocations, summed by
//! process and caller while they are read (never one record per allocation: a leak of
//! millions of blocks stays a handful of rows), and each process's totals.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::stacks::{Frame, FrameKind, SiteStack};

/// Survivors are also counted by when they were made, in this many equal stretches of the
/// traced time, so iteration boundaries that are known only after tracing (paths, automatic
/// detection) can still tell the loop's allocations from start-up's: to 1/256 of the run.
pub(crate) const TIME_BUCKETS: u64 = 256;

use leakscope_common::heap::{HeapLive, HeapTotals};
use leakscope_common::lifetime_buckets;

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
    /// (count, bytes) by stretch of the traced time ([`HeapSnapshot::bucket_range`]); only
    /// the stretches with survivors.
    pub(crate) by_time: BTreeMap<u64, (u64, u64)>,
    /// The caller's function, filled in by [`HeapSnapshot::name_callers`] (`None` when no
    /// symbol names it).
    pub(crate) function: Option<String>,
    /// Whether the caller lies in a system library (libc, libstdc++, the loader).
    pub(crate) system: bool,
    /// The caller's frames, innermost inlined function first, with file and line where
    /// known; empty when its process's code was not known. From `site` when there is one.
    pub(crate) frames: Vec<Frame>,
    /// The site of the sampled stacks these survivors were made at (the program's first
    /// frames, [`super::stacks`]); `None`: no survivor of the caller had a stack, and the
    /// caller's pc names them.
    pub(crate) site: Option<Arc<SiteStack>>,
    /// Of `in_loop_count`, the survivors without a stack of their own, apportioned to this
    /// site among the caller's sampled sites ([`super::apportion`]).
    pub(crate) without_stack: u64,
}

impl Survivors {
    fn new(tgid: u32, caller: u64, site: Option<Arc<SiteStack>>) -> Survivors {
        Survivors {
            tgid,
            caller,
            site,
            ..Survivors::default()
        }
    }

    /// Counts one live block, made in stretch `bucket`, inside the iterations or not.
    fn add(&mut self, size: u64, bucket: u64, in_loop: bool) {
        self.count += 1;
        self.bytes += size;
        let slot = self.by_time.entry(bucket).or_default();
        slot.0 += 1;
        slot.1 += size;
        if in_loop {
            self.in_loop_count += 1;
            self.in_loop_bytes += size;
        }
    }

    /// Adds `other`'s counts to these (another caller's survivors of the same site).
    pub(super) fn absorb(&mut self, other: &Survivors) {
        self.count += other.count;
        self.bytes += other.bytes;
        self.in_loop_count += other.in_loop_count;
        self.in_loop_bytes += other.in_loop_bytes;
        self.without_stack += other.without_stack;
        for (&bucket, &(count, bytes)) in &other.by_time {
            let slot = self.by_time.entry(bucket).or_default();
            slot.0 += count;
            slot.1 += bytes;
        }
    }
}

/// The heap maps at the end of tracing.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HeapSnapshot {
    pub(crate) totals: BTreeMap<u32, HeapTotals>,
    /// The traced time the stretches of [`Survivors::by_time`] divide (CLOCK_MONOTONIC ns).
    pub(crate) span: (u64, u64),
    /// Traced processes whose allocator was not traced (too many at once).
    pub(crate) unfollowed: u64,
    /// Allocator calls the kernel could not record (`heap_*` drop reasons: a full map).
    pub(crate) dropped: u64,
    /// By survivors made inside the iterations, most bytes first.
    pub(crate) survivors: Vec<Survivors>,
    /// Freed blocks by lifetime bucket (`leakscope_common::lifetime_buckets`), summed over
    /// the CPUs: in nanoseconds, and in iteration markers.
    pub(crate) freed_ns: Vec<u64>,
    pub(crate) freed_iterations: Vec<u64>,
}

impl HeapSnapshot {
    /// Reads both maps; `since_ns` is when tracing began. Entries from before a process's
    /// last exec are skipped.
    /// `stacks` holds the sampled stacks of the live blocks.
    pub(crate) fn take(
        maps: &super::HeapMaps,
        since_ns: u64,
        stacks: &super::stacks::HeapStacks,
    ) -> HeapSnapshot {
        let totals: BTreeMap<u32, HeapTotals> = maps.totals.iter().filter_map(Result::ok).collect();
        let span = (since_ns, crate::event::monotonic_now_ns().max(since_ns + 1));
        let live = maps
            .live
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (k.tgid, v));
        let (freed_ns, freed_iterations) = freed(maps);
        HeapSnapshot {
            survivors: aggregate(live, &totals, span, |tgid, ns| stacks.site(tgid, ns)),
            totals,
            span,
            unfollowed: 0,
            dropped: 0,
            freed_ns,
            freed_iterations,
        }
    }

    /// The times stretch `bucket` covers: `[start, end)`.
    pub(crate) fn bucket_range(&self, bucket: u64) -> (u64, u64) {
        let (start, end) = self.span;
        let width = (end - start).div_ceil(TIME_BUCKETS).max(1);
        (start + bucket * width, start + (bucket + 1) * width)
    }

    /// Names each site by its sampled stack's frames, or when it has none, each caller
    /// with `frames(tgid, address)`: the frames at the return address's call instruction
    /// (looked up one byte before it), innermost inlined function first. The innermost
    /// names the site, when a symbol names it.
    pub(crate) fn name_callers(&mut self, mut frames: impl FnMut(u32, u64) -> Vec<Frame>) {
        for survivors in &mut self.survivors {
            survivors.frames = match &survivors.site {
                Some(site) => site.frames.to_vec(),
                None => frames(survivors.tgid, survivors.caller.saturating_sub(1)),
            };
            if let Some(first) = survivors.frames.first().filter(|f| f.is_named()) {
                survivors.function = Some(first.function.to_string());
                survivors.system = first.kind != FrameKind::User;
            }
        }
    }
}

/// A snapshot at the end of `markers` marked iterations in which one 30-byte block per
/// iteration survives, all from the caller at 0x401234 (for the tests of what reads it).
#[cfg(test)]
pub(crate) fn thirty_byte_survivors(tgid: u32, markers: u64) -> HeapSnapshot {
    let totals = BTreeMap::from([(
        tgid,
        HeapTotals {
            iteration: markers,
            ..HeapTotals::default()
        },
    )]);
    let live = (0..markers).map(|i| {
        let block = HeapLive {
            size: 30,
            alloc_ns: 1000 + i,
            alloc_iter: i,
            caller: 0x401234,
            tid: tgid,
            kind: 1,
            stack_ns: 0,
        };
        (tgid, block)
    });
    HeapSnapshot {
        survivors: aggregate(live, &totals, (0, 1 << 20), |_, _| None),
        totals,
        span: (0, 1 << 20),
        unfollowed: 0,
        dropped: 0,
        freed_ns: Vec::new(),
        freed_iterations: Vec::new(),
    }
}

/// The kernel's lifetime buckets, summed over the CPUs (empty when unreadable).
fn freed(maps: &super::HeapMaps) -> (Vec<u64>, Vec<u64>) {
    let Ok(per_cpu) = maps.lifetimes.get(&0, 0) else {
        return (Vec::new(), Vec::new());
    };
    let mut ns = vec![0; lifetime_buckets::BUCKETS];
    let mut iterations = vec![0; lifetime_buckets::BUCKETS];
    for cpu in per_cpu.iter() {
        for (sum, n) in ns.iter_mut().zip(cpu.ns) {
            *sum += n;
        }
        for (sum, n) in iterations.iter_mut().zip(cpu.iterations) {
            *sum += n;
        }
    }
    (ns, iterations)
}

/// Sums live allocations by (process, caller), and within a caller by the site of their
/// sampled stacks (`site_of(tgid, stack_ns)`): the survivors of a caller that have no
/// stack are apportioned to its sampled sites ([`super::apportion`]), or keep the caller
/// when none was sampled. One site reached through several callers is one row.
pub(crate) fn aggregate(
    live: impl Iterator<Item = (u32, HeapLive)>,
    totals: &BTreeMap<u32, HeapTotals>,
    (start, end): (u64, u64),
    site_of: impl Fn(u32, u64) -> Option<Arc<SiteStack>>,
) -> Vec<Survivors> {
    let width = (end.saturating_sub(start)).div_ceil(TIME_BUCKETS).max(1);
    let mut by_caller: BTreeMap<(u32, u64), super::apportion::Caller> = BTreeMap::new();
    for (tgid, allocation) in live {
        let process = totals.get(&tgid).copied().unwrap_or_default();
        if allocation.alloc_ns < process.epoch_ns {
            continue; // the image before the last exec
        }
        let caller = by_caller
            .entry((tgid, allocation.caller))
            .or_insert_with(|| super::apportion::Caller {
                unsampled: Survivors::new(tgid, allocation.caller, None),
                sampled: BTreeMap::new(),
            });
        let site = (allocation.stack_ns != 0)
            .then(|| site_of(tgid, allocation.stack_ns))
            .flatten();
        let entry = match site {
            Some(site) => caller
                .sampled
                .entry(site.clone())
                .or_insert_with(|| Survivors::new(tgid, allocation.caller, Some(site))),
            None => &mut caller.unsampled,
        };
        // Made before tracing began (attach): stretch 0; after the snapshot's end: the last.
        let bucket = (allocation.alloc_ns.saturating_sub(start) / width).min(TIME_BUCKETS - 1);
        let in_loop = allocation.alloc_iter >= 1 && allocation.alloc_iter < process.iteration;
        entry.add(allocation.size, bucket, in_loop);
    }
    let mut unnamed = Vec::new();
    let mut by_site: BTreeMap<(u32, Arc<SiteStack>), Survivors> = BTreeMap::new();
    for caller in by_caller.into_values() {
        for survivors in caller.apportioned() {
            match &survivors.site {
                Some(site) => match by_site.entry((survivors.tgid, site.clone())) {
                    std::collections::btree_map::Entry::Occupied(mut known) => {
                        known.get_mut().absorb(&survivors);
                    }
                    std::collections::btree_map::Entry::Vacant(new) => {
                        new.insert(survivors);
                    }
                },
                None => unnamed.push(survivors),
            }
        }
    }
    let mut survivors: Vec<Survivors> = by_site.into_values().chain(unnamed).collect();
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
    use std::sync::Arc;

    fn allocation(size: u64, alloc_iter: u64, caller: u64, alloc_ns: u64) -> HeapLive {
        HeapLive {
            size,
            alloc_ns,
            alloc_iter,
            caller,
            tid: 1,
            kind: 1,
            stack_ns: 0,
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
        let survivors = aggregate(live.into_iter(), &totals, (0, 2560), |_, _| None);
        assert_eq!(survivors.len(), 2);
        let leak = &survivors[0];
        assert_eq!((leak.caller, leak.count, leak.bytes), (0xb, 3, 90));
        assert_eq!((leak.in_loop_count, leak.in_loop_bytes), (2, 60));
        let startup = &survivors[1];
        assert_eq!(
            (startup.caller, startup.count, startup.in_loop_count),
            (0xa, 1, 0)
        );
        // Stretches of 10 ns: 300, 400 and 500 ns fall in 30, 40 and 50.
        assert_eq!(
            leak.by_time,
            BTreeMap::from([(30, (1, 30)), (40, (1, 30)), (50, (1, 30))])
        );
    }

    #[test]
    fn callers_are_named_by_the_byte_before_the_return_address_and_keep_their_frames() {
        let mut snapshot = HeapSnapshot {
            totals: BTreeMap::new(),
            span: (0, 1),
            unfollowed: 0,
            dropped: 0,
            freed_ns: Vec::new(),
            freed_iterations: Vec::new(),
            survivors: vec![Survivors {
                tgid: 3,
                caller: 0x1005,
                ..Survivors::default()
            }],
        };
        let inlined = Frame {
            file: Some(Arc::from("/src/tests/fixtures/nofp/heap_small.c")),
            line: Some(16),
            module: Arc::from("heap_small"),
            inlined: true,
            ..Frame::named("leak_thirty")
        };
        let caller = Frame {
            function: Arc::from("main"),
            line: Some(33),
            inlined: false,
            ..inlined.clone()
        };
        snapshot.name_callers(|tgid, address| {
            assert_eq!((tgid, address), (3, 0x1004));
            vec![inlined.clone(), caller.clone()]
        });
        let named = &snapshot.survivors[0];
        assert_eq!(named.function.as_deref(), Some("leak_thirty"));
        assert!(!named.system);
        assert_eq!(named.frames, [inlined, caller]);
    }

    #[test]
    fn a_caller_in_libc_is_a_system_one_and_an_unnamed_one_keeps_its_module_frame() {
        let mut snapshot = HeapSnapshot {
            survivors: vec![
                Survivors {
                    caller: 0x10,
                    ..Survivors::default()
                },
                Survivors {
                    caller: 0x20,
                    ..Survivors::default()
                },
            ],
            ..HeapSnapshot::default()
        };
        snapshot.name_callers(|_, address| match address {
            0xf => vec![Frame {
                kind: FrameKind::System,
                module: Arc::from("libc.so.6"),
                ..Frame::named("strdup")
            }],
            _ => vec![Frame::unnamed_in(Arc::from("app"), FrameKind::User, 0x1139)],
        });
        let [strdup, unnamed] = &snapshot.survivors[..] else {
            panic!("two survivors")
        };
        assert_eq!(strdup.function.as_deref(), Some("strdup"));
        assert!(strdup.system);
        assert_eq!(unnamed.function, None, "named by its address later");
        assert_eq!(&*unnamed.frames[0].function, "app+0x1139");
    }
}
