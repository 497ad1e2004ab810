//! Log-linear buckets for lifetimes counted in the kernel (`--heap`: how long each freed
//! allocation lived). Millions of frees a second cannot each cross the ring, so the kernel
//! counts them in a per-CPU histogram, and the reader turns the buckets back into values.
//!
//! Values below [`SUB_BUCKETS`] have a bucket each. Above, every power of two is cut into
//! [`SUB_BUCKETS`] equal parts: a bucket's width is at most 1/8 of its lowest value, so its
//! midpoint is within 6.25% of any value in it (hdrhistogram with one significant digit
//! would be coarser).

/// Parts per power of two (a power of two itself).
pub const SUB_BUCKETS: u64 = 8;
const SUB_BITS: u32 = 3;

/// Buckets for any u64: 8 exact ones, then 8 for each power of two from 2^3 to 2^63.
pub const BUCKETS: usize = (SUB_BUCKETS + (64 - SUB_BITS as u64) * SUB_BUCKETS) as usize;

/// The index of the highest set bit of `v` (`v > 0`), by halving: no loop for the verifier
/// to bound, and no `ctlz`, which BPF has no instruction for.
#[inline(always)]
fn highest_bit(mut v: u64) -> u32 {
    let mut bit = 0;
    for shift in [32u32, 16, 8, 4, 2, 1] {
        if v >> shift != 0 {
            v >>= shift;
            bit += shift;
        }
    }
    bit
}

/// The bucket of `v`.
#[inline(always)]
pub fn bucket(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let top = highest_bit(v);
    let part = (v >> (top - SUB_BITS)) & (SUB_BUCKETS - 1);
    ((top - SUB_BITS + 1) as u64 * SUB_BUCKETS + part) as usize
}

/// The values bucket `index` holds: `low..=high`.
pub fn range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return (index, index);
    }
    let top = (index / SUB_BUCKETS - 1) as u32 + SUB_BITS;
    let part = index % SUB_BUCKETS;
    let width = 1u64 << (top - SUB_BITS);
    let low = (SUB_BUCKETS + part) << (top - SUB_BITS);
    (low, low + (width - 1))
}

/// What a bucket stands for when turned back into one value: its midpoint.
pub fn representative(index: usize) -> u64 {
    let (low, high) = range(index);
    low + (high - low) / 2
}

/// Freed allocations' lifetimes, counted by bucket (`maps::HEAP_LIFETIMES`, one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HeapLifetimes {
    /// Nanoseconds from the allocation to its free.
    pub ns: [u64; BUCKETS],
    /// Iteration markers between them (always 0 without a marker).
    pub iterations: [u64; BUCKETS],
}

impl Default for HeapLifetimes {
    fn default() -> Self {
        HeapLifetimes {
            ns: [0; BUCKETS],
            iterations: [0; BUCKETS],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lies_in_its_bucket_and_buckets_follow_each_other() {
        let powers = (0..64).flat_map(|bit| {
            let p = 1u64 << bit;
            [p - 1, p, p + 1, p + p / 3]
        });
        for v in (0..5000).chain(powers).chain([u64::MAX]) {
            let (low, high) = range(bucket(v));
            assert!(low <= v && v <= high, "{v} in {low}..={high}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for i in 1..BUCKETS {
            assert_eq!(range(i).0, range(i - 1).1 + 1, "bucket {i}");
        }
    }

    #[test]
    fn a_midpoint_is_within_a_sixteenth_of_its_values() {
        for i in SUB_BUCKETS as usize..BUCKETS {
            let (low, high) = range(i);
            let mid = representative(i) as f64;
            for v in [low, high] {
                assert!(
                    (mid - v as f64).abs() / v as f64 <= 1.0 / 16.0,
                    "bucket {i}"
                );
            }
        }
    }
}
