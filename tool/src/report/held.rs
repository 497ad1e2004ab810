//! What processes held at their end, as report sections:
//! - `held_at_exit`: for a one-shot run (too few iterations for a rate), the fds and
//!   mappings the target held when it exited, with their sites, as valgrind's
//!   `--track-fds` lists them. Per-iteration numbers mean nothing there, so the classes
//!   get none.
//! - `outlived_target`: the traced processes that were still alive when the target exited
//!   (a daemon after a double fork), each with what it held at its own end.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use serde::Serialize;

use super::model::{Classes, Report, ResourceReport};
use super::sites::site_text;
use crate::analysis::trend::Verdict;
use crate::iterations::IterationSource;
use crate::ledger::holdings::Holdings;
use crate::ledger::sites::Sites;
use crate::units;

/// Held fds and mappings listed in the text report (the JSON has them all).
const LISTED: usize = 12;
/// Processes listed in the text report's "outlived" section.
const PROCESSES_LISTED: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HeldFdReport {
    pub(crate) fd: i32,
    pub(crate) site: String,
    /// Not opened by the process itself: inherited across the target's exec (stdio),
    /// held before an attach, or copied by a fork.
    pub(crate) inherited: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HeldMappingReport {
    pub(crate) site: String,
    pub(crate) bytes: u64,
    pub(crate) inherited: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HeldAtExit {
    pub(crate) pid: u32,
    /// False: the target was still running when tracing stopped, and this is what it held
    /// then.
    pub(crate) exited: bool,
    pub(crate) fds: Vec<HeldFdReport>,
    /// Most bytes first.
    pub(crate) mappings: Vec<HeldMappingReport>,
    pub(crate) mapped_bytes: u64,
    pub(crate) heap_bytes: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct OutlivedProcess {
    pub(crate) pid: u32,
    /// Empty when it could not be read.
    pub(crate) command: Vec<String>,
    /// Open fds at its exit, or when tracing stopped if it still runs.
    pub(crate) fds: usize,
    pub(crate) mappings: usize,
    pub(crate) mapped_bytes: u64,
    pub(crate) still_running: bool,
    pub(crate) fd_sites: Vec<HeldFdReport>,
}

fn fd_reports(held: &Holdings, sites: &Sites) -> Vec<HeldFdReport> {
    held.fds
        .iter()
        .map(|fd| HeldFdReport {
            fd: fd.fd,
            site: site_text(fd.site, sites),
            inherited: fd.inherited,
        })
        .collect()
}

impl HeldAtExit {
    pub(crate) fn new(held: &Holdings, sites: &Sites) -> Self {
        HeldAtExit {
            pid: held.tgid,
            exited: held.exited_ns.is_some(),
            fds: fd_reports(held, sites),
            mappings: held
                .mappings
                .iter()
                .map(|m| HeldMappingReport {
                    site: site_text(m.site, sites),
                    bytes: m.bytes,
                    inherited: m.inherited,
                })
                .collect(),
            mapped_bytes: held.mapped_bytes(),
            heap_bytes: held.heap_bytes,
        }
    }

    fn inherited_fds(&self) -> usize {
        self.fds.iter().filter(|fd| fd.inherited).count()
    }

    /// "3 fds (3 inherited) and 12 mappings (2.1 MiB)".
    pub(crate) fn summary(&self) -> String {
        format!(
            "{} fds ({} inherited) and {} mappings ({})",
            self.fds.len(),
            self.inherited_fds(),
            self.mappings.len(),
            units::bytes(self.mapped_bytes as f64)
        )
    }
}

/// `running`: the processes the session still saw running when tracing stopped (`None`:
/// unknown, trust the ledger, which has seen no exit for them).
pub(crate) fn outlived(
    holdings: &[Holdings],
    sites: &Sites,
    commands: &BTreeMap<u32, Vec<String>>,
    running: Option<&BTreeSet<u32>>,
) -> Vec<OutlivedProcess> {
    holdings
        .iter()
        .map(|held| OutlivedProcess {
            pid: held.tgid,
            command: commands.get(&held.tgid).cloned().unwrap_or_default(),
            fds: held.fds.len(),
            mappings: held.mappings.len(),
            mapped_bytes: held.mapped_bytes(),
            still_running: held.exited_ns.is_none()
                && running.is_none_or(|running| running.contains(&held.tgid)),
            fd_sites: fd_reports(held, sites),
        })
        .collect()
}

/// Why a run with fewer iterations than a rate needs gets no verdict.
pub(crate) fn one_shot_reason(
    count: usize,
    source: IterationSource,
    unconvincing: Option<&str>,
) -> String {
    if let Some(reason) = unconvincing {
        // Paths recurred, but none marked a loop: that is the reason, not a lack of repeats.
        return format!("{reason}: see what the program held at exit");
    }
    match source {
        IterationSource::Time => {
            "no repeated operation was found (a one-shot run): see what the program held at exit"
                .into()
        }
        _ if count <= 1 => "the operation ran once: see what the program held at exit".into(),
        _ => format!(
            "the operation ran only {count} times, too few for a rate \
             (at least {} are needed): see what the program held at exit",
            crate::analysis::trend::MIN_ITERATIONS
        ),
    }
}

impl Classes {
    /// A one-shot run has no per-iteration numbers: every rate is 0 (the keys stay, they
    /// are the contract's), no detection limit per iteration, and every verdict
    /// inconclusive, with `why`.
    pub(crate) fn one_shot(&mut self, why: &str) {
        for class in [&mut self.fd, &mut self.mmap] {
            no_rates(class, why);
        }
        self.brk.bytes_per_iteration = 0.0;
        self.brk.detection_limit_bytes_per_iteration = None;
        self.brk.verdict = Verdict::Inconclusive;
        self.brk.why = why.to_string();
        for site in &mut self.brk.sites {
            site.bytes_per_iteration = 0.0;
        }
        if let Some(heap) = &mut self.heap {
            heap.bytes_per_iteration = 0.0;
            heap.allocations_per_iteration = 0.0;
            heap.detection_limit_bytes_per_iteration = None;
            heap.verdict = Verdict::Inconclusive;
            heap.why = why.to_string();
            for site in &mut heap.sites {
                site.bytes_per_iteration = 0.0;
                site.allocations_per_iteration = 0.0;
            }
        }
        let rss = &mut self.rss;
        rss.bytes_per_iteration = 0.0;
        rss.unexplained_bytes_per_iteration = 0.0;
        rss.explained_bytes_per_iteration = 0.0;
        rss.detection_limit_bytes_per_iteration = None;
        rss.verdict = Verdict::Inconclusive;
        rss.total_verdict = Verdict::Inconclusive;
        rss.unexplained_verdict = Verdict::Inconclusive;
        rss.why = why.to_string();
    }
}

fn no_rates(class: &mut ResourceReport, why: &str) {
    class.leaked_per_iteration = 0.0;
    if let Some(bytes) = &mut class.bytes_leaked_per_iteration {
        *bytes = 0.0;
    }
    class.detection_limit_per_iteration = None;
    class.detection_limit_bytes_per_iteration = None;
    class.verdict = Verdict::Inconclusive;
    class.count_verdict = Verdict::Inconclusive;
    class.why = why.to_string();
    for site in &mut class.sites {
        site.leaked_per_iteration = 0.0;
        if let Some(bytes) = &mut site.bytes_leaked_per_iteration {
            *bytes = 0.0;
        }
        site.verdict = Verdict::Inconclusive;
    }
}

impl Report {
    /// The one-shot table: verdicts and what was held, no per-iteration column.
    pub(super) fn write_one_shot_table(
        &self,
        out: &mut dyn Write,
        held: &HeldAtExit,
    ) -> io::Result<()> {
        let c = &self.classes;
        let row = |out: &mut dyn Write, class: &str, verdict: Verdict, held: String| {
            writeln!(out, "  {class:<7} {:<13} {held}", verdict.as_str())
        };
        writeln!(out, "  {:<7} {:<13} held at exit", "class", "verdict")?;
        row(
            out,
            "fd",
            c.fd.verdict,
            format!("{} ({} inherited)", held.fds.len(), held.inherited_fds()),
        )?;
        row(
            out,
            "mmap",
            c.mmap.verdict,
            format!(
                "{} ({})",
                held.mappings.len(),
                units::bytes(held.mapped_bytes as f64)
            ),
        )?;
        row(
            out,
            "brk",
            c.brk.verdict,
            units::bytes(held.heap_bytes as f64),
        )?;
        row(
            out,
            "rss",
            c.rss.verdict,
            c.rss
                .bytes_at_end
                .map_or("not sampled".into(), |b| units::bytes(b as f64)),
        )?;
        // Files the target created and left behind, and watches it still had: what
        // they held at exit is what the ledger still counts live.
        for (name, class, what) in [
            ("files", &c.files, "left behind"),
            ("watches", &c.watches, "still set"),
        ] {
            let held = if class.acquired == 0 {
                "none created".to_string()
            } else {
                format!("{} of {} {what}", class.live_at_exit, class.acquired)
            };
            row(out, name, class.verdict, held)?;
        }
        writeln!(out, "  why: {}", c.fd.why)
    }

    /// Like valgrind's "FILE DESCRIPTORS: N open at exit", plus the mappings.
    pub(super) fn write_held_at_exit(
        &self,
        out: &mut dyn Write,
        held: &HeldAtExit,
    ) -> io::Result<()> {
        let when = if held.exited {
            "at exit"
        } else {
            "when tracing stopped"
        };
        writeln!(
            out,
            "held {when} by pid {}: {} open fds ({} inherited), {} mappings ({})",
            held.pid,
            held.fds.len(),
            held.inherited_fds(),
            held.mappings.len(),
            units::bytes(held.mapped_bytes as f64)
        )?;
        for fd in held.fds.iter().take(LISTED) {
            let inherited = if fd.inherited { "  (inherited)" } else { "" };
            writeln!(out, "  fd {:<4} {}{inherited}", fd.fd, fd.site)?;
        }
        more(out, held.fds.len(), "fds")?;
        for mapping in held.mappings.iter().take(LISTED) {
            let inherited = if mapping.inherited {
                "  (inherited)"
            } else {
                ""
            };
            writeln!(
                out,
                "  map {:>9} {}{inherited}",
                units::bytes(mapping.bytes as f64),
                mapping.site
            )?;
        }
        more(out, held.mappings.len(), "mappings")?;
        if self.lost_events > 0 {
            writeln!(
                out,
                "  ({} events were lost: this list may be incomplete)",
                self.lost_events
            )?;
        }
        Ok(())
    }

    pub(super) fn write_outlived(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.outlived_target.is_empty() {
            return Ok(());
        }
        writeln!(out)?;
        writeln!(
            out,
            "outlived the target (pid {}): {} process(es), followed until they exited{}",
            self.target.pid,
            self.outlived_target.len(),
            if self.outlived_target.iter().any(|p| p.still_running) {
                " or tracing stopped"
            } else {
                ""
            }
        )?;
        for process in self.outlived_target.iter().take(PROCESSES_LISTED) {
            let state = if process.still_running {
                "still running"
            } else {
                "exited"
            };
            let command = if process.command.is_empty() {
                "?".to_string()
            } else {
                process.command.join(" ")
            };
            writeln!(
                out,
                "  pid {} ({state}) {command}: {} fds, {} mappings ({})",
                process.pid,
                process.fds,
                process.mappings,
                units::bytes(process.mapped_bytes as f64)
            )?;
            let mut by_site: BTreeMap<(&str, bool), usize> = BTreeMap::new();
            for fd in &process.fd_sites {
                *by_site.entry((&fd.site, fd.inherited)).or_default() += 1;
            }
            let mut by_site: Vec<_> = by_site.into_iter().collect();
            by_site.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for ((site, inherited), count) in by_site.iter().take(3) {
                let inherited = if *inherited { "  (inherited)" } else { "" };
                writeln!(out, "    {count:>6} × fd {site}{inherited}")?;
            }
        }
        more(out, self.outlived_target.len(), "processes")
    }
}

fn more(out: &mut dyn Write, total: usize, what: &str) -> io::Result<()> {
    let limit = if what == "processes" {
        PROCESSES_LISTED
    } else {
        LISTED
    };
    if total > limit {
        writeln!(
            out,
            "  … {} more {what} (all in the JSON report)",
            total - limit
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "held_tests.rs"]
mod tests;
