//! Pushes thousands of tasks with priorities and flaky failures through a pool, changes the
//! limit on the fly, and prints what happened.
//!
//! `cargo run -p pool-core --example quickstart`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::{ErrorClass, Event, Observer, Pool, Retryable, TaskError, TaskOptions};

#[derive(Debug, thiserror::Error)]
#[error("simulated {0:?} failure")]
struct SimulatedError(ErrorClass);

impl Retryable for SimulatedError {
    fn error_class(&self) -> ErrorClass {
        self.0
    }
}

/// Counts first attempts by priority band, to show priorities at work.
#[derive(Debug, Default)]
struct StartOrder {
    high_started: AtomicU64,
    low_started_before_last_high: AtomicU64,
}

impl Observer for StartOrder {
    fn on_event(&self, event: &Event) {
        if let Event::TaskStarted {
            task, attempt: 1, ..
        } = event
        {
            if task.priority > 0 {
                self.high_started.fetch_add(1, Ordering::Relaxed);
            } else if self.high_started.load(Ordering::Relaxed) < 1_000 {
                self.low_started_before_last_high
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let order = Arc::new(StartOrder::default());
    let pool = Pool::builder()
        .concurrency(32)
        .retries(3)
        .retry_delay(Duration::from_millis(5))
        .timeout(Duration::from_millis(200))
        .no_pressure_rule() // a bulk job: the long queue is the plan, not overload
        .observer_arc(order.clone())
        .build()?;

    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..5_000u64 {
        // One task in five is urgent; one attempt in ten fails transiently, one task in
        // 250 fails for good.
        let priority = if i % 5 == 0 { 10 } else { 0 };
        let mut attempt = 0u32;
        handles.push(pool.enqueue(
            move || {
                attempt += 1;
                let this_attempt = attempt;
                async move {
                    tokio::time::sleep(Duration::from_millis(1 + i % 3)).await;
                    if i % 250 == 7 {
                        Err(SimulatedError(ErrorClass::Fatal))
                    } else if (i + u64::from(this_attempt)) % 10 == 0 && this_attempt < 3 {
                        Err(SimulatedError(ErrorClass::Retryable))
                    } else {
                        Ok(i)
                    }
                }
            },
            TaskOptions::new().priority(priority),
        ));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    pool.set_concurrency(64)?; // grow while running

    let (mut ok, mut failed) = (0u64, 0u64);
    for handle in handles {
        match handle.await {
            Ok(_) => ok += 1,
            Err(TaskError::Failed { .. }) => failed += 1,
            Err(other) => return Err(other.into()),
        }
    }
    pool.drain().await;
    let stats = pool.stats();
    println!("s3pool quickstart: 5,000 tasks in {:?}", started.elapsed());
    println!(
        "  succeeded {ok}, failed for good {failed}, retries {}",
        stats.retries
    );
    println!(
        "  urgent tasks started: {}, normal tasks that started before the last urgent one: {}",
        order.high_started.load(Ordering::Relaxed),
        order.low_started_before_last_high.load(Ordering::Relaxed),
    );
    println!("  final stats: {stats:?}");
    assert!(stats.in_balance());
    Ok(())
}
