//! Replays the ledger at each iteration boundary: how many resources, mapped bytes, heap
//! bytes and resident bytes were live just before it.
//!
//! Sampling at boundaries is what makes "teardown is not a release" automatic: whatever a
//! program frees after its last iteration never shows in the series.

use crate::ledger::records::{NEVER, Records, totals};
use crate::ledger::{ByteChange, RssSample};

/// A series as it was judged, for drawing: its values from the `first` judged boundary on
/// (a sampled series starts at its first sample).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Judged {
    pub(crate) first: usize,
    pub(crate) values: Vec<f64>,
}

impl Judged {
    pub(crate) fn new(first: usize, values: &[f64]) -> Judged {
        Judged {
            first,
            values: values.to_vec(),
        }
    }
}

/// Live records just before each boundary (acquired before it, not yet released), folded
/// ones included.
pub(crate) fn live_counts(records: &Records, boundaries: &[u64]) -> Vec<f64> {
    let kept = kept_live_counts(records, boundaries);
    with_folded(kept, &records.folded().live)
}

/// Adds what folded records contribute to a series at the boundaries (the ledger folds
/// only when the boundaries are the marker's, the same ones it indexed).
pub(crate) fn with_folded(mut series: Vec<f64>, differences: &[i64]) -> Vec<f64> {
    debug_assert!(differences.len() <= series.len() + 1);
    for (value, folded) in series.iter_mut().zip(totals(differences, usize::MAX)) {
        *value += folded as f64;
    }
    series
}

fn kept_live_counts(records: &Records, boundaries: &[u64]) -> Vec<f64> {
    let mut births: Vec<u64> = records.all().iter().map(|r| r.born_ns).collect();
    let mut deaths: Vec<u64> = records
        .all()
        .iter()
        .map(|r| r.released_ns)
        .filter(|&t| t != NEVER)
        .collect();
    births.sort_unstable();
    deaths.sort_unstable();
    boundaries
        .iter()
        .map(|&b| (births.partition_point(|&t| t < b) - deaths.partition_point(|&t| t < b)) as f64)
        .collect()
}

/// The running total of `changes` just before each boundary.
pub(crate) fn byte_totals(changes: &[ByteChange], boundaries: &[u64]) -> Vec<f64> {
    byte_totals_with_folded(changes, boundaries, &[])
}

/// [`byte_totals`] plus what folded records add (their difference series), summed as
/// integers and converted once: byte totals can pass 2^53.
pub(crate) fn byte_totals_with_folded(
    changes: &[ByteChange],
    boundaries: &[u64],
    differences: &[i64],
) -> Vec<f64> {
    exact_byte_totals(changes, boundaries)
        .into_iter()
        .zip(totals(differences, usize::MAX))
        .map(|(kept, folded)| (kept + folded) as f64)
        .collect()
}

fn exact_byte_totals(changes: &[ByteChange], boundaries: &[u64]) -> Vec<i64> {
    let mut sorted: Vec<(u64, i64)> = changes.iter().map(|c| (c.time_ns, c.bytes)).collect();
    sorted.sort_by_key(|&(t, _)| t);
    let mut prefix = Vec::with_capacity(sorted.len() + 1);
    let mut total = 0i64;
    prefix.push(0);
    for &(_, bytes) in &sorted {
        total += bytes;
        prefix.push(total);
    }
    boundaries
        .iter()
        .map(|&b| prefix[sorted.partition_point(|&(t, _)| t < b)])
        .collect()
}

/// Resident bytes at each boundary: the sum over processes of their latest sample at or
/// before it (a process that exited contributes nothing). `None` before the first sample.
pub(crate) fn rss_totals(
    samples: &[RssSample],
    exits: &[(u32, u64)],
    boundaries: &[u64],
) -> Vec<Option<f64>> {
    // Samples sort before exits at the same instant, and both before a boundary there.
    let mut steps: Vec<(u64, u8, u32, u64)> = samples
        .iter()
        .map(|s| (s.time_ns, 0, s.tgid, s.bytes))
        .collect();
    steps.extend(exits.iter().map(|&(tgid, t)| (t, 1, tgid, 0)));
    steps.sort_unstable();
    let mut current: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    let (mut total, mut seen) = (0i128, false);
    let mut next = 0;
    let mut out = Vec::with_capacity(boundaries.len());
    for &b in boundaries {
        while next < steps.len() && steps[next].0 <= b {
            let (_, kind, tgid, bytes) = steps[next];
            let old = if kind == 0 {
                current.insert(tgid, bytes)
            } else {
                current.remove(&tgid)
            };
            total += i128::from(if kind == 0 { bytes } else { 0 }) - i128::from(old.unwrap_or(0));
            seen |= kind == 0;
            next += 1;
        }
        out.push(seen.then_some(total as f64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::records::{Acquisition, Cause, Origin};

    #[test]
    fn counts_are_taken_just_before_each_boundary() {
        let mut records = Records::default();
        let a = records.add(1, 0, Acquisition::at(Origin::Acquired, 10));
        records.add(1, 0, Acquisition::at(Origin::Acquired, 20));
        records.release(a, 30, Cause::Explicit);
        assert_eq!(
            live_counts(&records, &[10, 11, 21, 30, 31]),
            vec![0.0, 1.0, 2.0, 2.0, 1.0]
        );
    }

    #[test]
    fn byte_totals_replay_changes() {
        let change = |time_ns, bytes| ByteChange {
            time_ns,
            bytes,
            record: 0,
        };
        let changes = [change(5, 4096), change(15, 8192), change(25, -4096)];
        assert_eq!(
            byte_totals(&changes, &[0, 10, 20, 30]),
            vec![0.0, 4096.0, 12288.0, 8192.0]
        );
    }

    #[test]
    fn rss_sums_live_processes() {
        let sample = |time_ns, tgid, bytes| RssSample {
            time_ns,
            tgid,
            bytes,
        };
        let samples = [sample(10, 1, 100), sample(12, 2, 50), sample(20, 1, 150)];
        let totals = rss_totals(&samples, &[(2, 25)], &[5, 10, 15, 20, 30]);
        assert_eq!(
            totals,
            vec![None, Some(100.0), Some(150.0), Some(200.0), Some(150.0)]
        );
    }
}
