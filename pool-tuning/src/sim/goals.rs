//! The goals an adaptive tuner is held to on a throughput scenario, phase by phase.

use std::fmt;

use super::report::SimReport;

/// Utilization every phase must reach.
pub const GOAL_UTILIZATION: f64 = 0.95;
/// Largest share of attempts the load may get throttled or timed out, per phase.
pub const GOAL_OVERLOAD: f64 = 0.005;
/// Longest (re-)convergence after a change, in simulated seconds.
pub const GOAL_CONVERGED_S: f64 = 10.0;
/// Largest p99 relative to the best fixed limit's in the same phase.
pub const GOAL_P99_RATIO: f64 = 1.5;

/// One phase of one run against the goals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseGoals {
    /// Which phase (0-based).
    pub phase: usize,
    /// Its start and end, in seconds.
    pub span_s: (f64, f64),
    /// Utilization (goal ≥ [`GOAL_UTILIZATION`]).
    pub utilization: f64,
    /// Load-caused overload share (goal ≤ [`GOAL_OVERLOAD`]).
    pub overload: f64,
    /// (Re-)convergence in seconds (goal ≤ [`GOAL_CONVERGED_S`]); `None`: never.
    pub converged_after_s: Option<f64>,
    /// p99 over the best fixed limit's p99 in the same phase (goal ≤ [`GOAL_P99_RATIO`]).
    pub p99_ratio: f64,
}

impl PhaseGoals {
    /// Every phase of `report`, judged against `best_fixed` (the same scenario and seed run
    /// with [`TunerSpec::BestFixed`](super::TunerSpec::BestFixed)).
    pub fn of(report: &SimReport, best_fixed: &SimReport) -> Vec<PhaseGoals> {
        report
            .phases
            .iter()
            .zip(&best_fixed.phases)
            .enumerate()
            .map(|(phase, (mine, best))| PhaseGoals {
                phase,
                span_s: (mine.start_s, mine.end_s),
                utilization: mine.utilization,
                overload: mine.overload_fraction,
                converged_after_s: mine.converged_after_s,
                p99_ratio: if best.p99_latency_ms > 0.0 {
                    mine.p99_latency_ms / best.p99_latency_ms
                } else {
                    f64::INFINITY
                },
            })
            .collect()
    }

    /// The goals this phase misses, by name.
    pub fn misses(&self) -> Vec<&'static str> {
        let mut misses = Vec::new();
        if self.utilization < GOAL_UTILIZATION {
            misses.push("utilization");
        }
        if self.overload > GOAL_OVERLOAD {
            misses.push("overload");
        }
        if !self
            .converged_after_s
            .is_some_and(|s| s <= GOAL_CONVERGED_S)
        {
            misses.push("convergence");
        }
        if self.p99_ratio > GOAL_P99_RATIO {
            misses.push("p99");
        }
        misses
    }
}

impl fmt::Display for PhaseGoals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let converged = self
            .converged_after_s
            .map_or_else(|| "never".to_owned(), |s| format!("{s:.1} s"));
        write!(
            f,
            "phase {} ({:.0}–{:.0} s): utilization {:.3}, overload {:.2} %, converged {converged}, p99 ×{:.2}",
            self.phase,
            self.span_s.0,
            self.span_s.1,
            self.utilization,
            self.overload * 100.0,
            self.p99_ratio
        )
    }
}

/// How much better a peer must do before the tuner counts as worse: a point of utilization
/// (what the best fixed limit itself varies by from seed to seed: 0.99–1.01) and a tenth
/// of a point of overload.
pub const PEER_TOLERANCE: f64 = 0.01;

/// What the comparison with a peer reads of a run (or the mean of a scenario's runs over its
/// seeds): utilization up to the capacity, and the load-caused overload share.
///
/// Utilization counts up to the capacity only: above it a tuner spends a rate cap's burst
/// and pays in throttles (the overload share says so), or queues past the knee (the p99
/// goal says so). Nothing else is forgiven: a peer that buys its utilization with throttles
/// or latency is still ahead on utilization, and the tuner is behind it there.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerScore {
    /// Utilization, at most 1.
    pub utilization: f64,
    /// Share of attempts throttled or timed out because of the load.
    pub overload: f64,
}

impl PeerScore {
    /// The score of one run.
    pub fn of(report: &SimReport) -> Self {
        Self {
            utilization: report.utilization.min(1.0),
            overload: report.overload_fraction,
        }
    }

    /// Whether `peer` is ahead of this score beyond `tolerance` (a share: 0.01 is a point
    /// of utilization, and a tenth of that on overload): (on utilization, on overload).
    pub fn behind(&self, peer: &PeerScore, tolerance: f64) -> (bool, bool) {
        (
            self.utilization + tolerance < peer.utilization,
            self.overload > peer.overload + tolerance / 10.0,
        )
    }
}

/// Where `report` does worse than `peer` on the same scenario and seed (see [`PeerScore`]):
/// lower utilization or a higher overload share (whole run), beyond `tolerance`.
pub fn worse_than(report: &SimReport, peer: &SimReport, tolerance: f64) -> Vec<String> {
    let (utilization, overload) = PeerScore::of(report).behind(&PeerScore::of(peer), tolerance);
    let mut worse = Vec::new();
    if utilization {
        worse.push(format!(
            "utilization {:.3} < {}'s {:.3}",
            report.utilization, peer.tuner, peer.utilization
        ));
    }
    if overload {
        worse.push(format!(
            "overload {:.3} % > {}'s {:.3} %",
            report.overload_fraction * 100.0,
            peer.tuner,
            peer.overload_fraction * 100.0
        ));
    }
    worse
}
