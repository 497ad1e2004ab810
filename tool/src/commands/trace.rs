//! Trace a target into a ledger, diagnose it, and write the report where the user asked.

use std::io::Write as _;

use crate::{
    cli::CommonArgs,
    diagnosis::{self, FollowedProcesses, RunInfo, TargetExit},
    ending::{Ending, How, Interruption, KilledBy},
    event::Event,
    exit_code, file_sizes,
    iterations::{IterationRequest, early},
    ledger::{Ledger, streaming::BoundarySource},
    proc_snapshot::Snapshot,
    progress::{Progress, ProgressSink},
    report::{Exporter as _, JsonExporter, Report, TextExporter},
    session::{self, EventSink, MarkerSpec, Outcome, Target, TraceConfig},
    stop,
    watch::{Watch, WatchRequest},
};

use super::output::ReportOutput;

/// The ledger being filled, and the sampler of the sizes of the entries on disk it holds.
struct Tracing {
    ledger: Ledger,
    sizes: file_sizes::Sampler,
    /// `--interval`/`--metrics`: the verdicts so far, now and then.
    watch: Option<Watch>,
}

/// Set, the ledger keeps every record even with a marker, and automatic detection waits
/// for the end (tests compare both ways).
const NO_FOLD_ENV: &str = "LEAKSCOPE_NO_FOLD";

impl EventSink for Tracing {
    fn begin(&mut self, target: u32, since_ns: u64, held: &Snapshot) {
        if let Some(watch) = &mut self.watch {
            watch.begin();
        }
        let ledger = &mut self.ledger;
        ledger.begin(target, since_ns);
        if let Some(cwd) = &held.cwd {
            ledger.set_cwd(target, &cwd.to_string_lossy());
        }
        for fd in &held.fds {
            ledger.seed_fd(target, fd.fd, &fd.link, fd.cloexec);
        }
        for mapping in &held.mappings {
            ledger.seed_mapping(target, mapping.start, mapping.len, &mapping.description);
        }
    }

    fn path_of_fd(&self, tgid: u32, fd: i32) -> Option<std::sync::Arc<str>> {
        self.ledger.path_of_fd(tgid, fd)
    }

    fn cwd_of(&self, tgid: u32) -> Option<std::sync::Arc<str>> {
        self.ledger.cwd_of(tgid)
    }

    fn apply(&mut self, event: &Event) {
        self.ledger.apply(event);
        self.sizes.after_event(&mut self.ledger, event.time_ns);
    }

    fn heap_sampled(&mut self, time_ns: u64, totals: &[(u32, crate::event::MarkerHeap)]) {
        for (tgid, heap) in totals {
            self.ledger.note_heap_totals(*tgid, time_ns, heap);
        }
    }

    fn polled(&mut self, lost: &dyn Fn() -> (u64, u64)) {
        self.ledger.poll_early();
        // Automatic detection found no loop early: memory grows with events (said once).
        if let Some(note) = self.ledger.take_early_note() {
            eprintln!("leakscope: {note}");
        }
        if let Some(watch) = &mut self.watch {
            watch.polled(&self.ledger, lost);
        }
    }
}

pub(crate) struct Diagnosed {
    pub(crate) report: Report,
    pub(crate) outcome: Outcome,
}

/// Traces `target` and diagnoses it. `marker` overrides the user's `--iteration-symbol`
/// (the built-in extract job marks its own iterations). `watch`: the views while tracing
/// (`--interval`, `--metrics`), checked by the caller before anything ran.
pub(crate) async fn trace_and_diagnose(
    target: Target,
    common: &CommonArgs,
    marker: Option<MarkerSpec>,
    progress: Option<Progress>,
    watch: Option<WatchRequest>,
) -> anyhow::Result<Diagnosed> {
    let marker = marker.or_else(|| common.iteration_symbol.clone());
    let iteration_request = match (&marker, &common.iteration_path) {
        (Some(marker), _) => IterationRequest::Symbol(marker.symbol.clone()),
        (None, Some(path)) => IterationRequest::Path(path.clone()),
        (None, None) => IterationRequest::Auto,
    };
    let config = TraceConfig {
        ring_bytes: common.ring_mib << 20,
        stack_bytes: common.stack_bytes,
        stack_rate: common.stack_rate,
        marker,
        heap: common.heap,
    };
    let watch = watch.map(|request| {
        let (pid, command) = match &target {
            Target::Spawn { argv, .. } => (
                0,
                argv.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            ),
            Target::Attach { pid, .. } => (
                *pid,
                crate::followed::proc_command(*pid).unwrap_or_default(),
            ),
        };
        Watch::start(request, pid, command, iteration_request.clone())
    });
    let mut ledger = Ledger::new();
    ledger.set_max_boundaries(crate::ledger::boundaries::max_from_env());
    if std::env::var_os(NO_FOLD_ENV).is_none() {
        match &iteration_request {
            IterationRequest::Symbol(_) => ledger.stream_on(BoundarySource::Markers),
            IterationRequest::Path(needle) => {
                ledger.stream_on(BoundarySource::PathsContaining(needle.clone()));
            }
            // Chosen from the opens seen so far once there are enough; folded from then on.
            IterationRequest::Auto => ledger.detect_early(early::first_try()),
        }
    }
    let mut tracing = Tracing {
        ledger,
        sizes: file_sizes::Sampler::default(),
        watch,
    };
    let outcome = match progress {
        Some(progress) => {
            let mut sink = ProgressSink {
                inner: &mut tracing,
                progress: progress.clone(),
                live: |tracing| tracing.ledger.live_totals(),
            };
            let outcome = session::trace(target, &config, &mut sink).await;
            progress.finish();
            outcome?
        }
        None => session::trace(target, &config, &mut tracing).await?,
    };
    let watch = tracing.watch.take();
    let mut ledger = tracing.ledger;
    // Entries left on disk are sized now, before anyone can remove them.
    ledger.note_file_sizes(file_sizes::stat_live(&ledger));
    if let Some(heap) = &outcome.heap {
        ledger.note_heap_snapshot(heap.clone());
    }
    stop::test_pause("report", "").await;
    let exit = outcome.end;
    let info = RunInfo {
        command: outcome.command.clone(),
        pid: outcome.pid,
        exit,
        lost_events: outcome.lost_events,
        lost_markers: outcome.lost_markers,
        fd_limit: outcome.fd_limit,
        iteration_request,
    };
    let mut report = diagnosis::diagnose_followed(
        ledger,
        &info,
        &FollowedProcesses {
            commands: outcome.commands.clone(),
            running_at_end: Some(outcome.running_at_end.clone()),
        },
        diagnosis::Extras {
            timeline: common.trace.is_some(),
            charts: common.html.is_some() || common.svg.is_some(),
        },
    );
    // How the kernel side lost records is transport detail the diagnosis does not use.
    let by_name = |counts: &[(leakscope_common::DropReason, u64)]| {
        counts
            .iter()
            .map(|(reason, n)| (reason.name().to_string(), *n))
            .collect()
    };
    report.lost_by_reason = by_name(&outcome.lost_by_reason);
    report.stacks_dropped = by_name(&outcome.stacks_dropped);
    report.ended = Some(outcome.ending.clone());
    if let Some(watch) = watch {
        watch.finish(&report);
    }
    Ok(Diagnosed { report, outcome })
}

/// Writes the text report and the JSON, warns about anything that makes the report
/// partial, and returns the exit status.
pub(crate) fn write_report(
    diagnosed: &mut Diagnosed,
    common: &CommonArgs,
    output: &mut ReportOutput,
) -> anyhow::Result<u8> {
    let Diagnosed { report, outcome } = diagnosed;
    // Measured last, so the peak and the report time include everything before rendering.
    report.self_stats = Some(crate::self_stats::now());
    let report = &*report;
    let outcome = &*outcome;
    let text = TextExporter.render(report)?;
    if output.json_on_stdout() {
        std::io::stderr().write_all(&text)?;
    } else {
        std::io::stdout().write_all(&text)?;
    }
    if output.wants_json() {
        output.write_json(&JsonExporter.render(report)?)?;
    }
    output.write_exports(report)?;
    for warning in warnings(outcome) {
        eprintln!("leakscope: {warning}");
    }
    if outcome.ending.forced() {
        // Stopped at once: the report may be cut short, whatever it found.
        let last = stop::received().last().map(|r| r.signal);
        return Ok(last.map_or(exit_code::FAILURE, exit_code::interrupted));
    }
    Ok(if !common.fail_on_leak {
        exit_code::OK
    } else if report.has_leak() {
        exit_code::LEAK_FOUND
    } else if outcome.lost_events > 0 {
        eprintln!(
            "leakscope: --fail-on-leak: events were lost, so \"no leak\" is not proven (exit {})",
            exit_code::INCOMPLETE
        );
        exit_code::INCOMPLETE
    } else {
        exit_code::OK
    })
}

/// Everything that makes the report partial, one line each.
fn warnings(outcome: &Outcome) -> Vec<String> {
    let mut warnings = Vec::new();
    if let TargetExit::Signal(signal) = outcome.end {
        let name = nix::sys::signal::Signal::try_from(signal)
            .map(|s| s.as_str())
            .unwrap_or("unknown");
        let by = match outcome.ending.by {
            Some(KilledBy::Leakscope) => ", sent by leakscope",
            _ => "",
        };
        warnings.push(format!(
            "the target was killed by signal {signal} ({name}){by}; the report covers what it did until then"
        ));
    }
    if outcome.lost_events > 0 {
        warnings.push(format!(
            "{} events were lost (the ring buffer was full), so the ledger is incomplete and verdicts are \
             inconclusive: rerun with a larger --ring-mib",
            outcome.lost_events
        ));
    }
    if outcome.undecodable > 0 {
        warnings.push(format!(
            "{} records could not be decoded: the eBPF object and the binary disagree; rebuild with `cargo xtask build`",
            outcome.undecodable
        ));
    }
    if let Some(interruption) = &outcome.ending.interrupted {
        warnings.push(interruption_warning(interruption, &outcome.ending));
    }
    warnings
}

/// What a stop signal did, truthfully for each ending.
fn interruption_warning(interruption: &Interruption, ending: &Ending) -> String {
    let signal = interruption.signal;
    let covers = match ending.how {
        How::Detached => "tracing stopped and the target was left running, untouched",
        _ if ending.forced() => {
            "stopped at once: the target was killed and followed processes were not waited for"
        }
        How::TargetExited | How::TargetKilled if interruption.sent_to_target.is_empty() => {
            "tracing stopped once the target ended (the terminal's signal reached it too)"
        }
        How::TargetExited | How::TargetKilled => {
            "leakscope passed the signal on to the target and stopped tracing once it ended"
        }
        How::Duration | How::Interrupted => "tracing stopped",
    };
    let again = if ending.forced() {
        format!(" and {} more", interruption.count - 1)
    } else {
        String::new()
    };
    format!("interrupted by {signal}{again}: {covers}; the report covers the run until then")
}
