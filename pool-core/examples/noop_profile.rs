//! One run of 100,000 no-op tasks at concurrency 200 on 2 workers, for profilers and
//! instruction counters (callgrind, `perf stat`): the plain pool, the admission path behind a
//! rate limiter far above the load, and ten priority levels — task i at priority i mod 10
//! (`ten-priorities`, as bench-overhead does), or in ten blocks of consecutive tasks
//! (`ten-priority-blocks`: the same levels, but each level's tasks lie together in memory,
//! which tells the cost of the pop order's jumps through memory from the cost of the levels).
//!
//! `cargo run --release -p pool-core --features tokio,rate-limit --example noop_profile --
//! [plain|rate-limited|ten-priorities|ten-priority-blocks] [TASKS]`
//!
//! With callgrind, divide the instructions of a run by its task count, and subtract a run
//! of a few tasks to leave the runtime's start-up out. At the end it prints how many tasks
//! were still waiting when the last was enqueued, and each thread's CPU time and context
//! switches (on Linux).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use pool_core::policy::{RateLimit, RateLimiter};
use pool_core::{Executor, Pool, TaskOptions, TokioExecutor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "plain".to_owned());
    let tasks: u64 = args.next().map_or(Ok(100_000), |arg| arg.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
        let mut builder = Pool::builder()
            .executor_arc(Arc::clone(&executor))
            .concurrency(200);
        let (levels, blocks) = match variant.as_str() {
            "plain" => (1, false),
            "ten-priorities" => (10, false),
            "ten-priority-blocks" => (10, true),
            "rate-limited" => {
                let limit = RateLimit::new(1e9, 1_000)?;
                builder = builder.admission(RateLimiter::new(limit, executor));
                (1, false)
            }
            other => {
                return Err(format!(
                "expected plain, rate-limited, ten-priorities or ten-priority-blocks, got {other}"
            )
                .into())
            }
        };
        let pool = builder.build()?;
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                let priority = if blocks {
                    i * levels / tasks.max(1)
                } else {
                    i % levels
                };
                let options = TaskOptions::new().priority(priority as i32);
                pool.enqueue(|| async { Ok::<(), Infallible>(()) }, options)
            })
            .collect();
        // Whether the producer outran the runners: tasks still waiting when it was done.
        let waiting = pool.stats().queued;
        for handle in handles {
            handle.await?;
        }
        println!(
            "{variant}: {tasks} tasks in {:?} ({waiting} waiting when the last was enqueued)",
            start.elapsed()
        );
        print_threads();
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// Each thread's CPU time and context switches (Linux: `/proc/self/task`), so a profile says
/// whether the producer (the main thread) or the runtime's workers slept or were preempted.
fn print_threads() {
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for dir in threads.flatten().map(|entry| entry.path()) {
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        let cpu_ns: u64 = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .unwrap_or(0);
        let status = read("status");
        let switches = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .map_or("?", str::trim)
                .to_owned()
        };
        println!(
            "  thread {}: {} ms CPU, context switches {} voluntary, {} involuntary",
            read("comm").trim(),
            cpu_ns / 1_000_000,
            switches("voluntary_ctxt_switches:"),
            switches("nonvoluntary_ctxt_switches:"),
        );
    }
}
