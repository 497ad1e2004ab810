//! SysV shared memory segments attached with shmat: mappings the ledger does not size (the
//! size is the segment's, set by its shmget, possibly in another process or before
//! tracing). Which stay attached, and since when, is enough to know that the address space
//! holds more than the mapping class counts.

use std::collections::HashMap;

use crate::event::Syscall;
use leakscope_common::syscalls as nr;

/// Attached segments by (process, address), with the time each was attached, and the
/// (attached, detached) times of those detached since.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShmAttachments {
    attached: HashMap<(u32, u64), u64>,
    detached: Vec<(u64, u64)>,
}

impl ShmAttachments {
    /// Follows a successful shmat or shmdt of `tgid` at `t`.
    pub(crate) fn note(&mut self, tgid: u32, t: u64, call: &Syscall) {
        match call.nr {
            nr::SHMAT if !(-4095..0).contains(&call.ret) => {
                self.attached.insert((tgid, call.ret as u64), t);
            }
            nr::SHMDT if call.ret == 0 => {
                if let Some(at) = self.attached.remove(&(tgid, call.args[0])) {
                    self.detached.push((at, t));
                }
            }
            _ => {}
        }
    }

    /// A process's exit (or exec) at `t` detaches everything it had attached.
    pub(crate) fn detach_all(&mut self, tgid: u32, t: u64) {
        let detached = &mut self.detached;
        self.attached.retain(|&(owner, _), &mut at| {
            let keep = owner != tgid;
            if !keep {
                detached.push((at, t));
            }
            keep
        });
    }

    /// Segments attached within `from..=to` and still attached at `to`: kept across
    /// iterations, whether or not the end of the program detached them.
    pub(crate) fn kept(&self, from: u64, to: u64) -> u64 {
        let within = |at: u64| (from..=to).contains(&at);
        let live = self.attached.values().filter(|&&at| within(at)).count();
        let later = self
            .detached
            .iter()
            .filter(|&&(at, gone)| within(at) && gone > to)
            .count();
        (live + later) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::call;

    #[test]
    fn follows_attaches_detaches_and_exits() {
        let mut shm = ShmAttachments::default();
        shm.note(7, 10, &call(nr::SHMAT, 0x7000, [1, 0, 0, 0, 0, 0]));
        shm.note(7, 20, &call(nr::SHMAT, 0x9000, [2, 0, 0, 0, 0, 0]));
        shm.note(7, 30, &call(nr::SHMAT, -22, [3, 0, 0, 0, 0, 0]));
        shm.note(8, 40, &call(nr::SHMAT, 0x7000, [1, 0, 0, 0, 0, 0]));
        assert_eq!(shm.kept(0, 100), 3);
        assert_eq!(shm.kept(15, 100), 2);
        shm.note(7, 50, &call(nr::SHMDT, 0, [0x9000, 0, 0, 0, 0, 0]));
        shm.note(7, 50, &call(nr::SHMDT, -22, [0x7000, 0, 0, 0, 0, 0]));
        // Detached at 50: kept over iterations ending at 45, not over those ending at 100.
        assert_eq!(shm.kept(15, 100), 1);
        assert_eq!(shm.kept(15, 45), 2);
        // An exit after the last iteration is teardown: what it detaches was kept.
        shm.detach_all(8, 200);
        assert_eq!(shm.kept(0, 100), 2);
        // Process 7 still holds 0x7000 (its shmdt failed); 8 detached by 200.
        assert_eq!(shm.kept(0, 300), 1);
    }
}
