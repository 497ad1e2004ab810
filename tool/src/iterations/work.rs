//! The work a run did, as the iteration detector weighs it: every acquisition (an fd or a
//! mapping a traced call created, or a growth of a brk heap) with its time and, where the
//! ledger knows it, the program image that made it.
//!
//! An exec keeps the tgid but starts a new program: a shell shim that execs python3 is one
//! tgid whose life before the exec is the shim's. So work is attributed to images, a tgid
//! and the number of execs it had made by then, never to a bare tgid.

use std::collections::HashMap;

use crate::ledger::Ledger;
use crate::ledger::records::{Origin, Records};

/// One program image: process `tgid` after its `epoch`-th exec (0: before any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Image {
    pub(crate) tgid: u32,
    pub(crate) epoch: usize,
}

impl Image {
    /// The image `tgid` ran at time `t`.
    pub(crate) fn at(ledger: &Ledger, tgid: u32, t: u64) -> Image {
        Image {
            tgid,
            epoch: ledger.exec_times(tgid).partition_point(|&e| e <= t),
        }
    }

    /// The image `tgid` runs now, as events are applied (each process's in time order).
    pub(crate) fn now(ledger: &Ledger, tgid: u32) -> Image {
        Image {
            tgid,
            epoch: ledger.exec_times(tgid).len(),
        }
    }

    /// From its exec (or the process's first event) to the next exec, the exit, or the end
    /// of the run.
    pub(crate) fn life(&self, ledger: &Ledger) -> Option<(u64, u64)> {
        let (first, last) = ledger.process_span(self.tgid)?;
        let execs = ledger.exec_times(self.tgid);
        let start = match self.epoch {
            0 => first,
            k => execs.get(k - 1).copied().unwrap_or(first),
        };
        let end = execs.get(self.epoch).copied().unwrap_or(last);
        Some((start, end.max(start)))
    }
}

/// Sorted acquisition times, plus acquisitions the ledger folded away, each group weighed
/// at its earliest time (exact for windows that start and end at iteration boundaries, the
/// only windows asked of a run that folds).
#[derive(Clone, Debug, Default)]
pub(crate) struct Timeline {
    times: Vec<u64>,
    /// (time, count of this group and every earlier one), sorted by time: a run committed
    /// to early has one group per iteration, looked up once per iteration.
    weighted: Vec<(u64, u64)>,
}

impl Timeline {
    pub(super) fn new(mut times: Vec<u64>) -> Timeline {
        times.sort_unstable();
        Timeline {
            times,
            weighted: Vec::new(),
        }
    }

    /// With `weighted` groups of acquisitions, each (time, count).
    pub(super) fn with_weighted(
        mut self,
        weighted: impl IntoIterator<Item = (u64, u64)>,
    ) -> Timeline {
        let mut groups: Vec<(u64, u64)> = self.weighted_groups().collect();
        groups.extend(weighted);
        groups.sort_unstable();
        self.weighted = groups
            .into_iter()
            .scan(0u64, |sum, (t, n)| {
                *sum += n;
                Some((t, *sum))
            })
            .collect();
        self
    }

    /// The weighted groups as (time, count).
    fn weighted_groups(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut before = 0;
        self.weighted.iter().map(move |&(t, sum)| {
            let n = sum - before;
            before = sum;
            (t, n)
        })
    }

    /// Acquisitions before `t` (`inclusive`: at or before).
    fn up_to(&self, t: u64, inclusive: bool) -> usize {
        let below = |x: u64| if inclusive { x <= t } else { x < t };
        let plain = self.times.partition_point(|&x| below(x));
        let groups = self.weighted.partition_point(|&(x, _)| below(x));
        let folded = groups
            .checked_sub(1)
            .map_or(0, |last| self.weighted[last].1);
        plain + folded as usize
    }

    pub(crate) fn total(&self) -> usize {
        self.times.len() + self.weighted.last().map_or(0, |&(_, sum)| sum as usize)
    }

    /// Acquisitions at `from..=to`.
    pub(crate) fn within(&self, from: u64, to: u64) -> usize {
        if to < from {
            return 0;
        }
        self.up_to(to, true) - self.up_to(from, false)
    }

    /// Acquisitions at `from..to`.
    pub(crate) fn between(&self, from: u64, to: u64) -> usize {
        self.up_to(to, false)
            .saturating_sub(self.up_to(from, false))
    }

    /// The plain (not folded) acquisition times at or after `t`.
    pub(super) fn from(&self, t: u64) -> Vec<u64> {
        self.times[self.times.partition_point(|&x| x < t)..].to_vec()
    }

    /// Acquisitions after `t`.
    pub(crate) fn after(&self, t: u64) -> usize {
        self.total() - self.up_to(t, true)
    }

    /// The share of all acquisitions at `from..=to`; `None` when there are none.
    pub(crate) fn share(&self, from: u64, to: u64) -> Option<f64> {
        (self.total() > 0).then(|| self.within(from, to) as f64 / self.total() as f64)
    }
}

pub(crate) struct Work {
    /// Every acquisition of the run.
    pub(crate) all: Timeline,
    /// fd and mapping acquisitions per image (heap growth carries no process, so it counts
    /// only in `all`).
    by_image: HashMap<Image, Timeline>,
}

impl Work {
    pub(crate) fn new(ledger: &Ledger) -> Work {
        let mut all = Vec::new();
        let mut by_image: HashMap<Image, Vec<u64>> = HashMap::new();
        let mut records = |records: &Records| {
            for record in records
                .all()
                .iter()
                .filter(|r| r.origin == Origin::Acquired)
            {
                all.push(record.born_ns);
                by_image
                    .entry(Image::at(ledger, record.tgid, record.born_ns))
                    .or_default()
                    .push(record.born_ns);
            }
        };
        records(ledger.fd_records());
        records(ledger.map_records());
        all.extend(ledger.heap_growth().iter().map(|g| g.time_ns));
        let folded = [ledger.fd_records(), ledger.map_records()]
            .into_iter()
            .flat_map(|records| records.folded().weighted_acquisitions());
        Work {
            all: Timeline::new(all).with_weighted(folded),
            by_image: by_image
                .into_iter()
                .map(|(image, times)| (image, Timeline::new(times)))
                .collect(),
        }
    }

    /// From parts: a run committed to its iterations early knows each image's work from
    /// counts kept as it went (see [`super::early`]).
    pub(super) fn from_parts(all: Timeline, by_image: HashMap<Image, Timeline>) -> Work {
        Work { all, by_image }
    }

    /// Each image's fd and mapping acquisitions.
    pub(super) fn totals(&self) -> impl Iterator<Item = (Image, usize)> + '_ {
        self.by_image
            .iter()
            .map(|(&image, timeline)| (image, timeline.total()))
    }

    /// The fd and mapping acquisitions of one image.
    pub(crate) fn of(&self, image: Image) -> Option<&Timeline> {
        self.by_image.get(&image)
    }

    /// The image that made the most fd and mapping acquisitions: the process that does the
    /// work. Ties go to the later image (a program exec'd after a shim's helpers).
    pub(crate) fn busiest(&self) -> Option<(Image, usize)> {
        self.by_image
            .iter()
            .map(|(&image, timeline)| (image, timeline.total()))
            .max_by_key(|&(image, n)| (n, image.epoch, image.tgid))
    }
}

/// The median gap between sorted times: how long one iteration typically is (0 for fewer
/// than two times).
pub(crate) fn median_gap(times: &[u64]) -> u64 {
    let mut gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return 0;
    }
    let middle = gaps.len() / 2;
    *gaps.select_nth_unstable(middle).1
}

/// Coverage of boundaries (every `stride`-th one, and the last): the share of the run's
/// acquisitions from the first boundary to the end of the last iteration, taken to be one
/// typical iteration past its start.
pub(crate) fn coverage(work: &Work, boundaries: &[u64], stride: u64) -> Option<f64> {
    let (&first, &last) = (boundaries.first()?, boundaries.last()?);
    work.all
        .share(first, last + median_gap(boundaries) / stride.max(1))
}
