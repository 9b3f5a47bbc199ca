//! One million no-op tasks at concurrency 200: s3pool beside the bare idioms it replaces,
//! in the same run. Run with `cargo bench -p pool-core --bench noop` (add `--features
//! rate-limit` for the admission path through a rate limiter).
#![allow(missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::stream::{self, StreamExt};
use pool_core::{Pool, TaskOptions};
use tokio::sync::Semaphore;

const TASKS: u64 = 1_000_000;
const CONCURRENCY: usize = 200;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()
        .expect("runtime")
}

async fn s3pool(pool: &Pool) {
    let handles: Vec<_> = (0..TASKS)
        .map(|_| pool.enqueue(|| async { Ok::<_, Infallible>(()) }, TaskOptions::new()))
        .collect();
    for handle in handles {
        handle.await.expect("no-op cannot fail");
    }
}

async fn semaphore_spawn() {
    let semaphore = Arc::new(Semaphore::new(CONCURRENCY));
    let mut handles = Vec::with_capacity(TASKS as usize);
    for _ in 0..TASKS {
        let permit = semaphore.clone().acquire_owned().await.expect("open");
        handles.push(tokio::spawn(async move {
            drop(permit);
        }));
    }
    for handle in handles {
        handle.await.expect("no panic");
    }
}

async fn buffer_unordered() {
    stream::iter(0..TASKS)
        .map(|_| async {})
        .buffer_unordered(CONCURRENCY)
        .for_each(|()| async {})
        .await;
}

fn noop(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("noop_1m_c200");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function("s3pool", |b| {
        b.iter_batched(
            || {
                let _guard = runtime.enter();
                Pool::builder()
                    .concurrency(CONCURRENCY)
                    .build()
                    .expect("valid")
            },
            |pool| runtime.block_on(s3pool(&pool)),
            BatchSize::PerIteration,
        )
    });
    // The admission path: a rate limit far above the offered load (every task checks it,
    // none waits). `--features rate-limit`.
    #[cfg(feature = "rate-limit")]
    group.bench_function("s3pool_rate_limited", |b| {
        use pool_core::policy::{RateLimit, RateLimiter};
        b.iter_batched(
            || {
                let _guard = runtime.enter();
                let executor: Arc<dyn pool_core::Executor> =
                    Arc::new(pool_core::TokioExecutor::current());
                let limit = RateLimit::new(1e9, 1_000_000).expect("valid");
                Pool::builder()
                    .executor_arc(executor.clone())
                    .concurrency(CONCURRENCY)
                    .admission(RateLimiter::new(limit, executor))
                    .build()
                    .expect("valid")
            },
            |pool| runtime.block_on(s3pool(&pool)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("semaphore_spawn", |b| {
        b.iter(|| runtime.block_on(semaphore_spawn()))
    });
    group.bench_function("buffer_unordered", |b| {
        b.iter(|| runtime.block_on(buffer_unordered()))
    });
    group.finish();
}

criterion_group!(benches, noop);
criterion_main!(benches);
