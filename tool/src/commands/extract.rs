//! `leakscope extract`: the original report's scenario, built in. A child process extracts
//! a tar archive N times per round into one directory, marking each iteration through a
//! uprobe'd function, and the parent traces it and answers the report's question.

use std::{
    ffi::OsString,
    path::Path,
    sync::{Arc, Mutex},
};

use crate::{
    cli::{
        ExtractCommand,
        extract::{ExtractArgs, WorkerArgs, Workload},
        to_flags,
    },
    exit_code,
    extract::{
        ExtractOptions, ExtractWorkspace, MARKER_SYMBOL, WORKER_SUBCOMMAND, WorkerConfig,
        worker::parse_rounds_line,
    },
    progress::Progress,
    report::projection::DEFAULT_PROJECTION_POINTS,
    run_as,
    session::{MarkerSpec, SpawnStdout, Target},
    stop,
    watch::WatchRequest,
};

use super::{
    output::ReportOutput,
    trace::{trace_and_diagnose, write_report},
};

pub(crate) async fn extract(command: ExtractCommand) -> anyhow::Result<u8> {
    let ExtractCommand {
        extract: ExtractArgs { workload, .. },
        common,
    } = &command;
    let options = command.extract.options();
    if command.extract.untraced {
        return extract_untraced(&options, workload);
    }
    // Before anything runs: a bad path must not cost the run.
    let mut output = ReportOutput::open(common)?;
    let watch = WatchRequest::from_args(common)?;
    let run_as = run_as::resolve(common.user.as_deref())?;
    // Checks the archive, the fd budget and makes the directory before anything is traced.
    let workspace = ExtractWorkspace::create(&options, run_as.map(|r| (r.uid, r.gid)))?;
    let config = workspace.worker_config().clone();
    // Removed on every way out: by the drop on an error, by remove() below, and by the
    // stop-signal watcher when a second signal makes leakscope exit at once.
    if !options.keep {
        stop::remove_on_exit(workspace.root().to_owned());
    }

    // The worker is this very binary, so the marker lives in it.
    let exe = std::env::current_exe()?;
    let argv = worker_argv(&exe, &config, workload)?;
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
    // The watch lines take the bar's place on a terminal: the two would draw over each other.
    let progress = if watch.as_ref().is_some_and(WatchRequest::draws_lines) {
        Progress::without_bar(config.rounds, config.iterations)
    } else {
        Progress::rounds(config.rounds, config.iterations)
    };
    // Round lines go above the progress bar, or to stderr when stdout carries the JSON.
    let mut forward = if output.json_on_stdout() {
        Box::new(|line: String| eprintln!("{line}"))
    } else {
        progress.line_sink()
    };
    // The worker's last line carries its rounds for the report (`--html`), unprinted.
    let rounds = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&rounds);
    let lines = Box::new(move |line: String| match parse_rounds_line(&line) {
        Some(parsed) => *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(parsed),
        None => forward(line),
    });
    let target = Target::Spawn {
        argv,
        run_as,
        stdout: SpawnStdout::Lines(lines),
    };
    let mut diagnosed = trace_and_diagnose(target, common, marker, Some(progress), watch).await?;
    diagnosed.report.rounds = rounds.lock().unwrap_or_else(|e| e.into_inner()).take();
    diagnosed.report.project_growth(&DEFAULT_PROJECTION_POINTS);
    diagnosed.report.answer_suspects();
    let status = write_report(&mut diagnosed, common, &mut output)?;
    if options.keep {
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

/// `leakscope __extract-worker` with the flags that make it run `config`'s workload.
fn worker_argv(
    exe: &Path,
    config: &WorkerConfig,
    workload: &Workload,
) -> anyhow::Result<Vec<OsString>> {
    let mut argv = vec![exe.as_os_str().to_owned(), WORKER_SUBCOMMAND.into()];
    argv.extend(to_flags(&WorkerArgs {
        dir: config.dir.clone(),
        archive_file: config.archive_file.clone(),
        workload: workload.clone(),
        rounds_line: true,
    })?);
    Ok(argv)
}

/// The hidden `--untraced`: the same worker in the same kind of workspace, with no probe
/// loaded and no report, for the bench's untraced half. Its round lines go straight to stdout.
fn extract_untraced(options: &ExtractOptions, workload: &Workload) -> anyhow::Result<u8> {
    let workspace = ExtractWorkspace::create(options, None)?;
    let argv = worker_argv(
        &std::env::current_exe()?,
        workspace.worker_config(),
        workload,
    )?;
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status();
    if options.keep {
        eprintln!("leakscope extract: kept {}", workspace.keep().display());
    } else {
        workspace.remove()?;
    }
    let status = status?;
    if !status.success() {
        anyhow::bail!("the extraction worker failed ({status}); its message is above");
    }
    Ok(exit_code::OK)
}
