//! One tracing session: load the probes, start or attach to the target, drain the ring
//! buffer into an [`EventSink`] until the target is done, and say how it ended.

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use leakscope_common::DropReason;
use thiserror::Error;

use crate::{
    diagnosis::TargetExit,
    event::{self, Event, What},
    privilege,
    probes::{ProbeError, ProbeOptions, Probes},
    proc_snapshot::{self, Snapshot, SnapshotError},
    symbolize::StackNamer,
    target::{self, RunAs, TargetError},
};

/// How often the ring buffer is drained. The kernel side submits without wakeups (they
/// cost more than the events themselves), so userspace polls.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Where the events go: in practice the ledger.
pub trait EventSink {
    /// Resources process `tgid` held before tracing started.
    fn seed(&mut self, tgid: u32, snapshot: &Snapshot);
    fn apply(&mut self, event: &Event);
}

pub type LineSink = Box<dyn FnMut(String) + Send>;

pub enum Target {
    /// Start this command under tracing. With `stdout_lines`, each line the command prints
    /// goes there instead of to our stdout (so a progress display can print it cleanly).
    Spawn {
        argv: Vec<OsString>,
        run_as: Option<RunAs>,
        stdout_lines: Option<LineSink>,
    },
    /// Trace a running process, until it exits, `duration` passes, or Ctrl-C.
    Attach {
        pid: u32,
        duration: Option<Duration>,
    },
}

/// `--iteration-symbol [BINARY:]SYMBOL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerSpec {
    /// None: the target's own executable.
    pub binary: Option<PathBuf>,
    pub symbol: String,
}

pub struct TraceConfig {
    pub ring_bytes: u32,
    pub marker: Option<MarkerSpec>,
}

pub struct Outcome {
    pub pid: u32,
    pub command: Vec<String>,
    pub end: TargetExit,
    /// Records the kernel could not deliver: the ledger misses them.
    pub lost_events: u64,
    /// The same, by reason (nonzero reasons only); they sum to `lost_events`.
    pub lost_by_reason: Vec<(DropReason, u64)>,
    /// Of those, iteration-marker records: the iteration count itself is short by this.
    pub lost_markers: u64,
    /// The target's soft RLIMIT_NOFILE: read when tracing ends if the target can still be
    /// read then (a program may set its own limit), else as it started.
    pub fd_limit: Option<u64>,
    /// Records that arrived but could not be decoded (a build mismatch; should be 0).
    pub undecodable: u64,
    pub events: u64,
    /// Tracing was cut short by Ctrl-C.
    pub interrupted: bool,
}

#[derive(Debug, Error)]
pub enum TraceError {
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
    #[error("waiting for the target failed: {0}")]
    Wait(std::io::Error),
}

pub async fn trace(
    target: Target,
    config: &TraceConfig,
    sink: &mut dyn EventSink,
) -> Result<Outcome, TraceError> {
    if let Some(missing) = privilege::missing_privilege() {
        return Err(TraceError::Privilege(missing));
    }
    let (mut probes, ring) = Probes::load(&ProbeOptions {
        ring_bytes: config.ring_bytes,
    })?;
    let mut drain = Drainer {
        ring,
        namer: StackNamer::default(),
        page_size: page_size(),
        undecodable: 0,
        events: 0,
    };
    match target {
        Target::Spawn {
            argv,
            run_as,
            stdout_lines,
        } => {
            spawn_and_trace(
                &mut probes,
                &mut drain,
                argv,
                run_as,
                stdout_lines,
                config,
                sink,
            )
            .await
        }
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
    stdout_lines: Option<LineSink>,
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
        crate::symbols::check_function(&binary, &marker.symbol)?;
        probes.attach_marker(&binary, &marker.symbol)?;
    }
    let gated = target::spawn_gated(&argv, run_as, stdout_lines.is_some())?;
    let pid = gated.pid;
    probes.track(pid)?;
    // What the forked child holds before exec (stdio, mostly) is the target's too.
    if let Ok(snapshot) = proc_snapshot::take(pid) {
        sink.seed(pid, &snapshot);
    }
    let mut child = gated.release()?;
    // The exec has happened: copy its mappings now, in case it is gone before the first drain.
    drain.namer.remember_after_exec(pid);
    let start_fd_limit = proc_snapshot::fd_limit(pid);
    let forwarder = match (child.stdout.take(), stdout_lines) {
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
        (child.wait(), end_fd_limit)
    });
    let mut interrupted = false;
    let (status, end_fd_limit) = loop {
        tokio::select! {
            waited = &mut waiter => {
                let (status, limit) = waited.expect("waiting thread panicked");
                break (status.map_err(TraceError::Wait)?, limit);
            }
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                // A terminal's Ctrl-C reaches the target too; a `kill -INT` of leakscope
                // alone does not, so pass it on. Either way, report what was collected.
                interrupted = true;
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT);
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => { drain.drain(probes, sink); }
        }
    };
    // The exit tracepoint fired before wait() returned, so the ring now holds everything.
    drain.drain(probes, sink);
    if let Some(forwarder) = forwarder {
        let _ = forwarder.join(); // the last lines, printed before the report
    }
    let end = match (status.code(), status.signal()) {
        (Some(code), _) => TargetExit::Code(code),
        (None, Some(signal)) => TargetExit::Signal(signal),
        (None, None) => TargetExit::ExitedUnknownStatus,
    };
    let command = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let fd_limit = end_fd_limit.or(start_fd_limit);
    Ok(drain.outcome(probes, pid, command, end, interrupted, fd_limit))
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
    let first_look = proc_snapshot::take(pid)?;
    if let Some(marker) = &config.marker {
        let binary = marker
            .binary
            .clone()
            .or_else(|| first_look.exe.clone())
            .ok_or_else(|| TraceError::MarkerBinary(format!("/proc/{pid}/exe")))?;
        crate::symbols::check_function(&binary, &marker.symbol)?;
        probes.attach_marker(&binary, &marker.symbol)?;
    }
    probes.track(pid)?;
    // Read what it holds only after the filter is set, so nothing falls in between.
    let snapshot = proc_snapshot::take(pid)?;
    sink.seed(pid, &snapshot);
    drain.namer.remember(pid);
    let command = proc_command(pid);
    let start_fd_limit = proc_snapshot::fd_limit(pid);

    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut interrupted = false;
    let end = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { interrupted = true; break TargetExit::StillRunning; }
            _ = sleep_until(deadline) => break TargetExit::StillRunning,
            _ = tokio::time::sleep(POLL_INTERVAL) => {
                if drain.drain(probes, sink).contains(&pid) {
                    break TargetExit::ExitedUnknownStatus;
                }
            }
        }
    };
    drain.drain(probes, sink);
    // Only a process still running is surely the same one: an exited pid may be reused.
    let end_fd_limit = (end == TargetExit::StillRunning)
        .then(|| proc_snapshot::fd_limit(pid))
        .flatten();
    let fd_limit = end_fd_limit.or(start_fd_limit);
    Ok(drain.outcome(probes, pid, command, end, interrupted, fd_limit))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Drainer {
    ring: RingBuf<MapData>,
    namer: StackNamer,
    page_size: u64,
    undecodable: u64,
    events: u64,
}

impl Drainer {
    /// Moves everything in the ring into the sink. Returns the processes that exited.
    fn drain(&mut self, probes: &Probes, sink: &mut dyn EventSink) -> Vec<u32> {
        let mut exited = Vec::new();
        while let Some(item) = self.ring.next() {
            let decoded = event::decode(&item, self.page_size);
            drop(item); // hand the slot back to the kernel before the slower work below
            let Ok(mut event) = decoded else {
                self.undecodable += 1;
                continue;
            };
            self.events += 1;
            if let What::Syscall(call) = &mut event.what
                && (call.stack_id.is_some() || !call.stack_words.is_empty())
            {
                call.frames =
                    self.namer
                        .frames(event.tgid, call.stack_id, &call.stack_words, |id| {
                            probes.user_stack(id)
                        });
            }
            match event.what {
                What::Exit => exited.push(event.tgid),
                What::Fork { child } => self.namer.inherit(event.tgid, child),
                What::Exec => self.namer.exec(event.tgid, event.time_ns),
                _ => {}
            }
            sink.apply(&event);
        }
        exited
    }

    fn outcome(
        &self,
        probes: &Probes,
        pid: u32,
        command: Vec<String>,
        end: TargetExit,
        interrupted: bool,
        fd_limit: Option<u64>,
    ) -> Outcome {
        let lost_by_reason = probes.lost_by_reason();
        let lost = |reason| {
            lost_by_reason
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n)
        };
        Outcome {
            pid,
            command,
            end,
            lost_events: lost_by_reason.iter().map(|(_, n)| n).sum(),
            lost_markers: lost(DropReason::RingFullMarker),
            lost_by_reason,
            fd_limit,
            undecodable: self.undecodable,
            events: self.events,
            interrupted,
        }
    }
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64
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

fn proc_command(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
