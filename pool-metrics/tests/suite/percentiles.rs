//! Percentiles against known distributions, within HDR precision (3 significant digits).

use crate::support;

use std::time::Instant;

use pool_core::{Pool, TaskOptions};
use pool_metrics::{LatencySummary, MemoryMode, Metrics, MetricsConfig};
use support::{assert_within_precision, exact_quantile, ms, us, Finished, Scripted};

fn light() -> Metrics {
    Metrics::new(MetricsConfig::default().memory(MemoryMode::Light)).unwrap()
}

/// Checks every reported quantile against the exact nearest-rank one.
fn assert_matches(summary: &LatencySummary, values: &[u64]) {
    let mut values = values.to_vec();
    assert_eq!(summary.count, values.len() as u64);
    for (quantile, got) in [0.5, 0.95, 0.99, 0.999]
        .into_iter()
        .zip(summary.quantile_values())
    {
        assert_within_precision(got, exact_quantile(&mut values, quantile));
    }
    assert_within_precision(summary.max_us, *values.iter().max().unwrap());
    assert_within_precision(summary.min_us, *values.iter().min().unwrap());
    let mean = values.iter().sum::<u64>() as f64 / values.len() as f64;
    assert!((summary.mean_us - mean).abs() < 1e-6, "exact mean");
}

#[test]
fn uniform_execution_times_give_uniform_percentiles() {
    let metrics = light();
    let now = Instant::now();
    // 100 µs … 1 s in steps of 100 µs, recorded in a scrambled order.
    let values: Vec<u64> = (1..=10_000).map(|i| i * 100).collect();
    for step in 0..10_000u64 {
        let i = (step * 7_919) % 10_000; // 7919 is prime: a permutation of 0..10_000
        Finished::new(step, now)
            .execution(us(values[i as usize]))
            .send_to(&metrics);
    }
    let aggregate = metrics.aggregate_at(now, now);
    assert_matches(&aggregate.execution, &values);
    assert_eq!(aggregate.execution.p50_us / 1_000, 500);
}

#[test]
fn a_slow_tail_shows_in_the_high_percentiles_only() {
    let metrics = light();
    let now = Instant::now();
    // 98% at 2 ms, 2% at 500 ms.
    let values: Vec<u64> = (0..5_000)
        .map(|i| if i % 50 == 0 { 500_000 } else { 2_000 })
        .collect();
    for (id, &value) in values.iter().enumerate() {
        Finished::new(id as u64, now)
            .queue_wait(us(value))
            .send_to(&metrics);
    }
    let queue_wait = metrics.aggregate_at(now, now).queue_wait;
    assert_matches(&queue_wait, &values);
    assert_within_precision(queue_wait.p95_us, 2_000);
    assert_within_precision(queue_wait.p99_us, 500_000);
}

#[tokio::test(start_paused = true)]
async fn a_real_pool_reports_the_execution_times_of_its_tasks() {
    let metrics = light();
    let pool = Pool::builder()
        .concurrency(200)
        .observer(metrics.clone())
        .build()
        .unwrap();
    // Each task sleeps 1..=100 ms of virtual time, two tasks per duration.
    let durations: Vec<u64> = (0..200).map(|i| i % 100 + 1).collect();
    let handles: Vec<_> = durations
        .iter()
        .map(|&millis| {
            pool.enqueue(
                move || async move {
                    tokio::time::sleep(ms(millis)).await;
                    Ok::<_, Scripted>(())
                },
                TaskOptions::new(),
            )
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let aggregate = metrics.aggregate_all();
    let micros: Vec<u64> = durations.iter().map(|m| m * 1_000).collect();
    assert_matches(&aggregate.execution, &micros);
    assert_matches(&aggregate.total, &micros);
    assert_eq!(
        aggregate.queue_wait.max_us, 0,
        "nothing waited at concurrency 200"
    );
}
