//! Recording from many threads at once loses no counts.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pool_core::{Outcome, Pool, TaskOptions};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
use support::{us, Finished, Scripted};

const THREADS: u64 = 8;
const PER_THREAD: u64 = 5_000;

#[test]
fn many_threads_recording_at_once_lose_no_counts() {
    // Fewer shards than threads, so threads collide and fall back to other shards.
    let config = MetricsConfig::default().memory(MemoryMode::Light).shards(2);
    let metrics = Metrics::new(config).unwrap();
    let now = Instant::now();
    metrics.aggregate_at(now, now); // fixes the clock origin
    let reading = AtomicBool::new(true);
    std::thread::scope(|scope| {
        // A reader merging shards all along.
        scope.spawn(|| {
            while reading.load(Ordering::Relaxed) {
                let stats = metrics.stats_at(now);
                assert!(stats.finished <= THREADS * PER_THREAD);
            }
        });
        let writers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let metrics = &metrics;
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        let id = thread * PER_THREAD + i;
                        let outcome = if id.is_multiple_of(10) {
                            Outcome::TimedOut
                        } else {
                            Outcome::Succeeded
                        };
                        Finished::new(id, now)
                            .execution(us(id % 1_000))
                            .attempts(1 + (id % 2) as u32)
                            .outcome(outcome)
                            .send_to(metrics);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        reading.store(false, Ordering::Relaxed);
    });

    let total = THREADS * PER_THREAD;
    let stats = metrics.stats_at(now);
    assert_eq!(stats.finished, total);
    assert_eq!(stats.failed, total / 10);
    assert_eq!(stats.retries, total / 2);
    let execution_us: u64 = (0..total).map(|id| id % 1_000).sum();
    assert_eq!(stats.time_spent.execution_secs, execution_us as f64 / 1e6);
    assert_eq!(stats.rolling.finished, total);

    let aggregate = metrics.aggregate_at(now, now);
    assert_eq!(
        (aggregate.finished, aggregate.execution.count),
        (total, total)
    );

    // The store holds exactly the last 1,000 sequence numbers, the ring the last 256.
    let stored: Vec<u64> = metrics.tasks().iter().map(|t| t.sequence).collect();
    assert_eq!(stored, (total - 1_000..total).collect::<Vec<_>>());
    let recent: Vec<u64> = metrics.recent_tasks().iter().map(|t| t.sequence).collect();
    assert_eq!(recent, (total - 256..total).collect::<Vec<_>>());
}

#[test]
fn a_multi_threaded_pool_loses_no_counts() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let metrics = Metrics::new(MetricsConfig::default().memory(MemoryMode::Light)).unwrap();
    let pool_stats = runtime.block_on(async {
        let pool = Pool::builder()
            .concurrency(64)
            .observer(metrics.clone())
            .build()
            .unwrap();
        let handles: Vec<_> = (0..5_000u64)
            .map(|i| {
                pool.enqueue(
                    move || async move {
                        if i.is_multiple_of(100) {
                            tokio::time::sleep(Duration::from_micros(50)).await;
                        }
                        Ok::<_, Scripted>(i)
                    },
                    TaskOptions::new(),
                )
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        pool.drain().await;
        pool.stats()
    });
    // pool-core resolves a handle before it reports `TaskFinished`, so the last reports may
    // still be on their way on another worker: shutting the runtime down joins the workers.
    drop(runtime);
    let stats = metrics.stats();
    assert_eq!(stats.finished, 5_000);
    assert_eq!(stats.succeeded, pool_stats.succeeded);
    assert_eq!(metrics.aggregate_all().finished, 5_000);
    assert_eq!(metrics.tasks().len(), 1_000);
}

/// A collector watching one pool takes the pool's numbers; fed records on another thread
/// while the pool's workers record, it numbers every task itself from then on. Either way
/// no number is given twice, nothing is lost, and the store keeps the latest numbers.
#[test]
fn numbers_stay_unique_when_the_collector_takes_over_numbering() {
    const POOL_TASKS: u64 = 6_000;
    const FED: u64 = 2_000;
    let total = POOL_TASKS + FED;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    // Fewer shards than threads: recorders also fall back to other shards. The store keeps
    // the last `capacity` numbers, and the take-over leaves a gap for each number the pool gave
    // a task still on its way (at most one per slot, 16): room for those, so a gap never
    // evicts a task and "every task kept" holds however the take-over lands.
    const SLOTS: u64 = 16;
    let config = MetricsConfig::default()
        .memory(MemoryMode::Light)
        .shards(2)
        .task_store_capacity((total + SLOTS) as usize);
    let metrics = Metrics::new(config).unwrap();
    let pool = runtime.block_on(async {
        Pool::builder()
            .concurrency(SLOTS as usize)
            .observer(metrics.clone())
            .build()
            .unwrap()
    });
    let now = Instant::now();
    std::thread::scope(|scope| {
        let feeder = scope.spawn(|| {
            // Starts once the pool's numbers are in use.
            while metrics.stats_at(now).finished < 500 {
                std::thread::yield_now();
            }
            for id in 0..FED {
                Finished::new(1_000_000 + id, now).send_to(&metrics);
            }
        });
        runtime.block_on(async {
            let handles: Vec<_> = (0..POOL_TASKS)
                .map(|i| {
                    pool.enqueue(
                        move || async move {
                            tokio::task::yield_now().await;
                            Ok::<_, Scripted>(i)
                        },
                        TaskOptions::new(),
                    )
                })
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
        });
        feeder.join().unwrap();
    });
    // Joins the workers: the last reports may still be on their way.
    drop(runtime);

    assert_eq!(metrics.stats_at(now).finished, total);
    let stored = metrics.tasks();
    assert_eq!(stored.len() as u64, total, "every task kept");
    let mut sequences: Vec<u64> = stored.iter().map(|t| t.sequence).collect();
    sequences.dedup();
    assert_eq!(sequences.len() as u64, total, "a number given twice");
    let highest = stored.iter().map(|t| t.sequence).max();
    assert!(
        highest < Some(total + SLOTS),
        "more gaps than slots: {highest:?}"
    );
    // Fed records come after the take-over: all numbered above the pool's first 500.
    let fed_lowest = stored
        .iter()
        .filter(|t| t.id.0 >= 1_000_000)
        .map(|t| t.sequence)
        .min();
    assert!(fed_lowest >= Some(500), "{fed_lowest:?}");
}

/// A collector watching one pool stores the pool's own numbers: dense, in finishing order.
#[test]
fn a_collector_on_one_pool_keeps_the_pools_numbers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let metrics = Metrics::new(MetricsConfig::default().memory(MemoryMode::Light)).unwrap();
    runtime.block_on(async {
        let pool = Pool::builder()
            .concurrency(8)
            .observer(metrics.clone())
            .build()
            .unwrap();
        let handles: Vec<_> = (0..3_000u64)
            .map(|i| {
                pool.enqueue(
                    move || async move { Ok::<_, Scripted>(i) },
                    TaskOptions::new(),
                )
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    });
    drop(runtime);
    let sequences: Vec<u64> = metrics.tasks().iter().map(|t| t.sequence).collect();
    assert_eq!(sequences, (2_000..3_000).collect::<Vec<_>>());
}
