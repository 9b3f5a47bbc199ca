//! What a simulation measured, and the names scenario files use for it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::tuner_spec::TunerSpec;
use crate::Adjustment;

/// The outcome of one simulated run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The scenario's name.
    pub scenario: String,
    /// The tuner (`rule`, `knee`, `fixed:N`).
    pub tuner: String,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Best possible throughput, averaged over the run (ops/s).
    pub capacity_ops_per_s: f64,
    /// Successful requests per second achieved.
    pub achieved_ops_per_s: f64,
    /// `achieved / capacity`.
    pub utilization: f64,
    /// Share of attempts answered "503 SlowDown".
    pub throttled_fraction: f64,
    /// Share of attempts that timed out.
    pub timeout_fraction: f64,
    /// Seconds until throughput reached 90 % of capacity (per 0.5 s bucket) and stayed
    /// there until the first server change (or the end); `None` if it never did.
    pub converged_after_s: Option<f64>,
    /// The limit at the end.
    pub final_concurrency: usize,
    /// The limit averaged over time.
    pub mean_concurrency: f64,
    /// 99th percentile latency of successful requests, in ms.
    pub p99_latency_ms: f64,
    /// How many times the tuner moved the limit.
    pub adjustments: usize,
    /// Highest memory share seen.
    pub peak_memory_fraction: f64,
    /// Memory share at the end.
    pub final_memory_fraction: f64,
    /// The same figures between server changes.
    pub phases: Vec<PhaseReport>,
    /// Every change of the limit: (seconds from start, change). Not serialized.
    #[serde(skip)]
    pub trace: Vec<(f64, Adjustment)>,
}

/// Throughput between two server changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PhaseReport {
    /// Start, in seconds.
    pub start_s: f64,
    /// End, in seconds.
    pub end_s: f64,
    /// Best possible throughput (ops/s).
    pub capacity_ops_per_s: f64,
    /// Achieved throughput (ops/s).
    pub achieved_ops_per_s: f64,
    /// `achieved / capacity`.
    pub utilization: f64,
    /// The limit at the end of the phase.
    pub final_concurrency: usize,
}

/// An outcome a scenario can put a `[min, max]` range on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Metric {
    /// [`SimReport::utilization`].
    Utilization,
    /// [`SimReport::achieved_ops_per_s`].
    AchievedOpsPerS,
    /// [`SimReport::throttled_fraction`].
    ThrottledFraction,
    /// [`SimReport::timeout_fraction`].
    TimeoutFraction,
    /// [`SimReport::converged_after_s`] (a run that never converged fails any range).
    ConvergedAfterS,
    /// [`SimReport::final_concurrency`].
    FinalConcurrency,
    /// [`SimReport::mean_concurrency`].
    MeanConcurrency,
    /// [`SimReport::p99_latency_ms`].
    P99LatencyMs,
    /// [`SimReport::final_memory_fraction`].
    FinalMemoryFraction,
    /// Utilization of the first phase (before any server change).
    FirstPhaseUtilization,
    /// Utilization of the last phase (after the last server change).
    LastPhaseUtilization,
}

impl Metric {
    /// This metric's value in `report`.
    pub fn value(self, report: &SimReport) -> Option<f64> {
        Some(match self {
            Metric::Utilization => report.utilization,
            Metric::AchievedOpsPerS => report.achieved_ops_per_s,
            Metric::ThrottledFraction => report.throttled_fraction,
            Metric::TimeoutFraction => report.timeout_fraction,
            Metric::ConvergedAfterS => report.converged_after_s?,
            Metric::FinalConcurrency => report.final_concurrency as f64,
            Metric::MeanConcurrency => report.mean_concurrency,
            Metric::P99LatencyMs => report.p99_latency_ms,
            Metric::FinalMemoryFraction => report.final_memory_fraction,
            Metric::FirstPhaseUtilization => report.phases.first()?.utilization,
            Metric::LastPhaseUtilization => report.phases.last()?.utilization,
        })
    }

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Utilization => "utilization",
            Metric::AchievedOpsPerS => "achieved_ops_per_s",
            Metric::ThrottledFraction => "throttled_fraction",
            Metric::TimeoutFraction => "timeout_fraction",
            Metric::ConvergedAfterS => "converged_after_s",
            Metric::FinalConcurrency => "final_concurrency",
            Metric::MeanConcurrency => "mean_concurrency",
            Metric::P99LatencyMs => "p99_latency_ms",
            Metric::FinalMemoryFraction => "final_memory_fraction",
            Metric::FirstPhaseUtilization => "first_phase_utilization",
            Metric::LastPhaseUtilization => "last_phase_utilization",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An outcome outside its expected range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Violation {
    /// The tuner.
    pub tuner: TunerSpec,
    /// The outcome.
    pub metric: Metric,
    /// The expected `[min, max]`.
    pub range: [f64; 2],
    /// What was measured (`None`: not measurable, e.g. never converged).
    pub value: Option<f64>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [low, high] = self.range;
        match self.value {
            Some(value) => write!(
                f,
                "{} {} = {value:.4}, expected [{low}, {high}]",
                self.tuner, self.metric
            ),
            None => write!(
                f,
                "{} {} has no value, expected [{low}, {high}]",
                self.tuner, self.metric
            ),
        }
    }
}
