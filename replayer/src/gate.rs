//! The regression gate: a candidate allocator fails against a baseline when its
//! median is worse by more than the threshold *and* by more than the run-to-run
//! spread of either, on peak RSS, wall time or fragmentation.

use serde::{Deserialize, Serialize};

use crate::driver::RunResult;
use crate::run::Outcome;

/// Reads one metric of a run.
pub type Metric = fn(&RunResult) -> f64;

/// The metrics the gate compares (lower is better for all of them).
pub const METRICS: &[(&str, Metric)] = &[
    ("peak_rss_bytes", |r| r.peak_rss_bytes as f64),
    ("wall_ns", |r| r.wall_ns as f64),
    ("fragmentation_at_peak", |r| r.fragmentation_at_peak),
];

/// Parses a threshold such as `5%` or `0.05` into a fraction.
pub fn parse_threshold(s: &str) -> Result<f64, String> {
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|e| format!("`{s}` is not a threshold like 5% or 0.05: {e}"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("threshold `{s}` must be a non-negative number"));
    }
    Ok(v)
}

/// A metric on which the candidate regressed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// Trace path.
    pub trace: String,
    /// Metric name (a [`RunResult`] field).
    pub metric: String,
    /// Baseline median.
    pub baseline: f64,
    /// Candidate median.
    pub candidate: f64,
    /// `candidate / baseline - 1`.
    pub change: f64,
    /// Larger run-to-run spread of the two.
    pub spread: f64,
}

impl std::fmt::Display for Regression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = if self.metric.starts_with("fragmentation") {
            3
        } else {
            0
        };
        write!(
            f,
            "{} regressed on {}: baseline {:.*} → candidate {:.*} ({:+.1}%, run-to-run spread {:.*})",
            self.metric,
            self.trace,
            digits,
            self.baseline,
            digits,
            self.candidate,
            self.change * 100.0,
            digits,
            self.spread
        )
    }
}

/// The regressions of `candidate` against `baseline` on one trace.
pub fn compare(trace: &str, baseline: &Outcome, candidate: &Outcome, max: f64) -> Vec<Regression> {
    METRICS
        .iter()
        .filter_map(|(name, metric)| {
            let a = baseline.stat(metric);
            let b = candidate.stat(metric);
            let diff = b.median - a.median;
            let spread = a.spread.max(b.spread);
            let worse = b.median > a.median * (1.0 + max) && diff > spread;
            worse.then(|| Regression {
                trace: trace.to_string(),
                metric: name.to_string(),
                baseline: a.median,
                candidate: b.median,
                change: if a.median > 0.0 {
                    b.median / a.median - 1.0
                } else {
                    f64::INFINITY
                },
                spread,
            })
        })
        .collect()
}
