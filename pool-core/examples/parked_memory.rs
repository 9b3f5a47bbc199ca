//! Resident memory per task: queued on a paused pool, or parked by a rate limiter (deferred
//! until its booked moment, holding no slot).
//!
//! `cargo run --release -p pool-core --features tokio,rate-limit --example parked_memory --
//! [TASKS] [queued|parked]` (default 200,000, parked). Linux only: reads `/proc/self/status`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use pool_core::policy::{RateLimit, RateLimiter};
use pool_core::{Executor, Pool, TaskHandle, TaskOptions, TokioExecutor};

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().map_or(Ok(200_000), |arg| arg.parse())?;
    let parked = match args.next().as_deref() {
        None | Some("parked") => true,
        Some("queued") => false,
        Some(other) => return Err(format!("expected queued or parked, got {other}").into()),
    };
    if tasks < 2 {
        return Err("TASKS must be at least 2".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
        // One task a second: all but the first are deferred, parked until their moment.
        let limiter = RateLimiter::new(RateLimit::new(1.0, 1)?, executor.clone());
        let pool = Pool::builder()
            .executor_arc(executor)
            .concurrency(200)
            .admission(limiter)
            .build()?;
        if !parked {
            pool.pause();
        }
        let before = rss_bytes().ok_or("no /proc/self/status")?;
        let handles: Vec<TaskHandle<(), Infallible>> = (0..tasks)
            .map(|_| pool.enqueue(|| async { Ok::<(), Infallible>(()) }, TaskOptions::new()))
            .collect();
        // Every task parked, or already run at its moment (one a second: the first at once).
        while parked && {
            let stats = pool.stats();
            (stats.deferred as u64) + stats.succeeded < tasks as u64
        } {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = rss_bytes().ok_or("no /proc/self/status")?;
        let per_task = after.saturating_sub(before) as f64 / tasks as f64;
        let how = if parked { "parked" } else { "queued" };
        println!("{tasks} tasks {how}: {per_task:.1} bytes per task (RSS delta / tasks, the caller's handles included)");
        pool.stop_now();
        drop(handles);
        Ok(())
    })
}
