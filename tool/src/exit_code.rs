//! The contract's exit statuses. Each error type says which one it ends with
//! (`exit_status()`); [`for_error`] finds that type in an error's chain.

use crate::{
    extract::ExtractError, probes::ProbeError, proc_snapshot::SnapshotError, session::TraceError,
    symbols::SymbolError, target::TargetError,
};

/// The report was written.
pub(crate) const OK: u8 = 0;
/// Any failure not listed below.
pub(crate) const FAILURE: u8 = 1;
/// Bad usage: flags, an unknown pid, user or symbol, a command that does not exist.
pub(crate) const USAGE: u8 = 2;
/// `--fail-on-leak` and a leak was found.
pub(crate) const LEAK_FOUND: u8 = 3;
/// Not enough privilege, or the kernel lacks a needed feature.
pub(crate) const NO_PRIVILEGE_OR_FEATURE: u8 = 4;
/// `--fail-on-leak`, no leak was found, but events were lost: the ledger is incomplete, so
/// "no leak" cannot be trusted. A CI run must never pass on it.
pub(crate) const INCOMPLETE: u8 = 5;

/// Tracing was interrupted by a stop signal before it could finish: twice (the target was
/// killed and the report may be cut short), or before the target started. As shells do,
/// 128 plus the signal's number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
pub(crate) const INTERRUPTED_BASE: u8 = 128;

pub(crate) fn interrupted(signal: nix::sys::signal::Signal) -> u8 {
    INTERRUPTED_BASE.saturating_add(signal as i32 as u8)
}

/// An error the user caused with the command line (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

impl UsageError {
    pub(crate) fn exit_status(&self) -> u8 {
        USAGE
    }
}

/// The exit status of a failed command: the outermost of leakscope's own errors in the
/// chain decides, through its `exit_status()`; an error of no such type (an I/O error with
/// context, say) is a plain failure.
pub(crate) fn for_error(error: &anyhow::Error) -> u8 {
    error.chain().find_map(own_status).unwrap_or(FAILURE)
}

fn own_status(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    if let Some(error) = cause.downcast_ref::<UsageError>() {
        return Some(error.exit_status());
    }
    if let Some(error) = cause.downcast_ref::<TraceError>() {
        return Some(error.exit_status());
    }
    if let Some(error) = cause.downcast_ref::<ExtractError>() {
        return Some(error.exit_status());
    }
    if let Some(error) = cause.downcast_ref::<ProbeError>() {
        return Some(error.exit_status());
    }
    if let Some(error) = cause.downcast_ref::<TargetError>() {
        return Some(error.exit_status());
    }
    if let Some(error) = cause.downcast_ref::<SnapshotError>() {
        return Some(error.exit_status());
    }
    cause
        .downcast_ref::<SymbolError>()
        .map(SymbolError::exit_status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn classifies_through_context() {
        let privilege = anyhow::Error::from(TraceError::Privilege("root")).context("tracing");
        assert_eq!(for_error(&privilege), NO_PRIVILEGE_OR_FEATURE);
        let pid: anyhow::Result<()> =
            Err(TraceError::Snapshot(SnapshotError::NoSuchProcess(9))).context("attach");
        assert_eq!(for_error(&pid.unwrap_err()), USAGE);
        assert_eq!(for_error(&anyhow::anyhow!("disk full")), FAILURE);
        let stopped =
            anyhow::Error::from(TraceError::Interrupted(nix::sys::signal::Signal::SIGTERM));
        assert_eq!(for_error(&stopped), 143);
        assert_eq!(interrupted(nix::sys::signal::Signal::SIGINT), 130);
        assert_eq!(interrupted(nix::sys::signal::Signal::SIGHUP), 129);
    }

    #[test]
    fn each_error_type_decides_its_status() {
        let no_btf = TraceError::Probe(ProbeError::Offsets(
            crate::kernel_offsets::OffsetsError::NoBtf,
        ));
        assert_eq!(for_error(&no_btf.into()), NO_PRIVILEGE_OR_FEATURE);
        let missing = TraceError::Target(TargetError::Spawn {
            command: "nope".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
        assert_eq!(for_error(&missing.into()), USAGE);
        let broken_pipe = TargetError::Spawn {
            command: "x".into(),
            source: std::io::ErrorKind::BrokenPipe.into(),
        };
        assert_eq!(for_error(&broken_pipe.into()), FAILURE);
        let twice: anyhow::Result<()> =
            Err(ExtractError::DuplicateEntry { name: "a".into() }).context("preparing the archive");
        assert_eq!(for_error(&twice.unwrap_err()), USAGE);
        assert_eq!(for_error(&UsageError("--user x".into()).into()), USAGE);
    }

    #[test]
    fn the_chain_names_each_cause_once() {
        let error = anyhow::Error::from(TraceError::Target(TargetError::Spawn {
            command: "nope".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        }));
        assert_eq!(format!("{error:#}"), "cannot start `nope`: no such file");
        let error = anyhow::Error::from(ExtractError::Workspace(std::io::Error::other("full")));
        assert_eq!(
            format!("{error:#}"),
            "preparing the extraction directory failed: full"
        );
    }
}
