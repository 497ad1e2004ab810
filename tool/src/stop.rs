//! Stop signals (SIGINT, SIGTERM, SIGHUP) and what leakscope does with them.
//!
//! The three signals are blocked in every thread from the start (see [`install`]) and read
//! from a signalfd by one watcher thread, so they are handled the same way at every stage,
//! even while the main thread is busy (loading probes, diagnosing a large ledger), and the
//! sender is known (a terminal's Ctrl-C comes from the kernel, a `kill` from a pid).
//!
//! - The first one asks the session to stop: a launched target is sent the same signal (as
//!   `timeout` does; not when the terminal already sent it to the target's process group)
//!   and reaped, the ring is drained, and the full report is written.
//! - The second one stops at once: a launched target is killed (SIGKILL); while tracing, the
//!   session writes what it has; at any other stage, or at a third signal, leakscope removes
//!   its temporary directories and exits with [`crate::exit_code::interrupted`].
//!
//! Child processes get back the mask leakscope started with ([`original_mask`]): std keeps
//! the parent's mask across fork and exec, and a target with SIGTERM blocked could not be
//! stopped.

use std::{
    path::PathBuf,
    sync::{Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use nix::{
    sys::{
        signal::{SigSet, SigmaskHow, Signal, kill},
        signalfd::{SfdFlags, SignalFd},
    },
    unistd::Pid,
};
use tokio::sync::watch;

use crate::exit_code;

/// The signals that stop a run.
pub(crate) const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Environment variable for the integration tests: pause at a stage until a stop signal
/// arrives (or a minute passes), so a signal can be sent at exactly that stage.
pub(crate) const TEST_PAUSE_ENV: &str = "LEAKSCOPE_TEST_PAUSE";

/// One stop signal leakscope received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) signal: Signal,
    /// The process that sent it with kill(2); `None` when the kernel sent it (a terminal).
    pub(crate) sender_pid: Option<u32>,
    /// Sent by the kernel: a terminal's Ctrl-C or hang-up, which reaches the whole
    /// foreground process group (so a target in our group got it too).
    pub(crate) from_terminal: bool,
}

/// What leakscope is doing, for the watcher to decide what a second signal does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before tracing starts, or after it ended: a second signal exits at once.
    Other,
    /// The tracing loop runs and stops promptly on a second signal, with a report.
    Tracing,
}

#[derive(Debug)]
struct State {
    received: Vec<Received>,
    /// When the last one was received.
    last_at: Option<std::time::Instant>,
    /// The launched target, from its exec until it is reaped (a reaped pid may be reused).
    launched: Option<Pid>,
    /// Signals leakscope sent to the launched target.
    sent: Vec<Signal>,
    phase: Phase,
    /// Temporary directories to remove when exiting at once.
    cleanup: Vec<PathBuf>,
}

struct Shared {
    state: Mutex<State>,
    /// The number of stop signals received so far.
    count: watch::Sender<usize>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// The signal mask leakscope started with, for its children (std keeps the parent's mask
/// across fork and exec, and ours blocks the stop signals).
static ORIGINAL_MASK: OnceLock<libc::sigset_t> = OnceLock::new();

/// The mask a child must get back before it execs; `None` when [`install`] never ran.
pub(crate) fn original_mask() -> Option<&'static libc::sigset_t> {
    ORIGINAL_MASK.get()
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| Shared {
        state: Mutex::new(State {
            received: Vec::new(),
            last_at: None,
            launched: None,
            sent: Vec::new(),
            phase: Phase::Other,
            cleanup: Vec::new(),
        }),
        count: watch::Sender::new(0),
    })
}

fn state() -> MutexGuard<'static, State> {
    // A panic while holding the lock leaves consistent data: keep going.
    shared()
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Blocks the stop signals in this thread (and so in every thread started after it) and
/// starts the watcher. Call it first in `main`, before any other thread exists.
pub(crate) fn install() -> std::io::Result<()> {
    let mut mask = SigSet::empty();
    for signal in STOP_SIGNALS {
        mask.add(signal);
    }
    let mut original = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut original))?;
    let _ = ORIGINAL_MASK.set(*original.as_ref());
    let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)?;
    shared();
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || watch_signals(fd))?;
    Ok(())
}

fn watch_signals(fd: SignalFd) {
    loop {
        let info = match fd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        let from_terminal = info.ssi_code == libc::SI_KERNEL;
        let received = Received {
            signal,
            sender_pid: (!from_terminal && info.ssi_pid != 0).then_some(info.ssi_pid),
            from_terminal,
        };
        if let Some(count) = on_signal(received, std::time::Instant::now()) {
            shared().count.send_replace(count);
        }
    }
}

/// A repeat of the same signal from the same process within this time is one request sent
/// twice: `timeout` signals its child and then its whole process group.
const SAME_REQUEST_WITHIN: Duration = Duration::from_millis(300);

/// Records one signal and acts on it; returns how many have been received, or `None` when
/// it repeats the last one (see [`SAME_REQUEST_WITHIN`]).
fn on_signal(received: Received, now: std::time::Instant) -> Option<usize> {
    let mut state = state();
    if let (Some(last), Some(at)) = (state.received.last(), state.last_at)
        && is_repeat(last, &received, now.duration_since(at))
    {
        return None;
    }
    state.last_at = Some(now);
    state.received.push(received);
    let count = state.received.len();
    if count == 1 {
        if let Some(pid) = state.launched
            && needs_forwarding(&received, pid)
            && kill(pid, received.signal).is_ok()
        {
            state.sent.push(received.signal);
        }
        return Some(count);
    }
    if let Some(pid) = state.launched
        && kill(pid, Signal::SIGKILL).is_ok()
    {
        state.sent.push(Signal::SIGKILL);
    }
    if state.phase != Phase::Tracing || count >= 3 {
        for dir in &state.cleanup {
            let _ = std::fs::remove_dir_all(dir);
        }
        eprintln!(
            "leakscope: interrupted again ({}): stopped at once{}",
            received.signal.as_str(),
            if state.launched.is_some() {
                ", the target was killed"
            } else {
                ""
            }
        );
        std::process::exit(exit_code::interrupted(received.signal).into());
    }
    Some(count)
}

fn is_repeat(last: &Received, new: &Received, since: Duration) -> bool {
    new.sender_pid.is_some()
        && last.sender_pid == new.sender_pid
        && last.signal == new.signal
        && since < SAME_REQUEST_WITHIN
}

/// A terminal's signal reached the target already when it shares our process group (the
/// terminal signals the whole foreground group); sending it again would make a program
/// that counts its Ctrl-Cs act on a second one the user never pressed.
fn needs_forwarding(received: &Received, target: Pid) -> bool {
    !received.from_terminal
        || nix::unistd::getpgid(Some(target)).ok() != Some(nix::unistd::getpgrp())
}

/// The launched target exec'd: from now on stop signals are passed on to it. A stop signal
/// that came before is passed on now (two: it is killed).
pub(crate) fn set_launched(pid: u32) {
    let pid = Pid::from_raw(pid as i32);
    let mut state = state();
    state.launched = Some(pid);
    if state.received.len() >= 2 {
        if kill(pid, Signal::SIGKILL).is_ok() {
            state.sent.push(Signal::SIGKILL);
        }
    } else if let Some(first) = state.received.first().copied()
        && needs_forwarding(&first, pid)
        && kill(pid, first.signal).is_ok()
    {
        state.sent.push(first.signal);
    }
}

/// The launched target is about to be reaped: its pid must not be signalled any more.
pub(crate) fn target_gone() {
    state().launched = None;
}

pub(crate) fn set_phase(phase: Phase) {
    state().phase = phase;
}

/// Removes `dir` if leakscope has to exit at once (a second signal outside tracing).
pub(crate) fn remove_on_exit(dir: PathBuf) {
    state().cleanup.push(dir);
}

/// The directory is gone or kept: no longer removed on exit.
pub(crate) fn forget_cleanup(dir: &std::path::Path) {
    state().cleanup.retain(|d| d != dir);
}

/// The stop signals received so far, first first.
pub(crate) fn received() -> Vec<Received> {
    state().received.clone()
}

/// The signals leakscope sent to the launched target.
pub(crate) fn sent_to_target() -> Vec<Signal> {
    state().sent.clone()
}

/// How many stop signals have been received so far.
pub(crate) fn count() -> usize {
    *shared().count.borrow()
}

/// A receiver that changes with every stop signal.
pub(crate) fn subscribe() -> watch::Receiver<usize> {
    shared().count.subscribe()
}

/// The first stop signal, if one has come.
pub(crate) fn first() -> Option<Received> {
    state().received.first().copied()
}

/// Waits until more than `seen` stop signals have been received.
pub(crate) async fn wait_beyond(seen: usize) {
    let mut rx = subscribe();
    let _ = rx.wait_for(|&count| count > seen).await;
}

/// For the integration tests ([`TEST_PAUSE_ENV`]): at `stage`, say so on stderr and wait for
/// a stop signal (at most a minute).
pub(crate) async fn test_pause(stage: &str, detail: &str) {
    if std::env::var(TEST_PAUSE_ENV).ok().as_deref() != Some(stage) {
        return;
    }
    // Counted before saying so: the test sends its signal as soon as it reads the line.
    let seen = count();
    eprintln!("leakscope: test pause at {stage}{detail}");
    let _ = tokio::time::timeout(Duration::from_secs(60), wait_beyond(seen)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_double_delivery_is_one_request() {
        let from = |pid| Received {
            signal: Signal::SIGTERM,
            sender_pid: pid,
            from_terminal: pid.is_none(),
        };
        let soon = Duration::from_millis(1);
        assert!(is_repeat(&from(Some(7)), &from(Some(7)), soon));
        assert!(!is_repeat(
            &from(Some(7)),
            &from(Some(7)),
            Duration::from_secs(1)
        ));
        assert!(!is_repeat(&from(Some(7)), &from(Some(8)), soon));
        // Two Ctrl-Cs are two presses, however fast.
        assert!(!is_repeat(&from(None), &from(None), soon));
    }

    #[test]
    fn forwarding_skips_only_a_terminal_signal_the_target_shares() {
        let own_group = Pid::this();
        let from_kill = Received {
            signal: Signal::SIGTERM,
            sender_pid: Some(1),
            from_terminal: false,
        };
        let from_tty = Received {
            from_terminal: true,
            sender_pid: None,
            ..from_kill
        };
        assert!(needs_forwarding(&from_kill, own_group));
        // This test process shares its own group: the terminal reached it already.
        assert!(!needs_forwarding(&from_tty, own_group));
    }
}
