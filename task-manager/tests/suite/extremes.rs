//! Every count, size and duration a manager or a run accepts, at 0, 1 and MAX: a typed
//! `ConfigError`, or a run that resolves every item. Never a panic, never an allocation sized
//! by a hint.

use std::time::Duration;

use futures::StreamExt;
use pool_core::{ConfigError, Transient};
use task_manager::{RetryBudget, TaskManager, TaskManagerBuilder};

const DURATIONS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_secs(1),
    Duration::MAX,
];

/// Ten items, the odd ones always failing: every one must resolve.
async fn ten_items(manager: &TaskManager) {
    let result = manager
        .process(0..10u32, |i| async move {
            tokio::task::yield_now().await;
            if i % 2 == 1 {
                Err(Transient("odd"))
            } else {
                Ok(i)
            }
        })
        .await;
    assert_eq!(result.results.len(), 10);
    let resolved = result.results.iter().flatten().count() + result.errors.len();
    assert_eq!(resolved, 10);
}

async fn check(field: &str, value: String, builder: TaskManagerBuilder) {
    match builder.build() {
        Err(error) => assert!(
            error.to_string().contains(field),
            "{field} = {value}: the error does not name the setting: {error}"
        ),
        Ok(manager) => ten_items(&manager).await,
    }
}

fn builder() -> TaskManagerBuilder {
    TaskManager::builder().retry_delay(Duration::from_millis(1))
}

#[tokio::test(start_paused = true)]
async fn builder_settings_at_their_extremes() {
    for n in [0, 1, usize::MAX] {
        check("concurrency", n.to_string(), builder().concurrency(n)).await;
        check("lookahead", n.to_string(), builder().lookahead(n)).await;
    }
    // The odd items always fail: with u32::MAX retries only a retry budget that fails fast
    // (and has no floor) ends them; the default budget would make them wait and retry forever.
    for n in [0, 1, u32::MAX] {
        let failing_fast = builder().retries(n).configure_pool(|pool| {
            pool.retry_budget(RetryBudget {
                fail_fast: true,
                min_per_sec: 0.0,
                ..RetryBudget::default()
            })
        });
        check("retries", n.to_string(), failing_fast).await;
    }
    for p in [i32::MIN, 0, i32::MAX] {
        check("priority", p.to_string(), builder().priority(p)).await;
    }
    for d in DURATIONS {
        let v = format!("{d:?}");
        check(
            "retry_delay",
            v.clone(),
            TaskManager::builder()
                .retry_delay(d)
                .configure_pool(|pool| pool.max_retry_delay(Duration::MAX)),
        )
        .await;
        check("timeout", v, builder().timeout(d)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn run_settings_at_their_extremes() {
    let manager = builder().concurrency(4).build().unwrap();
    let run = |i: u32| async move { Ok::<_, Transient<&str>>(i) };
    for total in [0, 1, 1 << 36, u64::MAX] {
        // A collected run used to reserve one slot per `total`: u64::MAX was a capacity
        // overflow, 1 << 36 a 512 GiB allocation that aborted the process.
        let result = manager.process(0..3u32, run).total(total).await;
        assert_eq!(
            result.results,
            [Some(0), Some(1), Some(2)],
            "total({total})"
        );
        let streamed = manager.process_iterable(0..3u32, run).total(total);
        assert_eq!(streamed.count().await, 3);
    }
    for n in [0, 1, usize::MAX] {
        let result = manager.process(0..10u32, run).lookahead(n).await;
        assert!(result.all_succeeded(), "lookahead({n})");
    }
    for n in [0, 1, u32::MAX] {
        let result = manager.process(0..10u32, run).retries(n).await;
        assert!(result.all_succeeded(), "retries({n})");
    }
    for p in [i32::MIN, 0, i32::MAX] {
        let result = manager.process(0..10u32, run).priority(p).await;
        assert!(result.all_succeeded(), "priority({p})");
    }
    for d in DURATIONS {
        let result = manager.process(0..10u32, run).timeout(d).await;
        assert_eq!(result.results.len(), 10, "timeout({d:?})");
    }
}

#[tokio::test(start_paused = true)]
async fn an_exact_size_hint_is_not_an_allocation() {
    // `0..usize::MAX` says it holds usize::MAX items; fail-fast ends the streamed run at the
    // first failure, having pulled a few. Collecting it reserved usize::MAX slots.
    let manager = builder().concurrency(2).retries(0).build().unwrap();
    let result = manager
        .process_iterable(0..usize::MAX, |i| async move {
            if i == 5 {
                Err(Transient("enough"))
            } else {
                Ok(i)
            }
        })
        .fail_fast()
        .collect_results()
        .await;
    let unfinished = result.results.iter().filter(|r| r.is_none()).count();
    assert_eq!(result.errors.len(), unfinished);
    assert!(result.errors.iter().any(|error| error.index == 5));
    assert!(result.results.len() < 100);
}

#[test]
fn a_zero_concurrency_is_named() {
    let error = TaskManager::builder().concurrency(0).build().unwrap_err();
    assert_eq!(error, ConfigError::ZeroConcurrency);
}
