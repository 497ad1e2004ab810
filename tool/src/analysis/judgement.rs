//! What judging a series gives: the verdict, its rate, reason and detection limit, and the
//! window and line it was made of (see [`super::trend`] for how).

use serde::Serialize;

/// What one unit of a series means for judging it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scale {
    /// The smallest rise over the judged window that may count as growth.
    pub(crate) floor: f64,
    /// The smallest step the series can move by (1 fd, a page, a brk increment): a leak
    /// slower than one step per stretch cannot rise in every stretch.
    pub(crate) resolution: f64,
    /// The largest detection limit (per iteration) at which "no leak" is still a useful
    /// answer. Above it, a flat series is "inconclusive".
    pub(crate) meaningful: f64,
    /// How amounts of this unit are written in reasons.
    pub(crate) unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Count,
    Bytes,
}

impl Unit {
    pub(crate) fn amount(self, value: f64) -> String {
        match self {
            Unit::Count => crate::units::count(value),
            Unit::Bytes => crate::units::bytes(value),
        }
    }

    /// "0.25 per iteration", "48 B per iteration", "1 per 300 iterations".
    pub(crate) fn rate(self, value: f64) -> String {
        let rate = match self {
            Unit::Count => crate::units::count_rate(value),
            Unit::Bytes => crate::units::bytes_rate(value),
        };
        crate::units::per_iteration(rate)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Verdict {
    NoLeak,
    Plateau,
    Leak,
    Inconclusive,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::NoLeak => "no-leak",
            Verdict::Plateau => "plateau",
            Verdict::Leak => "leak",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// The more alarming of two verdicts on one class (e.g. mapping count and bytes).
    pub(crate) fn worst(self, other: Verdict) -> Verdict {
        self.max(other)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Judgement {
    pub(crate) verdict: Verdict,
    /// Per iteration: over the judged window for a leak, over the last third of the run
    /// otherwise (what the program does now, not while it warmed up).
    pub(crate) rate: f64,
    /// One sentence saying why.
    pub(crate) why: String,
    /// The smallest per-iteration rate this run could have detected; `None` when the run
    /// was too short to judge at all.
    pub(crate) limit: Option<f64>,
    /// Iterations that would bring the limit down to [`Scale::meaningful`], when it is above.
    pub(crate) iterations_needed: Option<u64>,
    /// What the verdict was made of (its window and fitted line), for charts; `None` when
    /// the run was too short to fit a line.
    #[serde(skip)]
    pub(crate) basis: Option<Basis>,
}

/// The part of a series a verdict was judged on, in points of that series (point `i` is
/// its `i`-th judged boundary).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Basis {
    /// Points `0..warm_up` were warm-up, left out.
    pub(crate) warm_up: usize,
    /// The judged window.
    pub(crate) window: std::ops::Range<usize>,
    /// The line fitted over the window, whose slope is the verdict's rate (per point).
    pub(crate) line: Line,
}

/// A straight line over points: `at_start` at the window's first point, rising `slope` per
/// point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Line {
    pub(crate) at_start: f64,
    pub(crate) slope: f64,
}

impl Line {
    /// The line's value `points` after the window's start.
    pub(crate) fn at(self, points: f64) -> f64 {
        self.at_start + self.slope * points
    }
}
