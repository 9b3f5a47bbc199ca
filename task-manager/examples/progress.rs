//! A progress bar for a bulk job: the run's progress hook feeds `indicatif`.
//!
//! ```text
//! cargo run -p task-manager --example progress [ITEMS]
//! ```
//!
//! Simulates ITEMS (default 20,000) uploads of 1–10 ms each, 5% of which fail once and are
//! retried, and one in a thousand of which fail for good.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use pool_core::{ErrorClass, Retryable};
use task_manager::TaskManager;

/// What a simulated upload can fail with.
#[derive(Debug)]
enum UploadError {
    SlowDown,
    AccessDenied,
}

impl Retryable for UploadError {
    fn error_class(&self) -> ErrorClass {
        match self {
            UploadError::SlowDown => ErrorClass::Throttled,
            UploadError::AccessDenied => ErrorClass::Fatal,
        }
    }
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UploadError::SlowDown => "503 SlowDown",
            UploadError::AccessDenied => "403 AccessDenied",
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let items: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 20_000,
    };
    let manager = TaskManager::builder()
        .concurrency(64)
        .retries(2)
        .retry_delay(Duration::from_millis(20))
        .build()?;

    let bar = ProgressBar::new(items);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta}) {msg}",
        )?
        .progress_chars("=> "),
    );

    // Which keys fail once (and are retried), seeded so every run is the same.
    let mut rng = fastrand::Rng::with_seed(42);
    let flaky: Arc<Vec<bool>> = Arc::new((0..items).map(|_| rng.f64() < 0.05).collect());
    let attempts = Arc::new(
        (0..items)
            .map(|_| std::sync::atomic::AtomicU32::new(0))
            .collect::<Vec<_>>(),
    );

    let keys = (0..items).map(|i| format!("uploads/{i:08}.bin"));
    let progress_bar = bar.clone();
    let report = manager
        .process(keys, move |key: String| {
            let index: usize = key[8..16].parse().expect("key carries its index");
            let attempt = attempts[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let flaky = flaky[index];
            async move {
                tokio::time::sleep(Duration::from_millis(1 + (index as u64 * 7) % 10)).await;
                if index % 1_000 == 999 {
                    Err(UploadError::AccessDenied)
                } else if flaky && attempt == 0 {
                    Err(UploadError::SlowDown)
                } else {
                    Ok(key.len())
                }
            }
        })
        .on_progress(move |p| {
            progress_bar.set_position(p.done);
            progress_bar.set_message(format!("{} failed · {:.0}/s", p.failed, p.rate_per_sec()));
        })
        .await;
    bar.finish_with_message(format!("{} failed", report.errors.len()));

    for failure in report.errors.iter().take(3) {
        println!("item {} failed: {}", failure.index, failure.error);
    }
    let stats = manager.stats();
    println!(
        "{} succeeded, {} failed, {} retries",
        stats.items_succeeded, stats.items_failed, stats.pool.retries
    );
    Ok(())
}
