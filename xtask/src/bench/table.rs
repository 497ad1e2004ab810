//! The bench's arithmetic and text: pairs of loop times become a median ratio and its range,
//! rows become a table, and the bars become met / NOT met lines. Pure, so tested.

use std::fmt::Write as _;

/// One setup's interleaved runs: `untraced_ns[i]` ran just before `traced_ns[i]`, both of
/// `iterations` iterations.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Pairs {
    pub(crate) iterations: u64,
    pub(crate) untraced_ns: Vec<u64>,
    pub(crate) traced_ns: Vec<u64>,
}

impl Pairs {
    /// traced / untraced, pair by pair: each pair shares the machine's mood of the moment.
    pub(crate) fn ratios(&self) -> Vec<f64> {
        self.untraced_ns
            .iter()
            .zip(&self.traced_ns)
            .filter(|(untraced, _)| **untraced > 0)
            .map(|(untraced, traced)| *traced as f64 / *untraced as f64)
            .collect()
    }

    pub(crate) fn median_ratio(&self) -> Option<f64> {
        median(&self.ratios())
    }

    pub(crate) fn ratio_range(&self) -> Option<(f64, f64)> {
        let ratios = self.ratios();
        let min = ratios.iter().copied().reduce(f64::min)?;
        let max = ratios.iter().copied().reduce(f64::max)?;
        Some((min, max))
    }

    fn us_per_iteration(&self, loops: &[u64]) -> Option<f64> {
        let per: Vec<f64> = loops
            .iter()
            .map(|ns| *ns as f64 / 1e3 / self.iterations.max(1) as f64)
            .collect();
        median(&per)
    }
}

/// The middle value (the mean of the two middle ones for an even count); None when empty.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The median of integer figures (durations, byte counts), as f64.
pub(crate) fn median_u64(values: &[u64]) -> Option<f64> {
    median(&values.iter().map(|v| *v as f64).collect::<Vec<_>>())
}

/// A row of a workload's table: a tracer measured, or why it could not be.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub(crate) setup: String,
    pub(crate) result: Result<Pairs, String>,
}

const HEADER: [&str; 5] = [
    "setup",
    "iterations",
    "µs/iter (median)",
    "median ratio",
    "min..max ratio",
];

/// The table: first the untraced loop (the first row's untraced halves), then each setup.
pub(crate) fn render_table(title: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let line = |out: &mut String, cells: [&str; 5]| {
        let cells = format!(
            "  {:<30} {:>10} {:>17} {:>13} {:>16}",
            cells[0], cells[1], cells[2], cells[3], cells[4]
        );
        let _ = writeln!(out, "{}", cells.trim_end());
    };
    line(&mut out, HEADER);
    if let Some(Row {
        result: Ok(first), ..
    }) = rows.first()
    {
        let us = first.us_per_iteration(&first.untraced_ns);
        line(
            &mut out,
            [
                "untraced",
                &first.iterations.to_string(),
                &us.map_or("-".into(), |us| format!("{us:.3}")),
                "1.00x",
                "",
            ],
        );
    }
    for row in rows {
        match &row.result {
            Ok(pairs) => {
                let us = pairs.us_per_iteration(&pairs.traced_ns);
                let range = pairs.ratio_range().map_or("-".into(), |(lo, hi)| {
                    format!("{}..{}", ratio(lo), ratio(hi))
                });
                line(
                    &mut out,
                    [
                        &row.setup,
                        &pairs.iterations.to_string(),
                        &us.map_or("-".into(), |us| format!("{us:.3}")),
                        &pairs.median_ratio().map_or("-".into(), ratio),
                        &range,
                    ],
                );
            }
            Err(why) => {
                let _ = writeln!(out, "  {:<30} not measured: {why}", row.setup);
            }
        }
    }
    out
}

/// `1.41x`, or `88x` once the digits after the point say nothing.
pub(crate) fn ratio(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.0}x")
    } else {
        format!("{value:.2}x")
    }
}

pub(crate) fn seconds(ns: f64) -> String {
    format!("{:.3} s", ns / 1e9)
}

pub(crate) fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// One of the bars: what was measured (None: nothing could be) against the limit.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bar {
    pub(crate) name: String,
    pub(crate) limit: String,
    pub(crate) measured: Option<String>,
    pub(crate) met: bool,
    /// Why the verdict is weak, e.g. pairs on both sides of the bar.
    pub(crate) note: Option<String>,
}

/// When the pairs' ratios lie on both sides of `bar`, the median's side is noise's choice:
/// say so next to the verdict.
pub(crate) fn spread_note(pairs: &Pairs, bar: f64) -> Option<String> {
    let (lo, hi) = pairs.ratio_range()?;
    (lo <= bar && hi > bar)
        .then(|| format!("(pairs {}..{} on both sides: noisy)", ratio(lo), ratio(hi)))
}

/// The bars, one line each, and the summary line.
pub(crate) fn render_bars(bars: &[Bar]) -> String {
    let mut out = String::from("bars (issue 11)\n");
    for bar in bars {
        let verdict = match (&bar.measured, bar.met) {
            (None, _) => "NOT measured",
            (Some(_), true) => "met",
            (Some(_), false) => "NOT met",
        };
        let line = format!(
            "  {:<34} {:>12} {:>14}   {verdict} {}",
            bar.name,
            bar.limit,
            bar.measured.as_deref().unwrap_or("-"),
            bar.note.as_deref().unwrap_or("")
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let missed: Vec<&str> = bars
        .iter()
        .filter(|b| b.measured.is_none() || !b.met)
        .map(|b| b.name.as_str())
        .collect();
    let met = bars.len() - missed.len();
    if missed.is_empty() {
        let _ = writeln!(out, "summary: all {} bars met", bars.len());
    } else {
        let _ = writeln!(
            out,
            "summary: {met} of {} bars met; NOT met: {}",
            bars.len(),
            missed.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(untraced: &[u64], traced: &[u64]) -> Pairs {
        Pairs {
            iterations: 1000,
            untraced_ns: untraced.to_vec(),
            traced_ns: traced.to_vec(),
        }
    }

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median_u64(&[10, 30, 20]), Some(20.0));
    }

    #[test]
    fn each_pair_is_its_own_ratio() {
        // A slow moment hits both halves of the third pair: its ratio stays 1.2.
        let p = pairs(&[100, 100, 300, 100, 100], &[120, 110, 360, 150, 130]);
        let ratios = p.ratios();
        assert_eq!(ratios.len(), 5);
        assert!((ratios[2] - 1.2).abs() < 1e-9);
        assert!((p.median_ratio().unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(p.ratio_range(), Some((1.1, 1.5)));
        // µs per iteration: the median traced loop (130 ns) over 1000 iterations.
        assert!((p.us_per_iteration(&p.traced_ns).unwrap() - 0.00013).abs() < 1e-12);
    }

    #[test]
    fn the_table_has_an_untraced_row_and_says_why_a_row_is_missing() {
        let rows = [
            Row {
                setup: "leakscope".into(),
                result: Ok(pairs(&[1_000_000, 1_000_000], &[1_400_000, 1_400_000])),
            },
            Row {
                setup: "perf trace".into(),
                result: Err("cannot be installed: no package".into()),
            },
        ];
        let text = render_table("storm", &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "storm");
        assert!(lines[1].contains("median ratio"), "{text}");
        assert!(lines[2].trim_start().starts_with("untraced"), "{text}");
        assert!(
            lines[2].contains("1.000") && lines[2].contains("1.00x"),
            "{text}"
        );
        assert!(
            lines[3].contains("1.400") && lines[3].contains("1.40x..1.40x"),
            "{text}"
        );
        assert!(
            lines[4].contains("perf trace")
                && lines[4].contains("not measured: cannot be installed"),
            "{text}"
        );
    }

    #[test]
    fn bars_say_met_or_not_and_the_summary_names_the_missed_ones() {
        let bar = |name: &str, measured: Option<&str>, met| Bar {
            name: name.into(),
            limit: "≤ 1".into(),
            measured: measured.map(Into::into),
            met,
            note: None,
        };
        let text = render_bars(&[
            bar("a", Some("0.5"), true),
            bar("b", Some("2"), false),
            bar("c", None, false),
        ]);
        assert!(text.contains("met\n"), "{text}");
        assert!(
            text.contains("NOT met\n") && text.contains("NOT measured\n"),
            "{text}"
        );
        assert!(
            text.ends_with("summary: 1 of 3 bars met; NOT met: b, c\n"),
            "{text}"
        );
        assert_eq!(
            render_bars(&[bar("a", Some("0.5"), true)]).lines().last(),
            Some("summary: all 1 bars met")
        );
    }

    #[test]
    fn a_bar_inside_the_pairs_range_is_called_noisy() {
        let spread = pairs(&[100, 100, 100], &[90, 104, 150]);
        assert_eq!(
            spread_note(&spread, 1.05).as_deref(),
            Some("(pairs 0.90x..1.50x on both sides: noisy)")
        );
        assert_eq!(spread_note(&spread, 1.5), None);
        assert_eq!(spread_note(&pairs(&[100], &[140]), 1.15), None);
        let text = render_bars(&[Bar {
            name: "a".into(),
            limit: "≤ 1.05x".into(),
            measured: Some("1.04x".into()),
            met: true,
            note: spread_note(&spread, 1.05),
        }]);
        assert!(
            text.contains("met (pairs 0.90x..1.50x on both sides: noisy)\n"),
            "{text}"
        );
    }

    #[test]
    fn ratios_keep_two_decimals_below_ten() {
        assert_eq!(ratio(1.234), "1.23x");
        assert_eq!(ratio(88.4), "88x");
        assert_eq!(seconds(270_000_000.0), "0.270 s");
        assert_eq!(mib(161.0 * 1024.0 * 1024.0), "161.0 MiB");
    }
}
