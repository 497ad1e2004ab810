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
        let decade = (ns.max(1).ilog10() as usize)
            .saturating_sub(2)
            .min(DECADE_LABELS.len() - 1);
        self.decades[decade] += 1;
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
}
