//! Survivors without a stack of their own, given to their caller's sampled sites.
//!
//! Stacks are sampled (`--stack-rate`, the ring's share), so of the blocks one allocator
//! caller made, some carry a stack and most may not. A caller's pc says little when it is a
//! wrapper (Rust's `__rust_alloc`, libc's `strdup`), so the unsampled survivors of a caller
//! go to the sites its sampled survivors were made at, in proportion: counts by the sampled
//! counts, bytes by the sampled bytes. With one sampled site (a wrapper called from one
//! place of the program) that is exact; with several it is an estimate, which each site
//! says (`without_stack`). A caller none of whose survivors was sampled keeps its own frame.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::snapshot::Survivors;
use crate::stacks::SiteStack;

/// The survivors of one (process, caller), as the snapshot is read.
#[derive(Debug, Default)]
pub(crate) struct Caller {
    /// Those without a kept stack.
    pub(crate) unsampled: Survivors,
    /// Those with one, by its site.
    pub(crate) sampled: BTreeMap<Arc<SiteStack>, Survivors>,
}

impl Caller {
    /// The caller's rows: one per sampled site, the unsampled survivors apportioned among
    /// them; or the unsampled survivors as they are, when none was sampled.
    pub(crate) fn apportioned(self) -> Vec<Survivors> {
        let Caller { unsampled, sampled } = self;
        let mut sites: Vec<Survivors> = sampled.into_values().collect();
        if sites.is_empty() {
            return if unsampled.count > 0 {
                vec![unsampled]
            } else {
                Vec::new()
            };
        }
        let counts: Vec<u64> = sites.iter().map(|s| s.count).collect();
        let bytes: Vec<u64> = sites.iter().map(|s| s.bytes).collect();
        let shares = |total: u64, weights: &[u64]| split(total, weights);
        let count = shares(unsampled.count, &counts);
        let size = shares(unsampled.bytes, &bytes);
        let in_loop_count = shares(unsampled.in_loop_count, &counts);
        let in_loop_bytes = shares(unsampled.in_loop_bytes, &bytes);
        for (i, site) in sites.iter_mut().enumerate() {
            site.count += count[i];
            site.bytes += size[i];
            site.in_loop_count += in_loop_count[i];
            site.in_loop_bytes += in_loop_bytes[i];
            site.without_stack += in_loop_count[i];
        }
        for (&bucket, &(n, b)) in &unsampled.by_time {
            let (n, b) = (shares(n, &counts), shares(b, &bytes));
            for (i, site) in sites.iter_mut().enumerate() {
                if n[i] > 0 || b[i] > 0 {
                    let slot = site.by_time.entry(bucket).or_default();
                    slot.0 += n[i];
                    slot.1 += b[i];
                }
            }
        }
        sites
    }
}

/// `total` in parts proportional to `weights`, summing to `total` exactly (the largest
/// remainders get the units left over, the first among equals first). Weights that sum to
/// 0 count as equal.
pub(crate) fn split(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: u128 = weights.iter().map(|&w| w as u128).sum();
    let (weights, sum): (Vec<u128>, u128) = if sum == 0 {
        (vec![1; weights.len()], weights.len() as u128)
    } else {
        (weights.iter().map(|&w| w as u128).collect(), sum)
    };
    let exact: Vec<(u128, u128)> = weights
        .iter()
        .map(|&w| (total as u128 * w / sum, total as u128 * w % sum))
        .collect();
    let mut parts: Vec<u64> = exact.iter().map(|&(whole, _)| whole as u64).collect();
    let left = total - parts.iter().sum::<u64>();
    let mut by_remainder: Vec<usize> = (0..parts.len()).collect();
    by_remainder.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in by_remainder.iter().take(left as usize) {
        parts[i] += 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::snapshot::aggregate;
    use crate::stacks::Frame;
    use leakscope_common::heap::{HeapLive, HeapTotals};

    #[test]
    fn a_split_sums_to_the_total_in_proportion_to_the_weights() {
        assert_eq!(split(10, &[1]), [10]);
        assert_eq!(split(10, &[1, 1]), [5, 5]);
        assert_eq!(split(10, &[3, 1]), [8, 2]); // 7.5 and 2.5: the first of equals
        assert_eq!(split(7, &[1, 1, 1]), [3, 2, 2]);
        assert_eq!(split(100, &[72, 40]), [64, 36]);
        assert_eq!(split(5, &[0, 0]), [3, 2]);
        assert_eq!(split(0, &[4, 9]), [0, 0]);
        assert_eq!(split(3, &[]), Vec::<u64>::new());
        let big = split(u64::MAX, &[u64::MAX, u64::MAX]);
        assert_eq!(big[0] as u128 + big[1] as u128, u64::MAX as u128);
    }

    fn site(function: &str) -> Arc<SiteStack> {
        Arc::new(SiteStack::fold(&[Frame::named(function)]).unwrap())
    }

    /// A block of `size` from `caller` made in iteration 1..10 (in the loop), sampled with
    /// `stack_ns` (0: not sampled).
    fn block(size: u64, caller: u64, stack_ns: u64) -> (u32, HeapLive) {
        let live = HeapLive {
            size,
            alloc_ns: 1000,
            alloc_iter: 5,
            caller,
            tid: 1,
            kind: 1,
            stack_ns,
        };
        (1, live)
    }

    fn survivors(blocks: Vec<(u32, HeapLive)>) -> Vec<Survivors> {
        let totals = BTreeMap::from([(
            1,
            HeapTotals {
                iteration: 10,
                ..HeapTotals::default()
            },
        )]);
        // Stacks 1..=99 were made in leak_vec, 100.. in leak_box.
        aggregate(blocks.into_iter(), &totals, (0, 2560), |tgid, ns| {
            assert_eq!(tgid, 1);
            Some(if ns < 100 {
                site("leak_vec")
            } else {
                site("leak_box")
            })
        })
    }

    fn row<'a>(rows: &'a [Survivors], function: &str) -> &'a Survivors {
        rows.iter()
            .find(|s| {
                s.site
                    .as_ref()
                    .is_some_and(|site| &*site.frames[0].function == function)
            })
            .unwrap_or_else(|| panic!("no row of {function}: {rows:?}"))
    }

    #[test]
    fn a_caller_with_one_sampled_site_gives_it_every_survivor_exactly() {
        // strdup's caller pc for all; one of 100 blocks sampled, in copy_name... here leak_vec.
        let mut blocks = vec![block(30, 0xa, 5)];
        blocks.extend((0..99).map(|_| block(30, 0xa, 0)));
        let rows = survivors(blocks);
        assert_eq!(rows.len(), 1);
        let vec = row(&rows, "leak_vec");
        assert_eq!((vec.count, vec.bytes), (100, 3000));
        assert_eq!((vec.in_loop_count, vec.in_loop_bytes), (100, 3000));
        assert_eq!(vec.without_stack, 99);
        assert_eq!(vec.by_time.values().map(|t| t.0).sum::<u64>(), 100);
    }

    #[test]
    fn a_caller_with_two_sampled_sites_splits_the_rest_by_their_counts_and_bytes() {
        // One caller (Rust's alloc) for both: 3 sampled Vecs of 72 B, 1 sampled Box of 40 B,
        // 40 unsampled blocks of 2240 B.
        let mut blocks = vec![
            block(72, 0xa, 1),
            block(72, 0xa, 2),
            block(72, 0xa, 3),
            block(40, 0xa, 100),
        ];
        blocks.extend((0..20).map(|_| block(72, 0xa, 0)));
        blocks.extend((0..20).map(|_| block(40, 0xa, 0)));
        let rows = survivors(blocks);
        assert_eq!(rows.len(), 2);
        let (vec, boxed) = (row(&rows, "leak_vec"), row(&rows, "leak_box"));
        // Counts 3:1 -> 30 and 10 of 40; bytes 216:40 -> 1890 and 350 of 2240.
        assert_eq!((vec.count, vec.without_stack), (33, 30));
        assert_eq!((boxed.count, boxed.without_stack), (11, 10));
        assert_eq!((vec.bytes, boxed.bytes), (216 + 1890, 40 + 350));
        // Nothing is lost or made up.
        assert_eq!(vec.count + boxed.count, 44);
        assert_eq!(vec.bytes + boxed.bytes, 216 + 40 + 2240);
        assert_eq!(vec.in_loop_bytes + boxed.in_loop_bytes, 216 + 40 + 2240);
    }

    #[test]
    fn a_caller_never_sampled_keeps_its_pc_and_one_site_of_two_callers_is_one_row() {
        let rows = survivors(vec![
            // Two callers, both sampled in leak_vec: one row.
            block(8, 0xa, 1),
            block(8, 0xa, 0),
            block(16, 0xb, 2),
            // A caller without any stack.
            block(500, 0xc, 0),
            block(500, 0xc, 0),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].caller, rows[0].site.is_none()), (0xc, true));
        assert_eq!(
            (rows[0].count, rows[0].bytes, rows[0].without_stack),
            (2, 1000, 0)
        );
        let vec = row(&rows, "leak_vec");
        assert_eq!((vec.count, vec.bytes, vec.without_stack), (3, 32, 1));
    }

    #[test]
    fn a_stack_no_longer_kept_counts_as_unsampled() {
        let totals = BTreeMap::from([(1, HeapTotals::default())]);
        let rows = aggregate(
            vec![block(8, 0xa, 7), block(8, 0xa, 9)].into_iter(),
            &totals,
            (0, 2560),
            |_, ns| (ns == 7).then(|| site("leak_vec")),
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].count, 2);
        assert!(rows[0].site.is_some());
    }
}
