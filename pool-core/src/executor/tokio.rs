//! The tokio executor.

use std::time::{Duration, Instant};

use super::{BoxFuture, Executor};

/// Runs the pool on a tokio runtime. Under `tokio::time::pause()` its clock is virtual, so
/// tests of timeouts and backoff run instantly.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pool_core::{Pool, TokioExecutor};
/// let pool = Pool::builder().executor(TokioExecutor::current()).build().unwrap();
/// # let _ = pool;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TokioExecutor {
    handle: tokio::runtime::Handle,
}

impl TokioExecutor {
    /// The runtime this is called from. `None` outside a tokio runtime.
    pub fn try_current() -> Option<Self> {
        tokio::runtime::Handle::try_current()
            .ok()
            .map(Self::from_handle)
    }

    /// The runtime this is called from.
    ///
    /// # Panics
    /// Outside a tokio runtime; use [`try_current`](Self::try_current) to get an `Option`.
    pub fn current() -> Self {
        Self::from_handle(tokio::runtime::Handle::current())
    }

    /// A given runtime.
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        Self { handle }
    }
}

impl Executor for TokioExecutor {
    fn spawn(&self, task: BoxFuture<()>) {
        drop(self.handle.spawn(task));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let _runtime = self.handle.enter();
        Box::pin(tokio::time::sleep(duration))
    }

    fn sleep_in_task(&self, duration: Duration) -> BoxFuture<()> {
        // Polled by this runtime (spawned through `self.handle`): its context is entered.
        Box::pin(tokio::time::sleep(duration))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::{Pool, TaskError, TaskOptions, Transient};

    /// Counts which of the two sleeps the pool asks for.
    #[derive(Debug)]
    struct Counting {
        tokio: TokioExecutor,
        sleeps: AtomicUsize,
        in_task: AtomicUsize,
    }

    impl Executor for Counting {
        fn spawn(&self, task: BoxFuture<()>) {
            self.tokio.spawn(task);
        }

        fn sleep(&self, duration: Duration) -> BoxFuture<()> {
            self.sleeps.fetch_add(1, Ordering::SeqCst);
            self.tokio.sleep(duration)
        }

        fn sleep_in_task(&self, duration: Duration) -> BoxFuture<()> {
            self.in_task.fetch_add(1, Ordering::SeqCst);
            self.tokio.sleep_in_task(duration)
        }

        fn now(&self) -> Instant {
            self.tokio.now()
        }
    }

    /// An attempt's timeout is a sleep made by the runner, in the runtime's context, though
    /// the task was enqueued from a thread outside any runtime: it fires.
    #[test]
    fn an_attempts_timeout_is_made_in_the_runners_task_and_fires() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let executor = Arc::new(Counting {
            tokio: TokioExecutor::from_handle(runtime.handle().clone()),
            sleeps: AtomicUsize::new(0),
            in_task: AtomicUsize::new(0),
        });
        let pool = Pool::builder()
            .executor_arc(Arc::clone(&executor) as Arc<dyn Executor>)
            .retries(0)
            .build()
            .unwrap();
        // Enqueued here, outside the runtime: only the runner is inside it.
        let handle = pool.enqueue(
            std::future::pending::<Result<(), Transient<&str>>>,
            TaskOptions::new().timeout(Duration::from_millis(20)),
        );
        let result = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), handle)
                .await
                .expect("the attempt's timeout fires")
        });
        assert!(
            matches!(result, Err(TaskError::TimedOut { .. })),
            "{result:?}"
        );
        assert_eq!(executor.in_task.load(Ordering::SeqCst), 1);
        assert_eq!(executor.sleeps.load(Ordering::SeqCst), 0);
    }
}
