//! Human-readable units for site names and the text report.

/// Bytes in binary units: "512 B", "64 KiB", "1.5 MiB".
pub fn bytes(value: f64) -> String {
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

/// A duration in nanoseconds: "850ns", "12µs", "3.4ms", "2.0s".
pub fn duration_ns(ns: u64) -> String {
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
    }
}
