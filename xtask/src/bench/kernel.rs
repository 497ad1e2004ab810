//! The kernel side's own cost: with `LEAKSCOPE_PROGRAM_STATS` set, leakscope has the kernel
//! count each program's runs and run time (BPF_ENABLE_STATS) and prints them when it
//! detaches. That time is the programs' alone, so the shared machine's noise touches it far
//! less than the loops' wall time. Counting costs two clock reads per run, so these are
//! separate runs, never the timed pairs.

use std::process::Command;

use anyhow::{Result, bail};

/// leakscope's `probes::PROGRAM_STATS_ENV`.
const PROGRAM_STATS_ENV: &str = "LEAKSCOPE_PROGRAM_STATS";
/// The line prefix leakscope prints per program.
const LINE_PREFIX: &str = "leakscope-program-stats:";

/// One program's counters over a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProgramStats {
    pub(crate) name: String,
    pub(crate) runs: u64,
    pub(crate) run_time_ns: u64,
}

/// Runs leakscope's traced `command` with the counters on; returns every program's.
pub(crate) fn program_stats(command: &mut Command) -> Result<Vec<ProgramStats>> {
    let stderr = super::measure::stderr_of(command.env(PROGRAM_STATS_ENV, "1"))?;
    let stats = parse(&stderr);
    if stats.is_empty() {
        bail!("leakscope printed no program counters (is BPF_ENABLE_STATS refused?)");
    }
    Ok(stats)
}

/// `leakscope-program-stats: NAME run_cnt=N run_time_ns=T` lines.
fn parse(stderr: &str) -> Vec<ProgramStats> {
    stderr
        .lines()
        .filter_map(|line| {
            let mut words = line.trim().strip_prefix(LINE_PREFIX)?.split_whitespace();
            let name = words.next()?.to_owned();
            let mut field = |key: &str| -> Option<u64> {
                words
                    .next()?
                    .strip_prefix(key)?
                    .strip_prefix('=')?
                    .parse()
                    .ok()
            };
            let runs = field("run_cnt")?;
            let run_time_ns = field("run_time_ns")?;
            Some(ProgramStats {
                name,
                runs,
                run_time_ns,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_lines_are_read_and_other_lines_ignored() {
        let stderr = "loop_ns=5\nleakscope-program-stats: sys_exit run_cnt=20 run_time_ns=700\n\
                      leakscope-program-stats: broken run_cnt=x run_time_ns=1\n\
                      leakscope-program-stats: iteration_marker run_cnt=0 run_time_ns=0\n";
        assert_eq!(
            parse(stderr),
            vec![
                ProgramStats {
                    name: "sys_exit".into(),
                    runs: 20,
                    run_time_ns: 700
                },
                ProgramStats {
                    name: "iteration_marker".into(),
                    runs: 0,
                    run_time_ns: 0
                },
            ]
        );
    }
}
