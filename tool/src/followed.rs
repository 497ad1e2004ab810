//! The traced processes that are alive, like `strace -f` follows them: the target, and
//! every process forked from a traced one (the kernel adds those to its filter itself).
//! Tracing lasts while any of them lives, so a daemon that double-forks and lets its first
//! process exit is still traced. Also keeps each process's command line, for the report.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::event::{Event, What};

#[derive(Debug, Default)]
pub(crate) struct Followed {
    target: u32,
    live: BTreeSet<u32>,
    /// Every process ever followed, so that one whose fork event was lost is still picked
    /// up by its first event.
    seen: HashSet<u32>,
    /// The process of the previous event: most events come in runs from one process, and
    /// it is in `seen` already (the reader pays this lookup on every event).
    last_seen: Option<u32>,
    target_exited: bool,
    commands: BTreeMap<u32, Vec<String>>,
}

impl Followed {
    pub(crate) fn new(target: u32, command: Vec<String>) -> Self {
        Followed {
            target,
            live: BTreeSet::from([target]),
            seen: HashSet::from([target]),
            last_seen: None,
            target_exited: false,
            commands: BTreeMap::from([(target, command)]),
        }
    }

    /// Follows one event of the stream: forks add a process, exits remove one, an exec
    /// changes its command line (read from /proc, while the process is there to read).
    pub(crate) fn observe(&mut self, event: &Event) {
        if self.last_seen != Some(event.tgid) {
            if self.seen.insert(event.tgid) && event.what != What::Exit {
                self.live.insert(event.tgid);
            }
            self.last_seen = Some(event.tgid);
        }
        match event.what {
            // A fork is a new process even if its pid was used before.
            What::Fork { child } => {
                self.seen.insert(child);
                self.live.insert(child);
                if let Some(command) = self.commands.get(&event.tgid).cloned() {
                    self.commands.insert(child, command);
                }
            }
            // The kernel sends an exit only when a process's leader thread exits.
            What::Exit => self.gone(event.tgid),
            What::Exec(_) => {
                if let Some(command) = proc_command(event.tgid).filter(|c| !c.is_empty()) {
                    self.commands.insert(event.tgid, command);
                }
            }
            _ => {}
        }
    }

    fn gone(&mut self, tgid: u32) {
        self.live.remove(&tgid);
        if tgid == self.target {
            self.target_exited = true;
        }
    }

    /// No traced process is alive: tracing is complete.
    pub(crate) fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub(crate) fn target_exited(&self) -> bool {
        self.target_exited
    }

    /// The followed processes that are no longer running (gone from /proc, or zombies).
    /// Their exit events were sent before they became so: drain the ring, then
    /// [`Followed::forget`] whichever of these is still listed (its exit event was lost,
    /// and waiting for it would last forever).
    pub(crate) fn not_running(&self) -> Vec<u32> {
        self.live
            .iter()
            .copied()
            .filter(|&tgid| !is_running(tgid))
            .collect()
    }

    pub(crate) fn forget(&mut self, tgids: &[u32]) {
        for &tgid in tgids {
            self.gone(tgid);
        }
    }

    /// The processes alive now.
    pub(crate) fn live(&self) -> &BTreeSet<u32> {
        &self.live
    }

    /// Command lines by pid, as far as they are known.
    pub(crate) fn into_commands(self) -> BTreeMap<u32, Vec<String>> {
        self.commands
    }
}

/// Whether any thread of process `tgid` runs. Not only its leader: a leader that called
/// `pthread_exit` stays a zombie (and `/proc/PID/stat` says so) while its other threads go
/// on with the process.
fn is_running(tgid: u32) -> bool {
    use procfs::process::{ProcState, Process};
    let Ok(tasks) = Process::new(tgid as i32).and_then(|process| process.tasks()) else {
        return false;
    };
    tasks.flatten().any(|task| {
        task.stat()
            .ok()
            .and_then(|stat| stat.state().ok())
            .is_some_and(|state| !matches!(state, ProcState::Zombie | ProcState::Dead))
    })
}

/// `/proc/PID/cmdline` as arguments; `None` when the process is gone (or its arguments
/// are not UTF-8).
pub(crate) fn proc_command(pid: u32) -> Option<Vec<String>> {
    procfs::process::Process::new(pid as i32)
        .and_then(|process| process.cmdline())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tgid: u32, what: What) -> Event {
        Event {
            time_ns: 0,
            tgid,
            tid: tgid,
            rss_bytes: None,
            what,
        }
    }

    #[test]
    fn a_double_fork_is_followed_until_the_last_process_exits() {
        let mut followed = Followed::new(10, vec!["daemon".into()]);
        followed.observe(&event(10, What::Fork { child: 11 }));
        followed.observe(&event(10, What::Exit));
        assert!(followed.target_exited() && !followed.is_empty());
        followed.observe(&event(11, What::Fork { child: 12 }));
        followed.observe(&event(11, What::Exit));
        assert_eq!(followed.live(), &BTreeSet::from([12]));
        followed.observe(&event(12, What::Exit));
        assert!(followed.is_empty());
        assert_eq!(followed.into_commands()[&12], vec!["daemon".to_string()]);
    }

    #[test]
    fn a_process_whose_fork_event_was_lost_is_followed_from_its_first_event() {
        let mut followed = Followed::new(10, Vec::new());
        followed.observe(&event(10, What::Exit));
        followed.observe(&event(11, What::Marker { arg: 0, heap: None }));
        assert_eq!(followed.live(), &BTreeSet::from([11]));
        followed.observe(&event(11, What::Exit));
        assert!(followed.is_empty());
    }

    #[test]
    fn a_process_gone_without_an_exit_event_can_be_forgotten() {
        let me = std::process::id();
        let mut followed = Followed::new(me, Vec::new());
        followed.observe(&event(
            me,
            What::Fork {
                child: u32::MAX / 2,
            },
        ));
        assert_eq!(
            followed.not_running(),
            vec![u32::MAX / 2],
            "only the one not in /proc"
        );
        followed.forget(&followed.not_running());
        assert_eq!(followed.live(), &BTreeSet::from([me]));
    }
}
