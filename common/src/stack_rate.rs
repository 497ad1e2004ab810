//! The token bucket that caps the user stacks copied per CPU (`--stack-rate`), as pure
//! arithmetic: the kernel keeps the state per CPU and calls [`take`]; tests run it here.

/// Up to two seconds' worth of stacks at once: a program that maps memory now and then gets
/// a stack on every call, however its calls bunch.
pub const BURST_NS: u64 = 2_000_000_000;

/// One CPU's bucket, in nanoseconds of credit: each stack costs `1e9 / rate`, and credit
/// accrues with time up to [`BURST_NS`]. All zeroes is a full bucket: its `last_ns` of 0 is
/// long ago.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackBucket {
    pub credit_ns: u64,
    pub last_ns: u64,
}

/// Whether `bucket` allows a stack at `now_ns` with `rate` stacks a second (0: always),
/// taking its cost if so.
#[inline(always)]
pub fn take(bucket: &mut StackBucket, now_ns: u64, rate: u64) -> bool {
    if rate == 0 {
        return true;
    }
    let cost = 1_000_000_000 / rate;
    let elapsed = now_ns.saturating_sub(bucket.last_ns);
    bucket.last_ns = now_ns;
    let credit = bucket.credit_ns.saturating_add(elapsed);
    let credit = if credit > BURST_NS { BURST_NS } else { credit };
    if credit >= cost {
        bucket.credit_ns = credit - cost;
        true
    } else {
        bucket.credit_ns = credit;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn allowed_in_a_burst(bucket: &mut StackBucket, now_ns: u64, calls: u32, rate: u64) -> u32 {
        (0..calls).filter(|_| take(bucket, now_ns, rate)).count() as u32
    }

    #[test]
    fn a_full_bucket_allows_two_seconds_of_stacks_at_once_then_the_rate() {
        let mut bucket = StackBucket::default();
        let start = 1_000 * SECOND;
        assert_eq!(allowed_in_a_burst(&mut bucket, start, 10_000, 2000), 4000);
        // Half a second later: 1000 more, no more.
        assert_eq!(
            allowed_in_a_burst(&mut bucket, start + SECOND / 2, 10_000, 2000),
            1000
        );
    }

    #[test]
    fn credit_is_capped_at_the_burst() {
        let mut bucket = StackBucket::default();
        assert_eq!(
            allowed_in_a_burst(&mut bucket, 10 * SECOND, 10_000, 2000),
            4000
        );
        assert_eq!(
            allowed_in_a_burst(&mut bucket, 100 * SECOND, 10_000, 2000),
            4000
        );
    }

    #[test]
    fn rate_zero_allows_every_stack() {
        let mut bucket = StackBucket::default();
        assert_eq!(allowed_in_a_burst(&mut bucket, SECOND, 100_000, 0), 100_000);
    }

    #[test]
    fn a_clock_that_does_not_move_forward_adds_no_credit() {
        let mut bucket = StackBucket {
            credit_ns: 0,
            last_ns: 5 * SECOND,
        };
        assert!(!take(&mut bucket, 4 * SECOND, 1));
        assert_eq!(bucket.credit_ns, 0);
    }
}
