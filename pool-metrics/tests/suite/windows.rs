//! Rolling window and history expiry, on tokio's paused (virtual) clock and on explicit instants.

use crate::support;

use std::time::{Duration, Instant};

use pool_core::{Pool, TaskOptions};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
use support::{assert_within_precision, ms, Finished, Scripted};

fn light() -> Metrics {
    Metrics::new(MetricsConfig::default().memory(MemoryMode::Light)).unwrap()
}

/// Runs `count` tasks that each sleep `duration` of virtual time, and waits for all of them.
async fn run(pool: &Pool, count: usize, duration: Duration) {
    let handles: Vec<_> = (0..count)
        .map(|_| {
            pool.enqueue(
                move || async move {
                    tokio::time::sleep(duration).await;
                    Ok::<_, Scripted>(())
                },
                TaskOptions::new(),
            )
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn rolling_throughput_forgets_tasks_older_than_the_window() {
    let metrics = light(); // 10 s window in 20 buckets of 500 ms
    let pool = Pool::builder()
        .concurrency(100)
        .observer(metrics.clone())
        .build()
        .unwrap();
    let start = pool.now();
    run(&pool, 100, Duration::ZERO).await;

    tokio::time::advance(Duration::from_secs(2)).await;
    let rolling = metrics.stats().rolling;
    assert_eq!((rolling.finished, rolling.succeeded), (100, 100));
    assert_eq!(rolling.window_secs, 2.0);
    assert_eq!(rolling.ops_per_sec, 50.0);
    assert_eq!(rolling.success_rate, Some(1.0));

    // Just before 10 s, bucket 0 is still the oldest in the window.
    tokio::time::sleep_until((start + ms(9_999)).into()).await;
    assert_eq!(metrics.stats().rolling.finished, 100);

    // At 10 s the window starts at bucket 1.
    tokio::time::sleep_until((start + ms(10_000)).into()).await;
    let rolling = metrics.stats().rolling;
    assert_eq!((rolling.finished, rolling.success_rate), (0, None));
    assert_eq!(rolling.window_secs, 9.5);
    // Lifetime counters are not windowed.
    assert_eq!(metrics.stats().finished, 100);
}

#[tokio::test(start_paused = true)]
async fn history_percentiles_reflect_recent_traffic_only() {
    let metrics = light(); // 60 s history in 12 slices of 5 s
    let pool = Pool::builder()
        .concurrency(100)
        .observer(metrics.clone())
        .build()
        .unwrap();
    let start = pool.now();
    run(&pool, 50, ms(10)).await; // finish at 10 ms, slice 0

    tokio::time::sleep_until((start + Duration::from_secs(30)).into()).await;
    run(&pool, 20, Duration::from_secs(1)).await; // finish at 31 s, slice 6

    tokio::time::sleep_until((start + Duration::from_secs(59)).into()).await;
    let both = metrics.aggregate_all();
    assert_eq!(both.finished, 70);
    assert_within_precision(both.execution.p50_us, 10_000);

    // At 60 s the history starts at slice 1: the fast tasks are forgotten.
    tokio::time::sleep_until((start + Duration::from_secs(60)).into()).await;
    let recent = metrics.aggregate_all();
    assert_eq!(recent.finished, 20);
    assert_eq!(recent.window_secs, 55.0);
    assert_within_precision(recent.execution.p50_us, 1_000_000);
    assert_eq!(metrics.stats().finished, 70);
}

#[test]
fn aggregate_since_counts_whole_slices_from_the_one_holding_since() {
    let metrics = light();
    let t0 = Instant::now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    metrics.aggregate_at(t0, t0); // fixes the clock origin at t0
                                  // One task in each of the seconds 0..30 (slices 0..=5).
    for second in 0..30 {
        Finished::new(second, at(second)).send_to(&metrics);
    }
    let now = at(30);
    // since 12 s lies in slice 2 (10..15 s): slices 2..=5 hold 20 tasks.
    let aggregate = metrics.aggregate_at(at(12), now);
    assert_eq!(aggregate.finished, 20);
    assert_eq!(aggregate.window_secs, 20.0);
    assert_eq!(aggregate.throughput_ops_per_sec, 1.0);
    // since in the future: nothing.
    assert_eq!(metrics.aggregate_at(at(31), now).finished, 0);
    // since before the horizon is clamped to it: everything (30 s < 60 s).
    assert_eq!(metrics.aggregate_at(t0, now).finished, 30);
}

#[test]
fn without_a_pool_now_is_never_before_the_latest_task() {
    let metrics = light();
    let system = Instant::now();
    assert!(
        metrics.now() >= system,
        "nothing recorded: the system clock"
    );
    // Tasks stamped an hour ahead (a pool on virtual time, since dropped), out of order.
    let ahead = system + Duration::from_secs(3_600);
    for (id, before) in [(1, 5), (2, 0), (3, 9)] {
        Finished::new(id, ahead - Duration::from_secs(before)).send_to(&metrics);
    }
    assert_eq!(metrics.now(), ahead);
}
