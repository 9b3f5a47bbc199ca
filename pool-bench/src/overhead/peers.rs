//! [`Peer`]: s3pool and the bare Rust idioms it is compared with, each running `tasks`
//! copies of one workload with at most `concurrency` at once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use futures::FutureExt;
use pool_core::policy::{RateLimit, RateLimiter};
use pool_core::{Executor, Pool, TaskOptions, TokioExecutor};
use pool_metrics::{Metrics, MetricsConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tower::limit::ConcurrencyLimit;
use tower::{Service, ServiceExt};

use super::minimal_pool::MinimalPriorityPool;
use crate::cpu::{Stopwatch, Timing};
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
    /// The same pool behind a `RateLimiter` far above the load (10^9 tasks/s, burst 1,000):
    /// the cost of the admission path when it never makes a task wait.
    S3poolRateLimited,
    /// The same pool with the tasks spread over ten priority levels (task i at priority
    /// i mod 10): the cost of choosing among levels.
    S3poolTenPriorities,
    /// The floor for a pool with priorities and handles: a `Mutex<BinaryHeap>` of boxed
    /// closures, a `Notify`, C worker tasks and a oneshot per task, nothing else
    /// (`MinimalPriorityPool` in this module).
    MinimalPriorityPool,
    /// C worker tasks fed by one channel of task ids (`async-channel`, unbounded): no
    /// priorities, no per-task handle; done when every worker has drained the channel.
    ChannelWorkers,
    /// A tokio `Semaphore` permit acquired before `tokio::spawn`, a `JoinHandle` per task:
    /// what one writes by hand for independent submitters.
    SemaphoreSpawn,
    /// `futures::StreamExt::buffer_unordered`: one task drives every future, no spawn.
    BufferUnordered,
    /// `tower::limit::ConcurrencyLimit` over a `service_fn`: `ready()` then `call()`, the
    /// response future spawned with a `JoinHandle` (like semaphore-spawn).
    TowerConcurrencyLimit,
    /// The same `ConcurrencyLimit`, its calls (`ServiceExt::oneshot` on a clone) driven by
    /// `buffer_unordered` in one task: no spawn per task.
    TowerBufferUnordered,
}

impl Peer {
    /// Every peer, s3pool first (the order of reports; rounds rotate it, see
    /// [`Peer::round_order`]).
    pub const ALL: [Peer; 10] = [
        Peer::S3pool,
        Peer::S3poolMetrics,
        Peer::S3poolRateLimited,
        Peer::S3poolTenPriorities,
        Peer::MinimalPriorityPool,
        Peer::ChannelWorkers,
        Peer::SemaphoreSpawn,
        Peer::BufferUnordered,
        Peer::TowerConcurrencyLimit,
        Peer::TowerBufferUnordered,
    ];

    /// Every peer once, in the order round `round` of `rounds` runs them: [`Peer::ALL`]
    /// rotated so that the rounds start at peers spread over the list, walked forwards in
    /// even rounds and backwards in odd ones. Whichever engine runs first in a round meets
    /// the allocator and the runtime's workers as the previous round left them; rotating
    /// shares that between the engines instead of always charging it to s3pool. And each
    /// engine meets what the one before it left (its freed memory, its workers' state):
    /// walking both ways gives every engine both neighbours in turn instead of always
    /// following the same one.
    pub fn round_order(round: usize, rounds: usize) -> impl Iterator<Item = Peer> {
        let count = Peer::ALL.len();
        let start = if rounds >= count {
            round % count
        } else {
            round * count / rounds.max(1)
        };
        let backwards = round % 2 == 1;
        (0..count).map(move |step| {
            let index = if backwards {
                (start + count - step) % count
            } else {
                (start + step) % count
            };
            Peer::ALL[index]
        })
    }

    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Peer::S3pool => "s3pool",
            Peer::S3poolMetrics => "s3pool-metrics",
            Peer::S3poolRateLimited => "s3pool-rate-limited",
            Peer::S3poolTenPriorities => "s3pool-ten-priorities",
            Peer::MinimalPriorityPool => "minimal-priority-pool",
            Peer::ChannelWorkers => "channel-workers",
            Peer::SemaphoreSpawn => "semaphore-spawn",
            Peer::BufferUnordered => "buffer-unordered",
            Peer::TowerConcurrencyLimit => "tower-concurrency-limit",
            Peer::TowerBufferUnordered => "tower-buffer-unordered",
        }
    }

    /// Runs `tasks` copies of `work` with at most `concurrency` at once and returns the
    /// wall-clock and CPU time from the first submission to the last completion. Pools
    /// (and their workers) are built before the clock starts. Call it inside a tokio
    /// runtime.
    pub async fn run<W, Fut>(
        self,
        tasks: usize,
        concurrency: usize,
        work: W,
    ) -> Result<Timing, BenchError>
    where
        W: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if concurrency == 0 {
            return Err(BenchError::ZeroSize {
                field: "concurrency",
            });
        }
        let one_level = |_| 0;
        match self {
            Peer::S3pool => {
                let pool = Pool::builder().concurrency(concurrency).build();
                run_pool(pool, tasks, work, one_level).await
            }
            Peer::S3poolMetrics => {
                let metrics = Metrics::new(MetricsConfig::default())
                    .map_err(|error| BenchError::Setup(error.to_string()))?;
                let pool = Pool::builder()
                    .concurrency(concurrency)
                    .observer(metrics)
                    .build();
                run_pool(pool, tasks, work, one_level).await
            }
            Peer::S3poolRateLimited => {
                let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
                let limit = RateLimit::new(1e9, 1_000)
                    .map_err(|error| BenchError::Setup(error.to_string()))?;
                let pool = Pool::builder()
                    .executor_arc(Arc::clone(&executor))
                    .concurrency(concurrency)
                    .admission(RateLimiter::new(limit, executor))
                    .build();
                run_pool(pool, tasks, work, one_level).await
            }
            Peer::S3poolTenPriorities => {
                let pool = Pool::builder().concurrency(concurrency).build();
                run_pool(pool, tasks, work, |i| (i % 10) as i32).await
            }
            Peer::MinimalPriorityPool => Ok(minimal_priority_pool(tasks, concurrency, work).await),
            Peer::ChannelWorkers => Ok(channel_workers(tasks, concurrency, work).await),
            Peer::SemaphoreSpawn => Ok(semaphore_spawn(tasks, concurrency, work).await),
            Peer::BufferUnordered => Ok(buffer_unordered(tasks, concurrency, work).await),
            Peer::TowerConcurrencyLimit => Ok(tower_limit(tasks, concurrency, work).await),
            Peer::TowerBufferUnordered => {
                Ok(tower_buffer_unordered(tasks, concurrency, work).await)
            }
        }
    }
}

async fn run_pool<W, Fut>(
    pool: Result<Pool, pool_core::ConfigError>,
    tasks: usize,
    work: W,
    priority: impl Fn(usize) -> i32,
) -> Result<Timing, BenchError>
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pool = pool.map_err(|error| BenchError::Setup(error.to_string()))?;
    let stopwatch = Stopwatch::start();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let work = work.clone();
            pool.enqueue(
                move || work().map(Ok::<(), Infallible>),
                TaskOptions::new().priority(priority(i)),
            )
        })
        .collect();
    for handle in handles {
        handle
            .await
            .map_err(|error| BenchError::Setup(format!("pool task failed: {error}")))?;
    }
    Ok(stopwatch.stop())
}

async fn minimal_priority_pool<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Timing
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pool = MinimalPriorityPool::new(concurrency);
    // Let the workers reach their first wait before the clock starts.
    tokio::task::yield_now().await;
    let stopwatch = Stopwatch::start();
    let receivers: Vec<_> = (0..tasks).map(|_| pool.submit(0, work.clone())).collect();
    for receiver in receivers {
        receiver.await.expect("a worker runs every queued task");
    }
    stopwatch.stop()
}

async fn channel_workers<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Timing
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = async_channel::unbounded::<usize>();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (receiver, work) = (receiver.clone(), work.clone());
            tokio::spawn(async move {
                while let Ok(_id) = receiver.recv().await {
                    work().await;
                }
            })
        })
        .collect();
    drop(receiver);
    tokio::task::yield_now().await;
    let stopwatch = Stopwatch::start();
    for id in 0..tasks {
        sender
            .try_send(id)
            .expect("an unbounded channel with receivers takes every id");
    }
    // Closing the channel lets each worker stop once it is empty.
    drop(sender);
    for worker in workers {
        worker.await.expect("benchmark tasks do not panic");
    }
    stopwatch.stop()
}

async fn semaphore_spawn<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Timing
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let stopwatch = Stopwatch::start();
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
    stopwatch.stop()
}

async fn buffer_unordered<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Timing
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stopwatch = Stopwatch::start();
    stream::iter(0..tasks)
        .map(|_| work())
        .buffer_unordered(concurrency)
        .for_each(|()| async {})
        .await;
    stopwatch.stop()
}

async fn tower_limit<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Timing
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let service = tower::service_fn(move |()| work().map(Ok::<(), Infallible>));
    let limited = ConcurrencyLimit::new(service, concurrency);
    let stopwatch = Stopwatch::start();
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
    stopwatch.stop()
}

async fn tower_buffer_unordered<W, Fut>(tasks: usize, concurrency: usize, work: W) -> Timing
where
    W: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let service = tower::service_fn(move |()| work().map(Ok::<(), Infallible>));
    let limited = ConcurrencyLimit::new(service, concurrency);
    let stopwatch = Stopwatch::start();
    stream::iter(0..tasks)
        .map(|_| limited.clone().oneshot(()))
        .buffer_unordered(concurrency)
        .for_each(|result| async move {
            match result {
                Ok(()) => {}
                Err(never) => match never {},
            }
        })
        .await;
    stopwatch.stop()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_round_runs_every_peer_once_and_rounds_start_at_different_peers() {
        for rounds in [1, 2, 3, 5, 10, 11, usize::MAX] {
            let shown = rounds.min(12);
            let mut firsts = std::collections::BTreeSet::new();
            for round in 0..shown {
                let order: Vec<Peer> = Peer::round_order(round, rounds).collect();
                let mut sorted = order.clone();
                sorted.sort();
                let mut all = Peer::ALL.to_vec();
                all.sort();
                assert_eq!(sorted, all, "round {round} of {rounds}");
                firsts.insert(order[0]);
                // Each peer's predecessor: the next round walks the other way, so it runs
                // after the peer that followed it in this one.
                let next: Vec<Peer> = Peer::round_order(round + 1, rounds).collect();
                let before = |order: &[Peer], peer: Peer| {
                    let at = order.iter().position(|&p| p == peer).unwrap();
                    order.get(at.wrapping_sub(1)).copied()
                };
                for peer in Peer::ALL {
                    let (this, then) = (before(&order, peer), before(&next, peer));
                    if let (Some(this), Some(then)) = (this, then) {
                        assert_ne!(this, then, "{peer:?} after {this:?} twice in a row");
                    }
                }
            }
            assert_eq!(firsts.len(), shown.min(Peer::ALL.len()), "{rounds} rounds");
        }
        assert_eq!(Peer::round_order(0, 0).count(), Peer::ALL.len());
    }

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
