//! Judging a series of live amounts sampled at iteration boundaries: leak, plateau,
//! no-leak or inconclusive, and the per-iteration rate.
//!
//! A positive slope alone proves nothing: a cache filling up, one late allocation or noise
//! all have one. "Leak" demands sustained growth: over the judged window (the latter 60% of
//! the run after warm-up), cut into up to six stretches, the level must rise in all but at
//! most one stretch, no single stretch may carry most of the rise, and the whole rise must
//! clear both a floor (the smallest amount worth calling a leak) and three times the noise
//! around the fitted line. A material rise that is not sustained is a "plateau" unless it
//! came in one step (a one-time allocation), which is "no-leak".

use serde::Serialize;

/// Fewer iterations than this leave every verdict "inconclusive".
pub const MIN_ITERATIONS: usize = 10;
/// The judged window: the part of the run after warm-up that counts, as a fraction.
const WINDOW_FRACTION: f64 = 0.6;
const STRETCHES: usize = 6;
/// No single stretch (or, for plateaus, iteration) may carry more than this of the rise.
const MAX_SHARE_OF_ONE_STEP: f64 = 0.6;
const NOISE_MULTIPLE: f64 = 3.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    NoLeak,
    Plateau,
    Leak,
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NoLeak => "no-leak",
            Verdict::Plateau => "plateau",
            Verdict::Leak => "leak",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// The more alarming of two verdicts on one class (e.g. mapping count and bytes).
    pub fn worst(self, other: Verdict) -> Verdict {
        self.max(other)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Per iteration: over the judged window for a leak, over the last third of the run
    /// otherwise (what the program does now, not while it warmed up).
    pub rate: f64,
    /// One sentence saying why.
    pub why: String,
}

/// Least-squares slope of `ys` against 0, 1, 2, ...
pub fn slope(ys: &[f64]) -> f64 {
    fit(ys).0
}

/// (slope, residual standard deviation).
fn fit(ys: &[f64]) -> (f64, f64) {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return (0.0, 0.0);
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    let slope = sxy / sxx;
    let residual = ys
        .iter()
        .enumerate()
        .map(|(i, y)| (y - (mean_y + slope * (i as f64 - mean_x))).powi(2))
        .sum::<f64>()
        / n;
    (slope, residual.sqrt())
}

fn chunk_means(ys: &[f64], chunks: usize) -> Vec<f64> {
    (0..chunks)
        .map(|j| {
            let part = &ys[j * ys.len() / chunks..(j + 1) * ys.len() / chunks];
            part.iter().sum::<f64>() / part.len() as f64
        })
        .collect()
}

/// Judges `series` (one value per iteration boundary). `floor` is the smallest rise that
/// may count (2 resources, a few pages). A `doubt` (lost events: a lost close looks exactly
/// like a leak; iterations that could not be trusted) makes the verdict inconclusive, with
/// the doubt as its reason.
pub fn judge(series: &[f64], floor: f64, doubt: Option<&str>) -> Judgement {
    judge_in(series, floor, doubt, |amount| format!("{amount:.0}"))
}

/// [`judge`] for a series of bytes, so its reasons read "rose 5.6 MiB".
pub fn judge_bytes(series: &[f64], floor: f64, doubt: Option<&str>) -> Judgement {
    judge_in(series, floor, doubt, crate::units::bytes)
}

fn judge_in(
    series: &[f64],
    floor: f64,
    doubt: Option<&str>,
    amount: fn(f64) -> String,
) -> Judgement {
    let n = series.len();
    if n < 2 {
        return Judgement {
            verdict: Verdict::Inconclusive,
            rate: 0.0,
            why: format!("only {n} iteration(s)"),
        };
    }
    let warm_up = (n / 10).max(1).min(n - 1);
    let steady = n - warm_up;
    let window_start =
        n - ((steady as f64 * WINDOW_FRACTION).ceil() as usize).clamp(2.min(steady), steady);
    let window = &series[window_start..];
    let (window_slope, noise) = fit(window);
    let stretches = STRETCHES.min(window.len());
    let means = chunk_means(window, stretches);
    let rise = means[stretches - 1] - means[0];
    let needed = floor.max(NOISE_MULTIPLE * noise);
    let steps: Vec<f64> = means.windows(2).map(|w| w[1] - w[0]).collect();
    let rising = steps.iter().filter(|&&d| d > 0.0).count();
    let biggest = steps.iter().copied().fold(0.0, f64::max);
    let sustained = rise > 0.0
        && rise >= needed
        && rising + 1 >= steps.len()
        && (steps.len() < 2 || biggest <= MAX_SHARE_OF_ONE_STEP * rise);

    let recent_rate = slope(&series[n - (n / 3).max(2).min(n)..]);
    if n < MIN_ITERATIONS {
        return Judgement {
            verdict: Verdict::Inconclusive,
            rate: slope(series),
            why: format!("only {n} iterations (at least {MIN_ITERATIONS} are needed)"),
        };
    }
    if let Some(doubt) = doubt {
        return Judgement {
            verdict: Verdict::Inconclusive,
            rate: if sustained { window_slope } else { recent_rate },
            why: doubt.to_string(),
        };
    }
    if sustained {
        return Judgement {
            verdict: Verdict::Leak,
            rate: window_slope,
            why: format!(
                "rose {} over the last {} iterations, in {rising} of {} stretches",
                amount(rise),
                window.len(),
                steps.len()
            ),
        };
    }

    let head_len = (n / 20).max(1);
    let head = series[..head_len].iter().sum::<f64>() / head_len as f64;
    let total_rise = means[stretches - 1] - head;
    let biggest_step = series.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    if total_rise >= needed
        && total_rise > 0.0
        && biggest_step <= MAX_SHARE_OF_ONE_STEP * total_rise
    {
        Judgement {
            verdict: Verdict::Plateau,
            rate: recent_rate,
            why: format!("grew by {}, then stopped growing", amount(total_rise)),
        }
    } else if total_rise >= needed && total_rise > 0.0 {
        Judgement {
            verdict: Verdict::NoLeak,
            rate: recent_rate,
            why: format!(
                "grew by {} in a single step (a one-time allocation)",
                amount(total_rise)
            ),
        }
    } else {
        Judgement {
            verdict: Verdict::NoLeak,
            rate: recent_rate,
            why: "no sustained growth".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(n: usize, per: f64) -> Vec<f64> {
        (0..n).map(|i| 3.0 + per * i as f64).collect()
    }

    /// A deterministic pseudo-random jitter in [-1, 1].
    fn jitter(i: usize) -> f64 {
        let x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) % 2001) as f64 / 1000.0 - 1.0
    }

    #[test]
    fn steady_growth_is_a_leak_with_the_exact_rate() {
        let judgement = judge(&linear(1000, 1.0), 2.0, None);
        assert_eq!(judgement.verdict, Verdict::Leak);
        assert!((judgement.rate - 1.0).abs() < 1e-9, "{}", judgement.rate);
    }

    #[test]
    fn slow_stepwise_leak_is_still_a_leak() {
        let series: Vec<f64> = (0..1000).map(|i| (i / 100) as f64).collect();
        let judgement = judge(&series, 2.0, None);
        assert_eq!(judgement.verdict, Verdict::Leak, "{}", judgement.why);
        assert!((judgement.rate - 0.01).abs() < 0.002, "{}", judgement.rate);
    }

    #[test]
    fn bounded_cache_is_a_plateau() {
        let series: Vec<f64> = (0..1000).map(|i| i.min(50) as f64).collect();
        let judgement = judge(&series, 2.0, None);
        assert_eq!(judgement.verdict, Verdict::Plateau, "{}", judgement.why);
        assert_eq!(judgement.rate, 0.0);
        // Also when the cache fills well past warm-up.
        let series: Vec<f64> = (0..1000).map(|i| (i.min(600) / 10) as f64).collect();
        assert_eq!(judge(&series, 2.0, None).verdict, Verdict::Plateau);
    }

    #[test]
    fn one_late_allocation_is_no_leak() {
        for at in [500, 700, 900, 990] {
            let series: Vec<f64> = (0..1000).map(|i| if i >= at { 4.0 } else { 3.0 }).collect();
            assert_eq!(
                judge(&series, 2.0, None).verdict,
                Verdict::NoLeak,
                "step at {at}"
            );
            let big: Vec<f64> = (0..1000).map(|i| if i >= at { 1e6 } else { 0.0 }).collect();
            assert_eq!(
                judge(&big, 8192.0, None).verdict,
                Verdict::NoLeak,
                "big step at {at}"
            );
        }
    }

    #[test]
    fn noise_is_no_leak() {
        let series: Vec<f64> = (0..1000).map(|i| 50e6 + 2e6 * jitter(i)).collect();
        assert_eq!(
            judge(&series, 256.0 * 1024.0, None).verdict,
            Verdict::NoLeak
        );
        let churn: Vec<f64> = (0..1000).map(|i| 3.0 + (i % 3) as f64).collect();
        assert_eq!(judge(&churn, 2.0, None).verdict, Verdict::NoLeak);
    }

    #[test]
    fn noisy_growth_is_a_leak_within_five_percent() {
        let series: Vec<f64> = (0..1000)
            .map(|i| 50e6 + 65536.0 * i as f64 + 1e6 * jitter(i))
            .collect();
        let judgement = judge(&series, 256.0 * 1024.0, None);
        assert_eq!(judgement.verdict, Verdict::Leak);
        assert!(
            (judgement.rate / 65536.0 - 1.0).abs() < 0.05,
            "{}",
            judgement.rate
        );
    }

    #[test]
    fn leak_starting_mid_run_is_a_leak() {
        let series: Vec<f64> = (0..1000u32).map(|i| i.saturating_sub(400) as f64).collect();
        let judgement = judge(&series, 2.0, None);
        assert_eq!(judgement.verdict, Verdict::Leak, "{}", judgement.why);
        assert!((judgement.rate - 1.0).abs() < 0.05);
    }

    #[test]
    fn too_few_iterations_or_lost_events_are_inconclusive() {
        let judgement = judge(&linear(5, 1.0), 2.0, None);
        assert_eq!(judgement.verdict, Verdict::Inconclusive);
        assert!((judgement.rate - 1.0).abs() < 1e-9);
        assert_eq!(
            judge(&linear(1000, 1.0), 2.0, Some("3 events were lost")).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(judge(&[], 2.0, None).verdict, Verdict::Inconclusive);
        assert_eq!(judge(&linear(10, 1.0), 2.0, None).verdict, Verdict::Leak);
    }

    #[test]
    fn verdicts_render_as_the_contract_names() {
        let names: Vec<String> = [
            Verdict::Leak,
            Verdict::Plateau,
            Verdict::NoLeak,
            Verdict::Inconclusive,
        ]
        .iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
        assert_eq!(names, ["leak", "plateau", "no-leak", "inconclusive"]);
        assert_eq!(Verdict::Plateau.worst(Verdict::Leak), Verdict::Leak);
    }
}
