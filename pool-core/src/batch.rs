//! Batches: many tasks in, results in input order and errors with their index out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::FusedFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::error::TaskError;
use crate::handle::{IndexedHandle, TaskHandle};
use crate::make_attempt::MakeAttempt;
use crate::pool::Pool;
use crate::task::{ErrorClass, Retryable, TaskOptions};

/// A batch's outcome: one slot per input (`None` where that item failed) and the failures
/// with their index, in index order.
#[derive(Debug, Clone)]
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
///
/// It prints as `item 3: task failed after 4 attempt(s)`; its
/// [`source`](std::error::Error::source) is the item's own error, as for [`TaskError`].
#[derive(Debug, Clone)]
pub struct BatchError<E> {
    /// Position of the item in the input.
    pub index: usize,
    /// Why it failed.
    pub error: TaskError<E>,
}

impl<E> fmt::Display for BatchError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item {}: {}", self.index, self.error)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BatchError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The task error's message is already in ours: hand on what it would.
        std::error::Error::source(&self.error)
    }
}

type OnComplete<T> = Box<dyn FnMut(usize, &T) + Send>;
type OnError<E> = Box<dyn FnMut(usize, &TaskError<E>) + Send>;

/// Tasks of a batch, already queued. It is a [`Future`] of the [`BatchResult`] (await it,
/// `spawn` it, put it in `join_all`); callbacks run as items finish, in completion order,
/// exactly once each, in whoever polls the batch.
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
///
/// # Panics
/// Polled again after it resolved (as for any future, a caller's error;
/// [`FusedFuture::is_terminated`] says when).
#[must_use = "the tasks are queued; await the batch to get their results"]
pub struct Batch<T, E> {
    /// Handles not yet polled: moved into `pending` on the first poll.
    handles: Vec<TaskHandle<T, E>>,
    pending: FuturesUnordered<IndexedHandle<T, E>>,
    results: Vec<Option<T>>,
    errors: Vec<BatchError<E>>,
    on_complete: Option<OnComplete<T>>,
    on_error: Option<OnError<E>>,
    started: bool,
    finished: bool,
}

impl<T, E> fmt::Debug for Batch<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("items", &self.len())
            .field("pending", &self.pending.len())
            .field("failed", &self.errors.len())
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

    /// Waits for every item (the same as awaiting the batch).
    pub async fn collect(self) -> BatchResult<T, E> {
        self.await
    }
}

impl<T, E> Batch<T, E> {
    fn new(handles: Vec<TaskHandle<T, E>>) -> Self {
        Batch {
            handles,
            pending: FuturesUnordered::new(),
            results: Vec::new(),
            errors: Vec::new(),
            on_complete: None,
            on_error: None,
            started: false,
            finished: false,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        if self.started {
            self.results.len()
        } else {
            self.handles.len()
        }
    }

    /// True if the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// No field is ever pinned: results are moved out, handles are polled through `Pin::new`.
impl<T, E> Unpin for Batch<T, E> {}

impl<T, E> Future for Batch<T, E> {
    type Output = BatchResult<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.finished, "a Batch was polled after it resolved");
        if !this.started {
            this.started = true;
            this.results = std::iter::repeat_with(|| None)
                .take(this.handles.len())
                .collect();
            this.pending = this
                .handles
                .drain(..)
                .enumerate()
                .map(|(index, handle)| handle.indexed(index))
                .collect();
        }
        while let Poll::Ready(Some((index, result))) = this.pending.poll_next_unpin(cx) {
            match result {
                Ok(value) => {
                    if let Some(callback) = this.on_complete.as_mut() {
                        callback(index, &value);
                    }
                    this.results[index] = Some(value);
                }
                Err(error) => {
                    if let Some(callback) = this.on_error.as_mut() {
                        callback(index, &error);
                    }
                    this.errors.push(BatchError { index, error });
                }
            }
        }
        if !this.pending.is_empty() {
            return Poll::Pending;
        }
        this.finished = true;
        let mut errors = std::mem::take(&mut this.errors);
        errors.sort_unstable_by_key(|error| error.index);
        Poll::Ready(BatchResult {
            results: std::mem::take(&mut this.results),
            errors,
        })
    }
}

impl<T, E> FusedFuture for Batch<T, E> {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

impl Pool {
    /// Queues every task of `tasks` with the same options; see [`Batch`].
    pub fn add_batch<I, A>(&self, tasks: I, options: TaskOptions) -> Batch<A::Ok, A::Error>
    where
        I: IntoIterator<Item = A>,
        A: MakeAttempt,
        A::Error: Retryable,
    {
        self.add_batch_with(tasks, options, A::Error::error_class)
    }

    /// [`add_batch`](Self::add_batch) with a classifier for the tasks' errors.
    pub fn add_batch_with<I, A, C>(
        &self,
        tasks: I,
        options: TaskOptions,
        classify: C,
    ) -> Batch<A::Ok, A::Error>
    where
        I: IntoIterator<Item = A>,
        A: MakeAttempt,
        C: Fn(&A::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        let handles = tasks
            .into_iter()
            .map(|task| self.enqueue_with(task, options.clone(), classify.clone()))
            .collect();
        Batch::new(handles)
    }
}
