//! Cancellation is prompt: a cancelled task resolves `Cancelled` as soon as its attempt returns
//! (no retry scheduled), and a queued or parked one at once — whether or not anyone polls its
//! handle. Each test waits an hour of backoff or deferral it must never wait out.

use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, CancellationToken, ErrorClass, Pool, Precheck,
    Rejection, Stats, TaskError, TaskInfo, TaskOptions,
};

use super::{runtime, within, Failure};

const HOUR: Duration = Duration::from_secs(3_600);

/// Waits (polling the stats, never the handle) until `done` holds.
async fn until_stats(pool: &Pool, what: &str, done: impl Fn(&Stats) -> bool) {
    within(what, async {
        while !done(&pool.stats()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

fn failing_pool() -> Pool {
    Pool::builder()
        .concurrency(2)
        .retries(3)
        .retry_delay(HOUR)
        .max_retry_delay(HOUR)
        .jitter(pool_core::Jitter::None)
        .build()
        .unwrap()
}

#[test]
fn a_task_cancelled_while_its_attempt_runs_is_not_retried() {
    runtime(2).block_on(async {
        let pool = failing_pool();
        let token = CancellationToken::new();
        let inside = token.clone();
        // The token fires inside the attempt, which then fails retryably in the same poll:
        // the attempt's own race cannot see the token, the decision after it must.
        let handle = pool.enqueue(
            move || {
                let inside = inside.clone();
                async move {
                    inside.cancel();
                    Err::<(), _>(Failure(ErrorClass::Retryable))
                }
            },
            TaskOptions::new().cancellation(token),
        );
        assert!(matches!(
            within("the cancelled task", handle).await,
            Err(TaskError::Cancelled)
        ));
        let stats = pool.stats();
        assert_eq!((stats.retries, stats.retrying, stats.cancelled), (0, 0, 1));
    });
}

#[test]
fn a_task_cancelled_in_backoff_resolves_without_its_handle_being_polled() {
    runtime(2).block_on(async {
        let pool = failing_pool();
        let token = CancellationToken::new();
        let handle = pool.enqueue(
            || async { Err::<(), _>(Failure(ErrorClass::Retryable)) },
            TaskOptions::new().cancellation(token.clone()),
        );
        until_stats(&pool, "the retry to be parked", |s| s.retrying == 1).await;
        token.cancel();
        until_stats(&pool, "the parked task to resolve", |s| {
            s.retrying == 0 && s.cancelled == 1
        })
        .await;
        assert!(matches!(handle.await, Err(TaskError::Cancelled)));
        within("drain", pool.drain()).await;
    });
}

/// Parks every task an hour ahead.
#[derive(Debug)]
struct FarTurn;

impl Admission for FarTurn {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(async { Ok(AdmissionPermit::empty()) })
    }

    fn precheck(&self, _task: &TaskInfo) -> Precheck {
        Precheck::ParkUntil(Instant::now() + HOUR)
    }
}

#[test]
fn a_deferred_task_cancelled_resolves_without_its_handle_being_polled() {
    runtime(2).block_on(async {
        let pool = Pool::builder().admission(FarTurn).build().unwrap();
        let token = CancellationToken::new();
        let handle = pool.enqueue(
            || async { Ok::<_, Failure>(()) },
            TaskOptions::new().cancellation(token.clone()),
        );
        until_stats(&pool, "the task to be deferred", |s| s.deferred == 1).await;
        token.cancel();
        until_stats(&pool, "the deferred task to resolve", |s| {
            s.deferred == 0 && s.cancelled == 1
        })
        .await;
        assert!(matches!(handle.await, Err(TaskError::Cancelled)));
    });
}

#[test]
fn a_queued_task_cancelled_leaves_the_queue_without_its_handle_being_polled() {
    runtime(2).block_on(async {
        let pool = Pool::builder().build().unwrap();
        pool.pause();
        let token = CancellationToken::new();
        let handle = pool.enqueue(
            || async { Ok::<_, Failure>(()) },
            TaskOptions::new().cancellation(token.clone()),
        );
        assert_eq!(pool.stats().queued, 1);
        token.cancel();
        until_stats(&pool, "the queued task to resolve", |s| {
            s.queued == 0 && s.cancelled == 1
        })
        .await;
        assert!(matches!(handle.await, Err(TaskError::Cancelled)));
        within("drain", pool.drain()).await;
    });
}

#[test]
fn a_task_enqueued_with_a_cancelled_token_resolves_cancelled_at_once() {
    runtime(2).block_on(async {
        let pool = Pool::builder().build().unwrap();
        pool.pause();
        let token = CancellationToken::new();
        token.cancel();
        let handle = pool.enqueue(
            || async { Ok::<_, Failure>(()) },
            TaskOptions::new().cancellation(token),
        );
        until_stats(&pool, "the task to resolve", |s| s.cancelled == 1).await;
        assert!(matches!(handle.await, Err(TaskError::Cancelled)));
    });
}

/// Aborts from another OS thread race attempts starting, running, failing into backoff and
/// finishing: every handle resolves exactly once, an aborted one `Cancelled` unless it had
/// resolved before, and the counters add up with nothing left running.
#[test]
fn aborts_from_another_thread_resolve_each_task_exactly_once() {
    runtime(3).block_on(async {
        let pool = Pool::builder()
            .concurrency(4)
            .retries(2)
            .retry_delay(Duration::from_millis(1))
            // The never-ending tasks end only by their abort: a missed one hangs the drain.
            .no_timeout()
            .build()
            .unwrap();
        let handles: Vec<_> = (0..400u32)
            .map(|i| {
                pool.enqueue(
                    move || async move {
                        match i % 4 {
                            0 => Ok(i),
                            1 => Err(Failure(ErrorClass::Retryable)),
                            2 => {
                                tokio::time::sleep(Duration::from_micros(200)).await;
                                Ok(i)
                            }
                            _ => std::future::pending().await,
                        }
                    },
                    TaskOptions::new(),
                )
            })
            .collect();
        let handles = std::sync::Arc::new(handles);
        let aborter = {
            let handles = std::sync::Arc::clone(&handles);
            std::thread::spawn(move || {
                for (i, handle) in handles.iter().enumerate() {
                    // The never-ending ones all; a third of the others.
                    if i % 4 == 3 || i % 3 == 0 {
                        handle.abort();
                    }
                    if i % 16 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        within(
            "the aborter",
            tokio::task::spawn_blocking(move || aborter.join()),
        )
        .await
        .unwrap()
        .unwrap();
        let handles = std::sync::Arc::into_inner(handles).expect("the aborter is done");
        let mut cancelled = 0;
        for (i, handle) in handles.into_iter().enumerate() {
            match within("a handle", handle).await {
                Err(TaskError::Cancelled) => {
                    assert!(i % 4 == 3 || i % 3 == 0, "task {i} was not aborted");
                    cancelled += 1;
                }
                Ok(_) | Err(TaskError::Failed { .. }) => assert!(i % 4 != 3),
                other => panic!("task {i}: {other:?}"),
            }
        }
        within("drain", pool.drain()).await;
        let stats = pool.stats();
        assert!(stats.in_balance(), "{stats:?}");
        assert_eq!(stats.active, 0, "{stats:?}");
        assert!(cancelled >= 100, "{cancelled}");
        // An attempt that ended at the moment of its abort may be counted with its own end.
        assert!(stats.cancelled <= cancelled, "{stats:?} vs {cancelled}");
    });
}
