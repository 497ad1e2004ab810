//! The chart model on synthetic series: the window, warm-up and fitted line drawn are
//! those the judgement used.

use super::*;
use crate::analysis::scales::COUNT;
use crate::analysis::trend::{self, Sampling};
use crate::iterations::{IterationSource, Iterations};

fn iterations(points: usize, stride: u64) -> Iterations {
    Iterations {
        boundaries: (0..points as u64).collect(),
        stride,
        total: (points - 1) * stride as usize + 1,
        recent: None,
        source: IterationSource::Symbol,
        detail: String::new(),
        confidence: 1.0,
        auto_path: None,
        coverage: None,
        candidates: Vec::new(),
        unconvincing: None,
        chosen_from_events: None,
        loops: Vec::new(),
    }
}

fn panel(values: &[f64], stride: u64) -> Panel {
    let iterations = iterations(values.len(), stride);
    let judgement = trend::judge_sampled(values, &COUNT, None, Sampling::of(&iterations));
    let series = Judged::new(0, values);
    Panel::new("live fds", Unit::Count, &series, &judgement, &iterations)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * a.abs().max(1.0)
}

#[test]
fn a_leak_draws_the_window_and_the_line_it_was_judged_on() {
    let values: Vec<f64> = (0..100).map(|i| 5.0 + i as f64).collect();
    let panel = panel(&values, 1);
    assert_eq!(panel.verdict, Verdict::Leak);
    assert!(close(panel.rate, 1.0), "{}", panel.rate);
    // 10 points of warm-up, the window the latter 60% of the rest: points 46..100.
    assert_eq!(panel.warm_up_end, Some(10.0));
    assert_eq!(panel.window, Some((46.0, 99.0)));
    let [(x0, y0), (x1, y1)] = panel.fit.unwrap();
    assert_eq!((x0, x1), (46.0, 99.0));
    assert!(close(y0, 51.0) && close(y1, 104.0), "{y0} {y1}");
    assert_eq!(panel.points.len(), 100);
    assert_eq!(panel.points[99], (99.0, 104.0));
}

#[test]
fn points_stand_at_the_iterations_of_their_stride() {
    let values: Vec<f64> = (0..100).map(|i| 8.0 * i as f64).collect();
    let panel = panel(&values, 8);
    assert_eq!(panel.verdict, Verdict::Leak);
    assert!(close(panel.rate, 1.0), "{}", panel.rate);
    assert_eq!(panel.window, Some((46.0 * 8.0, 99.0 * 8.0)));
    let [(_, y0), (_, y1)] = panel.fit.unwrap();
    // The line's slope per iteration is the rate the verdict gives.
    assert!(close((y1 - y0) / (53.0 * 8.0), panel.rate));
}

#[test]
fn a_flat_series_draws_a_flat_line_at_its_level() {
    let values: Vec<f64> = (0..60).map(|i| 7.0 + (i % 2) as f64).collect();
    let panel = panel(&values, 1);
    assert_eq!(panel.verdict, Verdict::NoLeak);
    let [(_, y0), (_, y1)] = panel.fit.unwrap();
    assert!(
        (y0 - 7.5).abs() < 0.1 && (y1 - 7.5).abs() < 0.1,
        "{y0} {y1}"
    );
}

#[test]
fn a_run_too_short_to_fit_draws_its_points_only() {
    let panel = panel(&[3.0], 1);
    assert_eq!(panel.verdict, Verdict::Inconclusive);
    assert_eq!(
        (panel.window, panel.fit, panel.warm_up_end),
        (None, None, None)
    );
    assert_eq!(panel.points, vec![(0.0, 3.0)]);
}

#[test]
fn a_limit_pinned_leak_draws_its_climb() {
    // Rises one per point to 50, then stays at the wall.
    let values: Vec<f64> = (0..100).map(|i| (i as f64).min(50.0)).collect();
    let iterations = iterations(values.len(), 1);
    let plain = trend::judge_sampled(&values, &COUNT, None, Sampling::of(&iterations));
    let hit = crate::analysis::limits::LimitHit {
        errno: libc::EMFILE,
        iteration: 50,
        point: 50,
        sampling: Sampling::of(&iterations),
        failures: 49,
        level: 50.0,
    };
    let pinned = crate::analysis::limits::judge_pinned(&values, &COUNT, &hit, &plain, None);
    assert_eq!(pinned.verdict, Verdict::Leak);
    let panel = Panel::new(
        "live fds",
        Unit::Count,
        &Judged::new(0, &values),
        &pinned,
        &iterations,
    );
    let (_, end) = panel.window.unwrap();
    assert!(end <= 50.0, "{:?}", panel.window);
    let [(x0, y0), (x1, y1)] = panel.fit.unwrap();
    assert!(close((y1 - y0) / (x1 - x0), pinned.rate), "{:?}", panel.fit);
}
