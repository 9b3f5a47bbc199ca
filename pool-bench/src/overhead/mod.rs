//! `bench-overhead`: s3pool beside the bare Rust idioms on no-op and latency-bound
//! workloads in one process, and the memory of a queued task.

mod peers;
mod queued;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use peers::Peer;
pub use queued::{measure_queued_bytes, QueuedMemory};

use crate::child::run_child;
use crate::error::BenchError;
use crate::machine::{MachineInfo, Versions};
use crate::measure::worker_threads;
use crate::stats::Summary;

/// The original TasksPool's no-op throughput on this machine (issue 8), tasks/s.
pub const ORIGINAL_NOOP_OPS_PER_SEC: f64 = 84_000.0;

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
    /// Interleaved rounds (each engine once per round); medians are reported. Default 5.
    pub rounds: usize,
    /// Tasks queued on a paused pool for `bytes_per_queued_task`. Default 1,000,000.
    pub queued_tasks: usize,
}

impl Default for OverheadOptions {
    fn default() -> Self {
        OverheadOptions {
            noop_tasks: 1_000_000,
            latency_tasks: 2_000,
            latency_ms: 10,
            concurrency: 200,
            rounds: 5,
            queued_tasks: 1_000_000,
        }
    }
}

impl OverheadOptions {
    /// A run of a few seconds (100,000 no-op tasks, 3 rounds).
    pub fn quick() -> Self {
        OverheadOptions {
            noop_tasks: 100_000,
            queued_tasks: 100_000,
            rounds: 3,
            ..Self::default()
        }
    }
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
    /// Median no-op throughput per engine, tasks/s.
    pub noop_ops_per_sec: BTreeMap<String, f64>,
    /// Median, min and max no-op throughput per engine over the rounds.
    pub noop_ops_per_sec_range: BTreeMap<String, Summary>,
    /// s3pool's (and s3pool-metrics') median no-op throughput over semaphore-spawn's.
    pub ratio_vs_semaphore_spawn: BTreeMap<String, f64>,
    /// The same ratio from each engine's best round: on a shared machine, load only ever
    /// slows a round down, so best-of-rounds is the steadier comparison.
    pub ratio_vs_semaphore_spawn_best_round: BTreeMap<String, f64>,
    /// s3pool's no-op throughput over the original TasksPool's 84,000 tasks/s.
    pub ratio_vs_original: f64,
    /// Latency-bound efficiency per engine (see [`LatencyResult`]).
    pub littles_law_efficiency: BTreeMap<String, f64>,
    /// Latency-bound details per engine.
    pub latency: BTreeMap<String, LatencyResult>,
    /// RSS delta per no-op task queued on a paused pool, bytes.
    pub bytes_per_queued_task: f64,
    /// The queued-memory measurement.
    pub queued: QueuedMemory,
}

/// Runs the no-op and latency-bound workloads for every [`Peer`] in this process, round
/// by round, and takes the queued-task memory from `queued` (normally measured in a fresh
/// child process, see [`queued_bytes_in_child`]).
pub fn run_overhead(
    options: &OverheadOptions,
    queued: QueuedMemory,
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
    let mut noop: BTreeMap<Peer, Vec<f64>> = BTreeMap::new();
    let mut latency: BTreeMap<Peer, Vec<(f64, f64)>> = BTreeMap::new();
    runtime.block_on(async {
        // One untimed pass warms the allocator and the runtime's threads.
        for peer in Peer::ALL {
            peer.run(options.noop_tasks / 10, options.concurrency, || async {})
                .await?;
        }
        for _ in 0..options.rounds {
            for peer in Peer::ALL {
                let elapsed = peer
                    .run(options.noop_tasks, options.concurrency, || async {})
                    .await?;
                noop.entry(peer)
                    .or_default()
                    .push(options.noop_tasks as f64 / elapsed.as_secs_f64());
            }
            for peer in Peer::ALL {
                let sample = latency_round(peer, options).await?;
                latency.entry(peer).or_default().push(sample);
            }
        }
        Ok::<_, BenchError>(())
    })?;

    let noop_ops_per_sec_range: BTreeMap<String, Summary> = noop
        .iter()
        .filter_map(|(peer, samples)| Some((peer.name().to_owned(), Summary::of(samples)?)))
        .collect();
    let noop_ops_per_sec: BTreeMap<String, f64> = noop_ops_per_sec_range
        .iter()
        .map(|(name, summary)| (name.clone(), summary.median))
        .collect();
    let noop_of = |peer: Peer| {
        noop_ops_per_sec
            .get(peer.name())
            .copied()
            .unwrap_or(f64::NAN)
    };
    let ratio_vs_semaphore_spawn = [Peer::S3pool, Peer::S3poolMetrics]
        .into_iter()
        .map(|peer| {
            (
                peer.name().to_owned(),
                noop_of(peer) / noop_of(Peer::SemaphoreSpawn),
            )
        })
        .collect();
    let best_of = |peer: Peer| {
        noop_ops_per_sec_range
            .get(peer.name())
            .map_or(f64::NAN, |range| range.max)
    };
    let ratio_vs_semaphore_spawn_best_round = [Peer::S3pool, Peer::S3poolMetrics]
        .into_iter()
        .map(|peer| {
            (
                peer.name().to_owned(),
                best_of(peer) / best_of(Peer::SemaphoreSpawn),
            )
        })
        .collect();
    let latency: BTreeMap<String, LatencyResult> = latency
        .into_iter()
        .filter_map(|(peer, samples)| {
            let achieved: Vec<f64> = samples.iter().map(|(achieved, _)| *achieved).collect();
            let service: Vec<f64> = samples.iter().map(|(_, service)| *service).collect();
            let efficiency: Vec<f64> = samples
                .iter()
                .map(|(achieved, service)| achieved / (options.concurrency as f64 / service))
                .collect();
            let mean_service_s = service.iter().sum::<f64>() / service.len() as f64;
            Some((
                peer.name().to_owned(),
                LatencyResult {
                    achieved_ops_per_sec: Summary::of(&achieved)?.median,
                    mean_service_ms: mean_service_s * 1e3,
                    ideal_ops_per_sec: options.concurrency as f64 / mean_service_s,
                    littles_law_efficiency: Summary::of(&efficiency)?.median,
                },
            ))
        })
        .collect();
    Ok(OverheadReport {
        machine,
        versions: Versions::detect(),
        options: options.clone(),
        worker_threads: worker_threads(),
        ratio_vs_original: noop_of(Peer::S3pool) / ORIGINAL_NOOP_OPS_PER_SEC,
        noop_ops_per_sec,
        noop_ops_per_sec_range,
        ratio_vs_semaphore_spawn,
        ratio_vs_semaphore_spawn_best_round,
        littles_law_efficiency: latency
            .iter()
            .map(|(name, result)| (name.clone(), result.littles_law_efficiency))
            .collect(),
        latency,
        bytes_per_queued_task: queued.bytes_per_queued_task,
        queued,
    })
}

/// One latency-bound run: (achieved tasks/s, mean service time in seconds measured
/// inside the tasks).
async fn latency_round(peer: Peer, options: &OverheadOptions) -> Result<(f64, f64), BenchError> {
    let service_nanos = Arc::new(AtomicU64::new(0));
    let sleep = Duration::from_millis(options.latency_ms);
    let work = {
        let service_nanos = Arc::clone(&service_nanos);
        move || {
            let service_nanos = Arc::clone(&service_nanos);
            async move {
                let start = Instant::now();
                tokio::time::sleep(sleep).await;
                let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                service_nanos.fetch_add(nanos, Ordering::Relaxed);
            }
        }
    };
    let elapsed = peer
        .run(options.latency_tasks, options.concurrency, work)
        .await?;
    let mean_service =
        service_nanos.load(Ordering::Relaxed) as f64 / 1e9 / options.latency_tasks as f64;
    Ok((
        options.latency_tasks as f64 / elapsed.as_secs_f64(),
        mean_service,
    ))
}

/// Runs `binary queued-bytes --tasks N --concurrency C` in a child process
/// ([`run_child`]) and reads its measurement.
pub fn queued_bytes_in_child(
    binary: &Path,
    tasks: usize,
    concurrency: usize,
) -> Result<QueuedMemory, BenchError> {
    let args = [
        "queued-bytes".to_owned(),
        "--tasks".to_owned(),
        tasks.to_string(),
        "--concurrency".to_owned(),
        concurrency.to_string(),
    ];
    run_child(binary, "queued-bytes", args)
}

impl OverheadReport {
    /// Writes `results.json` into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let path = dir.join("results.json");
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .map_err(|e| BenchError::io(&path, e))?;
        Ok(path)
    }

    /// The figures and issue 8's goals, as text.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "No-op: {} tasks at C={} on {} workers (median of {} rounds, min–max):",
            self.options.noop_tasks,
            self.options.concurrency,
            self.worker_threads,
            self.options.rounds
        );
        for (name, range) in &self.noop_ops_per_sec_range {
            let _ = writeln!(
                out,
                "  {name:<24} {:>12.0} tasks/s  ({:.0}–{:.0})",
                range.median, range.min, range.max
            );
        }
        let _ = writeln!(
            out,
            "Latency-bound: {} tasks of {} ms at C={} (efficiency = achieved / (C / mean service)):",
            self.options.latency_tasks,
            self.options.latency_ms,
            self.options.concurrency
        );
        for (name, result) in &self.latency {
            let _ = writeln!(
                out,
                "  {name:<24} {:>8.0} tasks/s  service {:.2} ms  efficiency {:.4}",
                result.achieved_ops_per_sec, result.mean_service_ms, result.littles_law_efficiency
            );
        }
        let check = |ok: bool| if ok { "met" } else { "MISSED" };
        let ratio = self
            .ratio_vs_semaphore_spawn
            .get("s3pool")
            .copied()
            .unwrap_or(f64::NAN);
        let ratio_metrics = self
            .ratio_vs_semaphore_spawn
            .get("s3pool-metrics")
            .copied()
            .unwrap_or(f64::NAN);
        let efficiency = self
            .littles_law_efficiency
            .get("s3pool")
            .copied()
            .unwrap_or(f64::NAN);
        let best = |name: &str| {
            self.ratio_vs_semaphore_spawn_best_round
                .get(name)
                .copied()
                .unwrap_or(f64::NAN)
        };
        out.push_str("Goals (issue 8):\n");
        let _ = writeln!(
            out,
            "  ratio_vs_semaphore_spawn >= 1.0: s3pool {ratio:.2} ({}), with metrics {ratio_metrics:.2} ({}); \
             best rounds: {:.2} / {:.2}",
            check(ratio >= 1.0),
            check(ratio_metrics >= 1.0),
            best("s3pool"),
            best("s3pool-metrics"),
        );
        let _ = writeln!(
            out,
            "  >= 20x the original's 84,000 no-op tasks/s: {:.1}x ({})",
            self.ratio_vs_original,
            check(self.ratio_vs_original >= 20.0)
        );
        let _ = writeln!(
            out,
            "  littles_law_efficiency >= 0.98: {efficiency:.4} ({})",
            check(efficiency >= 0.98)
        );
        let _ = writeln!(
            out,
            "  bytes_per_queued_task <= 128: {:.1} ({}; {} of it the caller's TaskHandle)",
            self.bytes_per_queued_task,
            check(self.bytes_per_queued_task <= 128.0),
            self.queued.handle_bytes
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_every_peer_and_ratios_from_the_medians() {
        let options = OverheadOptions {
            noop_tasks: 2_000,
            latency_tasks: 40,
            latency_ms: 1,
            concurrency: 8,
            rounds: 1,
            queued_tasks: 10,
        };
        let queued = QueuedMemory {
            tasks: 10,
            rss_before_bytes: 0,
            rss_queued_bytes: 1_000,
            bytes_per_queued_task: 100.0,
            handle_bytes: 24,
            completed_after_resume: 10,
        };
        let report = run_overhead(&options, queued).unwrap();
        let names: Vec<&str> = Peer::ALL.iter().map(|peer| peer.name()).collect();
        assert_eq!(
            report
                .noop_ops_per_sec
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .len(),
            5
        );
        for name in &names {
            assert!(report.noop_ops_per_sec[*name] > 0.0, "{name}");
            let latency = &report.latency[*name];
            // A task sleeps at least its 1 ms, and no limiter beats Little's law by much.
            assert!(latency.mean_service_ms >= 1.0, "{name}: {latency:?}");
            assert!(latency.littles_law_efficiency > 0.0, "{name}: {latency:?}");
        }
        let expected =
            report.noop_ops_per_sec["s3pool"] / report.noop_ops_per_sec["semaphore-spawn"];
        assert_eq!(report.ratio_vs_semaphore_spawn["s3pool"], expected);
        let best = report.noop_ops_per_sec_range["s3pool"].max
            / report.noop_ops_per_sec_range["semaphore-spawn"].max;
        assert_eq!(report.ratio_vs_semaphore_spawn_best_round["s3pool"], best);
        assert_eq!(report.bytes_per_queued_task, 100.0);
        assert!(report
            .summary()
            .contains("bytes_per_queued_task <= 128: 100.0 (met"));
    }

    #[test]
    fn zero_rounds_is_an_error() {
        let options = OverheadOptions {
            rounds: 0,
            ..OverheadOptions::quick()
        };
        let queued = measure_queued_bytes(10, 2).unwrap();
        assert!(matches!(
            run_overhead(&options, queued),
            Err(BenchError::ZeroSize { field: "rounds" })
        ));
    }
}
