//! `leakscope attach --pid PID`: trace a running process until it exits, the duration
//! passes, or Ctrl-C.

use std::time::Duration;

use crate::{cli::AttachArgs, exit_code::UsageError, session::Target};

use super::trace::{trace_and_diagnose, write_report};

pub async fn attach(args: AttachArgs) -> anyhow::Result<u8> {
    let duration = match args.duration {
        Some(secs) if !(secs > 0.0 && secs.is_finite()) => {
            return Err(UsageError(format!(
                "--duration {secs}: give a positive number of seconds"
            ))
            .into());
        }
        secs => secs.map(Duration::from_secs_f64),
    };
    let target = Target::Attach {
        pid: args.pid,
        duration,
    };
    let diagnosed = trace_and_diagnose(target, &args.common, None, None).await?;
    write_report(&diagnosed, &args.common, "", None)
}
