//! The pool: enqueue, control, lifecycle, stats.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::builder::PoolBuilder;
use crate::error::ConfigError;
use crate::handle::TaskHandle;
use crate::job::{TaskCell, TaskRef};
use crate::observer::TaskInfo;
use crate::runner::Shared;
use crate::stats::Stats;
use crate::task::{ErrorClass, Retryable, TaskOptions};

/// A priority pool of async operations with a resizable concurrency limit.
///
/// Cloning is cheap and every clone controls the same pool. When the last clone is dropped
/// the pool stops: queued tasks resolve with [`TaskError::Stopped`](crate::TaskError::Stopped),
/// running ones finish.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_core::ConfigError> {
/// use pool_core::{Pool, TaskOptions, Transient};
/// let pool = Pool::builder().concurrency(4).build()?;
/// let handle = pool.enqueue(
///     || async { Ok::<_, Transient<std::io::Error>>(21 * 2) },
///     TaskOptions::new().priority(1),
/// );
/// assert_eq!(handle.await.unwrap(), 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    owner: Arc<PoolOwner>,
}

/// Stops the pool when the last `Pool` clone goes away.
struct PoolOwner {
    shared: Arc<Shared>,
}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        self.shared.stop(false);
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A builder with documented defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        let pool = Self {
            owner: Arc::new(PoolOwner { shared }),
        };
        pool.shared().observers.attach(&pool.control());
        pool
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }

    /// Queues a task whose error type says whether it is retryable ([`Retryable`]).
    ///
    /// `task` is called once per attempt. The handle resolves exactly once.
    pub fn enqueue<F, Fut, T, E>(&self, task: F, options: TaskOptions) -> TaskHandle<T, E>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Retryable + Send + 'static,
    {
        self.enqueue_with(task, options, E::error_class)
    }

    /// Queues a task with a classifier that says which of its errors are retryable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{ErrorClass, Pool, TaskError, TaskOptions};
    /// let pool = Pool::builder().build().unwrap();
    /// let handle = pool.enqueue_with(
    ///     || async { Err::<(), _>("404 not found") },
    ///     TaskOptions::new(),
    ///     |e: &&str| if e.starts_with('4') { ErrorClass::Fatal } else { ErrorClass::Retryable },
    /// );
    /// assert!(matches!(handle.await, Err(TaskError::Failed { attempts: 1, .. })));
    /// # }
    /// ```
    pub fn enqueue_with<F, Fut, T, E, C>(
        &self,
        task: F,
        options: TaskOptions,
        classify: C,
    ) -> TaskHandle<T, E>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        C: Fn(&E) -> ErrorClass + Send + Sync + 'static,
    {
        let shared = self.shared();
        let id = shared.next_task_id();
        let cancellable = options.cancellation.is_some();
        let info = shared.observers.is_active().then(|| TaskInfo {
            id,
            priority: options.priority,
            metadata: options.metadata.clone(),
        });
        let sink: std::sync::Weak<dyn crate::job::CancelSink> = Arc::downgrade(shared) as _;
        let task = Arc::new(TaskCell::new(id, options, task, classify, sink));
        shared.enqueue(Arc::clone(&task) as TaskRef, cancellable, info);
        TaskHandle::new(task)
    }

    /// Changes the concurrency limit at once. Growing starts queued tasks now; shrinking
    /// lets running tasks finish and starts none until below the new limit.
    pub fn set_concurrency(&self, concurrency: usize) -> Result<(), ConfigError> {
        self.control().set_concurrency(concurrency)
    }

    /// The concurrency limit.
    pub fn concurrency(&self) -> usize {
        self.shared().limit()
    }

    /// Counters and state now.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }

    /// Tokens left in the retry budget (`None` if it is off).
    pub fn retry_budget_tokens(&self) -> Option<f64> {
        self.shared().budget_tokens()
    }

    /// The pool's clock (virtual under a test executor).
    pub fn now(&self) -> Instant {
        self.shared().executor.now()
    }

    /// Running tasks finish; none start until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.shared().set_paused(true);
    }

    /// Starts queued tasks again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.shared().set_paused(false);
    }

    /// Waits until the queue is empty and nothing runs or waits to retry. While the pool is
    /// paused with tasks queued, this waits until it is resumed (or stopped).
    pub async fn drain(&self) {
        self.shared().wait_idle().await;
    }

    /// Stops the pool and waits for running tasks to finish. Queued tasks and tasks waiting
    /// to retry resolve with `Stopped`; later `enqueue`s resolve with `Stopped` at once.
    pub async fn stop(&self) {
        self.shared().stop(false);
        self.shared().wait_idle().await;
    }

    /// Stops the pool and cancels running tasks too: their attempts are dropped at the next
    /// poll and resolve with `Stopped`. Does not wait.
    pub fn stop_now(&self) {
        self.shared().stop(true);
    }

    /// A weak handle for observers and tuners: reads stats, changes the limit, and does not
    /// keep the pool alive.
    pub fn control(&self) -> PoolControl {
        PoolControl {
            shared: Arc::downgrade(self.shared()),
        }
    }
}

/// A weak handle to a pool, given to observers in [`Observer::on_attach`](crate::Observer::on_attach).
/// Every method is a no-op (or `None`) once the pool is gone.
#[derive(Clone)]
pub struct PoolControl {
    shared: Weak<Shared>,
}

impl fmt::Debug for PoolControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolControl")
            .field("alive", &(self.shared.strong_count() > 0))
            .finish()
    }
}

impl PoolControl {
    /// Changes the concurrency limit (see [`Pool::set_concurrency`]). `Ok` if the pool is gone.
    pub fn set_concurrency(&self, concurrency: usize) -> Result<(), ConfigError> {
        if concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.set_limit(concurrency);
        }
        Ok(())
    }

    /// The concurrency limit; 0 once the pool is gone.
    pub fn concurrency(&self) -> usize {
        self.shared.upgrade().map_or(0, |shared| shared.limit())
    }

    /// Counters and state now; `None` once the pool is gone.
    pub fn stats(&self) -> Option<Stats> {
        self.shared.upgrade().map(|shared| shared.stats())
    }

    /// The pool's clock; the system clock once the pool is gone.
    pub fn now(&self) -> Instant {
        self.shared
            .upgrade()
            .map_or_else(Instant::now, |shared| shared.executor.now())
    }

    /// Whether the pool still exists.
    pub fn is_alive(&self) -> bool {
        self.shared.strong_count() > 0
    }
}
