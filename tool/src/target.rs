//! Starting the traced command so that nothing it does is missed.
//!
//! The child is forked, reports its pid through a pipe, and then blocks on a second pipe
//! (the "gate") before it execs. The parent puts the pid in the kernel filter and only then
//! opens the gate, so the exec and every syscall after it are traced. `Command::spawn`
//! returns only after the exec, so it runs on its own thread while the parent waits for
//! the pid.

use std::{
    ffi::OsString,
    fs::File,
    io::{Read, Write},
    os::{fd::OwnedFd, unix::process::CommandExt},
    process::{Child, Command},
    thread::JoinHandle,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("cannot create a pipe to start the target: {0}")]
    Pipe(#[source] std::io::Error),
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the target process did not report its pid before exec")]
    NoPid,
}

/// Who the target runs as.
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// A forked child that has not exec'd yet.
pub struct GatedChild {
    pub pid: u32,
    gate: File,
    spawner: JoinHandle<std::io::Result<Child>>,
    command: String,
}

/// Forks `argv` and stops it before exec. Nothing of the target runs until
/// [`GatedChild::release`].
pub fn spawn_gated(
    argv: &[OsString],
    run_as: Option<RunAs>,
    pipe_stdout: bool,
) -> Result<GatedChild, TargetError> {
    let (mut pid_reader, pid_writer) = pipe()?;
    let (gate_reader, gate) = pipe()?;
    let command_text = argv
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");

    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    if pipe_stdout {
        command.stdout(std::process::Stdio::piped());
    }
    if let Some(RunAs { uid, gid }) = run_as {
        // std also drops root's supplementary groups (setgroups) before the setuid.
        command.uid(uid).gid(gid);
    }
    {
        use std::os::fd::AsRawFd;
        let pid_fd = pid_writer.as_raw_fd();
        let gate_fd = gate_reader.as_raw_fd();
        // SAFETY: only async-signal-safe calls (getpid, write, read) between fork and exec.
        // Both pipe ends are O_CLOEXEC, so the target never sees them after exec.
        unsafe {
            command.pre_exec(move || {
                let pid = libc::getpid().to_ne_bytes();
                if libc::write(pid_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                    return Err(std::io::Error::last_os_error());
                }
                let mut byte = 0u8;
                // EOF (parent gone) or a byte: either way, go on.
                libc::read(gate_fd, (&raw mut byte).cast(), 1);
                Ok(())
            })
        };
    }
    let spawner = std::thread::spawn(move || {
        // Keep our copies of the child's ends alive until spawn returns.
        let _keep = (pid_writer, gate_reader);
        command.spawn()
    });

    let mut pid = [0u8; 4];
    if pid_reader.read_exact(&mut pid).is_err() {
        // The child never got as far as pre_exec; spawn tells why.
        return Err(match spawner.join() {
            Ok(Err(source)) => TargetError::Spawn {
                command: command_text,
                source,
            },
            _ => TargetError::NoPid,
        });
    }
    Ok(GatedChild {
        pid: i32::from_ne_bytes(pid) as u32,
        gate: File::from(gate),
        spawner,
        command: command_text,
    })
}

impl GatedChild {
    /// Lets the child exec. Returns once the exec happened (or failed).
    pub fn release(mut self) -> Result<Child, TargetError> {
        let _ = self.gate.write_all(&[1]);
        drop(self.gate);
        match self.spawner.join() {
            Ok(Ok(child)) => Ok(child),
            Ok(Err(source)) => Err(TargetError::Spawn {
                command: self.command,
                source,
            }),
            Err(_) => Err(TargetError::NoPid),
        }
    }
}

fn pipe() -> Result<(File, OwnedFd), TargetError> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| TargetError::Pipe(e.into()))?;
    Ok((File::from(reader), writer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_waits_for_the_gate() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let path = marker.path().to_owned();
        std::fs::remove_file(&path).unwrap();
        let argv: Vec<OsString> = vec!["touch".into(), path.clone().into()];
        let gated = spawn_gated(&argv, None, false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!path.exists(), "the target ran before the gate opened");
        let mut child = gated.release().unwrap();
        assert!(child.wait().unwrap().success());
        assert!(path.exists());
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let argv: Vec<OsString> = vec!["/nonexistent/leakscope-test".into()];
        let err = spawn_gated(&argv, None, false)
            .and_then(GatedChild::release)
            .unwrap_err();
        assert!(matches!(err, TargetError::Spawn { .. }), "{err}");
    }
}
