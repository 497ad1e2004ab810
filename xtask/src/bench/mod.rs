//! `cargo xtask bench`: the cost of tracing, measured as issue 11 asks.
//!
//! Each workload runs in interleaved pairs (untraced, traced, untraced, traced, ...) and the
//! table shows the median of the pairs' ratios of the loops' own times (each workload prints
//! `loop_ns=N`), so process start-up and probe loading are never counted and a noisy moment
//! on the shared machine hits both halves of a pair. The peers (strace, perf trace, a
//! bpftrace script, valgrind) run the same workload in the same run, on reduced counts.
//! leakscope's own peak RSS, start-up and report times come from its JSON's `self` block.
//! The bench reports the bars; it never fails on a missed one.

mod heap_row;
mod kernel;
mod machine;
mod measure;
mod peers;
mod table;
mod workloads;

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::shell::step;
use machine::Noise;
use measure::SelfFigures;
use table::{Bar, Pairs, Row, median_u64, mib, ratio, seconds};
use workloads::Workload;

pub(crate) struct Options {
    /// Interleaved (untraced, traced) pairs per setup.
    pub(crate) pairs: usize,
    /// The storm's open+close pairs.
    pub(crate) storm_iterations: u64,
    pub(crate) extract_rounds: u64,
    pub(crate) extract_iterations: u64,
    /// Run the peers too (off for a quick look at leakscope alone).
    pub(crate) peers: bool,
    /// The heap row's malloc+free pairs (0: no heap row).
    pub(crate) heap_iterations: u64,
    /// Only the heap row.
    pub(crate) only_heap: bool,
}

/// Issue 11's bars on leakscope's own times.
const STARTUP_BAR_S: f64 = 0.5;
const REPORT_BAR_S: f64 = 1.0;

/// Issue 11's memory bar: leakscope's peak RSS on this many storm pairs, with a marker.
const MEMORY_PAIRS: u64 = 5_000_000;
const MEMORY_BAR_MIB: f64 = 64.0;

/// Separate traced runs with the kernel's program counters on, per workload.
const KERNEL_RUNS: usize = 3;

/// What one workload gave: its table, leakscope's own figures over its traced runs, and
/// the kernel side's time per iteration (median over [`KERNEL_RUNS`] runs), in all and in
/// sys_exit, or why it could not be measured.
struct Measured<'a> {
    workload: &'a Workload,
    rows: Vec<Row>,
    figures: Vec<SelfFigures>,
    kernel: Result<KernelCost, String>,
}

struct KernelCost {
    all_ns: f64,
    sys_exit_ns: f64,
}

pub(crate) fn run(leakscope: &Path, options: &Options) -> Result<()> {
    crate::bootstrap::ensure_fixture_tools()?;
    let workdir = std::env::temp_dir().join("leakscope-bench");
    std::fs::create_dir_all(&workdir)
        .with_context(|| format!("cannot create {}", workdir.display()))?;
    if options.only_heap {
        println!();
        print!(
            "{}",
            heap_row::run(
                leakscope,
                &workdir,
                options.pairs,
                options.heap_iterations.max(1)
            )
        );
        return Ok(());
    }
    let peers = if options.peers {
        peers::all(&workdir)
            .into_iter()
            .map(|peer| {
                step(&format!("checking that {} runs here", peer.label));
                let ready = peer.prepare();
                (peer, ready)
            })
            .collect()
    } else {
        Vec::new()
    };
    let workloads = [
        Workload::storm(&workdir, options.storm_iterations)?,
        Workload::extract(
            leakscope,
            options.extract_rounds,
            options.extract_iterations,
        ),
    ];

    let load_before = machine::load_average();
    let mut noise = Noise::default();
    let mut measured = Vec::new();
    for workload in &workloads {
        let (pairs, figures) =
            leakscope_pairs(leakscope, workload, options.pairs, &workdir, &mut noise)?;
        let mut rows = vec![Row {
            setup: "leakscope".into(),
            result: Ok(pairs),
        }];
        for (peer, ready) in &peers {
            let result = ready.clone().and_then(|()| {
                peer_pairs(peer, workload, options.pairs, &mut noise)
                    .map_err(|e| peer.explain(format!("{e:#}")))
            });
            rows.push(Row {
                setup: peer.label.into(),
                result,
            });
        }
        let kernel =
            kernel_cost(leakscope, workload, &workdir, &mut noise).map_err(|e| format!("{e:#}"));
        measured.push(Measured {
            workload,
            rows,
            figures,
            kernel,
        });
    }

    println!();
    for m in &measured {
        print!(
            "{}",
            table::render_table(
                &format!("{} ({} pairs)", m.workload.title, options.pairs),
                &m.rows
            )
        );
        println!("  {}", own_figures_line(&m.figures));
        println!("  {}", kernel_line(&m.kernel));
        println!();
    }
    if options.heap_iterations > 0 {
        // As many pairs as the other rows: the uprobe traps are as noisy as anything.
        print!(
            "{}",
            heap_row::run(leakscope, &workdir, options.pairs, options.heap_iterations)
        );
        println!();
    }
    let memory = memory_peak(leakscope, &workloads[0], &workdir, &mut noise);
    println!("{}", memory_line(&memory));
    println!(
        "{}",
        noise.line(load_before.as_deref(), machine::load_average().as_deref())
    );
    println!();
    let mut bars = bars(&measured);
    bars.push(memory_bar(&memory));
    print!("{}", table::render_bars(&bars));
    Ok(())
}

/// One traced storm of [`MEMORY_PAIRS`] pairs: leakscope's own figures.
fn memory_peak(
    leakscope: &Path,
    storm: &Workload,
    workdir: &Path,
    noise: &mut Noise,
) -> Result<SelfFigures, String> {
    step(&format!(
        "memory: leakscope on {MEMORY_PAIRS} storm pairs with a marker"
    ));
    noise.look();
    let json = workdir.join("report.json");
    let _ = std::fs::remove_file(&json);
    measure::loop_ns(&mut storm.traced_at(leakscope, &json, MEMORY_PAIRS))
        .and_then(|_| measure::self_figures(&json))
        .map_err(|e| format!("{e:#}"))
}

fn memory_line(memory: &Result<SelfFigures, String>) -> String {
    match memory {
        Ok(figures) => format!(
            "memory: {MEMORY_PAIRS} storm pairs ({} events) with a marker: leakscope's peak RSS {}, lost events {}",
            MEMORY_PAIRS * 2,
            figures
                .peak_rss_bytes
                .map_or("not in the report".to_owned(), |p| mib(p as f64)),
            figures.lost_events
        ),
        Err(why) => format!("memory: not measured: {why}"),
    }
}

fn memory_bar(memory: &Result<SelfFigures, String>) -> Bar {
    let peak = memory.as_ref().ok().and_then(|f| f.peak_rss_bytes);
    let lost = memory.as_ref().map_or(0, |f| f.lost_events);
    Bar {
        name: format!("peak RSS, {}M storm pairs", MEMORY_PAIRS / 1_000_000),
        limit: format!("≤ {MEMORY_BAR_MIB} MiB"),
        measured: peak.map(|p| mib(p as f64)),
        met: lost == 0 && peak.is_some_and(|p| (p as f64) <= MEMORY_BAR_MIB * 1024.0 * 1024.0),
        note: (lost > 0).then(|| format!("{lost} events lost in that run")),
    }
}

/// `pairs` x (untraced, leakscope) on the full workload.
fn leakscope_pairs(
    leakscope: &Path,
    workload: &Workload,
    pairs: usize,
    workdir: &Path,
    noise: &mut Noise,
) -> Result<(Pairs, Vec<SelfFigures>)> {
    let json = workdir.join("report.json");
    let mut measured = Pairs {
        iterations: workload.iterations,
        ..Pairs::default()
    };
    let mut figures = Vec::new();
    for pair in 1..=pairs {
        step(&format!(
            "{}: pair {pair}/{pairs}: untraced, then leakscope ({} iterations)",
            workload.name, workload.iterations
        ));
        noise.look();
        measured.untraced_ns.push(measure::loop_ns(
            &mut workload.untraced(workload.iterations),
        )?);
        let _ = std::fs::remove_file(&json);
        measured
            .traced_ns
            .push(measure::loop_ns(&mut workload.traced(leakscope, &json))?);
        figures.push(measure::self_figures(&json)?);
    }
    Ok((measured, figures))
}

/// The kernel programs' own time per iteration, from [`KERNEL_RUNS`] separate traced runs.
fn kernel_cost(
    leakscope: &Path,
    workload: &Workload,
    workdir: &Path,
    noise: &mut Noise,
) -> Result<KernelCost> {
    let json = workdir.join("report.json");
    let (mut all, mut sys_exit) = (Vec::new(), Vec::new());
    for run in 1..=KERNEL_RUNS {
        step(&format!(
            "{}: kernel counters, run {run}/{KERNEL_RUNS}",
            workload.name
        ));
        noise.look();
        let stats = kernel::program_stats(&mut workload.traced(leakscope, &json))?;
        all.push(stats.iter().map(|p| p.run_time_ns).sum::<u64>());
        sys_exit.push(
            stats
                .iter()
                .filter(|p| p.name == "sys_exit")
                .map(|p| p.run_time_ns)
                .sum::<u64>(),
        );
    }
    let per_iteration =
        |ns: &[u64]| median_u64(ns).unwrap_or(0.0) / workload.iterations.max(1) as f64;
    Ok(KernelCost {
        all_ns: per_iteration(&all),
        sys_exit_ns: per_iteration(&sys_exit),
    })
}

fn kernel_line(kernel: &Result<KernelCost, String>) -> String {
    match kernel {
        Ok(k) => format!(
            "kernel programs' own time (BPF_ENABLE_STATS, median of {KERNEL_RUNS} separate runs): {:.0} ns per iteration, of which sys_exit {:.0} ns",
            k.all_ns, k.sys_exit_ns
        ),
        Err(why) => format!("kernel programs' own time: not measured ({why})"),
    }
}

/// `pairs` x (untraced, peer) on the peer's reduced count.
fn peer_pairs(
    peer: &peers::Peer,
    workload: &Workload,
    pairs: usize,
    noise: &mut Noise,
) -> Result<Pairs> {
    let n = peer.iterations(workload.iterations);
    let mut measured = Pairs {
        iterations: n,
        ..Pairs::default()
    };
    for pair in 1..=pairs {
        step(&format!(
            "{}: pair {pair}/{pairs}: untraced, then {} ({n} iterations)",
            workload.name, peer.label
        ));
        noise.look();
        measured
            .untraced_ns
            .push(measure::loop_ns(&mut workload.untraced(n))?);
        measured
            .traced_ns
            .push(measure::loop_ns(&mut peer.wrap(&workload.untraced(n)))?);
    }
    Ok(measured)
}

/// Medians over one workload's traced runs: (start-up ns, report ns).
fn own_times(figures: &[SelfFigures]) -> (Option<f64>, Option<f64>) {
    let startup: Vec<u64> = figures.iter().filter_map(|f| f.startup_ns).collect();
    let report: Vec<u64> = figures.iter().filter_map(|f| f.report_ns).collect();
    (median_u64(&startup), median_u64(&report))
}

fn own_figures_line(figures: &[SelfFigures]) -> String {
    let lost: u64 = figures.iter().map(|f| f.lost_events).sum();
    let peak = figures.iter().filter_map(|f| f.peak_rss_bytes).max();
    let worst = |pick: fn(&SelfFigures) -> Option<u64>| figures.iter().filter_map(pick).max();
    let (startup, report) = own_times(figures);
    let shown = |median: Option<f64>, max: Option<u64>| match (median, max) {
        (Some(median), Some(max)) => format!("{} (max {})", seconds(median), seconds(max as f64)),
        _ => "not in the report".to_owned(),
    };
    format!(
        "leakscope itself: lost events {lost}; peak RSS {}; start-up {}; report {}",
        peak.map_or("not in the report".to_owned(), |p| mib(p as f64)),
        shown(startup, worst(|f| f.startup_ns)),
        shown(report, worst(|f| f.report_ns)),
    )
}

/// Issue 11's bars: each workload's median ratio, no lost event, and the worst workload's
/// median start-up and report times.
fn bars(measured: &[Measured]) -> Vec<Bar> {
    let mut bars = Vec::new();
    for m in measured {
        let pairs = m.rows.first().and_then(|row| row.result.as_ref().ok());
        let median = pairs.and_then(Pairs::median_ratio);
        bars.push(Bar {
            name: format!("{}: leakscope median ratio", m.workload.name),
            limit: format!("≤ {}", ratio(m.workload.bar)),
            measured: median.map(ratio),
            met: median.is_some_and(|r| r <= m.workload.bar),
            note: pairs.and_then(|p| table::spread_note(p, m.workload.bar)),
        });
    }
    let all: Vec<&SelfFigures> = measured.iter().flat_map(|m| &m.figures).collect();
    let lost: u64 = all.iter().map(|f| f.lost_events).sum();
    bars.push(Bar {
        name: "lost events, all traced runs".into(),
        limit: "= 0".into(),
        measured: Some(lost.to_string()),
        met: lost == 0,
        note: None,
    });
    let worst = |pick: fn(&[SelfFigures]) -> Option<f64>| {
        let medians: Vec<Option<f64>> = measured.iter().map(|m| pick(&m.figures)).collect();
        // One workload without the figure makes the bar unmeasured, not met.
        medians
            .iter()
            .copied()
            .collect::<Option<Vec<f64>>>()
            .and_then(|m| m.into_iter().reduce(f64::max))
    };
    for (name, limit_s, value) in [
        (
            "start-up (median, worst workload)",
            STARTUP_BAR_S,
            worst(|f| own_times(f).0),
        ),
        (
            "report (median, worst workload)",
            REPORT_BAR_S,
            worst(|f| own_times(f).1),
        ),
    ] {
        bars.push(Bar {
            name: name.into(),
            limit: format!("≤ {limit_s} s"),
            measured: value.map(seconds),
            met: value.is_some_and(|ns| ns <= limit_s * 1e9),
            note: None,
        });
    }
    bars
}
