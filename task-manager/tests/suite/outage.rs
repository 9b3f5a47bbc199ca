//! A short outage under the manager's defaults: the retry budget slows retries down when it
//! runs dry (they wait for a token), it does not fail them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use task_manager::{RetryBudget, TaskError, TaskManager, TaskManagerBuilder, Transient};

const ITEMS: u64 = 20_000;

/// Enqueues `ITEMS` items of 1 ms each at once on a manager built by `builder` with 5
/// retries; every attempt that starts within a 200 ms outage (from 100 ms in) fails —
/// about 2,000 attempts at the default concurrency of 10, twenty times the budget's burst.
/// Returns the items lost, how many of them for lack of a retry token, and the retries
/// spent.
async fn through_an_outage(builder: TaskManagerBuilder) -> (usize, usize, u64) {
    let manager = builder.retries(5).build().unwrap();
    let start = tokio::time::Instant::now();
    let attempts = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..ITEMS)
        .map(|item| {
            let attempts = Arc::clone(&attempts);
            manager.enqueue(move || {
                attempts.fetch_add(1, Ordering::Relaxed);
                let outage = Duration::from_millis(100)..Duration::from_millis(300);
                let down = outage.contains(&start.elapsed());
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    if down {
                        Err(Transient("503 Service Unavailable"))
                    } else {
                        Ok(item)
                    }
                }
            })
        })
        .collect();
    let (mut lost, mut for_lack_of_tokens) = (0, 0);
    for handle in handles {
        match handle.await {
            Ok(_) => {}
            Err(error) => {
                lost += 1;
                if matches!(error, TaskError::RetryBudgetExhausted { .. }) {
                    for_lack_of_tokens += 1;
                }
            }
        }
    }
    let retries = manager.stats().pool.retries;
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        ITEMS + retries,
        "one attempt per item and per retry"
    );
    (lost, for_lack_of_tokens, retries)
}

#[tokio::test(start_paused = true)]
async fn an_outage_loses_no_item_under_the_default_retry_budget() {
    let (lost, _, retries) = through_an_outage(TaskManager::builder()).await;
    println!("200 ms outage, {ITEMS} items, retries(5): {lost} lost, {retries} retries");
    assert_eq!(lost, 0);
    assert!(
        retries > 100,
        "the outage spent more than the budget's burst: {retries}"
    );

    // The same outage with a budget that fails fast and has no floor (the AWS SDKs' quota
    // as it is): the items it could not pay for are lost, and say why.
    let failing_fast = TaskManager::builder().configure_pool(|pool| {
        pool.retry_budget(RetryBudget {
            fail_fast: true,
            min_per_sec: 0.0,
            ..RetryBudget::default()
        })
    });
    let (lost, for_lack_of_tokens, retries) = through_an_outage(failing_fast).await;
    println!("the same with a fail-fast budget: {lost} lost ({for_lack_of_tokens} for lack of a token), {retries} retries");
    assert!(
        lost > 0 && lost == for_lack_of_tokens,
        "{lost} {for_lack_of_tokens}"
    );
}
