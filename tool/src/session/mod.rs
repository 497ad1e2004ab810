//! One tracing session: load the probes, start or attach to the target, drain the ring
//! buffer into an [`EventSink`] until every traced process is done (the target and all it
//! forked, like `strace -f`), and say how it ended.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    time::Duration,
};

use leakscope_common::DropReason;
use nix::sys::signal::Signal;
use thiserror::Error;

mod drain;
pub(crate) mod held;
mod ring_positions;
mod stack_join;

use drain::{Drainer, Mode};

use crate::{
    diagnosis::TargetExit,
    ending::Ending,
    event::Event,
    exit_code,
    followed::{self, Followed},
    privilege,
    probes::{ProbeError, ProbeOptions, Probes},
    proc_snapshot::{self, Snapshot, SnapshotError},
    stop::{self, Phase},
    target::{self, RunAs, TargetError, TargetStdout},
};

/// Where the events go: in practice the ledger.
pub(crate) trait EventSink {
    /// Tracing of `target` begins at `since_ns` (CLOCK_MONOTONIC, the events' clock), and
    /// `held` is what the target holds then (for a launched target: what survives its exec).
    fn begin(&mut self, target: u32, since_ns: u64, held: &Snapshot);
    fn apply(&mut self, event: &Event);
    /// Called after each periodic drain (every 10 ms, every 1 ms in a burst), for work done now and
    /// then while tracing (the watch mode's views). `lost` reads the kernel's counts of
    /// records it could not deliver: (all of them, iteration markers among them).
    fn polled(&mut self, _lost: &dyn Fn() -> (u64, u64)) {}
    /// `--heap` without an iteration marker: each process's allocator totals, read from the
    /// kernel at `time_ns` (every 10 ms, every 1 ms in a burst), since no marker carries them.
    fn heap_sampled(&mut self, _time_ns: u64, _totals: &[(u32, crate::event::MarkerHeap)]) {}
    /// The path `tgid`'s open `fd` was opened by, if known (absolute when the working
    /// directory was): what an executable mmap of it maps.
    fn path_of_fd(&self, _tgid: u32, _fd: i32) -> Option<std::sync::Arc<str>> {
        None
    }
    /// The working directory of `tgid`, if known (absolute): what a relative exec names.
    fn cwd_of(&self, _tgid: u32) -> Option<std::sync::Arc<str>> {
        None
    }
}

pub(crate) type LineSink = Box<dyn FnMut(String) + Send>;

/// Where a launched target's stdout goes.
pub(crate) enum SpawnStdout {
    /// Our stdout.
    Inherit,
    /// Our stderr: our stdout carries the JSON report and must stay pure.
    Stderr,
    /// Each line it prints goes to the sink (so a progress display can print it cleanly).
    Lines(LineSink),
}

pub(crate) enum Target {
    /// Start this command under tracing.
    Spawn {
        argv: Vec<OsString>,
        run_as: Option<RunAs>,
        stdout: SpawnStdout,
    },
    /// Trace a running process, until it exits, `duration` passes, or a stop signal.
    Attach {
        pid: u32,
        duration: Option<Duration>,
    },
}

/// `--iteration-symbol [BINARY:]SYMBOL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MarkerSpec {
    /// None: the target's own executable.
    pub(crate) binary: Option<PathBuf>,
    pub(crate) symbol: String,
}

pub(crate) struct TraceConfig {
    pub(crate) ring_bytes: u32,
    /// Bytes of user stack copied with each mapping or fd-making call (`--stack-bytes`).
    pub(crate) stack_bytes: u32,
    /// Stacks per second per CPU (`--stack-rate`; 0: every call).
    pub(crate) stack_rate: u32,
    pub(crate) marker: Option<MarkerSpec>,
    /// `--heap`: trace the target's allocator.
    pub(crate) heap: bool,
}

pub(crate) struct Outcome {
    pub(crate) pid: u32,
    pub(crate) command: Vec<String>,
    /// How the target (the launched or attached process) ended.
    pub(crate) end: TargetExit,
    /// Command lines of the traced processes, by pid, as far as they are known.
    pub(crate) commands: BTreeMap<u32, Vec<String>>,
    /// Traced processes still running when tracing stopped.
    pub(crate) running_at_end: BTreeSet<u32>,
    /// Records the kernel could not deliver: the ledger misses them.
    pub(crate) lost_events: u64,
    /// The same, by reason (nonzero reasons only); they sum to `lost_events`.
    pub(crate) lost_by_reason: Vec<(DropReason, u64)>,
    /// Stacks the kernel could not send, by reason: their calls arrived without frames.
    pub(crate) stacks_dropped: Vec<(DropReason, u64)>,
    /// Of those, iteration-marker records: the iteration count itself is short by this.
    pub(crate) lost_markers: u64,
    /// The target's soft RLIMIT_NOFILE: read when tracing ends if the target can still be
    /// read then (a program may set its own limit), else as it started.
    pub(crate) fd_limit: Option<u64>,
    /// Records that arrived but could not be decoded (a build mismatch; should be 0).
    pub(crate) undecodable: u64,
    /// How tracing ended, for the report.
    pub(crate) ending: Ending,
    /// `--heap`: the kernel's heap maps when tracing ended.
    pub(crate) heap: Option<crate::heap::snapshot::HeapSnapshot>,
}

#[derive(Debug, Error)]
pub(crate) enum TraceError {
    #[error("leakscope needs {0} to load its kernel probes: run it as root, e.g. with sudo")]
    Privilege(&'static str),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Symbol(#[from] crate::symbols::SymbolError),
    #[error("cannot find the target's executable `{0}` for the iteration marker")]
    MarkerBinary(String),
    #[error("{0}")]
    Heap(String),
    #[error("waiting for the target failed")]
    Wait(#[source] std::io::Error),
    #[error(
        "interrupted by {} before tracing started: nothing was traced",
        .0.as_str()
    )]
    Interrupted(Signal),
    #[error(
        "cannot read {path} (pid {pid}): permission denied; reading another user's process \
         needs root with CAP_SYS_PTRACE, and /proc mounted without hidepid"
    )]
    ProcDenied { pid: u32, path: String },
}

impl TraceError {
    /// The contract's exit status; a wrapped error decides its own.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            TraceError::Privilege(_) | TraceError::ProcDenied { .. } => {
                exit_code::NO_PRIVILEGE_OR_FEATURE
            }
            TraceError::Interrupted(signal) => exit_code::interrupted(*signal),
            TraceError::Probe(probe) => probe.exit_status(),
            TraceError::Target(target) => target.exit_status(),
            TraceError::Snapshot(snapshot) => snapshot.exit_status(),
            TraceError::Symbol(symbol) => symbol.exit_status(),
            TraceError::Heap(_) => exit_code::USAGE,
            TraceError::MarkerBinary(_) | TraceError::Wait(_) => exit_code::FAILURE,
        }
    }
}

pub(crate) async fn trace(
    target: Target,
    config: &TraceConfig,
    sink: &mut dyn EventSink,
) -> Result<Outcome, TraceError> {
    if let Some(missing) = privilege::missing_privilege() {
        return Err(TraceError::Privilege(missing));
    }
    stop::test_pause("before-probes", "").await;
    stop_if_interrupted()?;
    let (mut probes, ring) = Probes::load(&ProbeOptions {
        ring_bytes: config.ring_bytes,
        stack_bytes: config.stack_bytes,
        stack_rate: config.stack_rate,
        heap: config.heap,
    })?;
    let mut drain = Drainer::new(ring)?;
    // A marker carries the heap totals exactly; without one they are read at each poll.
    drain.sample_heap = config.heap && config.marker.is_none();
    match target {
        Target::Spawn {
            argv,
            run_as,
            stdout,
        } => spawn_and_trace(&mut probes, &mut drain, argv, run_as, stdout, config, sink).await,
        Target::Attach { pid, duration } => {
            attach_and_trace(&mut probes, &mut drain, pid, duration, config, sink).await
        }
    }
}

async fn spawn_and_trace(
    probes: &mut Probes,
    drain: &mut Drainer,
    argv: Vec<OsString>,
    run_as: Option<RunAs>,
    stdout: SpawnStdout,
    config: &TraceConfig,
    sink: &mut dyn EventSink,
) -> Result<Outcome, TraceError> {
    // The marker is attached before the target exists, so its first call is seen.
    if let Some(marker) = &config.marker {
        let binary = match &marker.binary {
            Some(binary) => binary.clone(),
            None => which_program(&argv[0])
                .ok_or_else(|| TraceError::MarkerBinary(argv[0].to_string_lossy().into()))?,
        };
        let symbol = crate::symbols::resolve_function(&binary, &marker.symbol)?;
        probes.attach_marker(&binary, &symbol)?;
    }
    let command: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (target_stdout, mut stdout_lines) = match stdout {
        SpawnStdout::Inherit => (TargetStdout::Inherit, None),
        SpawnStdout::Stderr => (TargetStdout::Stderr, None),
        SpawnStdout::Lines(sink) => (TargetStdout::Piped, Some(sink)),
    };
    let heap_objects = if config.heap {
        let binary = which_program(&argv[0])
            .ok_or_else(|| TraceError::MarkerBinary(argv[0].to_string_lossy().into()))?;
        Some(crate::heap::attach::objects_of_executable(&binary))
    } else {
        None
    };
    let gated = target::spawn_gated(&argv, run_as, target_stdout)?;
    let pid = gated.pid;
    let since_ns = crate::event::monotonic_now_ns();
    drain.since_ns = since_ns;
    probes.track(pid)?;
    // Before the exec: a uprobe scoped to the process follows it into its new image.
    if let Some(objects) = heap_objects {
        attach_heap(probes, pid, &objects)?;
        drain.heap = Some(crate::heap::follow::HeapFollower::new(pid, objects));
        drain.namer.keep_exited_spaces();
    }
    drain.followed = Followed::new(pid, command.clone());
    // The ledger starts at the target's exec: of what the gated child holds now (our own
    // fds and mappings, copied by the fork), only the fds the exec keeps are the target's.
    let held = proc_snapshot::take(pid).map_or_else(|_| Snapshot::default(), survives_exec);
    stop::test_pause("gate", &format!(" (child {pid})")).await;
    // Stopped before the target ran: it never runs (dropping the gate ends the child).
    stop_if_interrupted()?;
    sink.begin(pid, since_ns, &held);
    stop::set_phase(Phase::Tracing);
    crate::self_stats::mark_ready();
    let mut child = gated.release()?;
    // From its exec on, a stop signal is passed on to the target.
    stop::set_launched(pid);
    // The exec has happened: copy its mappings now, in case it is gone before the first drain.
    drain.namer.remember_after_exec(pid);
    let start_fd_limit = proc_snapshot::fd_limit(pid);
    let forwarder = match (child.stdout.take(), stdout_lines.take()) {
        (Some(stdout), Some(mut forward)) => Some(std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                forward(line);
            }
        })),
        _ => None,
    };

    let mut waiter = tokio::task::spawn_blocking(move || {
        // Wait without reaping first: until it is reaped, the exited target's
        // /proc/PID/limits still shows the limit it ran under at its end, which may be one
        // it set itself (setrlimit) after the start.
        let exited = nix::sys::wait::waitid(
            nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
            nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
        );
        let end_fd_limit = exited.ok().and_then(|_| proc_snapshot::fd_limit(pid));
        // Once reaped, the pid may be reused: no stop signal may be sent to it any more.
        stop::target_gone();
        (child.wait(), end_fd_limit)
    });
    let mut stops = stop::subscribe();
    let mut status = None;
    let mut end_fd_limit = None;
    let mut forced_at = None;
    loop {
        tokio::select! {
            done = &mut waiter, if status.is_none() => {
                let (waited, limit) = done.expect("waiting thread panicked");
                // The report's time runs from here: the last drain is part of it.
                crate::self_stats::mark_tracing_ended();
                end_fd_limit = limit;
                status = Some(waited.map_err(TraceError::Wait)?);
            }
            // The watcher passes the signal on to the target (or kills it at the second);
            // here the loop only notices.
            _ = stops.changed() => {}
            _ = tokio::time::sleep(drain.poll_interval()) => {
                drain.poll(probes, sink);
                drain.follow_heap(probes);
            }
        }
        let stopped = stop::count();
        if stopped >= 2 && status.is_none() {
            // Stop at once: the target was sent SIGKILL; give it a moment to be reaped,
            // but never wait for it long.
            let since = *forced_at.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() < FORCED_REAP_WAIT {
                continue;
            }
            drain.drain_fully(probes, sink);
            break;
        }
        if status.is_some() {
            // The exit tracepoint fired before wait() returned, so the ring now holds it.
            drain.drain_fully(probes, sink);
            // Processes the target left running (a daemon) are followed until they exit
            // too, unless tracing was stopped by a signal.
            if stopped > 0 || drain.followed.is_empty() {
                break;
            }
        }
    }
    stop::set_phase(Phase::Other);
    crate::self_stats::mark_tracing_ended();
    if let Some(forwarder) = forwarder
        && drain.followed.is_empty()
    {
        // The last lines, printed before the report. (A process still running may hold
        // the pipe open for ever: then they are not waited for.)
        let _ = forwarder.join();
    }
    let end = match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => TargetExit::Code(code),
            (None, Some(signal)) => TargetExit::Signal(signal),
            (None, None) => TargetExit::ExitedUnknownStatus,
        },
        None => TargetExit::StillRunning,
    };
    let fd_limit = end_fd_limit.or(start_fd_limit);
    Ok(drain.outcome(probes, pid, command, end, Mode::Launched, fd_limit))
}

/// `--heap`: the allocator uprobes on `objects`, for process `pid` only.
fn attach_heap(probes: &mut Probes, pid: u32, objects: &[PathBuf]) -> Result<(), TraceError> {
    let points = crate::heap::attach::entry_points(objects);
    crate::heap::attach::check_usable(&points, objects).map_err(TraceError::Heap)?;
    probes.attach_heap(pid, &points)?;
    Ok(())
}

/// After a second stop signal, how long the killed target gets to be reaped before the
/// report is written without it.
const FORCED_REAP_WAIT: Duration = Duration::from_secs(2);

/// A stop signal before tracing really started ends the session with nothing to report.
fn stop_if_interrupted() -> Result<(), TraceError> {
    match stop::first() {
        Some(first) => Err(TraceError::Interrupted(first.signal)),
        None => Ok(()),
    }
}

async fn attach_and_trace(
    probes: &mut Probes,
    drain: &mut Drainer,
    pid: u32,
    duration: Option<Duration>,
    config: &TraceConfig,
    sink: &mut dyn EventSink,
) -> Result<Outcome, TraceError> {
    // Fails with a clear "no process" before anything is attached.
    let first_look = snapshot_of(pid)?;
    check_proc_access(pid)?;
    if let Some(marker) = &config.marker {
        let binary = marker
            .binary
            .clone()
            .or_else(|| first_look.exe.clone())
            .ok_or_else(|| TraceError::MarkerBinary(format!("/proc/{pid}/exe")))?;
        let symbol = crate::symbols::resolve_function(&binary, &marker.symbol)?;
        probes.attach_marker(&binary, &symbol)?;
    }
    let since_ns = crate::event::monotonic_now_ns();
    drain.since_ns = since_ns;
    probes.track(pid)?;
    if config.heap {
        let objects = crate::heap::attach::objects_of_process(pid);
        attach_heap(probes, pid, &objects)?;
        drain.heap = Some(crate::heap::follow::HeapFollower::new(pid, objects));
        drain.namer.keep_exited_spaces();
    }
    // Read what it holds only after the filter is set, so nothing falls in between.
    let snapshot = snapshot_of(pid)?;
    let command = followed::proc_command(pid).unwrap_or_default();
    drain.followed = Followed::new(pid, command.clone());
    let mut stops = stop::subscribe();
    stop_if_interrupted()?;
    sink.begin(pid, since_ns, &snapshot);
    crate::self_stats::mark_ready();
    drain.namer.remember(pid);
    let start_fd_limit = proc_snapshot::fd_limit(pid);

    // Attach never signals the target: it is not ours. A stop signal only stops tracing.
    stop::set_phase(Phase::Tracing);
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut duration_passed = false;
    loop {
        tokio::select! {
            _ = stops.changed() => break,
            _ = sleep_until(deadline) => { duration_passed = true; break; }
            _ = tokio::time::sleep(drain.poll_interval()) => {
                drain.poll(probes, sink);
                drain.follow_heap(probes);
                if drain.followed.is_empty() {
                    break;
                }
            }
        }
    }
    stop::set_phase(Phase::Other);
    crate::self_stats::mark_tracing_ended();
    drain.drain_fully(probes, sink);
    let end = if drain.followed.target_exited() {
        TargetExit::ExitedUnknownStatus
    } else {
        TargetExit::StillRunning
    };
    // Only a process still running is surely the same one: an exited pid may be reused.
    let end_fd_limit = (end == TargetExit::StillRunning)
        .then(|| proc_snapshot::fd_limit(pid))
        .flatten();
    let fd_limit = end_fd_limit.or(start_fd_limit);
    let mode = if duration_passed {
        Mode::AttachedUntilDuration
    } else {
        Mode::Attached
    };
    Ok(drain.outcome(probes, pid, command, end, mode, fd_limit))
}

/// Reading another user's fds and mappings needs ptrace access (root with CAP_SYS_PTRACE).
/// Without it /proc lists the fds but refuses their links, and a snapshot would silently
/// miss what the process holds: refuse instead (exit 4).
fn check_proc_access(pid: u32) -> Result<(), TraceError> {
    let denied = |path: String| TraceError::ProcDenied { pid, path };
    let is_denied = |error: &std::io::Error| error.kind() == std::io::ErrorKind::PermissionDenied;
    let maps = format!("/proc/{pid}/maps");
    if let Err(error) = std::fs::File::open(&maps)
        && is_denied(&error)
    {
        return Err(denied(maps));
    }
    let fd_dir = format!("/proc/{pid}/fd");
    match std::fs::read_dir(&fd_dir) {
        Err(error) if is_denied(&error) => return Err(denied(fd_dir)),
        Err(_) => {}
        Ok(mut entries) => {
            if let Some(Ok(entry)) = entries.next()
                && let Err(error) = std::fs::read_link(entry.path())
                && is_denied(&error)
            {
                return Err(denied(entry.path().display().to_string()));
            }
        }
    }
    Ok(())
}

/// What `pid` holds, with a refusal to read its /proc files told as such (exit 4).
fn snapshot_of(pid: u32) -> Result<Snapshot, TraceError> {
    proc_snapshot::take(pid).map_err(|error| match error {
        SnapshotError::Proc {
            pid,
            source: procfs::ProcError::PermissionDenied(path),
        } => TraceError::ProcDenied {
            pid,
            path: path.map_or_else(|| format!("/proc/{pid}"), |path| path.display().to_string()),
        },
        other => TraceError::Snapshot(other),
    })
}

/// What of a gated child's holdings is the target's after its exec: the fds without
/// CLOEXEC (stdio, usually). The mappings are all replaced by the exec.
fn survives_exec(snapshot: Snapshot) -> Snapshot {
    Snapshot {
        fds: snapshot.fds.into_iter().filter(|fd| !fd.cloexec).collect(),
        mappings: Vec::new(),
        ..snapshot
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The program `argv0` names, found the way exec will find it.
fn which_program(argv0: &OsString) -> Option<PathBuf> {
    let path = Path::new(argv0);
    if path.components().count() > 1 {
        return path.canonicalize().ok();
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
        .and_then(|found| found.canonicalize().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc_snapshot::{FdSnapshot, MappingSnapshot};

    #[test]
    fn only_fds_without_cloexec_survive_the_exec() {
        let fd = |fd, cloexec| FdSnapshot {
            fd,
            link: procfs::process::FDTarget::Path("/dev/null".into()),
            cloexec,
        };
        let snapshot = Snapshot {
            fds: vec![fd(0, false), fd(1, false), fd(7, true), fd(9, false)],
            mappings: vec![MappingSnapshot {
                start: 0x1000,
                len: 0x1000,
                description: procfs::process::MMapPath::Path("/usr/bin/leakscope".into()),
            }],
            cwd: Some("/tmp".into()),
            exe: None,
        };
        let kept = survives_exec(snapshot);
        let fds: Vec<i32> = kept.fds.iter().map(|fd| fd.fd).collect();
        assert_eq!(fds, vec![0, 1, 9]);
        assert!(kept.mappings.is_empty());
        assert_eq!(kept.cwd.as_deref(), Some(Path::new("/tmp")));
    }

    #[test]
    fn the_monotonic_clock_is_the_events_clock() {
        // bpf_ktime_get_ns counts from boot without suspend: CLOCK_MONOTONIC, far below
        // the wall clock's nanoseconds since 1970.
        let (a, b) = (
            crate::event::monotonic_now_ns(),
            crate::event::monotonic_now_ns(),
        );
        assert!(a > 0 && b >= a && a < 1_000_000_000_000_000_000);
    }
}
