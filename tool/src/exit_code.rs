//! The contract's exit statuses, decided from an error's chain in one place.

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

pub(crate) fn for_error(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<UsageError>() || cause.is::<SymbolError>() {
            return USAGE;
        }
        if let Some(extract) = cause.downcast_ref::<ExtractError>() {
            return extract.exit_code() as u8;
        }
        // TraceError wraps transparently, which hides the wrapped error from the chain:
        // look inside it as well as at a bare one.
        let (snapshot, target) = match cause.downcast_ref::<TraceError>() {
            Some(TraceError::Privilege(_)) => return NO_PRIVILEGE_OR_FEATURE,
            Some(TraceError::ProcDenied { .. }) => return NO_PRIVILEGE_OR_FEATURE,
            Some(TraceError::Interrupted(signal)) => return interrupted(*signal),
            Some(TraceError::Symbol(_)) => return USAGE,
            Some(TraceError::Probe(probe)) if probe.is_kernel_refusal() => {
                return NO_PRIVILEGE_OR_FEATURE;
            }
            Some(TraceError::Probe(ProbeError::Marker { .. })) => return USAGE,
            Some(TraceError::Snapshot(snapshot)) => (Some(snapshot), None),
            Some(TraceError::Target(target)) => (None, Some(target)),
            _ => (
                cause.downcast_ref::<SnapshotError>(),
                cause.downcast_ref::<TargetError>(),
            ),
        };
        if let Some(SnapshotError::NoSuchProcess(_)) = snapshot {
            return USAGE;
        }
        if let Some(TargetError::Spawn { source, .. }) = target
            && matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            )
        {
            return USAGE;
        }
    }
    FAILURE
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
}
