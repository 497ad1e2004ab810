//! Which process, and which program image of it, marked the iterations, and when: the runs
//! of the marked loop. They tell a loop that runs once from one that starts again (a shell
//! that runs the program again and again, a program that execs itself), whose exits and
//! execs release what each run held.

use std::collections::HashMap;

/// The markers (or marking opens) that one program image of one process fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoopRun {
    pub(crate) tgid: u32,
    /// The process's execs before this run: 0 for the program it was forked with.
    pub(crate) image: u32,
    pub(crate) first_ns: u64,
    pub(crate) last_ns: u64,
    pub(crate) count: u64,
}

/// The runs seen so far, by process and image.
#[derive(Clone, Debug, Default)]
pub(crate) struct LoopRuns(HashMap<(u32, u32), LoopRun>);

impl LoopRuns {
    /// Image `image` of `tgid` marked an iteration at `t`.
    pub(crate) fn note(&mut self, tgid: u32, image: u32, t: u64) {
        self.0
            .entry((tgid, image))
            .and_modify(|run| {
                run.first_ns = run.first_ns.min(t);
                run.last_ns = run.last_ns.max(t);
                run.count += 1;
            })
            .or_insert(LoopRun {
                tgid,
                image,
                first_ns: t,
                last_ns: t,
                count: 1,
            });
    }

    /// The runs, by process and image (a map's own order would differ from run to run).
    pub(crate) fn runs(&self) -> Vec<LoopRun> {
        let mut runs: Vec<LoopRun> = self.0.values().copied().collect();
        runs.sort_unstable_by_key(|run| (run.tgid, run.image));
        runs
    }

    /// The runs of `(tgid, image, time)` steps.
    pub(crate) fn of_steps(steps: impl Iterator<Item = (u32, u32, u64)>) -> Vec<LoopRun> {
        let mut runs = LoopRuns::default();
        for (tgid, image, t) in steps {
            runs.note(tgid, image, t);
        }
        runs.runs()
    }
}
