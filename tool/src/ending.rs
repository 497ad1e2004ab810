//! How a tracing session ended, for the report: the target exited, was killed (by
//! leakscope or by someone else), `--duration` passed, or leakscope detached; whether
//! leakscope was interrupted by a stop signal; and how many traced processes still ran.

use nix::sys::signal::Signal;
use serde::Serialize;

use crate::{diagnosis::TargetExit, stop::Received};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum How {
    /// The target exited by itself (for attach: it is gone, its status unknown).
    TargetExited,
    /// The target died of a signal.
    TargetKilled,
    /// `attach --duration` passed with the target still running.
    Duration,
    /// `attach` was stopped by a signal; the target was left running, untouched.
    Detached,
    /// A launched target could not be reaped after leakscope was interrupted.
    Interrupted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum KilledBy {
    /// Leakscope sent the signal: a stop signal passed on, or SIGKILL at a second one.
    Leakscope,
    /// Anyone else: another process, the terminal, or the program's own fault (SIGSEGV).
    Other,
}

/// The stop signals leakscope received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Interruption {
    /// The first one, which stopped tracing.
    pub(crate) signal: &'static str,
    /// Who sent it with kill(2); null when a terminal sent it.
    pub(crate) sender_pid: Option<u32>,
    pub(crate) from_terminal: bool,
    /// How many came: from 2 on, tracing stopped at once and the target was killed.
    pub(crate) count: usize,
    /// What leakscope sent the launched target, in order.
    pub(crate) sent_to_target: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Ending {
    pub(crate) how: How,
    /// With `target-killed`: the signal that killed the target.
    pub(crate) signal: Option<String>,
    /// With `target-killed`: who sent it.
    pub(crate) by: Option<KilledBy>,
    /// Null when no stop signal reached leakscope.
    pub(crate) interrupted: Option<Interruption>,
    /// Traced processes (the target or what it started) still running when tracing stopped.
    pub(crate) processes_running: usize,
}

/// What the session knows when tracing stops.
pub(crate) struct Facts<'a> {
    pub(crate) exit: TargetExit,
    /// Attached to a running process (never signalled) rather than launched.
    pub(crate) attached: bool,
    pub(crate) duration_passed: bool,
    pub(crate) received: &'a [Received],
    pub(crate) sent_to_target: &'a [Signal],
    pub(crate) processes_running: usize,
}

impl Ending {
    pub(crate) fn new(facts: &Facts) -> Ending {
        let (how, signal, by) = match facts.exit {
            TargetExit::Code(_) | TargetExit::ExitedUnknownStatus => {
                (How::TargetExited, None, None)
            }
            TargetExit::Signal(number) => {
                let sent = facts.sent_to_target.iter().any(|s| *s as i32 == number);
                let by = if sent {
                    KilledBy::Leakscope
                } else {
                    KilledBy::Other
                };
                (How::TargetKilled, Some(signal_name(number)), Some(by))
            }
            TargetExit::StillRunning if facts.duration_passed => (How::Duration, None, None),
            TargetExit::StillRunning if facts.attached => (How::Detached, None, None),
            TargetExit::StillRunning => (How::Interrupted, None, None),
        };
        let interrupted = facts.received.first().map(|first| Interruption {
            signal: first.signal.as_str(),
            sender_pid: first.sender_pid,
            from_terminal: first.from_terminal,
            count: facts.received.len(),
            sent_to_target: facts.sent_to_target.iter().map(|s| s.as_str()).collect(),
        });
        Ending {
            how,
            signal,
            by,
            interrupted,
            processes_running: facts.processes_running,
        }
    }

    /// Stopped at once by a second stop signal: the report may be cut short.
    pub(crate) fn forced(&self) -> bool {
        self.interrupted.as_ref().is_some_and(|i| i.count >= 2)
    }

    /// One line for the text report.
    pub(crate) fn describe(&self) -> String {
        let mut text = match (self.how, &self.signal, self.by) {
            (How::TargetExited, ..) => "the target exited".to_string(),
            (How::TargetKilled, Some(signal), Some(KilledBy::Leakscope)) => {
                format!("the target was killed by {signal}, sent by leakscope")
            }
            (How::TargetKilled, Some(signal), _) => {
                format!("the target was killed by {signal}, not sent by leakscope")
            }
            (How::TargetKilled, ..) => "the target was killed".to_string(),
            (How::Duration, ..) => "--duration passed; the target was left running".to_string(),
            (How::Detached, ..) => "leakscope detached; the target was left running".to_string(),
            (How::Interrupted, ..) => {
                "tracing was interrupted; the target had not been reaped".to_string()
            }
        };
        if let Some(interruption) = &self.interrupted {
            let from = match (interruption.from_terminal, interruption.sender_pid) {
                (true, _) => " from the terminal".to_string(),
                (false, Some(pid)) => format!(" from pid {pid}"),
                (false, None) => String::new(),
            };
            text.push_str(&format!(" (leakscope got {}{from}", interruption.signal));
            if interruption.count >= 2 {
                text.push_str(&format!(", then {} more", interruption.count - 1));
            }
            text.push(')');
        }
        if self.processes_running > 0 {
            text.push_str(&format!(
                "; {} traced process{} still running, no longer traced",
                self.processes_running,
                if self.processes_running == 1 {
                    ""
                } else {
                    "es"
                }
            ));
        }
        text
    }
}

fn signal_name(number: i32) -> String {
    Signal::try_from(number).map_or_else(|_| format!("signal {number}"), |s| s.as_str().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(exit: TargetExit, received: &'a [Received], sent: &'a [Signal]) -> Facts<'a> {
        Facts {
            exit,
            attached: false,
            duration_passed: false,
            received,
            sent_to_target: sent,
            processes_running: 0,
        }
    }

    const TERM: Received = Received {
        signal: Signal::SIGTERM,
        sender_pid: Some(42),
        from_terminal: false,
    };

    #[test]
    fn a_forwarded_signal_that_kills_the_target_is_leakscopes() {
        let ending = Ending::new(&facts(TargetExit::Signal(15), &[TERM], &[Signal::SIGTERM]));
        assert_eq!(ending.how, How::TargetKilled);
        assert_eq!(ending.by, Some(KilledBy::Leakscope));
        assert_eq!(ending.signal.as_deref(), Some("SIGTERM"));
        assert!(!ending.forced());
        let json = serde_json::to_value(&ending).unwrap();
        assert_eq!(json["how"], "target-killed");
        assert_eq!(json["by"], "leakscope");
        assert_eq!(json["interrupted"]["sender_pid"], 42);
        assert_eq!(json["interrupted"]["sent_to_target"][0], "SIGTERM");
    }

    #[test]
    fn a_crash_is_someone_elses_kill() {
        let ending = Ending::new(&facts(TargetExit::Signal(11), &[], &[]));
        assert_eq!(ending.by, Some(KilledBy::Other));
        assert_eq!(ending.interrupted, None);
        assert!(ending.describe().contains("not sent by leakscope"));
    }

    #[test]
    fn a_second_signal_forces_the_stop() {
        let ending = Ending::new(&facts(
            TargetExit::Signal(9),
            &[TERM, TERM],
            &[Signal::SIGTERM, Signal::SIGKILL],
        ));
        assert!(ending.forced());
        assert_eq!(ending.by, Some(KilledBy::Leakscope));
        assert!(
            ending.describe().contains("then 1 more"),
            "{}",
            ending.describe()
        );
    }

    #[test]
    fn attach_endings() {
        let mut attach = facts(TargetExit::StillRunning, &[], &[]);
        attach.attached = true;
        attach.duration_passed = true;
        assert_eq!(Ending::new(&attach).how, How::Duration);
        attach.duration_passed = false;
        let received = [TERM];
        attach.received = &received;
        attach.processes_running = 1;
        let ending = Ending::new(&attach);
        assert_eq!(ending.how, How::Detached);
        assert_eq!(ending.processes_running, 1);
        let exited = facts(TargetExit::ExitedUnknownStatus, &[], &[]);
        assert_eq!(Ending::new(&exited).how, How::TargetExited);
    }
}
