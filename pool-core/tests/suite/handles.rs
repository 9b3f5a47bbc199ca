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
fn try_result_gives_the_value_once() {
    current_thread().block_on(async {
        let pool = Pool::builder().build().unwrap();
        let mut handle = pool.enqueue(|| async { Ok::<_, Infallible>(7) }, TaskOptions::new());
        pool.drain().await;
        assert_eq!(handle.try_result().map(|r| r.ok()), Some(Some(7)));
        assert!(matches!(handle.try_result(), Some(Err(TaskError::Stopped))));
        assert!(matches!(handle.await, Err(TaskError::Stopped)));
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

#[test]
fn a_handle_is_two_words() {
    assert_eq!(
        std::mem::size_of::<pool_core::TaskHandle<(), Infallible>>(),
        2 * std::mem::size_of::<usize>()
    );
}
