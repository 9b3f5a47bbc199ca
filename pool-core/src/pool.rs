//! The pool: enqueue, control, lifecycle, stats.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::builder::PoolBuilder;
use crate::cell::TaskCell;
use crate::engine::job::Waiting;
use crate::engine::Engine;
use crate::error::ConfigError;
use crate::handle::TaskHandle;
use crate::make_attempt::MakeAttempt;
use crate::observer::{EventKind, TaskInfo};
use crate::raw_task;
use crate::stats::Stats;
use crate::task::{ErrorClass, Retryable, TaskOptions};
use crate::tenant::TenantStats;

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
///
/// # Nested work
///
/// A task may enqueue into its own pool and await the result — directly, or through a
/// client that shares the pool — even when every slot is held by such tasks: a running task
/// lends its slot to its children, one at a time. The rule, precisely:
///
/// - A task enqueued into this pool *while the pool polls an attempt of task `P`* on this
///   thread (inside `P`'s future, or its closure making the future) is `P`'s child. That
///   covers `.await`, `join_all`, `select`, `buffer_unordered` and any future `P` polls
///   inline. Nothing else is a child: work enqueued from another thread, from a future `P`
///   spawned onto the runtime (`tokio::spawn`), from code running between polls, or into
///   another pool.
/// - A child starts at once on `P`'s loan if no other child of `P` holds it — past the
///   limit, the pause and its tenant's share, because the slot is `P`'s already. Otherwise
///   it queues like any task, and starts on whichever comes first: an ordinary free slot, or
///   the loan when the child before it gives it back. So a fan-out (a batch of a thousand
///   calls) gets one extra slot per parent, not a thousand.
/// - When `P`'s attempt ends, so does the loan: a child still running on it keeps the slot
///   (the work `P` started never runs past the limit once `P` is gone), and children still
///   queued become ordinary queued tasks. A retried child takes the loan again if `P` still
///   runs.
///
/// A parent and its line of descendants therefore hold one slot between them;
/// [`Stats::active`] counts running attempts, so with parents awaiting children it can
/// exceed the limit by the number of loans.
///
/// **Limit:** a parent that spawns nested work onto the runtime and awaits the spawned
/// future is not recognised; with every slot held by such parents, that can still deadlock.
/// Poll nested work inline (or give it a pool of its own).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_core::ConfigError> {
/// use pool_core::{Pool, TaskOptions, Transient};
/// // One slot, held by the outer task while it awaits the inner one.
/// let pool = Pool::builder().concurrency(1).build()?;
/// let inner_pool = pool.clone();
/// let outer = pool.enqueue(
///     move || {
///         let pool = inner_pool.clone();
///         async move {
///             let inner = pool.enqueue(
///                 || async { Ok::<_, Transient<&str>>(20) },
///                 TaskOptions::new(),
///             );
///             Ok::<_, Transient<&str>>(inner.await.unwrap_or(0) + 1)
///         }
///     },
///     TaskOptions::new(),
/// );
/// assert_eq!(outer.await.unwrap(), 21);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    owner: Arc<PoolOwner>,
}

/// Stops the pool when the last `Pool` clone goes away.
struct PoolOwner {
    engine: Arc<Engine>,
}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        self.engine.stop(false);
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
    /// A builder with documented defaults (see [`PoolBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use pool_core::Pool;
    ///
    /// let pool = Pool::builder()
    ///     .concurrency(32)
    ///     .retries(5)
    ///     .timeout(Duration::from_secs(10))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.concurrency(), 32);
    /// # }
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    pub(crate) fn from_engine(engine: Arc<Engine>) -> Self {
        let pool = Self {
            owner: Arc::new(PoolOwner { engine }),
        };
        pool.engine().observers.attach(&pool.control());
        pool
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.owner.engine
    }

    /// Queues a task whose error type says whether it is retryable ([`Retryable`]).
    ///
    /// `task` is called once per attempt. The handle resolves exactly once.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use pool_core::{Pool, TaskOptions, Transient};
    ///
    /// let pool = Pool::builder().retry_delay(Duration::from_millis(1)).build().unwrap();
    /// let mut calls = 0;
    /// let handle = pool.enqueue(
    ///     move || {
    ///         calls += 1;
    ///         let attempt = calls;
    ///         // `Transient` marks the error retryable: the first attempt fails, the second
    ///         // succeeds.
    ///         async move { if attempt == 1 { Err(Transient("503")) } else { Ok(attempt) } }
    ///     },
    ///     TaskOptions::new().retries(2),
    /// );
    /// assert_eq!(handle.await.unwrap(), 2);
    /// # }
    /// ```
    pub fn enqueue<A>(&self, task: A, options: TaskOptions) -> TaskHandle<A::Ok, A::Error>
    where
        A: MakeAttempt,
        A::Error: Retryable,
    {
        self.enqueue_with(task, options, A::Error::error_class)
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
    pub fn enqueue_with<A, C>(
        &self,
        task: A,
        options: TaskOptions,
        classify: C,
    ) -> TaskHandle<A::Ok, A::Error>
    where
        A: MakeAttempt,
        C: Fn(&A::Error) -> ErrorClass + Send + Sync + 'static,
    {
        let engine = self.engine();
        let id = engine.next_task_id();
        let waiting = Waiting {
            tenant: options.tenant.clone(),
            cancellable: options.cancellation.is_some(),
            deadline: options.deadline,
        };
        // Only `TaskQueued` needs it here (a task finished at once asks for it itself).
        let info = engine
            .observers
            .wants(EventKind::TaskQueued)
            .then(|| TaskInfo {
                id,
                priority: options.priority,
                metadata: options.metadata.clone(),
                tenant: options.tenant.clone(),
            });
        let (task, result) = raw_task::new_task(TaskCell::new(id, options, task, classify, engine));
        engine.enqueue(task, waiting, info);
        TaskHandle::new(result)
    }

    /// Changes the concurrency limit at once. Growing starts queued tasks now; shrinking
    /// lets running tasks finish and starts none until below the new limit.
    ///
    /// # Errors
    /// [`ConfigError::ZeroConcurrency`] for 0 (the limit is unchanged).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{ConfigError, Pool};
    ///
    /// let pool = Pool::builder().concurrency(4).build().unwrap();
    /// pool.set_concurrency(16).unwrap();
    /// assert_eq!(pool.concurrency(), 16);
    /// assert_eq!(pool.set_concurrency(0), Err(ConfigError::ZeroConcurrency));
    /// assert_eq!(pool.stats().concurrency, 16);
    /// # }
    /// ```
    pub fn set_concurrency(&self, concurrency: usize) -> Result<(), ConfigError> {
        self.control().set_concurrency(concurrency)
    }

    /// The concurrency limit.
    pub fn concurrency(&self) -> usize {
        self.engine().limit()
    }

    /// Counters and state now: see [`Stats`] for what each count means.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{Permanent, Pool, TaskOptions};
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// let ok = pool.enqueue(|| async { Ok::<_, Permanent<&str>>(()) }, TaskOptions::new());
    /// let bad = pool.enqueue(|| async { Err::<(), _>(Permanent("404")) }, TaskOptions::new());
    /// let _ = (ok.await, bad.await);
    /// let stats = pool.stats();
    /// assert_eq!((stats.enqueued, stats.succeeded, stats.failed), (2, 1, 1));
    /// assert!(stats.in_balance());
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.engine().stats()
    }

    /// Each tenant's share now: the tenants with tasks queued or holding a slot, with their
    /// weights and limits, and the tasks that name no tenant (`tenant: None`, always listed).
    pub fn tenants(&self) -> Vec<TenantStats> {
        self.engine().tenants()
    }

    /// Tokens left in the retry budget (`None` if it is off).
    pub fn retry_budget_tokens(&self) -> Option<f64> {
        self.engine().budget_tokens()
    }

    /// The pool's clock (virtual under a test executor).
    pub fn now(&self) -> Instant {
        self.engine().executor.now()
    }

    /// Whether anything attached to this pool reads tasks' labels
    /// ([`TaskOptions::metadata`]): an observer that [reads them](crate::Observer::reads_labels),
    /// an admission policy (each is handed the task's [`TaskInfo`], labels included), or a
    /// `tracing` subscriber listening to `pool_core::events` (it logs events whole; asked
    /// each time). When it is `false` a task's labels are kept with it but nobody looks at
    /// them, so a caller that builds labels only to be read (a client labelling each request
    /// with its operation and key) may skip them.
    ///
    /// ```
    /// use pool_core::{Event, EventKind, Observer, Pool};
    ///
    /// /// Counts finished tasks; never looks at their labels.
    /// #[derive(Debug)]
    /// struct Count;
    ///
    /// impl Observer for Count {
    ///     fn on_event(&self, _event: &Event) {}
    ///     fn wants(&self, kind: EventKind) -> bool {
    ///         kind == EventKind::TaskFinished
    ///     }
    ///     fn reads_labels(&self) -> bool {
    ///         false
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(!Pool::builder().build().unwrap().reads_labels());
    /// assert!(!Pool::builder().observer(Count).build().unwrap().reads_labels());
    /// # }
    /// ```
    pub fn reads_labels(&self) -> bool {
        self.engine().reads_labels()
    }

    /// Running tasks finish; none start until [`resume`](Self::resume).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{Pool, TaskOptions};
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// pool.pause();
    /// let task = pool.enqueue(|| async { Ok::<_, std::io::Error>(7) }, TaskOptions::new());
    /// assert!(pool.stats().paused && pool.stats().queued == 1);
    /// pool.resume();
    /// assert_eq!(task.await.unwrap(), 7);
    /// # }
    /// ```
    pub fn pause(&self) {
        self.engine().set_paused(true);
    }

    /// Starts queued tasks again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.engine().set_paused(false);
    }

    /// Waits until the queue is empty and nothing runs or waits to retry. While the pool is
    /// paused with tasks queued, this waits until it is resumed (or stopped).
    ///
    /// The handles need not be awaited: the tasks run all the same.
    ///
    /// # Observers
    /// When `drain` returns, [`stats`](Self::stats) accounts for every task; the observers
    /// may still be receiving the [`TaskFinished`](crate::Event::TaskFinished) of the last
    /// few, on the threads that ran them (events are delivered outside the pool's lock, so
    /// that a slow observer holds up no other task). To read an observer — pool-metrics'
    /// collector, say — that has seen every task, await the tasks' handles instead: a handle
    /// resolves only after the observers were told of its task.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{Pool, TaskOptions};
    ///
    /// let pool = Pool::builder().concurrency(2).build().unwrap();
    /// for i in 0..10 {
    ///     // Dropping a handle does not cancel its task.
    ///     drop(pool.enqueue(move || async move { Ok::<_, std::io::Error>(i) }, TaskOptions::new()));
    /// }
    /// pool.drain().await;
    /// let stats = pool.stats();
    /// assert_eq!((stats.succeeded, stats.queued, stats.active), (10, 0, 0));
    /// # }
    /// ```
    pub async fn drain(&self) {
        self.engine().wait_idle().await;
    }

    /// Stops the pool and waits for running tasks to finish. Queued tasks and tasks waiting
    /// to retry resolve with `Stopped`; later `enqueue`s resolve with `Stopped` at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{Pool, TaskError, TaskOptions};
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// pool.pause(); // keep the task queued
    /// let queued = pool.enqueue(|| async { Ok::<_, std::io::Error>(()) }, TaskOptions::new());
    /// pool.stop().await;
    /// assert!(matches!(queued.await, Err(TaskError::Stopped)));
    /// let late = pool.enqueue(|| async { Ok::<_, std::io::Error>(()) }, TaskOptions::new());
    /// assert!(matches!(late.await, Err(TaskError::Stopped)));
    /// assert_eq!(pool.stats().stopped_tasks, 2);
    /// # }
    /// ```
    pub async fn stop(&self) {
        self.engine().stop(false);
        self.engine().wait_idle().await;
    }

    /// Stops the pool and cancels running tasks too: their attempts are dropped at the next
    /// poll and resolve with `Stopped`. Does not wait.
    pub fn stop_now(&self) {
        self.engine().stop(true);
    }

    /// A weak handle for observers and tuners: reads stats, changes the limit, and does not
    /// keep the pool alive.
    pub fn control(&self) -> PoolControl {
        PoolControl {
            engine: Arc::downgrade(self.engine()),
        }
    }
}

/// A weak handle to a pool, given to observers in [`Observer::on_attach`](crate::Observer::on_attach).
/// Every method is a no-op (or `None`) once the pool is gone.
#[derive(Clone)]
pub struct PoolControl {
    engine: Weak<Engine>,
}

impl fmt::Debug for PoolControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolControl")
            .field("alive", &(self.engine.strong_count() > 0))
            .finish()
    }
}

impl PoolControl {
    /// Changes the concurrency limit (see [`Pool::set_concurrency`]). `Ok` if the pool is gone.
    pub fn set_concurrency(&self, concurrency: usize) -> Result<(), ConfigError> {
        if concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        if let Some(engine) = self.engine.upgrade() {
            engine.set_limit(concurrency);
        }
        Ok(())
    }

    /// The concurrency limit; 0 once the pool is gone.
    pub fn concurrency(&self) -> usize {
        self.engine.upgrade().map_or(0, |engine| engine.limit())
    }

    /// Counters and state now; `None` once the pool is gone.
    pub fn stats(&self) -> Option<Stats> {
        self.engine.upgrade().map(|engine| engine.stats())
    }

    /// Each tenant's share now (see [`Pool::tenants`]); empty once the pool is gone.
    pub fn tenants(&self) -> Vec<TenantStats> {
        self.engine
            .upgrade()
            .map(|engine| engine.tenants())
            .unwrap_or_default()
    }

    /// The pool's clock; the system clock once the pool is gone.
    pub fn now(&self) -> Instant {
        self.engine
            .upgrade()
            .map_or_else(Instant::now, |engine| engine.executor.now())
    }

    /// Whether the pool still exists.
    pub fn is_alive(&self) -> bool {
        self.engine.strong_count() > 0
    }
}
