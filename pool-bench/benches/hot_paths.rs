//! Hot paths of a pool, so regressions show: enqueue onto a paused pool, dequeue (resume
//! and run) with aging on and off, and a full enqueue-and-run with and without
//! `pool_metrics::Metrics` recording every task.
//!
//! `cargo bench -p pool-bench --bench hot_paths`
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pool_core::{Pool, PoolBuilder, TaskHandle, TaskOptions};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};

const TASKS: usize = 10_000;
const CONCURRENCY: usize = 64;

/// A named way to build the pool under test.
type Variant = (&'static str, fn() -> PoolBuilder);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Fast aging (a point per 20 µs of wait): low-priority tasks overtake while the queue drains.
fn aging() -> PoolBuilder {
    Pool::builder()
        .concurrency(CONCURRENCY)
        .aging_interval(Duration::from_micros(20))
}

fn strict() -> PoolBuilder {
    Pool::builder()
        .concurrency(CONCURRENCY)
        .max_aging_boost(0.0)
}

const AGING_VARIANTS: [Variant; 2] = [("aging", aging), ("strict", strict)];

/// Queues `TASKS` no-ops with priorities 0..16 on a paused pool.
fn enqueue_paused(pool: &Pool) -> Vec<TaskHandle<usize, Infallible>> {
    (0..TASKS)
        .map(|i| {
            pool.enqueue(
                move || async move { Ok::<_, Infallible>(i) },
                TaskOptions::new().priority((i % 16) as i32),
            )
        })
        .collect()
}

async fn await_all(handles: Vec<TaskHandle<usize, Infallible>>) {
    for handle in handles {
        black_box(handle.await.expect("no-op tasks succeed"));
    }
}

fn enqueue(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("enqueue_10k_paused");
    group.throughput(Throughput::Elements(TASKS as u64));
    group.sample_size(20);
    for (name, builder) in AGING_VARIANTS {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    runtime.block_on(async {
                        let pool = builder().build().expect("valid pool");
                        pool.pause();
                        let start = Instant::now();
                        let handles = enqueue_paused(&pool);
                        total += start.elapsed();
                        pool.resume();
                        await_all(handles).await;
                    });
                }
                total
            })
        });
    }
    group.finish();
}

fn dequeue(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("dequeue_and_run_10k");
    group.throughput(Throughput::Elements(TASKS as u64));
    group.sample_size(20);
    for (name, builder) in AGING_VARIANTS {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    runtime.block_on(async {
                        let pool = builder().build().expect("valid pool");
                        pool.pause();
                        let handles = enqueue_paused(&pool);
                        // Let every queued task earn its full aging boost first.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let start = Instant::now();
                        pool.resume();
                        await_all(handles).await;
                        total += start.elapsed();
                    });
                }
                total
            })
        });
    }
    group.finish();
}

fn metrics_recording(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("enqueue_and_run_10k");
    group.throughput(Throughput::Elements(TASKS as u64));
    group.sample_size(20);
    let variants: [Variant; 2] = [
        ("no_observer", || Pool::builder().concurrency(CONCURRENCY)),
        ("metrics_light", || {
            let metrics = Metrics::new(MetricsConfig::default().memory(MemoryMode::Light))
                .expect("valid metrics config");
            Pool::builder().concurrency(CONCURRENCY).observer(metrics)
        }),
    ];
    for (name, builder) in variants {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    runtime.block_on(async {
                        let pool = builder().build().expect("valid pool");
                        let start = Instant::now();
                        await_all(enqueue_paused(&pool)).await;
                        total += start.elapsed();
                    });
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, enqueue, dequeue, metrics_recording);
criterion_main!(benches);
