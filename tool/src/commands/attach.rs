//! `leakscope attach --pid PID`: trace a running process until it exits, the duration
//! passes, or a stop signal (which only stops tracing: attach never signals the target).

use std::time::Duration;

use crate::{cli::AttachArgs, exit_code::UsageError, session::Target, watch::WatchRequest};

use super::{
    output::ReportOutput,
    trace::{trace_and_diagnose, write_report},
};

pub(crate) async fn attach(args: AttachArgs) -> anyhow::Result<u8> {
    if args.common.user.is_some() {
        return Err(UsageError(
            "--user is for run and extract: attach traces the process as whoever it runs as".into(),
        )
        .into());
    }
    let duration = match args.duration {
        Some(secs) if !(secs > 0.0 && secs.is_finite()) => {
            return Err(UsageError(format!(
                "--duration {secs}: give a positive number of seconds"
            ))
            .into());
        }
        secs => secs.map(Duration::from_secs_f64),
    };
    refuse_untraceable(args.pid)?;
    let mut output = ReportOutput::open(&args.common)?;
    let watch = WatchRequest::from_args(&args.common)?;
    let target = Target::Attach {
        pid: args.pid,
        duration,
    };
    let mut diagnosed = trace_and_diagnose(target, &args.common, None, None, watch).await?;
    write_report(&mut diagnosed, &args.common, &mut output)
}

/// The kernel's flag for its own threads in /proc/PID/stat.
const PF_KTHREAD: u32 = 0x0020_0000;

/// Processes attach cannot give a true report on: a kernel thread makes no syscalls of its
/// own; leakscope itself and its ancestors would have leakscope's own work traced (and an
/// ancestor waits for leakscope, so tracing would never end). A pid that does not exist is
/// left to the session, which says so.
fn refuse_untraceable(pid: u32) -> Result<(), UsageError> {
    let own = std::process::id();
    if pid == own {
        return Err(UsageError(format!(
            "--pid {pid} is leakscope itself: give the pid of the program to trace"
        )));
    }
    let Ok(process) = procfs::process::Process::new(pid as i32) else {
        return Ok(());
    };
    if let Ok(stat) = process.stat()
        && stat.flags & PF_KTHREAD != 0
    {
        return Err(UsageError(format!(
            "--pid {pid} is a kernel thread ({}): attach traces user processes only",
            stat.comm
        )));
    }
    if let Some(comm) = ancestor(own, pid) {
        return Err(UsageError(format!(
            "--pid {pid} is an ancestor of leakscope ({comm}): it would trace leakscope's own work, \
             and it waits for leakscope; give the pid of the program to trace"
        )));
    }
    Ok(())
}

/// The name of `pid` when it is an ancestor of `of`.
fn ancestor(of: u32, pid: u32) -> Option<String> {
    let mut current = of as i32;
    // Bounded, in case /proc changes under us.
    for _ in 0..4096 {
        let stat = procfs::process::Process::new(current).ok()?.stat().ok()?;
        if stat.ppid <= 0 {
            return None;
        }
        if stat.ppid as u32 == pid {
            return procfs::process::Process::new(stat.ppid)
                .ok()
                .and_then(|p| p.stat().ok())
                .map(|s| s.comm);
        }
        current = stat.ppid;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itself_its_parent_and_kernel_threads_are_refused() {
        assert!(refuse_untraceable(std::process::id()).is_err());
        assert!(refuse_untraceable(std::os::unix::process::parent_id()).is_err());
        assert!(refuse_untraceable(2).is_err());
        // A child of ours is fine.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let verdict = refuse_untraceable(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(verdict.is_ok(), "{verdict:?}");
        assert!(
            refuse_untraceable(999_999_999).is_ok(),
            "left to the session"
        );
    }
}
