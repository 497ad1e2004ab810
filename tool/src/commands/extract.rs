//! `leakscope extract`: the original report's scenario, built in. A child process extracts
//! a tar archive N times per round into one directory, marking each iteration through a
//! uprobe'd function, and the parent traces it and answers the report's question.

use crate::{
    cli::ExtractCommand,
    extract::{
        ClassGrowth, DEFAULT_PROJECTION_POINTS, ExtractWorkspace, MARKER_SYMBOL, WORKER_SUBCOMMAND,
        project,
    },
    progress::Progress,
    report::Report,
    run_as,
    session::{MarkerSpec, SpawnStdout, Target},
    stop,
};

use super::{
    output::ReportOutput,
    trace::{trace_and_diagnose, write_report},
};

pub(crate) async fn extract(command: ExtractCommand) -> anyhow::Result<u8> {
    let ExtractCommand {
        extract: args,
        common,
    } = command;
    // Before anything runs: a bad path must not cost the run.
    let mut output = ReportOutput::open(&common)?;
    let run_as = run_as::resolve(common.user.as_deref())?;
    // Checks the archive, the fd budget and makes the directory before anything is traced.
    let workspace = ExtractWorkspace::create(&args, run_as.map(|r| (r.uid, r.gid)))?;
    let config = workspace.worker_config().clone();
    // Removed on every way out: by the drop on an error, by remove() below, and by the
    // stop-signal watcher when a second signal makes leakscope exit at once.
    if !args.keep {
        stop::remove_on_exit(workspace.root().to_owned());
    }

    // The worker is this very binary, so the marker lives in it.
    let exe = std::env::current_exe()?;
    let mut argv = vec![exe.clone().into_os_string(), WORKER_SUBCOMMAND.into()];
    argv.extend(config.to_args());
    let user_marked = common.iteration_symbol.is_some() || common.iteration_path.is_some();
    let marker = (!user_marked).then(|| MarkerSpec {
        binary: Some(exe),
        symbol: MARKER_SYMBOL.into(),
    });

    eprintln!(
        "leakscope extract: {} rounds x {} extractions into {} (inject-leak: {})",
        config.rounds,
        config.iterations,
        workspace.extract_dir().display(),
        config.inject_leak
    );
    let progress = Progress::rounds(config.rounds, config.iterations);
    // Round lines go above the progress bar, or to stderr when stdout carries the JSON.
    let lines = if output.json_on_stdout() {
        Box::new(|line: String| eprintln!("{line}"))
    } else {
        progress.line_sink()
    };
    let target = Target::Spawn {
        argv,
        run_as,
        stdout: SpawnStdout::Lines(lines),
    };
    let diagnosed = trace_and_diagnose(target, &common, marker, Some(progress)).await?;

    let projection = project(&growth_rates(&diagnosed.report), &DEFAULT_PROJECTION_POINTS);
    let text = format!("\n{projection}");
    let status = write_report(
        &diagnosed,
        &common,
        &mut output,
        &text,
        Some(("projection", serde_json::to_value(&projection)?)),
    )?;
    if args.keep {
        eprintln!("leakscope extract: kept {}", workspace.keep().display());
    } else {
        let root = workspace.root().to_owned();
        workspace.remove()?;
        stop::forget_cleanup(&root);
    }

    if let crate::diagnosis::TargetExit::Code(code) = diagnosed.outcome.end
        && code != 0
    {
        // The worker printed its own error above; the report still shows what it did.
        anyhow::bail!("the extraction worker failed (exit status {code}); its message is above");
    }
    Ok(status)
}

/// The classes the original report cared about, as measured.
fn growth_rates(report: &Report) -> Vec<ClassGrowth> {
    let classes = &report.classes;
    vec![
        ClassGrowth::new("rss", classes.rss.bytes_per_iteration),
        ClassGrowth::new(
            "mmap",
            classes.mmap.bytes_leaked_per_iteration.unwrap_or(0.0),
        ),
        ClassGrowth::new("brk", classes.brk.bytes_per_iteration),
    ]
}
