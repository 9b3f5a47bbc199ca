//! [`measure_queued_bytes`]: what one queued task costs in resident memory.

use std::convert::Infallible;
use std::mem::size_of;

use pool_core::{Pool, TaskHandle, TaskOptions};
use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::memory::current_rss_bytes;

/// Resident memory of no-op tasks queued on a paused pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedMemory {
    /// Tasks queued.
    pub tasks: usize,
    /// RSS before the first enqueue (pool built, nothing queued), bytes.
    pub rss_before_bytes: u64,
    /// RSS with every task queued, bytes.
    pub rss_queued_bytes: u64,
    /// `(rss_queued - rss_before) / tasks`: the queue entry, the boxed task and its
    /// shared result slot, plus the caller's `Vec` of handles.
    pub bytes_per_queued_task: f64,
    /// Of that, the `TaskHandle` each caller keeps in its `Vec`.
    pub handle_bytes: usize,
    /// Tasks that ran to completion after the pool was resumed (must equal `tasks`).
    pub completed_after_resume: usize,
}

/// Queues `tasks` no-op tasks on a paused pool with limit `concurrency`, reads the RSS
/// delta, then resumes the pool and checks every task completes. Run it in a fresh process
/// (memory freed by earlier work would be reused and hide the cost); needs `/proc`.
pub fn measure_queued_bytes(tasks: usize, concurrency: usize) -> Result<QueuedMemory, BenchError> {
    if tasks == 0 {
        return Err(BenchError::ZeroSize { field: "tasks" });
    }
    let unavailable = || BenchError::Setup("no /proc/self/status to read RSS from".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::measure::worker_threads())
        .enable_all()
        .build()
        .map_err(|error| BenchError::Setup(format!("tokio runtime: {error}")))?;
    runtime.block_on(async {
        let pool = Pool::builder()
            .concurrency(concurrency)
            .build()
            .map_err(|error| BenchError::Setup(error.to_string()))?;
        pool.pause();
        let rss_before_bytes = current_rss_bytes().ok_or_else(unavailable)?;
        let handles: Vec<TaskHandle<(), Infallible>> = (0..tasks)
            .map(|_| pool.enqueue(|| async { Ok::<(), Infallible>(()) }, TaskOptions::new()))
            .collect();
        let rss_queued_bytes = current_rss_bytes().ok_or_else(unavailable)?;
        pool.resume();
        let mut completed_after_resume = 0;
        for handle in handles {
            if handle.await.is_ok() {
                completed_after_resume += 1;
            }
        }
        Ok(QueuedMemory {
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
