//! The future a caller awaits for one task's result.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::cell::ResultSlot;
use crate::error::TaskError;
use crate::raw_task::ResultRef;
use crate::task::TaskId;

/// Resolves exactly once with the task's value or a [`TaskError`].
///
/// The handle is one pointer to the task's one allocation, which it shares with the pool;
/// there is no separate channel.
///
/// Dropping the handle does not cancel the task (like a detached spawn): call
/// [`abort`](Self::abort) first, or give the task a cancellation token in
/// [`TaskOptions`](crate::TaskOptions) — cancelling the token resolves a queued or parked
/// task at once, whether or not the handle is being awaited.
#[must_use = "a handle does nothing unless awaited; dropping it lets the task run detached"]
pub struct TaskHandle<T, E> {
    task: ResultRef<T, E>,
}

impl<T, E> TaskHandle<T, E> {
    pub(crate) fn new(task: ResultRef<T, E>) -> Self {
        Self { task }
    }

    fn slot(&self) -> &dyn ResultSlot<T, E> {
        self.task.slot().0
    }

    /// The task's id (as seen in events and metrics).
    pub fn id(&self) -> TaskId {
        self.slot().id()
    }

    /// Whether the task has resolved: awaiting the handle now returns at once.
    pub fn is_finished(&self) -> bool {
        self.slot().is_resolved()
    }

    /// The result if the task has already resolved, without waiting; otherwise the handle
    /// back, to await or to ask again. It takes the handle so that a result can be taken
    /// only once: there is no handle left to await afterwards.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{Pool, TaskOptions, Transient};
    /// let pool = Pool::builder().build().unwrap();
    /// let handle = pool.enqueue(|| async { Ok::<_, Transient<&str>>(7) }, TaskOptions::new());
    /// let value = match handle.try_result() {
    ///     Ok(result) => result,              // already resolved
    ///     Err(handle) => handle.await,       // not yet: wait for it
    /// };
    /// assert_eq!(value.unwrap(), 7);
    /// # }
    /// ```
    ///
    /// Awaiting a handle whose result was taken does not compile:
    ///
    /// ```compile_fail,E0382
    /// # async fn f(pool: pool_core::Pool) {
    /// # use pool_core::{TaskOptions, Transient};
    /// let handle = pool.enqueue(|| async { Ok::<_, Transient<&str>>(7) }, TaskOptions::new());
    /// let _ = handle.try_result();
    /// let _ = handle.await; // use of moved value
    /// # }
    /// ```
    pub fn try_result(self) -> Result<Result<T, TaskError<E>>, Self> {
        let (slot, attempts) = self.task.slot();
        match slot.try_result(attempts) {
            Some(result) => Ok(result),
            None => Err(self),
        }
    }

    /// Cancels this one task: the handle resolves with [`TaskError::Cancelled`] at once,
    /// whatever state the task is in, unless it has resolved already (then nothing changes).
    /// Calling it again changes nothing. Like tokio's `JoinHandle::abort`, it does not
    /// consume the handle: await it afterwards to see how the task ended.
    ///
    /// What the pool does with the task:
    /// - **Running**: its attempt is dropped at its next wake-up (it is not polled to its
    ///   end), and it is not retried.
    /// - **Waiting for an admission policy's permit**: the wait ends at once (the policy's
    ///   acquire future is dropped), and the slot it held is free for the next task.
    /// - **Queued or parked** (retry backoff, deferred by admission): a task with a
    ///   cancellation token leaves the queue at once; one without keeps its place until its
    ///   turn comes, and is then dropped without running (until then [`Stats::queued`] or
    ///   `retrying` still count it).
    /// - Either way the pool counts it as cancelled and observers see it end `Cancelled`
    ///   (unless the pool stops first: then `Stopped`). An attempt that ends on its own at
    ///   the same moment may be counted with its own ending; the handle still says
    ///   `Cancelled`.
    ///
    /// [`Stats::queued`]: crate::Stats::queued
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{Pool, TaskError, TaskOptions, Transient};
    /// let pool = Pool::builder().build().unwrap();
    /// let handle = pool.enqueue(
    ///     || async { std::future::pending::<Result<(), Transient<&str>>>().await },
    ///     TaskOptions::new(),
    /// );
    /// tokio::task::yield_now().await; // it runs, forever
    /// handle.abort();
    /// assert!(matches!(handle.await, Err(TaskError::Cancelled)));
    /// pool.drain().await; // its attempt was dropped
    /// assert_eq!(pool.stats().cancelled, 1);
    /// # }
    /// ```
    pub fn abort(&self) {
        // The task tells the pool, if it resolved it.
        self.slot().abort();
    }

    /// This handle, resolving to `(index, result)`: for many handles polled together (in a
    /// `FuturesUnordered`, say) whose results must say which item each one is, as a batch's
    /// and a run's do.
    pub fn indexed(self, index: usize) -> IndexedHandle<T, E> {
        IndexedHandle {
            index,
            handle: self,
        }
    }
}

impl<T, E> Future for TaskHandle<T, E> {
    type Output = Result<T, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (slot, attempts) = self.task.slot();
        slot.poll_result(cx, attempts)
    }
}

/// A [`TaskHandle`] that resolves to its index beside its result; from
/// [`TaskHandle::indexed`].
#[must_use = "a handle does nothing unless awaited; dropping it lets the task run detached"]
pub struct IndexedHandle<T, E> {
    index: usize,
    handle: TaskHandle<T, E>,
}

impl<T, E> fmt::Debug for IndexedHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexedHandle")
            .field("index", &self.index)
            .field("handle", &self.handle)
            .finish()
    }
}

impl<T, E> IndexedHandle<T, E> {
    /// The index it resolves with.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<T, E> Future for IndexedHandle<T, E> {
    type Output = (usize, Result<T, TaskError<E>>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index;
        Pin::new(&mut self.handle)
            .poll(cx)
            .map(|result| (index, result))
    }
}

impl<T, E> fmt::Debug for TaskHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}
