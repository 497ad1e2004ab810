//! The live view as text: a header and one line per class. The header carries a UTC
//! timestamp, so blocks appended to a log keep the history readable.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::units;

use super::rows::{LiveView, Row};

/// The block for one interval, each line ending in a newline.
pub(crate) fn render(view: &LiveView) -> Vec<String> {
    let mut lines = vec![header(view)];
    let too_few = view.too_few_iterations();
    for row in &view.rows {
        lines.push(row_line(row, view.iterations, too_few));
    }
    lines
}

fn header(view: &LiveView) -> String {
    let what = if view.is_final { "final" } else { "so far" };
    let mut line = format!(
        "leakscope {} {what}: pid {}",
        utc(view.taken_at),
        view.subject.pid
    );
    if !view.subject.command.is_empty() {
        line.push_str(&format!(" ({})", view.subject.command));
    }
    line.push_str(&format!(
        ", traced {:.0} s, {} iterations",
        view.elapsed.as_secs_f64(),
        units::grouped(view.iterations as u64)
    ));
    if view.lost_events > 0 {
        line.push_str(&format!(
            ", {} events lost (verdicts inconclusive)",
            units::grouped(view.lost_events)
        ));
    }
    if let Some(cost) = view.cost {
        line.push_str(&format!(
            " (copy {:.0} ms, analysis {:.0} ms",
            cost.snapshot.as_secs_f64() * 1e3,
            cost.analysis.as_secs_f64() * 1e3
        ));
        if let Some(bytes) = view.own_rss_bytes {
            line.push_str(&format!(", leakscope RSS {}", units::bytes(bytes as f64)));
        }
        line.push(')');
    }
    if view.skipped > 0 {
        line.push_str(&format!(
            ", {} intervals skipped (the analysis took longer than the interval)",
            view.skipped
        ));
    }
    line
}

fn row_line(row: &Row, iterations: usize, too_few: bool) -> String {
    let mut live = Vec::new();
    if let Some(n) = row.live {
        live.push(units::grouped(n));
    }
    if let Some(bytes) = row.bytes {
        live.push(units::bytes(bytes as f64));
    }
    let live = if live.is_empty() {
        "-".to_string()
    } else {
        live.join(" / ")
    };
    let verdict = if too_few {
        "too few iterations yet".to_string()
    } else {
        let mut rates = Vec::new();
        if let Some(rate) = row.rate {
            rates.push(per_iter(units::count_rate(rate)));
        }
        if let Some(rate) = row.bytes_rate {
            rates.push(per_iter(units::bytes_rate(rate)));
        }
        format!("{:<28} {}", rates.join("  "), row.verdict.as_str())
    };
    format!(
        "  {:<8} live {:<22} iterations {:<8} {verdict}",
        row.class.name(),
        live,
        units::grouped(iterations as u64),
    )
    .trim_end()
    .to_string()
}

/// "0.25/iter", but "1 B per 300 iterations" as it is.
fn per_iter(rate: String) -> String {
    if rate.contains(" per ") {
        rate
    } else {
        format!("{rate}/iter")
    }
}

/// "2026-11-27 14:32:05 UTC".
pub(crate) fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_rate_below_one_per_iteration_keeps_its_own_wording() {
        assert_eq!(per_iter(units::count_rate(0.25)), "0.250/iter");
        assert_eq!(
            per_iter(units::bytes_rate(-1.0 / 1_400_000.0)),
            "-1 B per 1,400,000 iterations"
        );
    }

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_789_925);
        assert_eq!(utc(t), "2026-11-27 14:32:05 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc(leap), "2000-02-29 00:00:00 UTC");
    }
}
