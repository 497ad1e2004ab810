//! The analysis thread: diagnoses a copy of the ledger while the drain goes on, then shows
//! the view and writes the metrics. One job at a time; the drain never waits for it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, SyncSender},
    },
    thread::JoinHandle,
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

/// What every job's view needs besides the job.
pub(super) struct Context {
    pub(super) pid: u32,
    pub(super) command: Vec<String>,
    pub(super) iteration_request: IterationRequest,
    /// None: metrics only, no lines.
    pub(super) display: Option<Display>,
    pub(super) metrics: Option<MetricsFile>,
}

pub(super) fn spawn(
    mut context: Context,
    jobs: Receiver<Job>,
    busy: Arc<AtomicBool>,
) -> JoinHandle<Context> {
    std::thread::Builder::new()
        .name("leakscope-watch".into())
        .spawn(move || {
            let mut warned = false;
            for job in jobs {
                let view = analyze(&context, job);
                context.show(&view, &mut warned);
                busy.store(false, Ordering::Release);
            }
            context
        })
        .expect("cannot start the watch thread")
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
    let report = diagnosis::diagnose_followed(ledger, &info, &FollowedProcesses::default());
    let mut view = LiveView::from_report(&report, Subject::new(pid, &context.command), job.elapsed);
    view.skipped = job.skipped;
    view.cost = Some(super::rows::Cost {
        snapshot: job.snapshot,
        analysis: started.elapsed(),
    });
    view
}

impl Context {
    pub(super) fn show(&mut self, view: &LiveView, warned: &mut bool) {
        if let Some(display) = &mut self.display {
            display.show(&text::render(view));
        }
        if let Some(file) = &self.metrics
            && let Err(error) = file.write(&metrics::render(view))
            && !std::mem::replace(warned, true)
        {
            // Once: a full disk must not flood the log, nor stop tracing.
            eprintln!("leakscope: {error:#}");
        }
    }
}

/// Hands a job to the thread unless it is still busy with the last one.
pub(super) fn send(jobs: &SyncSender<Job>, busy: &AtomicBool, job: Job) {
    busy.store(true, Ordering::Release);
    if jobs.try_send(job).is_err() {
        busy.store(false, Ordering::Release);
    }
}
