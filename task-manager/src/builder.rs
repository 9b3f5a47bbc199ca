//! Building a manager: the pool's settings plus the manager's own defaults.

use std::sync::Arc;
use std::time::Duration;

use pool_core::{ConfigError, Executor, Observer, Pool, PoolBuilder};

use crate::manager::TaskManager;

/// Items a run hands to the pool beyond its concurrency limit, by default.
pub const DEFAULT_LOOKAHEAD: usize = 16;

/// Configures and builds a [`TaskManager`]. Every setter documents its default.
///
/// The manager owns its pool. Bulk work queues far more items than the concurrency on
/// purpose, so the pool is built with [`PoolBuilder::no_pressure_rule`]: a long queue does
/// not make the pool skip retries. (A run only queues `concurrency + lookahead` items at a
/// time anyway; other users of the same pool through [`TaskManager::enqueue`] may queue
/// more.) Put the rule back, or change anything else, with
/// [`configure_pool`](Self::configure_pool).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_core::ConfigError> {
/// use std::time::Duration;
/// use task_manager::TaskManager;
/// let manager = TaskManager::builder()
///     .concurrency(64)
///     .retries(2)
///     .retry_delay(Duration::from_millis(50))
///     .timeout(Duration::from_secs(10))
///     .priority(1)
///     .build()?;
/// assert_eq!(manager.concurrency(), 64);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until .build()"]
#[derive(Debug, Clone)]
pub struct TaskManagerBuilder {
    pool: PoolBuilder,
    priority: i32,
    lookahead: usize,
}

impl Default for TaskManagerBuilder {
    fn default() -> Self {
        Self {
            pool: Pool::builder().no_pressure_rule(),
            priority: 0,
            lookahead: DEFAULT_LOOKAHEAD,
        }
    }
}

impl TaskManagerBuilder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Most items processed at once. Default 10 (the pool's default). Must be at least 1.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.pool = self.pool.concurrency(concurrency);
        self
    }

    /// Retries per item (attempts = retries + 1). Default 3.
    pub fn retries(mut self, retries: u32) -> Self {
        self.pool = self.pool.retries(retries);
        self
    }

    /// Delay before the first retry, doubling per attempt with jitter. Default 1 s.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.pool = self.pool.retry_delay(delay);
        self
    }

    /// Per-attempt timeout. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.timeout(timeout);
        self
    }

    /// No per-attempt timeout.
    pub fn no_timeout(mut self) -> Self {
        self.pool = self.pool.no_timeout();
        self
    }

    /// Priority of the manager's tasks in its pool (higher runs first). Default 0. A run can
    /// override it with [`Run::priority`](crate::Run::priority).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Items a run hands to the pool beyond the concurrency limit, so a freed slot starts
    /// the next item at once instead of waiting for the consumer to poll. Default
    /// [`DEFAULT_LOOKAHEAD`] (16). A run holds at most `concurrency + lookahead` items that
    /// are queued, running, or resolved and not yet consumed. `usize::MAX` takes the bound
    /// off (memory then follows the input).
    pub fn lookahead(mut self, lookahead: usize) -> Self {
        self.lookahead = lookahead;
        self
    }

    /// Attaches an observer to the pool (metrics, a tuner, a logger). Any number.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.pool = self.pool.observer(observer);
        self
    }

    /// Attaches an observer already behind an `Arc`.
    pub fn observer_arc(mut self, observer: Arc<dyn Observer>) -> Self {
        self.pool = self.pool.observer_arc(observer);
        self
    }

    /// Where tasks run and time comes from. Default: the tokio runtime `build` is called in.
    pub fn executor(mut self, executor: impl Executor) -> Self {
        self.pool = self.pool.executor(executor);
        self
    }

    /// Any other pool setting: `configure_pool(|pool| pool.max_retry_delay(..))`.
    pub fn configure_pool(mut self, configure: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Self {
        self.pool = configure(self.pool);
        self
    }

    /// Checks every setting and builds the manager and its pool.
    ///
    /// Errors: the pool's [`ConfigError`] naming the first bad setting, or
    /// [`ConfigError::NoExecutor`] outside a tokio runtime without an
    /// [`executor`](Self::executor).
    pub fn build(self) -> Result<TaskManager, ConfigError> {
        let pool = self.pool.build()?;
        Ok(TaskManager::from_parts(pool, self.priority, self.lookahead))
    }
}
