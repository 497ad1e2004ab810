//! `leakscope extract`: the original report's scenario, built in. A child process extracts
//! a tar archive N times per round into one directory, marking each iteration through a
//! uprobe'd function, and the parent traces it and answers the report's question.

use crate::{
    cli::{
        ExtractCommand,
        extract::{ExtractArgs, WorkerArgs},
        to_flags,
    },
    extract::{ExtractWorkspace, MARKER_SYMBOL, WORKER_SUBCOMMAND},
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
    let mut argv = vec![exe.clone().into_os_string(), WORKER_SUBCOMMAND.into()];
    argv.extend(to_flags(&WorkerArgs {
        dir: config.dir.clone(),
        archive_file: config.archive_file.clone(),
        workload: workload.clone(),
    })?);
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
    let mut diagnosed = trace_and_diagnose(target, common, marker, Some(progress), watch).await?;
    diagnosed.report.project_growth(&DEFAULT_PROJECTION_POINTS);
    diagnosed.report.answer_suspects();
    let status = write_report(&diagnosed, common, &mut output)?;
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
