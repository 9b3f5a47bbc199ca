//! Soak: mixed PUT / GET / DELETE load through the chaos store with the adaptive tuner on,
//! for a fixed time. Prints RSS as it goes and, at the end, one JSON line: operations,
//! failures (all of which must be injected faults), the RSS slope, and the tuned limit's
//! distribution (p5/p50/p95) beside the calls running and the calls the load asked for
//! (running + queued). Fails on a failure that was not injected, and when the median limit
//! falls under a tenth of what the load asked for (a collapse): the faults are random, not
//! load.
//!
//! `cargo xtask soak` (10 minutes) or
//! `cargo run --release -p s3-client --features tuning --example soak -- --seconds 60`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use pool_core::TaskError;
use pool_tuning::KneeConfig;
use s3_client::{ChaosConfig, ChaosStore, ClientError, S3Client};

const IN_FLIGHT: usize = 256;

#[derive(Default)]
struct Tally {
    operations: AtomicU64,
    injected_failures: AtomicU64,
    unexplained_failures: AtomicU64,
    corrupted_reads: AtomicU64,
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A failure is explained if it is a fault the chaos store injected (or its consequence).
fn injected(error: &ClientError) -> bool {
    match error.task_error() {
        TaskError::TimedOut { .. } | TaskError::Panicked(_) => true,
        other => other.task_error().is_some_and(|e| {
            matches!(
                e,
                object_store::Error::Generic {
                    store: "ChaosStore",
                    ..
                }
            )
        }),
    }
}

async fn one_operation(client: &S3Client, i: u64, tally: &Tally) {
    let path = Path::from(format!("soak/{}/{i}", i % 64));
    let body: Vec<u8> = (0..(1_024 + (i % 16) * 1_024))
        .map(|b| (b ^ i) as u8)
        .collect();
    let note = |result: Result<(), ClientError>| match result {
        Ok(()) => {}
        Err(error) if injected(&error) => {
            tally.injected_failures.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => {
            eprintln!("unexplained failure: {error}");
            tally.unexplained_failures.fetch_add(1, Ordering::Relaxed);
        }
    };
    let put = client.put(&path, body.clone()).await.map(drop);
    let written = put.is_ok();
    note(put);
    if written {
        match client.get(&path).await {
            Ok(bytes) if bytes[..] == body[..] => {}
            Ok(_) => {
                tally.corrupted_reads.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => note(Err(error)),
        }
    }
    let deleted = client.delete(&path).await.map(drop);
    note(deleted);
    tally.operations.fetch_add(1, Ordering::Relaxed);
}

/// Least-squares slope of (seconds, MB), in MB per minute.
fn slope_mb_per_min(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = samples
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = samples.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den * 60.0
    }
}

/// The pool's limit, running calls and running + queued calls, sampled every 100 ms.
#[derive(Debug, Default)]
struct LimitSamples {
    limit: Vec<f64>,
    running: Vec<f64>,
    demand: Vec<f64>,
}

impl LimitSamples {
    fn skip_warm_up(&mut self) {
        for series in [&mut self.limit, &mut self.running, &mut self.demand] {
            let warm_up = series.len() / 5;
            series.drain(..warm_up);
        }
    }
}

/// p5, p50 and p95 of `values` (nearest rank; 0 when empty).
fn percentiles(values: &mut [f64]) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if values.is_empty() {
            return 0.0;
        }
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    [at(0.05), at(0.5), at(0.95)]
}

fn percentiles_json([p5, p50, p95]: [f64; 3]) -> serde_json::Value {
    serde_json::json!({ "p5": p5, "p50": p50, "p95": p95 })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(600);
    let chaos = ChaosConfig::new(2026)
        .latency(1.0, Duration::from_millis(1)..Duration::from_millis(8))
        .slow_down(0.002)
        .internal_error(0.005)
        .connection_reset(0.002)
        .hang(0.0002)
        .hang_for(Duration::from_secs(60));
    let store = Arc::new(ChaosStore::new(InMemory::new(), chaos)?);
    let client = S3Client::builder(store.clone())
        .auto_concurrency(KneeConfig::default())
        .timeout(Duration::from_secs(2))
        .retry_delay(Duration::from_millis(20))
        // A soak keeps far more calls outstanding than the pool runs: that is the plan.
        .configure_pool(|pool| pool.no_pressure_rule())
        .build()?;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let sampler = {
        let (tally, client) = (tally.clone(), client.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(5).min(Duration::from_secs(seconds))).await;
                let at = started.elapsed().as_secs_f64();
                let rss = rss_mb();
                samples.push((at, rss));
                println!(
                    "t={at:>5.0}s rss={rss:>6.1} MB ops={} concurrency={}",
                    tally.operations.load(Ordering::Relaxed),
                    client.stats().map_or(0, |s| s.concurrency),
                );
            }
            samples
        })
    };
    // The tuned limit beside what the load asked for (calls running or waiting for a slot),
    // every 100 ms: the limit must follow the load through the faults, not collapse.
    let limits = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut limits = LimitSamples::default();
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(stats) = client.stats() {
                    limits.limit.push(stats.concurrency as f64);
                    limits.running.push(stats.active as f64);
                    limits.demand.push((stats.active + stats.queued) as f64);
                }
            }
            limits
        })
    };
    futures::stream::iter(0u64..)
        .take_while(|_| futures::future::ready(Instant::now() < deadline))
        .for_each_concurrent(IN_FLIGHT, |i| {
            let (client, tally) = (client.clone(), tally.clone());
            async move { one_operation(&client, i, &tally).await }
        })
        .await;
    let samples = sampler.await?;
    let mut limits = limits.await?;
    // The first fifth is the tuner's search; the distribution is over the rest.
    limits.skip_warm_up();
    let (limit, running, demand) = (
        percentiles(&mut limits.limit),
        percentiles(&mut limits.running),
        percentiles(&mut limits.demand),
    );
    // The first fifth is warm-up (allocator pools, tuner search); the slope is over the rest.
    let steady = &samples[samples.len() / 5..];
    let chaos = store.stats();
    let summary = serde_json::json!({
        "seconds": seconds,
        "operations": tally.operations.load(Ordering::Relaxed),
        "injected_failures": tally.injected_failures.load(Ordering::Relaxed),
        "unexplained_failures": tally.unexplained_failures.load(Ordering::Relaxed),
        "corrupted_reads": tally.corrupted_reads.load(Ordering::Relaxed),
        "faults_injected": {
            "slow_downs": chaos.slow_downs, "internal_errors": chaos.internal_errors,
            "connection_resets": chaos.connection_resets, "hangs": chaos.hangs,
        },
        "store_calls": chaos.calls,
        "retries": client.stats().map_or(0, |s| s.retries),
        "final_concurrency": client.stats().map_or(0, |s| s.concurrency),
        "rss_mb_first": samples.first().map_or(0.0, |s| s.1),
        "rss_mb_last": samples.last().map_or(0.0, |s| s.1),
        "rss_slope_mb_per_min": slope_mb_per_min(steady),
        "tuned_limit": percentiles_json(limit),
        "running": percentiles_json(running),
        "demand": percentiles_json(demand),
    });
    println!("{summary}");
    println!(
        "tuned limit p5/p50/p95 {:.0}/{:.0}/{:.0}; running {:.0}/{:.0}/{:.0}; \
         asked for (running + queued) {:.0}/{:.0}/{:.0}",
        limit[0],
        limit[1],
        limit[2],
        running[0],
        running[1],
        running[2],
        demand[0],
        demand[1],
        demand[2],
    );
    let clean = tally.unexplained_failures.load(Ordering::Relaxed) == 0
        && tally.corrupted_reads.load(Ordering::Relaxed) == 0;
    // Collapsed: the median limit under a tenth of what the load asked for (the random
    // faults are background, whatever the load: no reason to hold the client back). Above
    // that the limit may sit below the demand for a real reason: on a loaded machine the
    // round trip grows with the calls in flight (CPU), which is queueing.
    let collapsed = limit[1] < demand[1] / 10.0;
    if !clean {
        Err("failures beyond the injected faults".into())
    } else if collapsed {
        Err("the tuned limit collapsed under the random faults".into())
    } else {
        Ok(())
    }
}
