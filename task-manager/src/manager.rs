//! The manager: runs over lists, iterators and streams, single tasks, lifecycle and stats.

use std::sync::Arc;

use futures::stream::{self, Stream, StreamExt};
use pool_core::{
    CancellationToken, ConfigError, ErrorClass, MakeAttempt, Pool, PoolControl, Retryable,
    TaskHandle, TaskOptions,
};

use crate::builder::TaskManagerBuilder;
use crate::classified::Classified;
use crate::processor::Processor;
use crate::run::{Collected, InOrder, Input, Run, RunSettings, Streamed, Submit};
use crate::stats::{ItemCounters, ManagerStats};

/// Bulk processing over a [`Pool`] it owns: "do this to a million keys, at most N at a time,
/// tell me what failed".
///
/// - [`process`](Self::process): a list in, every value and every error (with its index) out.
/// - [`process_corresponding`](Self::process_corresponding): one `Result` per item, in input
///   order.
/// - [`process_iterable`](Self::process_iterable) / [`process_stream`](Self::process_stream):
///   a lazily pulled input, possibly endless, and a [`Stream`] of results as they finish, with
///   memory bounded by the concurrency.
/// - [`enqueue`](Self::enqueue): a single task.
///
/// Each `process*` call returns a [`Run`]: set its options (fail-fast, callbacks, progress,
/// priority), then await it or poll it as a stream. The processor `f` is called once per
/// attempt with a clone of the item, so a failed attempt can be retried; wrap large items
/// in an `Arc`. Its error type says whether an error is worth a retry ([`Retryable`]; wrap
/// foreign errors in [`Transient`](pool_core::Transient) or
/// [`Permanent`](pool_core::Permanent)).
///
/// Cloning is cheap; clones share the pool. Events reach the observers given to the
/// [builder](TaskManagerBuilder::observer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_core::ConfigError> {
/// use pool_core::{Permanent, TaskError};
/// use task_manager::TaskManager;
///
/// let manager = TaskManager::builder().concurrency(4).retries(0).build()?;
/// let report = manager
///     .process(1..=10u32, |n| async move {
///         if n % 4 == 0 { Err(Permanent(format!("{n} is unlucky"))) } else { Ok(n * n) }
///     })
///     .await;
/// assert_eq!(report.results[2], Some(9));
/// let failed: Vec<usize> = report.errors.iter().map(|e| e.index).collect();
/// assert_eq!(failed, [3, 7]);
/// assert!(matches!(&report.errors[0].error, TaskError::Failed { error, .. } if error.0 == "4 is unlucky"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TaskManager {
    pool: Pool,
    task_options: TaskOptions,
    lookahead: usize,
    /// Fires on `stop`/`destroy`: every run stops pulling input.
    stop: CancellationToken,
    counters: Arc<ItemCounters>,
}

impl TaskManager {
    /// A builder with documented defaults.
    pub fn builder() -> TaskManagerBuilder {
        TaskManagerBuilder::new()
    }

    pub(crate) fn from_parts(pool: Pool, priority: i32, lookahead: usize) -> Self {
        Self {
            pool,
            task_options: TaskOptions::new().priority(priority),
            lookahead,
            stop: CancellationToken::new(),
            counters: Arc::default(),
        }
    }

    /// Runs `f` on every item, at most `concurrency` at a time. Await the [`Run`] for a
    /// [`BatchResult`](pool_core::BatchResult): `results[i]` is item `i`'s value (`None` if it
    /// failed) and `errors` the failures with their index, ascending.
    ///
    /// Every item is accounted for exactly once, even when the run ends early: items never
    /// started resolve with `Cancelled` (fail-fast) or `Stopped` (stop).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_manager::ConfigError> {
    /// use std::sync::{Arc, Mutex};
    /// use task_manager::{Permanent, TaskManager};
    ///
    /// let manager = TaskManager::builder().concurrency(8).build()?;
    /// let last_progress = Arc::new(Mutex::new(None));
    /// let seen = Arc::clone(&last_progress);
    /// let report = manager
    ///     .process(0..100u32, |n| async move {
    ///         if n == 13 { Err(Permanent("thirteen")) } else { Ok(n + 1) }
    ///     })
    ///     .on_progress(move |progress| *seen.lock().unwrap() = Some(*progress))
    ///     .await;
    /// assert_eq!(report.results[99], Some(100));
    /// assert_eq!(report.errors[0].index, 13);
    /// let progress = last_progress.lock().unwrap().unwrap();
    /// assert_eq!((progress.done, progress.succeeded, progress.failed), (100, 99, 1));
    /// assert_eq!(progress.to_string().split(',').next(), Some("100/100 done (1 failed"));
    /// # Ok(()) }
    /// ```
    pub fn process<I, P>(&self, items: I, f: P) -> Run<P::Ok, P::Error, Collected>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        P: Processor<I::Item>,
        P::Error: Retryable,
    {
        self.run_over_iter(items, f, P::Error::error_class, true)
    }

    /// Like [`process`](Self::process), but the [`Run`] awaits to one `Result` per item, in
    /// input order, whatever order the items finished in.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pool_core::ConfigError> {
    /// use std::time::Duration;
    /// use task_manager::TaskManager;
    /// let manager = TaskManager::builder().concurrency(3).build()?;
    /// let lengths = manager
    ///     .process_corresponding(vec!["a", "bbb", "cc"], |s: &str| async move {
    ///         // The longest finishes first.
    ///         tokio::time::sleep(Duration::from_millis(10 / s.len() as u64)).await;
    ///         Ok::<_, std::io::Error>(s.len())
    ///     })
    ///     .await;
    /// let lengths: Vec<usize> = lengths.into_iter().map(Result::unwrap).collect();
    /// assert_eq!(lengths, [1, 3, 2]);
    /// # Ok(()) }
    /// ```
    pub fn process_corresponding<I, P>(&self, items: I, f: P) -> Run<P::Ok, P::Error, InOrder>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        P: Processor<I::Item>,
        P::Error: Retryable,
    {
        self.run_over_iter(items, f, P::Error::error_class, true)
    }

    /// Runs `f` on the items of an iterator, pulled only as room frees up, and yields each
    /// [`ItemResult`](crate::ItemResult) as it finishes. The iterator may be endless: at most
    /// `concurrency + lookahead` items are pulled ahead of the consumer, so memory stays
    /// O(concurrency), and a slow consumer slows the pulling.
    ///
    /// Dropping the stream, fail-fast or a stop leaves the rest of the iterator unpulled.
    /// [`collect_results`](Run::collect_results) collects a finite one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pool_core::ConfigError> {
    /// use futures::StreamExt;
    /// use task_manager::TaskManager;
    /// let manager = TaskManager::builder().concurrency(8).build()?;
    /// // An endless input: only what the consumer takes (plus a window) is ever pulled.
    /// let mut results = manager.process_iterable(0u64.., |n| async move {
    ///     Ok::<_, std::io::Error>(n * 2)
    /// });
    /// for _ in 0..100 {
    ///     // Results come in completion order; `index` says which item each one is.
    ///     let item = results.next().await.unwrap();
    ///     assert_eq!(item.result.unwrap(), item.index as u64 * 2);
    /// }
    /// assert!(results.pulled() <= 100 + 8 + task_manager::DEFAULT_LOOKAHEAD);
    /// # Ok(()) }
    /// ```
    pub fn process_iterable<I, P>(&self, items: I, f: P) -> Run<P::Ok, P::Error, Streamed>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        P: Processor<I::Item>,
        P::Error: Retryable,
    {
        self.run_over_iter(items, f, P::Error::error_class, false)
    }

    /// [`process_iterable`](Self::process_iterable) for an async input (a paginated listing,
    /// a channel): pulled only as room frees up, results yielded as they finish.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_manager::ConfigError> {
    /// use task_manager::futures::{stream, StreamExt};
    /// use task_manager::{TaskManager, Transient};
    ///
    /// let manager = TaskManager::builder().concurrency(4).build()?;
    /// let pages = stream::iter(["a", "bb", "ccc"]);
    /// let mut lengths: Vec<usize> = manager
    ///     .process_stream(pages, |page: &str| async move { Ok::<_, Transient<&str>>(page.len()) })
    ///     .map(|item| item.result.unwrap())
    ///     .collect()
    ///     .await;
    /// lengths.sort();
    /// assert_eq!(lengths, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn process_stream<S, P>(&self, items: S, f: P) -> Run<P::Ok, P::Error, Streamed>
    where
        S: Stream + Send + 'static,
        S::Item: Clone + Send + 'static,
        P: Processor<S::Item>,
        P::Error: Retryable,
    {
        self.run_over_stream(items, f, P::Error::error_class)
    }

    /// Every run over an iterator: `account_unpulled` says whether items never pulled are
    /// accounted for in the output (collected and in-order runs) or left unpulled (streams).
    pub(crate) fn run_over_iter<I, P, C, M>(
        &self,
        items: I,
        f: P,
        classify: C,
        account_unpulled: bool,
    ) -> Run<P::Ok, P::Error, M>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        P: Processor<I::Item>,
        C: Fn(&P::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        let items = items.into_iter();
        let total = exact_len(items.size_hint());
        self.run(stream::iter(items), total, f, classify, account_unpulled)
    }

    /// Every run over a stream (always streamed out).
    pub(crate) fn run_over_stream<S, P, C>(
        &self,
        items: S,
        f: P,
        classify: C,
    ) -> Run<P::Ok, P::Error, Streamed>
    where
        S: Stream + Send + 'static,
        S::Item: Clone + Send + 'static,
        P: Processor<S::Item>,
        C: Fn(&P::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        let total = exact_len(items.size_hint());
        self.run(items, total, f, classify, false)
    }

    /// The one run implementation.
    fn run<S, P, C, M>(
        &self,
        items: S,
        total: Option<u64>,
        f: P,
        classify: C,
        account_unpulled: bool,
    ) -> Run<P::Ok, P::Error, M>
    where
        S: Stream + Send + 'static,
        S::Item: Clone + Send + 'static,
        P: Processor<S::Item>,
        C: Fn(&P::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        let processor = Arc::new(f);
        let input: Input<P::Ok, P::Error> = Box::pin(items.map(move |item| -> Submit<_, _> {
            let processor = Arc::clone(&processor);
            let classify = classify.clone();
            Box::new(move |pool: &Pool, options: TaskOptions| {
                // One call per attempt, each with its own copy of the item.
                pool.enqueue_with(move || processor(item.clone()), options, classify)
            })
        }));
        Run::new(
            self.pool.clone(),
            input,
            total,
            account_unpulled,
            self.run_settings(),
        )
    }

    fn run_settings(&self) -> RunSettings {
        RunSettings {
            lookahead: self.lookahead,
            task_options: self.task_options.clone(),
            manager_stop: self.stop.clone(),
            counters: Arc::clone(&self.counters),
        }
    }

    pub(crate) fn default_task_options(&self) -> TaskOptions {
        self.task_options.clone()
    }

    /// The same runs and single tasks for an error type that does not implement
    /// [`Retryable`] (say, a foreign crate's): `classify` says which errors are worth a retry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pool_core::ConfigError> {
    /// use pool_core::ErrorClass;
    /// use task_manager::TaskManager;
    /// let manager = TaskManager::builder().retries(1).build()?;
    /// let statuses = manager
    ///     .classify_errors(|status: &u16| {
    ///         if *status >= 500 { ErrorClass::Retryable } else { ErrorClass::Fatal }
    ///     })
    ///     .process_corresponding([200u16, 404], |status| async move {
    ///         if status == 200 { Ok("found") } else { Err(status) }
    ///     })
    ///     .await;
    /// assert!(statuses[0].is_ok());
    /// assert_eq!(statuses[1].as_ref().unwrap_err().task_error(), Some(&404));
    /// # Ok(()) }
    /// ```
    pub fn classify_errors<E, C>(&self, classify: C) -> Classified<'_, C>
    where
        C: Fn(&E) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        Classified::new(self, classify)
    }

    /// Queues a single task with the manager's defaults. The handle resolves exactly once;
    /// dropping it lets the task run detached.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_manager::ConfigError> {
    /// use task_manager::{TaskManager, Transient};
    ///
    /// let manager = TaskManager::builder().build()?;
    /// let handle = manager.enqueue(|| async { Ok::<_, Transient<std::io::Error>>(42) });
    /// assert_eq!(handle.await.unwrap(), 42);
    /// # Ok(()) }
    /// ```
    pub fn enqueue<A>(&self, task: A) -> TaskHandle<A::Ok, A::Error>
    where
        A: MakeAttempt,
        A::Error: Retryable,
    {
        self.pool.enqueue(task, self.task_options.clone())
    }

    /// Queues a single task with its own options (priority, retries, timeout, metadata,
    /// cancellation).
    pub fn enqueue_with_options<A>(
        &self,
        task: A,
        options: TaskOptions,
    ) -> TaskHandle<A::Ok, A::Error>
    where
        A: MakeAttempt,
        A::Error: Retryable,
    {
        self.pool.enqueue(task, options)
    }

    /// Running tasks finish; none start until [`resume`](Self::resume). Runs keep pulling
    /// until their window is full, then wait.
    pub fn pause(&self) {
        self.pool.pause();
    }

    /// Starts queued tasks again.
    pub fn resume(&self) {
        self.pool.resume();
    }

    /// Waits until every task handed to the pool so far has resolved. Runs are driven by
    /// whoever polls them, so this does not wait for items a run has not pulled yet.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_manager::ConfigError> {
    /// use task_manager::{TaskManager, Transient};
    ///
    /// let manager = TaskManager::builder().build()?;
    /// for i in 0..5u32 {
    ///     drop(manager.enqueue(move || async move { Ok::<_, Transient<&str>>(i) }));
    /// }
    /// manager.drain().await;
    /// assert_eq!(manager.stats().pool.succeeded, 5);
    /// # Ok(()) }
    /// ```
    pub async fn drain(&self) {
        self.pool.drain().await;
    }

    /// Stops for good: runs stop pulling input, queued tasks resolve with `Stopped`, and
    /// this waits for running tasks to finish. Later enqueues resolve with `Stopped` at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_manager::ConfigError> {
    /// use task_manager::{TaskError, TaskManager, Transient};
    ///
    /// let manager = TaskManager::builder().build()?;
    /// manager.pause(); // keep the task queued
    /// let queued = manager.enqueue(|| async { Ok::<_, Transient<&str>>(()) });
    /// manager.stop().await;
    /// assert!(matches!(queued.await, Err(TaskError::Stopped)));
    /// assert!(manager.is_stopped());
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self) {
        self.stop.cancel();
        self.pool.stop().await;
    }

    /// Like [`stop`](Self::stop), but running tasks are cancelled too (dropped at their
    /// next poll, resolving with `Stopped`). When this returns, no task of the manager is
    /// running and none will start.
    pub async fn destroy(&self) {
        self.stop.cancel();
        self.pool.stop_now();
        self.pool.stop().await;
    }

    /// Whether [`stop`](Self::stop) or [`destroy`](Self::destroy) has been called.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The pool's counters plus items across all runs.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_manager::ConfigError> {
    /// use task_manager::{Permanent, TaskManager};
    ///
    /// let manager = TaskManager::builder().retries(0).build()?;
    /// let run = manager.process(0..10u32, |n| async move {
    ///     if n < 3 { Err(Permanent("bad")) } else { Ok(()) }
    /// });
    /// run.await;
    /// let stats = manager.stats();
    /// assert_eq!((stats.items_succeeded, stats.items_failed), (7, 3));
    /// // The pool's tasks, counted with the same words.
    /// assert_eq!((stats.pool.succeeded, stats.pool.failed), (7, 3));
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> ManagerStats {
        self.counters.snapshot(self.pool.stats())
    }

    /// The concurrency limit.
    pub fn concurrency(&self) -> usize {
        self.pool.concurrency()
    }

    /// Changes the concurrency limit now; running runs widen or narrow their window to match.
    pub fn set_concurrency(&self, concurrency: usize) -> Result<(), ConfigError> {
        self.pool.set_concurrency(concurrency)
    }

    /// A weak handle to the pool, e.g. for a tuner.
    pub fn control(&self) -> PoolControl {
        self.pool.control()
    }

    /// The pool itself, for what the manager does not wrap (custom error classifiers with
    /// [`Pool::enqueue_with`], batches).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// The exact length a `size_hint` promises, if it promises one.
pub(crate) fn exact_len((lower, upper): (usize, Option<usize>)) -> Option<u64> {
    (upper == Some(lower)).then_some(lower as u64)
}
