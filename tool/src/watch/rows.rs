//! The live view as data: one row per class, taken from a report computed on the ledger as
//! it is (the same diagnosis as the final report), plus who is traced and how far.

use std::time::{Duration, SystemTime};

use crate::analysis::trend::{MIN_ITERATIONS, Verdict};
use crate::report::Report;

/// The classes of the report, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Fd,
    Mmap,
    Brk,
    Rss,
    Files,
    Watches,
    /// `--heap`: the allocator's live blocks.
    Heap,
}

impl Class {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Class::Fd => "fd",
            Class::Mmap => "mmap",
            Class::Brk => "brk",
            Class::Rss => "rss",
            Class::Files => "files",
            Class::Watches => "watches",
            Class::Heap => "heap",
        }
    }
}

/// One class now.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub(crate) class: Class,
    /// Resources held now (fds, mappings, entries on disk, watches); `None` for brk and rss.
    pub(crate) live: Option<u64>,
    /// Bytes: mapped bytes, heap growth and entry sizes at the last iteration boundary, the
    /// resident set at its last sample.
    pub(crate) bytes: Option<i64>,
    /// Leaked resources per iteration (count classes).
    pub(crate) rate: Option<f64>,
    /// Leaked bytes per iteration (mmap, brk, rss, files).
    pub(crate) bytes_rate: Option<f64>,
    pub(crate) verdict: Verdict,
}

/// Whom the view is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Subject {
    pub(crate) pid: u32,
    /// The command's basename ("" when unknown).
    pub(crate) command: String,
}

impl Subject {
    pub(crate) fn new(pid: u32, command: &[String]) -> Self {
        let command = command
            .first()
            .map(|argv0| argv0.rsplit('/').next().unwrap_or(argv0).to_string())
            .unwrap_or_default();
        Subject { pid, command }
    }
}

/// Everything one interval shows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LiveView {
    pub(crate) subject: Subject,
    pub(crate) taken_at: SystemTime,
    /// Since tracing began.
    pub(crate) elapsed: Duration,
    pub(crate) iterations: usize,
    pub(crate) lost_events: u64,
    /// Intervals that passed without a view (the analysis was slower than the interval).
    pub(crate) skipped: u64,
    /// The report after tracing ended, not a view during it.
    pub(crate) is_final: bool,
    /// What this view cost (none for the final one).
    pub(crate) cost: Option<Cost>,
    /// leakscope's own resident set when the view was taken.
    pub(crate) own_rss_bytes: Option<u64>,
    pub(crate) rows: Vec<Row>,
}

/// What one view cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cost {
    /// Copying the ledger: the only time the drain waits.
    pub(crate) snapshot: Duration,
    /// The diagnosis of the copy, on the watch thread while the drain goes on.
    pub(crate) analysis: Duration,
}

impl LiveView {
    pub(crate) fn from_report(report: &Report, subject: Subject, elapsed: Duration) -> Self {
        let classes = &report.classes;
        let resource = |class, r: &crate::report::model::ResourceReport, bytes: bool| Row {
            class,
            live: Some(r.live_at_exit),
            bytes: bytes
                .then(|| r.live_bytes_at_end.map(|b| b as i64))
                .flatten(),
            rate: Some(r.leaked_per_iteration),
            bytes_rate: r.bytes_leaked_per_iteration,
            verdict: r.verdict,
        };
        let mut rows = vec![
            resource(Class::Fd, &classes.fd, false),
            resource(Class::Mmap, &classes.mmap, true),
            Row {
                class: Class::Brk,
                live: None,
                bytes: Some(classes.brk.live_bytes_at_end),
                rate: None,
                bytes_rate: Some(classes.brk.bytes_per_iteration),
                verdict: classes.brk.verdict,
            },
            Row {
                class: Class::Rss,
                live: None,
                bytes: classes.rss.bytes_at_end.map(|b| b as i64),
                rate: None,
                bytes_rate: Some(classes.rss.bytes_per_iteration),
                verdict: classes.rss.verdict,
            },
            resource(Class::Files, &classes.files, true),
            resource(Class::Watches, &classes.watches, false),
        ];
        if let Some(heap) = &classes.heap {
            rows.push(Row {
                class: Class::Heap,
                live: heap.live_allocations_at_end,
                bytes: heap.live_bytes_at_end.map(|b| b as i64),
                rate: Some(heap.allocations_per_iteration),
                bytes_rate: Some(heap.bytes_per_iteration),
                verdict: heap.verdict,
            });
        }
        LiveView {
            subject,
            taken_at: SystemTime::now(),
            elapsed,
            iterations: report.iterations.count,
            lost_events: report.lost_events,
            skipped: 0,
            is_final: false,
            cost: None,
            own_rss_bytes: crate::self_stats::current_rss_bytes(),
            rows,
        }
    }

    /// Fewer iterations than any rate needs: the verdicts cannot say anything yet.
    pub(crate) fn too_few_iterations(&self) -> bool {
        self.iterations < MIN_ITERATIONS
    }

    pub(crate) fn row(&self, class: Class) -> Option<&Row> {
        self.rows.iter().find(|row| row.class == class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_the_commands_basename() {
        let subject = Subject::new(7, &["/usr/bin/python3".into(), "job.py".into()]);
        assert_eq!(subject.command, "python3");
        assert_eq!(Subject::new(7, &[]).command, "");
    }
}
