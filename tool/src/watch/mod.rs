//! Watch mode (`--interval SECS`, `--metrics FILE`): while tracing, every interval, the
//! final report's analysis runs on a copy of the ledger as it is, and its verdicts so far
//! are shown one line per class on stderr and written as Prometheus metrics.
//!
//! The drain only copies the ledger at a tick ([`tick`]); the diagnosis runs on a thread of
//! its own ([`worker`]), so events keep being drained meanwhile. A tick that comes while the
//! last analysis still runs is skipped. [`rows`] is the view as data; [`text`] and
//! [`metrics`] render it; [`display`] draws the text and [`atomic`] writes the metrics file.

mod atomic;
mod display;
mod metrics;
mod rows;
mod text;
mod tick;
mod worker;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, SyncSender},
    },
    time::{Duration, Instant},
};

use crate::{
    cli::CommonArgs, exit_code::UsageError, iterations::IterationRequest, ledger::Ledger,
    report::Report,
};

pub(crate) use atomic::MetricsFile;
use rows::{LiveView, Subject};
use tick::{Tick, Ticker};
use worker::{Context, Job, Outputs};

/// `--metrics` without `--interval` writes this often.
const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(10);

/// The shortest interval: a view is a full diagnosis.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !secs.is_finite() || secs < MIN_INTERVAL.as_secs_f64() {
        return Err(format!(
            "{text}: give a number of seconds, at least {}",
            MIN_INTERVAL.as_secs_f64()
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What the user asked for, checked before tracing starts.
pub(crate) struct WatchRequest {
    interval: Duration,
    lines: bool,
    metrics: Option<MetricsFile>,
}

impl WatchRequest {
    /// None without `--interval` and `--metrics`. A metrics file that cannot be written is
    /// a usage error now, before the target runs.
    pub(crate) fn from_args(common: &CommonArgs) -> Result<Option<Self>, UsageError> {
        let metrics = common
            .metrics
            .as_deref()
            .map(MetricsFile::open)
            .transpose()?;
        if common.interval.is_none() && metrics.is_none() {
            return Ok(None);
        }
        Ok(Some(WatchRequest {
            interval: common.interval.unwrap_or(DEFAULT_METRICS_INTERVAL),
            lines: common.interval.is_some(),
            metrics,
        }))
    }

    /// Whether lines are drawn on stderr (a progress bar would fight them).
    pub(crate) fn draws_lines(&self) -> bool {
        self.lines
    }
}

/// The running watch: the tick schedule on the drain's side, and the analysis thread.
pub(crate) struct Watch {
    ticker: Ticker,
    started: Instant,
    jobs: Option<SyncSender<Job>>,
    busy: Arc<AtomicBool>,
    outputs: Arc<Mutex<Outputs>>,
}

impl Watch {
    /// Starts the analysis thread. `pid` and `command` name the target until the ledger
    /// knows it (a launched target's pid is known only once it runs).
    pub(crate) fn start(
        request: WatchRequest,
        pid: u32,
        command: Vec<String>,
        iteration_request: IterationRequest,
    ) -> Self {
        let context = Context {
            pid,
            command,
            iteration_request,
        };
        let outputs = Arc::new(Mutex::new(Outputs::new(
            request.lines.then(display::Display::stderr),
            request.metrics,
        )));
        // Room for one job: a second one waits for nothing, it is skipped.
        let (jobs, receiver) = mpsc::sync_channel(1);
        let busy = Arc::new(AtomicBool::new(false));
        worker::spawn(context, outputs.clone(), receiver, busy.clone());
        let now = Instant::now();
        Watch {
            ticker: Ticker::new(request.interval, now),
            started: now,
            jobs: Some(jobs),
            busy,
            outputs,
        }
    }

    /// Tracing begins now: the intervals count from here.
    pub(crate) fn begin(&mut self) {
        let now = Instant::now();
        self.started = now;
        self.ticker = Ticker::new(self.ticker.interval(), now);
    }

    /// Called after each drain poll: at a tick, copies the ledger for the analysis thread.
    /// `lost` reads the kernel's counts of lost records: (all, of them markers).
    pub(crate) fn polled(&mut self, ledger: &Ledger, lost: &dyn Fn() -> (u64, u64)) {
        let now = Instant::now();
        let busy = self.busy.load(Ordering::Acquire);
        if self.ticker.poll(now, busy) != Tick::Due {
            return;
        }
        let Some(jobs) = &self.jobs else { return };
        let (lost_events, lost_markers) = lost();
        let copy_started = Instant::now();
        let ledger = ledger.clone();
        let job = Job {
            ledger,
            lost_events,
            lost_markers,
            elapsed: now.duration_since(self.started),
            skipped: self.ticker.skipped(),
            snapshot: copy_started.elapsed(),
        };
        worker::send(jobs, &self.busy, job);
    }

    /// Tracing is over: the text lines stop (the final report follows them), a view still
    /// being analysed is dropped rather than waited for, and the metrics are written once
    /// more with the final report's facts.
    pub(crate) fn finish(mut self, report: &Report) {
        self.jobs = None;
        let Ok(mut outputs) = self.outputs.lock() else {
            return;
        };
        outputs.closed = true;
        let subject = Subject::new(report.target.pid, &report.target.command);
        let mut view = LiveView::from_report(report, subject, self.started.elapsed());
        view.is_final = true;
        outputs.write_metrics(&view);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn request(flags: &[&str]) -> Option<WatchRequest> {
        let argv = ["leakscope", "run"]
            .iter()
            .chain(flags)
            .chain(&["--", "true"])
            .copied();
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!()
        };
        WatchRequest::from_args(&run.common).unwrap()
    }

    #[test]
    fn metrics_alone_are_written_every_ten_seconds_without_lines() {
        assert!(request(&[]).is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let alone = request(&["--metrics", path.to_str().unwrap()]).unwrap();
        assert_eq!(alone.interval, DEFAULT_METRICS_INTERVAL);
        assert!(!alone.draws_lines());
        let both = request(&["--interval", "2.5", "--metrics", path.to_str().unwrap()]).unwrap();
        assert_eq!(both.interval, Duration::from_millis(2500));
        assert!(both.draws_lines() && both.metrics.is_some());
    }

    #[test]
    fn an_interval_is_a_positive_number_of_seconds() {
        assert_eq!(parse_interval("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "0.01", "nan", "inf", "x"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
