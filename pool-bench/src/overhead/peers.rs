//! [`Peer`]: s3pool and the bare Rust idioms it is compared with, each running `tasks`
//! copies of one workload with at most `concurrency` at once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use futures::FutureExt;
use pool_core::{Pool, TaskOptions};
use pool_metrics::{Metrics, MetricsConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tower::limit::ConcurrencyLimit;
use tower::{Service, ServiceExt};

use crate::error::BenchError;

/// A way to run many independent tasks with a concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// `pool_core::Pool` with its defaults (priority queue with aging, 3 retries, 30 s
    /// timeout, a handle per task), no observer.
    S3pool,
    /// The same pool with `pool_metrics::Metrics` (default config) attached as an observer.
    S3poolMetrics,
    /// A tokio `Semaphore` permit acquired before `tokio::spawn`, a `JoinHandle` per task:
    /// what one writes by hand for independent submitters.
    SemaphoreSpawn,
    /// `futures::StreamExt::buffer_unordered`: one task drives every future, no spawn.
    BufferUnordered,
    /// `tower::limit::ConcurrencyLimit` over a `service_fn`: `ready()` then `call()`, the
    /// response future spawned with a `JoinHandle` (like semaphore-spawn).
    TowerConcurrencyLimit,
}

impl Peer {
    /// Every peer, s3pool first.
    pub const ALL: [Peer; 5] = [
        Peer::S3pool,
        Peer::S3poolMetrics,
        Peer::SemaphoreSpawn,
        Peer::BufferUnordered,
        Peer::TowerConcurrencyLimit,
    ];

    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Peer::S3pool => "s3pool",
            Peer::S3poolMetrics => "s3pool-metrics",
            Peer::SemaphoreSpawn => "semaphore-spawn",
            Peer::BufferUnordered => "buffer-unordered",
            Peer::TowerConcurrencyLimit => "tower-concurrency-limit",
        }
    }

    /// Runs `tasks` copies of `work` with at most `concurrency` at once and returns the
    /// wall-clock time from the first submission to the last completion. Pools are built
    /// before the clock starts. Call it inside a tokio runtime.
    pub async fn run<W, Fut>(
        self,
        tasks: usize,
        concurrency: usize,
        work: W,
    ) -> Result<Duration, BenchError>
    where
        W: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if concurrency == 0 {
            return Err(BenchError::ZeroSize {
                field: "concurrency",
            });
        }
        match self {
            Peer::S3pool => {
                run_pool(
                    Pool::builder().concurrency(concurrency).build(),
                    tasks,
                    work,
                )
                .await
            }
            Peer::S3poolMetrics => {
                let metrics = Metrics::new(MetricsConfig::default())
                    .map_err(|error| BenchError::Setup(error.to_string()))?;
                let pool = Pool::builder()
                    .concurrency(concurrency)
                    .observer(metrics)
                    .build();
                run_pool(pool, tasks, work).await
            }
            Peer::SemaphoreSpawn => Ok(semaphore_spawn(tasks, concurrency, work).await),
            Peer::BufferUnordered => Ok(buffer_unordered(tasks, concurrency, work).await),
            Peer::TowerConcurrencyLimit => Ok(tower_limit(tasks, concurrency, work).await),
        }
    }
}

async fn run_pool<W, Fut>(
    pool: Result<Pool, pool_core::ConfigError>,
    tasks: usize,
    work: W,
) -> Result<Duration, BenchError>
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pool = pool.map_err(|error| BenchError::Setup(error.to_string()))?;
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let work = work.clone();
            pool.enqueue(move || work().map(Ok::<(), Infallible>), TaskOptions::new())
        })
        .collect();
    for handle in handles {
        handle
            .await
            .map_err(|error| BenchError::Setup(format!("pool task failed: {error}")))?;
    }
    Ok(start.elapsed())
}

async fn semaphore_spawn<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Duration
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let permit = Arc::clone(&semaphore)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let task = work();
        handles.push(tokio::spawn(async move {
            task.await;
            drop(permit);
        }));
    }
    for handle in handles {
        handle.await.expect("benchmark tasks do not panic");
    }
    start.elapsed()
}

async fn buffer_unordered<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Duration
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    stream::iter(0..tasks)
        .map(|_| work())
        .buffer_unordered(concurrency)
        .for_each(|()| async {})
        .await;
    start.elapsed()
}

async fn tower_limit<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Duration
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let service = tower::service_fn(move |()| work().map(Ok::<(), Infallible>));
    let limited = ConcurrencyLimit::new(service, concurrency);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let mut service = limited.clone();
        let ready = service.ready().await.expect("service_fn is always ready");
        handles.push(tokio::spawn(ready.call(())));
    }
    for handle in handles {
        match handle.await.expect("benchmark tasks do not panic") {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_peer_runs_every_task_within_the_limit() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for peer in Peer::ALL {
            let done = Arc::new(AtomicUsize::new(0));
            let running = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let work = {
                let (done, running, most) = (done.clone(), running.clone(), most.clone());
                move || {
                    let (done, running, most) = (done.clone(), running.clone(), most.clone());
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            };
            runtime.block_on(peer.run(500, 7, work)).unwrap();
            assert_eq!(done.load(Ordering::SeqCst), 500, "{}", peer.name());
            assert!(most.load(Ordering::SeqCst) <= 7, "{}", peer.name());
        }
    }
}
