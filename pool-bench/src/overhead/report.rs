//! [`OverheadReport`]: what `bench-overhead` writes to `results.json` and prints — every
//! engine's no-op throughput and CPU time per task round by round, the comparisons the
//! goals are judged on, the latency-bound efficiency and the memory of waiting tasks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::peers::Peer;
use super::queued::QueuedMemory;
use super::OverheadOptions;
use crate::cpu::Timing;
use crate::error::BenchError;
use crate::machine::{MachineInfo, Versions};
use crate::measure::worker_threads;
use crate::stats::Summary;

/// s3db.js's TasksPool's no-op throughput on this machine, tasks/s.
pub const ORIGINAL_NOOP_OPS_PER_SEC: f64 = 84_000.0;

/// One engine's no-op run in one round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundSample {
    /// Tasks / wall-clock time.
    pub ops_per_sec: f64,
    /// CPU time of the process (user + system, every thread) over the run, per task, ns.
    pub cpu_ns_per_task: Option<f64>,
}

impl RoundSample {
    /// The sample of a run of `tasks` tasks that took `timing`.
    pub fn of(timing: &Timing, tasks: usize) -> Self {
        RoundSample {
            ops_per_sec: tasks as f64 / timing.wall.as_secs_f64(),
            cpu_ns_per_task: timing.cpu.map(|cpu| cpu.as_nanos() as f64 / tasks as f64),
        }
    }
}

/// Where the slots of a latency-bound run stood idle, in ms per slot: before their first
/// task started (the clock starts just before the engine is built), between one task's end
/// and the next one's start, and after their last task ended until the clock stopped (the
/// last result reached the caller). Idle time is what keeps the efficiency below 1:
/// `(startup + between + tail) / wall ≈ 1 − efficiency`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlotIdle {
    /// Before the slot's first task started.
    pub startup_ms: f64,
    /// Between one task's end and the next one's start, summed.
    pub between_ms: f64,
    /// After the slot's last task ended, until the clock stopped.
    pub tail_ms: f64,
}

impl SlotIdle {
    /// From each task's (start, end) since the clock started, the wall time, and the limit:
    /// a slot's first task is one of the first `concurrency` to start, its last one of the
    /// last `concurrency` to end, and what its tasks did not fill is idle.
    pub fn of(spans: &[(Duration, Duration)], wall: Duration, concurrency: usize) -> Self {
        let slots = concurrency.min(spans.len()).max(1);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut starts: Vec<Duration> = spans.iter().map(|&(start, _)| start).collect();
        let mut ends: Vec<Duration> = spans.iter().map(|&(_, end)| end).collect();
        starts.sort_unstable();
        ends.sort_unstable();
        let startup_ms = starts.iter().take(slots).map(|&d| ms(d)).sum::<f64>() / slots as f64;
        let tail_ms = ends
            .iter()
            .rev()
            .take(slots)
            .map(|&end| ms(wall.saturating_sub(end)))
            .sum::<f64>()
            / slots as f64;
        let busy_ms = spans
            .iter()
            .map(|&(start, end)| ms(end.saturating_sub(start)))
            .sum::<f64>()
            / concurrency.max(1) as f64;
        SlotIdle {
            startup_ms,
            between_ms: ms(wall) - busy_ms - startup_ms - tail_ms,
            tail_ms,
        }
    }
}

/// One latency-bound round of one engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySample {
    /// Tasks / wall-clock time.
    pub achieved_ops_per_sec: f64,
    /// Mean time a task took, measured inside the task, s.
    pub mean_service_s: f64,
    /// Where the slots stood idle.
    pub idle: SlotIdle,
}

/// The latency-bound result of one engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Median over rounds of tasks / wall-clock time.
    pub achieved_ops_per_sec: f64,
    /// Mean time a task took, measured inside the task (sleep + timer granularity), ms.
    pub mean_service_ms: f64,
    /// `concurrency / mean service time`: the best any limiter can do (Little's law).
    pub ideal_ops_per_sec: f64,
    /// Achieved / ideal (median over rounds).
    pub littles_law_efficiency: f64,
    /// Where the slots stood idle (each part the median over rounds).
    #[serde(default)]
    pub idle: SlotIdle,
}

impl LatencyResult {
    /// From each round's sample at limit `concurrency`.
    pub fn of(samples: &[LatencySample], concurrency: usize) -> Option<Self> {
        let median = |part: &dyn Fn(&LatencySample) -> f64| {
            let values: Vec<f64> = samples.iter().map(part).collect();
            Summary::of(&values).map(|summary| summary.median)
        };
        let mean_service_s =
            samples.iter().map(|s| s.mean_service_s).sum::<f64>() / samples.len() as f64;
        Some(LatencyResult {
            achieved_ops_per_sec: median(&|s| s.achieved_ops_per_sec)?,
            mean_service_ms: mean_service_s * 1e3,
            ideal_ops_per_sec: concurrency as f64 / mean_service_s,
            littles_law_efficiency: median(&|s| {
                s.achieved_ops_per_sec * s.mean_service_s / concurrency as f64
            })?,
            idle: SlotIdle {
                startup_ms: median(&|s| s.idle.startup_ms)?,
                between_ms: median(&|s| s.idle.between_ms)?,
                tail_ms: median(&|s| s.idle.tail_ms)?,
            },
        })
    }
}

/// One engine against a baseline, round by round: both ran in the same round, a few
/// hundred milliseconds apart, so the machine's load hits both alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The engine judged.
    pub engine: String,
    /// What it is compared with.
    pub baseline: String,
    /// The engine's throughput over the baseline's, per round (median, min, max).
    pub throughput_ratio: Summary,
    /// The baseline's CPU time per task over the engine's, per round: above 1 when the
    /// engine spends less CPU per task. `None` where CPU time cannot be read.
    pub cpu_ratio: Option<Summary>,
    /// The throughput ratio of each round, in round order.
    #[serde(default)]
    pub throughput_by_round: Vec<f64>,
    /// The CPU ratio of each round, in round order.
    #[serde(default)]
    pub cpu_by_round: Option<Vec<f64>>,
}

impl Comparison {
    fn of(
        rounds: &BTreeMap<String, Vec<RoundSample>>,
        engine: Peer,
        baseline: Peer,
    ) -> Option<Self> {
        let pairs: Vec<(&RoundSample, &RoundSample)> = rounds
            .get(engine.name())?
            .iter()
            .zip(rounds.get(baseline.name())?)
            .collect();
        let throughput: Vec<f64> = pairs
            .iter()
            .map(|(engine, baseline)| engine.ops_per_sec / baseline.ops_per_sec)
            .collect();
        let cpu: Option<Vec<f64>> = pairs
            .iter()
            .map(|(engine, baseline)| Some(baseline.cpu_ns_per_task? / engine.cpu_ns_per_task?))
            .collect();
        Some(Comparison {
            engine: engine.name().to_owned(),
            baseline: baseline.name().to_owned(),
            throughput_ratio: Summary::of(&throughput)?,
            cpu_ratio: cpu.as_deref().and_then(Summary::of),
            throughput_by_round: throughput,
            cpu_by_round: cpu,
        })
    }
}

/// The comparisons behind the goals: (engine, baseline, goal on the ratio, whether every
/// round must meet it rather than the median).
const COMPARISONS: [(Peer, Peer, f64, bool); 6] = [
    (Peer::S3pool, Peer::MinimalPriorityPool, 1.0, false),
    (Peer::S3poolMetrics, Peer::S3pool, 0.95, false),
    (Peer::S3pool, Peer::SemaphoreSpawn, 1.0, true),
    (Peer::S3poolMetrics, Peer::SemaphoreSpawn, 1.0, false),
    (Peer::S3poolRateLimited, Peer::S3pool, 0.9, false),
    (Peer::S3poolTenPriorities, Peer::S3pool, 0.95, false),
];

/// A goal and whether the run met it, on each clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalCheck {
    /// What is asked, e.g. `s3pool / minimal-priority-pool >= 1.0 (median of rounds)`.
    pub goal: String,
    /// The figure the wall clock gives (throughput ratio, or the measurement itself).
    pub wall: f64,
    /// The figure CPU time per task gives, where the goal is a ratio and CPU time is known.
    pub cpu: Option<f64>,
    /// Met on the wall clock.
    pub met_wall: bool,
    /// Met on CPU time per task (`None` when there is no CPU figure).
    pub met_cpu: Option<bool>,
    /// For a goal on a ratio: in how many of the rounds the round's own ratio met it —
    /// the spread behind a median, in the goal's terms.
    #[serde(default)]
    pub rounds_met: Option<RoundsMet>,
}

/// In how many rounds a ratio met its goal, on each clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundsMet {
    /// Rounds in all.
    pub rounds: usize,
    /// Rounds whose throughput ratio met the goal.
    pub wall: usize,
    /// Rounds whose CPU ratio met the goal (`None` when there is no CPU figure).
    pub cpu: Option<usize>,
}

impl RoundsMet {
    fn of(comparison: &Comparison, target: f64) -> Self {
        let met = |ratios: &[f64]| ratios.iter().filter(|&&ratio| ratio >= target).count();
        RoundsMet {
            rounds: comparison.throughput_by_round.len(),
            wall: met(&comparison.throughput_by_round),
            cpu: comparison.cpu_by_round.as_deref().map(met),
        }
    }
}

/// An overhead run's results (`target/bench-overhead/results.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverheadReport {
    /// What it ran on.
    pub machine: MachineInfo,
    /// What was measured.
    pub versions: Versions,
    /// The sizes.
    pub options: OverheadOptions,
    /// Tokio worker threads.
    pub worker_threads: usize,
    /// Every engine's no-op runs, one sample per round, in round order.
    pub noop_rounds: BTreeMap<String, Vec<RoundSample>>,
    /// Median no-op throughput per engine, tasks/s.
    pub noop_ops_per_sec: BTreeMap<String, f64>,
    /// Median, min and max no-op throughput per engine over the rounds.
    pub noop_ops_per_sec_range: BTreeMap<String, Summary>,
    /// Median, min and max CPU time per no-op task per engine over the rounds, ns (the
    /// whole process's user + system time over the timed section, divided by the tasks).
    pub noop_cpu_ns_per_task: BTreeMap<String, Summary>,
    /// s3pool's (and s3pool-metrics') median no-op throughput over semaphore-spawn's.
    pub ratio_vs_semaphore_spawn: BTreeMap<String, f64>,
    /// The same ratio from each engine's best round: on a shared machine, load only ever
    /// slows a round down, so best-of-rounds is the steadier comparison.
    pub ratio_vs_semaphore_spawn_best_round: BTreeMap<String, f64>,
    /// s3pool's (and s3pool-metrics') median no-op throughput over the minimal priority
    /// pool's.
    pub ratio_vs_minimal_priority_pool: BTreeMap<String, f64>,
    /// The goals' comparisons, round by round, on both clocks.
    pub comparisons: Vec<Comparison>,
    /// s3pool's no-op throughput over s3db.js's TasksPool's 84,000 tasks/s.
    pub ratio_vs_original: f64,
    /// Latency-bound efficiency per engine (see [`LatencyResult`]).
    pub littles_law_efficiency: BTreeMap<String, f64>,
    /// Latency-bound details per engine.
    pub latency: BTreeMap<String, LatencyResult>,
    /// RSS delta per no-op task queued on a paused pool, bytes.
    pub bytes_per_queued_task: f64,
    /// The queued-memory measurement.
    pub queued: QueuedMemory,
    /// RSS delta per no-op task parked by a rate limiter, bytes.
    pub bytes_per_parked_task: Option<f64>,
    /// The parked-memory measurement.
    pub parked: Option<QueuedMemory>,
    /// The overhead goals, each on both clocks.
    pub goals: Vec<GoalCheck>,
}

impl OverheadReport {
    /// Summarises the rounds and checks the goals.
    pub fn new(
        machine: MachineInfo,
        options: OverheadOptions,
        noop_rounds: BTreeMap<String, Vec<RoundSample>>,
        latency: BTreeMap<String, LatencyResult>,
        queued: QueuedMemory,
        parked: Option<QueuedMemory>,
    ) -> Self {
        let summarise = |field: fn(&RoundSample) -> Option<f64>| -> BTreeMap<String, Summary> {
            noop_rounds
                .iter()
                .filter_map(|(name, rounds)| {
                    let samples: Option<Vec<f64>> = rounds.iter().map(field).collect();
                    Some((name.clone(), Summary::of(&samples?)?))
                })
                .collect()
        };
        let noop_ops_per_sec_range = summarise(|sample| Some(sample.ops_per_sec));
        let noop_cpu_ns_per_task = summarise(|sample| sample.cpu_ns_per_task);
        let noop_ops_per_sec: BTreeMap<String, f64> = noop_ops_per_sec_range
            .iter()
            .map(|(name, summary)| (name.clone(), summary.median))
            .collect();
        let pick = |peer: Peer, of: fn(&Summary) -> f64| {
            noop_ops_per_sec_range.get(peer.name()).map_or(f64::NAN, of)
        };
        let ratios = |baseline: Peer, of: fn(&Summary) -> f64| -> BTreeMap<String, f64> {
            [Peer::S3pool, Peer::S3poolMetrics]
                .into_iter()
                .map(|peer| (peer.name().to_owned(), pick(peer, of) / pick(baseline, of)))
                .collect()
        };
        let comparisons: Vec<Comparison> = COMPARISONS
            .iter()
            .filter_map(|&(engine, baseline, _, _)| Comparison::of(&noop_rounds, engine, baseline))
            .collect();
        let littles_law_efficiency: BTreeMap<String, f64> = latency
            .iter()
            .map(|(name, result)| (name.clone(), result.littles_law_efficiency))
            .collect();
        let mut report = OverheadReport {
            machine,
            versions: Versions::detect(),
            options,
            worker_threads: worker_threads(),
            ratio_vs_original: pick(Peer::S3pool, |s| s.median) / ORIGINAL_NOOP_OPS_PER_SEC,
            ratio_vs_semaphore_spawn: ratios(Peer::SemaphoreSpawn, |s| s.median),
            ratio_vs_semaphore_spawn_best_round: ratios(Peer::SemaphoreSpawn, |s| s.max),
            ratio_vs_minimal_priority_pool: ratios(Peer::MinimalPriorityPool, |s| s.median),
            noop_rounds,
            noop_ops_per_sec,
            noop_ops_per_sec_range,
            noop_cpu_ns_per_task,
            comparisons,
            littles_law_efficiency,
            latency,
            bytes_per_queued_task: queued.bytes_per_queued_task,
            queued,
            bytes_per_parked_task: parked.as_ref().map(|parked| parked.bytes_per_queued_task),
            parked,
            goals: Vec::new(),
        };
        report.goals = report.check_goals();
        report
    }

    fn check_goals(&self) -> Vec<GoalCheck> {
        let mut goals = Vec::new();
        for &(engine, baseline, target, every_round) in &COMPARISONS {
            let Some(comparison) = self
                .comparisons
                .iter()
                .find(|c| c.engine == engine.name() && c.baseline == baseline.name())
            else {
                continue;
            };
            // "Every round" is judged on the worst round, otherwise on the median.
            let figure = |summary: &Summary| {
                if every_round {
                    summary.min
                } else {
                    summary.median
                }
            };
            let wall = figure(&comparison.throughput_ratio);
            let cpu = comparison.cpu_ratio.as_ref().map(figure);
            goals.push(GoalCheck {
                goal: format!(
                    "{} / {} >= {target} ({})",
                    engine.name(),
                    baseline.name(),
                    if every_round {
                        "every round"
                    } else {
                        "median of rounds"
                    }
                ),
                wall,
                cpu,
                met_wall: wall >= target,
                met_cpu: cpu.map(|cpu| cpu >= target),
                rounds_met: Some(RoundsMet::of(comparison, target)),
            });
        }
        let mut at_most = |goal: &str, value: f64, limit: f64| {
            goals.push(GoalCheck {
                goal: format!("{goal} <= {limit}"),
                wall: value,
                cpu: None,
                met_wall: value <= limit,
                met_cpu: None,
                rounds_met: None,
            });
        };
        at_most("bytes_per_queued_task", self.bytes_per_queued_task, 96.0);
        if let Some(parked) = self.bytes_per_parked_task {
            at_most("bytes_per_parked_task", parked, 200.0);
        }
        let efficiency = self
            .littles_law_efficiency
            .get(Peer::S3pool.name())
            .copied()
            .unwrap_or(f64::NAN);
        goals.push(GoalCheck {
            goal: "s3pool littles_law_efficiency >= 0.99".to_owned(),
            wall: efficiency,
            cpu: None,
            met_wall: efficiency >= 0.99,
            met_cpu: None,
            rounds_met: None,
        });
        goals
    }

    /// Writes `results.json` into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let path = dir.join("results.json");
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .map_err(|e| BenchError::io(&path, e))?;
        Ok(path)
    }

    /// The figures and the goals, as text.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "No-op: {} tasks at C={} on {} workers, {} interleaved rounds (median, min–max):",
            self.options.noop_tasks,
            self.options.concurrency,
            self.worker_threads,
            self.options.rounds
        );
        let _ = writeln!(
            out,
            "  {:<24} {:>10}  {:>23}  {:>9}  {:>17}",
            "engine", "tasks/s", "(min–max)", "CPU ns/task", "(min–max)"
        );
        for peer in Peer::ALL {
            let Some(range) = self.noop_ops_per_sec_range.get(peer.name()) else {
                continue;
            };
            let cpu = self.noop_cpu_ns_per_task.get(peer.name()).map_or_else(
                || format!("{:>11}  {:>17}", "n/a", ""),
                |cpu| {
                    format!(
                        "{:>11.0}  {:>17}",
                        cpu.median,
                        format!("({:.0}–{:.0})", cpu.min, cpu.max)
                    )
                },
            );
            let _ = writeln!(
                out,
                "  {:<24} {:>10.0}  {:>23}  {cpu}",
                peer.name(),
                range.median,
                format!("({:.0}–{:.0})", range.min, range.max),
            );
        }
        out.push_str(
            "Round by round (engine / baseline; throughput ratio, and CPU ratio = baseline's CPU \
             per task / engine's):\n",
        );
        for comparison in &self.comparisons {
            let cpu = comparison.cpu_ratio.map_or_else(
                || "n/a".to_owned(),
                |cpu| format!("{:.3} ({:.3}–{:.3})", cpu.median, cpu.min, cpu.max),
            );
            let _ = writeln!(
                out,
                "  {:<46} throughput {:.3} ({:.3}–{:.3})  CPU {cpu}",
                format!("{} / {}", comparison.engine, comparison.baseline),
                comparison.throughput_ratio.median,
                comparison.throughput_ratio.min,
                comparison.throughput_ratio.max,
            );
        }
        let _ = writeln!(
            out,
            "Latency-bound: {} tasks of {} ms at C={} (efficiency = achieved / (C / mean service)):",
            self.options.latency_tasks, self.options.latency_ms, self.options.concurrency
        );
        for (name, result) in &self.latency {
            let _ = writeln!(
                out,
                "  {name:<24} {:>8.0} tasks/s  service {:.2} ms  efficiency {:.4}  idle ms per slot: startup {:.2}, between tasks {:.2}, tail {:.2}",
                result.achieved_ops_per_sec,
                result.mean_service_ms,
                result.littles_law_efficiency,
                result.idle.startup_ms,
                result.idle.between_ms,
                result.idle.tail_ms,
            );
        }
        let _ = writeln!(
            out,
            "Waiting tasks: {:.1} bytes queued, {} parked ({} of each the caller's TaskHandle)",
            self.bytes_per_queued_task,
            self.bytes_per_parked_task
                .map_or_else(|| "n/a".to_owned(), |parked| format!("{parked:.1} bytes")),
            self.queued.handle_bytes
        );
        let _ = writeln!(
            out,
            "s3pool: {:.1}x s3db.js's 84,000 no-op tasks/s",
            self.ratio_vs_original
        );
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        out.push_str(
            "Goals (wall clock | CPU time per task; [rounds whose own ratio met it, wall | CPU]):\n",
        );
        for goal in &self.goals {
            let cpu = match (goal.cpu, goal.met_cpu) {
                (Some(cpu), Some(met)) => format!(" | {cpu:.3} {}", verdict(met)),
                _ => String::new(),
            };
            let rounds = goal.rounds_met.map_or_else(String::new, |met| {
                let cpu = met
                    .cpu
                    .map_or_else(String::new, |cpu| format!(" | {cpu}/{}", met.rounds));
                format!("  [{}/{}{cpu}]", met.wall, met.rounds)
            });
            let _ = writeln!(
                out,
                "  {:<70} {:.3} {}{cpu}{rounds}",
                goal.goal,
                goal.wall,
                verdict(goal.met_wall)
            );
        }
        out
    }
}
