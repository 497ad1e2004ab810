//! `--heap`: the sampled stacks of live blocks, kept from their arrival to their block's end.
//!
//! The kernel sends the user stack of some allocator calls ([`EventKind::HeapStack`],
//! sampled by `--stack-rate` and the ring's share for stacks), and the block made carries
//! the entry's time (`HeapLive::stack_ns`). The reader cannot wait for the end to unwind:
//! by then the process may be gone, and a run makes millions of stacks. So each stack is
//! unwound once on arrival, folded to its site (the program's first frames, as the fd sites
//! are), and kept by (tgid, time) until the kernel says its block ended
//! ([`EventKind::HeapFreed`]): at the end only the survivors' stacks are left.
//!
//! Bounded: at most [`MAX_KEPT`] stacks, the oldest evicted first (counted); a survivor whose
//! stack was evicted is apportioned as an unsampled one. Sites are shared: a leak of a
//! million blocks from one function holds one copy of its frames.
//!
//! [`EventKind::HeapStack`]: leakscope_common::EventKind::HeapStack
//! [`EventKind::HeapFreed`]: leakscope_common::EventKind::HeapFreed

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::stacks::{Frame, SiteStack};

/// The most stacks kept at once: a site is shared, so each costs its key and a pointer
/// (about 40 bytes with the map's own): 4 MB.
pub(crate) const MAX_KEPT: usize = 100_000;

/// What became of the heap stacks that arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeapStackCounts {
    pub(crate) arrived: u64,
    /// Dropped when their block ended.
    pub(crate) freed: u64,
    /// Dropped for room ([`MAX_KEPT`]), oldest first.
    pub(crate) evicted: u64,
    /// Unwound to nothing (the process's code was not known): not kept.
    pub(crate) empty: u64,
}

/// The sites of live blocks' stacks, by (time of the allocator's entry, tgid).
#[derive(Debug)]
pub(crate) struct HeapStacks {
    /// Ordered by time, so the oldest is evicted first.
    by_time: BTreeMap<(u64, u32), Arc<SiteStack>>,
    /// Every site a kept stack folds to, once.
    sites: HashSet<Arc<SiteStack>>,
    max: usize,
    pub(crate) counts: HeapStackCounts,
}

impl Default for HeapStacks {
    fn default() -> Self {
        HeapStacks::with_max(MAX_KEPT)
    }
}

impl HeapStacks {
    pub(crate) fn with_max(max: usize) -> HeapStacks {
        HeapStacks {
            by_time: BTreeMap::new(),
            sites: HashSet::new(),
            max: max.max(1),
            counts: HeapStackCounts::default(),
        }
    }

    /// The stack of the allocator call `tgid` entered at `stack_ns`, unwound to `frames`
    /// (innermost first). Its first frame is the allocator's own entry, which is no site
    /// even when it is the program's code (a program's own `operator new`, a statically
    /// linked allocator): the site folds the frames of its callers.
    pub(crate) fn arrived(&mut self, tgid: u32, stack_ns: u64, frames: &[Frame]) {
        self.counts.arrived += 1;
        let Some(site) = SiteStack::fold(callers(frames)) else {
            self.counts.empty += 1;
            return;
        };
        let site = self.shared(site);
        if self.by_time.insert((stack_ns, tgid), site).is_none() && self.by_time.len() > self.max {
            self.by_time.pop_first();
            self.counts.evicted += 1;
            self.forget_unused_sites();
        }
    }

    /// The block whose stack was sent at `stack_ns` ended.
    pub(crate) fn freed(&mut self, tgid: u32, stack_ns: u64) {
        if self.by_time.remove(&(stack_ns, tgid)).is_some() {
            self.counts.freed += 1;
        }
    }

    /// The site of the stack sent at `stack_ns` by `tgid`, if it is kept.
    pub(crate) fn site(&self, tgid: u32, stack_ns: u64) -> Option<Arc<SiteStack>> {
        self.by_time.get(&(stack_ns, tgid)).cloned()
    }

    /// Stacks kept now.
    pub(crate) fn len(&self) -> usize {
        self.by_time.len()
    }

    fn shared(&mut self, site: SiteStack) -> Arc<SiteStack> {
        if let Some(known) = self.sites.get(&site) {
            return known.clone();
        }
        let site = Arc::new(site);
        self.sites.insert(site.clone());
        if self.sites.len() > self.max {
            self.forget_unused_sites();
        }
        site
    }

    /// Lets go of the sites no kept stack folds to any more (a program whose stacks are all
    /// different would otherwise grow the set without bound).
    fn forget_unused_sites(&mut self) {
        if self.sites.len() > self.by_time.len() {
            self.sites.retain(|site| Arc::strong_count(site) > 1);
        }
    }
}

/// `frames` without the allocator's own frame: the first one the unwinder found, with the
/// functions inlined into it (none at a function's entry, but a symbolizer may say so).
fn callers(frames: &[Frame]) -> &[Frame] {
    match frames.iter().position(|frame| !frame.inlined) {
        Some(entry) => &frames[entry + 1..],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stacks::FrameKind;

    fn stack(function: &str) -> Vec<Frame> {
        vec![
            Frame {
                kind: FrameKind::System,
                module: Arc::from("libc.so.6"),
                ..Frame::named("malloc")
            },
            Frame::named(function),
            Frame::named("main"),
        ]
    }

    fn named(stacks: &HeapStacks, tgid: u32, ns: u64) -> Option<String> {
        stacks
            .site(tgid, ns)
            .map(|site| site.frames[0].function.to_string())
    }

    #[test]
    fn a_stack_is_kept_folded_to_the_program_s_frames_until_its_block_is_freed() {
        let mut stacks = HeapStacks::default();
        stacks.arrived(7, 100, &stack("leak_vec"));
        stacks.arrived(7, 200, &stack("leak_box"));
        assert_eq!(named(&stacks, 7, 100).as_deref(), Some("leak_vec"));
        assert_eq!(named(&stacks, 7, 200).as_deref(), Some("leak_box"));
        // Keyed by process too: another process's block at the same time is not this one.
        assert_eq!(named(&stacks, 8, 100), None);
        stacks.freed(7, 100);
        stacks.freed(7, 100); // told twice: counted once
        stacks.freed(8, 200); // another process's: nothing
        assert_eq!(named(&stacks, 7, 100), None);
        assert_eq!(named(&stacks, 7, 200).as_deref(), Some("leak_box"));
        assert_eq!(
            stacks.counts,
            HeapStackCounts {
                arrived: 2,
                freed: 1,
                evicted: 0,
                empty: 0
            }
        );
    }

    #[test]
    fn the_allocator_s_own_frame_is_no_site_even_in_the_program_s_code() {
        let mut stacks = HeapStacks::default();
        // The program's own operator new, entered from leak_item.
        let own_new = [
            Frame::named("operator new(unsigned long)"),
            Frame::named("leak_item(long)"),
            Frame::named("main"),
        ];
        stacks.arrived(1, 5, &own_new);
        let site = stacks.site(1, 5).unwrap();
        assert_eq!(&*site.frames[0].function, "leak_item(long)");
        // libc's malloc entered from leak_thirty: nothing folded above it.
        stacks.arrived(1, 6, &stack("leak_thirty"));
        assert!(stacks.site(1, 6).unwrap().folded.is_empty());
        // A stack of the entry alone names nothing.
        stacks.arrived(1, 7, &own_new[..1]);
        assert_eq!(stacks.site(1, 7), None);
        assert_eq!(stacks.counts.empty, 1);
    }

    #[test]
    fn past_the_bound_the_oldest_stack_goes_and_is_counted() {
        let mut stacks = HeapStacks::with_max(3);
        for ns in [40, 10, 30, 20, 50] {
            stacks.arrived(1, ns, &stack(&format!("f{ns}")));
        }
        assert_eq!(stacks.len(), 3);
        assert_eq!(stacks.counts.evicted, 2);
        // The two oldest by time, whatever order they came in.
        assert_eq!(named(&stacks, 1, 10), None);
        assert_eq!(named(&stacks, 1, 20), None);
        for ns in [30, 40, 50] {
            assert_eq!(named(&stacks, 1, ns), Some(format!("f{ns}")));
        }
        // The evicted stacks' sites are let go of too.
        assert!(stacks.sites.len() <= 3, "{}", stacks.sites.len());
    }

    #[test]
    fn blocks_of_one_site_share_its_frames_and_an_empty_stack_is_not_kept() {
        let mut stacks = HeapStacks::default();
        for ns in 1..=1000 {
            stacks.arrived(1, ns, &stack("leak_vec"));
        }
        assert_eq!(stacks.sites.len(), 1);
        assert!(Arc::ptr_eq(
            &stacks.site(1, 1).unwrap(),
            &stacks.site(1, 1000).unwrap()
        ));
        stacks.arrived(1, 2000, &[]);
        assert_eq!(stacks.site(1, 2000), None);
        assert_eq!(stacks.counts.empty, 1);
        assert_eq!(stacks.counts.arrived, 1001);
    }
}
