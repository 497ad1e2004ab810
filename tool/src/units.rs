//! Human-readable units for site names and the text report.

/// Bytes in binary units: "512 B", "64 KiB", "1.5 MiB".
pub(crate) fn bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let sign = if value < 0.0 { "-" } else { "" };
    let mut magnitude = value.abs();
    let mut unit = 0;
    while magnitude >= 1024.0 && unit + 1 < UNITS.len() {
        magnitude /= 1024.0;
        unit += 1;
    }
    if unit == 0 || magnitude.fract() == 0.0 {
        format!("{sign}{magnitude:.0} {}", UNITS[unit])
    } else {
        format!("{sign}{magnitude:.1} {}", UNITS[unit])
    }
}

/// A count that may be fractional (a mean): "3", "2.5".
pub(crate) fn count(value: f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// An integer with thousands separators: "12,345".
pub(crate) fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate per iteration at the precision the data has, never rounded to zero:
/// "1.00", "0.25", "0.0125", and below 1 per 100 iterations "1 per 1,000 iterations".
pub(crate) fn count_rate(rate: f64) -> String {
    let magnitude = rate.abs();
    let sign = if rate < 0.0 { "-" } else { "" };
    if magnitude == 0.0 {
        "0".into()
    } else if magnitude >= 0.995 {
        format!("{rate:.2}")
    } else if magnitude >= 0.01 {
        // Three significant digits.
        let decimals = (2.0 - magnitude.log10().floor()) as usize;
        format!("{rate:.decimals$}")
    } else {
        format!(
            "{sign}1 per {} iterations",
            grouped(two_significant(1.0 / magnitude))
        )
    }
}

/// A fitted rate's inverse carries about two significant digits: 1005 reads as 1,000.
fn two_significant(value: f64) -> u64 {
    if value < 100.0 {
        return value.round() as u64;
    }
    let scale = 10f64.powi(value.log10().floor() as i32 - 1);
    ((value / scale).round() * scale) as u64
}

/// A rate from [`count_rate`] or [`bytes_rate`] with its "per iteration": "0.25 per
/// iteration", but "1 per 300 iterations" as it is.
pub(crate) fn per_iteration(rate: String) -> String {
    if rate.contains(" per ") {
        rate
    } else {
        format!("{rate} per iteration")
    }
}

/// Bytes per iteration, never rounded to zero: "64 KiB", "48 B", "1 B per 300 iterations".
pub(crate) fn bytes_rate(rate: f64) -> String {
    let magnitude = rate.abs();
    if magnitude == 0.0 {
        "0 B".into()
    } else if magnitude >= 10.0 {
        bytes(rate.round())
    } else if magnitude >= 0.5 {
        // Below 0.5 B, "1 B per N iterations" reads better; above it N would round to 1
        // ("1 B per 1 iterations" for 0.95 B).
        format!("{rate:.1} B")
    } else {
        let sign = if rate < 0.0 { "-" } else { "" };
        format!(
            "{sign}1 B per {} iterations",
            grouped(two_significant(1.0 / magnitude))
        )
    }
}

/// A duration in nanoseconds: "850ns", "12µs", "3.4ms", "2.0s".
pub(crate) fn duration_ns(ns: u64) -> String {
    let value = ns as f64;
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.0}µs", value / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", value / 1e6),
        _ => format!("{:.1}s", value / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(65536.0), "64 KiB");
        assert_eq!(bytes(1536.0 * 1024.0), "1.5 MiB");
        assert_eq!(bytes(-4096.0), "-4 KiB");
        assert_eq!(bytes(100.0), "100 B");
        assert_eq!(duration_ns(12_300), "12µs");
        assert_eq!(duration_ns(2_000_000_000), "2.0s");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(999), "999");
    }

    #[test]
    fn rates_keep_the_precision_the_data_has() {
        assert_eq!(count_rate(1.0), "1.00");
        assert_eq!(count_rate(3.0004), "3.00");
        assert_eq!(count_rate(0.25), "0.250");
        assert_eq!(count_rate(0.0125), "0.0125");
        assert_eq!(count_rate(0.001), "1 per 1,000 iterations");
        assert_eq!(count_rate(1.0 / 1005.0), "1 per 1,000 iterations");
        assert_eq!(count_rate(1.0 / 18_345.0), "1 per 18,000 iterations");
        assert_eq!(count_rate(1.0 / 45.0), "0.0222");
        assert_eq!(count_rate(0.0), "0");
        assert_eq!(count_rate(-0.5), "-0.500");
        assert_eq!(bytes_rate(65536.0), "64 KiB");
        assert_eq!(bytes_rate(48.0), "48 B");
        assert_eq!(bytes_rate(2.5), "2.5 B");
        assert_eq!(bytes_rate(0.01), "1 B per 100 iterations");
        assert_eq!(bytes_rate(0.948), "0.9 B");
        assert_eq!(bytes_rate(0.4), "1 B per 3 iterations");
    }
}
