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

use aya::maps::{MapData, RingBuf};
use leakscope_common::DropReason;
use thiserror::Error;

use crate::{
    diagnosis::TargetExit,
    event::{self, Event, What},
    followed::{self, Followed},
    privilege,
    probes::{ProbeError, ProbeOptions, Probes},
    proc_snapshot::{self, Snapshot, SnapshotError},
    symbolize::StackNamer,
    target::{self, RunAs, TargetError},
};

/// How often the ring buffer is drained. The kernel side submits without wakeups (they
/// cost more than the events themselves), so userspace polls.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Every this many polls, followed processes that are no longer running but whose exit
/// event never came (it was lost) are let go, so tracing cannot wait for them forever.
const LIVENESS_EVERY: u32 = 50;

/// Where the events go: in practice the ledger.
pub trait EventSink {
    /// Tracing of `target` begins at `since_ns` (CLOCK_MONOTONIC, the events' clock), and
    /// `held` is what the target holds then (for a launched target: what survives its exec).
    fn begin(&mut self, target: u32, since_ns: u64, held: &Snapshot);
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
    /// How the target (the launched or attached process) ended.
    pub end: TargetExit,
    /// Command lines of the traced processes, by pid, as far as they are known.
    pub commands: BTreeMap<u32, Vec<String>>,
    /// Traced processes still running when tracing stopped.
    pub running_at_end: BTreeSet<u32>,
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
        followed: Followed::default(),
        polls: 0,
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
    let command: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let gated = target::spawn_gated(&argv, run_as, stdout_lines.is_some())?;
    let pid = gated.pid;
    let since_ns = monotonic_now_ns();
    probes.track(pid)?;
    drain.followed = Followed::new(pid, command.clone());
    // The ledger starts at the target's exec: of what the gated child holds now (our own
    // fds and mappings, copied by the fork), only the fds the exec keeps are the target's.
    let held = proc_snapshot::take(pid).map_or_else(|_| Snapshot::default(), survives_exec);
    sink.begin(pid, since_ns, &held);
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
    let mut status = None;
    let mut end_fd_limit = None;
    loop {
        tokio::select! {
            done = &mut waiter, if status.is_none() => {
                let (waited, limit) = done.expect("waiting thread panicked");
                end_fd_limit = limit;
                status = Some(waited.map_err(TraceError::Wait)?);
            }
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                // A terminal's Ctrl-C reaches the target too; a `kill -INT` of leakscope
                // alone does not, so pass it on. Either way, report what was collected.
                interrupted = true;
                if status.is_none() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT);
                }
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => drain.poll(probes, sink),
        }
        if status.is_some() {
            // The exit tracepoint fired before wait() returned, so the ring now holds it.
            drain.drain(probes, sink);
            // Processes the target left running (a daemon) are followed until they exit
            // too, unless the user interrupted.
            if interrupted || drain.followed.is_empty() {
                break;
            }
        }
    }
    let status = status.expect("the loop ends only once the target was waited for");
    if let Some(forwarder) = forwarder
        && drain.followed.is_empty()
    {
        // The last lines, printed before the report. (A process still running may hold
        // the pipe open for ever: then they are not waited for.)
        let _ = forwarder.join();
    }
    let end = match (status.code(), status.signal()) {
        (Some(code), _) => TargetExit::Code(code),
        (None, Some(signal)) => TargetExit::Signal(signal),
        (None, None) => TargetExit::ExitedUnknownStatus,
    };
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
    let since_ns = monotonic_now_ns();
    probes.track(pid)?;
    // Read what it holds only after the filter is set, so nothing falls in between.
    let snapshot = proc_snapshot::take(pid)?;
    let command = followed::proc_command(pid).unwrap_or_default();
    drain.followed = Followed::new(pid, command.clone());
    sink.begin(pid, since_ns, &snapshot);
    drain.namer.remember(pid);
    let start_fd_limit = proc_snapshot::fd_limit(pid);

    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
            _ = sleep_until(deadline) => break,
            _ = tokio::time::sleep(POLL_INTERVAL) => {
                drain.poll(probes, sink);
                if drain.followed.is_empty() {
                    break;
                }
            }
        }
    }
    drain.drain(probes, sink);
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
    Ok(drain.outcome(probes, pid, command, end, interrupted, fd_limit))
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

/// CLOCK_MONOTONIC now, the clock of `bpf_ktime_get_ns` and so of every event.
fn monotonic_now_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Drainer {
    ring: RingBuf<MapData>,
    followed: Followed,
    polls: u32,
    namer: StackNamer,
    page_size: u64,
    undecodable: u64,
    events: u64,
}

impl Drainer {
    /// One periodic drain; now and then, also lets go of followed processes that are gone
    /// but whose exit event was lost.
    fn poll(&mut self, probes: &Probes, sink: &mut dyn EventSink) {
        self.polls += 1;
        if self.polls.is_multiple_of(LIVENESS_EVERY) {
            // Looked up before the drain: an exit event sent before a process was gone
            // is in the ring by now, so whichever is still listed after it was lost.
            let gone = self.followed.not_running();
            self.drain(probes, sink);
            self.followed.forget(&gone);
        } else {
            self.drain(probes, sink);
        }
    }

    /// Moves everything in the ring into the sink.
    fn drain(&mut self, probes: &Probes, sink: &mut dyn EventSink) {
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
            self.followed.observe(&event);
            match event.what {
                What::Fork { child } => self.namer.inherit(event.tgid, child),
                What::Exec => self.namer.exec(event.tgid, event.time_ns),
                _ => {}
            }
            sink.apply(&event);
        }
    }

    fn outcome(
        &mut self,
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
            running_at_end: self.followed.live().clone(),
            commands: std::mem::take(&mut self.followed).into_commands(),
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
        let (a, b) = (monotonic_now_ns(), monotonic_now_ns());
        assert!(a > 0 && b >= a && a < 1_000_000_000_000_000_000);
    }
}
