//! What a simulation measured, per run and per phase, and the names scenario files use for it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::record::{Bucket, Recording, BUCKET_S};
use super::scenario::Scenario;
use super::tuner_spec::TunerSpec;
use crate::Adjustment;

/// Share of capacity a convergence window must reach.
const CONVERGED_UTILIZATION: f64 = 0.9;
/// Largest share of load-caused throttles and timeouts a converged window may have.
const CONVERGED_OVERLOAD: f64 = 0.02;
/// Convergence is judged on windows this long, starting every `CONVERGENCE_STEP_S`.
const CONVERGENCE_WINDOW_S: f64 = 2.0;
const CONVERGENCE_STEP_S: f64 = 0.5;

/// The outcome of one simulated run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The scenario's name.
    pub scenario: String,
    /// The tuner.
    pub tuner: String,
    /// The seed of this run.
    pub seed: u64,
    /// Simulated seconds.
    pub duration_s: f64,
    /// What the best fixed limit of each moment achieves, averaged over the run (ops/s).
    pub capacity_ops_per_s: f64,
    /// Successful attempts per second achieved.
    pub achieved_ops_per_s: f64,
    /// `achieved / capacity`.
    pub utilization: f64,
    /// Share of attempts throttled or timed out *because of the load* (the rate cap, the
    /// connection limit, queueing past the timeout): what a tuner is responsible for.
    pub overload_fraction: f64,
    /// Share of attempts throttled (429 or 503), whatever the cause.
    pub throttled_fraction: f64,
    /// Share of attempts that timed out, whatever the cause.
    pub timeout_fraction: f64,
    /// Seconds until the first phase converged (see [`PhaseReport::converged_after_s`]).
    pub converged_after_s: Option<f64>,
    /// The limit at the end.
    pub final_concurrency: usize,
    /// The limit averaged over time.
    pub mean_concurrency: f64,
    /// Attempts in flight, averaged over time.
    pub mean_in_flight: f64,
    /// 99th percentile latency of successful attempts, in ms.
    pub p99_latency_ms: f64,
    /// How many times the limit changed.
    pub adjustments: usize,
    /// Attempts that ended during the run.
    pub attempts: u64,
    /// Tasks parked by the client for a 429's Retry-After.
    pub deferrals: u64,
    /// Highest memory share seen.
    pub peak_memory_fraction: f64,
    /// Memory share at the end.
    pub final_memory_fraction: f64,
    /// The same figures between server changes (a ramp is a phase of its own).
    pub phases: Vec<PhaseReport>,
    /// Every change of the limit the tuner decided: (seconds from start, change). Not
    /// serialized.
    #[serde(skip)]
    pub trace: Vec<(f64, Adjustment)>,
}

/// The figures of one phase: from a change of the server (or the start) to the next.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PhaseReport {
    /// Start, in seconds.
    pub start_s: f64,
    /// End, in seconds.
    pub end_s: f64,
    /// What the best fixed limit achieves, averaged over the phase (ops/s).
    pub capacity_ops_per_s: f64,
    /// The best fixed limit at the end of the phase.
    pub best_limit: usize,
    /// Achieved successes per second.
    pub achieved_ops_per_s: f64,
    /// `achieved / capacity`.
    pub utilization: f64,
    /// Attempts that ended in the phase.
    pub attempts: u64,
    /// Share of them throttled or timed out because of the load.
    pub overload_fraction: f64,
    /// Share throttled or timed out whatever the load (the backend's background).
    pub background_fraction: f64,
    /// Share throttled, whatever the cause.
    pub throttled_fraction: f64,
    /// Share timed out, whatever the cause.
    pub timeout_fraction: f64,
    /// 99th percentile latency of successes, in ms.
    pub p99_latency_ms: f64,
    /// Seconds from the phase's start until throughput reached 90 % of capacity with at most
    /// 2 % of attempts overloaded, in every 2 s window (one every 0.5 s) to the phase's end;
    /// `None` if the last window does not (or the phase is shorter than a window).
    pub converged_after_s: Option<f64>,
    /// The limit averaged over the phase.
    pub mean_concurrency: f64,
    /// Attempts in flight, averaged over the phase.
    pub mean_in_flight: f64,
    /// The limit at the end of the phase (averaged over its last 100 ms).
    pub final_concurrency: usize,
}

impl SimReport {
    pub(crate) fn build(
        scenario: &Scenario,
        tuner: &str,
        seed: u64,
        recording: &Recording,
        trace: Vec<(f64, Adjustment)>,
    ) -> Self {
        let duration_s = scenario.duration_s;
        let view = View {
            scenario,
            recording,
        };
        let bounds = scenario.phase_boundaries();
        let phases: Vec<PhaseReport> = bounds
            .windows(2)
            .map(|span| view.phase(span[0], span[1]))
            .collect();
        let all = view.sum(0.0, duration_s);
        let possible = view.capacity_integral(0.0, duration_s);
        let attempts = f64::from(all.attempts.max(1));
        SimReport {
            scenario: scenario.name.clone(),
            tuner: tuner.to_owned(),
            seed,
            duration_s,
            capacity_ops_per_s: possible / duration_s,
            achieved_ops_per_s: f64::from(all.successes) / duration_s,
            utilization: ratio(f64::from(all.successes), possible),
            overload_fraction: f64::from(all.load_overloads) / attempts,
            throttled_fraction: f64::from(all.throttled) / attempts,
            timeout_fraction: f64::from(all.timed_out) / attempts,
            converged_after_s: phases.first().and_then(|p| p.converged_after_s),
            final_concurrency: recording.final_limit,
            mean_concurrency: all.limit_seconds / duration_s,
            mean_in_flight: all.in_flight_seconds / duration_s,
            p99_latency_ms: recording.latency_quantile_ms(0.0, f64::INFINITY, 0.99),
            adjustments: recording.limit_changes,
            attempts: u64::from(all.attempts),
            deferrals: recording.deferrals,
            peak_memory_fraction: recording.peak_memory,
            final_memory_fraction: recording.final_memory,
            phases,
            trace,
        }
    }

    /// The longest re-convergence over all phases; `None` if some phase never converged.
    pub fn max_converged_after_s(&self) -> Option<f64> {
        self.phases
            .iter()
            .map(|p| p.converged_after_s)
            .try_fold(0.0, |max: f64, c| c.map(|c| max.max(c)))
    }
}

/// Reads a recording against the scenario's capacity.
struct View<'a> {
    scenario: &'a Scenario,
    recording: &'a Recording,
}

impl View<'_> {
    /// Buckets in `[from_s, to_s)` (boundaries rounded to the nearest bucket).
    fn buckets(&self, from_s: f64, to_s: f64) -> std::ops::Range<usize> {
        let index = |t: f64| ((t / BUCKET_S).round() as usize).min(self.recording.buckets.len());
        index(from_s)..index(to_s)
    }

    fn sum(&self, from_s: f64, to_s: f64) -> Bucket {
        let mut total = Bucket::default();
        for b in &self.recording.buckets[self.buckets(from_s, to_s)] {
            total.attempts += b.attempts;
            total.successes += b.successes;
            total.throttled += b.throttled;
            total.timed_out += b.timed_out;
            total.failed += b.failed;
            total.load_overloads += b.load_overloads;
            total.background_overloads += b.background_overloads;
            total.limit_seconds += b.limit_seconds;
            total.in_flight_seconds += b.in_flight_seconds;
        }
        total
    }

    /// ∫ capacity dt over `[from_s, to_s)`, bucket by bucket.
    fn capacity_integral(&self, from_s: f64, to_s: f64) -> f64 {
        self.buckets(from_s, to_s)
            .map(|i| {
                let middle = (i as f64 + 0.5) * BUCKET_S;
                self.scenario.step_at(middle).capacity.ops_per_s * BUCKET_S
            })
            .sum()
    }

    fn phase(&self, start_s: f64, end_s: f64) -> PhaseReport {
        let length = (end_s - start_s).max(BUCKET_S);
        let total = self.sum(start_s, end_s);
        let possible = self.capacity_integral(start_s, end_s);
        let attempts = f64::from(total.attempts.max(1));
        let last = self.buckets(start_s, end_s).last();
        let final_concurrency = last.map_or(0, |i| {
            (self.recording.buckets[i].limit_seconds / BUCKET_S).round() as usize
        });
        PhaseReport {
            start_s,
            end_s,
            capacity_ops_per_s: possible / length,
            best_limit: self
                .scenario
                .step_at(end_s - BUCKET_S / 2.0)
                .capacity
                .best_limit,
            achieved_ops_per_s: f64::from(total.successes) / length,
            utilization: ratio(f64::from(total.successes), possible),
            attempts: u64::from(total.attempts),
            overload_fraction: f64::from(total.load_overloads) / attempts,
            background_fraction: f64::from(total.background_overloads) / attempts,
            throttled_fraction: f64::from(total.throttled) / attempts,
            timeout_fraction: f64::from(total.timed_out) / attempts,
            p99_latency_ms: self.recording.latency_quantile_ms(start_s, end_s, 0.99),
            converged_after_s: self.converged_after_s(start_s, end_s),
            mean_concurrency: total.limit_seconds / length,
            mean_in_flight: total.in_flight_seconds / length,
            final_concurrency,
        }
    }

    fn converged_after_s(&self, start_s: f64, end_s: f64) -> Option<f64> {
        let windows =
            ((end_s - start_s - CONVERGENCE_WINDOW_S) / CONVERGENCE_STEP_S + 1e-9).floor();
        if windows < 0.0 {
            return None;
        }
        let converged: Vec<bool> = (0..=windows as usize)
            .map(|k| {
                let from = start_s + k as f64 * CONVERGENCE_STEP_S;
                let to = from + CONVERGENCE_WINDOW_S;
                let counts = self.sum(from, to);
                let enough = f64::from(counts.successes)
                    >= CONVERGED_UTILIZATION * self.capacity_integral(from, to);
                let calm = f64::from(counts.load_overloads)
                    <= CONVERGED_OVERLOAD * f64::from(counts.attempts.max(1));
                enough && calm
            })
            .collect();
        if !converged.last().copied().unwrap_or(false) {
            return None;
        }
        let first = converged
            .iter()
            .rposition(|ok| !ok)
            .map_or(0, |failed| failed + 1);
        Some(first as f64 * CONVERGENCE_STEP_S)
    }
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
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
    /// [`SimReport::overload_fraction`].
    OverloadFraction,
    /// [`SimReport::throttled_fraction`].
    ThrottledFraction,
    /// [`SimReport::timeout_fraction`].
    TimeoutFraction,
    /// [`SimReport::converged_after_s`] (a run that never converged fails any range).
    ConvergedAfterS,
    /// [`SimReport::max_converged_after_s`]: the slowest (re-)convergence of any phase.
    MaxConvergedAfterS,
    /// [`SimReport::final_concurrency`].
    FinalConcurrency,
    /// [`SimReport::mean_concurrency`].
    MeanConcurrency,
    /// [`SimReport::p99_latency_ms`].
    P99LatencyMs,
    /// [`SimReport::final_memory_fraction`].
    FinalMemoryFraction,
    /// Utilization of the first phase.
    FirstPhaseUtilization,
    /// Utilization of the last phase.
    LastPhaseUtilization,
    /// The lowest utilization of any phase.
    MinPhaseUtilization,
    /// The highest load-caused overload share of any phase.
    MaxPhaseOverloadFraction,
}

impl Metric {
    /// This metric's value in `report`.
    pub fn value(self, report: &SimReport) -> Option<f64> {
        let phases = || report.phases.iter();
        Some(match self {
            Metric::Utilization => report.utilization,
            Metric::AchievedOpsPerS => report.achieved_ops_per_s,
            Metric::OverloadFraction => report.overload_fraction,
            Metric::ThrottledFraction => report.throttled_fraction,
            Metric::TimeoutFraction => report.timeout_fraction,
            Metric::ConvergedAfterS => report.converged_after_s?,
            Metric::MaxConvergedAfterS => report.max_converged_after_s()?,
            Metric::FinalConcurrency => report.final_concurrency as f64,
            Metric::MeanConcurrency => report.mean_concurrency,
            Metric::P99LatencyMs => report.p99_latency_ms,
            Metric::FinalMemoryFraction => report.final_memory_fraction,
            Metric::FirstPhaseUtilization => report.phases.first()?.utilization,
            Metric::LastPhaseUtilization => report.phases.last()?.utilization,
            Metric::MinPhaseUtilization => phases().map(|p| p.utilization).reduce(f64::min)?,
            Metric::MaxPhaseOverloadFraction => {
                phases().map(|p| p.overload_fraction).reduce(f64::max)?
            }
        })
    }

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Utilization => "utilization",
            Metric::AchievedOpsPerS => "achieved_ops_per_s",
            Metric::OverloadFraction => "overload_fraction",
            Metric::ThrottledFraction => "throttled_fraction",
            Metric::TimeoutFraction => "timeout_fraction",
            Metric::ConvergedAfterS => "converged_after_s",
            Metric::MaxConvergedAfterS => "max_converged_after_s",
            Metric::FinalConcurrency => "final_concurrency",
            Metric::MeanConcurrency => "mean_concurrency",
            Metric::P99LatencyMs => "p99_latency_ms",
            Metric::FinalMemoryFraction => "final_memory_fraction",
            Metric::FirstPhaseUtilization => "first_phase_utilization",
            Metric::LastPhaseUtilization => "last_phase_utilization",
            Metric::MinPhaseUtilization => "min_phase_utilization",
            Metric::MaxPhaseOverloadFraction => "max_phase_overload_fraction",
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
