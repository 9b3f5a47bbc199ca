//! Batches: many tasks in, results in input order and errors with their index out.

use std::fmt;
use std::future::{Future, IntoFuture};

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::error::TaskError;
use crate::executor::BoxFuture;
use crate::handle::TaskHandle;
use crate::pool::Pool;
use crate::task::{ErrorClass, Retryable, TaskOptions};

/// A batch's outcome: one slot per input (`None` where that item failed) and the failures
/// with their index, in index order.
#[derive(Debug)]
pub struct BatchResult<T, E> {
    /// `results[i]` is the value of item `i`, or `None` if it failed.
    pub results: Vec<Option<T>>,
    /// The failed items, by ascending index.
    pub errors: Vec<BatchError<E>>,
}

impl<T, E> BatchResult<T, E> {
    /// True if every item succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.errors.is_empty()
    }
}

/// One failed item of a batch.
#[derive(Debug)]
pub struct BatchError<E> {
    /// Position of the item in the input.
    pub index: usize,
    /// Why it failed.
    pub error: TaskError<E>,
}

type OnComplete<T> = Box<dyn FnMut(usize, &T) + Send>;
type OnError<E> = Box<dyn FnMut(usize, &TaskError<E>) + Send>;

/// Tasks of a batch, already queued. Await it (or call [`collect`](Self::collect)) for the
/// [`BatchResult`]; callbacks run as items finish, in completion order, exactly once each.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pool_core::{Pool, TaskOptions, Transient};
/// let pool = Pool::builder().concurrency(2).build().unwrap();
/// let tasks = (0..5u32).map(|i| {
///     move || async move {
///         if i == 3 { Err(Transient("odd one out")) } else { Ok(i * 10) }
///     }
/// });
/// let mut done = 0;
/// let result = pool
///     .add_batch(tasks, TaskOptions::new().retries(0))
///     .on_item_complete(move |_index, _value| done += 1)
///     .await;
/// assert_eq!(result.results, vec![Some(0), Some(10), Some(20), None, Some(40)]);
/// assert_eq!(result.errors[0].index, 3);
/// # }
/// ```
#[must_use = "the tasks are queued; await the batch to get their results"]
pub struct Batch<T, E> {
    handles: Vec<TaskHandle<T, E>>,
    on_complete: Option<OnComplete<T>>,
    on_error: Option<OnError<E>>,
}

impl<T, E> fmt::Debug for Batch<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("items", &self.handles.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static, E: Send + 'static> Batch<T, E> {
    /// Called with `(index, &value)` as each item succeeds.
    pub fn on_item_complete(mut self, callback: impl FnMut(usize, &T) + Send + 'static) -> Self {
        self.on_complete = Some(Box::new(callback));
        self
    }

    /// Called with `(index, &error)` as each item fails.
    pub fn on_item_error(
        mut self,
        callback: impl FnMut(usize, &TaskError<E>) + Send + 'static,
    ) -> Self {
        self.on_error = Some(Box::new(callback));
        self
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True if the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Waits for every item.
    pub async fn collect(self) -> BatchResult<T, E> {
        let Batch {
            handles,
            mut on_complete,
            mut on_error,
        } = self;
        let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None)
            .take(handles.len())
            .collect();
        let mut errors = Vec::new();
        let mut pending: FuturesUnordered<_> = handles
            .into_iter()
            .enumerate()
            .map(|(index, handle)| async move { (index, handle.await) })
            .collect();
        while let Some((index, result)) = pending.next().await {
            match result {
                Ok(value) => {
                    if let Some(callback) = on_complete.as_mut() {
                        callback(index, &value);
                    }
                    results[index] = Some(value);
                }
                Err(error) => {
                    if let Some(callback) = on_error.as_mut() {
                        callback(index, &error);
                    }
                    errors.push(BatchError { index, error });
                }
            }
        }
        errors.sort_unstable_by_key(|e| e.index);
        BatchResult { results, errors }
    }
}

impl<T: Send + 'static, E: Send + 'static> IntoFuture for Batch<T, E> {
    type Output = BatchResult<T, E>;
    type IntoFuture = BoxFuture<BatchResult<T, E>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.collect())
    }
}

impl Pool {
    /// Queues every task of `tasks` with the same options; see [`Batch`].
    pub fn add_batch<I, F, Fut, T, E>(&self, tasks: I, options: TaskOptions) -> Batch<T, E>
    where
        I: IntoIterator<Item = F>,
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Retryable + Send + 'static,
    {
        self.add_batch_with(tasks, options, E::error_class)
    }

    /// [`add_batch`](Self::add_batch) with a classifier for the tasks' errors.
    pub fn add_batch_with<I, F, Fut, T, E, C>(
        &self,
        tasks: I,
        options: TaskOptions,
        classify: C,
    ) -> Batch<T, E>
    where
        I: IntoIterator<Item = F>,
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        C: Fn(&E) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        let handles = tasks
            .into_iter()
            .map(|task| self.enqueue_with(task, options.clone(), classify.clone()))
            .collect();
        Batch {
            handles,
            on_complete: None,
            on_error: None,
        }
    }
}
