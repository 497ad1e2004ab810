//! The run over time, for `--trace`: when each judged iteration boundary fell, each class's
//! live amount there, and when each retained resource was acquired. Bounded like the
//! analysis: the boundaries are the judged ones (a few thousand at most), and the retained
//! resources are sampled evenly beyond [`MAX_RETAINED`].

use crate::analysis::series;
use crate::iterations::Iterations;
use crate::ledger::Ledger;
use crate::ledger::records::Records;

use super::sites::site_text;

/// Retained resources shown one by one, at most (evenly chosen beyond it).
pub(crate) const MAX_RETAINED: usize = 10_000;

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Timeline {
    /// The judged boundaries (CLOCK_MONOTONIC ns), and the iteration each one starts.
    pub(crate) boundaries: Vec<(u64, u64)>,
    /// One series per class and unit, a value (or none yet) per boundary.
    pub(crate) counters: Vec<Counter>,
    /// Resources acquired inside the iterations and still held at the last boundary, by
    /// time.
    pub(crate) retained: Vec<Retained>,
    /// How many there were in all (more than `retained` holds when sampled).
    pub(crate) retained_total: u64,
}

/// A counter track. Perfetto names a track by the event's name and the value's key ("fds
/// live", "mapped bytes"), so neither repeats the other; each track has its own name, as
/// chrome://tracing stacks the values of one name into one chart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Counter {
    /// What is counted ("fds", "mapped").
    pub(crate) name: &'static str,
    /// The value's key: "live" for a count, "bytes" for an amount.
    pub(crate) key: &'static str,
    pub(crate) values: Vec<Option<f64>>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Retained {
    pub(crate) time_ns: u64,
    pub(crate) tgid: u32,
    pub(crate) class: &'static str,
    pub(crate) site: String,
}

impl Timeline {
    pub(crate) fn new(ledger: &Ledger, iterations: &Iterations) -> Timeline {
        let b = &iterations.boundaries;
        let stride = iterations.stride.max(1);
        let last = iterations.total.saturating_sub(1) as u64;
        let boundaries = b
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, (i as u64 * stride).min(last)))
            .collect();
        let some = |values: Vec<f64>| values.into_iter().map(Some).collect();
        let exits: Vec<(u32, u64)> = ledger.exits().collect();
        let mut counters = vec![
            counter(
                "fds",
                "live",
                some(series::live_counts(ledger.fd_records(), b)),
            ),
            counter(
                "mappings",
                "live",
                some(series::live_counts(ledger.map_records(), b)),
            ),
            counter(
                "mapped",
                "bytes",
                some(series::byte_totals_with_folded(
                    ledger.map_byte_changes(),
                    b,
                    &ledger.map_records().folded().bytes,
                )),
            ),
            counter(
                "brk",
                "bytes",
                some(series::byte_totals(ledger.heap_byte_changes(), b)),
            ),
            counter(
                "rss",
                "bytes",
                series::rss_totals(ledger.rss_samples(), &exits, b),
            ),
            counter(
                "files",
                "live",
                some(series::live_counts(ledger.file_records(), b)),
            ),
            counter(
                "watches",
                "live",
                some(series::live_counts(ledger.watch_records(), b)),
            ),
        ];
        if !ledger.alloc_byte_samples().is_empty() {
            counters.push(counter(
                "heap",
                "bytes",
                series::rss_totals(ledger.alloc_byte_samples(), &exits, b),
            ));
        }
        let (retained, retained_total) = match (b.first(), b.last()) {
            (Some(&first), Some(&last)) if b.len() >= 2 => retained(ledger, first, last),
            _ => (Vec::new(), 0),
        };
        Timeline {
            boundaries,
            counters,
            retained,
            retained_total,
        }
    }
}

fn counter(name: &'static str, key: &'static str, values: Vec<Option<f64>>) -> Counter {
    Counter { name, key, values }
}

/// Resources made between the first and the last boundary and held at the last one.
fn retained(ledger: &Ledger, first: u64, last: u64) -> (Vec<Retained>, u64) {
    let classes: [(&'static str, &Records); 4] = [
        ("fd", ledger.fd_records()),
        ("mmap", ledger.map_records()),
        ("files", ledger.file_records()),
        ("watches", ledger.watch_records()),
    ];
    let mut all: Vec<(&'static str, &crate::ledger::records::Record)> = classes
        .iter()
        .flat_map(|(class, records)| records.all().iter().map(move |r| (*class, r)))
        // Held at the last boundary: what the process's exit releases still counts.
        .filter(|(_, r)| r.released_ns >= last && first <= r.origin_ns && r.origin_ns < last)
        .collect();
    all.sort_by_key(|(_, r)| r.origin_ns);
    let total = all.len() as u64;
    let step = all.len().div_ceil(MAX_RETAINED).max(1);
    let chosen = all
        .into_iter()
        .step_by(step)
        .map(|(class, r)| Retained {
            time_ns: r.origin_ns,
            tgid: r.tgid,
            class,
            site: site_text(r.site, ledger.sites()),
        })
        .collect();
    (chosen, total)
}
