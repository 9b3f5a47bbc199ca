//! Runs a small mixed workload through a pool with metrics attached and prints what the
//! collector reports: live stats as JSON, then the Prometheus exposition.
//!
//! `cargo run -p pool-metrics --example report`

use std::time::Duration;

use pool_core::{ErrorClass, Pool, Retryable, TaskOptions};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig, TunerState};

#[derive(Debug)]
struct SlowDown;

impl Retryable for SlowDown {
    fn error_class(&self) -> ErrorClass {
        ErrorClass::Throttled
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Paused time: the run takes virtual seconds and finishes at once.
    tokio::time::pause();
    let metrics = Metrics::new(MetricsConfig::default().memory(MemoryMode::BALANCED))?;
    let pool = Pool::builder()
        .concurrency(16)
        .retries(1)
        .retry_delay(Duration::from_millis(50))
        .observer(metrics.clone())
        .build()?;

    let handles: Vec<_> = (0..400u64)
        .map(|i| {
            pool.enqueue(
                move || async move {
                    // Mostly 5-40 ms, a slow tail every 50th task, a throttle every 40th.
                    let millis = if i.is_multiple_of(50) {
                        400
                    } else {
                        5 + (i * 7) % 36
                    };
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    if i.is_multiple_of(40) {
                        Err(SlowDown)
                    } else {
                        Ok(i)
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
    metrics.set_tuner_state(Some(TunerState::from([
        ("limit".to_owned(), 16.0.into()),
        ("phase".to_owned(), "steady".into()),
    ])));

    println!(
        "{}",
        serde_json::to_string_pretty(&metrics.aggregate_all())?
    );
    print!("{}", metrics.prometheus());
    Ok(())
}
