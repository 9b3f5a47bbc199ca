//! `bench-overhead`: s3pool beside the bare Rust idioms on no-op and latency-bound
//! workloads in one process (wall-clock and CPU time), and the memory of a waiting task.

mod minimal_pool;
mod peers;
mod queued;
mod report;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use peers::Peer;
pub use queued::{measure_waiting_bytes, QueuedMemory, Waiting};
pub use report::{
    Comparison, GoalCheck, LatencyResult, LatencySample, OverheadReport, RoundSample, RoundsMet,
    SlotIdle, ORIGINAL_NOOP_OPS_PER_SEC,
};

use crate::child::run_child;
use crate::cpu::Timing;
use crate::error::BenchError;
use crate::machine::MachineInfo;
use crate::measure::worker_threads;

/// Sizes of an overhead run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverheadOptions {
    /// No-op tasks per run. Default 1,000,000.
    pub noop_tasks: usize,
    /// Latency-bound tasks per run. Default 2,000.
    pub latency_tasks: usize,
    /// How long each latency-bound task sleeps, ms. Default 10.
    pub latency_ms: u64,
    /// The limit of every engine. Default 200.
    pub concurrency: usize,
    /// Interleaved rounds (each engine once per round); medians are reported. Default 9.
    pub rounds: usize,
    /// Rounds run first exactly as the timed ones (every engine, the same sizes, the same
    /// rotation of the order) whose figures are thrown away, every engine's alike. Default 1.
    #[serde(default = "default_warmup_rounds")]
    pub warmup_rounds: usize,
    /// Tasks queued on a paused pool for `bytes_per_queued_task` (and parked for
    /// `bytes_per_parked_task`). Default 1,000,000.
    pub queued_tasks: usize,
}

impl Default for OverheadOptions {
    fn default() -> Self {
        OverheadOptions {
            noop_tasks: 1_000_000,
            latency_tasks: 2_000,
            latency_ms: 10,
            concurrency: 200,
            rounds: 9,
            warmup_rounds: default_warmup_rounds(),
            queued_tasks: 1_000_000,
        }
    }
}

fn default_warmup_rounds() -> usize {
    1
}

impl OverheadOptions {
    /// A run of a few seconds (100,000 no-op tasks, 3 rounds after the warm-up round).
    pub fn quick() -> Self {
        OverheadOptions {
            noop_tasks: 100_000,
            queued_tasks: 100_000,
            rounds: 3,
            ..Self::default()
        }
    }
}

/// Runs the no-op and latency-bound workloads for every [`Peer`] in this process, round
/// by round, and takes the waiting-task memory from `queued` and `parked` (normally
/// measured in fresh child processes, see [`waiting_bytes_in_child`]).
pub fn run_overhead(
    options: &OverheadOptions,
    queued: QueuedMemory,
    parked: Option<QueuedMemory>,
) -> Result<OverheadReport, BenchError> {
    if options.rounds == 0 {
        return Err(BenchError::ZeroSize { field: "rounds" });
    }
    let machine = MachineInfo::detect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
        .map_err(|error| BenchError::Setup(format!("tokio runtime: {error}")))?;
    let mut noop: BTreeMap<Peer, Vec<Timing>> = BTreeMap::new();
    let mut latency: BTreeMap<Peer, Vec<LatencySample>> = BTreeMap::new();
    runtime.block_on(async {
        // The warm-up rounds come first and run exactly as the timed ones, so that the
        // allocator, the runtime's threads and the caches meet every engine as in a timed
        // round; their figures are dropped, every engine's alike.
        let all = options.warmup_rounds.saturating_add(options.rounds);
        for round in 0..all {
            let timed = round >= options.warmup_rounds;
            for peer in Peer::round_order(round, all) {
                let timing = peer
                    .run(options.noop_tasks, options.concurrency, || async {})
                    .await?;
                if timed {
                    noop.entry(peer).or_default().push(timing);
                }
            }
            // An untimed pass first: the runtime's workers went idle during the last no-op
            // run, and whichever engine came first here paid for waking them (s3pool, first
            // in the list, stood idle 2–5 ms per slot before its first task against 0.6 ms
            // for the same pool with ten priorities right after it).
            latency_round(Peer::ChannelWorkers, options).await?;
            for peer in Peer::round_order(round, all) {
                let sample = latency_round(peer, options).await?;
                if timed {
                    latency.entry(peer).or_default().push(sample);
                }
            }
        }
        Ok::<_, BenchError>(())
    })?;
    let latency = latency
        .into_iter()
        .filter_map(|(peer, samples)| {
            Some((
                peer.name().to_owned(),
                LatencyResult::of(&samples, options.concurrency)?,
            ))
        })
        .collect();
    let rounds = noop
        .into_iter()
        .map(|(peer, timings)| {
            let rounds = timings
                .iter()
                .map(|timing| RoundSample::of(timing, options.noop_tasks))
                .collect();
            (peer.name().to_owned(), rounds)
        })
        .collect();
    Ok(OverheadReport::new(
        machine,
        options.clone(),
        rounds,
        latency,
        queued,
        parked,
    ))
}

/// One latency-bound run: achieved tasks/s, the mean service time measured inside the
/// tasks, and where the slots stood idle (each task notes when it started and ended).
async fn latency_round(peer: Peer, options: &OverheadOptions) -> Result<LatencySample, BenchError> {
    let spans = Arc::new(Mutex::new(Vec::with_capacity(options.latency_tasks)));
    let sleep = Duration::from_millis(options.latency_ms);
    let work = {
        let spans = Arc::clone(&spans);
        move || {
            let spans = Arc::clone(&spans);
            async move {
                let start = Instant::now();
                tokio::time::sleep(sleep).await;
                let end = Instant::now();
                spans
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((start, end));
            }
        }
    };
    let timing = peer
        .run(options.latency_tasks, options.concurrency, work)
        .await?;
    let spans = spans.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(LatencySample::of(&spans, &timing, options.concurrency))
}

impl LatencySample {
    /// From each task's (start, end) and the engine's own timing: the idle split counts from
    /// the moment its clock started (`timing.started`), as its wall time does. A peer that
    /// builds its workers before its clock starts (the minimal pool, the channel's workers)
    /// did not have that set-up counted in its startup, nor taken from its tail.
    fn of(spans: &[(Instant, Instant)], timing: &Timing, concurrency: usize) -> Self {
        let tasks = spans.len().max(1);
        let service: Duration = spans.iter().map(|&(start, end)| end - start).sum();
        let mean_service = service.as_secs_f64() / tasks as f64;
        let clock = timing.started.unwrap_or_else(|| {
            spans
                .iter()
                .map(|&(start, _)| start)
                .min()
                .unwrap_or_else(Instant::now)
        });
        let since_clock: Vec<(Duration, Duration)> = spans
            .iter()
            .map(|&(start, end)| {
                (
                    start.saturating_duration_since(clock),
                    end.saturating_duration_since(clock),
                )
            })
            .collect();
        LatencySample {
            achieved_ops_per_sec: spans.len() as f64 / timing.wall.as_secs_f64(),
            mean_service_s: mean_service,
            idle: SlotIdle::of(&since_clock, timing.wall, concurrency),
        }
    }
}

/// Runs `binary queued-bytes --tasks N --concurrency C [--parked]` in a child process
/// ([`run_child`]) and reads its measurement.
pub fn waiting_bytes_in_child(
    binary: &Path,
    tasks: usize,
    concurrency: usize,
    waiting: Waiting,
) -> Result<QueuedMemory, BenchError> {
    let mut args = vec![
        "queued-bytes".to_owned(),
        "--tasks".to_owned(),
        tasks.to_string(),
        "--concurrency".to_owned(),
        concurrency.to_string(),
    ];
    let label = match waiting {
        Waiting::Queued => "queued-bytes",
        Waiting::Parked => {
            args.push("--parked".to_owned());
            "queued-bytes --parked"
        }
    };
    run_child(binary, label, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_idle_splits_what_the_tasks_did_not_fill() {
        let ms = Duration::from_millis;
        // Two slots over 30 ms: one runs 1–11 and 11–21; the other 3–13 and, after a 1 ms
        // gap, 14–24.
        let spans = [
            (ms(1), ms(11)),
            (ms(3), ms(13)),
            (ms(11), ms(21)),
            (ms(14), ms(24)),
        ];
        let idle = SlotIdle::of(&spans, ms(30), 2);
        assert!((idle.startup_ms - 2.0).abs() < 1e-9, "{idle:?}");
        assert!((idle.tail_ms - 7.5).abs() < 1e-9, "{idle:?}");
        assert!((idle.between_ms - 0.5).abs() < 1e-9, "{idle:?}");
    }

    /// The idle split counts from the engine's own clock, as its wall time does: a peer
    /// that built its workers for 5 ms before its clock started is not charged those 5 ms
    /// as startup, and its tail ends where its clock stopped. Counted from before the
    /// set-up (the harness once took its origin there), the startup read 6 ms and the tail
    /// 0 (the ends fell past the wall time).
    #[test]
    fn the_idle_split_counts_from_the_engines_clock() {
        let ms = Duration::from_millis;
        let before_setup = Instant::now();
        let clock = before_setup + ms(5);
        // Two slots: 1–11 and 2–12 after the clock started, which stopped at 13.
        let spans = [
            (clock + ms(1), clock + ms(11)),
            (clock + ms(2), clock + ms(12)),
        ];
        let timing = Timing {
            wall: ms(13),
            cpu: None,
            started: Some(clock),
        };
        let sample = LatencySample::of(&spans, &timing, 2);
        assert!((sample.idle.startup_ms - 1.5).abs() < 1e-6, "{sample:?}");
        assert!((sample.idle.tail_ms - 1.5).abs() < 1e-6, "{sample:?}");
        assert!(sample.idle.between_ms.abs() < 1e-6, "{sample:?}");
        assert!((sample.mean_service_s - 0.010).abs() < 1e-9, "{sample:?}");
        assert!((sample.achieved_ops_per_sec - 2.0 / 0.013).abs() < 1e-6);
    }

    fn memory(waiting: Waiting, bytes: f64) -> QueuedMemory {
        QueuedMemory {
            waiting,
            tasks: 10,
            rss_before_bytes: 0,
            rss_queued_bytes: (bytes * 10.0) as u64,
            bytes_per_queued_task: bytes,
            handle_bytes: 16,
            completed_after_resume: 10,
        }
    }

    #[test]
    fn report_has_every_peer_cpu_time_and_ratios_round_by_round() {
        let options = OverheadOptions {
            noop_tasks: 2_000,
            latency_tasks: 40,
            latency_ms: 1,
            concurrency: 8,
            rounds: 2,
            warmup_rounds: 1,
            queued_tasks: 10,
        };
        let report = run_overhead(
            &options,
            memory(Waiting::Queued, 100.0),
            Some(memory(Waiting::Parked, 150.0)),
        )
        .unwrap();
        assert_eq!(report.noop_ops_per_sec.len(), Peer::ALL.len());
        for peer in Peer::ALL {
            let name = peer.name();
            assert_eq!(report.noop_rounds[name].len(), 2, "{name}");
            assert!(report.noop_ops_per_sec[name] > 0.0, "{name}");
            if cfg!(unix) {
                assert!(report.noop_cpu_ns_per_task[name].median >= 0.0, "{name}");
            }
            let latency = &report.latency[name];
            // A task sleeps at least its 1 ms, and no limiter beats Little's law by much.
            assert!(latency.mean_service_ms >= 1.0, "{name}: {latency:?}");
            assert!(latency.littles_law_efficiency > 0.0, "{name}: {latency:?}");
            let idle = latency.idle;
            assert!(
                idle.startup_ms >= 0.0 && idle.tail_ms >= 0.0,
                "{name}: {idle:?}"
            );
        }
        let expected =
            report.noop_ops_per_sec["s3pool"] / report.noop_ops_per_sec["semaphore-spawn"];
        assert_eq!(report.ratio_vs_semaphore_spawn["s3pool"], expected);
        let best = report.noop_ops_per_sec_range["s3pool"].max
            / report.noop_ops_per_sec_range["semaphore-spawn"].max;
        assert_eq!(report.ratio_vs_semaphore_spawn_best_round["s3pool"], best);
        let expected =
            report.noop_ops_per_sec["s3pool"] / report.noop_ops_per_sec["minimal-priority-pool"];
        assert_eq!(report.ratio_vs_minimal_priority_pool["s3pool"], expected);

        // Comparisons pair the engines round by round.
        let versus_minimal = report
            .comparisons
            .iter()
            .find(|c| c.engine == "s3pool" && c.baseline == "minimal-priority-pool")
            .unwrap();
        let per_round: Vec<f64> = report.noop_rounds["s3pool"]
            .iter()
            .zip(&report.noop_rounds["minimal-priority-pool"])
            .map(|(engine, baseline)| engine.ops_per_sec / baseline.ops_per_sec)
            .collect();
        assert_eq!(
            versus_minimal.throughput_ratio,
            crate::Summary::of(&per_round).unwrap()
        );

        assert_eq!(report.bytes_per_queued_task, 100.0);
        assert_eq!(report.bytes_per_parked_task, Some(150.0));
        let goal = |name: &str| {
            report
                .goals
                .iter()
                .find(|g| g.goal.starts_with(name))
                .unwrap()
        };
        // Each ratio goal says in how many rounds the round's own ratio met it.
        let met = goal("s3pool / minimal-priority-pool").rounds_met.unwrap();
        assert_eq!(met.rounds, 2);
        assert_eq!(
            met.wall,
            per_round.iter().filter(|&&ratio| ratio >= 1.0).count()
        );
        assert!(goal("bytes_per_queued_task").rounds_met.is_none());
        assert!(!goal("bytes_per_queued_task").met_wall, "100 > 96");
        assert!(goal("bytes_per_parked_task").met_wall, "150 <= 200");
        let summary = report.summary();
        assert!(summary.contains("bytes_per_queued_task <= 96"), "{summary}");
        assert!(summary.contains("minimal-priority-pool"), "{summary}");
    }

    #[test]
    fn zero_rounds_is_an_error() {
        let options = OverheadOptions {
            rounds: 0,
            ..OverheadOptions::quick()
        };
        let queued = measure_waiting_bytes(10, 2, Waiting::Queued).unwrap();
        assert!(matches!(
            run_overhead(&options, queued, None),
            Err(BenchError::ZeroSize { field: "rounds" })
        ));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn parked_tasks_are_measured_and_all_resolve() {
        let parked = measure_waiting_bytes(500, 4, Waiting::Parked).unwrap();
        assert_eq!(parked.waiting, Waiting::Parked);
        assert_eq!(parked.completed_after_resume, 500);
    }
}
