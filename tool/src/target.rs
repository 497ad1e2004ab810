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
    os::{
        fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    process::{Child, Command},
    thread::JoinHandle,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum TargetError {
    #[error("cannot create a pipe to start the target")]
    Pipe(#[source] std::io::Error),
    #[error("cannot start `{command}`")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the target process did not report its pid before exec")]
    NoPid,
}

impl TargetError {
    /// A command that does not exist or cannot be executed is bad usage; the rest fails.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            TargetError::Spawn { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                crate::exit_code::USAGE
            }
            TargetError::Pipe(_) | TargetError::Spawn { .. } | TargetError::NoPid => {
                crate::exit_code::FAILURE
            }
        }
    }
}

/// Who the target runs as.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Where the target's stdout goes.
pub(crate) enum TargetStdout {
    /// Leakscope's own stdout (the terminal, usually).
    Inherit,
    /// Leakscope's stderr: stdout carries the JSON report (`--json -`) and must stay pure.
    Stderr,
    /// A pipe the caller reads ([`Child::stdout`]).
    Piped,
}

/// A forked child that has not exec'd yet. Dropping it without [`GatedChild::release`]
/// closes the gate: the child then exits without running the target, and is reaped.
pub(crate) struct GatedChild {
    pub(crate) pid: u32,
    gate: Option<File>,
    spawner: Option<JoinHandle<std::io::Result<Child>>>,
    command: String,
}

/// `program` made absolute when it is a relative path (`./app`): the kernel reports an exec
/// by the name it was given, and the name must still find the file after the target is
/// gone (it names the target's own frames then). The target's argv[0] stays as typed.
fn absolute_program(program: &OsString) -> std::path::PathBuf {
    let path = std::path::Path::new(program);
    if path.components().count() > 1 && path.is_relative() {
        std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
    } else {
        path.to_path_buf()
    }
}

/// Forks `argv` and stops it before exec. Nothing of the target runs until
/// [`GatedChild::release`].
///
/// The waiting child must never outlive leakscope: it holds no copy of the gate's write
/// end (so the gate reads end-of-file when leakscope dies, and the child exits), it dies
/// with its parent (PR_SET_PDEATHSIG) while it waits, and it closes leakscope's BPF fds
/// first, so a child left behind could not keep the probes attached either.
pub(crate) fn spawn_gated(
    argv: &[OsString],
    run_as: Option<RunAs>,
    stdout: TargetStdout,
) -> Result<GatedChild, TargetError> {
    let (mut pid_reader, pid_writer) = pipe()?;
    let (gate_reader, gate) = pipe()?;
    let command_text = argv
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");

    let mut command = Command::new(absolute_program(&argv[0]));
    command.arg0(&argv[0]).args(&argv[1..]);
    match stdout {
        TargetStdout::Inherit => {}
        TargetStdout::Stderr => {
            let stderr = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(TargetError::Pipe)?;
            command.stdout(stderr);
        }
        TargetStdout::Piped => {
            command.stdout(std::process::Stdio::piped());
        }
    }
    if let Some(RunAs { uid, gid }) = run_as {
        // std also drops root's supplementary groups (setgroups) before the setuid.
        command.uid(uid).gid(gid);
    }
    {
        let pid_fd = pid_writer.as_raw_fd();
        let gate_fd = gate_reader.as_raw_fd();
        // Closed in the child before it waits: our ends of the two pipes, and every BPF fd
        // (programs, links, maps, perf events). All are close-on-exec as well.
        let mut close_in_child = bpf_fds();
        close_in_child.extend([gate.as_raw_fd(), pid_reader.as_raw_fd()]);
        let parent = std::process::id() as libc::pid_t;
        let mask = crate::stop::original_mask().copied();
        // SAFETY: only async-signal-safe calls (pthread_sigmask, close, prctl, getppid,
        // getpid, write, read)
        // between fork and exec, on memory allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                // Leakscope blocks its stop signals (a watcher thread reads them); the
                // target must get them as it would without leakscope, also at the gate.
                if let Some(mask) = &mask {
                    libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
                }
                for &fd in &close_in_child {
                    libc::close(fd);
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then no signal comes.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ECANCELED));
                }
                let pid = libc::getpid().to_ne_bytes();
                if libc::write(pid_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                    return Err(std::io::Error::last_os_error());
                }
                let mut byte = 0u8;
                let read = loop {
                    let read = libc::read(gate_fd, (&raw mut byte).cast(), 1);
                    if read >= 0 || *libc::__errno_location() != libc::EINTR {
                        break read;
                    }
                };
                if read != 1 {
                    // End of file: leakscope gave up or died. The target must not run
                    // untraced.
                    return Err(std::io::Error::from_raw_os_error(libc::ECANCELED));
                }
                // Released: the target lives its own life from here (the death signal
                // would also fire when the spawning thread, not the process, ends).
                libc::prctl(libc::PR_SET_PDEATHSIG, 0 as libc::c_ulong);
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
        drop(gate);
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
        gate: Some(File::from(gate)),
        spawner: Some(spawner),
        command: command_text,
    })
}

impl GatedChild {
    /// Lets the child exec. Returns once the exec happened (or failed).
    pub(crate) fn release(mut self) -> Result<Child, TargetError> {
        if let Some(mut gate) = self.gate.take() {
            let _ = gate.write_all(&[1]);
        }
        match self.spawner.take().map(JoinHandle::join) {
            Some(Ok(Ok(child))) => Ok(child),
            Some(Ok(Err(source))) => Err(TargetError::Spawn {
                command: std::mem::take(&mut self.command),
                source,
            }),
            _ => Err(TargetError::NoPid),
        }
    }
}

impl Drop for GatedChild {
    fn drop(&mut self) {
        // Not released: the gate reads end-of-file, the child exits without exec, and
        // spawn reaps it.
        drop(self.gate.take());
        if let Some(spawner) = self.spawner.take() {
            let _ = spawner.join();
        }
    }
}

/// This process's BPF fds (programs, links, maps, BTF, perf events), made close-on-exec if
/// one is not already (the kernel and aya open them so; this makes sure).
fn bpf_fds() -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(entry.path()).ok()?;
            is_bpf_link(link.to_str()?).then_some(fd)
        })
        .inspect(|&fd| {
            // SAFETY: F_GETFD/F_SETFD on an fd number only read and set its flags.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        })
        .collect()
}

/// Whether a `/proc/PID/fd/N` link names a BPF object or a perf event (uprobe).
pub(crate) fn is_bpf_link(link: &str) -> bool {
    link.strip_prefix("anon_inode:").is_some_and(|kind| {
        let kind = kind.trim_start_matches('[');
        kind.starts_with("bpf") || kind.starts_with("btf") || kind.starts_with("perf_event")
    })
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
        let gated = spawn_gated(&argv, None, TargetStdout::Inherit).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!path.exists(), "the target ran before the gate opened");
        let mut child = gated.release().unwrap();
        assert!(child.wait().unwrap().success());
        assert!(path.exists());
    }

    #[test]
    fn an_abandoned_child_exits_without_running_the_target() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let path = marker.path().to_owned();
        std::fs::remove_file(&path).unwrap();
        let argv: Vec<OsString> = vec!["touch".into(), path.clone().into()];
        let gated = spawn_gated(&argv, None, TargetStdout::Inherit).unwrap();
        let pid = gated.pid;
        drop(gated);
        // Reaped by the dropped spawner: no such process any more.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(
            !path.exists(),
            "the target ran although the gate was never opened"
        );
    }

    #[test]
    fn the_waiting_child_holds_no_copy_of_the_gate() {
        let argv: Vec<OsString> = vec!["true".into()];
        let gated = spawn_gated(&argv, None, TargetStdout::Inherit).unwrap();
        let gate_fd = gated.gate.as_ref().unwrap().as_raw_fd();
        let gate_pipe = std::fs::read_link(format!("/proc/self/fd/{gate_fd}")).unwrap();
        // Give the child time to reach the gate (it reports its pid just before).
        std::thread::sleep(std::time::Duration::from_millis(50));
        for fd in std::fs::read_dir(format!("/proc/{}/fd", gated.pid)).unwrap() {
            let fd = fd.unwrap();
            if std::fs::read_link(fd.path()).unwrap() != gate_pipe {
                continue;
            }
            let info = std::fs::read_to_string(format!(
                "/proc/{}/fdinfo/{}",
                gated.pid,
                fd.file_name().to_str().unwrap()
            ))
            .unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|f| i32::from_str_radix(f.trim(), 8).unwrap())
                .unwrap();
            assert_ne!(
                flags & libc::O_ACCMODE,
                libc::O_WRONLY,
                "the child holds the gate's write end"
            );
        }
        gated.release().unwrap().wait().unwrap();
    }

    #[test]
    fn bpf_fds_are_recognised_by_their_link() {
        assert!(is_bpf_link("anon_inode:bpf-prog"));
        assert!(is_bpf_link("anon_inode:bpf_link"));
        assert!(is_bpf_link("anon_inode:bpf-map"));
        assert!(is_bpf_link("anon_inode:[perf_event]"));
        assert!(!is_bpf_link("anon_inode:[eventfd]"));
        assert!(!is_bpf_link("/dev/null"));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let argv: Vec<OsString> = vec!["/nonexistent/leakscope-test".into()];
        let err = spawn_gated(&argv, None, TargetStdout::Inherit)
            .and_then(GatedChild::release)
            .unwrap_err();
        assert!(matches!(err, TargetError::Spawn { .. }), "{err}");
    }
}
