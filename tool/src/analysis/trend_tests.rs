//! Judging series: leaks, plateaus, noise, warm-up and too-short runs.

use super::*;

const COUNT: Scale = Scale {
    floor: 2.0,
    resolution: 1.0,
    meaningful: 0.5,
    unit: Unit::Count,
};

fn bytes(floor: f64) -> Scale {
    Scale {
        floor,
        resolution: 4096.0,
        meaningful: 1e9,
        unit: Unit::Bytes,
    }
}

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
    let judgement = judge(&linear(1000, 1.0), &COUNT, None);
    assert_eq!(judgement.verdict, Verdict::Leak);
    assert!((judgement.rate - 1.0).abs() < 1e-9, "{}", judgement.rate);
}

#[test]
fn slow_stepwise_leak_is_still_a_leak() {
    let series: Vec<f64> = (0..1000).map(|i| (i / 100) as f64).collect();
    let judgement = judge(&series, &COUNT, None);
    assert_eq!(judgement.verdict, Verdict::Leak, "{}", judgement.why);
    assert!((judgement.rate - 0.01).abs() < 0.002, "{}", judgement.rate);
}

#[test]
fn bounded_cache_is_a_plateau() {
    let series: Vec<f64> = (0..1000).map(|i| i.min(50) as f64).collect();
    let judgement = judge(&series, &COUNT, None);
    assert_eq!(judgement.verdict, Verdict::Plateau, "{}", judgement.why);
    assert_eq!(judgement.rate, 0.0);
    // Also when the cache fills well past warm-up.
    let series: Vec<f64> = (0..1000).map(|i| (i.min(600) / 10) as f64).collect();
    assert_eq!(judge(&series, &COUNT, None).verdict, Verdict::Plateau);
}

#[test]
fn one_late_allocation_is_no_leak() {
    for at in [500, 700, 900, 990] {
        let series: Vec<f64> = (0..1000).map(|i| if i >= at { 4.0 } else { 3.0 }).collect();
        assert_eq!(
            judge(&series, &COUNT, None).verdict,
            Verdict::NoLeak,
            "step at {at}"
        );
        let big: Vec<f64> = (0..1000).map(|i| if i >= at { 1e6 } else { 0.0 }).collect();
        assert_eq!(
            judge(&big, &bytes(8192.0), None).verdict,
            Verdict::NoLeak,
            "big step at {at}"
        );
    }
}

#[test]
fn noise_is_no_leak() {
    let series: Vec<f64> = (0..1000).map(|i| 50e6 + 2e6 * jitter(i)).collect();
    assert_eq!(
        judge(&series, &bytes(256.0 * 1024.0), None).verdict,
        Verdict::NoLeak
    );
    let churn: Vec<f64> = (0..1000).map(|i| 3.0 + (i % 3) as f64).collect();
    assert_eq!(judge(&churn, &COUNT, None).verdict, Verdict::NoLeak);
}

#[test]
fn noisy_growth_is_a_leak_within_five_percent() {
    let series: Vec<f64> = (0..1000)
        .map(|i| 50e6 + 65536.0 * i as f64 + 1e6 * jitter(i))
        .collect();
    let judgement = judge(&series, &bytes(256.0 * 1024.0), None);
    assert_eq!(judgement.verdict, Verdict::Leak);
    assert!(
        (judgement.rate / 65536.0 - 1.0).abs() < 0.05,
        "{}",
        judgement.rate
    );
}

#[test]
fn growth_that_levels_off_is_not_called_a_leak() {
    // Warm-up of a garbage-collected runtime: fast at first, ever slower.
    let series: Vec<f64> = (0..5000)
        .map(|i| 50e6 + 2e6 * (1.0 - (-(i as f64) / 2500.0).exp()))
        .collect();
    let judgement = judge(&series, &bytes(256.0 * 1024.0), None);
    assert_eq!(
        judgement.verdict,
        Verdict::Inconclusive,
        "{}",
        judgement.why
    );
    assert!(
        judgement.why.contains("ever more slowly"),
        "{}",
        judgement.why
    );
    // A steady leak with the same noise is still a leak.
    let steady: Vec<f64> = (0..5000)
        .map(|i| 50e6 + 400.0 * i as f64 + 3e4 * jitter(i))
        .collect();
    assert_eq!(
        judge(&steady, &bytes(256.0 * 1024.0), None).verdict,
        Verdict::Leak
    );
}

#[test]
fn a_sawtooth_that_keeps_rising_is_neither_a_plateau_nor_no_leak() {
    // A collected heap: +3 per iteration, and every 50 iterations a collection gives
    // back a third of what it gained, unevenly across stretches.
    let series: Vec<f64> = (0..3000)
        .map(|i| {
            let i = i as f64;
            3.0 * i - 100.0 * (i / 50.0).floor()
                + if (i as u64 / 400).is_multiple_of(2) {
                    0.0
                } else {
                    -600.0
                }
        })
        .collect();
    let judgement = judge(&series, &COUNT, None);
    assert_ne!(judgement.verdict, Verdict::Plateau, "{}", judgement.why);
    assert_ne!(judgement.verdict, Verdict::NoLeak, "{}", judgement.why);
}

#[test]
fn leak_starting_mid_run_is_a_leak() {
    let series: Vec<f64> = (0..1000u32).map(|i| i.saturating_sub(400) as f64).collect();
    let judgement = judge(&series, &COUNT, None);
    assert_eq!(judgement.verdict, Verdict::Leak, "{}", judgement.why);
    assert!((judgement.rate - 1.0).abs() < 0.05);
}

#[test]
fn too_few_iterations_or_lost_events_are_inconclusive() {
    let judgement = judge(&linear(5, 1.0), &COUNT, None);
    assert_eq!(judgement.verdict, Verdict::Inconclusive);
    assert!((judgement.rate - 1.0).abs() < 1e-9);
    assert_eq!(
        judge(&linear(1000, 1.0), &COUNT, Some("3 events were lost")).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(judge(&[], &COUNT, None).verdict, Verdict::Inconclusive);
    assert_eq!(judge(&linear(10, 1.0), &COUNT, None).verdict, Verdict::Leak);
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

#[test]
fn a_strided_series_is_judged_per_iteration() {
    let every_8th = Sampling {
        stride: 8,
        iterations: 8000,
        irregular_last: false,
    };
    // 1 per iteration, sampled every 8th: 8 per point.
    let judgement = judge_sampled(&linear(1000, 8.0), &COUNT, None, every_8th);
    let exact = judge(&linear(8000, 1.0), &COUNT, None);
    assert_eq!(judgement.verdict, Verdict::Leak);
    assert!((judgement.rate - 1.0).abs() < 1e-9, "{}", judgement.rate);
    // The same window as the exact run's, in iterations.
    assert!(
        judgement.why.contains("over the last 4320 iterations"),
        "{}",
        judgement.why
    );
    assert!(
        exact.why.contains("over the last 4320 iterations"),
        "{}",
        exact.why
    );
    // A flat series: the limit per iteration is the exact run's (it rests on the floor
    // over the window and the step per stretch, both the same in iterations).
    let flat = judge_sampled(&vec![3.0; 1000], &COUNT, None, every_8th);
    let flat_exact = judge(&vec![3.0; 8000], &COUNT, None);
    assert_eq!(flat.verdict, Verdict::NoLeak);
    let (a, b) = (flat.limit.unwrap(), flat_exact.limit.unwrap());
    assert!((a / b - 1.0).abs() < 0.01, "{a} / {b}");
    // The last point, closer than a stride, is not fitted: a leak stays exact.
    let mut series = linear(1000, 8.0);
    series.push(series[999] + 3.0);
    let irregular = Sampling {
        iterations: 8004,
        irregular_last: true,
        ..every_8th
    };
    let judgement = judge_sampled(&series, &COUNT, None, irregular);
    assert!((judgement.rate - 1.0).abs() < 1e-9, "{}", judgement.rate);
}

#[test]
fn a_flat_series_of_large_totals_fits_no_slope() {
    for value in [1.0e9 + 0.5, 3_221_225_472.0, 7.0e15 + 1.0] {
        let ys = vec![value; 51_001];
        let fitted = fit(&ys);
        assert_eq!(fitted.slope, 0.0, "{value}");
        assert_eq!(fitted.noise, 0.0, "{value}");
    }
}

#[test]
fn a_leak_that_starts_late_has_the_rate_it_leaks_at_once_started() {
    // Flat for 70 % of the run, then one per iteration: a line through the whole window
    // read 0.58.
    let series: Vec<f64> = (0..2000).map(|i| (i.max(1400) - 1400) as f64).collect();
    let judgement = judge(&series, &COUNT, None);
    assert_eq!(judgement.verdict, Verdict::Leak, "{}", judgement.why);
    assert!((judgement.rate - 1.0).abs() < 0.01, "{}", judgement.rate);
    assert!(
        judgement.why.contains("faster in the later half"),
        "{}",
        judgement.why
    );
    let basis = judgement.basis.unwrap();
    assert_eq!(basis.window, 1460..2000);
    assert!((basis.line.slope - 1.0).abs() < 0.01, "{:?}", basis.line);
}

#[test]
fn a_steady_leak_with_noise_keeps_the_whole_window_rate() {
    for per in [0.1, 1.0, 64.0] {
        let series: Vec<f64> = (0..3000)
            .map(|i| per * i as f64 + 5.0 * per * jitter(i))
            .collect();
        let judgement = judge(&series, &COUNT, None);
        assert_eq!(judgement.verdict, Verdict::Leak, "{per}: {}", judgement.why);
        assert!(
            !judgement.why.contains("faster"),
            "{per}: {}",
            judgement.why
        );
        assert!(
            (judgement.rate - per).abs() < 0.02 * per,
            "{per}: {}",
            judgement.rate
        );
    }
}

#[test]
fn growth_that_stopped_mid_run_is_a_plateau_however_long_the_run() {
    // 4 KiB per iteration for the first half, then nothing: the window's line misses the
    // hockey stick by far, which kept the limit above what is worth ruling out at every
    // length ("run at least 59,900 iterations" after 25,000).
    let scale = Scale {
        floor: 65536.0,
        resolution: 4096.0,
        meaningful: 64.0,
        unit: Unit::Bytes,
    };
    for n in [4000, 25_000] {
        let series: Vec<f64> = (0..n).map(|i| 4096.0 * i.min(n / 2) as f64).collect();
        let judgement = judge(&series, &scale, None);
        assert_eq!(
            judgement.verdict,
            Verdict::Plateau,
            "{n}: {}",
            judgement.why
        );
        assert!(
            judgement.limit.unwrap() <= 64.0,
            "{n}: {:?}",
            judgement.limit
        );
    }
}

#[test]
fn a_tail_that_still_rises_is_no_plateau() {
    // Fast growth, then a slow leak of 0.2 per iteration that goes on: never a plateau.
    let series: Vec<f64> = (0..6000)
        .map(|i| {
            if i < 2000 {
                i as f64
            } else {
                2000.0 + 0.2 * (i - 2000) as f64
            }
        })
        .collect();
    let judgement = judge(&series, &COUNT, None);
    assert_ne!(judgement.verdict, Verdict::Plateau, "{}", judgement.why);
    assert_ne!(judgement.verdict, Verdict::NoLeak, "{}", judgement.why);
}
