//! The analysis thread: diagnoses a copy of the ledger while the drain goes on, then shows
//! the view and writes the metrics. One job at a time; the drain never waits for it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, SyncSender},
    },
    time::{Duration, Instant},
};

use crate::{
    diagnosis::{self, FollowedProcesses, RunInfo, TargetExit},
    file_sizes,
    iterations::IterationRequest,
    ledger::Ledger,
};

use super::{
    atomic::MetricsFile,
    display::Display,
    metrics,
    rows::{LiveView, Subject},
    text,
};

/// A copy of the ledger at a tick, with what the session knew then.
pub(super) struct Job {
    pub(super) ledger: Ledger,
    pub(super) lost_events: u64,
    pub(super) lost_markers: u64,
    pub(super) elapsed: Duration,
    pub(super) skipped: u64,
    /// How long the copy held up the drain.
    pub(super) snapshot: Duration,
}

/// What every job's analysis needs besides the job.
pub(super) struct Context {
    pub(super) pid: u32,
    pub(super) command: Vec<String>,
    pub(super) iteration_request: IterationRequest,
}

/// Where views go. Shared with the session's end, which closes it: a view whose analysis
/// was still running when tracing ended is dropped, never drawn into the final report nor
/// written over the final metrics (the lock orders the two).
pub(super) struct Outputs {
    /// None: metrics only, no lines.
    pub(super) display: Option<Display>,
    pub(super) metrics: Option<MetricsFile>,
    pub(super) closed: bool,
    /// A failed metrics write was told (once: a full disk must not flood the log).
    warned: bool,
}

impl Outputs {
    pub(super) fn new(display: Option<Display>, metrics: Option<MetricsFile>) -> Self {
        Outputs {
            display,
            metrics,
            closed: false,
            warned: false,
        }
    }

    pub(super) fn show(&mut self, view: &LiveView) {
        if self.closed {
            return;
        }
        if let Some(display) = &mut self.display {
            display.show(&text::render(view));
        }
        self.write_metrics(view);
    }

    /// Writes the metrics of `view`; a failure is told once and does not stop tracing.
    pub(super) fn write_metrics(&mut self, view: &LiveView) {
        if let Some(file) = &self.metrics
            && let Err(error) = file.write(&metrics::render(view))
            && !std::mem::replace(&mut self.warned, true)
        {
            eprintln!("leakscope: {error:#}");
        }
    }
}

/// The analysis thread. It ends when the sender is dropped; nobody waits for it.
pub(super) fn spawn(
    context: Context,
    outputs: Arc<Mutex<Outputs>>,
    jobs: Receiver<Job>,
    busy: Arc<AtomicBool>,
) {
    std::thread::Builder::new()
        .name("leakscope-watch".into())
        .spawn(move || {
            for job in jobs {
                let view = analyze(&context, job);
                // The copy and the analysis are freed now; glibc would keep this thread's
                // arena at its largest view, which grows with the iterations.
                crate::self_stats::give_back_freed_memory();
                if let Ok(mut outputs) = outputs.lock() {
                    outputs.show(&view);
                }
                busy.store(false, Ordering::Release);
            }
        })
        .expect("cannot start the watch thread");
}

/// The final report's diagnosis, on the ledger as it is: the target is still running.
fn analyze(context: &Context, job: Job) -> LiveView {
    let started = Instant::now();
    let mut ledger = job.ledger;
    ledger.note_file_sizes(file_sizes::stat_live(&ledger));
    let pid = ledger.target().unwrap_or(context.pid);
    let info = RunInfo {
        command: context.command.clone(),
        pid,
        exit: TargetExit::StillRunning,
        lost_events: job.lost_events,
        lost_markers: job.lost_markers,
        fd_limit: None,
        iteration_request: context.iteration_request.clone(),
    };
    let report = diagnosis::diagnose_followed(
        ledger,
        &info,
        &FollowedProcesses::default(),
        diagnosis::Extras::default(),
    );
    let mut view = LiveView::from_report(&report, Subject::new(pid, &context.command), job.elapsed);
    view.skipped = job.skipped;
    view.cost = Some(super::rows::Cost {
        snapshot: job.snapshot,
        analysis: started.elapsed(),
    });
    view
}

/// Hands a job to the thread unless it is still busy with the last one.
pub(super) fn send(jobs: &SyncSender<Job>, busy: &AtomicBool, job: Job) {
    busy.store(true, Ordering::Release);
    if jobs.try_send(job).is_err() {
        busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::Stream;

    #[test]
    fn a_view_that_comes_after_the_end_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let mut outputs = Outputs::new(None, Some(MetricsFile::open(&path).unwrap()));
        let mut stream = Stream::new(42);
        stream.marker().open("/tmp/a", 3).close(3);
        let info = RunInfo {
            command: Vec::new(),
            pid: 42,
            exit: TargetExit::StillRunning,
            lost_events: 0,
            lost_markers: 0,
            fd_limit: None,
            iteration_request: IterationRequest::Auto,
        };
        let report = diagnosis::diagnose(stream.ledger(), &info);
        let view = LiveView::from_report(&report, Subject::new(42, &[]), Duration::ZERO);
        outputs.show(&view);
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("leakscope_final{pid=\"42\",command=\"\"} 0"));
        outputs.closed = true;
        std::fs::remove_file(&path).unwrap();
        outputs.show(&view);
        assert!(
            !path.exists(),
            "a late view must not replace the final metrics"
        );
    }
}
