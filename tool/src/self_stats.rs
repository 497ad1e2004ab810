//! leakscope's own cost, for the report's `self` block (issue 11's `self.peak_rss_bytes`,
//! `self.startup_ns`, `self.report_ns`): how much memory it took at its peak, how long it
//! took from its process start to probes attached and ready, and how long from the end of
//! the target (or of tracing) to the report.
//!
//! The two moments are marked by the session as they happen, once per process (a leakscope
//! process runs one session), so the session need not carry them through its results.

use std::{sync::OnceLock, time::Instant};

use crate::report::SelfStats;

/// Process start to "probes attached, target about to run" (or attached to), in ns.
static STARTUP_NS: OnceLock<Option<u64>> = OnceLock::new();
/// When leakscope learned that the target ended (or tracing stopped).
static TRACING_ENDED: OnceLock<Instant> = OnceLock::new();

/// Probes are attached and the target is tracked: the start-up is over. Only the first
/// call counts.
pub(crate) fn mark_ready() {
    STARTUP_NS.get_or_init(process_age_ns);
}

/// The target exited, or tracing stopped: the report's time starts. Only the first call counts.
pub(crate) fn mark_tracing_ended() {
    TRACING_ENDED.get_or_init(Instant::now);
}

/// The three figures as of now: call it just before the report is rendered, so the peak
/// includes the whole analysis.
pub(crate) fn now() -> SelfStats {
    SelfStats {
        peak_rss_bytes: peak_rss_bytes(),
        startup_ns: STARTUP_NS.get().copied().flatten(),
        report_ns: TRACING_ENDED
            .get()
            .map(|ended| u64::try_from(ended.elapsed().as_nanos()).unwrap_or(u64::MAX)),
    }
}

/// Returns the heap glibc keeps after large frees to the system. Parsing the kernel's BTF
/// (twice: for the offsets, and by the loader) takes about 40 MiB that is freed at once but
/// would otherwise stay resident for the whole run, next to the ring and the ledger.
pub(crate) fn give_back_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This process's VmHWM (the peak of its resident set) from /proc/self/status, in bytes.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = procfs::process::Process::myself().ok()?.status().ok()?;
    status.vmhwm.map(|kib| kib * 1024)
}

/// This process's resident set now (VmRSS), in bytes.
pub(crate) fn current_rss_bytes() -> Option<u64> {
    let status = procfs::process::Process::myself().ok()?.status().ok()?;
    status.vmrss.map(|kib| kib * 1024)
}

/// How long this process has existed, from the kernel's start time in /proc/self/stat.
/// That time is in clock ticks (usually 10 ms), so the age is exact to one tick.
fn process_age_ns() -> Option<u64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let now_ns =
        u64::try_from(now.tv_sec()).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec()).ok()?;
    age_ns(stat.starttime, procfs::ticks_per_second(), now_ns)
}

/// The start time is counted in ticks since boot on the same clock as CLOCK_BOOTTIME.
fn age_ns(start_ticks: u64, ticks_per_second: u64, now_boottime_ns: u64) -> Option<u64> {
    if ticks_per_second == 0 {
        return None;
    }
    let start_ns = u128::from(start_ticks) * 1_000_000_000 / u128::from(ticks_per_second);
    u64::try_from(u128::from(now_boottime_ns).checked_sub(start_ns)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_is_now_minus_the_start_in_ticks() {
        assert_eq!(age_ns(250, 100, 3_000_000_000), Some(500_000_000));
        assert_eq!(age_ns(0, 100, 7), Some(7));
        // A start after "now" (a clock mix-up) or no tick rate gives no figure, not a wrap.
        assert_eq!(age_ns(400, 100, 3_000_000_000), None);
        assert_eq!(age_ns(1, 0, 3_000_000_000), None);
    }

    #[test]
    fn this_process_has_a_peak_rss_at_least_its_current_one() {
        // Current first: other test threads allocate meanwhile, and a peak read after it
        // covers it (the kernel folds the resident set into VmHWM before it shrinks).
        let current = procfs::process::Process::myself()
            .unwrap()
            .status()
            .unwrap()
            .vmrss
            .unwrap()
            * 1024;
        let peak = peak_rss_bytes().expect("VmHWM in /proc/self/status");
        assert!(peak >= current, "peak {peak} < current {current}");
        // Touch 64 MiB more than the peak so far: VmHWM must follow.
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak_rss_bytes().unwrap();
        assert!(after >= 64 << 20, "VmHWM {after} after touching 64 MiB");
    }

    #[test]
    fn this_process_started_a_plausible_time_ago() {
        let age = process_age_ns().expect("start time in /proc/self/stat");
        let started = Instant::now();
        let later = process_age_ns().unwrap();
        // One tick of slack: the start time is truncated to ticks.
        let tick = 1_000_000_000 / procfs::ticks_per_second();
        assert!(later + tick >= age + u64::try_from(started.elapsed().as_nanos()).unwrap());
        assert!(age < 3_600 * 1_000_000_000, "age {age} ns");
    }
}
