//! Judging a series of live amounts sampled at iteration boundaries: leak, plateau,
//! no-leak or inconclusive, the per-iteration rate, and the smallest rate the run could
//! have detected.
//!
//! A positive slope alone proves nothing: a cache filling up, one late allocation or noise
//! all have one. "Leak" demands sustained, significant growth: over the judged window (the
//! latter 60% of the run after warm-up), cut into up to six stretches, the level must rise
//! in all but at most one stretch, no single stretch may carry most of the rise, the whole
//! rise must clear both a floor (the smallest amount worth calling a leak) and three times
//! the noise around the fitted line, and the fitted slope must stand [`T_CRITICAL`]
//! standard errors above zero. A material rise that is not sustained is a "plateau" unless
//! it came in one step (a one-time allocation), which is "no-leak".
//!
//! "No leak" is only ever said together with its detection limit: the smallest
//! per-iteration rate that would have passed those tests in this run. A class that moves in
//! coarse steps (the brk heap grows ~132 KiB at a time) cannot show a small leak in a short
//! run; when the limit is above what is worth ruling out ([`Scale::meaningful`]), the honest
//! verdict is "inconclusive", with the number of iterations that would settle it.

/// Fewer iterations than this leave every verdict "inconclusive".
pub(crate) const MIN_ITERATIONS: usize = 10;
/// The judged window: the part of the run after warm-up that counts, as a fraction.
const WINDOW_FRACTION: f64 = 0.6;
const STRETCHES: usize = 6;
/// No single stretch (or, for plateaus, iteration) may carry more than this of the rise.
const MAX_SHARE_OF_ONE_STEP: f64 = 0.6;
const NOISE_MULTIPLE: f64 = 3.0;
/// How many standard errors the window's slope must stand above zero to count as growth.
/// Series sampled at boundaries are autocorrelated, so the stretch rules above do the
/// heavy lifting; this test removes growth that is within the fit's own uncertainty.
pub(crate) const T_CRITICAL: f64 = 3.0;

pub(crate) use super::judgement::{Basis, Judgement, Line, Scale, Unit, Verdict};

/// Least-squares slope of `ys` against 0, 1, 2, ...
pub(crate) fn slope(ys: &[f64]) -> f64 {
    fit(ys).slope
}

struct Fit {
    slope: f64,
    /// The fitted value at the first point.
    at_start: f64,
    /// Residual standard deviation around the line.
    noise: f64,
    /// Standard error of the slope.
    slope_error: f64,
}

fn fit(ys: &[f64]) -> Fit {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return Fit {
            slope: 0.0,
            at_start: ys.first().copied().unwrap_or(0.0),
            noise: 0.0,
            slope_error: 0.0,
        };
    }
    // Fitted relative to the first value: a flat series of large totals (a GiB of mapped
    // bytes) then fits a slope of exactly 0, where its mean's rounding would leave noise
    // such as "-1 B per 51,000,000 iterations".
    let origin = ys[0];
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().map(|y| y - origin).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (y - origin - mean_y);
        sxx += dx * dx;
    }
    let slope = sxy / sxx;
    let squares = ys
        .iter()
        .enumerate()
        .map(|(i, y)| (y - origin - (mean_y + slope * (i as f64 - mean_x))).powi(2))
        .sum::<f64>();
    let dof = (n - 2.0).max(1.0);
    Fit {
        slope,
        at_start: origin + mean_y - slope * mean_x,
        noise: (squares / n).sqrt(),
        slope_error: (squares / dof / sxx).sqrt(),
    }
}

fn chunk_means(ys: &[f64], chunks: usize) -> Vec<f64> {
    (0..chunks)
        .map(|j| {
            let part = &ys[j * ys.len() / chunks..(j + 1) * ys.len() / chunks];
            part.iter().sum::<f64>() / part.len() as f64
        })
        .collect()
}

/// Iterations of warm-up left out of the judgement of a series of `n` boundaries.
pub(crate) fn warm_up(n: usize) -> usize {
    (n / 10).max(1).min(n.saturating_sub(1))
}

/// Where the judged window of a series of `n` boundaries starts.
pub(crate) fn window_start(n: usize) -> usize {
    let warm_up = warm_up(n);
    let steady = n - warm_up;
    n - ((steady as f64 * WINDOW_FRACTION).ceil() as usize).clamp(2.min(steady), steady)
}

/// The smallest slope the window tests would accept, for a window of `len` boundaries
/// whose fit has `slope_error` and whose rise must reach `needed`.
fn detection_limit(len: usize, needed: f64, slope_error: f64, scale: &Scale) -> f64 {
    let stretches = STRETCHES.min(len).max(1);
    // First to last stretch mean: (stretches - 1) stretch lengths apart.
    let span = len as f64 * (stretches - 1).max(1) as f64 / stretches as f64;
    let per_stretch = stretch_len(len);
    (needed / span)
        .max(scale.resolution / per_stretch)
        .max(T_CRITICAL * slope_error)
}

/// How the points of a series stand for iterations: one point every `stride` iterations,
/// `iterations` in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sampling {
    pub(crate) stride: u64,
    pub(crate) iterations: u64,
    /// The last point is the last boundary, closer than `stride` to the one before: it
    /// says what is live at the end, but is not judged on (a leak would sit below the
    /// line through the others, and look like noise).
    pub(crate) irregular_last: bool,
}

impl Sampling {
    /// One point per iteration, `points` of them.
    #[cfg(test)]
    pub(crate) fn every(points: usize) -> Sampling {
        Sampling {
            stride: 1,
            iterations: points as u64,
            irregular_last: false,
        }
    }

    /// The points of a series sampled at `iterations`' boundaries.
    pub(crate) fn of(iterations: &crate::iterations::Iterations) -> Sampling {
        let stride = iterations.stride.max(1);
        Sampling {
            stride,
            iterations: iterations.count() as u64,
            irregular_last: !(iterations.count().saturating_sub(1) as u64).is_multiple_of(stride),
        }
    }

    /// The first `points` points of a series of `len` sampled so.
    pub(crate) fn prefix(self, points: usize, len: usize) -> Sampling {
        let spanned =
            (points.saturating_sub(1) as u64 * self.stride + 1).min(points as u64 * self.stride);
        Sampling {
            iterations: spanned.min(self.iterations),
            irregular_last: self.irregular_last && points == len,
            ..self
        }
    }

    /// The points of a series sampled so, without its first `from`.
    pub(crate) fn skipping(self, from: usize) -> Sampling {
        Sampling {
            iterations: self.iterations.saturating_sub(from as u64 * self.stride),
            ..self
        }
    }

    /// Iterations spanned by `points` points (at most all of them).
    fn spanned(self, points: usize) -> u64 {
        (points as u64 * self.stride).min(self.iterations)
    }
}

/// Judges `series` (one value per iteration boundary) on `scale`.
#[cfg(test)]
pub(crate) fn judge(series: &[f64], scale: &Scale, doubt: Option<&str>) -> Judgement {
    judge_sampled(series, scale, doubt, Sampling::every(series.len()))
}

/// Judges `series` (one value per `sampling.stride` iteration boundaries) on `scale`. A
/// `doubt` (lost events: a lost close looks exactly like a leak; iterations that could not
/// be trusted) makes the verdict inconclusive, with the doubt as its reason.
///
/// The tests run on the points as they are (a rise per stretch, noise around the line,
/// the slope's standard error); what comes out per iteration (rates, the detection limit)
/// is per point divided by the stride, and iteration counts are the iterations the points
/// stand for. At stride 1 this is the judgement of every boundary.
pub(crate) fn judge_sampled(
    series: &[f64],
    scale: &Scale,
    doubt: Option<&str>,
    sampling: Sampling,
) -> Judgement {
    let series = match series.split_last() {
        Some((_, regular)) if sampling.irregular_last && regular.len() >= 2 => regular,
        _ => series,
    };
    let n = series.len();
    let stride = sampling.stride.max(1) as f64;
    let per_iteration = |per_point: f64| per_point / stride;
    let iterations = sampling.iterations;
    let inconclusive = |rate: f64, why: String, limit: Option<f64>, basis| Judgement {
        verdict: Verdict::Inconclusive,
        rate,
        why,
        limit,
        iterations_needed: None,
        basis,
    };
    if n < 2 {
        return inconclusive(0.0, format!("only {iterations} iteration(s)"), None, None);
    }
    let window = &series[window_start(n)..];
    let window_iterations = sampling.spanned(window.len());
    let Fit {
        slope: window_slope,
        at_start,
        noise,
        slope_error,
    } = fit(window);
    let basis = Basis {
        warm_up: warm_up(n),
        window: window_start(n)..n,
        line: Line {
            at_start,
            slope: window_slope,
        },
    };
    let stretches = STRETCHES.min(window.len());
    let means = chunk_means(window, stretches);
    let rise = means[stretches - 1] - means[0];
    let needed = scale.floor.max(NOISE_MULTIPLE * noise);
    let steps: Vec<f64> = means.windows(2).map(|w| w[1] - w[0]).collect();
    let rising = steps.iter().filter(|&&d| d > 0.0).count();
    let biggest = steps.iter().copied().fold(0.0, f64::max);
    let significant = window_slope > T_CRITICAL * slope_error;
    // A class that moves in coarse steps (glibc's brk by ~132 KiB) must take at least a step
    // every other stretch: a handful of steps over a long window cannot be told from a few
    // one-off allocations.
    let per_stretch = stretch_len(window.len());
    let steps_often_enough = window_slope * per_stretch >= 0.5 * scale.resolution;
    let sustained = rise > 0.0
        && steps_often_enough
        && rise >= needed
        && significant
        && rising + 1 >= steps.len()
        && (steps.len() < 2 || biggest <= MAX_SHARE_OF_ONE_STEP * rise);
    // Per point; `limit_rate` is per iteration.
    let limit = detection_limit(window.len(), needed, slope_error, scale);
    let limit_rate = per_iteration(limit);

    let recent_rate = slope(&series[n - (n / 3).max(2).min(n)..]);
    if n < MIN_ITERATIONS {
        return inconclusive(
            per_iteration(slope(series)),
            format!("only {iterations} iterations (at least {MIN_ITERATIONS} are needed)"),
            None,
            Some(basis),
        );
    }
    if let Some(doubt) = doubt {
        let rate = if sustained { window_slope } else { recent_rate };
        return inconclusive(
            per_iteration(rate),
            doubt.to_string(),
            Some(limit_rate),
            Some(basis),
        );
    }
    let judgement = |verdict, rate: f64, why| Judgement {
        verdict,
        rate: per_iteration(rate),
        why,
        limit: Some(limit_rate),
        iterations_needed: None,
        basis: Some(basis.clone()),
    };
    // Inconclusive for want of iterations: says how many would settle it.
    let undecided = |rate, why, iterations: u64| Judgement {
        iterations_needed: Some(iterations),
        ..judgement(Verdict::Inconclusive, rate, why)
    };
    if sustained && let Some(slowing) = slowing_down(window) {
        // A runtime warming up (a JIT, a garbage-collected heap finding its size) rises
        // ever more slowly; a leak rises at its own rate. Within one window the two can
        // look alike, and calling warm-up a leak fails someone's CI for nothing.
        return undecided(
            window_slope,
            format!(
                "rose {} over the last {} iterations, but ever more slowly ({} in the first \
                 half, {} in the second): it may level off; run more iterations to tell a \
                 leak from warm-up",
                scale.unit.amount(rise),
                window_iterations,
                scale.unit.rate(per_iteration(slowing.0)),
                scale.unit.rate(per_iteration(slowing.1)),
            ),
            iterations * 4,
        );
    }
    if sustained {
        let why = format!(
            "rose {} over the last {} iterations, in {rising} of {} stretches",
            scale.unit.amount(rise),
            window_iterations,
            steps.len()
        );
        if let Some(now) = speeding_up(window) {
            // A leak that started (or quickened) within the window: a line through the
            // whole window would average the flat part in and understate what an
            // iteration leaks now (a leak of 1 fd per iteration from 70 % of the run on
            // read 0.58). The second half is past the start: `sustained` allows at most
            // one flat stretch of six, so growth began within the first half.
            let half = window.len() / 2;
            let start = window_start(n) + half;
            return Judgement {
                basis: Some(Basis {
                    window: start..n,
                    line: Line {
                        at_start: now.at_start,
                        slope: now.slope,
                    },
                    ..basis.clone()
                }),
                ..judgement(
                    Verdict::Leak,
                    now.slope,
                    format!(
                        "{why}, faster in the later half ({} then {}): the rate is the later half's",
                        scale.unit.rate(per_iteration(slope(&window[..half]))),
                        scale.unit.rate(per_iteration(now.slope)),
                    ),
                )
            };
        }
        return judgement(Verdict::Leak, window_slope, why);
    }

    let head_len = (n / 20).max(1);
    let head = series[..head_len].iter().sum::<f64>() / head_len as f64;
    let total_rise = means[stretches - 1] - head;
    let biggest_step = series.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    // Growth that is not sustained by the stretch rules (a garbage-collected heap rises in
    // a sawtooth) but has not stopped either is neither a plateau nor no leak.
    let still_rising = rise >= needed
        && significant
        && recent_rate > limit
        && biggest_step <= MAX_SHARE_OF_ONE_STEP * rise;
    if still_rising {
        return undecided(
            recent_rate,
            format!(
                "rose {} over the last {} iterations, unevenly (in {rising} of {} stretches), \
                 and still rises at {}: run more iterations to tell a leak from a cache that \
                 is still filling",
                scale.unit.amount(rise),
                window_iterations,
                steps.len(),
                scale.unit.rate(per_iteration(recent_rate))
            ),
            iterations * 4,
        );
    }
    let grew = total_rise >= needed && total_rise > 0.0;
    let levelled_off = grew && biggest_step <= MAX_SHARE_OF_ONE_STEP * total_rise;
    // Growth that stopped inside the window leaves the window's line far from its points,
    // and that distance (the noise) grows with the run: its limit per iteration stays put,
    // and "run N iterations to settle it" would never settle it (4 KiB of brk per
    // iteration for the first half of 25,000 iterations asked for 59,900). What says the
    // growth stopped is the part after it: the run's last third, judged alone.
    let tail = &series[n - (n / 3).max(2).min(n)..];
    if levelled_off
        && let Some(tail_limit) = stopped_tail_limit(tail, scale)
        && per_iteration(tail_limit) <= scale.meaningful
        && per_iteration(tail_limit) < limit_rate
    {
        return Judgement {
            limit: Some(per_iteration(tail_limit)),
            ..judgement(
                Verdict::Plateau,
                recent_rate,
                format!(
                    "grew by {}, then stopped growing (no growth above {} over the last third)",
                    scale.unit.amount(total_rise),
                    scale.unit.rate(per_iteration(tail_limit))
                ),
            )
        };
    }
    if limit_rate > scale.meaningful {
        // "Stopped" and "flat" are claims about small rates: a class that moves in coarse
        // steps (a runtime committing its heap tens of MiB at a time) shows flat stretches
        // between steps whether it leaks or not. The limit falls roughly with the window's
        // length: this many iterations bring it down to what is worth ruling out.
        let what = if levelled_off {
            format!(
                "grew by {}, and rose no further in this run",
                scale.unit.amount(total_rise)
            )
        } else {
            flat_reason(grew, total_rise, scale)
        };
        let needed_iterations = (iterations as f64 * limit_rate / scale.meaningful).ceil() as u64;
        return undecided(
            recent_rate,
            format!(
                "{what}, but a leak below {} could not show in {iterations} iterations{}; \
                 run at least {} iterations to settle it",
                scale.unit.rate(limit_rate),
                resolution_note(scale, window.len(), limit),
                crate::units::grouped(needed_iterations)
            ),
            needed_iterations,
        );
    }
    if levelled_off {
        return judgement(
            Verdict::Plateau,
            recent_rate,
            format!(
                "grew by {}, then stopped growing",
                scale.unit.amount(total_rise)
            ),
        );
    }
    let what = flat_reason(grew, total_rise, scale);
    judgement(
        Verdict::NoLeak,
        recent_rate,
        format!("{what}: no leak above {}", scale.unit.rate(limit_rate)),
    )
}

/// The detection limit (per point) of `tail` alone, the run's last third, when it shows
/// no growth above it.
fn stopped_tail_limit(tail: &[f64], scale: &Scale) -> Option<f64> {
    if tail.len() < 2 * STRETCHES {
        return None;
    }
    let tail_fit = fit(tail);
    let needed = scale.floor.max(NOISE_MULTIPLE * tail_fit.noise);
    let limit = detection_limit(tail.len(), needed, tail_fit.slope_error, scale);
    (tail_fit.slope <= limit).then_some(limit)
}

/// Boundaries per stretch of a judged window of `len` boundaries.
fn stretch_len(len: usize) -> f64 {
    len as f64 / STRETCHES.min(len).max(1) as f64
}

/// Why a series that did not level off is flat: it grew in one step, or not at all.
fn flat_reason(grew: bool, total_rise: f64, scale: &Scale) -> String {
    if grew {
        format!(
            "grew by {} in a single step (a one-time allocation)",
            scale.unit.amount(total_rise)
        )
    } else {
        "no sustained growth".to_string()
    }
}

/// A second half of the window rising at less than this share of the first half's rate
/// (significantly) is growth that is levelling off.
const SLOWING_RATIO: f64 = 2.0 / 3.0;

/// (first-half slope, second-half slope) when the second half of the window rises
/// significantly slower than the first: growth that is levelling off.
fn slowing_down(window: &[f64]) -> Option<(f64, f64)> {
    if window.len() < 2 * STRETCHES {
        return None;
    }
    let (first, second) = window.split_at(window.len() / 2);
    let (a, b) = (fit(first), fit(second));
    let margin = T_CRITICAL * (a.slope_error.powi(2) + b.slope_error.powi(2)).sqrt();
    (a.slope > 0.0 && b.slope < SLOWING_RATIO * a.slope && a.slope - b.slope > margin)
        .then_some((a.slope, b.slope))
}

/// A second half of the window rising at more than this multiple of the first half's
/// rate (significantly) is a leak that started or quickened within the window.
const SPEEDING_RATIO: f64 = 1.5;

/// The fit of the window's second half when it rises significantly faster than the first:
/// the mirror of [`slowing_down`].
fn speeding_up(window: &[f64]) -> Option<Fit> {
    if window.len() < 2 * STRETCHES {
        return None;
    }
    let (first, second) = window.split_at(window.len() / 2);
    let (a, b) = (fit(first), fit(second));
    let margin = T_CRITICAL * (a.slope_error.powi(2) + b.slope_error.powi(2)).sqrt();
    (b.slope > 0.0 && b.slope > SPEEDING_RATIO * a.slope.max(0.0) && b.slope - a.slope > margin)
        .then_some(b)
}

/// Says when the class's step size is what limits the run.
fn resolution_note(scale: &Scale, window: usize, limit: f64) -> String {
    if scale.resolution / stretch_len(window) >= limit * 0.999 && scale.resolution > 1.0 {
        format!(
            ": it moves in steps of {}",
            scale.unit.amount(scale.resolution)
        )
    } else {
        String::new()
    }
}

#[cfg(test)]
#[path = "trend_tests.rs"]
mod tests;
