//! The original report's projection: "memory growth per extraction -> at 100k / 1M
//! extractions". A few bytes per extraction look harmless; multiplied out to the number of
//! extractions a long-running program does, they are the bug.

use std::fmt;

use super::Report;

/// The report's projection points.
pub(crate) const DEFAULT_PROJECTION_POINTS: [u64; 2] = [100_000, 1_000_000];

/// A measured growth rate of one resource class.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct ClassGrowth {
    /// "rss", "mmap", "brk", ...
    pub(crate) class: String,
    pub(crate) bytes_per_iteration: f64,
}

impl ClassGrowth {
    pub(crate) fn new(class: impl Into<String>, bytes_per_iteration: f64) -> Self {
        ClassGrowth {
            class: class.into(),
            bytes_per_iteration,
        }
    }
}

/// The growth of one class after a given number of extractions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct ProjectedGrowth {
    pub(crate) extractions: u64,
    pub(crate) bytes: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct ProjectionRow {
    pub(crate) class: String,
    pub(crate) bytes_per_extraction: f64,
    /// One entry per projection point, in the order of [`Projection::points`].
    pub(crate) projected: Vec<ProjectedGrowth>,
}

/// The whole table; `Display` renders it as text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Projection {
    pub(crate) points: Vec<u64>,
    pub(crate) rows: Vec<ProjectionRow>,
}

/// Multiplies each class's rate out to each point (a straight line: the measured rate is the
/// steady-state one, and the projection says what it costs if it stays steady).
pub(crate) fn project(classes: &[ClassGrowth], points: &[u64]) -> Projection {
    let rows = classes
        .iter()
        .map(|growth| ProjectionRow {
            class: growth.class.clone(),
            bytes_per_extraction: growth.bytes_per_iteration,
            projected: points
                .iter()
                .map(|&extractions| ProjectedGrowth {
                    extractions,
                    bytes: growth.bytes_per_iteration * extractions as f64,
                })
                .collect(),
        })
        .collect();
    Projection {
        points: points.to_vec(),
        rows,
    }
}

impl Projection {
    /// The table as aligned text lines: a header, then one row per class.
    ///
    /// ```text
    /// class  per extraction  at 100k extractions  at 1M extractions
    /// rss          4.0 KiB             390.6 MiB            3.8 GiB
    /// ```
    pub(crate) fn format_rows(&self) -> Vec<String> {
        let mut table: Vec<Vec<String>> = Vec::with_capacity(self.rows.len() + 1);
        let mut header = vec!["class".to_owned(), "per extraction".to_owned()];
        header.extend(
            self.points
                .iter()
                .map(|&n| format!("at {} extractions", format_count(n))),
        );
        table.push(header);
        for row in &self.rows {
            let mut cells = vec![row.class.clone(), format_bytes(row.bytes_per_extraction)];
            cells.extend(row.projected.iter().map(|p| format_bytes(p.bytes)));
            table.push(cells);
        }

        let columns = table.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                table
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        table
            .iter()
            .map(|row| {
                let cells: Vec<String> = row
                    .iter()
                    .enumerate()
                    // The class name reads best on the left, the numbers line up on the right.
                    .map(|(c, cell)| match c {
                        0 => format!("{cell:<width$}", width = widths[c]),
                        _ => format!("{cell:>width$}", width = widths[c]),
                    })
                    .collect();
                cells.join("  ").trim_end().to_owned()
            })
            .collect()
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Memory growth per extraction, projected:")?;
        for line in self.format_rows() {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl Report {
    /// Multiplies the measured growth per iteration out to `points` iterations (`extract`
    /// calls an iteration an extraction).
    pub(crate) fn project_growth(&mut self, points: &[u64]) {
        self.projection = Some(project(&self.growth_rates(), points));
    }

    /// The classes the original report cared about, as measured.
    fn growth_rates(&self) -> Vec<ClassGrowth> {
        let classes = &self.classes;
        vec![
            ClassGrowth::new("rss", classes.rss.bytes_per_iteration),
            ClassGrowth::new(
                "mmap",
                classes.mmap.bytes_leaked_per_iteration.unwrap_or(0.0),
            ),
            ClassGrowth::new("brk", classes.brk.bytes_per_iteration),
        ]
    }
}

/// Bytes in binary units with one decimal: "512 B", "12.5 B", "4.0 KiB", "390.6 MiB",
/// "3.8 GiB". Negative values (shrinking) keep their sign.
pub(crate) fn format_bytes(bytes: f64) -> String {
    if !bytes.is_finite() {
        return "n/a".to_owned();
    }
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let magnitude = bytes.abs();
    if magnitude < 1024.0 {
        // Whole bytes print without a decimal; a rate like 12.5 B per extraction keeps it.
        return if bytes.fract() == 0.0 {
            format!("{bytes:.0} B")
        } else {
            format!("{bytes:.1} B")
        };
    }
    let mut value = bytes / 1024.0;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Extraction counts the way the report wrote them: 100k, 1M, 2.5M, 1234.
pub(crate) fn format_count(n: u64) -> String {
    let scaled = |divisor: u64, suffix: &str| {
        if n.is_multiple_of(divisor) {
            format!("{}{suffix}", n / divisor)
        } else {
            format!("{:.1}{suffix}", n as f64 / divisor as f64)
        }
    };
    match n {
        1_000_000_000.. => scaled(1_000_000_000, "G"),
        1_000_000.. => scaled(1_000_000, "M"),
        1_000.. if n.is_multiple_of(100) => scaled(1_000, "k"),
        _ => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(format_bytes(0.0), "0 B");
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(12.5), "12.5 B");
        assert_eq!(format_bytes(1024.0), "1.0 KiB");
        assert_eq!(format_bytes(4096.0), "4.0 KiB");
        assert_eq!(format_bytes(409_600_000.0), "390.6 MiB");
        assert_eq!(format_bytes(4_096_000_000.0), "3.8 GiB");
        assert_eq!(format_bytes(-65536.0), "-64.0 KiB");
        assert_eq!(format_bytes(f64::NAN), "n/a");
    }

    #[test]
    fn counts_read_like_the_report() {
        assert_eq!(format_count(100_000), "100k");
        assert_eq!(format_count(1_000_000), "1M");
        assert_eq!(format_count(2_500_000), "2.5M");
        assert_eq!(format_count(10_000), "10k");
        assert_eq!(format_count(1_234), "1234");
        assert_eq!(format_count(999), "999");
    }

    #[test]
    fn the_table_multiplies_out_each_class() {
        let projection = project(
            &[
                ClassGrowth::new("rss", 4096.0),
                ClassGrowth::new("mmap", 65536.0),
                ClassGrowth::new("brk", 0.0),
            ],
            &DEFAULT_PROJECTION_POINTS,
        );
        assert_eq!(projection.rows[1].projected[1].bytes, 65536.0 * 1e6);
        assert_eq!(
            projection.format_rows(),
            [
                "class  per extraction  at 100k extractions  at 1M extractions",
                "rss           4.0 KiB            390.6 MiB            3.8 GiB",
                "mmap         64.0 KiB              6.1 GiB           61.0 GiB",
                "brk               0 B                  0 B                0 B",
            ]
        );
        let text = projection.to_string();
        assert!(text.starts_with("Memory growth per extraction, projected:\n  class"));
    }

    #[test]
    fn the_table_serializes_for_the_json_report() {
        let projection = project(&[ClassGrowth::new("rss", 12.5)], &[100_000]);
        let json = serde_json::to_value(&projection).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "points": [100000],
                "rows": [{
                    "class": "rss",
                    "bytes_per_extraction": 12.5,
                    "projected": [{"extractions": 100000, "bytes": 1250000.0}]
                }]
            })
        );
    }
}
