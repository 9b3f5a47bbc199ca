//! The discrete-event loop: a closed-loop client, the server, and a tuner, in virtual time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::report::{PhaseReport, SimReport};
use super::scenario::{Scenario, ScenarioError, ServerChange};
use super::server::{Response, SimServer};
use super::tuner_spec::TunerSpec;
use crate::{Adjustment, AttemptOutcome, Sample, Tuner};

const NANOS_PER_S: f64 = 1e9;
/// How often time-driven tuners get a `tick` with no sample.
const TICK_NS: u64 = 100_000_000;
/// Throughput buckets for convergence.
const BUCKET_NS: u64 = 500_000_000;
/// Utilization a bucket needs to count as converged.
const CONVERGED_UTILIZATION: f64 = 0.9;

/// Runs `scenario` with the tuner `spec` names.
pub fn simulate(scenario: &Scenario, spec: &TunerSpec) -> Result<SimReport, ScenarioError> {
    let mut tuner = spec.build(scenario)?;
    Ok(simulate_with(scenario, &mut *tuner, &spec.to_string()))
}

/// Runs `scenario` with any tuner; `label` names it in the report.
pub fn simulate_with(scenario: &Scenario, tuner: &mut dyn Tuner, label: &str) -> SimReport {
    let mut run = Run::new(scenario);
    run.execute(tuner);
    run.report(scenario, label, tuner.limit())
}

/// One attempt in flight, ordered by when it finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Attempt {
    finishes_ns: u64,
    sequence: u64,
    started_ns: u64,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Succeeded,
    Throttled,
    TimedOut,
}

#[derive(Debug)]
struct Run {
    origin: Instant,
    end_ns: u64,
    timeout_ns: u64,
    max_concurrency: usize,
    server: SimServer,
    /// Server changes and their times in ns, applied in order.
    changes: Vec<ServerChange>,
    change_times: Vec<u64>,
    next_change: usize,
    in_flight_attempts: BinaryHeap<Reverse<Attempt>>,
    next_sequence: u64,
    limit: usize,
    now_ns: u64,
    // Measurements.
    attempts: u64,
    successes: u64,
    throttled: u64,
    timed_out: u64,
    adjustments: Vec<(f64, Adjustment)>,
    success_latencies_us: Vec<u32>,
    successes_per_bucket: Vec<u32>,
    limit_time_integral: f64,
    peak_memory: f64,
    phase_successes: Vec<u64>,
    phase_final_limit: Vec<usize>,
}

impl Run {
    fn new(scenario: &Scenario) -> Self {
        let end_ns = secs_to_ns(scenario.duration_s);
        let change_times: Vec<u64> = scenario
            .changes
            .iter()
            .map(|c| secs_to_ns(c.at_s))
            .collect();
        let buckets = end_ns.div_ceil(BUCKET_NS) as usize;
        Self {
            origin: Instant::now(),
            end_ns,
            timeout_ns: secs_to_ns(scenario.client.timeout_ms / 1_000.0),
            max_concurrency: scenario.client.max_concurrency,
            server: SimServer::new(scenario.server, scenario.seed),
            next_change: 0,
            in_flight_attempts: BinaryHeap::new(),
            next_sequence: 0,
            limit: 0,
            now_ns: 0,
            attempts: 0,
            successes: 0,
            throttled: 0,
            timed_out: 0,
            adjustments: Vec::new(),
            success_latencies_us: Vec::new(),
            successes_per_bucket: vec![0; buckets],
            limit_time_integral: 0.0,
            peak_memory: 0.0,
            phase_successes: vec![0; change_times.len() + 1],
            phase_final_limit: vec![0; change_times.len() + 1],
            change_times,
            changes: scenario.changes.clone(),
        }
    }

    fn instant(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }

    fn execute(&mut self, tuner: &mut dyn Tuner) {
        self.limit = tuner.limit();
        self.start_attempts();
        let mut next_tick_ns = TICK_NS;
        loop {
            let next_completion = self.in_flight_attempts.peek().map(|a| a.0.finishes_ns);
            let next_change = self.change_times.get(self.next_change).copied();
            let next_ns = [next_completion, next_change, Some(next_tick_ns)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_tick_ns);
            if next_ns > self.end_ns {
                break;
            }
            self.advance_to(next_ns);
            let adjustment = if next_change == Some(next_ns) {
                self.phase_final_limit[self.next_change] = self.limit;
                let mut params = *self.server.params();
                params.apply(&self.changes[self.next_change]);
                self.server.set_params(params);
                self.next_change += 1;
                None
            } else if next_completion == Some(next_ns) {
                let Reverse(attempt) = self.in_flight_attempts.pop().expect("peeked");
                let sample = self.finish(attempt);
                tuner.observe(&sample, self.instant(next_ns))
            } else {
                next_tick_ns += TICK_NS;
                tuner.tick(self.instant(next_ns))
            };
            if let Some(adjustment) = adjustment {
                self.adjustments
                    .push((self.now_ns as f64 / NANOS_PER_S, adjustment));
            }
            self.limit = tuner.limit();
            self.start_attempts();
        }
        self.advance_to(self.end_ns);
        let last = self.phase_final_limit.len() - 1;
        self.phase_final_limit[last] = self.limit;
    }

    fn advance_to(&mut self, ns: u64) {
        self.limit_time_integral += self.limit as f64 * (ns - self.now_ns) as f64 / NANOS_PER_S;
        self.now_ns = ns;
    }

    /// Keeps `limit` attempts in flight (the backlog never runs dry).
    fn start_attempts(&mut self) {
        let now_s = self.now_ns as f64 / NANOS_PER_S;
        while self.in_flight_attempts.len() < self.limit {
            let in_flight = self.in_flight_attempts.len() + 1;
            let (latency_ns, outcome) = match self.server.admit(now_s, in_flight) {
                Response::Served { latency_s } => {
                    let latency_ns = secs_to_ns(latency_s);
                    if latency_ns > self.timeout_ns {
                        (self.timeout_ns, Outcome::TimedOut)
                    } else {
                        (latency_ns, Outcome::Succeeded)
                    }
                }
                Response::Throttled { latency_s } => (secs_to_ns(latency_s), Outcome::Throttled),
            };
            self.in_flight_attempts.push(Reverse(Attempt {
                finishes_ns: self.now_ns + latency_ns.max(1),
                sequence: self.next_sequence,
                started_ns: self.now_ns,
                outcome,
            }));
            self.next_sequence += 1;
        }
    }

    fn finish(&mut self, attempt: Attempt) -> Sample {
        let in_flight = self.in_flight_attempts.len() + 1;
        let latency_ns = attempt.finishes_ns - attempt.started_ns;
        let memory = self.server.memory_fraction(in_flight);
        self.peak_memory = self.peak_memory.max(memory);
        self.attempts += 1;
        let outcome = match attempt.outcome {
            Outcome::Succeeded => {
                self.successes += 1;
                self.phase_successes[self.next_change] += 1;
                let bucket = (attempt.finishes_ns / BUCKET_NS) as usize;
                if let Some(count) = self.successes_per_bucket.get_mut(bucket) {
                    *count += 1;
                }
                self.success_latencies_us
                    .push(u32::try_from(latency_ns / 1_000).unwrap_or(u32::MAX));
                AttemptOutcome::Succeeded
            }
            Outcome::Throttled => {
                self.throttled += 1;
                AttemptOutcome::Throttled
            }
            Outcome::TimedOut => {
                self.timed_out += 1;
                AttemptOutcome::TimedOut
            }
        };
        Sample::new(
            self.instant(attempt.finishes_ns),
            Duration::from_nanos(latency_ns),
            outcome,
        )
        .in_flight(in_flight)
        .queued(1)
        .memory_fraction(memory)
    }
}

impl Run {
    fn report(&self, scenario: &Scenario, label: &str, final_limit: usize) -> SimReport {
        let duration_s = self.end_ns as f64 / NANOS_PER_S;
        let max = self.max_concurrency;
        let mut boundaries = vec![0.0];
        boundaries.extend(scenario.changes.iter().map(|c| c.at_s.min(duration_s)));
        boundaries.push(duration_s);
        let phases: Vec<PhaseReport> = boundaries
            .windows(2)
            .enumerate()
            .map(|(index, span)| {
                let length = span[1] - span[0];
                let capacity = scenario.server_at(span[0]).capacity_ops_per_s(max);
                let achieved = if length > 0.0 {
                    self.phase_successes[index] as f64 / length
                } else {
                    0.0
                };
                PhaseReport {
                    start_s: span[0],
                    end_s: span[1],
                    capacity_ops_per_s: capacity,
                    achieved_ops_per_s: achieved,
                    utilization: ratio(achieved, capacity),
                    final_concurrency: self.phase_final_limit[index],
                }
            })
            .collect();
        let possible: f64 = phases
            .iter()
            .map(|p| p.capacity_ops_per_s * (p.end_s - p.start_s))
            .sum();
        let attempts = self.attempts.max(1) as f64;
        let first_phase_end_s = boundaries[1];
        SimReport {
            scenario: scenario.name.clone(),
            tuner: label.to_owned(),
            duration_s,
            capacity_ops_per_s: possible / duration_s,
            achieved_ops_per_s: self.successes as f64 / duration_s,
            utilization: ratio(self.successes as f64, possible),
            throttled_fraction: self.throttled as f64 / attempts,
            timeout_fraction: self.timed_out as f64 / attempts,
            converged_after_s: self.converged_after_s(scenario, first_phase_end_s),
            final_concurrency: final_limit,
            mean_concurrency: self.limit_time_integral / duration_s,
            p99_latency_ms: percentile_ms(&self.success_latencies_us, 0.99),
            adjustments: self.adjustments.len(),
            trace: self.adjustments.clone(),
            peak_memory_fraction: self.peak_memory,
            final_memory_fraction: self.server.memory_fraction(self.in_flight_attempts.len()),
            phases,
        }
    }

    /// Start of the first bucket from which every bucket of the first phase reaches 90 % of
    /// capacity.
    fn converged_after_s(&self, scenario: &Scenario, first_phase_end_s: f64) -> Option<f64> {
        let bucket_s = BUCKET_NS as f64 / NANOS_PER_S;
        let full_buckets = (first_phase_end_s / bucket_s).floor() as usize;
        let capacity = scenario.server.capacity_ops_per_s(self.max_concurrency) * bucket_s;
        let converged = |count: &u32| f64::from(*count) >= CONVERGED_UTILIZATION * capacity;
        let buckets =
            &self.successes_per_bucket[..full_buckets.min(self.successes_per_bucket.len())];
        if !buckets.last().is_some_and(converged) {
            return None;
        }
        let first_converged = buckets
            .iter()
            .rposition(|count| !converged(count))
            .map_or(0, |failed| failed + 1);
        Some(first_converged as f64 * bucket_s)
    }
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

fn secs_to_ns(seconds: f64) -> u64 {
    (seconds * NANOS_PER_S).round().max(0.0) as u64
}

/// The `quantile` of latencies given in µs, in ms (0 if there are none).
fn percentile_ms(latencies_us: &[u32], quantile: f64) -> f64 {
    if latencies_us.is_empty() {
        return 0.0;
    }
    let mut sorted = latencies_us.to_vec();
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    let (_, value, _) = sorted.select_nth_unstable(rank);
    f64::from(*value) / 1_000.0
}
