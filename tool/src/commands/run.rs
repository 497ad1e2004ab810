//! `leakscope run -- CMD`: start CMD under tracing and report on it.

use crate::{cli::RunArgs, run_as, session::Target};

use super::trace::{trace_and_diagnose, write_report};

pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let run_as = run_as::resolve(args.common.user.as_deref())?;
    let target = Target::Spawn {
        argv: args.command,
        run_as,
        stdout_lines: None,
    };
    let diagnosed = trace_and_diagnose(target, &args.common, None, None).await?;
    write_report(&diagnosed, &args.common, "", None)
}
