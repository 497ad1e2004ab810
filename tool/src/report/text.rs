//! The one-screen text report: verdict table, top sites, lifetime bars, iteration source,
//! lost events and the target's exit.

use std::io::{self, Write};

use super::answer::shell_quote;
use super::model::{Report, ResourceReport};
use crate::analysis::lifetimes::{DECADE_LABELS, Percentiles};
use crate::analysis::trend::Verdict;
use crate::iterations::{IterationSource, MIN_TIME_WINDOW_NS, TIME_WINDOWS};
use crate::units;

/// Width of the longest lifetime bar, in character cells.
const BAR_WIDTH: usize = 32;

fn verdict_text(verdict: Verdict) -> &'static str {
    // Upper case so a leak stands out in a wall of text.
    match verdict {
        Verdict::Leak => "LEAK",
        other => other.as_str(),
    }
}

/// A horizontal bar of `value / max` of [`BAR_WIDTH`], in eighth-cell unicode blocks.
pub(crate) fn bar(value: u64, max: u64) -> String {
    const PARTS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    if value == 0 || max == 0 {
        return String::new();
    }
    let eighths = ((value as f64 / max as f64) * (BAR_WIDTH * 8) as f64)
        .round()
        .max(1.0) as usize;
    let mut text = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        text.push(PARTS[eighths % 8 - 1]);
    }
    text
}

pub(crate) fn exit_text(report: &Report) -> String {
    let target = &report.target;
    match (target.exit_code, target.exit_signal) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) if target.still_running => "still running when tracing stopped".into(),
        (None, None) => "exited; its status is only visible to its parent".into(),
    }
}

impl Report {
    pub(crate) fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let iterations = &self.iterations;
        writeln!(
            out,
            "leakscope: {}  (pid {}, {})",
            self.target.command.join(" "),
            self.target.pid,
            exit_text(self)
        )?;
        let coverage = iterations.coverage.map_or(String::new(), |c| {
            format!(", covering {:.0} % of acquisitions", c * 100.0)
        });
        writeln!(
            out,
            "iterations: {} from {} ({}), confidence {:.2}{coverage}",
            iterations.count,
            iterations.source.as_str(),
            iterations.detail,
            iterations.confidence
        )?;
        if iterations.stride > 1 {
            writeln!(
                out,
                "  judged on {} boundaries, one every {} iterations",
                crate::units::grouped(iterations.judged_boundaries as u64),
                crate::units::grouped(iterations.stride)
            )?;
        }
        if iterations.unconvincing.is_some() && !iterations.candidates.is_empty() {
            writeln!(out, "candidate markers (none convincing):")?;
            for candidate in &iterations.candidates {
                writeln!(
                    out,
                    "  --iteration-path {}  ({} opens, score {:.2})",
                    shell_quote(&candidate.path),
                    candidate.count,
                    candidate.score
                )?;
            }
        }
        if self.lost_events > 0 {
            writeln!(
                out,
                "LOST EVENTS: {} (verdicts are inconclusive)",
                self.lost_events
            )?;
            if !self.lost_by_reason.is_empty() {
                let reasons = by_reason(&self.lost_by_reason);
                writeln!(out, "  lost by reason: {reasons}")?;
            }
        } else {
            writeln!(out, "lost events: 0")?;
        }
        if !self.stacks_dropped.is_empty() {
            let reasons = by_reason(&self.stacks_dropped);
            writeln!(
                out,
                "stacks dropped: {reasons} (their calls are counted, without frames)"
            )?;
        }
        writeln!(out)?;
        writeln!(out, "answer: {}", self.answer())?;
        writeln!(out)?;
        match &self.held_at_exit {
            // A one-shot run: no per-iteration numbers, what it held at exit instead.
            Some(held) => {
                self.write_one_shot_table(out, held)?;
                writeln!(out)?;
                self.write_suspects(out)?;
                self.write_held_at_exit(out, held)?;
            }
            None => {
                self.write_table(out)?;
                writeln!(out)?;
                self.write_suspects(out)?;
                self.write_sites(out)?;
            }
        }
        self.write_outlived(out)?;
        self.write_lifetimes(out)?;
        if let Some(ended) = &self.ended {
            writeln!(out, "ended: {}", ended.describe())?;
        }
        if let Some(projection) = &self.projection {
            write!(out, "\n{projection}")?;
        }
        Ok(())
    }

    fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let c = &self.classes;
        // Rows first, then widths: a long rate ("1 B per 26,000,000 iterations") widens its
        // column instead of pushing the rest of its row out of line.
        let rows = self.class_rows();
        let mut widths = [7, 13, 28, 16, 0];
        for cells in &rows {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let [w0, w1, w2, w3, _] = widths;
        for (i, [class, verdict, rate, live, limit]) in rows.iter().enumerate() {
            writeln!(
                out,
                "  {class:<w0$} {verdict:<w1$} {rate:<w2$} {live:<w3$} {limit}"
            )?;
            // The rss row's note follows it (rows: header, fd, mmap, brk, rss, ...).
            if i == 4 {
                writeln!(
                    out,
                    "  {:w0$} rss growth not explained by mmap/brk: {}/iter ({})",
                    "",
                    units::bytes_rate(c.rss.unexplained_bytes_per_iteration),
                    c.rss.unexplained_verdict.as_str()
                )?;
            }
        }
        for (name, why) in self.class_whys() {
            writeln!(out, "  why {name}: {why}")?;
        }
        let needed: Vec<(&str, u64)> = [
            ("fd", c.fd.iterations_needed),
            ("mmap", c.mmap.iterations_needed),
            ("brk", c.brk.iterations_needed),
            ("rss", c.rss.iterations_needed),
            ("files", needed_unless_none(&c.files)),
            ("watches", needed_unless_none(&c.watches)),
            ("heap", c.heap.as_ref().and_then(|h| h.iterations_needed)),
        ]
        .into_iter()
        .filter_map(|(name, needed)| Some((name, needed?)))
        .collect();
        if self.iterations.source == IterationSource::Time {
            write_settle_time_windows(out, &needed)?;
        } else {
            for (name, needed) in needed {
                writeln!(
                    out,
                    "  to settle {name}: run at least {} iterations",
                    units::grouped(needed)
                )?;
            }
        }
        self.write_failures(out)
    }

    /// Each class's reason for its verdict, in the table's order (the text and `--html`
    /// show the same).
    pub(crate) fn class_whys(&self) -> Vec<(&'static str, &str)> {
        let c = &self.classes;
        let mut whys = vec![
            ("fd", c.fd.why.as_str()),
            ("mmap", &c.mmap.why),
            ("brk", &c.brk.why),
            ("rss", &c.rss.why),
            ("files", why_text(&c.files)),
            ("watches", why_text(&c.watches)),
        ];
        if let Some(heap) = &c.heap {
            whys.push(("heap", &heap.why));
        }
        whys
    }

    /// The verdict table, a header row first: class, verdict, per iteration, live at end,
    /// detects leaks from (the text and `--html` show the same cells).
    pub(crate) fn class_rows(&self) -> Vec<[String; 5]> {
        let c = &self.classes;
        let mut rows: Vec<[String; 5]> = Vec::new();
        let mut row = |cells: [&str; 5]| rows.push(cells.map(str::to_string));
        let count_limit = |limit: Option<f64>| limit.map_or("-".into(), units::count_rate);
        let bytes_limit = |limit: Option<f64>| limit.map_or("-".into(), units::bytes_rate);
        row([
            "class",
            "verdict",
            "per iteration",
            "live at end",
            "detects leaks from",
        ]);
        row([
            "fd",
            verdict_text(c.fd.verdict),
            &with_unit(
                units::count_rate(seen(
                    c.fd.leaked_per_iteration,
                    c.fd.detection_limit_per_iteration,
                )),
                "fds",
            ),
            &c.fd.live_at_end.to_string(),
            &with_unit(count_limit(c.fd.detection_limit_per_iteration), "fds"),
        ]);
        let map_bytes = c.mmap.bytes_leaked_per_iteration.unwrap_or(0.0);
        let live_bytes = c.mmap.live_bytes_at_end.unwrap_or(0) as f64;
        row([
            "mmap",
            verdict_text(c.mmap.verdict),
            &format!(
                "{}, {}",
                with_unit(
                    units::count_rate(seen(
                        c.mmap.leaked_per_iteration,
                        c.mmap.detection_limit_per_iteration,
                    )),
                    "maps",
                ),
                units::bytes_rate(seen(map_bytes, c.mmap.detection_limit_bytes_per_iteration))
            ),
            &format!("{} ({})", c.mmap.live_at_end, units::bytes(live_bytes)),
            &format!(
                "{}, {}",
                with_unit(count_limit(c.mmap.detection_limit_per_iteration), "maps"),
                bytes_limit(c.mmap.detection_limit_bytes_per_iteration)
            ),
        ]);
        row([
            "brk",
            verdict_text(c.brk.verdict),
            &units::bytes_rate(seen(
                c.brk.bytes_per_iteration,
                c.brk.detection_limit_bytes_per_iteration,
            )),
            &units::bytes(c.brk.live_bytes_at_end as f64),
            &bytes_limit(c.brk.detection_limit_bytes_per_iteration),
        ]);
        row([
            "rss",
            verdict_text(c.rss.verdict),
            &units::bytes_rate(seen(
                c.rss.bytes_per_iteration,
                c.rss.detection_limit_bytes_per_iteration,
            )),
            &c.rss
                .bytes_at_end
                .map_or("not sampled".into(), |b| units::bytes(b as f64)),
            &bytes_limit(c.rss.detection_limit_bytes_per_iteration),
        ]);
        for (name, unit, class) in [
            ("files", "files", &c.files),
            ("watches", "watches", &c.watches),
        ] {
            row(disk_row(name, unit, class).each_ref().map(String::as_str));
        }
        if let Some(heap) = &c.heap {
            row([
                "heap",
                verdict_text(heap.verdict),
                &format!(
                    "{}, {}",
                    units::bytes_rate(seen(
                        heap.bytes_per_iteration,
                        heap.detection_limit_bytes_per_iteration
                    )),
                    with_unit(units::count_rate(heap.allocations_per_iteration), "allocs")
                ),
                &heap.live_bytes_at_end.map_or("-".into(), |b| {
                    format!(
                        "{} ({} allocs)",
                        units::bytes(b as f64),
                        heap.live_allocations_at_end.unwrap_or(0)
                    )
                }),
                &bytes_limit(heap.detection_limit_bytes_per_iteration),
            ]);
        }
        rows
    }

    /// One line per class whose acquisitions failed, every errno on it.
    fn write_failures(&self, out: &mut dyn Write) -> io::Result<()> {
        let c = &self.classes;
        for (name, failures) in [
            ("fd", &c.fd.failures),
            ("mmap", &c.mmap.failures),
            ("brk", &c.brk.failures),
            ("files", &c.files.failures),
            ("watches", &c.watches.failures),
        ] {
            if failures.is_empty() {
                continue;
            }
            let parts: Vec<String> = failures
                .iter()
                .map(|(errno, f)| {
                    let first = f
                        .first_iteration
                        .map_or("before the first iteration".into(), |i| {
                            format!("first at iteration {i}")
                        });
                    let live = f
                        .live_at_first
                        .map_or(String::new(), |n| format!(", {n} held then"));
                    let meaning =
                        limit_meaning(name, errno).map_or(String::new(), |m| format!(": {m}"));
                    format!(
                        "{} calls failed with {errno}{meaning} ({first}{live})",
                        f.count
                    )
                })
                .collect();
            writeln!(out, "  {name}: {}", parts.join("; "))?;
        }
        Ok(())
    }

    fn write_lifetimes(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out)?;
        writeln!(out, "lifetimes of released resources:")?;
        let c = &self.classes;
        for (name, class) in [("fd", &c.fd), ("mmap", &c.mmap)] {
            write_histogram(out, name, &Released::of(class))?;
        }
        // The disk classes only when the target made any: "none released" of nothing
        // created says nothing.
        for (name, class) in [("files", &c.files), ("watches", &c.watches)] {
            if class.acquired > 0 {
                write_histogram(out, name, &Released::of(class))?;
            }
        }
        if let Some(heap) = &c.heap {
            let released = Released {
                ns: &heap.lifetime_ns,
                iterations: Some(&heap.lifetime_iterations).filter(|its| its.count > 0),
                decades: &heap.lifetime_decades,
            };
            write_histogram(out, "heap", &released)?;
        }
        Ok(())
    }
}

/// Counts by reason as the text shows them: "ring_full_path 3, ring_full_marker 1".
pub(crate) fn by_reason(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    parts.join(", ")
}

/// "0.25 fds", but "1 per 300 iterations" as it is (the unit is the class's).
fn with_unit(rate: String, unit: &str) -> String {
    if rate.contains(" per ") || rate == "-" {
        rate
    } else {
        format!("{rate} {unit}")
    }
}

/// A class's lifetimes of released resources, as the histogram shows them.
struct Released<'a> {
    ns: &'a Percentiles,
    /// `None` when not measured in iterations (`--heap` without a marker).
    iterations: Option<&'a Percentiles>,
    decades: &'a [u64; DECADE_LABELS.len()],
}

impl<'a> Released<'a> {
    fn of(class: &'a ResourceReport) -> Self {
        Released {
            ns: &class.lifetime_ns,
            iterations: Some(&class.lifetime_iterations),
            decades: &class.lifetime_decades,
        }
    }
}

fn write_histogram(out: &mut dyn Write, name: &str, released: &Released) -> io::Result<()> {
    let (ns, its) = (released.ns, released.iterations);
    if ns.count == 0 {
        return writeln!(out, "  {name:<7} none released");
    }
    let in_iterations = its.map_or(String::new(), |its| {
        format!(
            "   in iterations: p50 {} p99 {} max {}",
            its.p50, its.p99, its.max
        )
    });
    writeln!(
        out,
        "  {name:<7} n={}  p50 {}  p90 {}  p99 {}  max {}{in_iterations}",
        ns.count,
        units::duration_ns(ns.p50),
        units::duration_ns(ns.p90),
        units::duration_ns(ns.p99),
        units::duration_ns(ns.max),
    )?;
    let decades = released.decades;
    let max = decades.iter().copied().max().unwrap_or(0);
    let first = decades.iter().position(|&n| n > 0).unwrap_or(0);
    let last = decades.iter().rposition(|&n| n > 0).unwrap_or(0);
    for (label, &count) in DECADE_LABELS.iter().zip(decades).take(last + 1).skip(first) {
        writeln!(
            out,
            "          {label:>7} {:<width$} {count}",
            bar(count, max),
            width = BAR_WIDTH + 1
        )?;
    }
    Ok(())
}

/// Whether a class was judged on nothing: the target made none of it (and no event was
/// lost, or the verdict would be inconclusive). "none created" says that plainly, where a
/// detection limit would suggest something was measured.
pub(crate) fn none_created(class: &ResourceReport) -> bool {
    class.acquired == 0 && class.verdict == Verdict::NoLeak
}

/// The why of a files or watches class: "none created" when there was nothing to judge.
fn why_text(class: &ResourceReport) -> &str {
    if none_created(class) {
        "none created"
    } else {
        &class.why
    }
}

fn needed_unless_none(class: &ResourceReport) -> Option<u64> {
    class.iterations_needed.filter(|_| !none_created(class))
}

/// A table row of the files or watches class (files with their bytes, as mmap's).
/// A fitted rate as the table shows it beside its detection limit: one below a hundredth of
/// that limit is rounding noise of a flat series (the fit of sizes sampled mid-write can
/// give "-1 B per 4,500,000 iterations"), and reads 0. JSON keeps the fitted value.
fn seen(rate: f64, limit: Option<f64>) -> f64 {
    match limit {
        Some(limit) if rate.abs() < limit / 100.0 => 0.0,
        _ => rate,
    }
}

fn disk_row(name: &str, unit: &str, class: &ResourceReport) -> [String; 5] {
    let verdict = verdict_text(class.verdict).to_string();
    if none_created(class) {
        return [
            name.into(),
            verdict,
            "none created".into(),
            "0".into(),
            "-".into(),
        ];
    }
    let count = with_unit(
        units::count_rate(seen(
            class.leaked_per_iteration,
            class.detection_limit_per_iteration,
        )),
        unit,
    );
    let limit = with_unit(
        class
            .detection_limit_per_iteration
            .map_or("-".into(), units::count_rate),
        unit,
    );
    let (rate, live, limit) = match class.bytes_leaked_per_iteration {
        Some(bytes) => (
            format!(
                "{count}, {}",
                units::bytes_rate(seen(bytes, class.detection_limit_bytes_per_iteration))
            ),
            format!(
                "{} ({})",
                class.live_at_end,
                units::bytes(class.live_bytes_at_end.unwrap_or(0) as f64)
            ),
            match class.detection_limit_bytes_per_iteration {
                Some(bytes) => format!("{limit}, {}", units::bytes_rate(bytes)),
                None => limit,
            },
        ),
        None => (count, class.live_at_end.to_string(), limit),
    };
    [name.into(), verdict, rate, live, limit]
}

/// What a limit errno means for the files and watches classes, where the name alone does
/// not say it (ENOSPC from inotify_add_watch is not a full disk).
fn limit_meaning(class: &str, errno: &str) -> Option<&'static str> {
    match (class, errno) {
        ("files", "ENOSPC") => Some("the file system is full"),
        ("files", "EDQUOT") => Some("the disk quota is used up"),
        ("watches", "ENOSPC") => Some("fs.inotify.max_user_watches reached"),
        _ => None,
    }
}

/// The next step when the iterations are time windows: a run is cut into at most
/// [`TIME_WINDOWS`] of them, so "run more iterations" may be out of reach; marking the
/// loop's own iterations always settles it.
fn write_settle_time_windows(out: &mut dyn Write, needed: &[(&str, u64)]) -> io::Result<()> {
    let Some(most) = needed.iter().map(|&(_, n)| n).max() else {
        return Ok(());
    };
    let names: Vec<&str> = needed.iter().map(|&(name, _)| name).collect();
    let longer = if most as usize <= TIME_WINDOWS {
        format!(
            ", or run at least {:.1} s for {} windows of {} ms",
            (most * MIN_TIME_WINDOW_NS) as f64 / 1e9,
            most,
            MIN_TIME_WINDOW_NS / 1_000_000
        )
    } else {
        format!(
            " (time windows cannot: it needs {}, a run has at most {TIME_WINDOWS})",
            units::grouped(most)
        )
    };
    writeln!(
        out,
        "  to settle {}: these iterations are time windows; mark the loop's own: \
         --iteration-symbol SYMBOL (a function called once per iteration) or \
         --iteration-path PATH (a file each iteration opens){longer}",
        names.join(", ")
    )
}

#[cfg(test)]
mod seen_tests {
    use super::seen;

    #[test]
    fn a_rate_far_below_its_limit_reads_zero_and_others_stay() {
        assert_eq!(seen(-2.2e-7, Some(0.09)), 0.0);
        assert_eq!(seen(0.5, Some(0.09)), 0.5);
        assert_eq!(seen(0.002, Some(0.09)), 0.002, "within a hundredth: shown");
        assert_eq!(seen(-2.2e-7, None), -2.2e-7, "no limit: as fitted");
    }
}
