//! `leakscope run -- CMD`: start CMD under tracing and report on it.

use crate::{
    cli::RunArgs,
    run_as,
    session::{SpawnStdout, Target},
    watch::WatchRequest,
};

use super::{
    output::ReportOutput,
    trace::{trace_and_diagnose, write_report},
};

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<u8> {
    // Before anything runs: a bad path must not cost the run.
    let mut output = ReportOutput::open(&args.common)?;
    let watch = WatchRequest::from_args(&args.common)?;
    let run_as = run_as::resolve(args.common.user.as_deref())?;
    // With the JSON on stdout, the target's stdout goes to stderr so stdout stays JSON.
    let stdout = if output.json_on_stdout() {
        SpawnStdout::Stderr
    } else {
        SpawnStdout::Inherit
    };
    let target = Target::Spawn {
        argv: args.command,
        run_as,
        stdout,
    };
    let mut diagnosed = trace_and_diagnose(target, &args.common, None, None, watch).await?;
    write_report(&mut diagnosed, &args.common, &mut output)
}
