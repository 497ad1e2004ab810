//! Whether this process may load and attach eBPF tracing programs.
//!
//! Checked before anything else so a non-root user gets one clear line, not a verifier dump.

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// `None` when privileged enough; otherwise what is missing, for the error message.
pub(crate) fn missing_privilege() -> Option<&'static str> {
    // Unreadable status counts as no capabilities: the check then names what is missing.
    let effective = procfs::process::Process::myself()
        .and_then(|process| process.status())
        .map_or(0, |status| status.capeff);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        None
    } else {
        Some("CAP_BPF and CAP_PERFMON (or root)")
    }
}
