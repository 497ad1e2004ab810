//! How long released resources lived, in nanoseconds and in iterations, summarized with
//! HDR histograms (3 significant digits, any range).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles of one lifetime distribution (all 0 when nothing was released).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
    pub(crate) count: u64,
}

/// Decade buckets of nanosecond lifetimes for the text report's bars:
/// <1µs, <10µs, ..., <10s, ≥10s.
pub(crate) const DECADE_LABELS: [&str; 9] = [
    "<1µs", "<10µs", "<100µs", "<1ms", "<10ms", "<100ms", "<1s", "<10s", "≥10s",
];

/// Decade buckets of lifetimes in iterations crossed, for the `--html` histogram: 0, 1,
/// 2–9, 10–99, ... (from the histogram, exact below 2,048 and within 0.1% above).
pub(crate) const ITERATION_DECADE_LABELS: [&str; 7] =
    ["0", "1", "2–9", "10–99", "100–999", "1k–10k", "≥10k"];

#[derive(Clone, Debug)]
pub(crate) struct Lifetimes {
    ns: Histogram<u64>,
    iterations: Histogram<u64>,
    decades: [u64; DECADE_LABELS.len()],
    /// Exact maxima: a histogram's max is only accurate to its precision.
    max_ns: u64,
    max_iterations: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        let new = || Histogram::new(3).expect("3 significant digits is a valid precision");
        Lifetimes {
            ns: new(),
            iterations: new(),
            decades: [0; DECADE_LABELS.len()],
            max_ns: 0,
            max_iterations: 0,
        }
    }
}

impl Lifetimes {
    pub(crate) fn record(&mut self, ns: u64, iterations: u64) {
        // Auto-resizing histograms grow to fit; should one still refuse a value, saturate
        // rather than lose the sample.
        for (histogram, value) in [(&mut self.ns, ns), (&mut self.iterations, iterations)] {
            if histogram.record(value).is_err() {
                histogram.saturating_record(value);
            }
        }
        self.max_ns = self.max_ns.max(ns);
        self.max_iterations = self.max_iterations.max(iterations);
        self.decades[decade(ns)] += 1;
    }

    /// Lifetimes the kernel counted by bucket (`leakscope_common::lifetime_buckets`): each
    /// bucket stands for its midpoint, within 1/16 of any value in it. The two series are
    /// independent; `iterations` may be empty (no marker counted them).
    pub(crate) fn record_buckets(&mut self, ns: &[u64], iterations: &[u64]) {
        use leakscope_common::lifetime_buckets::representative;
        for (bucket, &n) in ns.iter().enumerate().filter(|(_, n)| **n > 0) {
            let value = representative(bucket);
            if self.ns.record_n(value, n).is_err() {
                self.ns.saturating_record(value);
            }
            self.max_ns = self.max_ns.max(value);
            self.decades[decade(value)] += n;
        }
        for (bucket, &n) in iterations.iter().enumerate().filter(|(_, n)| **n > 0) {
            let value = representative(bucket);
            if self.iterations.record_n(value, n).is_err() {
                self.iterations.saturating_record(value);
            }
            self.max_iterations = self.max_iterations.max(value);
        }
    }

    pub(crate) fn ns(&self) -> Percentiles {
        percentiles(&self.ns, self.max_ns)
    }

    pub(crate) fn iterations(&self) -> Percentiles {
        percentiles(&self.iterations, self.max_iterations)
    }

    pub(crate) fn decades(&self) -> [u64; DECADE_LABELS.len()] {
        self.decades
    }

    /// Lifetimes in iterations by [`ITERATION_DECADE_LABELS`] bucket.
    pub(crate) fn iteration_decades(&self) -> [u64; ITERATION_DECADE_LABELS.len()] {
        let bounds = [0, 1, 2, 10, 100, 1_000, 10_000, u64::MAX];
        let mut counts = [0; ITERATION_DECADE_LABELS.len()];
        if self.iterations.is_empty() {
            return counts;
        }
        for (count, range) in counts.iter_mut().zip(bounds.windows(2)) {
            let high = range[1].saturating_sub(1).min(self.iterations.max());
            if range[0] <= high {
                *count = self.iterations.count_between(range[0], high);
            }
        }
        counts
    }
}

/// The decade of `ns` (see [`DECADE_LABELS`]).
fn decade(ns: u64) -> usize {
    (ns.max(1).ilog10() as usize)
        .saturating_sub(2)
        .min(DECADE_LABELS.len() - 1)
}

fn percentiles(histogram: &Histogram<u64>, max: u64) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: histogram.value_at_quantile(0.50).min(max),
        p90: histogram.value_at_quantile(0.90).min(max),
        p99: histogram.value_at_quantile(0.99).min(max),
        max,
        count: histogram.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_decades_count_each_bucket() {
        let mut lifetimes = Lifetimes::default();
        for iterations in [0, 0, 1, 5, 9, 10, 150, 20_000] {
            lifetimes.record(1_000, iterations);
        }
        assert_eq!(lifetimes.iteration_decades(), [2, 1, 2, 1, 1, 0, 1]);
    }

    #[test]
    fn percentiles_and_decades() {
        let mut lifetimes = Lifetimes::default();
        for i in 1..=100u64 {
            lifetimes.record(i * 1_000, i / 10);
        }
        let ns = lifetimes.ns();
        assert_eq!((ns.count, ns.max), (100, 100_000));
        assert!((ns.p50 as f64 / 50_000.0 - 1.0).abs() < 0.01, "{}", ns.p50);
        assert_eq!(lifetimes.iterations().max, 10);
        let decades = lifetimes.decades();
        assert_eq!(decades[1] + decades[2] + decades[3], 100);
        assert_eq!(Lifetimes::default().ns(), Percentiles::default());
    }

    #[test]
    fn bucketed_lifetimes_come_back_within_a_sixteenth() {
        use leakscope_common::lifetime_buckets::{BUCKETS, bucket};
        let mut ns = vec![0; BUCKETS];
        let mut iterations = vec![0; BUCKETS];
        for i in 1..=1000u64 {
            ns[bucket(i * 1_000)] += 1;
            iterations[bucket(0)] += 1;
        }
        let mut lifetimes = Lifetimes::default();
        lifetimes.record_buckets(&ns, &iterations);
        let ns = lifetimes.ns();
        assert_eq!(ns.count, 1000);
        for (got, want) in [
            (ns.p50, 500_000.0),
            (ns.p99, 990_000.0),
            (ns.max, 1_000_000.0),
        ] {
            assert!(
                (got as f64 / want - 1.0).abs() <= 1.0 / 16.0,
                "{got} vs {want}"
            );
        }
        let its = lifetimes.iterations();
        assert_eq!((its.count, its.max), (1000, 0));
        assert_eq!(lifetimes.decades().iter().sum::<u64>(), 1000);
        // No iteration markers: only the time series.
        let mut lifetimes = Lifetimes::default();
        lifetimes.record_buckets(&[0, 3], &[]);
        assert_eq!((lifetimes.ns().count, lifetimes.iterations().count), (3, 0));
    }
}
