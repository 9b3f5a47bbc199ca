//! A handle shares its task's allocation with the pool: whatever happens to the pool or its
//! runtime, the handle resolves exactly once and never hangs.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use pool_core::{Pool, TaskError, TaskHandle, TaskOptions};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

/// Every handle is already resolved (polling once answers, so a regression fails instead
/// of hanging) and with `Stopped`.
fn assert_all_stopped<T: std::fmt::Debug, E: std::fmt::Debug>(
    handles: impl IntoIterator<Item = TaskHandle<T, E>>,
) {
    for handle in handles {
        let result = handle.now_or_never();
        assert!(
            matches!(result, Some(Err(TaskError::Stopped))),
            "{result:?}"
        );
    }
}

/// Shutting a runtime down drops the pool's runners in the middle of their tasks; the
/// handles, awaited elsewhere, resolve `Stopped` instead of waiting forever.
#[test]
fn a_runtime_shut_down_under_running_tasks_resolves_their_handles() {
    let runtime = current_thread();
    let (pool, handles) = runtime.block_on(async {
        let pool = Pool::builder().concurrency(2).build().unwrap();
        let handles: Vec<_> = (0..5)
            .map(|_| {
                pool.enqueue(
                    || async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok::<_, std::io::Error>(())
                    },
                    TaskOptions::new(),
                )
            })
            .collect();
        // Let the first two start.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(pool.stats().active, 2);
        (pool, handles)
    });
    drop(runtime);
    let mut handles = handles.into_iter();
    assert_all_stopped(handles.by_ref().take(2));
    // The queued ones are still the pool's: dropping it stops them.
    drop(pool);
    assert_all_stopped(handles);
}

#[test]
fn queued_handles_resolve_when_the_pool_goes_away_without_a_runtime() {
    let runtime = current_thread();
    let (pool, handles) = runtime.block_on(async {
        let pool = Pool::builder().concurrency(1).build().unwrap();
        pool.pause();
        let handles: Vec<_> = (0..3)
            .map(|i| {
                pool.enqueue(
                    move || async move { Ok::<_, Infallible>(i) },
                    TaskOptions::new(),
                )
            })
            .collect();
        (pool, handles)
    });
    drop(runtime);
    drop(pool);
    assert_all_stopped(handles);
}

#[test]
fn try_result_gives_the_value_and_a_handle_asked_too_early_still_gives_it() {
    current_thread().block_on(async {
        let pool = Pool::builder().build().unwrap();
        pool.pause();
        let handle = pool.enqueue(|| async { Ok::<_, Infallible>(7) }, TaskOptions::new());
        assert!(!handle.is_finished());
        // Not resolved yet: the handle comes back, and awaiting it gives the value (it used
        // to give `Stopped` once a `try_result` had run on it).
        let handle = handle.try_result().expect_err("not resolved yet");
        pool.resume();
        assert_eq!(handle.await.unwrap(), 7);

        let handle = pool.enqueue(|| async { Ok::<_, Infallible>(8) }, TaskOptions::new());
        pool.drain().await;
        assert!(handle.is_finished());
        assert_eq!(handle.try_result().ok().map(Result::unwrap), Some(8));
    });
}

/// A task that never finishes, and tells when its attempt's future is dropped.
fn forever(
    dropped: &Arc<AtomicUsize>,
) -> impl FnMut() -> futures::future::BoxFuture<'static, Result<(), Infallible>> + Send + 'static {
    let dropped = Arc::clone(dropped);
    move || {
        let guard = DropCount(Arc::clone(&dropped));
        Box::pin(async move {
            let _guard = guard;
            std::future::pending().await
        })
    }
}

struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn abort_resolves_a_running_a_queued_and_a_parked_task_cancelled_at_once() {
    current_thread().block_on(async {
        let pool = Pool::builder()
            .concurrency(1)
            .retries(3)
            .retry_delay(Duration::from_secs(3_600))
            .max_retry_delay(Duration::from_secs(3_600))
            .jitter(pool_core::Jitter::None)
            .build()
            .unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let running = pool.enqueue(forever(&dropped), TaskOptions::new());
        let queued_calls = Arc::new(AtomicUsize::new(0));
        let calls = Arc::clone(&queued_calls);
        let queued = pool.enqueue(
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(()) }
            },
            TaskOptions::new(),
        );
        tokio::task::yield_now().await;
        assert_eq!(pool.stats().active, 1);
        assert_eq!(pool.stats().queued, 1);

        // Queued: resolves now; never runs.
        queued.abort();
        queued.abort();
        assert!(matches!(
            queued.now_or_never(),
            Some(Err(TaskError::Cancelled))
        ));
        // Running: resolves now; its attempt is dropped, not retried.
        running.abort();
        assert!(running.is_finished());
        assert!(matches!(running.await, Err(TaskError::Cancelled)));
        tokio::task::yield_now().await;
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the attempt was dropped");

        // Parked in an hour of retry backoff: resolves now.
        let parked = pool.enqueue(
            || async { Err::<(), _>(pool_core::Transient("503")) },
            TaskOptions::new(),
        );
        tokio::task::yield_now().await;
        assert_eq!(pool.stats().retrying, 1);
        parked.abort();
        assert!(matches!(
            parked.now_or_never(),
            Some(Err(TaskError::Cancelled))
        ));

        // Finished: nothing changes.
        let done = pool.enqueue(|| async { Ok::<_, Infallible>(5) }, TaskOptions::new());
        tokio::task::yield_now().await;
        assert!(done.is_finished());
        done.abort();
        assert_eq!(done.await.unwrap(), 5);

        // The queued task is dropped unrun at its turn; the parked one when its hour is up.
        tokio::time::sleep(Duration::from_secs(3_601)).await;
        pool.drain().await;
        let stats = pool.stats();
        assert!(stats.in_balance(), "{stats:?}");
        assert_eq!(stats.cancelled, 3, "{stats:?}");
        assert_eq!(stats.retries, 1, "{stats:?}");
        assert_eq!(
            queued_calls.load(Ordering::SeqCst),
            0,
            "the aborted queued task never ran"
        );
    });
}

#[test]
fn abort_of_a_task_with_a_token_takes_it_out_of_the_queue_at_once() {
    current_thread().block_on(async {
        let pool = Pool::builder().concurrency(1).build().unwrap();
        pool.pause();
        let token = pool_core::CancellationToken::new();
        let handle = pool.enqueue(
            || async { Ok::<_, Infallible>(()) },
            TaskOptions::new().cancellation(token.clone()),
        );
        handle.abort();
        assert!(matches!(handle.await, Err(TaskError::Cancelled)));
        let stats = pool.stats();
        assert_eq!((stats.queued, stats.cancelled), (0, 1), "{stats:?}");
        assert!(
            !token.is_cancelled(),
            "the token is the caller's: abort leaves it alone"
        );
    });
}

/// A dropped handle leaves its task running (detached) and the closure is dropped once
/// the task resolves, not kept until the last reference goes.
#[test]
fn a_dropped_handle_leaves_the_task_running_and_the_closure_is_freed_on_resolution() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    current_thread().block_on(async {
        let pool = Pool::builder().concurrency(1).build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let captured = Counted(Arc::clone(&dropped));
        let counter = Arc::clone(&ran);
        let handle = pool.enqueue(
            move || {
                let _keep = &captured;
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(())
                }
            },
            TaskOptions::new(),
        );
        let kept = pool.enqueue(|| async { Ok::<_, Infallible>(()) }, TaskOptions::new());
        drop(handle);
        pool.drain().await;
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "closure freed at resolution"
        );
        kept.await.unwrap();
    });
}

/// One pointer to the task's one allocation (which reaches the pool, for `abort`). An
/// `Option` of it is no larger.
#[test]
fn a_handle_is_one_word() {
    let word = std::mem::size_of::<usize>();
    assert_eq!(
        std::mem::size_of::<pool_core::TaskHandle<(), Infallible>>(),
        word
    );
    assert_eq!(
        std::mem::size_of::<Option<pool_core::TaskHandle<(), Infallible>>>(),
        word
    );
}

/// Builders and errors are `Clone` where their contents allow (a compile-time check).
#[test]
fn builders_and_errors_are_clone() {
    fn clone<T: Clone>(_: &T) {}
    let builder = Pool::builder().concurrency(3);
    clone(&builder);
    clone(&pool_core::ConfigError::ZeroConcurrency);
    clone(&TaskError::<std::io::ErrorKind>::Cancelled);
    // A clone keeps the settings: it builds the same pool.
    current_thread().block_on(async {
        assert_eq!(builder.clone().build().unwrap().concurrency(), 3);
    });
}

/// Admission that waits for a permit of a semaphore with none to give.
#[derive(Debug, Clone)]
struct NoPermits(Arc<tokio::sync::Semaphore>);

impl pool_core::Admission for NoPermits {
    fn acquire(
        &self,
        _task: &pool_core::TaskInfo,
    ) -> pool_core::BoxFuture<Result<pool_core::AdmissionPermit, pool_core::Rejection>> {
        let semaphore = Arc::clone(&self.0);
        Box::pin(async move {
            let permit = semaphore.acquire_owned().await.map_err(|_| {
                pool_core::Rejection::new(pool_core::RejectionKind::Unavailable, "closed")
            })?;
            Ok(pool_core::AdmissionPermit::holding(permit))
        })
    }
}

#[test]
fn abort_resolves_a_task_waiting_for_admission_at_once() {
    current_thread().block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(0));
        let pool = Pool::builder()
            .concurrency(1)
            .admission(NoPermits(Arc::clone(&permits)))
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let task = |calls: &Arc<AtomicUsize>| {
            let counted = Arc::clone(calls);
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(()) }
            }
        };
        let waiting = pool.enqueue(task(&calls), TaskOptions::new());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "it waits for a permit");

        waiting.abort();
        assert!(matches!(
            waiting.now_or_never(),
            Some(Err(TaskError::Cancelled))
        ));
        // The abort ends the wait for admission too: the pool's one slot is free again
        // without a permit ever coming.
        tokio::time::timeout(Duration::from_secs(60), pool.drain())
            .await
            .expect("drained without a permit");
        let stats = pool.stats();
        assert!(stats.in_balance(), "{stats:?}");
        assert_eq!((stats.cancelled, stats.active), (1, 0), "{stats:?}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "the aborted task never ran"
        );
        // The next task takes the slot and the first permit given.
        let next = pool.enqueue(task(&calls), TaskOptions::new());
        permits.add_permits(1);
        tokio::time::timeout(Duration::from_secs(60), next)
            .await
            .expect("the next task ran")
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}
