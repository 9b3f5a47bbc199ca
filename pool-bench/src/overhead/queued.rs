//! [`measure_waiting_bytes`]: what one waiting task costs in resident memory, queued on a
//! paused pool or parked by a rate limiter.

use std::convert::Infallible;
use std::mem::size_of;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::policy::{RateLimit, RateLimiter};
use pool_core::{Executor, Pool, TaskError, TaskHandle, TaskOptions, TokioExecutor};
use pool_metrics::{MemoryProbe, ProcessRss};
use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// How the measured tasks wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Waiting {
    /// In the queue of a paused pool.
    #[default]
    Queued,
    /// Deferred by a rate limiter of one task a second (all but the first): each holds no
    /// slot and waits for its booked moment in the pool's parked set.
    Parked,
}

/// Resident memory of no-op tasks waiting in a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedMemory {
    /// How they waited.
    #[serde(default)]
    pub waiting: Waiting,
    /// Tasks enqueued.
    pub tasks: usize,
    /// RSS before the first enqueue (pool built, nothing queued), bytes.
    pub rss_before_bytes: u64,
    /// RSS with every task waiting, bytes.
    pub rss_queued_bytes: u64,
    /// `(rss_queued - rss_before) / tasks`: the queue entry (or parked entry and its
    /// timer), the task and its shared result slot, plus the caller's `Vec` of handles.
    pub bytes_per_queued_task: f64,
    /// Of that, the `TaskHandle` each caller keeps in its `Vec`.
    pub handle_bytes: usize,
    /// Tasks resolved afterwards, as expected: queued tasks run to completion once the
    /// pool is resumed, parked ones end `Stopped` by `stop_now` (must equal `tasks`).
    pub completed_after_resume: usize,
}

/// Enqueues `tasks` no-op tasks on a pool with limit `concurrency` so that they wait as
/// `waiting` says, reads the RSS delta, then lets every task resolve and counts them. Run
/// it in a fresh process (memory freed by earlier work would be reused and hide the cost);
/// needs `/proc`.
pub fn measure_waiting_bytes(
    tasks: usize,
    concurrency: usize,
    waiting: Waiting,
) -> Result<QueuedMemory, BenchError> {
    if tasks < 2 {
        return Err(BenchError::ZeroSize { field: "tasks" });
    }
    let unavailable = || BenchError::Setup("this platform's RSS cannot be read".to_owned());
    let setup = |error: pool_core::ConfigError| BenchError::Setup(error.to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::measure::worker_threads())
        .enable_all()
        .build()
        .map_err(|error| BenchError::Setup(format!("tokio runtime: {error}")))?;
    runtime.block_on(async {
        let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
        let mut builder = Pool::builder()
            .executor_arc(Arc::clone(&executor))
            .concurrency(concurrency);
        if waiting == Waiting::Parked {
            // One task a second: all but the first are deferred until their moment.
            let limit = RateLimit::new(1.0, 1).map_err(setup)?;
            builder = builder.admission(RateLimiter::new(limit, executor));
        }
        let pool = builder.build().map_err(setup)?;
        if waiting == Waiting::Queued {
            pool.pause();
        }
        let memory = ProcessRss::new();
        let rss_before_bytes = memory.resident_bytes().ok_or_else(unavailable)?;
        let handles: Vec<TaskHandle<(), Infallible>> = (0..tasks)
            .map(|_| pool.enqueue(|| async { Ok::<(), Infallible>(()) }, TaskOptions::new()))
            .collect();
        if waiting == Waiting::Parked {
            let hang_guard = Instant::now();
            // Every task parked, or already run at its moment: one a second runs, so a
            // count of parked tasks alone falls behind `tasks - 1` for good once parking
            // them all takes longer than a second.
            let settled =
                |stats: pool_core::Stats| stats.deferred as u64 + stats.succeeded >= tasks as u64;
            while !settled(pool.stats()) {
                if hang_guard.elapsed() > Duration::from_secs(600) {
                    return Err(BenchError::Setup(format!(
                        "only {} of {} tasks were parked or run after 10 minutes",
                        pool.stats().deferred as u64 + pool.stats().succeeded,
                        tasks
                    )));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let rss_queued_bytes = memory.resident_bytes().ok_or_else(unavailable)?;
        match waiting {
            Waiting::Queued => pool.resume(),
            Waiting::Parked => pool.stop_now(),
        }
        let mut completed_after_resume = 0;
        for handle in handles {
            let expected = match (waiting, handle.await) {
                (Waiting::Queued, result) => result.is_ok(),
                // The first task ran at once; every other one was parked and is stopped.
                (Waiting::Parked, Ok(())) => true,
                (Waiting::Parked, Err(error)) => matches!(error, TaskError::Stopped),
            };
            completed_after_resume += usize::from(expected);
        }
        Ok(QueuedMemory {
            waiting,
            tasks,
            rss_before_bytes,
            rss_queued_bytes,
            bytes_per_queued_task: rss_queued_bytes.saturating_sub(rss_before_bytes) as f64
                / tasks as f64,
            handle_bytes: size_of::<TaskHandle<(), Infallible>>(),
            completed_after_resume,
        })
    })
}
